"""Samplers, written once for every model and guidance (ARCHITECTURE.md, contract 5).

All samplers work in VE coordinates (``x = x_0 + sigma n``) on a strictly decreasing sequence of noise
levels ``sigmas`` [K + 1] (usually ending in 0; a positive last level stops the chain there), take a
denoiser ``denoiser(x, sigma) -> x0_hat`` (a bound model or a guidance object) and return the state at
``sigmas[-1]``. Any shape [N, ...] (an empty batch gives an empty result), any device and dtype: both follow
``x_start``. A non-finite ``x_start``, or a denoiser output at any step that is non-finite or not a tensor of the
state's shape, is a ``ValueError`` naming the step and noise level (issue 11, defect 15; issue 20, defect 12).

Start noise, made explicit: the samplers take the *state* ``x_start`` at ``sigmas[0]`` in VE coordinates
and never rescale it. Build it with

- :func:`vp_prior` ``(noise, sigma_max) = noise * sqrt(1 + sigma_max^2)``: ``x_T ~ N(0, I)`` in VP
  coordinates, what DDPM/DDIM chains (and the paper's toy) start from;
- :func:`ve_prior` ``(noise, sigma_max) = noise * sigma_max``: EDM's start (Karras et al. 2022).

Per step ``i`` (from ``sigmas[i]`` to ``sigmas[i + 1]``), with ``D = denoiser(x, sigma_i)``:

- ``ddim(eta)``: ``x' = D + sqrt(s'^2 - c^2) (x - D)/s + c z``, ``c^2 = eta^2 s'^2 (s^2 - s'^2)/s^2``
  (Song et al. 2021, mapped to VE);
- ``ddpm``: ``ddim`` with ``eta = 1``, which is the DDPM ancestral step with the posterior variance
  ``beta_t (1 - abar_{t-1}) / (1 - abar_t)`` in VP units (the step follows from ``abar = 1/(1 + sigma^2)``,
  so it is exact for a VP schedule's levels); the step to ``sigma = 0`` is deterministic (``x = D``);
- ``euler``: probability-flow ODE ``dx/dsigma = (x - D)/sigma``, first order;
- ``heun``: EDM's second-order Heun (Karras et al. 2022, Algorithm 1, no churn); Euler on the last
  step to ``sigma = 0``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .device import check_generator
from .model import Denoiser
from .schedules import check_number, level_tensor

__all__ = ["SAMPLERS", "Step", "ddpm", "ddim", "euler", "heun", "sample", "vp_prior", "ve_prior", "check_sigmas",
           "ddim_coefficients"]

SAMPLERS = ("ddpm", "ddim", "euler", "heun")


@dataclass(frozen=True)
class Step:
    """What a per-step callback receives: step ``i`` took ``x`` from ``sigma`` to ``sigma_next``."""

    i: int
    sigma: float
    sigma_next: float
    x: torch.Tensor  # [N, ...] state at sigma_next
    x0_hat: torch.Tensor  # [N, ...] denoiser output at (x before the step, sigma)


Callback = Callable[[Step], None]


def check_sigmas(sigmas) -> torch.Tensor:
    """``sigmas`` as a float64 CPU tensor [K + 1], or ``ValueError``: numbers (:func:`~sampler.schedules.level_tensor`:
    at most ``MAX_LEVELS``), 1-D, K >= 1, finite, strictly decreasing, last level >= 0."""
    s = level_tensor(sigmas, "sigmas")
    if s.ndim != 1 or s.numel() < 2:
        raise ValueError(f"sigmas must be 1-D with at least 2 levels, got shape {tuple(s.shape)}")
    if not torch.all(torch.isfinite(s)):
        raise ValueError(f"sigmas must be finite, got {s.tolist()}")
    if s[-1] < 0:
        raise ValueError(f"noise levels must be >= 0, got last level {s[-1].item()}")
    bad = torch.nonzero(s[1:] >= s[:-1]).flatten()
    if bad.numel():
        i = int(bad[0])
        raise ValueError(f"noise levels must be strictly decreasing, got sigmas[{i}]={s[i].item()} <= sigmas[{i + 1}]={s[i + 1].item()}")
    return s


def vp_prior(noise: torch.Tensor, sigma_max: float) -> torch.Tensor:
    """VE state of ``x_T ~ N(0, I)`` in VP coordinates: ``noise * sqrt(1 + sigma_max^2)``."""
    return noise * math.sqrt(1.0 + float(sigma_max) ** 2)


def ve_prior(noise: torch.Tensor, sigma_max: float) -> torch.Tensor:
    """EDM's start ``noise * sigma_max``."""
    return noise * float(sigma_max)


def _check_inputs(denoiser, x_start, sigmas, generator) -> torch.Tensor:
    if not callable(denoiser):
        raise ValueError(f"denoiser must be callable as denoiser(x, sigma), got {denoiser!r}")
    if not isinstance(x_start, torch.Tensor) or x_start.ndim < 2:
        got = tuple(x_start.shape) if isinstance(x_start, torch.Tensor) else type(x_start).__name__
        raise ValueError(f"x_start must be a tensor of shape [N, ...] with at least 2 dimensions, got {got}")
    if not x_start.is_floating_point():
        raise ValueError(f"x_start must be floating point, got {x_start.dtype}")
    s = check_sigmas(sigmas)
    if not bool(torch.isfinite(x_start).all()):
        bad = int((~torch.isfinite(x_start)).sum())
        raise ValueError(f"x_start has {bad} non-finite value(s) (NaN or inf)")
    check_generator(generator, x_start.device)  # also where it is unused (euler, heun): never accepted silently
    return s


def _denoise(denoiser, x: torch.Tensor, sigma: float, i: int) -> torch.Tensor:
    """``denoiser(x, sigma)``, or ``ValueError`` naming step ``i`` and ``sigma`` when its output is not finite
    (a diverged network or guidance would otherwise propagate NaN silently to the samples)."""
    d = denoiser(x, sigma)
    if not isinstance(d, torch.Tensor) or d.shape != x.shape:
        got = f"shape {tuple(d.shape)}" if isinstance(d, torch.Tensor) else f"{type(d).__name__} {d!r}"[:200]
        raise ValueError(f"the denoiser must return a tensor of x's shape {tuple(x.shape)}, got {got} at step {i} "
                         f"(sigma={sigma:g})")
    if not bool(torch.isfinite(d).all()):
        bad = int((~torch.isfinite(d)).sum())
        raise ValueError(f"the denoiser returned {bad} non-finite value(s) at step {i} (sigma={sigma:g})")
    return d


def _steps(n: int, progress: bool, desc: str):
    if progress:
        from tqdm.auto import tqdm

        return tqdm(range(n), desc=desc)
    return range(n)


def _randn(x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def ddim_coefficients(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """``(a, c)`` of the DDIM step ``x' = D + a (x - D) + c z`` from ``sigma`` to ``sigma_next`` (VE):
    ``c^2 = eta^2 s'^2 (s^2 - s'^2) / s^2`` (eta^2 times the posterior variance), ``a = sqrt(s'^2 - c^2) / s``.
    The one place this step is written: the samplers and the exact output density both use it."""
    c2 = eta**2 * sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2
    return math.sqrt(max(sigma_next**2 - c2, 0.0)) / sigma, math.sqrt(c2)


def _ddim_loop(denoiser, x, s, eta, generator, callback, progress, name) -> torch.Tensor:
    for i in _steps(len(s) - 1, progress, name):
        sig, nxt = s[i].item(), s[i + 1].item()
        d = _denoise(denoiser, x, sig, i)
        if nxt == 0:
            x = d
        else:
            a, c = ddim_coefficients(sig, nxt, eta)
            x = d + a * (x - d)
            if c > 0:
                x = x + c * _randn(x, generator)
        if callback is not None:
            callback(Step(i, sig, nxt, x, d))
    return x


def ddim(
    denoiser: Denoiser,
    x_start: torch.Tensor,
    sigmas,
    *,
    eta: float = 0.0,
    generator: Optional[torch.Generator] = None,
    callback: Optional[Callback] = None,
    progress: bool = False,
) -> torch.Tensor:
    """DDIM with stochasticity ``eta`` in [0, 1] (0: deterministic, 1: DDPM). Returns [N, ...]."""
    s = _check_inputs(denoiser, x_start, sigmas, generator)
    eta = check_number(eta, "eta")
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    with torch.no_grad():
        return _ddim_loop(denoiser, x_start, s, eta, generator, callback, progress, "ddim")


def ddpm(
    denoiser: Denoiser,
    x_start: torch.Tensor,
    sigmas,
    *,
    generator: Optional[torch.Generator] = None,
    callback: Optional[Callback] = None,
    progress: bool = False,
) -> torch.Tensor:
    """DDPM ancestral sampling (Ho et al. 2020) with the posterior variance; last step deterministic."""
    s = _check_inputs(denoiser, x_start, sigmas, generator)
    with torch.no_grad():
        return _ddim_loop(denoiser, x_start, s, 1.0, generator, callback, progress, "ddpm")


def euler(
    denoiser: Denoiser,
    x_start: torch.Tensor,
    sigmas,
    *,
    generator: Optional[torch.Generator] = None,
    callback: Optional[Callback] = None,
    progress: bool = False,
) -> torch.Tensor:
    """Euler on the probability-flow ODE ``dx/dsigma = (x - D(x, sigma))/sigma`` (deterministic;
    ``generator`` is accepted for a uniform signature and unused)."""
    s = _check_inputs(denoiser, x_start, sigmas, generator)
    x = x_start
    with torch.no_grad():
        for i in _steps(len(s) - 1, progress, "euler"):
            sig, nxt = s[i].item(), s[i + 1].item()
            d = _denoise(denoiser, x, sig, i)
            x = x + (nxt - sig) * ((x - d) / sig)
            if callback is not None:
                callback(Step(i, sig, nxt, x, d))
    return x


def heun(
    denoiser: Denoiser,
    x_start: torch.Tensor,
    sigmas,
    *,
    generator: Optional[torch.Generator] = None,
    callback: Optional[Callback] = None,
    progress: bool = False,
) -> torch.Tensor:
    """EDM's Heun method (second order; 2K - 1 denoiser calls when the last level is 0, else 2K)."""
    s = _check_inputs(denoiser, x_start, sigmas, generator)
    x = x_start
    with torch.no_grad():
        for i in _steps(len(s) - 1, progress, "heun"):
            sig, nxt = s[i].item(), s[i + 1].item()
            d = _denoise(denoiser, x, sig, i)
            slope = (x - d) / sig
            x_euler = x + (nxt - sig) * slope
            if nxt > 0:
                slope2 = (x_euler - _denoise(denoiser, x_euler, nxt, i)) / nxt
                x = x + (nxt - sig) * 0.5 * (slope + slope2)
            else:
                x = x_euler
            if callback is not None:
                callback(Step(i, sig, nxt, x, d))
    return x


def sample(
    name: str,
    denoiser: Denoiser,
    x_start: torch.Tensor,
    sigmas,
    *,
    eta: float = 0.0,
    generator: Optional[torch.Generator] = None,
    callback: Optional[Callback] = None,
    progress: bool = False,
) -> torch.Tensor:
    """Run the sampler called ``name`` (one of ``SAMPLERS``); ``eta`` is used by ``ddim`` only (a nonzero
    ``eta`` with another sampler is a ``ValueError``)."""
    if name != "ddim" and eta != 0:
        raise ValueError(f"eta={eta} is only meaningful for 'ddim', got sampler {name!r}")
    if name == "ddpm":
        return ddpm(denoiser, x_start, sigmas, generator=generator, callback=callback, progress=progress)
    elif name == "ddim":
        return ddim(denoiser, x_start, sigmas, eta=eta, generator=generator, callback=callback, progress=progress)
    elif name == "euler":
        return euler(denoiser, x_start, sigmas, generator=generator, callback=callback, progress=progress)
    elif name == "heun":
        return heun(denoiser, x_start, sigmas, generator=generator, callback=callback, progress=progress)
    else:
        raise ValueError(f"unknown sampler {name!r}; choose one of {SAMPLERS}")
