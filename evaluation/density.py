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
  ``lost``. For smooth densities the trapezoid rule is spectrally accurate once neighbouring sources' kernel
  means lie within ``c_u / 1.2`` of each other (error ``~exp(-2 pi^2 1.2^2)``); where they do not (kernels
  narrower than the spacing, or expanding maps) the step takes ``r^d`` sub-sources per cell, the cubic spline
  of the nodal law with the denoiser evaluated at them, and the nodes sample the (smooth) sum of the
  unnormalised kernels (issue 20: summing a kernel narrower than the spacing over the nodes was an O(1)
  quadrature error that the estimate missed). Kernels narrower than ``min_kernel_width * h`` are still
  counted in ``narrow_steps``.
- deterministic (``ddim`` with ``eta = 0``, ``euler``, ``heun``, and the last ``ddpm``/``ddim`` step to
  ``sigma = 0``): the whole deterministic tail is one map ``Phi``, computed by running the sampler itself.
  In 1-D each grid cell is cut into ``sub`` sub-cells ``[a, b]`` (so they tile the grid); each sub-cell's mass
  (Simpson's rule on the nodal law's cubic spline, exact on it) is spread uniformly over the image segment
  between ``Phi(a)`` and ``Phi(b)`` (either order), whose hat masses are in closed form
  (:func:`analytic.quadrature.deposit_segments`). That is the push-forward through the piecewise-linear
  interpolant of ``Phi`` of a law constant on each sub-cell: exact geometry for an affine map, second order in
  the sub-spacing for a smooth one at any output spacing (a point deposit's error is set by the image spacing
  relative to the output grid's, which refining the grid at fixed ``sub`` does not reduce), and first order
  only where ``Phi`` is steeper than the sub-cells resolve (a sub-cell straddling the input that separates two
  output modes spreads its mass over the gap; the estimate from fewer sub-points sees it). In 2-D
  ``sub^2`` sub-points per cell are deposited with linear ("cloud-in-cell") weights. Both are mass transport
  between cells, valid for non-monotone and folding maps, and smooth once (not per step).

The start is not renormalised on the grid: its mass outside the grid's cells (:func:`mass_outside`) is part of
``lost``, as is the mass that leaves the grid during the steps. The start is read on tensor grids (the nodes, the
frame of :func:`mass_outside`, the 2-D sub-points of the push-forward; in 1-D also at the push-forward's sub-cell
edges): a start with ``on_grid`` (:data:`evaluation.starts.LogProb`; :func:`evaluation.starts.tilted_start`, whose ``E_T`` is a quadrature per point)
is evaluated there through it, one call per grid, the same values to rounding (issue 19: at the points, the tilted
start's frame was most of a 2-D cell's CPU). The nodes' values :func:`mass_outside` reads are the stochastic
steps' start.

The result is a discrete distribution of *hat masses*: ``mass[k] = int phi_k(u) p(u) du`` with ``phi_k`` the
piecewise-(bi)linear hat function of node ``k``. :func:`evaluation.distances.tilted_target` discretises the
target the same way, so distances compare like with like and converge to the continuous ones as the
grid is refined.

This module moved here from ``analytic.density`` (issue 10): it runs samplers, so it belongs to the
evaluation layer; the exact mathematics it relies on stays in :mod:`analytic`.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from analytic.gauss_sums import split_width
from analytic.quadrature import (as_axes, axes_spacing, check_axes, deposit, deposit_segments, grid_points, spline_at,
                                 sub_axes, sub_points)
from sampler.samplers import SAMPLERS, check_sigmas, ddim_coefficients, sample
from sampler.schedules import check_count, check_number

from .starts import LogProb, vp_start

__all__ = ["OutputDensity", "output_density", "MAX_SUB_POINTS", "gaussian_step", "source_step", "mass_outside"]

_BAND = 7.5  # kernel truncation in standard deviations (relative mass beyond: < 1e-13)


class OutputDensity(NamedTuple):
    """The sampler's output law as hat masses on the grid ``axes`` ('ij' order), in the VP coordinates
    of the last level (the data coordinates when it is 0)."""

    axes: tuple[torch.Tensor, ...]
    mass: torch.Tensor  # [n_1(, n_2)], sums to 1 - lost
    lost: float  # mass missing from the grid, 1 - mass.sum(): the start's mass outside it plus what left it
    narrow_steps: int  # stochastic steps whose kernel was narrower than min_kernel_width * h (computed with sub-sources)
    error: torch.Tensor | None  # [n_1(, n_2)] the discretisation error of the masses, spread over the nodes: its SUM
    # bounds sum |mass - exact hat masses| up to the lost mass (see total_error); a single node's value is not a bound.
    # None when the caller asked for no estimate (estimate_error=False)
    start_lost: float = 0.0  # the part of ``lost`` that is the start law's mass outside the grid
    unresolved_steps: int = 0  # stochastic steps whose kernel means could not be made to overlap (error not bounded)

    @property
    def total_error(self) -> float:
        """Bound on ``sum_k |mass_k - exact hat mass_k|`` of the sampler's law (the start not truncated):
        ``error.sum()`` plus ``lost``, which is missing here and may lie anywhere in the exact law (mass leaving
        the grid can come back); ``inf`` when a step was unresolved or no estimate was made."""
        if self.error is None or self.unresolved_steps:
            return math.inf
        return self.error.sum().item() + self.lost

    @property
    def spacing(self) -> tuple[float, ...]:
        return axes_spacing(self.axes)

    @property
    def density(self) -> torch.Tensor:
        """``mass / h^d``: the density smoothed by the hat function. [n_1(, n_2)]"""
        return self.mass / math.prod(self.spacing)


def _check_log_density(v, n: int, point, name: str, asked: str) -> torch.Tensor:
    """``v`` as float64 when it is a tensor [n] of log-densities, NaN and ``+inf`` nowhere; else ``ValueError``
    naming ``name`` (``point(i)``: the i-th point read, for the message; ``asked``: what was asked, likewise)."""
    if not isinstance(v, torch.Tensor) or tuple(v.shape) != (n,):
        got = f"shape {tuple(v.shape)}" if isinstance(v, torch.Tensor) else f"{type(v).__name__} {v!r:.60}"
        raise ValueError(f"{name} must return log-densities [N] for points u [N, d], got {got} for {asked}")
    v = v.detach().to(torch.float64)
    bad = torch.isnan(v) | (v == math.inf)
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        raise ValueError(f"{name} is not a finite log-density: NaN or +inf at {int(bad.sum())} of {v.numel()} points "
                         f"(e.g. {v[i].item()} at u = {point(i).tolist()})")
    return v


def _log_density_at(log_prob: LogProb, pts: torch.Tensor, name: str) -> torch.Tensor:
    """``log_prob(pts)`` [P] as float64, or ``ValueError`` naming ``name`` when it is not a tensor [P] or is NaN or
    ``+inf`` somewhere (a log-density is finite, or ``-inf`` where the density is 0)."""
    return _check_log_density(log_prob(pts), pts.shape[0], lambda i: pts[i], name,
                              f"points of shape {tuple(pts.shape)}")


def _log_density_on_grid(log_prob: LogProb, axes, name: str, keep: torch.Tensor | None = None) -> torch.Tensor:
    """``log_prob`` on the tensor grid of ``axes`` ('ij' order, flattened) [prod n], or at the grid's points where
    ``keep`` [prod n] is True [keep.sum()]: by ``log_prob.on_grid(axes)`` (on the whole grid, then masked) when the
    law has it (checked on the whole grid), else at the points kept. Checked as :func:`_log_density_at`."""
    axes = tuple(axes)
    on_grid = getattr(log_prob, "on_grid", None)
    if on_grid is None:
        pts = grid_points(axes)
        return _log_density_at(log_prob, pts if keep is None else pts[keep], name)
    n = math.prod(a.numel() for a in axes)
    v = _check_log_density(on_grid(axes), n, lambda i: grid_points(axes)[i], f"{name}.on_grid",
                           f"the grid of axes of lengths {[a.numel() for a in axes]}")
    return v if keep is None else v[keep]


_MAX_DOUBLINGS = 6  # widenings of mass_outside's frame


def mass_outside(log_prob: LogProb, axes, *, max_doublings: int = _MAX_DOUBLINGS, name: str = "log_prob") -> float:
    """The share of the law ``exp(log_prob)`` (unnormalised) lying outside the grid's cells (the box reaching half a
    spacing past the edge nodes), by the midpoint rule at the grid's spacing on the cells and on a frame as wide
    as the box around them, widened while the law at the frame's edge is not negligible (``1e-16`` of its peak).
    ``ValueError`` when it still is after ``max_doublings`` widenings, when ``log_prob`` (called ``name`` in the
    message) is NaN or ``+inf`` or of the wrong shape, or when it is ``-inf`` (no mass) everywhere it was read.

    The frame is the tensor grid of the widened axes without the grid itself: a ``log_prob`` with ``on_grid``
    (:data:`evaluation.starts.LogProb`) is evaluated on that whole tensor grid in one call and the inner block dropped."""
    return _mass_outside(log_prob, axes, max_doublings, name)[0]


def _mass_outside(log_prob: LogProb, axes, max_doublings: int, name: str) -> tuple[float, torch.Tensor]:
    """:func:`mass_outside`, and ``log_prob`` at the grid's nodes ('ij' order, flattened, checked) [prod n]."""
    h = axes_spacing(axes)
    d = len(axes)
    lp_in = _log_density_on_grid(log_prob, axes, name)
    for k in range(max_doublings + 1):
        ext, wts, outer, ends = [], [], [], []
        for a, hi in zip(axes, h):
            lo_edge, hi_edge = a[0].item() - 0.5 * hi, a[-1].item() + 0.5 * hi
            H = hi
            reach = int(math.ceil(2**k * (hi_edge - lo_edge) / H))
            left = lo_edge - H * (torch.arange(reach, 0, -1, dtype=torch.float64) - 0.5)
            right = hi_edge + H * (torch.arange(1, reach + 1, dtype=torch.float64) - 0.5)
            ext.append(torch.cat([left, a, right]))
            wts.append(torch.cat([torch.full((reach,), H), torch.full((a.numel(),), hi), torch.full((reach,), H)]).double())
            outer.append(torch.cat([torch.ones(reach), torch.zeros(a.numel()), torch.ones(reach)]).bool())
            end = torch.zeros(ext[-1].numel(), dtype=torch.bool)
            end[[0, -1]] = True  # the frame's outermost nodes on this axis
            ends.append(end)
        w = wts[0] if d == 1 else (wts[0][:, None] * wts[1][None, :]).reshape(-1)
        out_flag = outer[0] if d == 1 else (outer[0][:, None] | outer[1][None, :]).reshape(-1)
        far = ends[0] if d == 1 else (ends[0][:, None] | ends[1][None, :]).reshape(-1)
        w, far = w[out_flag], far[out_flag]
        lp_out = _log_density_on_grid(log_prob, ext, name, keep=out_flag)
        top = max(lp_in.max().item(), lp_out.max().item())
        if top == -math.inf:  # no mass seen yet: look further out
            continue
        inner = torch.exp(lp_in - top).sum().item() * math.prod(h)
        f_out = torch.exp(lp_out - top)
        outside = (f_out * w).sum().item()
        edge = f_out[far].max().item()
        if edge < 1e-16:
            return outside / (inner + outside), lp_in
    if top == -math.inf:
        raise ValueError(f"{name} is -inf (zero density) on the grid and within {2**max_doublings} grid widths of it: "
                         f"the law has no mass near the grid")
    raise ValueError(f"the law has mass far beyond the grid (still {edge:.3g} of its peak {2**max_doublings} grid "
                     f"widths past it): widen axes")


# --- the two kinds of step -------------------------------------------------------------------------
_SPLIT = 1.2  # the narrow part of a split kernel, in grid spacings (trapezoid aliasing 9e-13 relative)
_ROUNDING = 1e-15  # absolute rounding of a hat mass, relative to the largest


def _band_start(mean: torch.Tensor, c: float, lo: float, h: float, n: int, pad: int) -> tuple[torch.Tensor, int]:
    """The first node ``k0`` [M] (index on the axis of ``n`` nodes from ``lo``, spacing ``h``; ``-pad`` is the
    padding's first) of each source's band of ``B`` nodes reaching ``+-_BAND c`` around its ``mean`` [M], and
    ``B``. Sources far outside land in the padding (lost)."""
    B = int(math.ceil(2 * _BAND * c / h)) + 2
    k0 = torch.floor((mean - _BAND * c - lo) / h).long()
    return k0.clamp(-pad, n + pad - B), B


def _band_weights(mean: torch.Tensor, k0: torch.Tensor, B: int, c: float, lo: float, h: float,
                  normalise: bool) -> torch.Tensor:
    """The Gaussian weights (width ``c``) of each source's ``B`` band nodes from ``k0`` (:func:`_band_start`):
    normalised to sum 1 per source, or the kernel's values ``h N(u_k; m, c^2)``. [M, B]"""
    offs = torch.arange(B)
    z = ((lo + h * k0.to(torch.float64) - mean) / c)[:, None] + (h / c) * offs.to(torch.float64)
    z2 = z.square_()  # in place: this is the density's inner loop
    if normalise:  # relative to the nearest node (a kernel far narrower than the spacing must not underflow)
        w = z2.sub_(z2.min(1, keepdim=True).values).mul_(-0.5).exp_()
        return w.div_(w.sum(1, keepdim=True))  # each source's mass is conserved over its band
    return z2.mul_(-0.5).exp_().mul_(h / (c * math.sqrt(2 * math.pi)))


_CHUNK = 8192  # sources per block of the 2-D scatter (its two weight blocks stay in cache)


def _narrow_scatter(src_mass, mean, c, lo, h, shape, pads, normalise: bool = True) -> torch.Tensor:
    """Each source's mass spread over the nodes within ``+-_BAND c_i`` of its mean with Gaussian weights (width
    ``c[i]`` on axis ``i``), accumulated on the grid padded by ``pads``. ``normalise``: the weights of each source
    sum to 1 on the nodes (mass conserved per source; right when the kernel is resolved, ``c >= _SPLIT h``);
    otherwise they are the kernel's values ``h N(u_k; m, c^2)`` (a kernel narrower than the spacing sampled at
    the nodes: the sum over many sources is the smooth density, one source's weights are not). [padded shape]

    In 2-D a source's weights are the outer product ``w0 (x) w1`` of its two axes' weights, so the sources are
    sorted into tiles of ``S0 x S1`` band starts (half a band each) and each tile's sum
    ``sum_j m_j w0_j (x) w1_j`` is one matrix product ``W0^T W1`` of its sources' weights placed in a window of
    ``(S + B)`` nodes per axis (zeros elsewhere): the same positive terms as a scatter of every product, summed in
    another order (rounding only), without the ``[M, B0, B1]`` products and their indices (issue 19: the scatter
    was half of a 2-D DDPM law's time)."""
    d = len(shape)
    starts, bands, padded = [], [], []
    for i in range(d):
        k0, B = _band_start(mean[:, i], c[i], lo[i], h[i], shape[i], pads[i])
        starts.append(k0 + pads[i])  # index in the padded axis
        bands.append(B)
        padded.append(shape[i] + 2 * pads[i])
    if d == 1:
        (B,), (s0,) = bands, starts
        w = _band_weights(mean[:, 0], s0 - pads[0], B, c[0], lo[0], h[0], normalise)
        out = torch.zeros(padded[0], dtype=torch.float64)
        out.index_add_(0, (s0[:, None] + torch.arange(B)).flatten(), w.mul_(src_mass[:, None]).flatten())
        return out
    (B0, B1), (P0, P1) = bands, padded
    S0, S1 = max(B0 // 2, 8), max(B1 // 2, 8)  # tile sides: (S + B)^2 / B^2 <= 2.25 times the products, or 8 nodes
    T1 = (P1 + S1 - 1) // S1
    key, order = torch.sort((starts[0] // S0) * T1 + starts[1] // S1, stable=True)
    mean, src_mass, s0, s1 = mean[order], src_mass[order], starts[0][order], starts[1][order]
    out = torch.zeros(P0 + S0 + B0, P1 + S1 + B1, dtype=torch.float64)  # every tile's window fits
    r0, r1 = torch.arange(B0), torch.arange(B1)
    for a in range(0, key.numel(), _CHUNK):
        sl = slice(a, a + _CHUNK)
        w0 = _band_weights(mean[sl, 0], s0[sl] - pads[0], B0, c[0], lo[0], h[0], normalise).mul_(src_mass[sl, None])
        w1 = _band_weights(mean[sl, 1], s1[sl] - pads[1], B1, c[1], lo[1], h[1], normalise)
        W0 = torch.zeros(w0.shape[0], S0 + B0, dtype=torch.float64).scatter_(1, (s0[sl] % S0)[:, None] + r0, w0)
        W1 = torch.zeros(w1.shape[0], S1 + B1, dtype=torch.float64).scatter_(1, (s1[sl] % S1)[:, None] + r1, w1)
        tiles, counts = torch.unique_consecutive(key[sl], return_counts=True)
        j = 0
        for t, n in zip(tiles.tolist(), counts.tolist()):
            t0, t1 = (t // T1) * S0, (t % T1) * S1
            out[t0:t0 + S0 + B0, t1:t1 + S1 + B1].addmm_(W0[j:j + n].T, W1[j:j + n])
            j += n
    return out[:P0, :P1]  # the margin beyond holds only zeros: every band ends within the padding


def _blur(out: torch.Tensor, c_a, h) -> torch.Tensor:
    """Convolve every axis ``i`` with ``c_a[i] > 0`` with the normalised discrete Gaussian of width ``c_a[i]``
    reaching ``+-_BAND c_a[i]``, by direct sums of positive terms (no FFT: tail masses keep their relative
    accuracy). Mass beyond the array is dropped (it is beyond the padding, so lost anyway)."""
    for i, (ca, hi) in enumerate(zip(c_a, h)):
        if ca == 0:
            continue
        W = int(math.ceil(_BAND * ca / hi))
        k = torch.arange(-W, W + 1, dtype=torch.float64) * (hi / ca)
        g = torch.exp(-0.5 * k * k)
        g = g / g.sum()
        x = out.movedim(i, -1)
        n = x.shape[-1]
        if x.ndim == 1:
            y = torch.from_numpy(np.convolve(x.numpy(), g.numpy(), mode="full")[W:W + n].copy())
        else:
            j = torch.arange(n)
            diff = j[:, None] - j[None, :]
            T = torch.where(diff.abs() <= W, g[(diff + W).clamp(0, 2 * W)], torch.zeros((), dtype=torch.float64))
            y = x @ T  # y[..., j] = sum_k x[..., k] g(j - k)
        out = y.movedim(-1, i)
    return out


def gaussian_step(p: torch.Tensor, mean: torch.Tensor, c: float, axes, lo, h) -> tuple[torch.Tensor, float]:
    """Nodal values ``p`` [N] -> ``h^d sum_j N(u_k; mean_j, c^2 I) p_j`` on the grid; returns it and the
    mass that left the grid (:func:`source_step` with the nodes as sources).

    ``p`` [N] nodal values ('ij' order), ``mean`` [N, d] every source's kernel mean, ``lo``/``h`` per axis."""
    return source_step(p * math.prod(h), mean, c, axes, lo, h)


def source_step(src_mass: torch.Tensor, mean: torch.Tensor, c: float, axes, lo, h, *,
                overlap: bool = True) -> tuple[torch.Tensor, float]:
    """Point masses ``src_mass`` [M] at kernel means ``mean`` [M, d] -> the nodal density
    ``sum_j src_mass_j N(u_k; mean_j, c^2 I)`` on the grid, and the mass that left the grid.

    A resolved kernel (``c >= 1.2 h``) is normalised on the nodes for every source (mass conserved exactly),
    reaches ``+-_BAND c`` and is accumulated on a padded grid (the padding is the lost mass). Wide kernels
    (``c >= 2.4 h``) are split, ``N_c = N_{c_a} * N_{c_b}`` with ``c_a c_b / c = 1.2 h``
    (:func:`analytic.gauss_sums.split_width`): a narrow scatter from every source, then one convolution of the
    whole grid. Both parts are resolved, so the result differs from the direct sum by the aliasing of the
    trapezoid rule only (about 1e-12), at a cost independent of ``c / h``.

    A kernel narrower than ``1.2 h`` is not normalised per source (its node values do not resolve it): the
    nodes sample the sum, which is smooth when the sources' means lie closer than ``c / 1.2`` (the caller's
    job, :func:`_sources_per_cell`); the mass leaving the grid (beyond half a cell past the edge nodes) is the
    Gaussian tail of every source, and the nodal density is scaled to carry the rest exactly. When the means do
    not overlap (``overlap=False``: the sources needed exceed ``_MAX_SOURCES``) each source's narrow kernel is
    normalised on the nodes instead (mass stays local: first order, flagged as unresolved by the caller)."""
    d = len(axes)
    shape = tuple(a.numel() for a in axes)
    cell = math.prod(h)
    keep = src_mass > 1e-300
    mean, src_mass = mean[keep], src_mass[keep]
    if c >= _SPLIT * max(h) or not overlap:
        c_a, c_b = zip(*[split_width(c, _SPLIT * hi) for hi in h])
        pads = [int(math.ceil(2 * _BAND * cb / hi)) + 2 + int(math.ceil(_BAND * ca / hi))
                for cb, ca, hi in zip(c_b, c_a, h)]
        out = _blur(_narrow_scatter(src_mass, mean, c_b, lo, h, shape, pads), c_a, h)
        inner = out[tuple(slice(pads[i], pads[i] + shape[i]) for i in range(d))].reshape(-1)
        return inner / cell, (src_mass.sum() - inner.sum()).item()
    pads = [int(math.ceil(2 * _BAND * c / hi)) + 2 for hi in h]
    out = _narrow_scatter(src_mass, mean, [c] * d, lo, h, shape, pads, normalise=False)
    inner = out[tuple(slice(pads[i], pads[i] + shape[i]) for i in range(d))].reshape(-1)
    inside = torch.ones_like(src_mass)
    for i in range(d):
        a = (lo[i] - 0.5 * h[i] - mean[:, i]) / c
        b = (lo[i] + (shape[i] - 0.5) * h[i] - mean[:, i]) / c
        inside = inside * (torch.special.ndtr(b) - torch.special.ndtr(a))
    kept = (src_mass * inside).sum()
    total = inner.sum()
    if total > 0:
        inner = inner * (kept / total)
    return inner / cell, (src_mass.sum() - kept).item()


_MAX_SOURCES = (64, 12)  # largest sub-sources per cell and axis, 1-D and 2-D


def _sources_per_cell(mean: torch.Tensor, p: torch.Tensor, shape: tuple[int, ...], c: float) -> int:
    """Sources per cell and axis that put neighbouring kernel means within ``c / 1.2`` of each other (the
    trapezoid rule over the sources is then spectrally accurate, aliasing ~5e-13), over the nodes that carry
    mass (the caller caps it at ``_MAX_SOURCES``)."""
    d = len(shape)
    m = mean.reshape(*shape, d)
    live = (p > 1e-16 * p.max()).reshape(shape)
    gap = 0.0
    for i in range(d):
        step = (m.narrow(i, 1, shape[i] - 1) - m.narrow(i, 0, shape[i] - 1)).norm(dim=-1)
        on = live.narrow(i, 1, shape[i] - 1) | live.narrow(i, 0, shape[i] - 1)
        if on.any():
            gap = max(gap, step[on].max().item())
    return max(1, math.ceil(_SPLIT * gap / c))


def _stochastic_step(p, node_mean, c, axes, lo, h, kernel_mean) -> tuple[torch.Tensor, float, int]:
    """One stochastic step of the nodal density ``p`` [N]: the nodes are the sources when their kernel means
    lie within ``c / 1.2`` of each other; otherwise ``r^d`` sub-sources per cell (:func:`_sources_per_cell`)
    carry the spline of ``p`` to means ``kernel_mean(points)``. Returns the new ``p``, the lost mass and the ``r``
    needed (more than ``_MAX_SOURCES``: the step is not resolved)."""
    shape = tuple(a.numel() for a in axes)
    cell = math.prod(h)
    need = _sources_per_cell(node_mean, p, shape, c)
    r = min(need, _MAX_SOURCES[len(axes) - 1])
    if r == 1:
        out, lost = source_step(p * cell, node_mean, c, axes, lo, h)
        return out, lost, need
    pts = sub_points(axes, r)
    m = spline_at(p.reshape(shape), axes, pts, outside="zero").clamp(min=0)
    m = m * (p.sum() * cell / m.sum()) if m.sum() > 0 else m  # the nodal mass, exactly (none left: 0, not 0/0)
    out, lost = source_step(m, kernel_mean(pts), c, axes, lo, h, overlap=need <= r)
    return out, lost, need


# --- nested grids ---------------------------------------------------------------------------------
def _refine(axes, k: int) -> tuple[torch.Tensor, ...]:
    """The grid with ``2^k`` times as many cells, containing ``axes``' nodes."""
    return tuple(torch.linspace(a[0].item(), a[-1].item(), (a.numel() - 1) * 2**k + 1, dtype=torch.float64)
                 for a in axes)


def _restrict(mass: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Hat masses on a grid ``2^k`` times coarser (every ``2^k``-th node): hats of nested grids refine exactly,
    ``phi^H_K = phi^h_{2K} + (phi^h_{2K-1} + phi^h_{2K+1}) / 2``, so hat masses restrict exactly."""
    for _ in range(k):
        for i in range(mass.ndim):
            x = mass.movedim(i, 0)
            out, odd = x[0::2].clone(), x[1::2]
            out[: odd.shape[0]] += 0.5 * odd  # node 2K + 1 -> K
            out[1:] += 0.5 * odd[: out.shape[0] - 1]  # node 2K - 1 -> K
            mass = out.movedim(0, i)
    return mass


def _prolong(err: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Spread per-node errors of the every-other-node grid over the nodes of ``shape`` (each fine hat holds
    about half of a coarse hat's mass per dimension)."""
    for i, n in enumerate(shape):
        x = err.movedim(i, 0)
        out = torch.zeros((n,) + tuple(x.shape[1:]), dtype=torch.float64)
        out[0::2] = 0.5 * x[: (n + 1) // 2]
        nxt = torch.cat([x[1:], torch.zeros_like(x[:1])])
        out[1::2] = 0.25 * (x + nxt)[: n // 2]
        err = out.movedim(0, i)
    return err


# --- one resolution --------------------------------------------------------------------------------
@contextlib.contextmanager
def _denoiser_context(d: int):
    """A plain ``ValueError`` from the denoiser (or the sampler's check of its output) gets the grid's dimension
    appended: axes of the wrong count reach a mixture's denoiser as points of the wrong shape (issue 20: two axes for
    a 1-D law read "x must have shape [N, 1]"). Other error classes pass unchanged."""
    try:
        yield
    except ValueError as e:
        if type(e) is not ValueError:
            raise
        raise ValueError(f"{e} [output_density: axes has {d} entr{'y' if d == 1 else 'ies'}, so the denoiser gets "
                         f"points [N, {d}]]") from e


class _Pair(NamedTuple):
    mass: torch.Tensor  # hat masses on the working grid
    coarse: torch.Tensor | None  # the check's computation on the working grid's even nodes (twice the spacing)
    coarser: torch.Tensor | None  # ... and on every fourth node (None unless every axis has 4k + 1 >= 9 nodes)
    check: torch.Tensor | None  # the masses from fewer sub-points per cell (check_sub), on the working grid
    sub_error: torch.Tensor | None  # |mass - check| / (sub / check_sub - 1): the sub-points' part of the error
    lost: float  # left the grid during the steps
    narrow: int
    start_lost: float  # the start's mass outside the grid
    unresolved: int


def check_sub(sub: int) -> int:
    """The sub-points per cell of the run that checks one at ``sub`` (>= 2): ``sub`` over its smallest prime factor
    (``sub / 2`` for an even ``sub``), so that the check's sub-cells nest in the run's (1-D shares the map's values)."""
    return sub // next(f for f in range(2, sub + 1) if sub % f == 0)


def _tail_mass(p, axes, subs: tuple[int, ...], log_start, inside: float, denoiser, sampler, eta, tail, scale_in,
               scale_out):
    """Hat masses after the deterministic tail from a nodal density ``p`` (or, with ``p=None``, from the start
    density ``log_start`` itself), with ``sub`` sub-points per cell for each ``sub`` of ``subs`` (each dividing the
    last), in that order.

    1-D: the segments between consecutive edges of ``sub`` sub-cells per cell (:func:`_sub_edges`) go to the
    segments between their edges' images, each with its mass spread uniformly (:func:`deposit_segments`); the
    map runs once, on the edges of the last (finest) sub-cells, which hold the others. 2-D: ``sub^2`` sub-points
    per cell, deposited as points (:func:`deposit`)."""
    d = len(axes)
    h = axes_spacing(axes)

    top = None  # the start's log-density scale: one for every call when set

    def density(pts, grid=None):  # the law's (unnormalised) density at pts [P, d] (the tensor grid of ``grid`` if given)
        if p is not None:
            return spline_at(p, axes, pts, outside="zero").clamp(min=0)
        log_p = _log_density_at(log_start, pts, "start") if grid is None else _log_density_on_grid(log_start, grid, "start")
        return torch.exp(log_p - (log_p.max() if top is None else top))

    def push(pts):  # the deterministic tail, VP -> VP
        if len(tail) == 1:
            return pts
        reset = getattr(denoiser, "reset", None)  # a stateful guidance (APG with momentum): one run each
        if reset is not None:
            reset()
        with torch.no_grad(), _denoiser_context(d):
            x_end = sample(sampler, denoiser, scale_in * pts, tail, eta=eta)
        return x_end.to(torch.float64) / scale_out

    total = p.sum().item() * math.prod(h) if p is not None else inside  # the nodal mass, or the start's inside
    outs = []
    if d == 1:
        fine = _sub_edges(axes[0], subs[-1])  # [N sub_max + 1]
        image = push(fine[:, None])[:, 0]
        if p is None:  # one scale for the start's density at the edges and at the midpoints
            top = _log_density_on_grid(log_start, (fine,), "start").max()
        for k in subs:
            stride = subs[-1] // k
            known = (fine[1::2], image[1::2]) if stride == 2 else None  # the finest run's edges: its midpoints
            edges, y = _bisect_steep(fine[::stride], image[::stride], lambda u: push(u[:, None])[:, 0], h[0], known)
            mids = 0.5 * (edges[:-1] + edges[1:])
            f = density(edges[:, None])
            m = (f[:-1] + 4 * density(mids[:, None]) + f[1:]) * ((edges[1:] - edges[:-1]) / 6)  # Simpson: exact on the spline's cubics
            if m.sum() > 0:  # every mass left the grid: 0, not 0/0 = NaN (issue 20)
                m = m * (total / m.sum())
            outs.append(deposit_segments(y[:-1], y[1:], m, axes[0]))
        return outs
    for k in subs:
        grid = sub_axes(axes, k)  # sub_points(axes, k) is their tensor grid
        pts = grid_points(grid)
        m = density(pts, grid)
        if m.sum() > 0:  # every mass left the grid: 0, not 0/0 = NaN (issue 20)
            m = m * (total / m.sum())
        outs.append(deposit(push(pts), m, axes))
    return outs


_STEEP_DEPTH = 8  # bisections of a sub-cell whose image is longer than the spacing and not straight
_BENT = 0.1  # a segment is bisected again when its midpoint's image left the chord by this share of its length


def _bisect_steep(edges: torch.Tensor, y: torch.Tensor, push, h: float, known=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The chain of sub-cell edges [E] and their images ``y = Phi(edges)`` [E], with every sub-cell whose image is
    longer than the spacing ``h`` bisected (``push`` maps points [M] to images [M]) while its midpoint's image lies
    off the chord by more than ``_BENT`` of the chord, up to ``_STEEP_DEPTH`` times and at most as many new points
    as there are edges. Where ``Phi`` is steep (the input that separates two output modes) a sub-cell's mass is
    then spread over the gap between them in ever smaller shares (first order in the sub-spacing there, 2^-depth
    times smaller); a straight but stretched image is left whole (it is exact). ``known``: (midpoints, images) of
    the first sub-cells, to use instead of running the map there. Returns the refined (edges, images)."""
    live = torch.ones(edges.numel() - 1, dtype=torch.bool)
    budget = edges.numel()
    for level in range(_STEEP_DEPTH):
        chord = (y[1:] - y[:-1]).abs()
        steep = live & (chord > h)
        idx = steep.nonzero().flatten()
        if idx.numel() == 0 or idx.numel() > budget:
            break
        budget -= idx.numel()
        if level == 0 and known is not None:
            mid, ym = known[0][idx], known[1][idx]
        else:
            mid = 0.5 * (edges[idx] + edges[idx + 1])
            ym = push(mid)
        bent = (ym - 0.5 * (y[idx] + y[idx + 1])).abs() > _BENT * chord[idx]
        count = 1 + steep.long()
        pos = torch.cumsum(count, 0) - count  # where each old sub-cell starts in the new chain
        new_e = torch.empty(edges.numel() + idx.numel(), dtype=torch.float64)
        new_y = torch.empty_like(new_e)
        new_e[pos], new_y[pos] = edges[:-1], y[:-1]
        new_e[-1], new_y[-1] = edges[-1], y[-1]
        new_e[pos[idx] + 1], new_y[pos[idx] + 1] = mid, ym
        live = torch.repeat_interleave(live, count)
        live[pos[idx]], live[pos[idx] + 1] = bent, bent
        edges, y = new_e, new_y
    return edges, y


def _sub_edges(axis: torch.Tensor, sub: int) -> torch.Tensor:
    """The edges of ``sub`` equal sub-cells in each grid cell (cells centred on the nodes, as :func:`sub_points`,
    whose points are their midpoints), from half a spacing below the first node to half a spacing above the last.
    [N sub + 1]"""
    h = (axis[1] - axis[0]).item()
    return axis[0].item() - 0.5 * h + (h / sub) * torch.arange(axis.numel() * sub + 1, dtype=torch.float64)


def _density(denoiser, s: torch.Tensor, axes, sampler: str, eta: float, start: LogProb, sub: int,
             min_kernel_width: float, progress: bool, estimate: bool = True, max_outside: float = 1.0) -> _Pair:
    """The law on ``axes`` and (with ``estimate``), reusing every denoiser value at the even nodes, on the grid of
    even nodes, on the grid of every fourth node (when every axis has ``4k + 1 >= 9`` nodes) and with twice the
    sub-points."""
    d = len(axes)
    h = list(axes_spacing(axes))
    lo = [a[0].item() for a in axes]
    shape = tuple(a.numel() for a in axes)
    c_axes = tuple(a[0::2] for a in axes)
    c_h = [2 * hi for hi in h]
    c_shape = tuple(a.numel() for a in c_axes)
    even = torch.zeros(shape, dtype=torch.bool)
    even[tuple(slice(0, None, 2) for _ in range(d))] = True
    even = even.flatten()
    three = estimate and all(n >= 9 and (n - 1) % 4 == 0 for n in shape)  # a third level, every fourth node
    f_axes = tuple(a[0::4] for a in axes)
    f_h = [4 * hi for hi in h]
    fourth = torch.zeros(shape, dtype=torch.bool)
    fourth[tuple(slice(0, None, 4) for _ in range(d))] = True
    fourth = fourth.flatten()
    scale = torch.sqrt(1 + s**2)  # VE state = scale * u
    eta_eff = 1.0 if sampler == "ddpm" else (eta if sampler == "ddim" else 0.0)
    n_stoch = len(s) - 1 - (1 if s[-1] == 0 else 0) if eta_eff > 0 else 0  # leading stochastic steps
    tail_eta = eta if sampler == "ddim" else 0.0
    start_lost, log_p = _mass_outside(start, axes, _MAX_DOUBLINGS, "start")  # log_p: the start at the nodes [N]
    if not start_lost <= max_outside:
        box = " x ".join(f"[{a[0].item():.4g}, {a[-1].item():.4g}]" for a in axes)
        raise ValueError(f"the start law has {start_lost:.3g} of its mass outside the grid {box} (more than "
                         f"max_outside={max_outside:g}): widen or move the axes")
    inside = 1.0 - start_lost
    lost, narrow, unresolved = 0.0, 0, 0
    if n_stoch > 0:
        X = grid_points(axes)  # [N, d]
        p = torch.exp(log_p - log_p.max())
        q, g = p[even], p[fourth]
        p = p * (inside / (p.sum() * math.prod(h)))  # nodal density, h^d sum = the start's mass on the grid
        q = q * (inside / (q.sum() * math.prod(c_h)))
        g = g * (inside / (g.sum() * math.prod(f_h)))
        for i in tqdm(range(n_stoch), desc=f"{sampler} density", disable=not progress):
            sig, nxt = s[i].item(), s[i + 1].item()
            keep, c_ve = ddim_coefficients(sig, nxt, eta_eff)  # the sampler's own step

            def kernel_mean(u):  # [M, d] VP states -> the step's kernel means [M, d]
                with torch.no_grad():
                    x = scale[i].item() * u
                    with _denoiser_context(d):
                        D = denoiser(x, sig)
                    if not isinstance(D, torch.Tensor) or D.shape != x.shape:
                        got = f"shape {tuple(D.shape)}" if isinstance(D, torch.Tensor) else type(D).__name__
                        raise ValueError(f"the denoiser must return a tensor of x's shape {tuple(x.shape)}, got {got} "
                                         f"(stochastic step {i}, sigma={sig:g})")
                    D = D.to(torch.float64)
                    return (D + keep * (x - D)) / scale[i + 1].item()

            mean = kernel_mean(X)
            c = c_ve / scale[i + 1].item()
            narrow += int(c < min_kernel_width * min(h))
            p, l, r = _stochastic_step(p, mean, c, axes, lo, h, kernel_mean)
            unresolved += int(r > _MAX_SOURCES[d - 1])
            if estimate:
                q, _, _ = _stochastic_step(q, mean[even], c, c_axes, lo, c_h, kernel_mean)
            if three:
                g, _, _ = _stochastic_step(g, mean[fourth], c, f_axes, lo, f_h, kernel_mean)
            lost += l
        tail = s[n_stoch:]
        args = (denoiser, sampler, tail_eta, tail, scale[n_stoch].item(), scale[-1].item())
        p_fine, p_coarse = p.reshape(shape), q.reshape(c_shape)
        p_coarser = g.reshape(tuple(a.numel() for a in f_axes))
    else:
        args = (denoiser, sampler, tail_eta, s, scale[0].item(), scale[-1].item())
        p_fine = p_coarse = p_coarser = None
    if not estimate:
        ((mass, l),) = _tail_mass(p_fine, axes, (sub,), start, inside, *args)
        return _Pair(mass, None, None, None, None, lost + l, narrow, start_lost, unresolved)
    few = check_sub(sub)
    (check, _), (mass, l) = _tail_mass(p_fine, axes, (few, sub), start, inside, *args)
    ((coarse, _),) = _tail_mass(p_coarse, c_axes, (few,), start, inside, *args)
    coarser = _tail_mass(p_coarser, f_axes, (few,), start, inside, *args)[0][0] if three else None
    # the check's error is at least (sub / few) times the run's (order >= 1 in the sub-spacing), so the change
    # between them is at least (sub / few - 1) times the run's error
    return _Pair(mass, coarse, coarser, check, (mass - check).abs() / (sub / few - 1), lost + l, narrow, start_lost,
                 unresolved)


MAX_SUB_POINTS = 2**25  # the most points one push-forward run of output_density takes (~250 bytes each: ~8 GB)
_MAX_RATE = 16.0  # the largest error ratio per halving of the spacing taken from observation (order 4: the spline)


def _convergence_factor(pair: _Pair) -> float:
    """The factor from the change between the spacings ``2h`` and ``h`` to the error at ``h``. The change is
    ``E(2h) - E(h)``, about ``(rho - 1) E(h)`` with ``rho = E(2h) / E(h)``; it bounds ``E(h)`` for ``rho >= 2``
    (order >= 1), but for the stochastic samplers, whose steps are spectrally accurate and whose nodal law enters
    the push-forward through a cubic spline (order 4), ``rho`` is 10 to 40 on typical grids and so was the
    estimate's excess (issue 20). ``rho`` is observed as the ratio of the change between ``4h`` and ``2h`` to the
    one between ``2h`` and ``h`` (both as hat masses on the ``4h`` grid): the factor is ``1 / max(1, rho - 1)``,
    1 (the plain change) where the rate is 2 or less, where no third level exists, or where the changes vanish.
    A rate beyond ``_MAX_RATE`` is more than the method's orders give: the coarser grids are not yet in their
    asymptotic regime (a kernel resolved between ``4h`` and ``2h``), and the rate may fall as much at the next
    halving (paper_1d on a 0.1 grid: 63 observed, 7.7 actual), so it counts as half the cap: ``1 / 7``.
    (Before session 15 every rate was halved for safety; on the ledger's 2-D DDPM laws the observed rate is 5 to
    10, below the actual one at the finest grid, so the halving only made the estimate looser:
    ``benchmarks/estimate_2d.txt``.)"""
    if pair.coarser is None:
        return 1.0
    fine = (_restrict(_restrict(pair.check) - pair.coarse)).abs().sum().item()  # E(2h) - E(h), on the 4h grid
    coarse = (_restrict(pair.coarse) - pair.coarser).abs().sum().item()  # E(4h) - E(2h)
    if not (fine > 0 and math.isfinite(coarse)):
        return 1.0
    rho = coarse / fine
    return 1.0 / max(1.0, rho - 1.0 if rho <= _MAX_RATE else 0.5 * _MAX_RATE - 1.0)


# --- the entry point -------------------------------------------------------------------------------
def output_density(denoiser, sigmas, axes, *, sampler: str = "ddpm", eta: float = 0.0, start: LogProb | None = None,
                   sub: int | None = None, min_kernel_width: float = 0.5, tol: float | None = None,
                   max_nodes: int = 4_000_000, on_budget: str = "raise", estimate_error: bool = True,
                   max_outside: float = 0.5, progress: bool = False) -> OutputDensity:
    """Exact law of ``sample(sampler, denoiser, x_start, sigmas, eta=eta)`` on a uniform 1-D or 2-D grid, as
    hat masses, with an error estimate per node.

    Resolution and error. The law is computed on a working grid (the given one, or ``2^k`` times finer,
    restricted exactly to the given hats) with ``sub`` sub-points per cell in the deterministic push-forward, and
    checked by the same computation with fewer sub-points (:func:`check_sub`: ``sub / 2`` for an even ``sub``),
    on the working grid and, at no extra denoiser cost, on its even nodes. The error estimate (``error``) is the
    spacing's part, the change between the check's two grids (at ``k = 0`` spread over the given nodes) divided
    by the observed convergence (:func:`_convergence_factor`: with a third computation on every fourth node,
    ``1 / max(1, rho - 1)`` for an observed error ratio ``rho`` per halving, 1 where ``rho <= 2``, ``1 / 7``
    where ``rho`` exceeds 16),
    plus the sub-points' part, the change from the check to the law divided by ``sub / check_sub(sub) - 1``
    (at least the law's error when the push-forward converges at first order or faster in its sub-spacing),
    plus ``1e-15`` of the largest mass for rounding (hat masses come from a spline of the nodal law, so masses
    far below the largest are not relatively accurate: a KL that divides by them sees it in its error). The plain
    change is about the coarser computation's error, 10 to 40 times the returned one's for the stochastic
    samplers, which converge faster than second order (issue 20); the observed rate brings that within a few
    times (on the ledger's 2-D DDPM laws: ``benchmarks/estimate_2d.txt``). Only its sum is a bound:
    the per-node values place the error where the two computations differ, and a single node can exceed its
    own value. ``total_error`` adds ``lost`` (the start's mass outside the grid and what left it), which the
    masses do not hold. Stochastic steps with extra denoiser calls at sub-sources (kernel means of neighbouring
    nodes further apart than ``c / 1.2``) cost up to ``r^d`` times a plain step.

    Args:
        denoiser: ``denoiser(x [N, d], sigma) -> x0_hat`` in VE coordinates (a bound model, a guidance
            object or ``REG(...)``), float64, deterministic.
        sigmas: the sampler's strictly decreasing noise levels [K + 1].
        axes: one uniform axis per dimension with at least 3 nodes (a single tensor in 1-D): the grid of the VP
            state ``u``, used at every level; it must hold the start's and the output's mass.
        sampler, eta: as :func:`sampler.samplers.sample`.
        start: log-density of the start state ``u`` (unnormalised; normalised on the grid); default
            :func:`evaluation.starts.vp_start` (the ``vp_prior``). :func:`evaluation.starts.tilted_start` gives ``N(0, I) E_T``.
        sub: sub-points per cell and dimension for the deterministic push-forward (default 16 in 1-D,
            6 in 2-D; at least 2 with the estimate, whose check runs at :func:`check_sub` of it). A run puts
            ``nodes x sub^d`` points through it, about 250 bytes each: more than ``MAX_SUB_POINTS`` (2^25, some
            8 GB) is refused (``ValueError`` naming
            ``sub``; past the first grid, when ``tol`` refines, it ends the refinement like ``max_nodes``).
        min_kernel_width: stochastic kernels narrower than this many grid spacings (a number >= 0) are counted in
            ``narrow_steps`` (they are computed with sub-sources, see the module docstring).
        tol: largest summed error of the masses (``error.sum()``, which with ``lost`` bounds twice the TV error;
            a finer grid does not reduce ``lost``: widen the axes for it). ``None``:
            compute on the given grid and report its error (the default); otherwise working grids are refined
            until the estimate is below ``tol``. A ``tol`` no refinement can meet is refused (``ValueError`` naming
            it) after the first grid, not after the budget's: below the estimate's rounding floor (``1e-15`` of the
            largest mass per node), or, with ``on_budget="raise"`` and no narrow or unresolved stochastic steps, beyond
            the grids ``max_nodes`` allows even at 256 times less error per halving of the spacing (after two such
            grids in a row: the square of the shrinking observed between them, at least 4).
        max_nodes, on_budget: the largest working grid; when ``tol`` is not met within it, ``"raise"``
            (``ValueError`` with the error reached) or ``"warn"`` (``RuntimeWarning``, and the result).
        estimate_error: ``False`` skips the runs behind the estimate (the check with fewer sub-points and its
            even-node grids: about a third more push-forward work in 2-D, and the stochastic steps on the even
            nodes) and
            returns ``error=None``; the masses are the same. Only with ``tol=None``.
        max_outside: the largest share of the start law outside the grid's cells (:func:`mass_outside`; it is
            part of ``lost``), a mass in ``[0, 1)``; more is refused (``ValueError`` naming both), as
            :func:`evaluation.distances.tilted_target` refuses a target outside its grid: a grid that misses most of
            the start describes mass it does not hold (issue 20: a grid inside the start, or off it, gave NaN). The
            default 0.5 refuses only grids that miss most of the start: the accuracy contract
            (:func:`evaluation.accuracy.converged_laws`) widens grids that lose more than a share of its tolerance.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
    eta = check_number(eta, "eta")
    if sampler != "ddim" and eta != 0:
        raise ValueError(f"eta={eta} is only meaningful for 'ddim', got sampler {sampler!r}")
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    sub = None if sub is None else check_count(sub, "sub")
    if not callable(denoiser):
        raise ValueError(f"denoiser must be callable as denoiser(x, sigma), got {denoiser!r}")
    if start is not None and not callable(start):
        raise ValueError(f"start must be None or a callable log-density u [N, d] -> [N], got {start!r:.80}")
    if tol is not None and (isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (math.isfinite(tol) and tol > 0)):
        raise ValueError(f"tol must be a positive number or None, got {tol!r}")
    max_nodes = check_count(max_nodes, "max_nodes", least=9)
    if check_number(min_kernel_width, "min_kernel_width") < 0:
        raise ValueError(f"min_kernel_width must be a number of grid spacings >= 0, got {min_kernel_width!r}")
    if isinstance(max_outside, bool) or not isinstance(max_outside, (int, float)) or not 0 <= max_outside < 1:
        raise ValueError(f"max_outside must be a mass in [0, 1), got {max_outside!r}")
    if on_budget not in ("raise", "warn"):
        raise ValueError(f"on_budget must be 'raise' or 'warn', got {on_budget!r}")
    if not isinstance(estimate_error, bool) or (not estimate_error and tol is not None):
        raise ValueError(f"estimate_error must be a bool, and True when tol is given; got {estimate_error!r}, tol={tol!r}")
    s = check_sigmas(sigmas)
    axes = as_axes(axes)
    axes = check_axes(axes, len(axes), uniform=True)
    if min(a.numel() for a in axes) < 3:
        raise ValueError(f"need at least 3 nodes per axis (the error estimate compares with every other node), "
                         f"got {[a.numel() for a in axes]}")
    d = len(axes)
    sub = sub if sub is not None else (16 if d == 1 else 6)
    if estimate_error and sub < 2:
        raise ValueError(f"sub must be at least 2 when the error is estimated (its check runs at fewer sub-points per "
                         f"cell, check_sub(sub)), got {sub}")
    start = start if start is not None else vp_start(d)
    shape = tuple(a.numel() for a in axes)

    level, error = 0, None  # error: the last grid's estimate (set before the budget can stop a refinement)
    previous = None  # the summed estimate of the grid before, when it was settled (no narrow or unresolved steps)
    while True:
        work = _refine(axes, level)
        size = math.prod(a.numel() for a in work)
        points = size * sub**d  # the push-forward's largest run
        if size > max_nodes or points > MAX_SUB_POINTS:
            if level == 0 and size > max_nodes:
                raise ValueError(f"the grid has {size} nodes, more than max_nodes={max_nodes}")
            if level == 0:
                raise ValueError(f"sub={sub} puts {points:.3g} points through the push-forward ({size} nodes x "
                                 f"sub^{d}, "
                                 f"about {points * 250 / 2**30:.3g} GB), more than MAX_SUB_POINTS = 2^25: lower sub or "
                                 f"the node count")
            limit = f"max_nodes={max_nodes}" if size > max_nodes else f"MAX_SUB_POINTS with sub={sub}"
            msg = f"output_density reached an estimated error of {error.sum().item():.3g} (tol {tol:g}) within {limit}"
            if on_budget == "raise":
                raise ValueError(msg + "; raise max_nodes or tol, or pass on_budget='warn' to get the result")
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
            break
        pair = _density(denoiser, s, work, sampler, eta, start, sub, min_kernel_width, progress, estimate_error,
                        max_outside)
        mass = _restrict(pair.mass, level)
        lost = pair.lost + pair.start_lost
        if not estimate_error:
            return OutputDensity(axes, mass, lost, pair.narrow, None, pair.start_lost, pair.unresolved)
        change = (_restrict(pair.check) - pair.coarse).abs() * _convergence_factor(pair)
        error = _prolong(change, shape) if level == 0 else _restrict(change, level - 1)
        # + the rounding of a mass: hat masses come from a cubic spline of the nodal law, whose values carry
        # absolute errors of a few ulps of the largest (so tiny tail masses are not relatively accurate)
        error = error + _restrict(pair.sub_error, level) + _ROUNDING * mass.max()
        result = OutputDensity(axes, mass, lost, pair.narrow, error, pair.start_lost, pair.unresolved)
        if tol is None or error.sum().item() <= tol:
            break
        settled = not (pair.narrow or pair.unresolved)
        rate = _BEST_RATE
        if settled and previous is not None:  # two settled grids in a row: the observed shrinking, squared
            rate = min(_BEST_RATE, max(_MIN_RATE, (previous / error.sum().item()) ** 2))
        _check_reachable(tol, error, mass, axes, level, max_nodes, sub, on_budget, settled, rate)
        previous = error.sum().item() if settled else None
        level += 1
    return result


_BEST_RATE = _MAX_RATE**2  # the most an error estimate is taken to shrink per halving of the spacing (order 8)
_MIN_RATE = 4.0  # ... and the least, once observed (order 2): what a slower observed rate is raised to


def _check_reachable(tol: float, error: torch.Tensor, mass: torch.Tensor, axes, level: int, max_nodes: int,
                     sub: int, on_budget: str, settled: bool, rate: float = _BEST_RATE) -> None:
    """``ValueError`` naming ``tol`` when no refinement can meet it (issue 20: ``tol=1e-300`` refined for minutes
    before the budget stopped it): below the estimate's rounding floor (``_ROUNDING`` of the largest mass at
    every node of the given grid, a term of every grid's estimate), or, with ``on_budget="raise"`` (the budget
    would raise anyway) and a ``settled`` grid (no narrow or unresolved stochastic steps, whose error may fall
    at once when a finer grid resolves them), out of reach of the grids the budget allows even if the error
    shrank ``rate`` times per halving of the spacing. ``rate`` is ``_BEST_RATE`` (twice the fastest order the
    estimate observes) until two settled grids in a row were seen, then the square of the shrinking observed
    between them (twice the observed order), at least ``_MIN_RATE`` (issue 20: a first-order law asked for
    ``tol=1e-11`` refined for minutes to 51201 nodes, its estimate halving per halving, where order 8 was
    assumed reachable)."""
    floor = _ROUNDING * mass.max().item() * mass.numel()
    if tol < 0.5 * floor:
        raise ValueError(f"tol={tol:g} is below what float64 hat masses resolve on this grid: every estimate holds "
                         f"{_ROUNDING:g} of the largest mass per node, {floor:.3g} summed over its {mass.numel()} "
                         f"nodes; ask for tol >= {floor:.2g}")
    if on_budget != "raise" or not settled:
        return
    top = level  # the finest working grid within the budget
    while True:
        size = math.prod((a.numel() - 1) * 2 ** (top + 1) + 1 for a in axes)
        if size > max_nodes or size * sub ** len(axes) > MAX_SUB_POINTS:
            break
        top += 1
    now = error.sum().item()
    if now * rate ** -(top - level) > tol:
        nodes = lambda k: math.prod((a.numel() - 1) * 2**k + 1 for a in axes)  # noqa: E731  (working grid k)
        raise ValueError(f"output_density reached an estimated error of {now:.3g} (tol {tol:g}) on {nodes(level)} "
                         f"working nodes; the budget (max_nodes={max_nodes}, MAX_SUB_POINTS with sub={sub}) allows "
                         f"{top - level} more halvings of the spacing ({nodes(top)} nodes), and even {rate:.3g} "
                         f"times less error per halving would not reach tol={tol:g}: raise max_nodes or tol, or pass "
                         f"on_budget='warn' to get the result")
