"""The ideal-chain optimum on a whole 1-D or 2-D tensor grid at once, by dense quadrature.

THEORY.md section 5 ("whole grids at once"): with ``f = p(x_0 | y) R_0(x_0)``,

    E_t(x_t) = int N(x_t; sqrt(abar) x_0, (1 - abar) I) f(x_0) dx_0 / int N(...) p(x_0 | y) dx_0,

and the tilted mean ``m_R`` is the first moment of the same integrand. The forward kernel is isotropic,
so on a tensor grid of ``x_0`` every integral is a product of one dense kernel matrix per axis
(``K_1 F K_2^T`` in 2-D): sums of positive terms, no FFT cancellation, every grid point in a few
matrix products. The ``x_0`` grid is uniform; the trapezoid rule on it is spectrally accurate once
its spacing resolves the kernel width ``sigma = sqrt((1-abar)/abar)`` and the features of ``f``
(:func:`analytic.quadrature.quadrature_spacing`).

This route shares nothing with the posterior decomposition of :func:`analytic.golden.optimal_guidance`
but the mixture densities (no Gauss-Hermite), so each is a test oracle for the other.

:func:`tilted_posterior` is the robust pointwise form the optimal denoiser and the tilted start use: a
fixed grid covering the support of ``f`` (:func:`support_axes`), with a log-space trapezoid rule where
the plain one underflows.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .integrability import check_integrable, tail_margin
from .mixture import GaussianMixture, check_abar, check_points
from .quadrature import check_axes, grid_points, quadrature_spacing
from .rewards import check_reward

__all__ = ["QuadratureTooLarge", "GridGolden", "golden_on_grid", "PointsGolden", "golden_at_points", "support_axes", "TiltedPosterior",
           "tilted_posterior"]

_MAX_X0_POINTS = 6_000_000


class GridGolden(NamedTuple):
    """The optimum on the grid ``axes`` (tensor product, 'ij' order). float64."""

    axes: tuple[torch.Tensor, ...]
    log_E: torch.Tensor  # [n_1(, n_2)]
    grad_log_E: torch.Tensor  # [n_1(, n_2), d]
    golden: torch.Tensor  # [n_1(, n_2), d]  -sqrt(1 - abar) grad log E_t
    x0_axes: tuple[torch.Tensor, ...]  # the quadrature grid used


class _Underflow(ValueError):
    """The plain trapezoid rule underflowed at some points (far from the mixture)."""


class QuadratureTooLarge(ValueError):
    """The dense quadrature grid this problem needs exceeds the memory limit (narrow kernels in 2-D)."""


def _blur(Ks: list[torch.Tensor], F: torch.Tensor) -> torch.Tensor:
    """``sum_y prod_i K_i[x_i, y_i] F[y]`` for one kernel matrix per axis."""
    if len(Ks) == 1:
        return Ks[0] @ F
    return Ks[0] @ F @ Ks[1].T


def _default_x0_axes(cond: GaussianMixture, reward, ranges, abar: float, points_per_width: float):
    """A uniform quadrature grid covering the tilted posterior of every point in ``ranges``.

    Spacing: :func:`analytic.quadrature.quadrature_spacing`. Extent: the hull of the points'
    ``x_t / sqrt(abar)`` and of every component and reward centre, widened by 12 times the widest tail
    scale of any tilted posterior component (``1 / sqrt`` of its smallest tail curvature)."""
    h = quadrature_spacing(cond, reward, abar, points_per_width)
    margin, _ = tail_margin(cond, reward, abar)
    curvature = margin * (torch.linalg.matrix_norm(cond.precisions, ord=2).max().item() + abar / (1 - abar))
    width = 12 / math.sqrt(curvature)
    centres = torch.cat([cond.means, reward.centres()])
    out = []
    for i, r in enumerate(ranges):
        lo = min(r[0].item() / math.sqrt(abar), centres[:, i].min().item()) - width
        hi = max(r[-1].item() / math.sqrt(abar), centres[:, i].max().item()) + width
        out.append(torch.linspace(lo, hi, int(math.ceil((hi - lo) / h)) + 1, dtype=torch.float64))
    return tuple(out)


def _integrand(cond: GaussianMixture, reward, x0_axes):
    """``p(x_0|y)`` and ``p(x_0|y) R_0(x_0)`` on the quadrature grid, each scaled by its maximum."""
    size = math.prod(ax.numel() for ax in x0_axes)
    if size > _MAX_X0_POINTS:
        raise QuadratureTooLarge(f"the quadrature grid would have {size} points (limit {_MAX_X0_POINTS}); "
                                 f"pass coarser x0_axes or a smaller grid, or use the posterior route "
                                 f"(optimal_guidance(method='gh'))")
    ys = grid_points(x0_axes)
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
        raise _Underflow("the quadrature underflows at some points (they lie too far from the mixture); "
                         "move the points closer or pass x0_axes")
    log_E = torch.log(num_f) - torch.log(num_p) + log_scale
    grad = math.sqrt(a) / (1 - a) * torch.stack(diffs, dim=-1)
    return log_E, grad


def _check_level(cond, reward, abar) -> float:
    """The public edge of every quadrature route: a valid ``abar < 1``, a reward, a finite ``E_t``."""
    a = check_abar(abar)
    if a == 1:
        raise ValueError("the quadrature route needs abar < 1 (at abar = 1, E_0 = R_0 needs no quadrature)")
    check_reward(reward, cond.dim)
    check_integrable(cond, reward, a)
    return a


def _x0_axes(cond, reward, a, ranges, x0_axes, points_per_width):
    if x0_axes is None:
        return _default_x0_axes(cond, reward, ranges, a, points_per_width)
    return check_axes(x0_axes, cond.dim, uniform=True)


def golden_on_grid(cond: GaussianMixture, reward, axes, abar, *, x0_axes=None,
                   points_per_width: float = 4.0) -> GridGolden:
    """``log E_t``, ``grad log E_t`` and the golden term at every point of a 1-D or 2-D grid.

    Args:
        axes: one 1-D tensor per dimension (a single tensor in 1-D); the grid is their product.
        abar: VP noise level in (0, 1).
        x0_axes: the quadrature grid (uniform axes); by default it covers every tilted posterior with
            the spacing of :func:`analytic.quadrature.quadrature_spacing`.
    """
    axes = check_axes(axes, cond.dim)
    a = _check_level(cond, reward, abar)
    x0_axes = _x0_axes(cond, reward, a, axes, x0_axes, points_per_width)
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


def _at_points(cond: GaussianMixture, reward, x_t: torch.Tensor, a: float, x0_axes, integrand=None):
    """The kernel of :func:`golden_at_points` (valid input assumed): ``(log E_t [N], grad log E_t [N, d])``."""
    P, F, log_scale = integrand if integrand is not None else _integrand(cond, reward, x0_axes)
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


class PointsGolden(NamedTuple):
    """The optimum at N points by dense quadrature, with the change from a coarser quadrature grid."""

    log_E: torch.Tensor  # [N]
    grad_log_E: torch.Tensor  # [N, d]
    err_log_E: torch.Tensor  # [N]
    err_grad: torch.Tensor  # [N, d]


def _check_low_dim(cond: GaussianMixture) -> None:
    if cond.dim > 2:
        raise ValueError(f"dense quadrature is for d <= 2 (the grid grows as n^d); got d = {cond.dim}")


def golden_at_points(cond: GaussianMixture, reward, x_t, abar, *, x0_axes=None,
                     points_per_width: float = 4.0) -> PointsGolden:
    """``log E_t`` and ``grad log E_t`` at arbitrary points of a 1-D or 2-D model, by the same quadrature
    as :func:`golden_on_grid` (row-wise kernels instead of a separable product). The error estimate is
    the change from a quadrature grid 30% coarser (every other node of ``x0_axes`` when it is given)."""
    _check_low_dim(cond)
    x_t = check_points(x_t, cond.dim, cond.device, "x_t").detach()
    a = _check_level(cond, reward, abar)
    ranges = tuple(torch.stack([c.min(), c.max() + 1e-9]) for c in x_t.T)
    fine = _x0_axes(cond, reward, a, ranges, x0_axes, points_per_width)
    coarse = (tuple(ax[::2] for ax in fine) if x0_axes is not None
              else _x0_axes(cond, reward, a, ranges, None, 0.7 * points_per_width))
    log_E, grad = _at_points(cond, reward, x_t, a, fine)
    coarse_log_E, coarse_grad = _at_points(cond, reward, x_t, a, coarse)
    return PointsGolden(log_E, grad, (log_E - coarse_log_E).abs(), (grad - coarse_grad).abs())


# --- the robust pointwise form: optimal denoiser and tilted start --------------------------------------


def support_axes(cond: GaussianMixture, reward, abar: float, points_per_width: float = 4.0):
    """A uniform quadrature grid for ``x_0`` covering where ``f = p(x_0|y) R_0(x_0)`` is within
    ``exp(-60)`` of its maximum (widened until the edges are below that), with the spacing of
    :func:`analytic.quadrature.quadrature_spacing`. Unlike the default grid of :func:`golden_on_grid` it
    does not grow with the points' distance, so whole density grids stay cheap; points far outside are
    handled by the log-space fallback of :func:`tilted_posterior`."""
    h = quadrature_spacing(cond, reward, abar, points_per_width)
    max_std = torch.linalg.eigvalsh(cond.covs).max().sqrt().item()
    lo_c, hi_c = cond.means.min(0).values, cond.means.max(0).values
    width = 6 * max_std
    for _ in range(8):
        axes = tuple(torch.arange(lo_c[i].item() - width, hi_c[i].item() + width + h, h, dtype=torch.float64)
                     for i in range(cond.dim))
        edges = torch.cat([torch.cartesian_prod(*[a[[0, -1]] if j == i else a for j, a in enumerate(axes)])
                           .reshape(-1, cond.dim) for i in range(cond.dim)])
        log_f_edge = cond.log_prob(edges) + reward.log_r0(edges)
        centre = cond.means
        log_f_top = (cond.log_prob(centre) + reward.log_r0(centre)).max()
        if log_f_edge.max() < log_f_top - 60:
            return axes
        width *= 1.5
    raise ValueError("p(x_0|y) R_0(x_0) does not decay within 100 standard deviations (is E_t finite?)")


class TiltedPosterior(NamedTuple):
    log_E: torch.Tensor  # [N] log E_t(x_t)
    tilted_mean: torch.Tensor  # [N, d] m_R, the optimal guided x0_hat


def _log_space(cond: GaussianMixture, reward, x_vp: torch.Tensor, a: float, x0_axes) -> TiltedPosterior:
    """``log E_t`` and ``m_R`` at points [n, d] by the trapezoid rule in log space (no underflow; slower)."""
    ys = grid_points(x0_axes)  # [G, d]
    log_p = cond.log_prob(ys)
    log_f = log_p + reward.log_r0(ys)  # [G]
    E, M = [], []
    step = max(1, 4_000_000 // ys.shape[0])
    for chunk in torch.split(x_vp, step):
        log_k = -((chunk[:, None, :] - math.sqrt(a) * ys[None]) ** 2).sum(-1) / (2 * (1 - a))  # [n, G]
        lw = log_k + log_f
        E.append(torch.logsumexp(lw, 1) - torch.logsumexp(log_k + log_p, 1))
        M.append(torch.softmax(lw, dim=1) @ ys)
    return TiltedPosterior(torch.cat(E), torch.cat(M))


def tilted_posterior(cond: GaussianMixture, reward, x_t, abar) -> TiltedPosterior:
    """``log E_t`` and the tilted posterior mean ``m_R`` at points ``x_t`` [N, d] (d <= 2, ``abar < 1``) on
    one :func:`support_axes` grid, chunk by chunk, redoing in log space the chunks where the plain
    trapezoid rule underflows (far tails, large ``w``). ``m_R = m + (1 - abar)/sqrt(abar) grad log E_t``
    (THEORY.md section 4, working identity)."""
    _check_low_dim(cond)
    x_t = check_points(x_t, cond.dim, cond.device, "x_t").detach()
    a = _check_level(cond, reward, abar)
    x0_axes = support_axes(cond, reward, a)
    integrand = _integrand(cond, reward, x0_axes)
    log_E, m_R = [], []
    for chunk in torch.split(x_t, 4096):
        try:
            lE, grad = _at_points(cond, reward, chunk, a, x0_axes, integrand)
            log_E.append(lE)
            m_R.append(cond.posterior(chunk, a).mean() + (1 - a) / math.sqrt(a) * grad)
        except _Underflow:
            out = _log_space(cond, reward, chunk, a, x0_axes)
            log_E.append(out.log_E)
            m_R.append(out.tilted_mean)
    return TiltedPosterior(torch.cat(log_E), torch.cat(m_R))
