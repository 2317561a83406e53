"""Rectified-CFG++ (Saini, Gupta & Bovik, NeurIPS 2025, arXiv 2510.07631; the authors' SD3 pipeline,
``shreshthsaini/Rectified-CFGpp``, ``rect-cfg-SD3-pipeline/pipeline.py``, denoising loop) as a sampler.

Why a sampler and not a guidance object. Each step is a predictor along the conditional velocity to the *next*
level, then the guidance difference evaluated there:

    x~ = x_t + dt v_c(x_t, t)                                   (predictor, conditional Euler step)
    v  = v_c(x_t, t) + w(t) (v_c(x~, t + dt) - v_u(x~, t + dt))  (corrector)
    x_{t + dt} = x_t + dt v,

with ``dt`` the step to the next level (negative). The guided prediction at ``(x_t, t)`` depends on the step size
and on the next level, which a guidance object (contract 2: a function of ``x`` and the current level) never sees.
The weight multiplies a difference taken at another point than the anchor ``v_c(x_t)``, so ``w`` here is the
authors' ``true_cfg`` / ``lambda`` itself (``w = 0`` is the conditional model's Euler sampler), and a schedule of
the current level covers the paper's ``alpha(t) = lambda_max (1 - t)^gamma``. Four model calls per guided step
(the authors' batch also evaluates ``v_u(x_t)``, which the update never uses: not evaluated here).

In contract coordinates (``x`` VE, levels ``sigma``): Euler on the path is :func:`~sampler.samplers.euler`'s step
``x + (sigma' - sigma) (x - D) / sigma`` (on the linear path flow Euler and this step are the same map), the
predictor is that step with ``D_c``, and a velocity difference at level ``sigma'`` is ``b(sigma') (D_c - D_u)``
(``v = a x + b D``, :func:`~sampler.paths.velocity_map`), which in the ``D`` of the current level is
``b(sigma') / b(sigma) (D_c(x~, sigma') - D_u(x~, sigma'))``. The path therefore matters (``path=``, or the one the
denoisers carry). At a last level 0 the velocity of ``D`` is not defined (``b = inf``); the difference is taken as
its limit 0 there (exact for models whose two posterior means agree to ``O(sigma^2)``, as for mixtures with full
support); the authors' code evaluates the network at ``t = 0`` instead.

Deviation of the authors' code, noted: the corrector's timestep is ``t + dt`` with ``t`` on the scheduler's
1000-scale and ``dt`` on the sigma scale (``dt = sigmas[i+1] - sigmas[i]``), so the network is told a time
``|dt|`` thousandths below ``t``, not the predictor's level; here the corrector runs at the next level, as the
paper's algorithm states. Their optional noise injection (``sigma_noise``, default 0) is not included.
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch

from .flow_guidance import resolve_path
from .model import Denoiser
from .paths import Path, velocity_map
from .samplers import Step, check_sigmas
from .weights import WeightSchedule, as_schedule

__all__ = ["rectified_cfgpp"]


def _call(f: Denoiser, x: torch.Tensor, sigma: float, name: str, i: int) -> torch.Tensor:
    d = f(x, sigma)
    if not isinstance(d, torch.Tensor) or d.shape != x.shape:
        raise ValueError(f"{name} must return a tensor of x's shape {tuple(x.shape)} (step {i}, sigma={sigma:g})")
    if not bool(torch.isfinite(d).all()):
        raise ValueError(f"{name} returned non-finite values at step {i} (sigma={sigma:g})")
    return d


def rectified_cfgpp(
    cond: Denoiser,
    uncond: Denoiser,
    x_start: torch.Tensor,
    sigmas,
    weight: Union[float, WeightSchedule] = 1.0,
    *,
    path: Optional[Path] = None,
    generator: Optional[torch.Generator] = None,
    callback: Optional[Callable[[Step], None]] = None,
) -> torch.Tensor:
    """Rectified-CFG++ from ``x_start`` (contract coordinates) over the decreasing levels ``sigmas`` (module
    docstring). ``weight`` is the corrector's ``w(sigma)`` at the current level; ``path`` the flow's path (taken
    from the denoisers when they carry one, required otherwise; usually :data:`~sampler.paths.LINEAR`).
    ``generator`` is accepted for a uniform signature and unused (the rule is deterministic). ``callback``
    receives a :class:`~sampler.samplers.Step` with the guided ``x0_hat`` of the step."""
    for name, f in (("cond", cond), ("uncond", uncond)):
        if not callable(f):
            raise ValueError(f"{name} must be a callable (x, sigma) -> tensor, got {f!r}")
    if not isinstance(x_start, torch.Tensor) or x_start.ndim < 2 or not x_start.is_floating_point():
        raise ValueError(f"x_start must be a floating tensor [N, ...] with at least 2 dimensions, got {x_start!r:.80}")
    s = check_sigmas(sigmas)
    path = resolve_path(path, {"cond": cond, "uncond": uncond}, rule="rectified_cfgpp")
    weight = as_schedule(weight)
    x = x_start
    with torch.no_grad():
        for i in range(s.numel() - 1):
            sig, nxt = s[i].item(), s[i + 1].item()
            d_c = _call(cond, x, sig, "cond", i)
            w = weight(sig)
            d = d_c
            if w != 0 and nxt > 0:
                x_pred = x + (nxt - sig) * ((x - d_c) / sig)
                gap = _call(cond, x_pred, nxt, "cond", i) - _call(uncond, x_pred, nxt, "uncond", i)
                d = d_c + (w * velocity_map(path, nxt).b / velocity_map(path, sig).b) * gap
            x = x + (nxt - sig) * ((x - d) / sig)
            if callback is not None:
                callback(Step(i, sig, nxt, x, d))
    return x
