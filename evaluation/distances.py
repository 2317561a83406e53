"""Distances between output laws and the tilted target.

- :func:`tilted_target`: ``pbar(x_0 | y) = p(x_0 | y) R_0(x_0, y) / Z`` on a grid by quadrature, as hat
  masses (the discretisation :func:`evaluation.density.output_density` uses, so both are compared alike),
  with ``log Z`` by the trapezoid rule.
- :func:`distances`: total variation, KL both ways and (1-D) the exact W1 between two grid laws.
- :func:`energy_distance`: between two sample sets (any d), with a standard error from disjoint blocks.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from analytic.mixture import GaussianMixture
from analytic.quadrature import as_axes, axes_spacing, check_axes, deposit, sub_points

__all__ = ["TiltedTarget", "tilted_target", "Distances", "distances", "total_variation", "kl_divergence",
           "wasserstein1", "EnergyDistance", "energy_distance"]

class TiltedTarget(NamedTuple):
    axes: tuple[torch.Tensor, ...]
    mass: torch.Tensor  # [n_1(, n_2)] hat masses of pbar on the grid, normalised over the sub-point grid
    log_Z: float  # log int p(x_0|y) R_0(x_0) dx_0 over the sub-point grid
    lost: float  # mass of the sub-point grid outside the node grid's hats (edge cells)


def tilted_target(cond: GaussianMixture, reward, axes, *, sub: int = 8) -> TiltedTarget:
    """The tilted target as hat masses on a uniform grid (``sub^d`` quadrature points per cell)."""
    axes = check_axes(as_axes(axes), cond.dim, uniform=True)
    if int(sub) != sub or sub < 1:
        raise ValueError(f"sub must be a positive integer, got {sub}")
    pts = sub_points(axes, int(sub))
    log_f = cond.log_prob(pts) + reward.log_r0(pts)
    if torch.any(torch.isnan(log_f)) or torch.any(log_f == math.inf):
        raise ValueError("log p(x_0|y) R_0(x_0) is nan or +inf on the grid")
    top = log_f.max()
    f = torch.exp(log_f - top)
    cell = math.prod(axes_spacing(axes)) / sub ** len(axes)
    log_Z = (top + torch.log(f.sum() * cell)).item()
    mass, lost = deposit(pts, f / f.sum(), axes)
    return TiltedTarget(axes, mass, log_Z, lost)


# --- distances between grid laws ------------------------------------------------------------------
def _check_pair(p: torch.Tensor, q: torch.Tensor) -> None:
    if p.shape != q.shape:
        raise ValueError(f"need two mass arrays of one shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    if torch.any(p < -1e-12) or torch.any(q < -1e-12):
        raise ValueError(f"masses must be non-negative, got minima {p.min().item()}, {q.min().item()}")


def _normalise(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(min=0).to(torch.float64)
    return p / p.sum()


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    """``1/2 sum |p - q|`` of two (renormalised) grid laws."""
    _check_pair(p, q)
    return 0.5 * (_normalise(p) - _normalise(q)).abs().sum().item()


def kl_divergence(p: torch.Tensor, q: torch.Tensor, floor: float = 1e-300) -> float:
    """``KL(p || q) = sum p log(p / q)`` of two (renormalised) grid laws; ``q`` is floored at ``floor``
    where ``p > 0`` (the far tails underflow in float64)."""
    _check_pair(p, q)
    p, q = _normalise(p), _normalise(q)
    pos = p > 0
    return (p[pos] * (torch.log(p[pos]) - torch.log(q[pos].clamp(min=floor)))).sum().item()


def wasserstein1(p: torch.Tensor, q: torch.Tensor, axis: torch.Tensor) -> float:
    """Exact W1 of two laws on one uniform 1-D grid: ``int |F_p - F_q|`` (node masses, so the CDFs are
    steps between nodes)."""
    _check_pair(p, q)
    if p.ndim != 1 or axis.shape != p.shape:
        raise ValueError(f"W1 is for 1-D laws on their axis, got shapes {tuple(p.shape)}, {tuple(axis.shape)}")
    h = (axis[1] - axis[0]).item()
    return ((_normalise(p).cumsum(0) - _normalise(q).cumsum(0)).abs()[:-1].sum() * h).item()


class Distances(NamedTuple):
    tv: float  # total variation
    kl_out_target: float  # KL(output || target)
    kl_target_out: float  # KL(target || output)
    w1: float  # 1-D exact W1; nan in 2-D


def distances(output: torch.Tensor, target: torch.Tensor, axes) -> Distances:
    """TV, both KLs and (1-D) W1 of an output law against a target law on the same grid."""
    axes = as_axes(axes)
    w1 = wasserstein1(output, target, axes[0]) if len(axes) == 1 else math.nan
    return Distances(total_variation(output, target), kl_divergence(output, target), kl_divergence(target, output), w1)


# --- sample sets ----------------------------------------------------------------------------------
class EnergyDistance(NamedTuple):
    value: float  # 2 E|X - Y| - E|X - X'| - E|Y - Y'| (U-statistics), >= 0 in expectation
    stderr: float  # standard error from the spread over disjoint blocks


def _energy(x: torch.Tensor, y: torch.Tensor) -> float:
    def mean_offdiag(a):
        n = a.shape[0]
        return torch.cdist(a, a).sum().item() / (n * (n - 1))

    return 2 * torch.cdist(x, y).mean().item() - mean_offdiag(x) - mean_offdiag(y)


def energy_distance(x: torch.Tensor, y: torch.Tensor, *, blocks: int = 8) -> EnergyDistance:
    """Energy distance (Szekely & Rizzo) between sample sets ``x`` [N, d] and ``y`` [M, d]; the value uses
    all pairs, the standard error is ``std(block values) / sqrt(blocks)`` over ``blocks`` disjoint splits."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need samples [N, d] and [M, d], got {tuple(x.shape)} and {tuple(y.shape)}")
    if int(blocks) != blocks or blocks < 2 or min(x.shape[0], y.shape[0]) < 2 * blocks:
        raise ValueError(f"need blocks >= 2 and at least 2 samples per block, got blocks={blocks}, "
                         f"N={x.shape[0]}, M={y.shape[0]}")
    x, y = x.to(torch.float64), y.to(torch.float64)
    vals = torch.tensor([_energy(a, b) for a, b in zip(x.chunk(blocks), y.chunk(blocks))])
    return EnergyDistance(_energy(x, y), (vals.std() / math.sqrt(blocks)).item())
