"""The ideal-chain optimum by dense trapezoid quadrature in ``x_0`` (d <= 2), to a requested tolerance.

THEORY.md section 5 ("whole grids at once"): with ``f = p(x_0 | y) R_0(x_0)`` and the forward kernel
``K(x_t, x_0) = N(x_t; sqrt(abar) x_0, (1 - abar) I)``,

    E_t(x_t) = int K f dx_0 / int K p dx_0,      m_R - m = int x_0 K f / int K f - int x_0 K p / int K p,

and ``grad log E_t = sqrt(abar)/(1-abar) (m_R - m)`` (section 4). The kernel is isotropic, so on a tensor
grid of ``x_0`` every integral is a product of one dense kernel matrix per axis (``K_1 F K_2^T`` in
2-D): sums of positive terms, no FFT cancellation. Points whose sums underflow (far in the tails of
``f``) are redone in log space.

How the quadrature is chosen, for the points asked for (:func:`_integrate`):

- spacing: :func:`analytic.quadrature.quadrature_spacing` (the kernel width, the narrowest component
  and the reward's length scale, 4 points per width; :func:`tilted_posterior` starts at 2 and goes to 4
  where that misses the tolerance), refined by 0.6 while the discretisation error is above the tolerance;
- extent: the hull of every posterior component mean of the points, of the component means and of the
  reward's centres, widened by 12 tail widths ``1/sqrt(kappa)`` (capped); then, per point and in log
  space, the integrand ``log f + log K`` on each edge of the grid is compared with the point's whole
  integral, and an edge whose tail beyond (its value times its decay length) is not negligible is
  moved outward (its distance from the centre doubled). This follows the tilted mass wherever the
  reward moves it, however far from the mixture;
- error estimate, per point: ``|full - every other node|`` (discretisation; the trapezoid rule
  converges spectrally, so this bounds the finer rule's error) plus the tail beyond each edge
  (truncation), for ``log E`` and for ``m_R - m``;
- budget: ``_MAX_X0_POINTS`` grid points (checked before anything is allocated: ``QuadratureTooLarge``)
  and ``_MAX_ROUNDS`` refinements (``ToleranceNotMet`` with the error reached).

:func:`analytic.golden.optimal_guidance` computes the same quantities by Gauss-Hermite and importance
sampling on the posterior components, sharing nothing with this route but the mixture densities.
"""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch

from .integrability import check_integrable, tail_curvature_min
from .mixture import GaussianMixture, check_abar, check_points
from .quadrature import (DEFAULT_TOL, QuadratureTooLarge, ToleranceNotMet, check_axes, check_tol, grid_points,
                         probe_points, quadrature_spacing)
from .rewards import check_reward

__all__ = ["QuadratureTooLarge", "ToleranceNotMet", "GridGolden", "golden_on_grid", "PointsGolden", "golden_at_points",
           "support_axes", "TiltedPosterior", "tilted_posterior"]

_MAX_X0_POINTS = 6_000_000  # quadrature grid points
_MAX_LOG_WORK = 1_000_000_000  # point x node pairs redone in log space
_MAX_ROUNDS = 14  # extensions and refinements
_CHUNK = 4_000_000  # matrix entries held at once
_TINY = 1e-250  # scaled sums below this are redone in log space (terms lost to underflow are < 1e-58 of them)
_REFINE = 0.6  # spacing factor per refinement
_ROUND = 64 * torch.finfo(torch.float64).eps  # rounding floor of the error estimates (relative)
# the starting resolution of :func:`tilted_posterior` (the optimum as a denoiser, called at every sampler step on
# every state of a 2-D output law): 2 points per width of quadrature_spacing, a quarter of the nodes of 4 in 2-D.
# Where the forward kernel is wide (most levels) that meets DEFAULT_TOL at once: the trapezoid rule converges
# spectrally (aliasing error about exp(-2 pi^2 s^2 / h^2) on a Gaussian of width s at spacing h), and its error
# estimate, the every-other-node rule, decides. Where it does not (abar near 1: the tilted posterior of far points
# is narrower than the widths the spacing knows), the first refinement goes straight to the 4 points of the
# other routes, so the worst case costs a quarter more than starting there
FAST_POINTS_PER_WIDTH = 2.0


class GridGolden(NamedTuple):
    """The optimum on the grid ``axes`` (tensor product, 'ij' order). float64."""

    axes: tuple[torch.Tensor, ...]
    log_E: torch.Tensor  # [n_1(, n_2)]
    grad_log_E: torch.Tensor  # [n_1(, n_2), d]
    golden: torch.Tensor  # [n_1(, n_2), d]  -sqrt(1 - abar) grad log E_t
    x0_axes: tuple[torch.Tensor, ...]  # the quadrature grid used
    err_log_E: torch.Tensor  # [n_1(, n_2)]  error estimate of log_E (nats)
    err_grad: torch.Tensor  # [n_1(, n_2), d]  of grad_log_E
    golden_error: torch.Tensor  # [n_1(, n_2), d]  of golden (eps units)


class PointsGolden(NamedTuple):
    """The optimum at N points by dense quadrature, with error estimates (discretisation + truncation)."""

    log_E: torch.Tensor  # [N]
    grad_log_E: torch.Tensor  # [N, d]
    err_log_E: torch.Tensor  # [N]
    err_grad: torch.Tensor  # [N, d]
    golden: torch.Tensor  # [N, d]  -sqrt(1 - abar) grad log E_t
    golden_error: torch.Tensor  # [N, d]


class TiltedPosterior(NamedTuple):
    log_E: torch.Tensor  # [N] log E_t(x_t)
    tilted_mean: torch.Tensor  # [N, d] m_R, the optimal guided x0_hat
    err_log_E: torch.Tensor  # [N]
    err_tilted_mean: torch.Tensor  # [N, d]


# --- the integrand on a grid ------------------------------------------------------------------------


class _Grid(NamedTuple):
    axes: tuple[torch.Tensor, ...]  # uniform x_0 axes
    log_f: torch.Tensor  # [G_1(, G_2)] log p(x_0|y) R_0(x_0)
    log_p: torch.Tensor  # [G_1(, G_2)] log p(x_0|y)
    F: torch.Tensor  # exp(log_f - f_max)
    P: torch.Tensor  # exp(log_p - p_max)
    f_max: float
    p_max: float


def _make_grid(cond: GaussianMixture, reward, axes) -> _Grid:
    ys = grid_points(axes)
    shape = tuple(ax.numel() for ax in axes)
    log_p = cond.log_prob(ys).reshape(shape)
    log_f = log_p + reward.log_r0(ys).reshape(shape)
    if torch.any(torch.isnan(log_f)) or torch.any(log_f == math.inf):
        raise ValueError("log p(x_0|y) R_0(x_0) is nan or +inf on the quadrature grid")
    f_max, p_max = log_f.max().item(), log_p.max().item()
    return _Grid(axes, log_f, log_p, torch.exp(log_f - f_max), torch.exp(log_p - p_max), f_max, p_max)


class _Sums(NamedTuple):
    """Per point: ``log sum K f``, ``log sum K p`` (K unnormalised) and the two means."""

    log_f: torch.Tensor  # [N]
    log_p: torch.Tensor  # [N]
    m_f: torch.Tensor  # [N, d]
    m_p: torch.Tensor  # [N, d]


class _Edges(NamedTuple):
    """Per side (axis 0 lo, axis 0 hi, axis 1 lo, ...) and point: the log of the integrand summed over
    the edge line of the grid, and over the line one node inside. [2d, N] each."""

    f: torch.Tensor
    f_in: torch.Tensor
    p: torch.Tensor
    p_in: torch.Tensor


def _log_kernel(x: torch.Tensor, y: torch.Tensor, a: float) -> torch.Tensor:
    """``log K`` up to a constant: ``-(x_i - sqrt(a) y_j)^2 / (2 (1 - a))``. [n, G]"""
    return -((x[:, None] - math.sqrt(a) * y[None, :]) ** 2) / (2 * (1 - a))


def _scaled(logK: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mx = logK.max(dim=1).values
    return torch.exp(logK - mx[:, None]), mx


def _strides(grid: _Grid):
    """The full grid and every other node (the coarse rule of the discretisation estimate)."""
    for s in (1, 2):
        yield s, tuple(ax[::s] for ax in grid.axes), (grid.F[::s] if len(grid.axes) == 1 else grid.F[::s, ::s]), \
            (grid.P[::s] if len(grid.axes) == 1 else grid.P[::s, ::s])


def _log_sums(x: torch.Tensor, grid: _Grid, a: float) -> tuple[_Sums, _Sums]:
    """The sums of :func:`_evaluate` in log space (no underflow) at points [n, d], full and half grid: one
    exponential per node, shifted by the point's maximum, serves both."""
    d = len(grid.axes)
    ys = grid_points(grid.axes)  # [G, d]
    G = ys.shape[0]
    half = torch.ones(tuple(ax.numel() for ax in grid.axes), dtype=torch.bool)
    half[(slice(1, None, 2),) + (slice(None),) * (d - 1)] = False
    if d == 2:
        half[:, 1::2] = False
    half = half.reshape(-1)
    out = {1: [], 2: []}
    for chunk in torch.split(x, max(1, _CHUNK // G)):
        n = chunk.shape[0]
        logK = sum(_log_kernel(chunk[:, i], grid.axes[i], a).reshape([n] + [-1 if j == i else 1 for j in range(d)])
                   for i in range(d)).reshape(n, -1)
        parts = {1: [], 2: []}
        for logv in (grid.log_f, grid.log_p):
            lw = logK + logv.reshape(-1)
            mx = lw.max(1).values
            w = torch.exp(lw - mx[:, None])
            for s, sel in ((1, slice(None)), (2, half)):
                ws = w[:, sel]
                tot = ws.sum(1)
                parts[s] += [torch.log(tot) + mx, (ws @ ys[sel]) / tot[:, None]]
        for s in (1, 2):
            out[s].append(_Sums(parts[s][0], parts[s][2], parts[s][1], parts[s][3]))
    return _cat(out[1]), _cat(out[2])


def _from_scaled(num_f, mf, num_p, mp, shift_f, shift_p, grid) -> tuple[_Sums, torch.Tensor]:
    bad = (num_f < _TINY) | (num_p < _TINY)
    s = _Sums(torch.log(num_f) + shift_f + grid.f_max, torch.log(num_p) + shift_p + grid.p_max, mf, mp)
    return s, bad


def _evaluate_1d(x: torch.Tensor, grid: _Grid, a: float):
    """Full and half sums and edges at 1-D points x [N]."""
    (y,) = grid.axes
    sums = {1: [], 2: []}
    bads = []
    edges = []
    idx = [0, 1, -1, -2]
    for chunk in torch.split(x, max(1, _CHUNK // y.numel())):
        logK = _log_kernel(chunk, y, a)
        E, mx = _scaled(logK)
        bad_any = torch.zeros(chunk.shape[0], dtype=torch.bool)
        for s, (ys,), F, P in _strides(grid):
            cols = torch.stack([F, ys * F, P, ys * P], 1)
            out = E[:, ::s] @ cols
            sm, bad = _from_scaled(out[:, 0], (out[:, 1] / out[:, 0])[:, None], out[:, 2], (out[:, 3] / out[:, 2])[:, None],
                                   mx, mx, grid)
            sums[s].append(sm)
            bad_any |= bad
        bads.append(bad_any)
        ef = logK[:, idx] + grid.log_f[idx]
        ep = logK[:, idx] + grid.log_p[idx]
        edges.append((ef, ep))
    full, half = (_cat(sums[s]) for s in (1, 2))
    ef, ep = torch.cat([e[0] for e in edges]).T, torch.cat([e[1] for e in edges]).T  # [4, N]
    return full, half, torch.cat(bads), _Edges(ef[[0, 2]], ef[[1, 3]], ep[[0, 2]], ep[[1, 3]])


def _cat(parts: list[_Sums]) -> _Sums:
    return _Sums(*[torch.cat([getattr(p, f) for p in parts]) for f in _Sums._fields])


def _line_sums(E: torch.Tensor, mx: torch.Tensor, logK: torch.Tensor, lines: torch.Tensor) -> torch.Tensor:
    """``logsumexp_k(lines[l, k] + logK[n, k])`` [n, L] as one matrix product of the scaled kernel ``E = exp(logK -
    mx)`` [n, G] with the scaled lines: sums of positive terms, equal to the log-space sum to rounding. Entries
    whose scaled sum underflows (below ``_TINY``) are redone in log space."""
    top = lines.max(1).values  # [L]
    finite = torch.isfinite(top)
    top = torch.where(finite, top, torch.zeros_like(top))
    s = E @ torch.exp(lines - top[:, None]).T  # [n, L]
    out = torch.log(s) + mx[:, None] + top[None, :]
    bad = (s < _TINY) & finite[None, :]
    if bad.any():
        rows, cols = bad.nonzero(as_tuple=True)
        for sl in torch.split(torch.arange(rows.numel()), max(1, _CHUNK // lines.shape[1])):
            out[rows[sl], cols[sl]] = torch.logsumexp(lines[cols[sl]] + logK[rows[sl]], 1)
    out[:, ~finite] = -math.inf
    return out


def _edge_lines_2d(logK1, logK2, E1, mx1, E2, mx2, grid: _Grid, outer: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Log of the integrand summed over each edge line and the line inside it, 2-D: [8, N] for f and for p (rows:
    axis-0 lines lo, lo+1, hi, hi-1, then axis-1 lines). ``outer``: points are the tensor product of the kernels'
    rows (else row-wise). ``E1, mx1, E2, mx2``: the scaled kernels of :func:`_scaled`."""
    res = []
    idx = [0, 1, -1, -2]
    for logv in (grid.log_f, grid.log_p):
        rows = _line_sums(E2, mx2, logK2, logv[idx])  # [n2, 4]: axis 0 lines (y_1 fixed), summed over y_2
        cols = _line_sums(E1, mx1, logK1, logv[:, idx].T)  # [n1, 4]: axis 1 lines
        lines = []
        for c, i in enumerate(idx):
            lines.append(logK1[:, i][:, None] + rows[None, :, c] if outer else logK1[:, i] + rows[:, c])
        for c, j in enumerate(idx):
            lines.append(cols[:, c][:, None] + logK2[:, j][None, :] if outer else cols[:, c] + logK2[:, j])
        res.append(torch.stack([ln.reshape(-1) for ln in lines]))  # [8, N]
    return res[0], res[1]


def _edges_2d(lf: torch.Tensor, lp: torch.Tensor) -> _Edges:
    # rows of lf/lp: axis-0 (lo, lo+1, hi, hi-1), axis-1 (lo, lo+1, hi, hi-1)
    return _Edges(lf[[0, 2, 4, 6]], lf[[1, 3, 5, 7]], lp[[0, 2, 4, 6]], lp[[1, 3, 5, 7]])


def _evaluate_2d_tensor(x1: torch.Tensor, x2: torch.Tensor, grid: _Grid, a: float):
    """Full and half sums and edges on the tensor grid of points ``x1 x x2`` ('ij' order, flattened)."""
    y1, y2 = grid.axes
    logK1, logK2 = _log_kernel(x1, y1, a), _log_kernel(x2, y2, a)
    (E1, mx1), (E2, mx2) = _scaled(logK1), _scaled(logK2)
    shift = (mx1[:, None] + mx2[None, :]).reshape(-1)
    out, bad_any = {}, torch.zeros(x1.numel() * x2.numel(), dtype=torch.bool)
    for s, (z1, z2), F, P in _strides(grid):
        A1, A2 = E1[:, ::s], E2[:, ::s]
        vals = []
        for M in (F, P):
            num = A1 @ M @ A2.T
            m1 = ((A1 * z1) @ M @ A2.T) / num
            m2 = (A1 @ M @ (A2 * z2).T) / num
            vals += [num.reshape(-1), torch.stack([m1.reshape(-1), m2.reshape(-1)], 1)]
        out[s], bad = _from_scaled(*vals, shift, shift, grid)
        bad_any |= bad
    return out[1], out[2], bad_any, _edges_2d(*_edge_lines_2d(logK1, logK2, E1, mx1, E2, mx2, grid, outer=True))


def _evaluate_2d_points(x: torch.Tensor, grid: _Grid, a: float):
    """Full and half sums and edges at scattered 2-D points x [N, 2], chunk by chunk."""
    y1, y2 = grid.axes
    step = max(1, _CHUNK // (y1.numel() + y2.numel() + y2.numel()))
    sums, bads, lfs, lps = {1: [], 2: []}, [], [], []
    for chunk in torch.split(x, step):
        logK1, logK2 = _log_kernel(chunk[:, 0], y1, a), _log_kernel(chunk[:, 1], y2, a)
        (E1, mx1), (E2, mx2) = _scaled(logK1), _scaled(logK2)
        shift = mx1 + mx2
        bad_any = torch.zeros(chunk.shape[0], dtype=torch.bool)
        for s, (z1, z2), F, P in _strides(grid):
            A1, A2 = E1[:, ::s], E2[:, ::s]
            # one product for the four sums over y_1: F, P and their first moments [n, 4 G2]
            KM = (A1 @ torch.cat([F, P, z1[:, None] * F, z1[:, None] * P], 1)).reshape(A1.shape[0], 4, -1)
            vals = []
            for c in (0, 1):  # F, P
                w = KM[:, c] * A2  # [n, G2]
                num = w.sum(1)
                m1 = (KM[:, 2 + c] * A2).sum(1) / num
                m2 = (w @ z2) / num
                vals += [num, torch.stack([m1, m2], 1)]
            sm, bad = _from_scaled(*vals, shift, shift, grid)
            sums[s].append(sm)
            bad_any |= bad
        bads.append(bad_any)
        lf, lp = _edge_lines_2d(logK1, logK2, E1, mx1, E2, mx2, grid, outer=False)
        lfs.append(lf)
        lps.append(lp)
    return _cat(sums[1]), _cat(sums[2]), torch.cat(bads), _edges_2d(torch.cat(lfs, 1), torch.cat(lps, 1))


def _evaluate(pts, grid: _Grid, a: float) -> tuple[_Sums, _Sums, _Edges]:
    """Sums on the full grid and on every other node, and edge lines, at ``pts``: a tensor [N, d] of
    points, or a tuple of 1-D axes (the tensor grid of points, flattened in 'ij' order). Points whose
    scaled sums underflow are redone in log space."""
    d = len(grid.axes)
    if isinstance(pts, tuple):
        if d == 1:
            flat = pts[0][:, None]
            full, half, bad, edges = _evaluate_1d(pts[0], grid, a)
        else:
            flat = grid_points(pts)
            full, half, bad, edges = _evaluate_2d_tensor(pts[0], pts[1], grid, a)
    else:
        flat = pts
        full, half, bad, edges = (_evaluate_1d(pts[:, 0], grid, a) if d == 1 else _evaluate_2d_points(pts, grid, a))
    if torch.any(bad):
        idx = torch.nonzero(bad).flatten()
        work = idx.numel() * grid.F.numel()
        if work > _MAX_LOG_WORK:
            raise QuadratureTooLarge(
                f"{idx.numel()} points lie so far in the tails of p(x_0|y) R_0 that their sums underflow; redoing "
                f"them in log space on {grid.F.numel()} nodes exceeds the budget ({work:.3g} > {_MAX_LOG_WORK:.3g}); "
                f"ask for fewer far points at once, or use optimal_guidance(method='gh')")
        lfull, lhalf = _log_sums(flat[idx], grid, a)
        full, half = _put(full, idx, lfull), _put(half, idx, lhalf)
    return full, half, edges


def _put(s: _Sums, idx: torch.Tensor, new: _Sums) -> _Sums:
    out = []
    for old, val in zip(s, new):
        old = old.clone()
        old[idx] = val
        out.append(old)
    return _Sums(*out)


# --- errors and the tolerance loop --------------------------------------------------------------------


class _Estimate(NamedTuple):
    log_E: torch.Tensor  # [N]
    diff: torch.Tensor  # [N, d] m_R - m
    err_log_E: torch.Tensor  # [N]
    err_diff: torch.Tensor  # [N, d]
    x0_axes: tuple[torch.Tensor, ...]


def _tails(edge, inside, log_total, mean, grid: _Grid, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Relative mass beyond one edge [N] and the error it makes in a mean [N]. The tail beyond an edge
    line is its sum times the decay length ``h / (log inside - log edge)`` (infinite where the integrand
    does not decay outward: the edge must move); it sits about a decay length beyond the edge."""
    axis, hi = divmod(side, 2)
    ax = grid.axes[axis]
    h = (ax[1] - ax[0]).item()
    slope = inside - edge  # > 0 where the integrand decays outward
    log_len = torch.where(slope > 0, -torch.log(slope.clamp(min=1e-300)), torch.full_like(slope, math.inf))
    rel = torch.exp(torch.where(edge == -math.inf, torch.full_like(edge, -math.inf), edge - log_total + log_len))
    dist = (ax[-1 if hi else 0] - mean[:, axis]).abs() + h * torch.exp(log_len)
    return rel, torch.where(rel > 0, rel * dist, torch.zeros_like(rel))


def _errors(full: _Sums, half: _Sums, edges: _Edges, grid: _Grid):
    """The estimate and its error per point, and the share of each side and of the discretisation."""
    log_E = full.log_f - full.log_p
    diff = full.m_f - full.m_p
    disc_log = (log_E - (half.log_f - half.log_p)).abs()
    disc_diff = (diff - (half.m_f - half.m_p)).abs()
    side_log, side_diff = [], []
    for s in range(edges.f.shape[0]):
        rf, ef = _tails(edges.f[s], edges.f_in[s], full.log_f, full.m_f, grid, s)
        rp, ep = _tails(edges.p[s], edges.p_in[s], full.log_p, full.m_p, grid, s)
        side_log.append(rf + rp)
        side_diff.append(ef + ep)
    side_log, side_diff = torch.stack(side_log), torch.stack(side_diff)  # [2d, N]
    round_log = _ROUND * (full.log_f.abs() + full.log_p.abs())
    round_diff = _ROUND * max(ax.abs().max().item() for ax in grid.axes)
    err_log = disc_log + side_log.sum(0) + round_log
    err_diff = disc_diff + side_diff.sum(0)[:, None] + round_diff
    return log_E, diff, err_log, err_diff, (disc_log, disc_diff), (side_log, side_diff), (round_log, round_diff)


def _start_box(cond: GaussianMixture, reward, a: float, lo_pts, hi_pts, kappa: float):
    """``(lo, hi, width)`` per axis: every posterior component mean of the points' bounding box (posterior means
    are affine in ``x_t``, so its corners suffice), the component means and the reward's centres, widened
    by ``12 / sqrt(kappa)`` capped at four times the unguided width."""
    d = cond.dim
    corners = torch.cartesian_prod(*[torch.stack([lo_pts[i], hi_pts[i]]) for i in range(d)]).reshape(-1, d)
    post = cond.posterior(corners, a).means.reshape(-1, d)
    pts = torch.cat([post, cond.means, reward.centres().to(torch.float64)])
    lam = a / (1 - a)
    plain = lam + torch.linalg.eigvalsh(cond.precisions).min().item()
    width = min(12 / math.sqrt(kappa), 48 / math.sqrt(plain))
    return ([pts[:, i].min().item() - width for i in range(d)], [pts[:, i].max().item() + width for i in range(d)],
            width)


def _probes(cond: GaussianMixture, reward, lo, hi, kappa: float):
    """:func:`analytic.quadrature.probe_points` from the middle of the start box out to four times its
    half-diagonal plus 40 tail widths, and ``log f`` there."""
    lo_t, hi_t = torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64)
    r_max = 4 * (0.5 * (hi_t - lo_t).norm().item()) + 40 / math.sqrt(kappa)
    probes = probe_points(0.5 * (lo_t + hi_t), min(reward.length_scale(), 1.0), r_max)
    return probes, cond.log_prob(probes) + reward.log_r0(probes)


def _far_mass(pts, x: torch.Tensor, log_total: torch.Tensor, probes, log_f_probes, lo, hi, a: float) -> torch.Tensor:
    """The probes outside the box where the integrand ``log f + log K`` of some point is within 50 nats of
    that point's sum over the grid (``log K <= 0`` rules most probes out before any kernel is formed). ``x``: the
    points [N, d]; ``pts``: the same as :func:`_integrate` has them (a tuple of 2-D axes: their grid, whose
    squared distances to a probe are sums of one square per axis, formed per axis in the same arithmetic). [H, d]"""
    d = x.shape[1]
    outside = torch.zeros(probes.shape[0], dtype=torch.bool)
    for i in range(d):
        outside |= (probes[:, i] < lo[i]) | (probes[:, i] > hi[i])
    cand = outside & (log_f_probes > log_total.min() - 50)
    if not cand.any():
        return probes[:0]
    P, lf = probes[cand], log_f_probes[cand]
    hit = torch.zeros(P.shape[0], dtype=torch.bool)
    if isinstance(pts, tuple) and d == 2:
        sq = [(pts[i][None, :] - math.sqrt(a) * P[:, i:i + 1]) ** 2 for i in range(2)]  # [H, n_i]
        thr = log_total.reshape(pts[0].numel(), pts[1].numel()) - 50
        for sl in torch.split(torch.arange(P.shape[0]), max(1, _CHUNK // x.shape[0])):
            logK = -(sq[0][sl, :, None] + sq[1][sl, None, :]) / (2 * (1 - a))  # [h, n_1, n_2]
            hit[sl] = (lf[sl, None, None] + logK > thr).flatten(1).any(1)
        return P[hit]
    for sl in torch.split(torch.arange(x.shape[0]), max(1, _CHUNK // P.shape[0])):
        logK = -((x[sl, None, :] - math.sqrt(a) * P[None]) ** 2).sum(-1) / (2 * (1 - a))  # [n, H]
        hit |= (lf + logK > log_total[sl, None] - 50).any(0)
    return P[hit]


def _axes_for(lo, hi, h: float, budget: int):
    """Uniform axes on the box with spacing at most ``h``; ``QuadratureTooLarge`` before allocating."""
    counts = [(hi[i] - lo[i]) / h for i in range(len(lo))]
    if not all(math.isfinite(c) for c in counts) or math.prod(c + 2 for c in counts) > budget:
        raise QuadratureTooLarge(
            f"the quadrature grid would need about {math.prod(c + 2 for c in counts):.3g} points (spacing {h:.3g} on "
            f"the box {[(round(l, 4), round(u, 4)) for l, u in zip(lo, hi)]}; budget {budget}): the kernel is too "
            f"narrow for the span of the points and the tilted mass. Ask for nearby points at a time, or use "
            f"optimal_guidance(method='gh') (nodes on each posterior component)")
    return tuple(torch.linspace(lo[i], hi[i], int(math.ceil(counts[i])) + 1, dtype=torch.float64)
                 for i in range(len(lo)))


def _integrate(cond: GaussianMixture, reward, pts, a: float, kappa: float, tol_log: float, tol_diff: float,
               x0_axes=None, points_per_width: float = 4.0, refine_to_points: float | None = None) -> _Estimate:
    """``log E_t`` and ``m_R - m`` at ``pts`` (points [N, d], or a tuple of axes: their tensor grid) with
    error estimates, to ``tol_log`` (nats) and ``tol_diff`` (x_0 units). With ``x0_axes`` the grid is
    fixed: the error is estimated and a ``RuntimeWarning`` says when it exceeds the tolerance.
    ``refine_to_points``: the first refinement goes at least to this many points per width."""
    flat = grid_points(pts) if isinstance(pts, tuple) else pts
    N = flat.shape[0]
    if N == 0:
        z = torch.zeros(0, dtype=torch.float64)
        return _Estimate(z, z.reshape(0, cond.dim), z, z.reshape(0, cond.dim), tuple(x0_axes or ()))
    if x0_axes is not None:
        grid = _make_grid(cond, reward, x0_axes)
        log_E, diff, err_log, err_diff, _, _, _ = _errors(*_evaluate(pts, grid, a), grid)
        if err_log.max() > tol_log or err_diff.max() > tol_diff:
            warnings.warn(f"the given x0_axes reach an estimated error of {err_log.max().item():.3g} in log E and "
                          f"{err_diff.max().item():.3g} in m_R (tolerances {tol_log:.3g}, {tol_diff:.3g})",
                          RuntimeWarning, stacklevel=3)
        return _Estimate(log_E, diff, err_log, err_diff, x0_axes)
    h = quadrature_spacing(cond, reward, a, points_per_width)
    h_first = quadrature_spacing(cond, reward, a, refine_to_points) if refine_to_points else None
    lo, hi, width = _start_box(cond, reward, a, flat.min(0).values, flat.max(0).values, kappa)
    probes, log_f_probes = _probes(cond, reward, lo, hi, kappa)
    for _ in range(_MAX_ROUNDS):
        axes = _axes_for(lo, hi, h, _MAX_X0_POINTS)
        grid = _make_grid(cond, reward, axes)
        full, half, edges = _evaluate(pts, grid, a)
        hits = _far_mass(pts, flat, full.log_f, probes, log_f_probes, lo, hi, a)
        if hits.shape[0]:  # tilted mass past a valley beyond the box: take it in, then check again
            lo = [min(lo[i], hits[:, i].min().item() - width) for i in range(len(lo))]
            hi = [max(hi[i], hits[:, i].max().item() + width) for i in range(len(hi))]
            continue
        log_E, diff, err_log, err_diff, (disc_log, disc_diff), (side_log, side_diff), (round_log, round_diff) = \
            _errors(full, half, edges, grid)
        ratio = torch.maximum(err_log / tol_log, err_diff.amax(1) / tol_diff)
        if ratio.max() <= 1:
            return _Estimate(log_E, diff, err_log, err_diff, axes)
        if max(round_log.max().item() / tol_log, round_diff / tol_diff) > 0.5:
            raise ToleranceNotMet(_unmet(err_log, err_diff, tol_log, tol_diff, "the tolerance is below the rounding "
                                         "error of float64 sums at these values"))
        side_ratio = torch.maximum(side_log / tol_log, side_diff / tol_diff).amax(1)  # [2d]
        disc_ratio = torch.maximum(disc_log / tol_log, disc_diff.amax(1) / tol_diff).max().item()
        extend = side_ratio > 0.25
        refine = disc_ratio > 0.5 and not bool(torch.any(side_ratio > 1))  # edge effects spoil the estimate
        if not (extend.any() or refine):  # each share small, their sum not: shrink the larger
            if side_ratio.max() >= disc_ratio:
                extend = side_ratio == side_ratio.max()
            else:
                refine = True
        for s in torch.nonzero(extend).flatten().tolist():
            i, up = divmod(s, 2)
            centre = 0.5 * (lo[i] + hi[i])
            if up:
                hi[i] = centre + 2 * (hi[i] - centre)
            else:
                lo[i] = centre - 2 * (centre - lo[i])
        if refine:
            h = min(h * _REFINE, h_first) if h_first else h * _REFINE
            h_first = None
        try:
            _axes_for(lo, hi, h, _MAX_X0_POINTS)
        except QuadratureTooLarge as e:
            raise ToleranceNotMet(_unmet(err_log, err_diff, tol_log, tol_diff, f"the next grid is over budget: {e}"))
    raise ToleranceNotMet(_unmet(err_log, err_diff, tol_log, tol_diff, f"{_MAX_ROUNDS} refinements"))


def _unmet(err_log, err_diff, tol_log, tol_diff, why: str) -> str:
    return (f"dense quadrature did not reach the tolerance ({tol_log:.3g} in log E, {tol_diff:.3g} in m_R - m, x_0 "
            f"units) within its budget; reached {err_log.max().item():.3g} and {err_diff.max().item():.3g} ({why})")


# --- public routines ----------------------------------------------------------------------------------


def _check_level(cond, reward, abar) -> tuple[float, float]:
    """The public edge of every quadrature route: a valid ``abar < 1``, a reward, a finite ``E_t``;
    returns ``abar`` and the tail curvature ``kappa`` of the tilted posterior."""
    a = check_abar(abar)
    if a == 1:
        raise ValueError("the quadrature route needs abar < 1 (at abar = 1, E_0 = R_0 needs no quadrature)")
    if cond.dim > 2:
        raise ValueError(f"dense quadrature is for d <= 2 (the grid grows as n^d); got d = {cond.dim}")
    check_reward(reward, cond.dim)
    check_integrable(cond, reward, a)
    return a, tail_curvature_min(cond, reward, a)[0]


def _check_fixed_axes(x0_axes, d):
    return None if x0_axes is None else check_axes(x0_axes, d, uniform=True)


def _golden_tol(tol, a: float) -> float:
    """The tolerance on ``m_R - m`` that gives ``tol`` on the golden term ``-sqrt(a/(1-a)) (m_R - m)``."""
    return tol * math.sqrt((1 - a) / a)


def golden_on_grid(cond: GaussianMixture, reward, axes, abar, *, tol: float = DEFAULT_TOL, x0_axes=None,
                   points_per_width: float = 4.0) -> GridGolden:
    """``log E_t``, ``grad log E_t`` and the golden term at every point of a 1-D or 2-D grid, each with an
    error estimate.

    Args:
        axes: one 1-D tensor per dimension (a single tensor in 1-D); the grid is their product.
        abar: VP noise level in (0, 1).
        tol: absolute tolerance on ``golden`` (eps units) and on ``log_E`` (nats) at every point. The
            quadrature's spacing and extent are chosen to meet it (module docstring); ``ToleranceNotMet``
            when the budget is reached first, ``QuadratureTooLarge`` when even the first grid is over it.
        x0_axes: a fixed quadrature grid (uniform axes) instead; its error is estimated and a warning says
            when it exceeds ``tol``.
        points_per_width: the starting resolution.
    """
    axes = check_axes(axes, cond.dim)
    a, kappa = _check_level(cond, reward, abar)
    tol = check_tol(tol)
    est = _integrate(cond, reward, axes, a, kappa, tol, _golden_tol(tol, a), _check_fixed_axes(x0_axes, cond.dim),
                     points_per_width)
    shape = tuple(ax.numel() for ax in axes)
    coef = math.sqrt(a) / (1 - a)
    grad, err_grad = coef * est.diff, coef * est.err_diff
    c = math.sqrt(1 - a)
    return GridGolden(axes, est.log_E.reshape(shape), grad.reshape(shape + (-1,)), (-c * grad).reshape(shape + (-1,)),
                      est.x0_axes, est.err_log_E.reshape(shape), err_grad.reshape(shape + (-1,)),
                      (c * err_grad).reshape(shape + (-1,)))


def golden_at_points(cond: GaussianMixture, reward, x_t, abar, *, tol: float = DEFAULT_TOL, x0_axes=None,
                     points_per_width: float = 4.0) -> PointsGolden:
    """``log E_t`` and ``grad log E_t`` at arbitrary points [N, d] of a 1-D or 2-D model, by the quadrature of
    :func:`golden_on_grid` (row-wise kernels instead of a separable product), to the absolute tolerance
    ``tol`` on ``golden`` (eps units) and ``log_E`` (nats); errors as there."""
    x_t = check_points(x_t, cond.dim, cond.device, "x_t").detach()
    a, kappa = _check_level(cond, reward, abar)
    tol = check_tol(tol)
    est = _integrate(cond, reward, x_t, a, kappa, tol, _golden_tol(tol, a), _check_fixed_axes(x0_axes, cond.dim),
                     points_per_width)
    coef, c = math.sqrt(a) / (1 - a), math.sqrt(1 - a)
    return PointsGolden(est.log_E, coef * est.diff, est.err_log_E, coef * est.err_diff, -c * coef * est.diff,
                        c * coef * est.err_diff)


def tilted_posterior(cond: GaussianMixture, reward, x_t, abar, *, tol: float = DEFAULT_TOL) -> TiltedPosterior:
    """``log E_t`` and the tilted posterior mean ``m_R`` at points ``x_t`` (d <= 2, ``abar < 1``) to the absolute
    tolerance ``tol`` on ``m_R`` (x_0 units) and ``log_E`` (nats), with error estimates.
    ``m_R = m + (m_R - m)``: the exact posterior mean plus the quadrature's difference (THEORY.md section 4,
    working identity).

    ``x_t``: points [N, d], or a tuple of ``d`` strictly increasing 1-D axes, meaning their tensor grid
    (``grid_points(x_t)``, 'ij' order, ``N = prod n_i``; the results have the shapes they have for those points).
    A grid goes through the separable kernels of :func:`golden_on_grid` (about ``G_2 + G_1 G_2 / n_2`` operations
    per point on a ``G_1 x G_2`` quadrature grid, against ``G_1 G_2`` for scattered points) with the same choice of
    quadrature: the same numbers to rounding, much faster on large grids."""
    if isinstance(x_t, tuple):
        try:
            x_t = check_axes(x_t, cond.dim)
        except (TypeError, ValueError) as e:
            raise ValueError(f"x_t, given as a tuple of axes (its tensor grid), is not a grid: {e}") from None
        flat = grid_points(x_t)
    else:
        x_t = flat = check_points(x_t, cond.dim, cond.device, "x_t").detach()
    a, kappa = _check_level(cond, reward, abar)
    tol = check_tol(tol)
    est = _integrate(cond, reward, x_t, a, kappa, tol, tol, points_per_width=FAST_POINTS_PER_WIDTH,
                     refine_to_points=4.0)
    m = cond.posterior(flat, a).mean() if flat.shape[0] else torch.zeros_like(flat)
    return TiltedPosterior(est.log_E, m + est.diff, est.err_log_E, est.err_diff)


def support_axes(cond: GaussianMixture, reward, abar: float, points_per_width: float = 4.0):
    """A uniform quadrature grid for ``x_0`` covering where ``f = p(x_0|y) R_0(x_0)`` is within
    ``exp(-60)`` of its maximum (widened until the edges are below that), with the spacing of
    :func:`analytic.quadrature.quadrature_spacing`. It does not depend on any point: the support of the
    tilted target (for the output-density references of :mod:`evaluation`)."""
    h = quadrature_spacing(cond, reward, abar, points_per_width)
    max_std = torch.linalg.eigvalsh(cond.covs).max().sqrt().item()
    lo_c, hi_c = cond.means.min(0).values, cond.means.max(0).values
    width = 6 * max_std
    for _ in range(8):
        lo = [lo_c[i].item() - width for i in range(cond.dim)]
        hi = [hi_c[i].item() + width + h for i in range(cond.dim)]
        _axes_for(lo, hi, h, _MAX_X0_POINTS)
        axes = tuple(torch.arange(lo[i], hi[i], h, dtype=torch.float64) for i in range(cond.dim))
        edges = torch.cat([torch.cartesian_prod(*[a[[0, -1]] if j == i else a for j, a in enumerate(axes)])
                           .reshape(-1, cond.dim) for i in range(cond.dim)])
        log_f_edge = cond.log_prob(edges) + reward.log_r0(edges)
        centre = cond.means
        log_f_top = (cond.log_prob(centre) + reward.log_r0(centre)).max()
        if log_f_edge.max() < log_f_top - 60:
            return axes
        width *= 1.5
    raise ValueError("p(x_0|y) R_0(x_0) does not decay within 100 standard deviations (is E_t finite?)")
