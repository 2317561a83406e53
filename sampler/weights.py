"""Guidance-weight schedules as functions of the noise level ``sigma`` only (no step counters).

Weight convention (THEORY.md section 2, used everywhere in this library): the guided prediction is
anchored on the conditional branch,

    eps_bar = eps_c + w (eps_c - eps_u)        equivalently        D_bar = D_c + w (D_c - D_u),

so ``w = 0`` is the plain conditional model. EDM2's ``lerp`` and diffusers' ``guidance_scale`` use
``eps_u + s (eps_c - eps_u)``; the two agree for ``s = w + 1`` (:func:`w_to_s`, :func:`s_to_w`).

Every schedule is a frozen dataclass callable as ``schedule(sigma) -> w`` (a Python float). A weight
of exactly ``0`` means "no guidance at this level": guidance objects then skip the extra network
(unconditional, weak, classifier) and REG builds no autograd graph. A caller's own callable is wrapped by
:func:`as_schedule` in :class:`Checked`, which refuses a value that is not finite (a NaN weight would otherwise
turn every guided prediction into NaN without a word).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Union

import numpy as np
import torch

from .schedules import check_number

__all__ = [
    "WeightSchedule",
    "Constant",
    "LinearRamp",
    "Cosine",
    "Interval",
    "Checked",
    "as_schedule",
    "w_to_s",
    "s_to_w",
]

WeightSchedule = Callable[[float], float]


def _sigma(sigma) -> float:
    s = check_number(sigma, "sigma")
    if s < 0:
        raise ValueError(f"sigma must be >= 0, got {s}")
    return s


def w_to_s(w: float) -> float:
    """Cond-anchored weight ``w`` (``eps_c + w (eps_c - eps_u)``) to the lerp scale ``s = w + 1``."""
    return check_number(w, "w") + 1.0


def s_to_w(s: float) -> float:
    """Lerp scale ``s`` (``eps_u + s (eps_c - eps_u)``, EDM2 / diffusers) to the library's ``w = s - 1``."""
    return check_number(s, "s") - 1.0


@dataclass(frozen=True)
class Constant:
    """``w(sigma) = w``."""

    w: float

    def __post_init__(self):
        object.__setattr__(self, "w", check_number(self.w, "w"))

    def __call__(self, sigma: float) -> float:
        _sigma(sigma)
        return self.w


@dataclass(frozen=True)
class LinearRamp:
    """Linear in ``sigma`` from ``w_start`` at ``sigma_max`` to ``w_end`` at ``sigma_min`` (EDM2's
    ``linear``, read as intended: the weight at the first, noisiest level is ``w_start``); constant
    beyond either end."""

    w_start: float
    w_end: float
    sigma_min: float
    sigma_max: float

    def __post_init__(self):
        for name in ("w_start", "w_end", "sigma_min", "sigma_max"):
            object.__setattr__(self, name, check_number(getattr(self, name), name))
        if not 0 <= self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 <= sigma_min < sigma_max, got sigma_min={self.sigma_min}, sigma_max={self.sigma_max}")

    def __call__(self, sigma: float) -> float:
        s = min(max(_sigma(sigma), self.sigma_min), self.sigma_max)
        frac = (s - self.sigma_min) / (self.sigma_max - self.sigma_min)  # 1 at sigma_max, 0 at sigma_min
        return self.w_end + frac * (self.w_start - self.w_end)


@dataclass(frozen=True)
class Cosine:
    """MDT's power-cosine schedule, ``w(u) = w/2 (1 - cos(pi u^s))`` with progress ``u = 1 - sigma/sigma_max``
    (clamped to [0, 1]): 0 at ``sigma_max``, ``w`` at ``sigma = 0``. Anchored on the conditional branch
    like every weight here (the DiT/SD code anchors this one on the unconditional branch)."""

    w: float
    s: float
    sigma_max: float

    def __post_init__(self):
        for name in ("w", "s", "sigma_max"):
            object.__setattr__(self, name, check_number(getattr(self, name), name))
        if self.s <= 0:
            raise ValueError(f"the power s must be positive, got {self.s}")
        if self.sigma_max <= 0:
            raise ValueError(f"sigma_max must be positive, got {self.sigma_max}")

    def __call__(self, sigma: float) -> float:
        u = min(max(1.0 - _sigma(sigma) / self.sigma_max, 0.0), 1.0)
        return 0.5 * self.w * (1.0 - math.cos(math.pi * u**self.s))


@dataclass(frozen=True)
class Interval:
    """``w`` while ``sigma_lo <= sigma <= sigma_hi``, exactly 0 outside (Kynkaanniemi et al. 2024): there
    the unconditional / weak model is not evaluated at all."""

    w: float
    sigma_lo: float
    sigma_hi: float

    def __post_init__(self):
        for name in ("w", "sigma_lo", "sigma_hi"):
            object.__setattr__(self, name, check_number(getattr(self, name), name))
        if self.sigma_lo < 0:
            raise ValueError(f"sigma_lo must be >= 0, got {self.sigma_lo}")
        if self.sigma_lo > self.sigma_hi:
            raise ValueError(f"interval needs sigma_lo <= sigma_hi, got sigma_lo={self.sigma_lo} > sigma_hi={self.sigma_hi}")

    def __call__(self, sigma: float) -> float:
        s = _sigma(sigma)
        return self.w if self.sigma_lo <= s <= self.sigma_hi else 0.0


@dataclass(frozen=True)
class Checked:
    """A caller's schedule ``sigma -> w`` whose every value is checked: ``ValueError`` naming the schedule and
    ``sigma`` when it is not a finite number (or a tensor / array of finite numbers). The value itself is returned
    unchanged. One ``isfinite`` per call (a scalar or the small tensor the schedule returns)."""

    schedule: WeightSchedule

    def __call__(self, sigma: float):
        w = self.schedule(sigma)
        try:
            finite = (bool(torch.isfinite(w).all()) if isinstance(w, torch.Tensor)
                      else not isinstance(w, bool) and bool(np.all(np.isfinite(w))))
        except TypeError:  # None, a string, ...
            finite = False
        if not finite:
            raise ValueError(f"the weight schedule {self.schedule!r:.120} returned {w!r:.80} at sigma={sigma!r}; a "
                             "guidance weight must be a finite number")
        return w


_OWN = (Constant, LinearRamp, Cosine, Interval, Checked)  # finite by construction (checked parameters)


def as_schedule(weight: Union[float, int, WeightSchedule]) -> WeightSchedule:
    """A number becomes :class:`Constant`; a schedule of this module is returned unchanged, any other callable
    ``sigma -> w`` wrapped in :class:`Checked` (its values are checked finite at every call)."""
    if isinstance(weight, bool):
        raise ValueError(f"a guidance weight must be a number or a schedule, got {weight!r}")
    if isinstance(weight, (int, float)):
        return Constant(weight)
    if isinstance(weight, _OWN):
        return weight
    if callable(weight):
        return Checked(weight)
    raise ValueError(f"a guidance weight must be a number or a callable sigma -> w, got {weight!r}")
