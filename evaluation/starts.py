"""The start laws of the exact output laws (:func:`evaluation.density.output_density`) as log-densities of the VP
state ``u``: :func:`vp_start` (the sampler's ``N(0, I)``), :func:`tilted_start` (``N(0, I) E_T``, or the noised
conditional tilted by ``E_T``: THEORY.md section 4) and :func:`grid_log_prob_start` (log-density values on a grid).
Apart from :mod:`evaluation.density` so that what only names a start (:mod:`evaluation.spec`) does not depend on the
density's engine: a cell's code version counts the modules its kind imports
(:func:`evaluation.sweep.result_sources`)."""
from __future__ import annotations

import math
from typing import Callable

import torch

from analytic.grid import tilted_posterior
from analytic.mixture import GaussianMixture
from analytic.quadrature import as_axes, axes_spacing, check_axes, grid_points, spline_at

__all__ = ["LogProb", "vp_start", "tilted_start", "grid_log_prob_start"]

LogProb = Callable[[torch.Tensor], torch.Tensor]  # u [N, d] -> [N], possibly unnormalised. It may carry a method
# ``on_grid(axes) -> [prod n]``: the same values on the tensor grid of ``axes`` ('ij' order, flattened), computed
# faster than at its points (:func:`tilted_start`); the density's starts and its ``mass_outside`` use it on grids

def vp_start(d: int) -> LogProb:
    """``log N(u; 0, I)``: the start of :func:`sampler.samplers.vp_prior` in VP coordinates (with ``on_grid``)."""
    const = 0.5 * d * math.log(2 * math.pi)

    def log_prob(u: torch.Tensor) -> torch.Tensor:
        return -0.5 * (u**2).sum(1) - const

    def on_grid(axes) -> torch.Tensor:  # the same sum of squares, by broadcasting instead of at the points
        axes = as_axes(axes)
        sq = sum(a.to(torch.float64).reshape([-1 if j == i else 1 for j in range(len(axes))]) ** 2
                 for i, a in enumerate(axes))
        return -0.5 * sq.reshape(-1) - const

    log_prob.on_grid = on_grid
    return log_prob


def tilted_start(cond: GaussianMixture, reward, abar_T: float, *, marginal: bool = False) -> LogProb:
    """``log N(u; 0, I) + log E_T(u)`` (unnormalised), THEORY.md section 4: the start the optimal guided
    chain needs, with ``E_T`` of the ideal chain at the first level ``abar_T`` (``u`` = VP state).

    ``marginal=True`` tilts the true noised conditional instead, ``p_T(u | y) E_T(u)``: the exact
    marginal of the tilted ideal chain. The two agree when ``p_T(u | y) = N(0, I)`` (``abar_T -> 0``);
    with the paper's ``abar_T = 0.82`` only the second makes the chain's output ``p(x_0|y) R_0 / Z``.

    The callable has ``on_grid(axes)``: the values on a tensor grid by the separable quadrature of
    :func:`analytic.grid.tilted_posterior` (axes given as a tuple), the same to rounding and many times faster
    on the grids of :func:`output_density` and :func:`evaluation.density.mass_outside` than at the grid's points."""
    d = cond.dim
    base = cond.noised(abar_T).log_prob if marginal else vp_start(d)

    def log_prob(u: torch.Tensor) -> torch.Tensor:
        return base(u) + tilted_posterior(cond, reward, u, abar_T).log_E

    def on_grid(axes) -> torch.Tensor:
        axes = check_axes(axes, d)
        log_E = tilted_posterior(cond, reward, axes, abar_T).log_E
        return (base(grid_points(axes)) if marginal else base.on_grid(axes)) + log_E

    log_prob.on_grid = on_grid
    return log_prob


def grid_log_prob_start(values: torch.Tensor, axes) -> LogProb:
    """A start given by log-density values on a uniform grid (cubic-spline interpolated), with no mass beyond
    the grid's cells (``-inf`` there: nothing is known about it, and :func:`evaluation.density.mass_outside` counts
    none)."""
    axes = check_axes(axes, values.ndim, uniform=True)
    h = axes_spacing(axes)

    def log_prob(u: torch.Tensor) -> torch.Tensor:
        out = spline_at(values, axes, u)
        beyond = torch.zeros(u.shape[0], dtype=torch.bool)
        for i, (a, hi) in enumerate(zip(axes, h)):
            beyond |= (u[:, i] < a[0].item() - 0.5 * hi) | (u[:, i] > a[-1].item() + 0.5 * hi)
        return out.masked_fill(beyond, -math.inf)

    return log_prob
