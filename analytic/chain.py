"""The sampler-chain golden: ``E_t`` of the discrete DDPM chain actually run, on a 1-D or 2-D grid.

THEORY.md section 4 ("sampler chain"): the unguided conditional DDPM chain has Gaussian kernels
``N(x_{t-1}; mu_t(x_t), s_t^2 I)`` with ``mu_t = (x_t - beta_t / sqrt(1 - abar_t) eps(x_t, t)) / sqrt(alpha_t)``
and ``s_t^2`` the posterior variance (0 at ``t = 1``: the last step is deterministic). Then

    E_0 = R_0,    E_1(x_1) = R_0(mu_1(x_1)),    E_t(x_t) = int N(x; mu_t(x_t), s_t^2 I) E_{t-1}(x) dx.

The recursion runs on a uniform working grid (the requested grid plus a margin): each integral by
Gauss-Hermite nodes around ``mu_t``, with ``log E_{t-1}`` between grid points from a cubic spline.
Its gradient needs no differentiation of the spline:
``grad log E_t = J_mu^T (m_R - mu_t) / s_t^2`` (the tilted kernel mean ``m_R``), and
``J_mu^T v = (v - beta_t / sqrt(1 - abar_t) J_eps^T v) / sqrt(alpha_t)`` is one autograd VJP of ``eps``.

``eps_fn(x [N, d], t) -> [N, d]`` is any differentiable noise prediction at step ``t`` (1..T) of the
schedule, in VP coordinates. Build it from a denoiser on the sampler's one model contract with
:func:`eps_from_denoiser` (a trained network through ``sampler.bind(model, cond)``), so no network is
wrapped twice; the exact mixture's closed-form eps is :func:`mixture_eps_fn`.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from tqdm.auto import tqdm

from sampler.schedules import VPSchedule

from .mixture import GaussianMixture
from .quadrature import as_axes, axes_spacing, check_axes, gauss_hermite, grid_points, spline_at

__all__ = ["ChainGolden", "chain_golden", "eps_from_denoiser", "mixture_eps_fn"]

EpsFn = Callable[[torch.Tensor, int], torch.Tensor]


class ChainGolden(NamedTuple):
    """``E_t`` of the sampler chain at every step ``t = 1..T`` on the grid ``axes`` ('ij' order)."""

    axes: tuple[torch.Tensor, ...]
    abar: torch.Tensor  # [T]       abar_t of the rows below
    log_E: torch.Tensor  # [T, n_1(, n_2)]
    grad_log_E: torch.Tensor  # [T, n_1(, n_2), d]
    golden: torch.Tensor  # [T, n_1(, n_2), d]   -sqrt(1 - abar_t) grad log E_t
    margin: float  # width added on each side of the grid for the recursion


def eps_from_denoiser(denoiser: Callable[[torch.Tensor, float], torch.Tensor], schedule: VPSchedule) -> EpsFn:
    """The chain's ``eps_fn(x_vp, t)`` of a denoiser ``D(x_ve, sigma)`` on the sampler's model contract
    (THEORY.md section 1): ``x_ve = x_vp / sqrt(abar_t)``, ``eps = (x_ve - D(x_ve, sigma_t)) / sigma_t``."""

    def eps_fn(x: torch.Tensor, t: int) -> torch.Tensor:
        a, sigma = schedule.abar[t].item(), schedule.sigmas[t].item()
        x_ve = x / math.sqrt(a)
        return (x_ve - denoiser(x_ve, sigma)) / sigma

    return eps_fn


def mixture_eps_fn(mixture: GaussianMixture, schedule: VPSchedule) -> EpsFn:
    """The exact eps of a mixture at the levels of ``schedule``, in closed form (``GaussianMixture.eps``;
    going through ``denoise`` would lose digits to the cancellation ``x - D`` at small sigma)."""

    def eps_fn(x: torch.Tensor, t: int) -> torch.Tensor:
        return mixture.eps(x, schedule.abar[t].item())

    return eps_fn


def _eps(eps_fn: EpsFn, x: torch.Tensor, t: int) -> torch.Tensor:
    out = eps_fn(x, t)
    if out.shape != x.shape:
        raise ValueError(f"eps_fn returned shape {tuple(out.shape)} for input shape {tuple(x.shape)}")
    return out.to(torch.float64)


def _default_margin(eps_fn: EpsFn, schedule: VPSchedule, axes) -> float:
    """Six standard deviations of the chain's accumulated noise plus the largest drift of its mean path
    from the grid's edges: beyond that, the grid's values do not reach the requested points."""
    spread = math.sqrt(schedule.posterior_variance.sum().item())
    probes = torch.cartesian_prod(*[torch.linspace(a[0].item(), a[-1].item(), 9, dtype=torch.float64) for a in axes])
    x = probes.reshape(-1, len(axes))
    drift = torch.zeros(x.shape[0], dtype=torch.float64)
    with torch.no_grad():
        for t in range(schedule.T, 0, -1):
            mu = _mean_step(eps_fn, schedule, x, t)
            drift = torch.maximum(drift, (mu - probes.reshape(x.shape)).norm(dim=1))
            x = mu
    return 6 * spread + drift.max().item()


def _mean_step(eps_fn: EpsFn, schedule: VPSchedule, x: torch.Tensor, t: int) -> torch.Tensor:
    return schedule.reverse_mean(x, _eps(eps_fn, x, t), t)


def chain_golden(eps_fn: EpsFn, log_r0: Callable[[torch.Tensor], torch.Tensor], schedule: VPSchedule, axes, *,
                 margin: float | None = None, nodes: int | None = None, progress: bool = False) -> ChainGolden:
    """``log E_t`` and ``grad log E_t`` of the DDPM chain of ``eps_fn`` on a uniform 1-D or 2-D grid.

    Args:
        eps_fn: ``eps_fn(x [N, d], t) -> [N, d]``, differentiable in ``x``; ``t`` indexes ``schedule``.
        log_r0: ``log R_0(x_0)`` for x_0 [N, d] -> [N] (e.g. ``reward.log_r0``), differentiable.
        axes: one uniform 1-D tensor per dimension (a single tensor in 1-D).
        margin: width added on both sides of every axis for the recursion (default: see
            :func:`_default_margin`); the answer on ``axes`` converges as it grows.
        nodes: Gauss-Hermite nodes per dimension for each kernel (default 32 in 1-D, 12 in 2-D).
    """
    if not isinstance(schedule, VPSchedule):
        raise ValueError(f"schedule must be a sampler.schedules.VPSchedule, got {type(schedule).__name__}")
    if not callable(eps_fn) or not callable(log_r0):
        raise ValueError("eps_fn and log_r0 must be callables")
    axes = as_axes(axes)
    d = len(axes)
    axes = check_axes(axes, d, uniform=True)
    h = axes_spacing(axes)
    if margin is None:
        margin = _default_margin(eps_fn, schedule, axes)
    if not math.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be finite and >= 0, got {margin}")
    nodes = nodes or (32 if d == 1 else 12)
    if int(nodes) != nodes or nodes < 2:
        raise ValueError(f"nodes must be an integer >= 2, got {nodes}")

    pad = [int(math.ceil(margin / hi)) for hi in h]
    work_axes = tuple(torch.cat([a[0] - hi * torch.arange(p, 0, -1, dtype=torch.float64), a,
                                 a[-1] + hi * torch.arange(1, p + 1, dtype=torch.float64)])
                      for a, hi, p in zip(axes, h, pad))
    shape = tuple(a.numel() for a in work_axes)
    X = grid_points(work_axes)  # [Nw, d]
    inner = tuple(slice(p, p + a.numel()) for p, a in zip(pad, axes))
    X_out = grid_points(axes)
    z, logw = gauss_hermite(int(nodes), d)  # [M, d], [M]

    T = schedule.T
    log_E_all, grad_all = [], []
    log_E_prev = None  # on the working grid, shape `shape`
    for t in tqdm(range(1, T + 1), desc="sampler-chain golden", disable=not progress):
        s2 = schedule.posterior_variance[t].item()
        with torch.no_grad():
            mu = _mean_step(eps_fn, schedule, X, t)  # [Nw, d]
            if s2 == 0:  # the deterministic last step: E_t = R_0(mu)
                log_E = log_r0(mu).to(torch.float64)
                shift = None
            else:
                s = math.sqrt(s2)
                pts = mu[:, None, :] + s * z[None]  # [Nw, M, d]
                vals = spline_at(log_E_prev, work_axes, pts.reshape(-1, d), spacing=h).reshape(pts.shape[:2])
                lw = logw + vals
                log_E = torch.logsumexp(lw, dim=1)
                shift = s * torch.softmax(lw, dim=1) @ z  # m_R - mu, [Nw, d]
        if not torch.all(torch.isfinite(log_E)):
            raise ValueError(f"log E_t is not finite at step t={t} (R_0 underflows or overflows on the grid)")
        log_E = log_E.reshape(shape)
        # Gradient on the requested grid: v = grad of log(smoothed E_{t-1}) at mu, pulled back through mu_t.
        x = X_out.clone().requires_grad_(True)
        mu_out = _mean_step(eps_fn, schedule, x, t)
        if shift is None:
            m0 = mu_out.detach().requires_grad_(True)
            (v,) = torch.autograd.grad(log_r0(m0).sum(), m0)
        else:
            v = shift.reshape(*shape, d)[inner].reshape(-1, d) / s2
        (grad,) = torch.autograd.grad(mu_out, x, grad_outputs=v.to(mu_out.dtype))
        log_E_all.append(log_E[inner].detach())
        grad_all.append(grad.detach().reshape(*log_E[inner].shape, d))
        log_E_prev = log_E.detach()
    abar = schedule.abar[1:]
    grad_log_E = torch.stack(grad_all)
    golden = -torch.sqrt(1 - abar).reshape(-1, *([1] * (d + 1))) * grad_log_E
    if not torch.all(torch.isfinite(grad_log_E)):
        raise ValueError("grad log E_t is not finite on the grid")
    return ChainGolden(axes, abar, torch.stack(log_E_all), grad_log_E, golden, float(margin))
