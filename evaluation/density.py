"""Exact output density of a guided sampler on a 1-D or 2-D grid (no Monte Carlo).

Coordinates. The samplers of :mod:`sampler.samplers` work in VE coordinates, where the state at
``sigma`` has scale ``sqrt(1 + sigma^2)``. The density is propagated in the VP coordinates of the same
state, ``u = x_ve / sqrt(1 + sigma^2)`` (= ``sqrt(abar) x_ve``), on one fixed grid for every level: the
start ``vp_prior`` is ``u ~ N(0, I)``, the tilted start ``N(0, I) E_T`` is a density of ``u`` too, and at
``sigma = 0`` ``u`` is the sample ``x_0`` itself.

Per step ``i`` (``sigma -> sigma'``, the formulas of :mod:`sampler.samplers`, ``D = denoiser(x, sigma)``):

- stochastic (``ddpm``, ``ddim`` with ``eta > 0``, while ``sigma' > 0``): the kernel is Gaussian given ``D``,
  ``x' ~ N(D + sqrt(sigma'^2 - c^2)/sigma (x - D), c^2 I)``, ``c^2 = eta^2 sigma'^2 (sigma^2 - sigma'^2)/sigma^2``.
  The density is kept as values at the grid nodes and each step is the trapezoid rule on the nodes,
  ``p'(u_k) = h^d sum_j N(u_k; m(u_j), c_u^2 I) p(u_j)``, with each source's kernel normalised over its
  (virtually unbounded) band so that mass is conserved exactly and mass leaving the grid is counted as
  ``lost``. For smooth densities the trapezoid rule is spectrally accurate once ``c_u`` is about the
  spacing (error ``~exp(-2 pi^2 c_u^2 / h^2)``); kernels narrower than ``min_kernel_width * h`` are
  counted in ``narrow_steps`` (their error is then first order).
- deterministic (``ddim`` with ``eta = 0``, ``euler``, ``heun``, and the last ``ddpm``/``ddim`` step to
  ``sigma = 0``): the whole deterministic tail is one map ``Phi``, computed by running the sampler itself
  on ``sub^d`` sub-points per grid cell; its push-forward is the mass of every sub-point deposited on the
  output grid with linear ("cloud-in-cell") weights. This is mass transport between cells, valid for
  non-monotone and folding maps, and smooths once (not per step).

The result is a discrete distribution of *hat masses*: ``mass[k] = int phi_k(u) p(u) du`` with ``phi_k`` the
piecewise-(bi)linear hat function of node ``k``. :func:`evaluation.distances.tilted_target` discretises the
target the same way, so distances compare like with like and converge to the continuous ones as the
grid is refined.

This module moved here from ``analytic.density`` (issue 10): it runs samplers, so it belongs to the
evaluation layer; the exact mathematics it relies on stays in :mod:`analytic`.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from tqdm.auto import tqdm

from analytic.grid import tilted_posterior
from analytic.mixture import GaussianMixture
from analytic.quadrature import as_axes, axes_spacing, check_axes, deposit, grid_points, spline_at, sub_points
from sampler.samplers import SAMPLERS, check_sigmas, ddim_coefficients, sample

__all__ = ["OutputDensity", "output_density", "vp_start", "tilted_start", "grid_log_prob_start"]

LogProb = Callable[[torch.Tensor], torch.Tensor]  # u [N, d] -> [N], possibly unnormalised
_BAND = 7.5  # kernel truncation in standard deviations (relative mass beyond: < 1e-13)


class OutputDensity(NamedTuple):
    """The sampler's output law as hat masses on the grid ``axes`` ('ij' order), in the VP coordinates
    of the last level (the data coordinates when it is 0)."""

    axes: tuple[torch.Tensor, ...]
    mass: torch.Tensor  # [n_1(, n_2)], sums to 1 - lost
    lost: float  # mass that left the grid during the steps (the start is normalised on the grid)
    narrow_steps: int  # stochastic steps whose kernel was narrower than min_kernel_width * h

    @property
    def spacing(self) -> tuple[float, ...]:
        return axes_spacing(self.axes)

    @property
    def density(self) -> torch.Tensor:
        """``mass / h^d``: the density smoothed by the hat function. [n_1(, n_2)]"""
        return self.mass / math.prod(self.spacing)


# --- starts ----------------------------------------------------------------------------------------
def vp_start(d: int) -> LogProb:
    """``log N(u; 0, I)``: the start of :func:`sampler.samplers.vp_prior` in VP coordinates."""

    def log_prob(u: torch.Tensor) -> torch.Tensor:
        return -0.5 * (u**2).sum(1) - 0.5 * d * math.log(2 * math.pi)

    return log_prob


def tilted_start(cond: GaussianMixture, reward, abar_T: float, *, marginal: bool = False) -> LogProb:
    """``log N(u; 0, I) + log E_T(u)`` (unnormalised), THEORY.md section 4: the start the optimal guided
    chain needs, with ``E_T`` of the ideal chain at the first level ``abar_T`` (``u`` = VP state).

    ``marginal=True`` tilts the true noised conditional instead, ``p_T(u | y) E_T(u)``: the exact
    marginal of the tilted ideal chain. The two agree when ``p_T(u | y) = N(0, I)`` (``abar_T -> 0``);
    with the paper's ``abar_T = 0.82`` only the second makes the chain's output ``p(x_0|y) R_0 / Z``."""
    base = cond.noised(abar_T).log_prob if marginal else vp_start(cond.dim)

    def log_prob(u: torch.Tensor) -> torch.Tensor:
        return base(u) + tilted_posterior(cond, reward, u, abar_T).log_E

    return log_prob


def grid_log_prob_start(values: torch.Tensor, axes) -> LogProb:
    """A start given by log-density values on a uniform grid (cubic-spline interpolated)."""
    axes = check_axes(axes, values.ndim, uniform=True)

    def log_prob(u: torch.Tensor) -> torch.Tensor:
        return spline_at(values, axes, u)

    return log_prob


# --- the two kinds of step -------------------------------------------------------------------------
def _gauss_step(p: torch.Tensor, mean: torch.Tensor, c: float, axes, lo, h) -> tuple[torch.Tensor, float]:
    """Nodal values ``p`` [N] -> ``h^d sum_j N(u_k; mean_j, c^2 I) p_j`` on the grid; returns it and the
    mass that left the grid. Banded: each source reaches ``+-_BAND c`` around its mean; the output is
    accumulated on a grid padded by one band (the padding is the lost mass)."""
    d = len(axes)
    shape = tuple(a.numel() for a in axes)
    cell = math.prod(h)
    B = [int(math.ceil(2 * _BAND * c / hi)) + 2 for hi in h]
    src_mass = p * cell  # [N]
    keep = src_mass > 1e-300
    mean, src_mass = mean[keep], src_mass[keep]
    weights, idx = [], []
    padded = []
    for i in range(d):
        k0 = torch.floor((mean[:, i] - _BAND * c - lo[i]) / h[i]).long()  # [M]
        # sources far outside are clamped into the padding (their mass is lost anyway)
        k0 = k0.clamp(-B[i], shape[i])
        offs = torch.arange(B[i])
        z = (lo[i] + h[i] * k0.to(torch.float64) - mean[:, i])[:, None] / c + (h[i] / c) * offs.to(torch.float64)
        w = torch.exp(-0.5 * z * z)
        w = w / w.sum(1, keepdim=True)  # each source's mass is conserved over its band
        weights.append(w)
        idx.append(k0[:, None] + B[i] + offs)  # index in the padded axis
        padded.append(shape[i] + 2 * B[i])
    out = torch.zeros(math.prod(padded), dtype=torch.float64)
    if d == 1:
        out.index_add_(0, idx[0].flatten(), (src_mass[:, None] * weights[0]).flatten())
    else:
        for sl in torch.split(torch.arange(src_mass.numel()), max(1, 2_000_000 // (B[0] * B[1]))):
            vals = src_mass[sl, None, None] * weights[0][sl][:, :, None] * weights[1][sl][:, None, :]
            flat = idx[0][sl][:, :, None] * padded[1] + idx[1][sl][:, None, :]
            out.index_add_(0, flat.flatten(), vals.flatten())
    out = out.reshape(padded)
    inner = out[tuple(slice(B[i], B[i] + shape[i]) for i in range(d))].reshape(-1)
    lost = (src_mass.sum() - inner.sum()).item()
    return inner / cell, lost


# --- the entry point -------------------------------------------------------------------------------
def output_density(denoiser, sigmas, axes, *, sampler: str = "ddpm", eta: float = 0.0, start: LogProb | None = None,
                   sub: int | None = None, min_kernel_width: float = 0.5, progress: bool = False) -> OutputDensity:
    """Exact law of ``sample(sampler, denoiser, x_start, sigmas, eta=eta)`` on a uniform 1-D or 2-D grid.

    Args:
        denoiser: ``denoiser(x [N, d], sigma) -> x0_hat`` in VE coordinates (a bound model, a guidance
            object or ``REG(...)``), float64.
        sigmas: the sampler's strictly decreasing noise levels [K + 1].
        axes: one uniform axis per dimension (a single tensor in 1-D): the grid of the VP state ``u``,
            used at every level; it must hold the start's and the output's mass.
        sampler, eta: as :func:`sampler.samplers.sample`.
        start: log-density of the start state ``u`` (unnormalised; normalised on the grid); default
            :func:`vp_start` (the ``vp_prior``). :func:`tilted_start` gives ``N(0, I) E_T``.
        sub: sub-points per cell and dimension for the deterministic push-forward (default 8 in 1-D,
            3 in 2-D).
        min_kernel_width: stochastic kernels narrower than this many grid spacings are counted in
            ``narrow_steps`` (still computed, to first order).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
    if sampler != "ddim" and eta != 0:
        raise ValueError(f"eta={eta} is only meaningful for 'ddim', got sampler {sampler!r}")
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    if sub is not None and (int(sub) != sub or sub < 1):
        raise ValueError(f"sub must be a positive integer, got {sub}")
    if not callable(denoiser):
        raise ValueError(f"denoiser must be callable as denoiser(x, sigma), got {denoiser!r}")
    s = check_sigmas(sigmas)
    axes = as_axes(axes)
    axes = check_axes(axes, len(axes), uniform=True)
    d = len(axes)
    sub = int(sub) if sub is not None else (8 if d == 1 else 3)
    start = start if start is not None else vp_start(d)
    h = list(axes_spacing(axes))
    lo = [a[0].item() for a in axes]
    shape = tuple(a.numel() for a in axes)
    scale = torch.sqrt(1 + s**2)  # VE state = scale * u

    eta_eff = 1.0 if sampler == "ddpm" else (eta if sampler == "ddim" else 0.0)
    n_stoch = 0  # leading stochastic steps
    if eta_eff > 0:
        n_stoch = len(s) - 1 - (1 if s[-1] == 0 else 0)

    lost, narrow = 0.0, 0
    X = grid_points(axes)  # [N, d]
    if n_stoch > 0:
        log_p = start(X).to(torch.float64)
        p = torch.exp(log_p - log_p.max())
        p = p / (p.sum() * math.prod(h))  # nodal density, h^d sum = 1
        for i in tqdm(range(n_stoch), desc=f"{sampler} density", disable=not progress):
            sig, nxt = s[i].item(), s[i + 1].item()
            with torch.no_grad():
                x = scale[i].item() * X
                D = denoiser(x, sig).to(torch.float64)
                keep, c_ve = ddim_coefficients(sig, nxt, eta_eff)  # the sampler's own step
                mean_x = D + keep * (x - D)
            r = scale[i + 1].item()
            c = c_ve / r
            narrow += int(c < min_kernel_width * min(h))
            p, l = _gauss_step(p.flatten(), mean_x / r, c, axes, lo, h)
            lost += l
        p = p.reshape(shape)
        tail = s[n_stoch:]
        pts = sub_points(axes, int(sub))
        m = spline_at(p, axes, pts, outside="zero").clamp(min=0) * (math.prod(h) / sub**d)
        m = m * (p.sum() * math.prod(h)) / m.sum()  # the nodal mass, exactly
    else:
        tail = s
        pts = sub_points(axes, int(sub))
        log_p = start(pts).to(torch.float64)
        m = torch.exp(log_p - log_p.max())
        m = m / m.sum()
    if len(tail) > 1:
        with torch.no_grad():
            x_end = sample(sampler, denoiser, scale[n_stoch].item() * pts, tail, eta=eta if sampler == "ddim" else 0.0)
        pts = x_end.to(torch.float64) / scale[-1].item()
    mass, l = deposit(pts, m, axes)
    return OutputDensity(axes, mass, lost + l, narrow)
