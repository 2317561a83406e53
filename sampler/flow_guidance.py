"""Guidance rules made for flow-matching models, as guidance objects of the one protocol (``cond``,
``active(sigma)``, ``delta(x, sigma, d_cond)``, ``__call__``; :mod:`sampler.guidance`), so the existing samplers
run them and :class:`~sampler.reg.REG` wraps them. Everything is in contract coordinates (``x`` VE, level
``sigma``); a path's velocity enters only through the affine map ``v = a x + b D`` of :mod:`sampler.paths`
(linear path: ``v = eps - x0``, ``a = 1/s``, ``b = -(1 + s)/s``). Weights use the library's convention
``pred_c + w (pred_c - pred_u)``; papers and diffusers write ``pred_u + g (pred_c - pred_u)``, ``g = w + 1``.

Which path. The rules below that act on a velocity (:class:`CFGZeroStar`, :class:`ZeroInit`, :class:`APG` with
``on="velocity"``) are different rules on different paths (CFG-Zero* on ``correlated_2d``, ``w = 2``, ``sigma = 2``:
the linear- and VP-path outputs differ by 0.67 on average over ``x ~ N(0, (1 + sigma^2) I)``), so the path is never
a silent default. It is taken from the models: a denoiser made by
:func:`~sampler.model.bind` from a :class:`~sampler.model.VelocityModel` carries that model's path
(:func:`~sampler.model.model_path`), and so does a wrapped rule. ``path=`` may be passed too; one that contradicts
the models' path (or models that disagree with each other) is a ``ValueError`` naming both. Plain denoisers carry
no path (exact mixtures, eps / v / x0 networks: ``D`` is path-free, the velocity is not), so there ``path=`` is
required: defaulting to the linear path would silently run the rectified-flow rule on, say, a DDPM network. Only
the rule's geometry matters, not its clock: ``VPPath`` with any betas gives the same rule where both reach.

CFG on the velocity is :class:`~sampler.guidance.CFG` itself. ``v_c + w (v_c - v_u)`` combines predictions with
weights ``1 + w`` and ``-w``, which sum to one, and the map ``D -> v = a x + b D`` is affine with ``x`` fixed, so
``v_c + w (v_c - v_u) = a x + b (D_c + w (D_c - D_u))``: the same guided ``D`` on every path. Rules whose
weights do not sum to one, or that measure angles and norms, do depend on the prediction they act on:

- :class:`CFGZeroStar` (Fan et al. 2025, arXiv 2503.18886, sec. 4.1; formula as in the authors' code and
  diffusers' ``ClassifierFreeZeroStarGuidance``): ``v = v_c + w (v_c - s* v_u)``, ``s* = <v_c, v_u> / |v_u|^2``
  per sample (the least-squares scale of ``v_u`` towards ``v_c``). With ``v = a x + b D`` the guided denoiser is
  ``D = D_c + w (D_c - s* D_u) + w (1 - s*) (a / b) x``: it keeps a multiple of ``x`` that CFG cancels.
- :class:`ZeroInit` (ibid. sec. 4.2, "zero-init"): the velocity is 0 for the first steps. Guidance holds no
  step counter, so "the first K steps" is a level threshold: zero while ``sigma >= sigma_zero``, with
  :func:`zero_init_sigma` giving the threshold that zeroes the first K levels of a given grid. A zero
  velocity is ``D = -(a / b) x`` (linear path: ``D = x_t``, the state does not move). It wraps any guidance,
  so ``ZeroInit(REG(CFGZeroStar(...)), ...)`` keeps REG away from the zeroed steps, which are no reward tilt.
- :class:`APG` (Sadat et al. 2024, arXiv 2410.02416, sec. 3 and 4, and the paper's PyTorch listing, of which
  ``diffusers.guiders.adaptive_projected_guidance.normalized_guidance`` is a copy): with
  ``Delta = pred_c - pred_u``, (i) momentum ``Delta <- Delta + beta Delta_prev`` (running sum; the paper uses
  ``beta < 0``, "reverse momentum"), (ii) norm cap ``Delta <- Delta min(1, r / |Delta|)``, (iii) split against the
  conditional prediction, ``Delta_par = <Delta, pred_c> / |pred_c|^2 pred_c``, ``Delta_orth = Delta - Delta_par``,
  (iv) ``pred = pred_c + w (Delta_orth + eta Delta_par)``. The paper acts on ``D`` (``on="x0"``, path-free);
  diffusers' guider acts on whatever the network predicts, the velocity for flows (``on="velocity"``).
  Momentum is state across steps; see :class:`APG` for how it is kept.
- Both projections are per sample over all non-batch dimensions, so in ``d = 1`` they degenerate:
  ``s* v_u = v_c`` makes CFG-Zero* the conditional model, and ``Delta`` parallel to ``D_c`` makes APG CFG with
  weight ``w eta`` (plus momentum and cap). Comparisons of these rules need ``d >= 2``. (Equation numbers of both papers are
  not quoted: only the abstracts were checked here; the formulas follow the authors' code as mirrored in
  diffusers 0.42, installed, and the sections are from memory.)

REG in velocity form (THEORY.md sections 4, 6 and 8, linear path, ``x_t = (1 - t) x~``, ``s = t/(1 - t)``).
Tweedie on the path: ``x0^ = (x_t + t^2 grad log p_t)/(1 - t)``, so ``v = (x_t - x0^)/t = -x_t/(1 - t) - t/(1 - t) grad log p_t``.
Tilting the marginals by the expected terminal reward ``E_t(x_t) = E[R_0(x_0) | x_t]`` (ideal chain) adds
``grad log E_t`` to the score, so the optimal guided velocity is

    v* = v_c - t/(1 - t) grad_{x_t} log E_t = (x_t - m_R) / t,

``m_R`` the reward-tilted posterior mean: the same ``D* = m_R`` as on VP (THEORY section 8), in velocity
units. REG's approximation ``E_t ~ R_0(x0^(x_t))`` with the reward gradient at ``x0^`` replaced by the present-time
one in data units (``grad_{x0} log R_0 ~ grad_{x~} log R_t = (1 - t) grad_{x_t} log R_t``) gives, with
``K = dv_c/dx_t`` and ``dx0^/dx_t = I - t K``,

    v_REG = v_c + (1 - t) (I - t K^T) g_v,        g_v = -t/(1 - t) grad_{x_t} log R_t   (CFG: g_v = w (v_c - v_u)).

This is exactly :class:`~sampler.reg.REG`'s ``D``-form ``D_c + J_D^T delta``, because ``J_D = dD_c/dx~ =
(1 - t)(I - t K)`` and ``g_v = b delta``: nothing in REG is written again for flows (the tests check the two
forms against each other). The paper's estimator becomes ``g_v * (1 - t)(1 - t K^T 1)``. Compared with the eps
form ``g (1 - c J^T 1)`` the velocity form carries the extra factor ``1 - t = alpha_t``, because ``v`` mixes
``eps`` and ``x0``; both vanish at pure noise, where ``J_D = Cov(x_0 | x_t) / s^2 -> 0``.

What changes on flows and what does not. Unchanged: the posterior at a contract level, hence ``D``, ``m_R``,
``E_t`` and the ideal-chain golden (a function of the level ``s`` alone), REG's correction in ``D`` units and
every estimator. Changed: only the levels a sampler visits (``paths.sampling_sigmas``) and the start; on the
linear path ``t = 1`` is pure noise, so the tilted chain's start ``N(0, I) E_1 = N(0, I)`` needs no tilt (up
to ``T_NOISE_CAP``), unlike a truncated VP schedule (THEORY section 4). The sampler-chain golden of a
deterministic flow sampler (Euler) is degenerate: its kernels are maps, so Theorem 1 can only reweight the
start, ``pbar(x_T) ∝ p(x_T) R_0(Phi(x_T))``; the stochastic samplers (ddpm, ddim eta > 0) keep THEORY's
backward recursion, run on the flow's levels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Union

import torch

from .guidance import Guidance, check_callable, same_shape
from .model import Denoiser, model_path
from .paths import Path, denoised_from_velocity, velocity_from_denoised
from .samplers import check_sigmas
from .schedules import check_count, check_number
from .weights import WeightSchedule, as_schedule

__all__ = ["CFGZeroStar", "optimised_scale", "ZeroInit", "zero_init_sigma", "APG", "APG_SPACES", "resolve_path"]

Weight = Union[float, WeightSchedule]
APG_SPACES = ("x0", "velocity")




def resolve_path(path: Optional[Path], sources: dict, *, rule: str, required: bool = True) -> Optional[Path]:
    """The path ``rule`` acts on: ``path`` if given, else the one the ``sources`` (named denoisers or rules) carry
    (:func:`~sampler.model.model_path`). ``ValueError`` naming both when sources disagree with each other or with
    ``path``, and, when ``required``, when there is none at all (plain denoisers carry no path)."""
    if path is not None and not isinstance(path, Path):
        raise ValueError(f"path must be a sampler.paths.Path or None, got {path!r}")
    found = [(name, model_path(f)) for name, f in sources.items()]
    found = [(name, p) for name, p in found if p is not None]
    for name, p in found[1:]:
        if p != found[0][1]:
            raise ValueError(f"{rule}: {found[0][0]} is on {found[0][1]!r} but {name} on {p!r}; "
                             "one rule acts on one path")
    own = found[0][1] if found else None
    if path is not None and own is not None and path != own:
        raise ValueError(f"{rule}: path={path!r} contradicts {own!r}, the path of {found[0][0]}; "
                         "leave path unset to use the models' path")
    out = path if path is not None else own
    if out is None and required:
        raise ValueError(f"{rule} acts on a path's velocity, and {', '.join(sources)} carry no path (plain denoisers: "
                         "exact mixtures, eps / v / x0 networks): pass path= (sampler.LINEAR for rectified flow, "
                         "VPPath() for a VP model, ...); a VelocityModel's denoisers carry theirs")
    return out


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample inner product over all non-batch dimensions. [N, ...] x [N, ...] -> [N]"""
    return (a * b).flatten(1).sum(1)


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-sample scalar [N] shaped to broadcast against [N, ...]."""
    return v.reshape((like.shape[0],) + (1,) * (like.ndim - 1))


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``den > 0``, else 0 (the quantity it scales is then 0 too)."""
    pos = den > 0
    return torch.where(pos, num / torch.where(pos, den, torch.ones_like(den)), torch.zeros_like(num))


def _run(g, x: torch.Tensor, sigma: float) -> torch.Tensor:
    d_c = g.cond(x, sigma)
    if not g.active(sigma):
        return d_c
    return d_c + g.delta(x, sigma, d_c)


def optimised_scale(v_c: torch.Tensor, v_u: torch.Tensor) -> torch.Tensor:
    """CFG-Zero*'s ``s* = <v_c, v_u> / |v_u|^2`` per sample over all non-batch dimensions, 0 where ``v_u = 0``
    (the authors add 1e-8 to the denominator instead). [N, ...] x [N, ...] -> [N]"""
    if v_c.shape != v_u.shape or v_c.ndim < 1:
        raise ValueError(f"need two predictions of one shape [N, ...], got {tuple(v_c.shape)} and {tuple(v_u.shape)}")
    return _ratio(_dot(v_c, v_u), _dot(v_u, v_u))


@dataclass(frozen=True)
class CFGZeroStar:
    """CFG-Zero*'s optimised scale (arXiv 2503.18886, sec. 4.1) on the velocity of ``path``:
    ``v = v_c + w(sigma) (v_c - s* v_u)``, ``s* = <v_c, v_u> / |v_u|^2`` per sample (0 where ``v_u = 0``).

    ``w`` is this library's weight (the paper's guidance scale minus 1). The zero-init half of CFG-Zero* is
    :class:`ZeroInit`, which wraps this (or any) guidance. On the VE path the velocity is ``sigma_max eps``, so
    this is the same rule on eps; on VP paths it acts on the v-prediction direction.

    ``path``: taken from ``cond`` / ``uncond`` when they carry one (denoisers bound from a
    :class:`~sampler.model.VelocityModel`); required for plain denoisers; a contradicting one is a ``ValueError``
    (module docstring, "Which path"). After construction ``path`` holds the path the rule acts on."""

    cond: Denoiser
    uncond: Denoiser
    weight: Weight = 1.0
    path: Optional[Path] = None

    def __post_init__(self):
        check_callable("cond", self.cond)
        check_callable("uncond", self.uncond)
        path = resolve_path(self.path, {"cond": self.cond, "uncond": self.uncond}, rule="CFGZeroStar")
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "weight", as_schedule(self.weight))

    def active(self, sigma: float) -> bool:
        return self.weight(sigma) != 0

    def delta(self, x: torch.Tensor, sigma: float, d_cond: torch.Tensor) -> torch.Tensor:
        d_u = same_shape("uncond", self.uncond(x, sigma), d_cond)
        v_c = velocity_from_denoised(self.path, x, sigma, d_cond)
        v_u = velocity_from_denoised(self.path, x, sigma, d_u)
        v = v_c + self.weight(sigma) * (v_c - _bcast(optimised_scale(v_c, v_u), x) * v_u)
        return denoised_from_velocity(self.path, x, sigma, v) - d_cond

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return _run(self, x, sigma)


def zero_init_sigma(sigmas, steps: int = 1) -> float:
    """The :class:`ZeroInit` threshold that zeroes exactly the first ``steps`` levels of the sampler grid
    ``sigmas`` (strictly decreasing): ``sigmas[steps - 1]``; ``inf`` (never) for ``steps = 0``. The authors'
    code zeroes one step; diffusers' docs quote the paper's "first 4% of the steps"."""
    s = check_sigmas(sigmas)
    if check_count(steps, "steps", least=0) >= s.numel():
        raise ValueError(f"steps must be an integer in [0, {s.numel() - 1}], got {steps!r}")
    return math.inf if steps == 0 else s[int(steps) - 1].item()


@dataclass(frozen=True)
class ZeroInit:
    """CFG-Zero*'s zero-init (arXiv 2503.18886, sec. 4.2) around any guidance: the path velocity is 0 while
    ``sigma >= sigma_zero`` (no model is called there), else ``guidance(x, sigma)``. A zero velocity is
    ``D = -(a/b) x``; on the linear path ``D = x_t``, and a sampler step leaves ``x_t`` where it is.

    ``guidance`` needs ``cond``, ``active`` and ``__call__`` (any guidance object, or a :class:`~sampler.reg.REG`
    of one). Build ``sigma_zero`` with :func:`zero_init_sigma` from the grid the sampler walks.

    ``path``: taken from the wrapped rule and its models (through any chain of ``.guidance``, e.g.
    ``REG(CFGZeroStar(...))``) when they carry one; required otherwise; a contradicting one is a ``ValueError``."""

    guidance: object
    sigma_zero: float
    path: Optional[Path] = None

    def __post_init__(self):
        for attr in ("cond", "active"):
            if not hasattr(self.guidance, attr):
                raise ValueError(f"ZeroInit wraps a guidance with cond, active and __call__; {self.guidance!r} has no {attr}")
        check_callable("guidance", self.guidance)
        try:
            if isinstance(self.sigma_zero, (bool, str)):
                raise TypeError
            s = float(self.sigma_zero)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"sigma_zero must be a number, got {self.sigma_zero!r}") from None
        if math.isnan(s) or s <= 0:
            raise ValueError(f"sigma_zero must be > 0 (inf: never zero), got {s}")
        sources, g, name = {}, self.guidance, "guidance"
        while g is not None:
            sources[name] = g
            for branch in ("cond", "uncond"):
                if getattr(g, branch, None) is not None:
                    sources[f"{name}.{branch}"] = getattr(g, branch)
            g, name = getattr(g, "guidance", None), f"{name}.guidance"
        object.__setattr__(self, "path", resolve_path(self.path, sources, rule="ZeroInit"))
        object.__setattr__(self, "sigma_zero", s)

    @property
    def cond(self) -> Denoiser:
        return self.guidance.cond

    def zeroed(self, sigma: float) -> bool:
        return float(sigma) >= self.sigma_zero

    def active(self, sigma: float) -> bool:
        return self.zeroed(sigma) or self.guidance.active(sigma)

    def delta(self, x: torch.Tensor, sigma: float, d_cond: torch.Tensor) -> torch.Tensor:
        if self.zeroed(sigma):
            return self(x, sigma) - d_cond
        elif isinstance(self.guidance, Guidance):
            return self.guidance.delta(x, sigma, d_cond)
        else:
            return self.guidance(x, sigma) - d_cond

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        if self.zeroed(sigma):
            return denoised_from_velocity(self.path, x, sigma, torch.zeros_like(x))
        return self.guidance(x, sigma)


class _Momentum:
    """The one mutable part of :class:`APG`: the running sum of past deltas and the level it was last fed."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.running: Optional[torch.Tensor] = None
        self.last_sigma: Optional[float] = None

    def update(self, diff: torch.Tensor, sigma: float, beta: float) -> torch.Tensor:
        if self.running is not None:
            if sigma > self.last_sigma:
                raise ValueError(
                    f"APG momentum: the noise level rose from {self.last_sigma} to {sigma}, so a new sampling run "
                    "started on old momentum; call reset() before every run"
                )
            if self.running.shape != diff.shape:
                raise ValueError(
                    f"APG momentum holds shape {tuple(self.running.shape)}, got {tuple(diff.shape)}; call reset() "
                    "before a run with another batch"
                )
            diff = diff + beta * self.running
        self.running, self.last_sigma = diff, sigma
        return diff


@dataclass(frozen=True)
class APG:
    """Adaptive projected guidance (arXiv 2410.02416; formulas in the module docstring) on ``D``
    (``on="x0"``, the paper's choice) or on ``path``'s velocity (``on="velocity"``, as diffusers' guider does for
    flows). ``eta`` weighs the parallel part (1: CFG, 0: the paper's default); ``norm_cap`` is ``r`` (None: no
    cap); ``momentum`` is ``beta`` (0: none; the paper uses negative values). Each is any real number (Python,
    numpy or a one-element tensor; not a boolean), read once by :func:`~sampler.schedules.check_number`.

    ``path`` (``on="velocity"`` only): taken from ``cond`` / ``uncond`` when they carry one, required otherwise,
    a contradicting one is a ``ValueError``; with ``on="x0"`` the rule is path-free and ``path=`` is refused.

    State. With ``momentum != 0`` an APG object is stateful: every call of ``delta`` (one per guided denoiser
    evaluation; twice per step under Heun, never where the weight is 0) adds to a running sum. Call
    :meth:`reset` before each sampling run. A run that starts without it is caught when the noise level rises
    (or the batch shape changes), with a ``ValueError`` rather than a silent reset. With ``momentum = 0``
    there is no state and the object is a pure function like every other guidance."""

    cond: Denoiser
    uncond: Denoiser
    weight: Weight = 1.0
    eta: float = 0.0
    momentum: float = 0.0
    norm_cap: Optional[float] = None
    on: str = "x0"
    path: Optional[Path] = None
    _state: _Momentum = field(default_factory=_Momentum, init=False, repr=False, compare=False)

    def __post_init__(self):
        check_callable("cond", self.cond)
        check_callable("uncond", self.uncond)
        if self.on not in APG_SPACES:
            raise ValueError(f"APG acts on one of {APG_SPACES}, got on={self.on!r}")
        if self.on == "x0" and self.path is not None:
            raise ValueError(f"APG(on='x0') acts on D and uses no path; path={self.path!r} only applies with "
                             "on='velocity'")
        if self.on == "velocity":
            path = resolve_path(self.path, {"cond": self.cond, "uncond": self.uncond}, rule="APG(on='velocity')")
            object.__setattr__(self, "path", path)
        for name in ("eta", "momentum"):
            object.__setattr__(self, name, check_number(getattr(self, name), name))
        if self.norm_cap is not None:
            cap = check_number(self.norm_cap, "norm_cap")
            if cap <= 0:
                raise ValueError(f"norm_cap must be a positive number or None, got {self.norm_cap!r}")
            object.__setattr__(self, "norm_cap", cap)
        object.__setattr__(self, "weight", as_schedule(self.weight))

    def reset(self) -> None:
        """Forget the momentum (call before every sampling run when ``momentum != 0``)."""
        self._state.reset()

    def active(self, sigma: float) -> bool:
        return self.weight(sigma) != 0

    def _update(self, pred_c: torch.Tensor, diff: torch.Tensor, sigma: float) -> torch.Tensor:
        """``w (Delta_orth + eta Delta_par)`` after momentum and the norm cap, in the space of ``pred_c``."""
        if self.momentum != 0:
            diff = self._state.update(diff, float(sigma), float(self.momentum))
        if self.norm_cap is not None:
            norm = _dot(diff, diff).sqrt().clamp(min=torch.finfo(diff.dtype).tiny)  # [N]
            diff = diff * _bcast(torch.clamp(self.norm_cap / norm, max=1.0), diff)
        par = _bcast(_ratio(_dot(diff, pred_c), _dot(pred_c, pred_c)), diff) * pred_c
        return self.weight(sigma) * ((diff - par) + self.eta * par)

    def delta(self, x: torch.Tensor, sigma: float, d_cond: torch.Tensor) -> torch.Tensor:
        d_u = same_shape("uncond", self.uncond(x, sigma), d_cond)
        if self.on == "x0":
            return self._update(d_cond, d_cond - d_u, sigma)
        elif self.on == "velocity":
            v_c = velocity_from_denoised(self.path, x, sigma, d_cond)
            v_u = velocity_from_denoised(self.path, x, sigma, d_u)
            v = v_c + self._update(v_c, v_c - v_u, sigma)
            return denoised_from_velocity(self.path, x, sigma, v) - d_cond
        else:
            raise ValueError(f"APG acts on one of {APG_SPACES}, got on={self.on!r}")

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return _run(self, x, sigma)
