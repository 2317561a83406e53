"""What a ledger cell names by value: the data law, the schedule, the guidance method (all plain strings and
numbers, so cells are frozen, hashable and cacheable), and how each becomes objects of the library.

- laws (:func:`get_law`): the presets (``paper_1d``, ``paper_1d_script``, ``correlated_2d``, ``classes_2d``);
  ``single:MU_C:S_C:MU_U:S_U`` (1-D single Gaussians, where :mod:`analytic.symbolic` has closed forms); and
  ``blocks_1d`` (two classes, each an almost flat block of narrow Gaussians: a compact-support stand-in);
  ``rand1d:SEED`` (two random 1-D classes of 1-3 components each, seeded; the conditional is class 0);
- schedules (:func:`make_schedule`): ``paper`` (T = 20, betas 1e-4..0.02, abar_T = 0.82), ``lin:T:ABAR_T``
  (linear betas from 1e-4 to the end value that reaches ``abar_T`` in ``T`` steps), ``linear:T:B1:BT``,
  ``cosine:T``, ``standard:T`` (the 1000-step DDPM schedule respaced to ``T`` steps);
- methods (:class:`Method`, :func:`build`): guidance family x weight schedule x REG estimator.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from analytic import AutoGReward, CFGReward, ClassifierReward, GaussianMixture, degrade, get_preset, optimal_denoiser
from sampler import (CFG, REG, AutoGuidance, ClassifierGuidance, Constant, Cosine, Interval, LinearRamp, MixtureModel,
                     TiltedMean, Unguided, bind)
from sampler.reg import ESTIMATORS
from sampler.schedules import VPSchedule

__all__ = ["Law", "get_law", "make_schedule", "lin_reaching", "Method", "GridWeight", "build", "model_denoisers", "weak_model",
           "reward_of", "cfgpp_weights",
           "FAMILIES", "WEIGHTINGS"]

F64 = torch.float64
FAMILIES = ("unguided", "cfg", "autog", "cg", "optimal", "cfgpp")
WEIGHTINGS = ("const", "linear", "cosine", "interval", "up", "down")


class Law(NamedTuple):
    name: str
    cond: GaussianMixture
    uncond: GaussianMixture
    classes: tuple  # class mixtures (for CG), the conditional first when the law has no classes of its own
    priors: tuple
    y: int


def _blocks(lo: float, hi: float, k: int = 8) -> GaussianMixture:
    centres = torch.linspace(lo, hi, k, dtype=F64)
    s = 0.6 * (hi - lo) / (k - 1)  # overlapping: an almost flat density on [lo, hi] with Gaussian edges
    return GaussianMixture.from_1d([1.0 / k] * k, centres.tolist(), [s] * k)


@functools.cache
def get_law(name: str) -> Law:
    """The law called ``name`` (see the module docstring); ``ValueError`` for an unknown or malformed name."""
    if not isinstance(name, str):
        raise ValueError(f"a law is named by a string, got {name!r}")
    if name.startswith("single:"):
        try:
            mu_c, s_c, mu_u, s_u = (float(v) for v in name.split(":")[1:])
        except ValueError:
            raise ValueError(f"single Gaussians are named 'single:MU_C:S_C:MU_U:S_U', got {name!r}") from None
        if not (s_c > 0 and s_u > 0):
            raise ValueError(f"standard deviations must be positive in {name!r}")
        cond = GaussianMixture.from_1d([1.0], [mu_c], [s_c])
        uncond = GaussianMixture.from_1d([1.0], [mu_u], [s_u])
        return Law(name, cond, uncond, (cond, uncond), (0.5, 0.5), 0)
    if name.startswith("rand1d:"):
        try:
            seed = int(name.split(":")[1])
        except (ValueError, IndexError):
            raise ValueError(f"random laws are named 'rand1d:SEED', got {name!r}") from None
        g = torch.Generator().manual_seed(seed)
        u = lambda n, lo, hi: (lo + (hi - lo) * torch.rand(n, generator=g, dtype=F64)).tolist()  # noqa: E731

        def mixture() -> GaussianMixture:
            k = int(torch.randint(1, 4, (1,), generator=g))
            return GaussianMixture.from_1d(u(k, 0.2, 1.0), u(k, -3.0, 3.0), u(k, 0.2, 1.0))

        cond, other = mixture(), mixture()
        return Law(name, cond, GaussianMixture.concat([cond, other], [0.5, 0.5]), (cond, other), (0.5, 0.5), 0)
    if name == "blocks_1d":
        cond, other = _blocks(1.0, 2.0), _blocks(-2.0, -1.0)
        uncond = GaussianMixture.concat([cond, other], [0.5, 0.5])
        return Law(name, cond, uncond, (cond, other), (0.5, 0.5), 0)
    p = get_preset(name)  # raises ValueError naming the presets
    if p.classes:
        return Law(name, p.cond, p.uncond, tuple(p.classes), tuple(p.priors), p.y)
    return Law(name, p.cond, p.uncond, (p.cond, p.uncond), (0.5, 0.5), 0)


def lin_reaching(T: int, abar_T: float, beta_1: float = 1e-4) -> VPSchedule:
    """Linear betas from ``beta_1`` to the end value (found by bisection) that makes ``abar_T`` the last level."""
    if int(T) != T or T < 2:
        raise ValueError(f"T must be an integer >= 2, got {T}")
    if not 0 < abar_T < 1:
        raise ValueError(f"abar_T must lie in (0, 1), got {abar_T}")
    lo, hi = beta_1, 0.999
    end = lambda b: math.exp(torch.log1p(-torch.linspace(beta_1, b, int(T), dtype=F64)).sum().item())  # noqa: E731
    if end(lo) < abar_T or end(hi) > abar_T:
        raise ValueError(f"no linear schedule from beta_1={beta_1} reaches abar_T={abar_T} in T={T} steps")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if end(mid) > abar_T else (lo, mid)
    return VPSchedule.linear(int(T), beta_1, 0.5 * (lo + hi))


@functools.cache
def make_schedule(spec: str) -> VPSchedule:
    """The schedule called ``spec`` (see the module docstring)."""
    parts = spec.split(":") if isinstance(spec, str) else []
    try:
        if spec == "paper":
            return VPSchedule.paper_1d()
        if parts[0] == "lin" and len(parts) == 3:
            return lin_reaching(int(parts[1]), float(parts[2]))
        if parts[0] == "linear" and len(parts) == 4:
            return VPSchedule.linear(int(parts[1]), float(parts[2]), float(parts[3]))
        if parts[0] == "cosine" and len(parts) == 2:
            return VPSchedule.cosine(int(parts[1]))
        if parts[0] == "standard" and len(parts) == 2:
            return VPSchedule.standard().respace(int(parts[1]))
    except (ValueError, IndexError) as err:
        raise ValueError(f"bad schedule {spec!r}: {err}") from None
    raise ValueError(f"unknown schedule {spec!r}: use paper, lin:T:ABAR_T, linear:T:B1:BT, cosine:T or standard:T")


@dataclass(frozen=True)
class GridWeight:
    """A weight given at each level of one sigma grid (a function of sigma, found by lookup; ``ValueError``
    at any other level). Mean-matched step schedules and CFG++'s step-dependent weight are of this kind."""

    sigmas: tuple[float, ...]
    weights: tuple[float, ...]

    def __post_init__(self):
        if len(self.sigmas) != len(self.weights) or not self.sigmas:
            raise ValueError(f"need one weight per level, got {len(self.sigmas)} levels and {len(self.weights)} weights")

    def __call__(self, sigma: float) -> float:
        s = float(sigma)
        for level, w in zip(self.sigmas, self.weights):
            if abs(level - s) <= 1e-9 * max(level, 1e-300):
                return w
        raise ValueError(f"sigma={s} is not a level of this weight grid ({len(self.sigmas)} levels)")


@dataclass(frozen=True)
class Method:
    """One guided sampler by value.

    family: ``unguided``, ``cfg``, ``autog`` (weak model = ``bad``), ``cg`` (exact Bayes classifier),
        ``optimal`` (exact tilted posterior mean of the CFG reward), ``cfgpp`` (CFG++ with lambda = ``w``,
        run as DDIM; one step of it is a CFG step with the weight of :func:`cfgpp_weights`).
    w: the weight (library convention ``D_c + w (D_c - D_ref)``); the target is the family's reward at ``w``.
    weighting: ``const``; ``linear`` (0 -> 2w linear in sigma); ``cosine`` (power-cosine to 2w);
        ``interval`` (``w`` for sigma in [``lo``, ``hi``], else 0); ``up``/``down`` (linear in the step index,
        mean exactly ``w`` over the steps).
    reg: ``""`` or a REG estimator (``paper``, ``vjp``, ``diag``, ``jvp``, ``fd``).
    bad: the autoguidance weak model, ``cov:S`` (covariances times S) or ``shift:D`` (means moved by D).
    eps_error: a constant error added to the conditional eps prediction (``D_c - sigma * eps_error``).
    """

    family: str = "cfg"
    w: float = 1.0
    weighting: str = "const"
    reg: str = ""
    lo: float = 0.0
    hi: float = math.inf
    bad: str = "cov:2"
    eps_error: float = 0.0

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; choose one of {FAMILIES}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.weighting!r}; choose one of {WEIGHTINGS}")
        if self.reg and self.reg not in ESTIMATORS:
            raise ValueError(f"unknown REG estimator {self.reg!r}; choose one of {ESTIMATORS}")
        if not math.isfinite(self.w):
            raise ValueError(f"w must be finite, got {self.w}")

    @property
    def label(self) -> str:
        name = self.family if self.weighting == "const" else f"{self.family}-{self.weighting}"
        return name + (f"+REG({self.reg})" if self.reg else "")


def weak_model(cond: GaussianMixture, spec: str) -> GaussianMixture:
    kind, _, value = spec.partition(":")
    try:
        v = float(value)
    except ValueError:
        raise ValueError(f"bad model must be 'cov:S' or 'shift:D', got {spec!r}") from None
    if kind == "cov":
        return degrade(cond, v)
    if kind == "shift":
        return GaussianMixture(cond.weights, cond.means + v, cond.covs)
    raise ValueError(f"bad model must be 'cov:S' or 'shift:D', got {spec!r}")


def reward_of(method: Method, law: Law):
    """The reward whose tilted target the method aims at (its family's reward at weight ``method.w``)."""
    if method.family == "autog":
        return AutoGReward(law.cond, weak_model(law.cond, method.bad), method.w)
    if method.family == "cg":
        return ClassifierReward(list(law.classes), list(law.priors), law.y, method.w)
    return CFGReward(law.cond, law.uncond, method.w)


def _weights(method: Method, sigmas: torch.Tensor):
    w = method.w
    levels = [s for s in sigmas.tolist() if s > 0]
    s_max, s_min = levels[0], levels[-1]
    if method.weighting == "const":
        return Constant(w)
    if method.weighting == "linear":
        return LinearRamp(0.0, 2 * w, s_min, s_max)
    if method.weighting == "cosine":
        return Cosine(2 * w, 1.0, s_max)
    if method.weighting == "interval":
        return Interval(w, method.lo, min(method.hi, 2 * s_max))  # hi = inf: up to the first level
    K = len(levels)
    ramp = [2 * w * (i + 1) / (K + 1) for i in range(K)]  # mean exactly w
    return GridWeight(tuple(levels), tuple(ramp if method.weighting == "up" else ramp[::-1]))


def cfgpp_weights(lam: float, sigmas: torch.Tensor) -> GridWeight:
    """CFG++ (arXiv 2406.08070) run as DDIM, ``x' = D^lam + sigma' eps_u`` with ``D^lam`` the denoiser of
    ``eps_u + lam (eps_c - eps_u)``, equals the CFG DDIM step ``x' = x - (sigma - sigma') eps_g`` with
    ``eps_g = eps_u + s (eps_c - eps_u)``, ``s = lam sigma / (sigma - sigma')`` (lerp scale), i.e. the
    library's weight ``w = s - 1`` at that level (derived in :mod:`evaluation.claims.cfgpp`)."""
    s = sigmas.tolist()
    levels = tuple(s[i] for i in range(len(s) - 1))
    return GridWeight(levels, tuple(lam * s[i] / (s[i] - s[i + 1]) - 1.0 for i in range(len(s) - 1)))


class _EpsShift:
    """``D(x, sigma) - sigma * e``: a denoiser whose eps prediction is off by the constant ``e``."""

    def __init__(self, denoiser, e: float):
        self.denoiser, self.e = denoiser, float(e)

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return self.denoiser(x, sigma) - float(sigma) * self.e


def model_denoisers(law: Law, model: str, schedule: VPSchedule):
    """(conditional, unconditional) denoisers: the exact mixtures (``exact``) or the shipped trained toy
    networks of the law's preset (``trained``: ``toy.load_pretrained``, trained on the paper's T = 20)."""
    if model == "exact":
        m = MixtureModel({"c": law.cond, "u": law.uncond})
        return bind(m, "c"), bind(m, "u")
    if model == "trained":
        from sampler import EpsModel
        from toy import load_pretrained

        nets = {role: load_pretrained(law.name, role).net for role in ("cond", "uncond")}
        return (bind(EpsModel(nets["cond"], schedule), 0), bind(EpsModel(nets["uncond"], schedule), None))
    raise ValueError(f"model must be 'exact' or 'trained', got {model!r}")


def build(method: Method, law: Law, schedule: VPSchedule, model: str = "exact"):
    """(guided denoiser, reward) of ``method`` on ``law`` for the levels of ``schedule``."""
    sigmas = schedule.sampling_sigmas()
    c, u = model_denoisers(law, model, schedule)
    if method.eps_error:
        c = _EpsShift(c, method.eps_error)
    reward = reward_of(method, law)
    fam = method.family
    if fam == "unguided":
        guided = Unguided(c)
    elif fam == "optimal":
        if model != "exact":
            raise ValueError("the optimal guidance is the exact mixture's; use model='exact'")
        guided = TiltedMean(c, optimal_denoiser(law.cond, reward))
    elif fam == "cfgpp":
        guided = CFG(c, u, cfgpp_weights(method.w, sigmas))
    elif fam == "cfg":
        guided = CFG(c, u, _weights(method, sigmas))
    elif fam == "autog":
        weak = bind(MixtureModel({"bad": reward.bad}), "bad")
        guided = AutoGuidance(c, weak, _weights(method, sigmas))
    elif fam == "cg":
        grad = lambda x, s: reward.num.score_ve(x, s) - reward.den.score_ve(x, s)  # noqa: E731
        guided = ClassifierGuidance(c, grad, _weights(method, sigmas))
    else:
        raise ValueError(f"unknown family {fam!r}")
    if method.reg:
        if fam in ("unguided", "optimal"):
            raise ValueError(f"REG modifies a guidance; {fam!r} has none to modify")
        guided = REG(guided, method.reg)
    return guided, reward
