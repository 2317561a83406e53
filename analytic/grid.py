"""The ideal-chain optimum on a whole 1-D or 2-D tensor grid at once, by dense quadrature.

THEORY.md section 5 ("whole grids at once"): with ``f = p(x_0 | y) R_0(x_0)``,

    E_t(x_t) = int N(x_t; sqrt(abar) x_0, (1 - abar) I) f(x_0) dx_0 / int N(...) p(x_0 | y) dx_0,

and the tilted mean ``m_R`` is the first moment of the same integrand. The forward kernel is isotropic,
so on a tensor grid of ``x_0`` every integral is a product of one dense kernel matrix per axis
(``K_1 F K_2^T`` in 2-D): sums of positive terms, no FFT cancellation, every grid point in a few
matrix products. The ``x_0`` grid is uniform; the trapezoid rule on it is spectrally accurate once
its spacing resolves the kernel width ``sigma = sqrt((1-abar)/abar)`` and the features of ``f``.

This route shares nothing with :func:`analytic.golden.optimal_guidance` but the mixture densities
(no posterior decomposition, no Gauss-Hermite), so each is a test oracle for the other.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch

from .golden import _tail_margin, check_integrable
from .mixture import GaussianMixture, check_abar

__all__ = ["GridGolden", "golden_on_grid", "golden_at_points", "check_axes"]

_MAX_X0_POINTS = 6_000_000


class GridGolden(NamedTuple):
    """The optimum on the grid ``axes`` (tensor product, 'ij' order). float64."""

    axes: tuple[torch.Tensor, ...]
    log_E: torch.Tensor  # [n_1(, n_2)]
    grad_log_E: torch.Tensor  # [n_1(, n_2), d]
    golden: torch.Tensor  # [n_1(, n_2), d]  -sqrt(1 - abar) grad log E_t
    x0_axes: tuple[torch.Tensor, ...]  # the quadrature grid used


def check_axes(axes: Sequence, d: int, uniform: bool = False) -> tuple[torch.Tensor, ...]:
    """Grid axes as float64 1-D tensors, one per dimension; ``ValueError`` otherwise."""
    if d not in (1, 2):
        raise ValueError(f"grids are for d = 1 or 2, got d = {d}")
    if isinstance(axes, torch.Tensor) and axes.ndim == 1:
        axes = (axes,)
    axes = tuple(torch.as_tensor(a, dtype=torch.float64) for a in axes)
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


def _grid_points(axes: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return torch.cartesian_prod(*axes).reshape(-1, len(axes)) if len(axes) > 1 else axes[0][:, None]


def _blur(Ks: list[torch.Tensor], F: torch.Tensor) -> torch.Tensor:
    """``sum_y prod_i K_i[x_i, y_i] F[y]`` for one kernel matrix per axis."""
    if len(Ks) == 1:
        return Ks[0] @ F
    return Ks[0] @ F @ Ks[1].T


def _default_x0_axes(cond: GaussianMixture, reward, ranges, abar: float, points_per_width: float):
    """A uniform quadrature grid covering the tilted posterior of every point in ``ranges``.

    Spacing: ``min(sigma, narrowest component std / sqrt(1 + |w|)) / points_per_width``. Extent: the hull
    of the points' ``x_t / sqrt(abar)`` and of every component mean, widened by 12 times the widest tail
    scale of any tilted posterior component (``1 / sqrt`` of its smallest tail curvature)."""
    sig = math.sqrt((1 - abar) / abar)
    models = [cond] + [m for m in (getattr(reward, "num", None), getattr(reward, "den", None)) if m is not None]
    w = abs(getattr(reward, "w", 1.0))
    min_std = min(torch.linalg.eigvalsh(m.covs).min().sqrt().item() for m in models)
    h = min(sig, min_std / math.sqrt(1 + w)) / points_per_width
    margin, _ = _tail_margin(cond, reward, abar)
    curvature = margin * (torch.linalg.matrix_norm(cond.precisions, ord=2).max().item() + abar / (1 - abar))
    width = 12 / math.sqrt(curvature)
    out = []
    for i, r in enumerate(ranges):
        centres = torch.cat([m.means[:, i] for m in models])
        lo = min(r[0].item() / math.sqrt(abar), centres.min().item()) - width
        hi = max(r[-1].item() / math.sqrt(abar), centres.max().item()) + width
        out.append(torch.linspace(lo, hi, int(math.ceil((hi - lo) / h)) + 1, dtype=torch.float64))
    return tuple(out)


def _integrand(cond: GaussianMixture, reward, x0_axes):
    """``p(x_0|y)`` and ``p(x_0|y) R_0(x_0)`` on the quadrature grid, each scaled by its maximum."""
    size = math.prod(ax.numel() for ax in x0_axes)
    if size > _MAX_X0_POINTS:
        raise ValueError(f"the quadrature grid would have {size} points (limit {_MAX_X0_POINTS}); "
                         f"pass coarser x0_axes or a smaller grid")
    ys = _grid_points(x0_axes)
    shape = tuple(ax.numel() for ax in x0_axes)
    log_p = cond.log_prob(ys).reshape(shape)
    log_f = log_p + reward.log_r0(ys).reshape(shape)
    if torch.any(torch.isnan(log_f)) or torch.any(log_f == math.inf):
        raise ValueError("log p(x_0|y) R_0(x_0) is nan or +inf on the quadrature grid")
    return torch.exp(log_p - log_p.max()), torch.exp(log_f - log_f.max()), (log_f.max() - log_p.max()).item()


def _kernel(x: torch.Tensor, y: torch.Tensor, a: float) -> torch.Tensor:
    """``N(x_i; sqrt(a) y_j, 1 - a)`` up to a factor per row (each row scaled by its maximum, which
    cancels in every ratio below). [n, G]"""
    logK = -((x[:, None] - math.sqrt(a) * y[None, :]) ** 2) / (2 * (1 - a))
    return torch.exp(logK - logK.max(dim=1, keepdim=True).values)


def _finish(num_f, num_p, log_scale, diffs, a):
    if torch.any(num_f <= 0) or torch.any(num_p <= 0):
        raise ValueError("the quadrature underflows at some points (they lie too far from the mixture); "
                         "move the points closer or pass x0_axes")
    log_E = torch.log(num_f) - torch.log(num_p) + log_scale
    grad = math.sqrt(a) / (1 - a) * torch.stack(diffs, dim=-1)
    return log_E, grad


def _prepare(cond, reward, abar, ranges, x0_axes, points_per_width):
    a = check_abar(abar)
    if a == 1:
        raise ValueError("the quadrature route needs abar < 1 (at abar = 1, E_0 = R_0 needs no quadrature)")
    check_integrable(cond, reward, a)
    if x0_axes is None:
        x0_axes = _default_x0_axes(cond, reward, ranges, a, points_per_width)
    else:
        x0_axes = check_axes(x0_axes, cond.dim, uniform=True)
    return a, x0_axes


def golden_on_grid(cond: GaussianMixture, reward, axes, abar, *, x0_axes=None,
                   points_per_width: float = 4.0) -> GridGolden:
    """``log E_t``, ``grad log E_t`` and the golden term at every point of a 1-D or 2-D grid.

    Args:
        axes: one 1-D tensor per dimension (a single tensor in 1-D); the grid is their product.
        abar: VP noise level in (0, 1).
        x0_axes: the quadrature grid (uniform axes); by default it covers every tilted posterior with
            spacing ``min(sigma, min_std / sqrt(1 + |w|)) / points_per_width``.
    """
    axes = check_axes(axes, cond.dim)
    a, x0_axes = _prepare(cond, reward, abar, axes, x0_axes, points_per_width)
    P, F, log_scale = _integrand(cond, reward, x0_axes)
    Ks = [_kernel(x, y, a) for x, y in zip(axes, x0_axes)]
    num_f, num_p = _blur(Ks, F), _blur(Ks, P)
    d = cond.dim
    diffs = []
    for i in range(d):
        yi = x0_axes[i].reshape([-1 if j == i else 1 for j in range(d)])
        diffs.append(_blur(Ks, yi * F) / num_f - _blur(Ks, yi * P) / num_p)  # m_R - m, axis i
    log_E, grad = _finish(num_f, num_p, log_scale, diffs, a)
    return GridGolden(axes, log_E, grad, -math.sqrt(1 - a) * grad, x0_axes)


def golden_at_points(cond: GaussianMixture, reward, x_t, abar, *, x0_axes=None,
                     points_per_width: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log E_t [N], grad log E_t [N, d])`` at arbitrary points of a 1-D or 2-D model, by the same
    quadrature as :func:`golden_on_grid` (row-wise kernels instead of a separable product)."""
    from .mixture import check_points

    x_t = check_points(x_t, cond.dim, cond.device, "x_t").detach()
    ranges = tuple(torch.stack([c.min(), c.max() + 1e-9]) for c in x_t.T)
    a, x0_axes = _prepare(cond, reward, abar, ranges, x0_axes, points_per_width)
    P, F, log_scale = _integrand(cond, reward, x0_axes)
    d = cond.dim
    out_E, out_g = [], []
    for chunk in torch.split(x_t, 2048):
        Ks = [_kernel(chunk[:, i], x0_axes[i], a) for i in range(d)]
        if d == 1:
            K, y = Ks[0], x0_axes[0]
            num_f, num_p = K @ F, K @ P
            diffs = [(K @ (y * F)) / num_f - (K @ (y * P)) / num_p]
        else:
            K1, K2 = Ks
            y1, y2 = x0_axes
            KF, KP = K1 @ F, K1 @ P  # [n, G2]
            num_f, num_p = (KF * K2).sum(1), (KP * K2).sum(1)
            diffs = [((K1 * y1) @ F * K2).sum(1) / num_f - ((K1 * y1) @ P * K2).sum(1) / num_p,
                     (KF * K2 * y2).sum(1) / num_f - (KP * K2 * y2).sum(1) / num_p]
        log_E, grad = _finish(num_f, num_p, log_scale, diffs, a)
        out_E.append(log_E)
        out_g.append(grad)
    return torch.cat(out_E), torch.cat(out_g)
