"""Grids and quadrature rules shared by every exact routine: tensor-grid points, axis checks, sub-cell
points, cloud-in-cell deposits (of any points, and separably of the sub-cell lattice) and segment deposits,
Gauss-Hermite rules, cubic splines on uniform grids, and the one rule for the spacing of an ``x_0`` quadrature grid.

Nothing here knows about guidance; :mod:`analytic.grid`, :mod:`analytic.chain`, :mod:`analytic.golden`
and the evaluation layer build on it.
"""
from __future__ import annotations

import math
import numbers
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
from scipy import ndimage, special

from sampler.schedules import check_count

__all__ = ["check_axes", "as_axes", "grid_points", "sub_axes", "sub_points", "deposit", "deposit_lattice",
           "deposit_segments", "gauss_hermite", "spline_at",
           "quadrature_spacing", "axes_spacing", "probe_directions", "probe_points", "DEFAULT_TOL", "check_tol", "QuadratureTooLarge", "ToleranceNotMet"]

DEFAULT_TOL = 1e-6  # absolute: eps units for golden terms, nats for log E, x_0 units for tilted means


class QuadratureTooLarge(ValueError):
    """The quadrature this problem needs exceeds its budget (checked before anything is allocated)."""


class ToleranceNotMet(RuntimeError):
    """A routine could not reach the requested tolerance within its budget; the message gives the
    error it did reach."""


def check_tol(tol, name: str = "tol") -> float:
    """``tol`` as a float, or ``ValueError`` unless it is a finite positive number."""
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real):
        raise ValueError(f"{name} must be a positive number, got {tol!r}")
    t = float(tol)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"{name} must be a finite positive number, got {tol!r}")
    return t


def as_axes(axes) -> tuple:
    """One tensor per dimension: a single 1-D tensor is the 1-D case."""
    if isinstance(axes, torch.Tensor) and axes.ndim == 1:
        return (axes,)
    return tuple(axes)


def check_axes(axes: Sequence, d: int, uniform: bool = False) -> tuple[torch.Tensor, ...]:
    """Grid axes as float64 1-D tensors, one per dimension; ``ValueError`` otherwise."""
    if d not in (1, 2):
        raise ValueError(f"grids are for d = 1 or 2, got d = {d}")
    axes = tuple(torch.as_tensor(a, dtype=torch.float64) for a in as_axes(axes))
    if len(axes) != d:
        raise ValueError(f"need {d} axes for a {d}-D model, got {len(axes)}")
    for i, a in enumerate(axes):
        if a.ndim != 1 or a.numel() < 2:
            raise ValueError(f"axis {i} must be 1-D with at least 2 points, got shape {tuple(a.shape)}")
        if not torch.all(torch.isfinite(a)) or torch.any(a[1:] <= a[:-1]):
            raise ValueError(f"axis {i} must be finite and strictly increasing")
        if uniform:
            h = a[1:] - a[:-1]
            if (h.max() - h.min()) > 1e-9 * h.mean():
                raise ValueError(f"axis {i} must be uniformly spaced")
    return axes


def axes_spacing(axes) -> tuple[float, ...]:
    """The spacing of each uniform axis."""
    return tuple((a[1] - a[0]).item() for a in axes)


def grid_points(axes: Sequence[torch.Tensor]) -> torch.Tensor:
    """The tensor grid of ``axes`` as points, 'ij' order. [prod n_i, d]"""
    return torch.cartesian_prod(*axes).reshape(-1, len(axes)) if len(axes) > 1 else axes[0][:, None]


def sub_axes(axes, sub: int) -> tuple[torch.Tensor, ...]:
    """The axes of the sub-cell lattice: ``sub`` points per cell of each axis (cells centred on the nodes), node by
    node. One tensor [n_i sub] per axis; their tensor grid is :func:`sub_points`."""
    offs = ((torch.arange(sub, dtype=torch.float64) + 0.5) / sub - 0.5)
    return tuple((a[:, None] + (a[1] - a[0]) * offs[None]).flatten() for a in axes)


def sub_points(axes, sub: int) -> torch.Tensor:
    """``sub^d`` points per grid cell (cells centred on the nodes), 'ij' order of the lattice :func:`sub_axes`
    (so that, reshaped to [n_1 sub(, n_2 sub)], they are that lattice). [N sub^d, d]"""
    return grid_points(sub_axes(axes, sub))


def deposit(points: torch.Tensor, masses: torch.Tensor, axes) -> tuple[torch.Tensor, float]:
    """Cloud-in-cell: the hat masses on the grid ``axes`` of point masses at ``points`` [P, d]; returns
    ``(mass [n_1(, n_2)], mass outside the grid)``. Mean preserving; smooths by at most a hat function. Points on
    the sub-cell lattice (:func:`sub_points`) deposit faster, separably, by :func:`deposit_lattice`."""
    d = len(axes)
    shape = tuple(a.numel() for a in axes)
    out = torch.zeros(math.prod(shape), dtype=torch.float64)
    parts = []
    for i, a in enumerate(axes):
        f = (points[:, i] - a[0]) / (a[1] - a[0])
        k = torch.floor(f).long()
        parts.append((k, f - k))
    corners = [(0,), (1,)] if d == 1 else [(0, 0), (0, 1), (1, 0), (1, 1)]
    for corner in corners:
        w = masses.clone()
        flat = torch.zeros_like(masses, dtype=torch.long)
        ok = torch.ones_like(masses, dtype=torch.bool)
        for i, (k, frac) in enumerate(parts):
            ki = k + corner[i]
            w = w * (frac if corner[i] else 1 - frac)
            ok &= (ki >= 0) & (ki < shape[i])
            flat = flat * shape[i] + ki.clamp(0, shape[i] - 1)
        out.index_add_(0, flat, torch.where(ok, w, 0.0))
    return out.reshape(shape), (masses.sum() - out.sum()).item()


def _lattice_weights(a: torch.Tensor, sub: int) -> torch.Tensor:
    """The cloud-in-cell weights of the sub-points of the axis ``a`` (:func:`sub_axes`), computed as :func:`deposit`
    computes them: ``w[j, c, s]`` is the weight of sub-point ``s`` of node ``j`` on node ``j - 1 + c``. [n, 3, sub]"""
    n = a.numel()
    f = (sub_axes((a,), sub)[0] - a[0]) / (a[1] - a[0])  # [n sub] index units
    k = torch.floor(f).long()
    frac = f - k
    c = k - torch.arange(n).repeat_interleave(sub) + 1  # the node left of a sub-point is j - 1 or j: c in {0, 1}
    if c.min() < 0 or c.max() > 1:
        raise ValueError(f"axes must be uniform: a sub-point of the axis [{a[0].item():.6g}, {a[-1].item():.6g}] "
                         f"lies more than a cell from its node")
    w = torch.zeros(n * sub, 3, dtype=torch.float64)
    w.scatter_(1, c[:, None], (1 - frac)[:, None])
    w.scatter_add_(1, c[:, None] + 1, frac[:, None])
    return w.reshape(n, sub, 3).transpose(1, 2)


def deposit_lattice(values: torch.Tensor, axes, sub: int) -> tuple[torch.Tensor, float]:
    """:func:`deposit` of the masses ``values`` [n_1 sub(, n_2 sub)] at the sub-cell lattice of the uniform grid
    ``axes`` (:func:`sub_axes`; ``values.flatten()`` is in the order of :func:`sub_points`), separably: the hat
    weights of a lattice point are products of one weight per axis, so the masses are ``W_1 V W_2^T`` with ``W_i``
    [n_i, n_i sub] the 1-D weights (each sub-point reaches its own node and one neighbour: a batched product over the
    nodes). The same ``(mass [n_1(, n_2)], mass outside the grid)`` as
    ``deposit(sub_points(axes, sub), values.flatten(), axes)`` to rounding, in O(values.numel()) operations and without
    per-point temporaries."""
    axes = as_axes(axes)
    axes = check_axes(axes, len(axes), uniform=True)
    sub = check_count(sub, "sub")
    shape = tuple(a.numel() * sub for a in axes)
    if not isinstance(values, torch.Tensor) or values.dtype != torch.float64 or tuple(values.shape) != shape:
        got = f"{type(values).__name__} {getattr(values, 'dtype', '')} {tuple(getattr(values, 'shape', ()))}"
        raise ValueError(f"values must be a float64 tensor of the lattice's shape {shape} (n_i sub per axis), "
                         f"got {got}")
    out = values
    for i, a in enumerate(axes):
        n = a.numel()
        x = out.movedim(i, 0)
        rest = x.shape[1:]
        y = torch.bmm(_lattice_weights(a, sub), x.reshape(n, sub, -1))  # [n, 3, rest]
        acc = torch.zeros(n + 2, y.shape[-1], dtype=torch.float64)  # nodes -1 ... n; -1 and n are outside
        for c in range(3):
            acc[c:c + n] += y[:, c]
        out = acc[1:n + 1].reshape(n, *rest).movedim(0, i)
    return out.contiguous(), (values.sum() - out.sum()).item()


def deposit_segments(a: torch.Tensor, b: torch.Tensor, masses: torch.Tensor, axis: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The hat masses on the uniform 1-D grid ``axis`` of masses spread uniformly over the segments
    ``[a_i, b_i]`` [S] (either order: a reversed segment is the same segment; ``a_i = b_i`` is a point mass);
    returns ``(mass [n], mass outside the grid)`` as :func:`deposit`, which it equals for points.

    Closed form, no quadrature: in index units ``f`` the weight of node ``k`` is the mean of its hat
    ``phi(f - k) = (|f-k+1| - 2|f-k| + |f-k-1|) / 2`` over the segment, and the mean of ``|f - j|`` over
    ``[f_0, f_1]`` is ``|f_mid - j| + q_j`` with ``q_j = min(j - f_0, f_1 - j)_+^2 / (f_1 - f_0)``: so the weights
    are the cloud-in-cell weights of the midpoint plus ``(q_{k-1} - 2 q_k + q_{k+1}) / 2`` for the nodes ``j``
    inside the segment. Every term is bounded by the segment's length, so a short segment tends to its point
    deposit continuously (no cancellation, no cut-off). Segments are first clipped to the reach of the hats
    (the clipped part is outside), then cut into equal pieces at most one spacing long (a uniform law cut
    into pieces is the same law), each of which holds at most one node."""
    if not (a.ndim == 1 and a.shape == b.shape == masses.shape):
        raise ValueError(f"a, b and masses must be 1-D of one length, got shapes {tuple(a.shape)}, {tuple(b.shape)}, "
                         f"{tuple(masses.shape)}")
    if not (axis.ndim == 1 and axis.numel() >= 2):
        raise ValueError(f"axis must be 1-D with at least 2 nodes, got shape {tuple(axis.shape)}")
    x0, h, n = axis[0], axis[1] - axis[0], axis.numel()
    f0, f1 = (torch.minimum(a, b) - x0) / h, (torch.maximum(a, b) - x0) / h  # [S] index units
    length = f1 - f0
    c0, c1 = f0.clamp(-1.0, float(n)), f1.clamp(-1.0, float(n))  # beyond: no hat reaches it
    share = torch.where(length > 0, (c1 - c0) / length.clamp(min=1e-300), torch.ones_like(length))
    pieces = torch.ceil(c1 - c0).clamp(min=1).long()  # [S]
    seg = torch.repeat_interleave(torch.arange(f0.numel()), pieces)  # [P]
    first = torch.cumsum(pieces, 0) - pieces
    rank = (torch.arange(seg.numel()) - first[seg]).to(torch.float64)
    span, count = (c1 - c0)[seg], pieces[seg].to(torch.float64)
    g0 = c0[seg] + span * (rank / count)
    g1 = c0[seg] + span * ((rank + 1) / count)
    m = (masses * share)[seg] / count  # [P]
    mid = 0.5 * (g0 + g1)
    k = torch.floor(mid).long()
    frac = mid - k
    idx, wts = [k, k + 1], [m * (1 - frac), m * frac]
    width = (g1 - g0).clamp(min=1e-300)
    for j in (torch.floor(g0).long() + 1, torch.floor(g0).long() + 2):  # the nodes inside a piece (one, or two by rounding)
        jf = j.to(torch.float64)
        q = m * torch.minimum(jf - g0, g1 - jf).clamp(min=0).square() / width
        idx += [j - 1, j, j + 1]
        wts += [0.5 * q, -q, 0.5 * q]
    idx, wts = torch.cat(idx), torch.cat(wts)
    ok = (idx >= 0) & (idx < n)
    out = torch.zeros(n, dtype=torch.float64)
    out.index_add_(0, idx[ok], wts[ok])
    return out, (masses.sum() - out.sum()).item()


def _hermite_log_weights(z: np.ndarray) -> np.ndarray:
    """``log w_j = log n! - 2 log n - 2 log |He_{n-1}(z_j)|`` (weights of N(0, 1), summing to 1), with the
    three-term recurrence rescaled as it goes: exact where the weights themselves underflow (below
    1e-308 for the outer nodes once n > ~700)."""
    n = z.size
    prev, cur, log_scale = np.zeros_like(z), np.ones_like(z), np.zeros_like(z)  # He_{-1}, He_0
    for k in range(n - 1):  # He_{k+1} = z He_k - k He_{k-1}
        prev, cur = cur, z * cur - k * prev
        big = np.abs(cur) > 1e150
        if big.any():
            f = np.where(big, np.abs(cur), 1.0)
            prev, cur, log_scale = prev / f, cur / f, log_scale + np.log(f)
    return special.gammaln(n + 1) - 2 * math.log(n) - 2 * (np.log(np.abs(cur)) + log_scale)


@lru_cache(maxsize=64)
def gauss_hermite(n: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilists' Gauss-Hermite rule for N(0, I_d): nodes [n^d, d], log weights [n^d] (summing to 1)."""
    z, _ = special.roots_hermitenorm(n)  # nodes: stable for large n, unlike numpy's hermegauss
    lw = _hermite_log_weights(z)
    lw = lw - special.logsumexp(lw)
    grids = np.meshgrid(*([z] * d), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=1)
    logw = sum(g.ravel() for g in np.meshgrid(*([lw] * d), indexing="ij"))
    return torch.as_tensor(nodes), torch.as_tensor(logw)


def spline_at(values: torch.Tensor, axes, pts: torch.Tensor, *, outside: str = "nearest",
              spacing: Sequence[float] | None = None) -> torch.Tensor:
    """Cubic-spline interpolation of values on a uniform grid at points [P, d]. Beyond the grid's edge:
    ``outside="nearest"`` continues the edge value, ``"zero"`` gives 0 (a density with no mass there).
    ``spacing``: the grid's exact spacing when the caller knows it better than ``axes[1] - axes[0]``."""
    if outside == "nearest":
        mode, kw = "nearest", {}
    elif outside == "zero":
        mode, kw = "constant", {"cval": 0.0}
    else:
        raise ValueError(f"outside must be 'nearest' or 'zero', got {outside!r}")
    lo = torch.tensor([a[0].item() for a in axes], dtype=torch.float64)
    h = torch.tensor(axes_spacing(axes) if spacing is None else spacing, dtype=torch.float64)
    coords = ((pts - lo) / h).T.numpy()  # [d, P] in index units
    if outside == "nearest":  # spline coefficients with the edge condition itself (no pre-padding)
        filtered = ndimage.spline_filter(values.numpy(), order=3, mode=mode)
        out = ndimage.map_coordinates(filtered, coords, order=3, mode=mode, prefilter=False)
    else:
        out = ndimage.map_coordinates(values.numpy(), coords, order=3, mode=mode, **kw)
    return torch.from_numpy(np.ascontiguousarray(out))


def quadrature_spacing(cond, reward, abar: float, points_per_width: float) -> float:
    """The spacing of a uniform ``x_0`` grid that resolves ``p(x_0 | y) R_0(x_0) N(x_t; sqrt(abar) x_0, 1 - abar)``:
    ``min(sigma, narrowest std of cond, reward.length_scale()) / points_per_width``, with
    ``sigma = sqrt((1 - abar) / abar)`` the forward kernel's width in ``x_0`` units."""
    sig = math.sqrt((1 - abar) / abar)
    cond_std = torch.linalg.eigvalsh(cond.covs).min().sqrt().item()
    return min(sig, cond_std, reward.length_scale()) / points_per_width


def probe_directions(d: int) -> torch.Tensor:
    """The ray directions of :func:`probe_points`: both in 1-D, 64 in 2-D, the coordinate axes and the two
    diagonals above. [D, d]"""
    if d == 1:
        return torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    if d == 2:
        th = torch.arange(64, dtype=torch.float64) * (2 * math.pi / 64)
        return torch.stack([th.cos(), th.sin()], 1)
    eye = torch.eye(d, dtype=torch.float64)
    diag = torch.ones(1, d, dtype=torch.float64) / math.sqrt(d)
    return torch.cat([eye, -eye, diag, -diag])


def probe_points(centre: torch.Tensor, r_min: float, r_max: float) -> torch.Tensor:
    """Points on rays from ``centre`` [d] (:func:`probe_directions`) at radii growing by 2^(1/4) from ``r_min``
    to ``r_max``. Where a tilted density may have a mode far from every centre (past a valley, where another
    mixture component takes over the tail), a scan of these finds its basin. Radius-major: reshaped to
    [radii, directions, d]. [P, d]"""
    u = probe_directions(centre.numel())
    n = max(1, int(math.ceil(4 * math.log2(max(r_max / r_min, 1.0)))) + 1)
    radii = r_min * 2.0 ** (torch.arange(n, dtype=torch.float64) / 4)
    return (centre.to(torch.float64)[None, None, :] + radii[:, None, None] * u[None]).reshape(-1, centre.numel())
