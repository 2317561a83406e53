"""Distances between output laws and the tilted target.

- :func:`tilted_target`: ``pbar(x_0 | y) = p(x_0 | y) R_0(x_0, y) / Z`` on a grid by quadrature, as hat
  masses (the discretisation :func:`evaluation.density.output_density` uses, so both are compared alike),
  with ``log Z``, by Gauss-Legendre on the pieces where the hats are linear.
- :func:`distances`: total variation, KL both ways and (1-D) the exact W1 between two grid laws.
- :func:`energy_distance`: between two sample sets (any d), with a standard error from disjoint blocks.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from analytic.integrability import tail_margin
from analytic.mixture import GaussianMixture
from analytic.quadrature import as_axes, axes_spacing, check_axes, grid_points
from analytic.rewards import AutoGReward, CFGReward, ClassifierReward, check_reward
from sampler.schedules import check_count

from .density import mass_outside

__all__ = ["TiltedTarget", "tilted_target", "target_key", "TargetMemo", "check_tilt_integrable", "Distances", "distances", "distances_between",
           "total_variation", "kl_divergence", "wasserstein1", "EnergyDistance", "energy_distance"]

class TiltedTarget(NamedTuple):
    axes: tuple[torch.Tensor, ...]
    mass: torch.Tensor  # [n_1(, n_2)] hat masses of pbar on the grid, sums to 1 - lost (like OutputDensity.mass)
    log_Z: float  # log int p(x_0|y) R_0(x_0) dx_0 over the grid's cells (the outside's share: log_Z_error)
    lost: float  # the target's mass missing from the grid, 1 - mass.sum(): its mass outside the grid's cells
    # (``outside``) plus the part of the rest in the edge half-cells beyond the edge nodes' hats; in [0, 1]
    error: torch.Tensor  # [n_1(, n_2)] estimated |mass - exact hat masses|: the change from half the quadrature nodes
    # (only the sum is a bound, see tilted_target)
    log_Z_error: float  # bound on |log_Z - exact log Z|: the quadrature's change, the mass outside and rounding
    outside: float = 0.0  # the target's mass outside the grid's cells (estimated; part of ``lost``)


def check_tilt_integrable(cond: GaussianMixture, reward) -> float:
    """``ValueError`` unless ``Z = int p(x_0 | y) R_0(x_0) dx_0`` is finite; returns the relative tail margin.

    The tail test of :mod:`analytic.integrability` without noise (``abar -> 0``, where the posterior is the
    prior ``p(x_0 | y)``): ``u^T S_k^{-1} u + tau(u) > 0`` for every component ``k`` and direction ``u``."""
    if not isinstance(cond, GaussianMixture):
        raise ValueError(f"cond must be an analytic.GaussianMixture, got {type(cond).__name__}")
    check_reward(reward, cond.dim)
    margin, u = tail_margin(cond, reward, 0.0)
    if margin <= 1e-12:
        raise ValueError(
            f"Z = int p(x_0|y) R_0(x_0) dx_0 diverges: p(x_0|y) R_0(x_0) is not integrable along direction "
            f"{[round(v, 4) for v in u.tolist()]} (relative tail curvature {margin:.3g} <= 0), so the tilted target "
            f"p(x_0|y) R_0 / Z does not exist. The reward {reward!r} grows too fast in the tails (for CFG: w too "
            f"large for a conditional wider than the reference).")
    return margin


_OUTSIDE_NODES = 101**2  # most nodes of the grid tilted_target finds the mass outside the cells on
_BLOCK = 2**16  # quadrature points evaluated at once: bounds the mixtures' [K, d, points] temporaries (a few MB)


def _hat_rule(axis: torch.Tensor, points: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gauss-Legendre with ``points`` nodes on every interval between neighbouring nodes of the uniform ``axis`` and on
    the two half-cells beyond its ends (the cells centred on the nodes, as :func:`evaluation.density.mass_outside`
    counts them): ``(x [m], q [m], lower [n + 1, points], upper [n + 1, points])``, the points piece by piece (piece
    ``j``: the half-cell left of node 0 for ``j = 0``, the interval from node ``j - 1`` to node ``j``, the half-cell
    right of node ``n - 1`` for ``j = n``), ``q`` the quadrature weights, and ``lower``/``upper`` those times the hat
    of the piece's left/right node (nodes ``-1`` and ``n`` lie outside the grid): :func:`_hat_masses`. A hat is
    linear on each piece, so the rule is exact for polynomials of degree ``2 points - 2`` on every piece, and of
    order ``2 points`` for a smooth density (the midpoint sub-cells it replaces were of order 2, issue 19: the
    target took a third of a 401^2 law's cell)."""
    n, h = axis.numel(), (axis[1] - axis[0]).item()
    t, w = (torch.from_numpy(v) for v in np.polynomial.legendre.leggauss(points))
    t, w = 0.5 * (t + 1), 0.5 * w  # on [0, 1]
    left = axis[0] - 0.5 * h * (1 - t)  # the hat of node 0 there: 1 - (x_0 - x) / h
    mid = (axis[:-1, None] + h * t[None]).flatten()
    right = axis[-1] + 0.5 * h * t
    x = torch.cat([left, mid, right])
    piece = torch.full((n + 1, 1), h, dtype=torch.float64)
    piece[[0, -1]] = 0.5 * h
    q = piece * w  # [n + 1, points]
    up = t.repeat(n + 1, 1)  # the right node's hat on an interval
    up[0], up[-1] = 1 - 0.5 * (1 - t), 0.5 * t
    return x, q.flatten(), q * (1 - up), q * up


def _hat_masses(values: torch.Tensor, rule, dim: int) -> torch.Tensor:
    """The hat masses along ``dim`` of ``values`` given at the points of ``rule`` (:func:`_hat_rule`): each point's
    weighted value split between the two nodes of its piece, those outside the grid dropped; [n] along ``dim``."""
    _, _, lower, upper = rule
    x = values.movedim(dim, 0)
    f = x.reshape(lower.shape[0], lower.shape[1], -1)  # [n + 1, points, rest]
    to_left = torch.einsum("jpr,jp->jr", f, lower)  # piece j -> node j - 1
    to_right = torch.einsum("jpr,jp->jr", f, upper)  # piece j -> node j
    return (to_left[1:] + to_right[:-1]).reshape(-1, *x.shape[1:]).movedim(0, dim)


def _target_masses(cond, reward, axes, points: int):
    """``(hat masses of the normalised target, log Z over the grid's cells, share of that beyond the hats)`` by
    :func:`_hat_rule` on every axis: ``log p(x_0|y) R_0(x_0)`` on the rule's tensor grid, in blocks of rows of about
    ``_BLOCK`` points, then its integral and hat masses axis by axis."""
    rules = [_hat_rule(a, points) for a in axes]
    xs = [r[0] for r in rules]
    shape = tuple(x.numel() for x in xs)
    log_f = torch.empty(shape, dtype=torch.float64)
    rows = max(1, _BLOCK // math.prod(shape[1:]))
    for r in range(0, shape[0], rows):
        pts = grid_points((xs[0][r:r + rows], *xs[1:]))
        block = cond.log_prob(pts) + reward.log_r0(pts)
        if torch.any(torch.isnan(block)) or torch.any(block == math.inf):
            raise ValueError("log p(x_0|y) R_0(x_0) is nan or +inf on the grid")
        log_f[r:r + rows] = block.reshape(-1, *shape[1:])
    top = log_f.max()
    mass = total = log_f.sub_(top).exp_()  # in place: f = exp(log_f - top)
    for i, rule in enumerate(rules):
        total = torch.tensordot(rule[1], total, dims=([0], [0]))  # the integral over axis i (the next one is first)
        mass = _hat_masses(mass, rule, i)
    mass = mass / total
    return mass, (top + torch.log(total)).item(), 1.0 - mass.sum().item()


def tilted_target(cond: GaussianMixture, reward, axes, *, points: int = 3, tol: float | None = None,
                  max_points: int = 64, max_outside: float = 0.1) -> TiltedTarget:
    """The tilted target as hat masses on a uniform grid, by Gauss-Legendre on the pieces where the hats are linear
    (:func:`_hat_rule`, ``points`` nodes per piece and axis) and again with twice the nodes: the masses and ``log Z``
    are the finer rule's, their error the change between the two (Gauss-Legendre with ``p`` nodes is exact to degree
    ``2 p - 1``, so for a smooth density the error falls by orders of magnitude as the nodes double: the change
    bounds the coarser rule's error and far exceeds the finer one's; plus the rounding of a mass, ``1e-15`` of the
    largest). ``tol``: the summed error of the masses to reach by doubling ``points`` (up to ``max_points``;
    ``ValueError`` beyond); ``None`` keeps ``points``. The check at ``2 points`` must be within ``max_points``
    (``ValueError``). ``ValueError`` when ``Z`` is infinite (:func:`check_tilt_integrable`).

    The masses are shares of the whole target: the quadrature normalises over the grid's cells, and the share
    outside them (``outside``, :func:`evaluation.density.mass_outside`) scales them down, so ``mass.sum() = 1 -
    lost`` with ``lost`` (in ``[0, 1]``) the mass outside plus what of the rest lies beyond the edge nodes' hats.
    A target with more than ``max_outside`` of its mass outside the grid is refused (``ValueError`` naming both):
    its distances would be dominated by mass the grid does not see (issue 20: a target almost entirely outside
    reported ``outside + lost = 1.04``, the edge share counted relative to the inside mass only, and was only
    refused later by :func:`distances`)."""
    axes = check_axes(as_axes(axes), cond.dim, uniform=True)
    points, max_points = check_count(points, "points"), check_count(max_points, "max_points")
    if 2 * points > max_points:
        raise ValueError(f"points={points} needs its check at 2 points = {2 * points}, more than max_points="
                         f"{max_points} (the most Gauss-Legendre nodes per piece): lower points or raise max_points")
    if tol is not None and (isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (math.isfinite(tol) and tol > 0)):
        raise ValueError(f"tol must be a positive number or None, got {tol!r}")
    if isinstance(max_outside, bool) or not isinstance(max_outside, (int, float)) or not 0 <= max_outside < 1:
        raise ValueError(f"max_outside must be a mass in [0, 1), got {max_outside!r}")
    check_tilt_integrable(cond, reward)
    box = " x ".join(f"[{a[0].item():.4g}, {a[-1].item():.4g}]" for a in axes)

    def log_f(x):  # log p(x_0|y) R_0(x_0), unnormalised
        return cond.log_prob(x) + reward.log_r0(x)

    # the mass outside the grid's cells by the midpoint rule on the same box, with the grid's cells or (more than
    # _OUTSIDE_NODES in all) fewer, wider ones, and at a third of that spacing (nested cells) for its error: a tail
    # integral needs no finer cells, and a frame at a third of a 401^2 grid's spacing was most of the target's time
    per_axis = max(3, int(_OUTSIDE_NODES ** (1 / len(axes))))
    coarse = []
    for a, hi in zip(axes, axes_spacing(axes)):
        m = min(a.numel(), per_axis)
        lo_edge, H = a[0].item() - 0.5 * hi, a.numel() * hi / m
        coarse.append(a if m == a.numel() else lo_edge + H * (torch.arange(m, dtype=torch.float64) + 0.5))
    try:
        outside_h = mass_outside(log_f, coarse)
        fine = tuple(torch.linspace(a[0].item() - hi / 3, a[-1].item() + hi / 3, 3 * a.numel(), dtype=torch.float64)
                     for a, hi in zip(coarse, axes_spacing(coarse)))
        outside = mass_outside(log_f, fine)
    except ValueError as e:
        raise ValueError(f"the tilted target lies far beyond the grid {box} ({e})") from None
    if outside > max_outside:
        raise ValueError(f"the tilted target has {outside:.3g} of its mass outside the grid {box} (more than "
                         f"max_outside={max_outside:g}): widen or move the axes")
    cur = _target_masses(cond, reward, axes, points)
    while True:
        nxt = _target_masses(cond, reward, axes, 2 * points)
        error = (nxt[0] - cur[0]).abs() + 1e-15 * nxt[0].max()
        if tol is None or error.sum().item() <= tol:
            break
        if 4 * points > max_points:
            raise ValueError(f"tilted_target reached an estimated error of {error.sum().item():.3g} (tol {tol:g}) "
                             f"with {2 * points} Gauss-Legendre nodes per piece; a finer grid is needed (or raise "
                             f"max_points)")
        points, cur = 2 * points, nxt
    mass, log_Z, edge = nxt  # mass: shares of the mass inside the cells; edge: the share of that beyond the hats
    inside = 1.0 - outside
    # the masses scale with 1 - outside: its error (the change from a third of the spacing, second order, so about
    # 9x the fine value's error) moves their sum, spread like the masses
    error = error * inside + mass * abs(outside - outside_h)
    # log Z misses the mass outside (log Z_exact - log Z = -log(1 - outside)) and carries the rounding of a sum of
    # positive terms (at most n eps relative, n the number of quadrature points)
    rounding = 1.2e-16 * (2 * points) ** len(axes) * math.prod(a.numel() + 1 for a in axes)
    log_Z_error = abs(nxt[1] - cur[1]) - math.log1p(-outside) + abs(outside - outside_h) + rounding
    return TiltedTarget(axes, mass * inside, log_Z, outside + inside * max(edge, 0.0), error, log_Z_error, outside)


def target_key(cond, reward) -> tuple | None:
    """The values that determine the tilted target ``p(x|y) R_0(x)`` of ``reward`` on ``cond``: the mixture's
    weights, means and covariances and the reward's type, weight, constant and mixtures, when ``cond`` is a
    ``GaussianMixture`` and the reward a CFG, AutoG or classifier reward; else None (nothing to share it by)."""
    if not isinstance(cond, GaussianMixture) or type(reward) not in (CFGReward, AutoGReward, ClassifierReward):
        return None
    mix = lambda m: tuple(t.detach().cpu().numpy().tobytes() for t in (m.log_weights, m.means, m.covs))  # noqa: E731
    return mix(cond), type(reward).__name__, float(reward.w), float(reward.log_const), mix(reward.num), mix(reward.den)


class TargetMemo:
    """One process's targets (or what is computed from one), shared by the cells that ask for equal ones:
    ``get(key, make)`` is ``make()``, computed once for each ``key`` (a tuple built on :func:`target_key`) and kept
    while at most ``max_items`` are (the oldest go first); a None key (nothing to share by) is computed afresh and
    never kept. The same objects as a fresh computation: callers must not modify them."""

    def __init__(self, max_items: int):
        self.max_items = check_count(max_items, "max_items")
        self._items: dict = {}

    def get(self, key, make):
        if key is None:
            return make()
        if key not in self._items:
            out = make()
            while len(self._items) >= self.max_items:
                self._items.pop(next(iter(self._items)))
            self._items[key] = out
        return self._items[key]

    def clear(self) -> None:
        """Forget every kept target."""
        self._items.clear()


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
    tv_error: float = math.nan  # error estimates from the laws' per-node errors (nan when none were given)
    kl_out_target_error: float = math.nan
    kl_target_out_error: float = math.nan
    w1_error: float = math.nan


def _normalised_error(p: torch.Tensor, err: torch.Tensor) -> torch.Tensor:
    """Per-node error of ``p / sum p`` from per-node errors of ``p`` (first order, absolute values)."""
    total = p.clamp(min=0).sum()
    return (err + p.clamp(min=0) / total * err.sum()) / total


def _spread(err: torch.Tensor) -> torch.Tensor:
    """Each node's error replaced by the largest of its neighbourhood (the node and its neighbours along every axis:
    3^d nodes)."""
    for i in range(err.ndim):
        x = err.movedim(i, 0)
        y = x.clone()
        y[1:] = torch.maximum(y[1:], x[:-1])
        y[:-1] = torch.maximum(y[:-1], x[1:])
        err = y.movedim(0, i)
    return err


_UNDETERMINED = 1e-6  # target mass on nodes where the other law's relative error reaches 1/2: KL error is inf


def _kl_error(p, q, dp, dq, floor: float) -> float:
    """How far ``KL(p || q)`` can move when every mass moves by its error: first order in ``p``; in ``q`` the
    range ``[q - dq, q + dq]``, ``p |log(1 - dq/q)|`` per node, where ``dq < q / 2``. Nodes where ``q`` is not
    determined (``dq >= q / 2``, in particular where ``q`` underflows) count with the floor, ``p log(q / floor)``,
    when they carry less than ``1e-6`` of ``p``; beyond that the error is ``inf``: ``q`` is not known where
    ``p`` has mass, so the KL is not either (issue 20: this used to give 10-300 nats)."""
    pos = p > 0
    q_f = q.clamp(min=floor)
    term_p = (dp * (torch.log(p.clamp(min=floor) / q_f) + 1).abs())[pos | (dp > 0)].sum().item()
    rel = dq / q_f
    bad = pos & (rel >= 0.5)
    if p[bad].sum().item() > _UNDETERMINED:
        return math.inf
    good = pos & ~bad
    term_q = (-p[good] * torch.log1p(-rel[good])).sum().item()
    term_bad = (p[bad] * torch.log((q_f[bad] + dq[bad]) / floor)).sum().item()
    return term_p + term_q + term_bad


def _w1_error(dp: torch.Tensor, h: float) -> float:
    """Bound on the change of ``int |F_p - F_q|`` from errors ``dp`` of a normalised law (its CDF error at node
    k is at most the error mass on either side of k)."""
    left = dp.cumsum(0)
    right = dp.sum() - left
    return (torch.minimum(left, right)[:-1].sum() * h).item()


def distances(output: torch.Tensor, target: torch.Tensor, axes, *, output_error: torch.Tensor | None = None,
              target_error: torch.Tensor | None = None, floor: float = 1e-300, output_lost: float = 0.0,
              target_lost: float = 0.0) -> Distances:
    """TV, both KLs and (1-D) W1 of an output law against a target law on the same grid; with per-node error
    estimates of the masses (``OutputDensity.error``, ``TiltedTarget.error``), also the error of each distance
    that the masses' errors cause (missing ones count as 0), not the grid's own part: hat masses smooth both laws,
    so a distance of them moves with the spacing even for exact masses (the accuracy contract adds that part, its
    change at twice the spacing: :mod:`evaluation.accuracy`). :func:`distances_between` takes the two results
    directly.

    ``output_lost`` / ``target_lost``: each law's mass missing from the grid (``OutputDensity.lost``,
    ``TiltedTarget.lost``). It may lie anywhere, so it adds to the TV error in full and to W1's as mass moved
    across the grid; for the KLs it is counted as a relative error of every mass (the missing mass taken to be
    spread like the law itself: a model, not a bound).

    The KLs weigh each node's error by its log-ratio, so for them the output's error at a node is the largest of its
    neighbourhood (:func:`_spread`): :func:`evaluation.density.output_density`'s per-node error places the error
    where its two computations differ, and only its sum is a bound (session 15: paper_1d, CFG w = 1, DDPM on 201
    nodes, whose summed estimate is 1.4 times its error, gave KL(target || out) outside its error by 6 % without
    it)."""
    axes = as_axes(axes)
    w1 = wasserstein1(output, target, axes[0]) if len(axes) == 1 else math.nan
    kl_ot, kl_to = kl_divergence(output, target, floor), kl_divergence(target, output, floor)
    if output_error is None and target_error is None:
        return Distances(total_variation(output, target), kl_ot, kl_to, w1)
    p, q = _normalise(output), _normalise(target)
    dp = torch.zeros_like(p) if output_error is None else _normalised_error(output, output_error.to(torch.float64).abs())
    dq = torch.zeros_like(q) if target_error is None else _normalised_error(target, target_error.to(torch.float64).abs())
    if dp.shape != p.shape or dq.shape != q.shape:
        raise ValueError(f"error arrays must have the masses' shape {tuple(p.shape)}, got {tuple(dp.shape)} and "
                         f"{tuple(dq.shape)}")
    for name, v in (("output_lost", output_lost), ("target_lost", target_lost)):
        if not (isinstance(v, (int, float)) and 0 <= v < 1):
            raise ValueError(f"{name} must be a mass in [0, 1), got {v!r}")
    lost = output_lost + target_lost
    tv_err = 0.5 * (dp.sum() + dq.sum()).item() + lost
    w1_err = _w1_error(dp, (axes[0][1] - axes[0][0]).item()) + _w1_error(dq, (axes[0][1] - axes[0][0]).item()) \
        + lost * (axes[0][-1] - axes[0][0]).item() if len(axes) == 1 else math.nan
    if output_error is not None:
        dp = _normalised_error(output, _spread(output_error.to(torch.float64).abs()))
    dp, dq = dp + output_lost * p, dq + target_lost * q
    return Distances(total_variation(output, target), kl_ot, kl_to, w1, tv_err, _kl_error(p, q, dp, dq, floor),
                     _kl_error(q, p, dq, dp, floor), w1_err)


def distances_between(output, target) -> Distances:
    """:func:`distances` of an :class:`evaluation.density.OutputDensity` against a :class:`TiltedTarget` on the
    same grid, with the error of every distance from both laws' error estimates and their lost masses."""
    if len(output.axes) != len(target.axes) or any(a.shape != b.shape or not torch.allclose(a, b)
                                                   for a, b in zip(output.axes, target.axes)):
        raise ValueError("the output law and the target must be on the same grid")
    return distances(output.mass, target.mass, output.axes, output_error=output.error, target_error=target.error,
                     output_lost=max(output.lost, 0.0), target_lost=max(target.lost, 0.0))


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
