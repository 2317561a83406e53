"""One experiment vocabulary (ARCHITECTURE.md, contract 9): a law, levels and a method, each a frozen value with
one text spelling, parsed once at the command-line edge (:meth:`Law.parse`, :meth:`Schedule.parse`,
:meth:`Levels.parse`, :meth:`Method.parse`, or :func:`parse`), printed back by ``str(value)`` in the same syntax.
The values hold numbers and strings only, so they are cell fields of :mod:`evaluation.sweep` (cacheable keys);
the objects they name are built on demand and cached per value.

Laws (:class:`Law`, built by :meth:`Law.build` into a :class:`LawParts`):

- a preset of :mod:`analytic.presets`: ``paper_1d``, ``paper_1d_script``, ``correlated_2d``, ``classes_2d``;
- ``single:MU_C:S_C:MU_U:S_U``: 1-D single Gaussians (closed forms in :mod:`analytic.symbolic`);
- ``rand1d:SEED``: two random 1-D classes of 1-3 components each, seeded; the conditional is class 0;
- ``rand1d_iso:SEED``: two random 1-D classes of one Gaussian each with a common width (the isotropic, equal-covariance
  classes Wu et al. 2403.01639 analyse), seeded; the conditional is class 0;
- ``blocks_1d``: two classes, each an almost flat block of narrow Gaussians (a compact-support stand-in);
- ``mixture:JSON``: any mixture pair in any d, ``JSON = [[weights, means, covs], [weights, means, covs]]``
  (conditional, unconditional; :meth:`Law.mixture` makes one from two ``GaussianMixture``);
- ``reducible:D:MU:DELTA:VAR1:ORIENT``: the any-d reducible family of :mod:`evaluation.dimension` (class 0 is
  ``1/2 N((MU - DELTA) q, I) + 1/2 N((MU + DELTA) q, I)``, class 1 ``N(-MU q, VAR1 I)``, priors 1/2, the
  unconditional their mixture), on the line ``q = e_1`` (``ORIENT = axes``) or ``q = z/|z|`` with
  ``z = randn(D, generator=manual_seed(ORIENT))`` (``ORIENT`` an integer seed).

Schedules (:class:`Schedule`: the noise levels a sampler visits): ``paper`` (T = 20, betas 1e-4..0.02,
``abar_T = 0.82``), ``lin:T:ABAR_T`` (linear betas from 1e-4 to the end value reaching ``abar_T``),
``linear:T:B1:BT``, ``cosine:T``, ``standard:T`` (the 1000-step DDPM schedule respaced to ``T`` steps) and the
linear (rectified-flow) path ``flow:N`` (``N`` steps uniform in ``t``) and ``flow_shift:N:SHIFT`` (SD3's shift).

Levels (:class:`Levels`): ``SCHEDULE[/SAMPLER[/START]]``, the sampler ``ddpm`` (ancestral) or ``ddim``
(``eta = 0``: the deterministic step, which on flow levels is the flow's Euler step, THEORY.md section 8) and the
start ``n01`` (``N(0, I)``), ``tilted`` (``p_T(x|y) E_T``, the exact start of the tilted chain) or
``tilted_n01`` (``N(0, I) E_T``). Defaults: ``ddpm`` on VP schedules, ``ddim`` on the flow path; ``n01``.

Methods (:class:`Method`, built on :class:`sampler.method.Method`, which holds the one spelling and parser, the
weight schedule and the guidance object): ``RULE[,KEY=VALUE]...`` with the keys of its fields, e.g. ``cfg,w=2``,
``cfg,w=3,reg=vjp``, ``cfg,w=1,weighting=interval,lo=0.1,hi=1``, ``apg_momentum,w=4``. ``method.build(law,
levels)`` returns the guided denoiser and the reward (whose tilted target the method aims at) from the same
weight, in one :class:`Built`.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from analytic import (AutoGReward, CFGReward, ClassifierReward, GaussianMixture, degrade, get_preset, optimal_denoiser,
                      optimal_guidance)
from analytic.presets import PRESETS
from analytic.reducible import ReducibleMixture, ReducibleRatioReward
from sampler import MixtureModel, bind
from sampler.method import RULES, WEIGHTINGS, GridWeight, cfgpp_weights, format_number, parse_float, parse_int
from sampler.method import Method as MethodValue
from sampler.paths import LINEAR, Path, VPPath, sampling_sigmas, shift_times, uniform_times
from sampler.schedules import VPSchedule, sigma_to_abar

from .starts import tilted_start, vp_start

__all__ = ["Law", "LawParts", "Schedule", "Levels", "Method", "Built", "GridWeight", "parse", "lin_reaching",
           "cfgpp_weights", "weak_model", "tilted_mean_denoiser", "RULES", "WEIGHTINGS", "SAMPLERS", "STARTS",
           "VP_GEOMETRY"]

F64 = torch.float64
SAMPLERS = ("ddpm", "ddim")
STARTS = ("n01", "tilted", "tilted_n01")
# the VP path whose velocity CFG-Zero* and zero-init use on VP levels; the rules do not depend on its clock, and it
# covers s up to ~2.2e4 (the standard schedule's top level is 157)
VP_GEOMETRY = VPPath(beta_min=0.1, beta_max=40.0)
_NARROW = 0.05  # levels below which the tilted posterior is narrow enough for few Gauss-Hermite nodes


# --- laws -----------------------------------------------------------------------------------------------
LAW_FORMS = ("a preset (" + ", ".join(PRESETS) + ")", "single:MU_C:S_C:MU_U:S_U", "rand1d:SEED", "rand1d_iso:SEED",
             "blocks_1d", "mixture:[[W, MEANS, COVS], [W, MEANS, COVS]]",
             "reducible:D:MU:DELTA:VAR1:ORIENT (axes or a seed)")


class LawParts(NamedTuple):
    """What a :class:`Law` builds: the conditional and unconditional mixtures, the classes (for CG and the
    exact Bayes classifier; the conditional first when the law has no classes of its own), their priors and
    the index ``y`` of the conditional class."""

    name: str
    cond: Any  # GaussianMixture (ReducibleMixture for the reducible family)
    uncond: Any
    classes: tuple
    priors: tuple
    y: int

    @property
    def dim(self) -> int:
        return self.cond.dim


def _mixture_args(m: GaussianMixture) -> tuple:
    return (tuple(m.weights.tolist()), tuple(tuple(r) for r in m.means.tolist()),
            tuple(tuple(tuple(r) for r in c) for c in m.covs.tolist()))


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else float(x)


@dataclass(frozen=True)
class Law:
    """A data law by value: ``kind`` (``preset``, ``single``, ``rand1d``, ``rand1d_iso``, ``blocks_1d``, ``mixture``,
    ``reducible``) and its arguments (numbers, strings, nested tuples). Spelled by :meth:`parse` / ``str``."""

    kind: str
    args: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "args", tuple(self.args))
        # building checks every argument (and caches the result): a bad law fails where it is made
        _build_law(self)

    @staticmethod
    def parse(text: str) -> "Law":
        """The law spelled ``text`` (module docstring); ``ValueError`` listing the forms otherwise."""
        return _parse_law(text)

    @staticmethod
    def preset(name: str) -> "Law":
        return Law("preset", (name,))

    @staticmethod
    def mixture(cond: GaussianMixture, uncond: GaussianMixture) -> "Law":
        """The law of any conditional / unconditional mixture pair (any d)."""
        return Law("mixture", (_mixture_args(cond), _mixture_args(uncond)))

    def build(self) -> LawParts:
        """The mixtures of this law (cached per value)."""
        return _build_law(self)

    @property
    def dim(self) -> int:
        return self.build().dim

    def __str__(self) -> str:
        if self.kind in ("preset", "blocks_1d"):
            return self.args[0] if self.kind == "preset" else "blocks_1d"
        if self.kind == "mixture":
            return "mixture:" + json.dumps(self.args, separators=(",", ":"))
        if self.kind == "reducible":
            d, mu, delta, var1, orient = self.args
            return f"reducible:{d}:{format_number(mu)}:{format_number(delta)}:{format_number(var1)}:{orient}"
        return ":".join([self.kind] + [format_number(a) if isinstance(a, float) else str(a) for a in self.args])


@functools.cache
def _parse_law(text: str) -> Law:
    if not isinstance(text, str):
        raise ValueError(f"a law is spelled as text, got {text!r}; forms: {LAW_FORMS}")
    head, _, rest = text.partition(":")
    if head == "single":
        parts = rest.split(":")
        if len(parts) != 4:
            raise ValueError(f"single Gaussians are spelled 'single:MU_C:S_C:MU_U:S_U', got {text!r}")
        return Law("single", tuple(parse_float(p, "each parameter", text) for p in parts))
    if head in ("rand1d", "rand1d_iso"):
        return Law(head, (parse_int(rest, "the seed", text, 0),))
    if head == "mixture":
        try:
            pair = json.loads(rest)
        except json.JSONDecodeError as err:
            raise ValueError(f"a mixture law is 'mixture:' + JSON [[W, MEANS, COVS], [W, MEANS, COVS]], got {text!r}: "
                             f"{err}") from None
        return Law("mixture", _tuples(pair))
    if head == "reducible":
        parts = rest.split(":")
        if len(parts) != 5:
            raise ValueError(f"the reducible family is spelled 'reducible:D:MU:DELTA:VAR1:ORIENT', got {text!r}")
        orient = parts[4] if parts[4] == "axes" else parse_int(parts[4], "ORIENT (axes or a seed)", text, 0)
        return Law("reducible", (parse_int(parts[0], "D", text, 1), *(parse_float(p, n, text) for p, n in
                                                                   zip(parts[1:4], ("MU", "DELTA", "VAR1"))), orient))
    if text == "blocks_1d":
        return Law("blocks_1d")
    if text in PRESETS:
        return Law("preset", (text,))
    raise ValueError(f"unknown law {text!r}; the forms are: {'; '.join(LAW_FORMS)}")


def _blocks(lo: float, hi: float, k: int = 8) -> GaussianMixture:
    centres = torch.linspace(lo, hi, k, dtype=F64)
    s = 0.6 * (hi - lo) / (k - 1)  # overlapping: an almost flat density on [lo, hi] with Gaussian edges
    return GaussianMixture.from_1d([1.0 / k] * k, centres.tolist(), [s] * k)


def _pair(name: str, cond, other) -> LawParts:
    """A two-class law: the conditional is class 0, the unconditional the even mixture of both."""
    return LawParts(name, cond, GaussianMixture.concat([cond, other], [0.5, 0.5]), (cond, other), (0.5, 0.5), 0)


def reducible_line(d: int, orient) -> torch.Tensor:
    """The unit vector ``q`` [d] of the reducible family: ``e_1`` (``axes``) or a seeded random direction."""
    if orient == "axes":
        q = torch.zeros(d, dtype=F64)
        q[0] = 1.0
        return q
    q = torch.randn(d, dtype=F64, generator=torch.Generator().manual_seed(int(orient)))
    return q / q.norm()


@functools.cache
def _build_law(law: Law) -> LawParts:
    kind, args, name = law.kind, law.args, None
    try:
        name = str(law)
    except (TypeError, ValueError):
        pass
    if kind == "preset":
        if len(args) != 1 or args[0] not in PRESETS:
            raise ValueError(f"unknown preset {args!r}; choose one of {tuple(PRESETS)}")
        p = get_preset(args[0])
        if p.classes:
            return LawParts(p.name, p.cond, p.uncond, tuple(p.classes), tuple(p.priors), p.y)
        return LawParts(p.name, p.cond, p.uncond, (p.cond, p.uncond), (0.5, 0.5), 0)
    if kind == "single":
        if len(args) != 4:
            raise ValueError(f"a single-Gaussian law has 4 arguments (MU_C, S_C, MU_U, S_U), got {args!r}")
        mu_c, s_c, mu_u, s_u = (float(a) for a in args)
        if not (s_c > 0 and s_u > 0):
            raise ValueError(f"standard deviations must be positive in {name!r}")
        cond = GaussianMixture.from_1d([1.0], [mu_c], [s_c])
        uncond = GaussianMixture.from_1d([1.0], [mu_u], [s_u])
        return LawParts(name, cond, uncond, (cond, uncond), (0.5, 0.5), 0)
    if kind in ("rand1d", "rand1d_iso"):
        if len(args) != 1 or isinstance(args[0], bool) or not isinstance(args[0], int) or args[0] < 0:
            raise ValueError(f"a random law has one integer seed >= 0, got {args!r}")
        g = torch.Generator().manual_seed(args[0])
        u = lambda n, lo, hi: (lo + (hi - lo) * torch.rand(n, generator=g, dtype=F64)).tolist()  # noqa: E731
        if kind == "rand1d_iso":  # one Gaussian per class, one width for both
            (m0, m1), (s,) = u(2, -3.0, 3.0), u(1, 0.2, 1.0)
            return _pair(name, GaussianMixture.from_1d([1.0], [m0], [s]), GaussianMixture.from_1d([1.0], [m1], [s]))

        def mixture() -> GaussianMixture:
            k = int(torch.randint(1, 4, (1,), generator=g))
            return GaussianMixture.from_1d(u(k, 0.2, 1.0), u(k, -3.0, 3.0), u(k, 0.2, 1.0))

        cond = mixture()
        return _pair(name, cond, mixture())
    if kind == "blocks_1d":
        if args:
            raise ValueError(f"blocks_1d takes no arguments, got {args!r}")
        return _pair(name, _blocks(1.0, 2.0), _blocks(-2.0, -1.0))
    if kind == "mixture":
        if len(args) != 2 or any(len(a) != 3 for a in args):
            raise ValueError(f"a mixture law is (cond, uncond), each (weights, means, covs), got {args!r:.200}")
        cond, uncond = (GaussianMixture(*a) for a in args)
        if cond.dim != uncond.dim:
            raise ValueError(f"conditional and unconditional dimensions differ: {cond.dim} and {uncond.dim}")
        return LawParts(name, cond, uncond, (cond, uncond), (0.5, 0.5), 0)
    if kind == "reducible":
        if len(args) != 5:
            raise ValueError(f"a reducible law has 5 arguments (D, MU, DELTA, VAR1, ORIENT), got {args!r}")
        d, mu, delta, var1, orient = args
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ValueError(f"D must be an integer >= 1, got {d!r}")
        if not float(var1) > 0:
            raise ValueError(f"VAR1 must be > 0, got {var1!r}")
        if orient != "axes" and (isinstance(orient, bool) or not isinstance(orient, int) or orient < 0):
            raise ValueError(f"ORIENT must be 'axes' or an integer seed >= 0, got {orient!r}")
        Q = reducible_line(d, orient)[:, None]
        means = [[mu - delta], [mu + delta]]
        cond = ReducibleMixture(Q, [0.5, 0.5], means, [[[1.0]], [[1.0]]], [1.0, 1.0])
        other = ReducibleMixture(Q, [1.0], [[-mu]], [[[var1]]], [var1])
        uncond = ReducibleMixture(Q, [0.25, 0.25, 0.5], means + [[-mu]], [[[1.0]], [[1.0]], [[var1]]],
                                  [1.0, 1.0, var1])
        return LawParts(name, cond, uncond, (cond, other), (0.5, 0.5), 0)
    raise ValueError(f"unknown law kind {kind!r}; the forms are: {'; '.join(LAW_FORMS)}")


# --- schedules and levels ---------------------------------------------------------------------------------
SCHEDULE_FORMS = ("paper", "lin:T:ABAR_T", "linear:T:B1:BT", "cosine:T", "standard:T", "flow:N", "flow_shift:N:SHIFT")
_SCHEDULE_ARGS = {"paper": (), "lin": (int, float), "linear": (int, float, float), "cosine": (int,), "standard": (int,),
                  "flow": (int,), "flow_shift": (int, float)}


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


@dataclass(frozen=True)
class Schedule:
    """The noise levels a sampler visits, by value: a VP schedule or the linear (flow) path (module docstring)."""

    kind: str
    args: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "args", tuple(self.args))
        types = _SCHEDULE_ARGS.get(self.kind)
        if types is None:
            raise ValueError(f"unknown schedule {self.kind!r}; the forms are: {', '.join(SCHEDULE_FORMS)}")
        if len(self.args) != len(types) or not all(
                isinstance(a, t) and not isinstance(a, bool) or (t is float and isinstance(a, int) and not isinstance(a, bool))
                for a, t in zip(self.args, types)):
            raise ValueError(f"schedule {self.kind!r} takes arguments of types {[t.__name__ for t in types]}, "
                             f"got {self.args!r}")
        object.__setattr__(self, "args", tuple(t(a) for a, t in zip(self.args, types)))
        if self.args and self.args[0] < (1 if self.kind.startswith("flow") else 2):
            raise ValueError(f"the step count of {self.kind!r} must be >= {1 if self.kind.startswith('flow') else 2}, "
                             f"got {self.args[0]}")
        if self.kind == "flow_shift" and not self.args[1] > 0:
            raise ValueError(f"the shift must be > 0, got {self.args[1]}")
        _levels_of(self)  # builds (and caches) the levels: a bad schedule fails where it is made

    @staticmethod
    def parse(text: str) -> "Schedule":
        return _parse_schedule(text)

    @property
    def is_flow(self) -> bool:
        return self.kind in ("flow", "flow_shift")

    @property
    def vp(self) -> VPSchedule:
        """The discrete VP schedule (``ValueError`` on the flow path, which has none)."""
        if self.is_flow:
            raise ValueError(f"{self} is a flow path, not a VP schedule")
        return _levels_of(self)

    def sigmas(self) -> torch.Tensor:
        """The contract levels visited, ending at 0. [steps + 1] float64 (a fresh copy)."""
        lv = _levels_of(self)
        return (lv.sampling_sigmas() if isinstance(lv, VPSchedule) else lv).clone()

    @property
    def steps(self) -> int:
        return self.sigmas().numel() - 1

    @property
    def path(self) -> Path:
        """The path whose velocity CFG-Zero* and zero-init use on these levels."""
        return LINEAR if self.is_flow else VP_GEOMETRY

    def __str__(self) -> str:
        return ":".join([self.kind] + [format_number(a) if isinstance(a, float) else str(a) for a in self.args])


@functools.cache
def _parse_schedule(text: str) -> Schedule:
    if not isinstance(text, str):
        raise ValueError(f"a schedule is spelled as text, got {text!r}; forms: {', '.join(SCHEDULE_FORMS)}")
    head, *parts = text.split(":")
    types = _SCHEDULE_ARGS.get(head)
    if types is None or len(parts) != len(types):
        raise ValueError(f"unknown schedule {text!r}; the forms are: {', '.join(SCHEDULE_FORMS)}")
    return Schedule(head, tuple(parse_int(p, "the step count", text, 1) if t is int else parse_float(p, "a parameter", text)
                                for p, t in zip(parts, types)))


@functools.cache
def _levels_of(s: Schedule):
    a = s.args
    try:
        if s.kind == "paper":
            return VPSchedule.paper_1d()
        if s.kind == "lin":
            return lin_reaching(*a)
        if s.kind == "linear":
            return VPSchedule.linear(*a)
        if s.kind == "cosine":
            return VPSchedule.cosine(*a)
        if s.kind == "standard":
            if a[0] > 1000:
                raise ValueError(f"the standard schedule has 1000 steps, got {a[0]}")
            return VPSchedule.standard().respace(a[0])
        if s.kind == "flow":
            return sampling_sigmas(LINEAR, uniform_times(a[0]))
        if s.kind == "flow_shift":
            return sampling_sigmas(LINEAR, shift_times(uniform_times(a[0]), a[1]))
    except ValueError as err:
        raise ValueError(f"bad schedule {s}: {err}") from None
    raise ValueError(f"unknown schedule {s.kind!r}")


@dataclass(frozen=True)
class Levels:
    """Where and how a sampler runs: the schedule, the sampler (``ddpm`` or ``ddim``) and the start
    (``n01``, ``tilted`` or ``tilted_n01``). Text: ``SCHEDULE[/SAMPLER[/START]]``."""

    schedule: Schedule
    sampler: str = ""  # "" = the schedule's default: ddpm on VP, ddim (the flow's Euler step) on the flow path
    start: str = "n01"

    def __post_init__(self):
        if not isinstance(self.schedule, Schedule):
            raise ValueError(f"schedule must be a Schedule (Schedule.parse), got {self.schedule!r}")
        if self.sampler == "":
            object.__setattr__(self, "sampler", "ddim" if self.schedule.is_flow else "ddpm")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {SAMPLERS}")
        if self.start not in STARTS:
            raise ValueError(f"unknown start {self.start!r}; choose one of {STARTS}")

    @staticmethod
    def parse(text: str) -> "Levels":
        if not isinstance(text, str):
            raise ValueError(f"levels are spelled 'SCHEDULE[/SAMPLER[/START]]', got {text!r}")
        parts = text.split("/")
        if len(parts) > 3:
            raise ValueError(f"levels are spelled 'SCHEDULE[/SAMPLER[/START]]', got {text!r}")
        return Levels(Schedule.parse(parts[0]), *parts[1:])

    def sigmas(self) -> torch.Tensor:
        return self.schedule.sigmas()

    @property
    def steps(self) -> int:
        return self.schedule.steps

    def start_density(self, parts: LawParts, reward):
        """The log-density of the start in VP coordinates at the first level (for ``output_density``)."""
        if self.start == "n01":
            return vp_start(parts.dim)
        a = sigma_to_abar(self.sigmas()[0].item())
        return tilted_start(parts.cond, reward, a, marginal=self.start == "tilted")

    def __str__(self) -> str:
        default = "ddim" if self.schedule.is_flow else "ddpm"
        out = str(self.schedule)
        if self.sampler != default or self.start != "n01":
            out += "/" + self.sampler
        if self.start != "n01":
            out += "/" + self.start
        return out


# --- weights ------------------------------------------------------------------------------------------------
def weak_model(cond: GaussianMixture, spec: str) -> GaussianMixture:
    """The autoguidance weak model of ``cond``: ``cov:S`` (covariances times S) or ``shift:D`` (means + D)."""
    kind, _, value = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    try:
        v = float(value)
    except ValueError:
        raise ValueError(f"bad model must be 'cov:S' or 'shift:D', got {spec!r}") from None
    if kind == "cov":
        return degrade(cond, v)
    if kind == "shift":
        return GaussianMixture(cond.weights, cond.means + v, cond.covs)
    raise ValueError(f"bad model must be 'cov:S' or 'shift:D', got {spec!r}")


def tilted_mean_denoiser(cond, reward):
    """The tilted posterior mean ``m_R(x, s)`` as a denoiser: ``analytic.optimal_denoiser``, except below
    ``s = 0.05``, where the posterior is narrow and the Gauss-Hermite posterior route
    (``optimal_guidance(method="gh")``) meets the same 1e-8 tolerance with at most 32 nodes per dimension, 10-30x
    faster than the dense quadrature the denoiser tries first in 2-D (it falls back to the denoiser if not)."""
    dense = optimal_denoiser(cond, reward)

    def m_R(x: torch.Tensor, s: float) -> torch.Tensor:
        if s < _NARROW:
            a = sigma_to_abar(s)
            try:
                return optimal_guidance(cond, reward, x * math.sqrt(a), a, method="gh", tol=1e-8,
                                        max_nodes=32 if cond.dim == 2 else 256).tilted_mean
            except RuntimeError:
                pass
        return dense(x, s)

    return m_R


# --- methods ------------------------------------------------------------------------------------------------
class Built(NamedTuple):
    """What :meth:`Method.build` returns: the guided denoiser and the reward whose tilted target it aims at,
    both from the method's one weight, and the law's parts and levels they were built for."""

    guided: Any
    reward: Any
    law: LawParts
    levels: "Levels | None"

    def start(self):
        """The start log-density of :attr:`levels` (``levels.start``) for this law and reward."""
        return self.levels.start_density(self.law, self.reward)


@dataclass(frozen=True)
class Method(MethodValue):
    """One guided sampler by value: :class:`sampler.method.Method` (its fields, spelling, ``label``, ``weight``
    and ``guide``; module docstring there) with what needs the exact mathematics: the reward it aims at
    (:meth:`reward`) and the guided denoiser on a law (:meth:`build`). Rules: ``autog`` uses the weak model
    ``bad`` (:func:`weak_model`); ``cg`` the exact Bayes classifier; ``optimal`` the exact tilted posterior mean
    of the CFG reward; the target of every rule is its reward at ``w``.
    """

    def __post_init__(self):
        super().__post_init__()
        weak_model(GaussianMixture.from_1d([1.0], [0.0], [1.0]), self.bad)  # validates the spelling

    def reward(self, parts: LawParts):
        """The reward whose tilted target the method aims at (its rule's reward at weight ``w``)."""
        if self.rule == "autog":
            return AutoGReward(parts.cond, weak_model(parts.cond, self.bad), self.w)
        if self.rule == "cg":
            return ClassifierReward(list(parts.classes), list(parts.priors), parts.y, self.w)
        if isinstance(parts.cond, ReducibleMixture):
            return ReducibleRatioReward(parts.cond, parts.uncond, self.w)
        return CFGReward(parts.cond, parts.uncond, self.w)

    def build(self, law: Law | LawParts, levels: Levels | Schedule, model: str = "exact") -> Built:
        """The guided denoiser of this method on ``law`` for ``levels`` and its reward, from the same weight.
        ``model``: the ``exact`` mixtures, or the shipped ``trained`` toy networks of the law's preset
        (``toy.load_pretrained``; VP schedules only). Stateful rules (``apg_momentum``) get fresh objects."""
        parts = law.build() if isinstance(law, Law) else law
        if not isinstance(parts, LawParts):
            raise ValueError(f"law must be a Law (Law.parse), got {law!r}")
        lv = Levels(levels) if isinstance(levels, Schedule) else levels
        if not isinstance(lv, Levels):
            raise ValueError(f"levels must be Levels or a Schedule (Levels.parse), got {levels!r}")
        sigmas = lv.sigmas()
        reward = self.reward(parts)
        if model == "exact":
            c, u = parts.cond.denoise, parts.uncond.denoise
            if isinstance(parts.cond, GaussianMixture):
                m = MixtureModel({"c": parts.cond, "u": parts.uncond})
                c, u = bind(m, "c"), bind(m, "u")
        elif model == "trained":
            if self.rule == "optimal":
                raise ValueError("the optimal guidance is the exact mixture's; use model='exact'")
            from sampler import EpsModel
            from toy import load_pretrained

            sched = lv.schedule.vp
            nets = {role: load_pretrained(parts.name, role).net for role in ("cond", "uncond")}
            c, u = bind(EpsModel(nets["cond"], sched), 0), bind(EpsModel(nets["uncond"], sched), None)
        else:
            raise ValueError(f"model must be 'exact' or 'trained', got {model!r}")
        kw: dict = {"path": lv.schedule.path}
        if self.rule == "autog":
            kw["weak"] = bind(MixtureModel({"bad": reward.bad}), "bad")
        elif self.rule == "cg":
            kw["grad"] = lambda x, s: reward.num.score_ve(x, s) - reward.den.score_ve(x, s)
        elif self.rule == "optimal":
            kw["tilted_mean"] = tilted_mean_denoiser(parts.cond, reward)
        return Built(self.guide(c, u, sigmas, **kw), reward, parts, lv)


def parse(kind: str, text: str):
    """``Law.parse``, ``Schedule.parse``, ``Levels.parse`` or ``Method.parse`` by ``kind``."""
    parsers = {"law": Law.parse, "schedule": Schedule.parse, "levels": Levels.parse, "method": Method.parse}
    if kind not in parsers:
        raise ValueError(f"unknown kind {kind!r}; choose one of {tuple(parsers)}")
    return parsers[kind](text)
