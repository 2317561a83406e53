"""Gaussian paths ``x_t = alpha_t x_0 + sigma_t eps`` (linear / rectified flow, VP, VE) in the one contract.

THEORY.md section 8: every Gaussian path is a rescaled VE path, ``x~ = x_t / alpha_t = x_0 + s eps`` with
``s = sigma_t / alpha_t``, so the contract's ``D(x~, s, cond)`` and every sampler, guidance and REG estimator
serve all paths; a path only decides which levels ``s`` a sampler visits and how a network's own
parameterisation (a velocity, say) maps to ``D``. Time runs over ``t`` in [0, 1] with ``t = 0`` the data.

- :class:`LinearPath`: rectified flow / flow matching (SD3, Flux), ``alpha = 1 - t``, ``sigma = t``, ``s = t/(1-t)``;
- :class:`VPPath`: the VP-SDE with linear ``beta(t)`` (Song et al. 2021, eq. 11; DDPM's continuous limit),
  ``alpha^2 = abar(t) = exp(-B(t))``, ``B(t) = beta_min t + (beta_max - beta_min) t^2 / 2``, ``s = sqrt(e^B - 1)``;
- :class:`VEPath`: ``alpha = 1``, ``sigma = sigma_max t`` (EDM's ``sigma(t) = t``, rescaled to [0, 1]), ``s = sigma_max t``.

Written once here: the level conversion (:attr:`PathPoint.contract_sigma` and its inverse
:meth:`Path.time_of_sigma`) and the affine map between a path's velocity ``v = dx_t/dt = alpha' x0 + sigma' eps``
and ``D`` (:func:`velocity_map`): with ``eps^ = (x~ - D)/s``, ``v = a x~ + b D``, ``a = sigma'/s``,
``b = alpha' - sigma'/s``; ``b < 0`` because ``s(t)`` increases, so the map inverts. On the linear path
``v = eps - x0``, ``a = 1/s``, ``b = -(1 + s)/s``, and ``D = x_t - t v``.

Levels (descending ``t``, ending at 0): :func:`uniform_times`, :func:`logit_normal_times` (quantiles of SD3's
training density, Esser et al. 2024, sec. 3.1), :func:`shift_times` (SD3's shift ``t' = s t / (1 + (s - 1) t)``,
ibid. sec. 5.3.2; section numbers from memory, the formulas checked against diffusers' scheduler in the tests), and :func:`sampling_sigmas`, which turns them into the contract levels a sampler walks.

The noise end. On the linear path ``t = 1`` is pure noise, ``alpha = 0`` and ``s = inf``: no contract model
can be evaluated there. :func:`sampling_sigmas` replaces such a level by ``T_NOISE_CAP = 1 - 1e-4`` (an
``O(1e-4)`` change of the first step; every other step is exact). The start that goes with any path is
``sampler.vp_prior(noise, sigmas[0]) = sqrt(1 + s^2) noise``: in path coordinates
``x_t ~ N(0, (alpha_t^2 + sigma_t^2) I)``, the law of unit-variance data noised to ``t``; on the linear path
it tends to diffusers' ``x_1 = noise`` as ``t -> 1``.

Samplers. Euler on ``dx~/ds = (x~ - D)/s`` (= DDIM with ``eta = 0``) is exactly the flow Euler step
``x_t' = x_t + (t' - t) v`` mapped to contract coordinates, so flows need no sampler of their own. ``heun`` is
EDM's Heun in ``s``, a different second-order method from Heun on ``dx_t/dt`` (the two agree to ``O(h^3)`` per
step, not exactly); ``ddpm``/``ddim(eta > 0)`` run the DDPM posterior kernels at the flow's levels.

This module imports nothing else from ``sampler`` (``analytic`` may import it).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import NamedTuple, Union

import torch

from .schedules import check_number, check_steps, level_tensor

__all__ = [
    "Path",
    "PathPoint",
    "LinearPath",
    "VPPath",
    "VEPath",
    "LINEAR",
    "PATHS",
    "get_path",
    "check_time",
    "VelocityMap",
    "velocity_map",
    "velocity_from_denoised",
    "denoised_from_velocity",
    "shift_times",
    "uniform_times",
    "logit_normal_times",
    "sampling_sigmas",
    "T_NOISE_CAP",
]

T_NOISE_CAP = 1.0 - 1e-4
Times = Union[float, torch.Tensor]


def check_time(t) -> float:
    """``t`` as a float, or ``ValueError`` unless it is a number in [0, 1]."""
    v = check_number(t, "t")
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"t must lie in [0, 1], got {v}")
    return v


class PathPoint(NamedTuple):
    """A path at one time: ``x_t = alpha x_0 + sigma eps`` and the time derivatives of both."""

    t: float
    alpha: float
    sigma: float
    d_alpha: float
    d_sigma: float

    @property
    def contract_sigma(self) -> float:
        """The contract's VE level ``s = sigma_t / alpha_t`` (THEORY.md section 8): the one conversion."""
        if self.alpha <= 0:
            raise ValueError(
                f"t={self.t} is pure noise on this path (alpha_t = 0, contract sigma = inf); no contract model "
                f"is evaluated there: start from t < 1 (sampling_sigmas uses T_NOISE_CAP = {T_NOISE_CAP})"
            )
        return self.sigma / self.alpha


@dataclass(frozen=True)
class Path(ABC):
    """A Gaussian path on ``t`` in [0, 1]: ``alpha`` decreasing from 1, ``sigma`` increasing from 0, and the
    contract level ``s = sigma/alpha`` strictly increasing. Subclasses give the coefficients and the inverse
    of ``s(t)``; everything else is written once on top of them."""

    @abstractmethod
    def _coefficients(self, t: float) -> tuple[float, float, float, float]:
        """``(alpha, sigma, d_alpha, d_sigma)`` at a valid ``t``."""

    @abstractmethod
    def _time(self, s: float) -> float:
        """The ``t`` with ``sigma_t / alpha_t = s`` for ``s > 0`` (may exceed 1 when ``s`` is beyond the path)."""

    def at(self, t) -> PathPoint:
        """The path at time ``t`` in [0, 1]."""
        t = check_time(t)
        return PathPoint(t, *self._coefficients(t))

    def time_of_sigma(self, sigma) -> float:
        """The time whose contract level is ``sigma`` (> 0, finite, within the path's range)."""
        s = check_number(sigma, "sigma")
        if s <= 0:
            raise ValueError(f"sigma must be > 0, got {s}")
        t = self._time(s)
        if 1.0 < t <= 1.0 + 1e-12:  # the path's own top level, up to rounding of the inverse
            t = 1.0
        if not 0.0 < t <= 1.0:
            raise ValueError(f"sigma={s} is beyond {self!r}, whose largest level is t = 1")
        return t


@dataclass(frozen=True)
class LinearPath(Path):
    """Rectified flow / flow matching: ``alpha = 1 - t``, ``sigma = t``, velocity ``v = eps - x_0``."""

    def _coefficients(self, t: float) -> tuple[float, float, float, float]:
        return 1.0 - t, t, -1.0, 1.0

    def _time(self, s: float) -> float:
        return s / (1.0 + s)


@dataclass(frozen=True)
class VPPath(Path):
    """The VP-SDE with ``beta(t) = beta_min + (beta_max - beta_min) t`` (Song et al. 2021; the defaults are
    DDPM's linear betas 1e-4..0.02 over T = 1000 steps): ``alpha = exp(-B/2)``, ``sigma = sqrt(1 - e^-B)``."""

    beta_min: float = 0.1
    beta_max: float = 20.0

    def __post_init__(self):
        lo, hi = check_number(self.beta_min, "beta_min"), check_number(self.beta_max, "beta_max")
        if not 0 < lo <= hi:
            raise ValueError(f"need 0 < beta_min <= beta_max, got beta_min={lo}, beta_max={hi}")
        object.__setattr__(self, "beta_min", lo)
        object.__setattr__(self, "beta_max", hi)

    def _coefficients(self, t: float) -> tuple[float, float, float, float]:
        big_b = self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t  # B(t) = int_0^t beta
        beta = self.beta_min + (self.beta_max - self.beta_min) * t  # B'(t)
        alpha = math.exp(-0.5 * big_b)
        sigma = math.sqrt(-math.expm1(-big_b))
        d_sigma = 0.5 * beta * alpha**2 / sigma if sigma > 0 else math.inf
        return alpha, sigma, -0.5 * beta * alpha, d_sigma

    def _time(self, s: float) -> float:
        big_b = math.log1p(s * s)  # s^2 = e^B - 1
        slope = self.beta_max - self.beta_min
        if slope == 0:
            return big_b / self.beta_min
        return 2 * big_b / (self.beta_min + math.sqrt(self.beta_min**2 + 2 * slope * big_b))  # root of B(t) = B


@dataclass(frozen=True)
class VEPath(Path):
    """Variance exploding: ``alpha = 1``, ``sigma = sigma_max t`` (the contract's own coordinates)."""

    sigma_max: float = 80.0

    def __post_init__(self):
        v = check_number(self.sigma_max, "sigma_max")
        if v <= 0:
            raise ValueError(f"sigma_max must be > 0, got {v}")
        object.__setattr__(self, "sigma_max", v)

    def _coefficients(self, t: float) -> tuple[float, float, float, float]:
        return 1.0, self.sigma_max * t, 0.0, self.sigma_max

    def _time(self, s: float) -> float:
        return s / self.sigma_max


LINEAR = LinearPath()
PATHS = ("linear", "vp", "ve")


def get_path(name: str, **params) -> Path:
    """The path called ``name``: ``"linear"`` (alias ``"rectified_flow"``), ``"vp"`` or ``"ve"``, with its
    parameters (``beta_min``/``beta_max``, ``sigma_max``)."""
    if name in ("linear", "rectified_flow"):
        return LinearPath(**params)
    elif name == "vp":
        return VPPath(**params)
    elif name == "ve":
        return VEPath(**params)
    else:
        raise ValueError(f"unknown path {name!r}; choose one of {PATHS}")


# --- velocity <-> denoiser ------------------------------------------------------------------------------
class VelocityMap(NamedTuple):
    """``v = a x + b D`` at one contract level (``x`` in contract coordinates); ``D = (v - a x) / b``."""

    t: float
    a: float
    b: float


def velocity_map(path: Path, sigma) -> VelocityMap:
    """The affine map between a path's velocity and the denoiser at contract level ``sigma``:
    ``v = alpha' D + sigma' eps^`` with ``eps^ = (x - D)/sigma`` gives ``a = sigma'/sigma``, ``b = alpha' - a``."""
    t = path.time_of_sigma(sigma)
    p = path.at(t)
    a = p.d_sigma / float(sigma)
    return VelocityMap(t, a, p.d_alpha - a)


def velocity_from_denoised(path: Path, x: torch.Tensor, sigma, d: torch.Tensor) -> torch.Tensor:
    """The path velocity of a denoiser output ``d = D(x, sigma)``, ``x`` in contract coordinates. [N, ...]"""
    m = velocity_map(path, sigma)
    return m.a * x + m.b * d


def denoised_from_velocity(path: Path, x: torch.Tensor, sigma, v: torch.Tensor) -> torch.Tensor:
    """The denoiser output of a path velocity ``v`` at ``(x, sigma)``, ``x`` in contract coordinates. [N, ...]"""
    m = velocity_map(path, sigma)
    return (v - m.a * x) / m.b


# --- levels -------------------------------------------------------------------------------------------
def _times_tensor(t, name: str) -> torch.Tensor:
    tt = level_tensor(t, name)
    if not torch.all(torch.isfinite(tt)) or torch.any(tt < 0) or torch.any(tt > 1):
        raise ValueError(f"{name} must lie in [0, 1], got {tt.tolist()}")
    return tt


def shift_times(t: Times, shift: float) -> Times:
    """SD3's timestep shift (Esser et al. 2024, sec. 5.3.2; diffusers' ``FlowMatchEulerDiscreteScheduler``):
    ``t' = shift t / (1 + (shift - 1) t)``, evaluated as ``shift t / (1 - t + shift t)`` (no cancellation: exact
    at ``t = 0`` and ``t = 1`` for every finite ``shift > 0``); ``shift > 1`` spends more steps at high noise. On the
    linear path it multiplies the contract level: ``s' = shift s``. A Python number gives a float, anything
    else (sequences, arrays, tensors of times in [0, 1]; not booleans or strings) a float64 tensor."""
    k = check_number(shift, "shift")
    if k <= 0:
        raise ValueError(f"shift must be > 0, got {k}")
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        v = check_time(t)
        return k * v / (1 - v + k * v)
    tt = _times_tensor(t, "t")
    return k * tt / (1 - tt + k * tt)


def uniform_times(n: int) -> torch.Tensor:
    """``n`` steps uniform in ``t``, from 1 down to 0 (``n < MAX_LEVELS``). [n + 1] float64"""
    return torch.linspace(1.0, 0.0, check_steps(n, "n") + 1, dtype=torch.float64)


def logit_normal_times(n: int, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    """``n`` steps of equal probability under the logit-normal density ``logit(t) ~ N(mean, std^2)`` (SD3's
    training density of ``t``, Esser et al. 2024, sec. 3.1): ``t_i = sigmoid(mean + std Phi^-1(1 - i/n))``, from
    1 down to 0 (``n < MAX_LEVELS``). [n + 1] float64

    Strictly decreasing or a ``ValueError``: with a large ``std`` or ``|mean|`` neighbouring quantiles round to
    the same float64 time (``sigmoid(z)`` is 1.0 for ``z > 37`` and the smallest times underflow), and a grid with
    repeated times is no sampler grid; the error names ``mean``, ``std`` and the first repeat."""
    n = check_steps(n, "n")
    m, sd = check_number(mean, "mean"), check_number(std, "std")
    if sd <= 0:
        raise ValueError(f"std must be > 0, got {sd}")
    u = 1.0 - torch.arange(n + 1, dtype=torch.float64) / n
    t = torch.sigmoid(m + sd * torch.special.ndtri(u))
    same = torch.nonzero(t[1:] >= t[:-1]).flatten()
    if same.numel():
        i = int(same[0])
        raise ValueError(
            f"logit_normal_times(n={n}, mean={m}, std={sd}): the quantiles t[{i}] = t[{i + 1}] = {t[i].item()!r} "
            "coincide in float64 (sigmoid saturates), so the times are not strictly decreasing; use a smaller std "
            "or |mean|, or fewer steps")
    return t


def sampling_sigmas(path: Path, times, *, cap: float = T_NOISE_CAP) -> torch.Tensor:
    """The contract levels a sampler walks for the path times ``times`` (1-D, strictly decreasing, in
    [0, 1]): ``sigma_i = sigma_{t_i} / alpha_{t_i}``, ``t = 0`` giving 0. A level of pure noise (``alpha = 0``:
    ``t = 1`` on the linear path) is replaced by ``cap``, which must lie below 1 and above the next level.
    [K + 1] float64, strictly decreasing."""
    if not isinstance(path, Path):
        raise ValueError(f"path must be a sampler.paths.Path, got {path!r}")
    tt = _times_tensor(times, "times")
    if tt.ndim != 1 or tt.numel() < 2:
        raise ValueError(f"times must be 1-D with at least 2 levels, got shape {tuple(tt.shape)}")
    if torch.any(tt[1:] >= tt[:-1]):
        raise ValueError(f"times must be strictly decreasing, got {tt.tolist()}")
    cap = check_time(cap)
    out = []
    for i, t in enumerate(tt.tolist()):
        p = path.at(t)
        if p.alpha <= 0:
            nxt = tt[i + 1].item() if i + 1 < tt.numel() else None
            if not (cap < 1 and (nxt is None or cap > nxt)):
                raise ValueError(f"cap={cap} must lie in (next level, 1) to replace the pure-noise level t={t}; "
                                 f"the next level is t={nxt}: pass a cap in between, or times whose second level "
                                 f"is below the cap")
            p = path.at(cap)
        out.append(p.contract_sigma)
    return torch.tensor(out, dtype=torch.float64)
