"""Noise schedules: VP (DDPM) beta schedules, respacing, EDM/Karras sigma grids, conversions.

Index convention (THEORY.md section 1): step ``t = 0..T`` with ``t = 0`` the data, so every
per-step tensor has length ``T + 1`` and ``abar[0] = 1``, ``beta[0] = 0``. The released REG code
counts its 20 steps as ``k = 0..19``; its ``k`` is this module's ``t = k + 1``.

VP and VE are one process in two coordinate systems: ``sigma^2 = (1 - abar) / abar`` and
``x_ve = x_vp / sqrt(abar)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

__all__ = [
    "check_number",
    "check_count",
    "check_steps",
    "level_tensor",
    "MAX_LEVELS",
    "VPSchedule",
    "PriorMismatch",
    "abar_to_sigma",
    "sigma_to_abar",
    "karras_sigmas",
    "prior_mismatch",
]


def _is_bool_array(value) -> bool:
    """A numpy or torch boolean (array or scalar): ``dtype`` ``bool`` / ``torch.bool``."""
    return str(getattr(value, "dtype", "")) in ("bool", "torch.bool")


def check_number(value, name: str) -> float:
    """``value`` as a finite float, or ``ValueError`` naming ``name``: the one validator of scalar arguments
    (levels, weights, times, steps) in every package. Python/numpy numbers and one-element tensors pass;
    booleans (Python, numpy or torch) and strings are refused rather than silently read as 1.0 or parsed."""
    if isinstance(value, (bool, str, bytes)) or _is_bool_array(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be a single number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return v


def check_count(value, name: str, *, least: int = 1) -> int:
    """``value`` as an int, or ``ValueError`` naming ``name`` unless it is an integer ``>= least`` (checked by
    :func:`check_number`, so ``True``, ``'3'`` and ``None`` are refused alike; ``3.0`` and ``np.int64(3)`` pass)."""
    what = {0: "a non-negative integer", 1: "a positive integer"}.get(least, f"an integer >= {least}")
    if isinstance(value, bool):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    v = check_number(value, name)
    if v != int(v) or v < least:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(v)


MAX_LEVELS = 10**6
"""The most noise levels (steps + 1) any level builder makes or accepts: ``uniform_times``, ``logit_normal_times``,
``shift_times`` and ``sampling_sigmas`` inputs, ``VPSchedule`` (constructor, ``linear``, ``cosine``, ``from_betas``),
``karras_sigmas``, ``check_sigmas``. A float64 level array of this size is 8 MB; ``10**9`` levels would be 8 GB and
hang the machine, so the bound is checked before anything is allocated."""


def _too_many(count: int, what: str) -> ValueError:
    return ValueError(f"{what} makes {count} noise levels, more than MAX_LEVELS = {MAX_LEVELS} "
                      "(sampler.schedules.MAX_LEVELS, the bound of every level builder)")


def check_steps(value, name: str) -> int:
    """A number of steps ``n`` (``n + 1`` levels) as an int: an integer in ``[1, MAX_LEVELS - 1]``, else
    ``ValueError`` naming ``name``."""
    n = check_count(value, name)
    if n + 1 > MAX_LEVELS:
        raise _too_many(n + 1, f"{name}={n}")
    return n


def level_tensor(values, name: str) -> torch.Tensor:
    """``values`` (a sequence, array or tensor of numbers: levels, times, betas) as a float64 CPU tensor, or
    ``ValueError`` naming ``name``: strings, ``None``, booleans (read as 0/1 otherwise) and more than
    ``MAX_LEVELS`` entries (checked before converting) are refused. Range checks are the caller's."""
    if values is None or isinstance(values, (str, bytes, bool)):
        raise ValueError(f"{name} must be numbers (a sequence or tensor), got {values!r}")
    size = values.numel() if isinstance(values, torch.Tensor) else getattr(values, "size", None)
    if not isinstance(size, int):
        size = len(values) if hasattr(values, "__len__") else 1
    if size > MAX_LEVELS:
        raise _too_many(size, f"{name} with {size} entries")
    if _is_bool_array(values) or (
            isinstance(values, (list, tuple)) and any(isinstance(v, bool) for v in values)):
        raise ValueError(f"{name} must be numbers, got booleans: {values!r}")
    try:
        out = torch.as_tensor(values, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be numbers (a sequence or tensor), got {values!r} ({err})") from None
    return out.detach().cpu()


def _as_float64(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


def _is_scalar(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def abar_to_sigma(abar):
    """VE noise level of a VP level: ``sigma = sqrt((1 - abar) / abar)``; ``abar`` in (0, 1].

    A Python number gives a float, anything else a float64 tensor of the same shape."""
    if _is_scalar(abar):
        a = float(abar)
        if not (math.isfinite(a) and 0 < a <= 1):
            raise ValueError(f"abar must lie in (0, 1], got {abar!r}")
        return math.sqrt((1 - a) / a)
    abar = _as_float64(abar)
    if not torch.all(torch.isfinite(abar)) or torch.any(abar <= 0) or torch.any(abar > 1):
        raise ValueError(f"abar must lie in (0, 1], got {abar}")
    return torch.sqrt((1 - abar) / abar)


def sigma_to_abar(sigma):
    """VP level of a VE noise level: ``abar = 1 / (1 + sigma^2)``; ``sigma`` >= 0 and finite.

    A Python number gives a float, anything else a float64 tensor of the same shape."""
    if _is_scalar(sigma):
        s = float(sigma)
        if not (math.isfinite(s) and s >= 0):
            raise ValueError(f"sigma must be finite and >= 0, got {sigma!r}")
        return 1 / (1 + s**2)
    sigma = _as_float64(sigma)
    if not torch.all(torch.isfinite(sigma)) or torch.any(sigma < 0):
        raise ValueError(f"sigma must be finite and >= 0, got {sigma}")
    return 1 / (1 + sigma**2)


@dataclass(frozen=True)
class VPSchedule:
    """A discrete VP schedule given by ``abar[0..T]`` (float64, ``abar[0] = 1``, strictly decreasing).

    ``timesteps[t]`` is the index of step ``t`` in the schedule a network was trained on (the identity
    unless the schedule was respaced); discrete-time networks must be queried with it.
    """

    abar: torch.Tensor  # [T + 1]
    timesteps: torch.Tensor  # [T + 1], int64

    def __post_init__(self):
        abar = level_tensor(self.abar, "abar")
        if abar.ndim != 1 or abar.numel() < 2:
            raise ValueError(f"abar must be 1-D with at least 2 entries (T >= 1), got shape {tuple(abar.shape)}")
        if not torch.all(torch.isfinite(abar)):
            raise ValueError(f"abar must be finite, got {abar}")
        if abar[0] != 1:
            raise ValueError(f"abar[0] must be 1 (the data level), got {abar[0].item()}")
        if torch.any(abar[1:] <= 0) or torch.any(abar[1:] >= abar[:-1]):
            raise ValueError("abar must be strictly decreasing and positive after abar[0] = 1")
        ts = torch.as_tensor(self.timesteps, dtype=torch.int64)
        if ts.shape != abar.shape:
            raise ValueError(f"timesteps shape {tuple(ts.shape)} does not match abar shape {tuple(abar.shape)}")
        object.__setattr__(self, "abar", abar)
        object.__setattr__(self, "timesteps", ts)

    # --- constructors -------------------------------------------------------------------------
    @classmethod
    def from_betas(cls, betas) -> "VPSchedule":
        """From ``beta_1..beta_T`` (each in (0, 1))."""
        betas = level_tensor(betas, "betas")
        if betas.ndim != 1 or betas.numel() < 1:
            raise ValueError(f"betas must be a non-empty 1-D sequence, got shape {tuple(betas.shape)}")
        if not torch.all(torch.isfinite(betas)) or torch.any(betas <= 0) or torch.any(betas >= 1):
            raise ValueError(f"every beta must lie in (0, 1), got {betas}")
        abar = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])
        return cls(abar, torch.arange(betas.numel() + 1))

    @classmethod
    def linear(cls, T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> "VPSchedule":
        """DDPM's linear betas (Ho et al. 2020): ``beta_t = linspace(beta_start, beta_end, T)``."""
        T = check_steps(T, "T")
        beta_start, beta_end = check_number(beta_start, "beta_start"), check_number(beta_end, "beta_end")
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
        return cls.from_betas(torch.linspace(beta_start, beta_end, T, dtype=torch.float64))

    @classmethod
    def paper_1d(cls) -> "VPSchedule":
        """The REG paper's 1-D toy: T = 20, betas linear from 1e-4 to 0.02 (so abar_T ~= 0.82)."""
        return cls.linear(20, 1e-4, 0.02)

    @classmethod
    def standard(cls) -> "VPSchedule":
        """The standard DDPM schedule: T = 1000, betas linear from 1e-4 to 0.02."""
        return cls.linear(1000, 1e-4, 0.02)

    @classmethod
    def cosine(cls, T: int, s: float = 0.008, max_beta: float = 0.999) -> "VPSchedule":
        """Nichol & Dhariwal (2021): ``abar(t) = cos^2((t/T + s)/(1 + s) pi/2)``, betas clipped at ``max_beta``."""
        T = check_steps(T, "T")
        s, max_beta = check_number(s, "s"), check_number(max_beta, "max_beta")
        if s < 0 or not 0 < max_beta < 1:
            raise ValueError(f"need s >= 0 and 0 < max_beta < 1, got s={s}, max_beta={max_beta}")
        u = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(min=1e-12, max=max_beta)
        return cls.from_betas(betas)

    # --- derived quantities ---------------------------------------------------------------------
    @property
    def T(self) -> int:
        return self.abar.numel() - 1

    @property
    def alphas(self) -> torch.Tensor:
        """``alpha_t = abar_t / abar_{t-1}``, with ``alpha_0 = 1``. [T + 1]"""
        return torch.cat([torch.ones(1, dtype=torch.float64), self.abar[1:] / self.abar[:-1]])

    @property
    def betas(self) -> torch.Tensor:
        """``beta_t = 1 - alpha_t``, with ``beta_0 = 0``. [T + 1]"""
        return 1 - self.alphas

    @property
    def sigmas(self) -> torch.Tensor:
        """VE noise level of every step, ``sigma_t = sqrt((1 - abar_t) / abar_t)``. [T + 1]"""
        return torch.sqrt((1 - self.abar) / self.abar)

    def sampling_sigmas(self) -> torch.Tensor:
        """The VE levels from ``sigma_T`` down to ``sigma_0 = 0``, strictly decreasing: what a sampler
        walks to run this schedule's chain. [T + 1]"""
        return self.sigmas.flip(0)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
        """The forward process of step ``t`` (THEORY.md section 1): ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) n``.
        ``t`` is one step index or an integer tensor [N] (one per sample, broadcast over the trailing
        dimensions); the coefficients are computed in float64 and cast to ``x0``'s dtype and device."""
        t = torch.as_tensor(t)
        if t.is_floating_point() or t.ndim > 1:
            raise ValueError(f"t must be a step index or an integer tensor [N], got {t!r}")
        if torch.any(t < 0) or torch.any(t > self.T):
            raise ValueError(f"steps must lie in 0..{self.T}, got {t.min().item()}..{t.max().item()}")
        a = self.abar.to(t.device)[t]
        shape = a.shape + (1,) * (x0.ndim - a.ndim)
        sa = a.sqrt().to(dtype=x0.dtype, device=x0.device).reshape(shape)
        sn = (1 - a).sqrt().to(dtype=x0.dtype, device=x0.device).reshape(shape)
        return sa * x0 + sn * noise

    def reverse_mean(self, x: torch.Tensor, eps: torch.Tensor, t: int) -> torch.Tensor:
        """The DDPM reverse-kernel mean of step ``t`` (1..T) in VP coordinates (THEORY.md section 1),
        ``mu_t = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t)``; its variance is
        ``posterior_variance[t]``."""
        beta, abar, alpha = self.betas[t].item(), self.abar[t].item(), self.alphas[t].item()
        return (x - beta / math.sqrt(1 - abar) * eps) / math.sqrt(alpha)

    @property
    def posterior_variance(self) -> torch.Tensor:
        """DDPM reverse-kernel variance ``beta_t (1 - abar_{t-1}) / (1 - abar_t)``; 0 at t = 0 and t = 1. [T + 1]"""
        out = torch.zeros_like(self.abar)
        out[1:] = self.betas[1:] * (1 - self.abar[:-1]) / (1 - self.abar[1:])
        return out

    def respace(self, n_steps: int) -> "VPSchedule":
        """Keep ``n_steps`` of the ``T`` steps, evenly spaced and always including ``t = 1`` and ``t = T``.

        The kept steps keep their ``abar`` exactly (and their original ``timesteps``), so the
        respaced chain is the one a DDPM with fewer steps runs (Nichol & Dhariwal 2021, section 4).
        """
        n_steps = check_count(n_steps, "n_steps")
        if n_steps > self.T:
            raise ValueError(f"n_steps must be an integer in [1, {self.T}], got {n_steps}")
        if n_steps == 1:
            kept = torch.tensor([self.T])
        else:
            kept = torch.round(torch.linspace(1, self.T, n_steps, dtype=torch.float64)).long()
        idx = torch.cat([torch.zeros(1, dtype=torch.long), kept])
        return VPSchedule(self.abar[idx], self.timesteps[idx])

    def index_of_sigma(self, sigma: float, rtol: float = 1e-9) -> int:
        """The step whose VE level equals ``sigma`` (to ``rtol``); ``ValueError`` if none does."""
        s = self.sigmas
        t = int(torch.argmin((s - sigma).abs()))
        if abs(s[t].item() - sigma) > rtol * max(abs(sigma), 1e-300):
            raise ValueError(f"sigma={sigma} is not a level of this schedule (nearest: {s[t].item()} at t={t})")
        return t


def karras_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """EDM's sigma grid (Karras et al. 2022, eq. 5), ``n`` levels from ``sigma_max`` down to
    ``sigma_min``, then a final 0. [n + 1], strictly decreasing."""
    n = check_steps(n, "n")
    sigma_min, sigma_max = check_number(sigma_min, "sigma_min"), check_number(sigma_max, "sigma_max")
    rho = check_number(rho, "rho")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got {sigma_min}, {sigma_max}")
    if rho <= 0:
        raise ValueError(f"rho must be positive, got {rho}")
    i = torch.arange(n, dtype=torch.float64)
    frac = i / max(n - 1, 1)
    try:
        s = (sigma_max ** (1 / rho) + frac * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    except OverflowError:
        s = torch.full((n,), math.inf, dtype=torch.float64)
    if not bool(torch.isfinite(s).all()) or bool((s[1:] >= s[:-1]).any()):
        raise ValueError(f"rho={rho} is too extreme for sigma in [{sigma_min}, {sigma_max}]: the levels overflow "
                         "or are not strictly decreasing in float64")
    return torch.cat([s, torch.zeros(1, dtype=torch.float64)])


class PriorMismatch(NamedTuple):
    """How far ``x_T`` is from ``N(0, I)``, per dimension, for Gaussian data ``N(mean, std^2)``."""

    abar_T: float
    mean: float  # mean of x_T
    std: float  # standard deviation of x_T
    kl: float  # KL(law of x_T || N(0, 1)), nats per dimension


def prior_mismatch(schedule: VPSchedule, data_std: float = 1.0, data_mean: float = 0.0) -> PriorMismatch:
    """Law of ``x_T = sqrt(abar_T) x_0 + sqrt(1 - abar_T) n`` for ``x_0 ~ N(data_mean, data_std^2)``
    against the sampler's start ``N(0, 1)``. The paper's 1-D preset has ``abar_T ~= 0.82``: its x_T is
    nowhere near ``N(0, 1)``."""
    if not data_std > 0 or not math.isfinite(data_std) or not math.isfinite(data_mean):
        raise ValueError(f"need finite data_mean and data_std > 0, got {data_mean}, {data_std}")
    a = schedule.abar[-1].item()
    m = math.sqrt(a) * data_mean
    v = a * data_std**2 + 1 - a
    kl = 0.5 * (v + m**2 - 1 - math.log(v))
    return PriorMismatch(abar_T=a, mean=m, std=math.sqrt(v), kl=kl)
