"""The accuracy contract of a cell that propagates a law on a grid (issue 19): one function,
:func:`converged_laws`, under every output-law cell of the claims ledger.

A cell names a starting grid ``(lo, hi, n)`` per axis and a tolerance ``tol`` (default :func:`default_tol`:
``DEFAULT_TOL = 5e-4`` in 1-D, ``TOL_2D = 5e-3`` in 2-D; a claim picks the digits its verdict and key number
need, and :func:`evaluation.docs.format_number` prints a number with its error). Then

- kernels narrower than the grid refine it before anything runs: the spacing is halved until the narrowest
  stochastic kernel of the sampler (:func:`narrowest_kernel`, VP units) is at least ``MIN_KERNEL_WIDTH``
  spacings, up to ``FIRST_NODES`` (beyond it, up to the node budget ``MAX_NODES``, only the density's own
  estimate refines: most laws with such kernels converge below it, a few need one grid finer);
- each engine computes its law once per grid with an error estimate (an :class:`Engine`; no refinement of its
  own, so no grid is ever computed twice): :func:`density_engine` is :func:`evaluation.density.output_density`
  with the density's estimate (the change from the grid's even nodes: the error of the coarser computation,
  an upper estimate for this one); :func:`refined_engine` serves propagators without an estimate, by running
  them again at half the spacing;
- mass missing from the grid beyond ``LOST_SHARE * tol`` (the density's ``lost``: the start's mass outside the
  grid plus what left it; it enters every number's error whole, and no refinement reduces it) widens it (twice
  the width, the same spacing, so grids stay nested), at most ``MAX_WIDEN`` times; more than ``tol`` left then:
  ``ValueError`` naming the cell;
- the law's summed mass error must be at most ``2 tol`` (the law within ``tol`` in total variation), and the
  cell's published numbers come back from its ``numbers`` callback as :class:`Estimate` (value, error) within
  ``tol``: the error holds the masses' error and the grid-spacing error of the number itself, estimated by
  evaluating it again on the same masses restricted exactly to twice the spacing (:func:`coarsen`; hat masses of
  nested grids restrict exactly), again the coarser value's error. Short of either, the spacing halves; when a
  halving left more than ``STALL`` of the masses' error (the part the spacing does not set: the sub-points per
  cell of a deterministic push-forward, every DDIM step and DDPM's last) or the node budget is reached, the
  engines' ``effort`` rises instead (more sub-points, ``SUBS``: 4 times per effort in 1-D, 2 times in 2-D), up to
  the most the grid affords (``efforts(d, grid)``: a run within ``MAX_SUB_POINTS``; a refinement or widening to a grid that affords less lowers the effort to its most), and
  not for a law without a bound (unresolved stochastic steps); nothing left: ``ValueError`` naming the cell, the
  estimate, the budget and the effort ("not converged"): it never publishes an unconverged number;
- a cell that publishes only numbers of its law (region masses, a mean, a confidence; ``whole_law=False``), not
  the law or a distance of it, is judged on those numbers alone: an output concentrated below the spacing (a DDIM
  output at high w) has node masses that hop between neighbours and never converge, while its region masses do.
  Each number's error is then the smaller of its own estimate above and its convergence estimate
  (:func:`sequence_errors`): its change from twice the spacing where that change at least halved from the one
  before, else twice the larger of the two (the band its values keep once only noise is left), except for a number
  that may diverge slowly (a grid entropy of such an output falls by about ``log 2`` per halving: ``inf``, refused);
  plus its change from the effort below on the same grid (the sub-points' part), plus the lost mass.

Grids only ever double in width or halve in spacing from the cell's own, so the laws of two cells built from
the same starting grid always have a common grid (:func:`common_grid`) and can be compared (:func:`tv_between`).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Protocol, Sequence

import numpy as np
import torch

from sampler.samplers import check_sigmas, ddim_coefficients
from sampler.schedules import check_count, check_number

from .density import MAX_SUB_POINTS, output_density
from .distances import TargetMemo, target_key, tilted_target, total_variation

__all__ = ["DEFAULT_TOL", "TOL_2D", "default_tol", "Engine", "MIN_KERNEL_WIDTH", "MAX_WIDEN", "MAX_NODES",
           "FIRST_NODES", "Estimate", "GridLaw", "check_grid", "check_grid_law", "axes_of", "refine", "widen",
           "spacing", "narrowest_kernel", "coarsen", "grid_tv", "crossing_smoothing", "grid_moments", "grid_entropy",
           "grid_entropy_error", "region_fraction", "region_mass", "region_var", "to_grid", "common_grid",
           "tv_between", "density_engine", "refined_engine", "converged_laws", "sequence_errors", "as_arrays",
           "from_arrays", "shared_target", "clear_targets"]

F64 = torch.float64
DEFAULT_TOL = 5e-4  # 1-D cells: a TV-like number within 5e-4 is right to its third decimal (docs.format_number)
TOL_2D = 5e-3  # 2-D cells: to their second decimal (a 2-D law to 5e-4 would need far more than MAX_NODES[2] nodes)
LOST_SHARE = 0.25  # widen while more than this share of tol is missing from the grid (it enters every error whole)
STALL = 2 / 3  # a refinement that leaves more than this share of the masses' error: the spacing does not set it
MIN_KERNEL_WIDTH = 0.5  # stochastic kernels narrower than this many spacings refine the grid (density's threshold)
MAX_WIDEN = 3  # the grid may grow to 8 times the cell's width
MAX_NODES = {1: 2**14 + 1, 2: 401**2}  # node budget (given grid and the density's working grids), per dimension
# the narrow-kernel rule refines the cell's grid before anything runs up to FIRST_NODES only; beyond, only a law's
# own estimate refines it. 2-D: kernels narrower than the 201^2 spacing (the paper's schedule) leave laws whose
# 201^2 estimate is 6-30x their error (its even-node run is far from resolving them) and whose 401^2 estimate is
# 2.4x: they converge one grid finer, while most such laws converge at 201^2 and must not pay 4x for it
FIRST_NODES = {1: MAX_NODES[1], 2: 201**2}
# sub-points per cell and axis of a deterministic push-forward, by effort (each run is checked at half as many,
# evaluation.density.check_sub). 2-D in steps of 2: its sub-point error falls fast in the sub-points (est2d: 0.0061,
# 0.00087, 0.00056 at 3, 6, 12), and a run at 24 does not fit MAX_SUB_POINTS on 401^2 nodes (9.3e7 points), where 12
# does (2.3e7): effort 1 stays reachable there. (Before session 15 the runs were at 8, 32, 128 and 3, 6, 12, each
# checked at twice as many sub-points: the same runs, the coarser one's masses returned.)
SUBS = {1: (16, 64, 256), 2: (6, 12, 24)}

Grid = tuple  # (lo, hi, n): every axis the same


def default_tol(d: int) -> float:
    """The tolerance of a cell of dimension ``d`` that names none: :data:`DEFAULT_TOL` in 1-D, :data:`TOL_2D` in 2-D."""
    if d not in MAX_NODES:
        raise ValueError(f"d must be 1 or 2, got {d!r}")
    return DEFAULT_TOL if d == 1 else TOL_2D


class Estimate(NamedTuple):
    value: float
    error: float  # estimated |value - converged value|


class GridLaw(NamedTuple):
    """One law as hat masses on the grid ``grid`` (every axis), with the estimated error of each mass."""

    grid: Grid
    mass: torch.Tensor  # [n(, n)] sums to 1 - lost
    error: torch.Tensor  # [n(, n)] estimated |mass - exact hat mass| per node
    lost: float  # mass missing from the grid: the start's mass outside it plus what left it (density's ``lost``)
    narrow_steps: int  # stochastic steps narrower than MIN_KERNEL_WIDTH spacings (density's count)

    @property
    def axes(self) -> tuple[torch.Tensor, ...]:
        return axes_of(self.grid, self.mass.ndim)


# --- grids ----------------------------------------------------------------------------------------
def check_grid(grid, who: str) -> Grid:
    """``grid`` as ``(lo, hi, n)``, or ``ValueError`` naming ``who`` unless it is three finite numbers with
    ``lo < hi`` and an integer ``n >= 2`` (booleans refused)."""
    if not (isinstance(grid, (tuple, list)) and len(grid) == 3
            and all(isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v)
                    for v in grid)
            and grid[1] > grid[0] and int(grid[2]) == grid[2] >= 2):
        raise ValueError(f"{who}: grid must be (lo, hi, n) with finite lo < hi and an integer n >= 2, got {grid!r}")
    return tuple(grid)


def axes_of(grid: Grid, d: int) -> tuple[torch.Tensor, ...]:
    lo, hi, n = grid
    return tuple(torch.linspace(lo, hi, int(n), dtype=F64) for _ in range(d))


def spacing(grid: Grid) -> float:
    lo, hi, n = grid
    return (hi - lo) / (int(n) - 1)


def refine(grid: Grid) -> Grid:
    """Half the spacing, the same extent (every node of ``grid`` stays a node)."""
    lo, hi, n = grid
    return (lo, hi, 2 * int(n) - 1)


def widen(grid: Grid) -> Grid:
    """Twice the width about the same centre, the same spacing (every node of ``grid`` stays a node)."""
    lo, hi, n = grid
    c, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
    return (c - 2 * half, c + 2 * half, 2 * int(n) - 1)


def narrowest_kernel(sigmas, sampler: str, eta: float = 0.0) -> float:
    """Standard deviation (VP units) of the narrowest stochastic kernel of ``sampler`` on ``sigmas``; ``inf``
    for a deterministic sampler. The same coefficients as :func:`evaluation.density.output_density`."""
    s = check_sigmas(sigmas).tolist()
    eta_eff = 1.0 if sampler == "ddpm" else (eta if sampler == "ddim" else 0.0)
    widths = [ddim_coefficients(a, b, eta_eff)[1] / math.sqrt(1 + b * b) for a, b in zip(s[:-1], s[1:]) if b > 0]
    widths = [c for c in widths if c > 0]
    return min(widths) if widths else math.inf


def coarsen(mass: torch.Tensor) -> torch.Tensor:
    """Hat masses on every other node (twice the spacing), exactly: ``phi^H_K = phi^h_2K + (phi^h_2K-1 +
    phi^h_2K+1) / 2``. Also bounds per-node errors (positive weights). Needs an odd node count per axis."""
    mass = torch.as_tensor(mass, dtype=F64)
    if mass.ndim == 0:
        raise ValueError("coarsen needs hat masses on a grid (at least one axis), got a 0-d tensor")
    for i in range(mass.ndim):
        x = mass.movedim(i, 0)
        if x.shape[0] % 2 == 0 or x.shape[0] < 3:
            raise ValueError(f"coarsen needs an odd number (>= 3) of nodes per axis, got {x.shape[0]}")
        out, odd = x[0::2].clone(), x[1::2]
        out[:-1] += 0.5 * odd
        out[1:] += 0.5 * odd
        mass = out.movedim(0, i)
    return mass


# --- numbers with their errors ----------------------------------------------------------------------
def grid_tv(p: GridLaw, q: GridLaw) -> Estimate:
    """TV of two laws on one grid, with its error: the masses' errors (half their sums), the lost masses, and the
    hat smoothing of the TV itself, the larger of its change when both laws are restricted to twice the spacing and
    twice its first-order size (:func:`crossing_smoothing`).

    The TV of hat masses is below the TV of the densities by what the hats straddling each zero of ``p - q`` smooth
    away. Restriction only smooths more (TV contracts), so the TV rises as the spacing halves, but not by geometric
    steps: a zero's part depends on where it falls between the nodes (by up to a factor 4), and with a zero on a
    node that is midway between two nodes of the coarser grid the change vanishes to first order (paper_1d CFG
    w = 1, DDPM: 0.663429, 0.663431 at 401, 801 nodes, where the limit is 0.663462). The first-order size covers
    that; the change covers spacings too coarse for first order (a part of the law narrower than the spacing)."""
    if p.grid != q.grid or p.mass.shape != q.mass.shape:
        raise ValueError(f"grid_tv needs two laws on one grid, got {p.grid} and {q.grid}")
    tv = total_variation(p.mass, q.mass)
    tv2 = total_variation(coarsen(p.mass), coarsen(q.mass))
    smoothing = max(abs(tv - tv2), 2 * crossing_smoothing(p.mass - q.mass))
    return Estimate(tv, 0.5 * (p.error.sum().item() + q.error.sum().item()) + smoothing + p.lost + q.lost)


def crossing_smoothing(diff: torch.Tensor) -> float:
    """First-order size of what hat masses smooth away of ``(1/2) int |f|``, from the hat masses ``diff`` of ``f``
    (``p - q``): along each axis, for neighbours ``m_i, m_i+1`` of opposite sign, ``|m_i+1 - m_i| b(t) / 6`` with
    ``t = m_i / (m_i - m_i+1)`` and ``b(t) = (1 - t)^3 + t^3``.

    In 1-D, ``f = s (x - c)`` near a zero ``c = x_i + t h`` loses ``|s| h^2 b(t) / 6`` to the two hats that straddle
    it (``m_i = h f(x_i)`` exactly for a linear ``f``, so ``t`` is where the masses interpolate to zero); ``b`` runs
    from 1 (a zero on a node) down to 1/4 (midway). On a grid of tensor-product hats in 2-D the sum over the two
    axes is 0.95-1.02 of the loss along a straight zero line at a generic angle (0.66-1.3 at 45 degrees through
    the nodes)."""
    f = torch.as_tensor(diff, dtype=F64)
    if f.ndim == 0 or min(f.shape) < 2 or not bool(torch.isfinite(f).all()):
        raise ValueError(f"crossing_smoothing needs finite hat masses with at least 2 nodes per axis, got shape "
                         f"{tuple(f.shape)}" + ("" if bool(torch.isfinite(f).all()) else " with non-finite entries"))
    total = 0.0
    for i in range(f.ndim):
        a, b = f.narrow(i, 0, f.shape[i] - 1), f.narrow(i, 1, f.shape[i] - 1)
        crossing = (a * b < 0) | ((a == 0) & (b != 0))  # a zero on a node counts once, with its right neighbour
        a, b = a[crossing], b[crossing]
        t = a / (a - b)
        total += ((b - a).abs() * ((1 - t) ** 3 + t ** 3)).sum().item() / 6
    return total


def grid_moments(law: GridLaw) -> dict[str, Estimate]:
    """Mean and variance of a 1-D law on its grid, each with its error: first-order sensitivity to the masses'
    errors, the lost mass, and the change when the masses are restricted to twice the spacing (hat masses add
    ``h^2 / 6`` to a variance)."""
    if law.mass.ndim != 1:
        raise ValueError(f"grid_moments is 1-D, got a law of dimension {law.mass.ndim}")
    (axis,) = law.axes

    def mv(mass, ax):
        p = mass.clamp(min=0) / mass.clamp(min=0).sum()
        mean = (p * ax).sum().item()
        return mean, (p * (ax - mean) ** 2).sum().item()

    mean, var = mv(law.mass, axis)
    mean2, var2 = mv(coarsen(law.mass), axis[0::2])
    e = law.error
    return {"mean": Estimate(mean, abs(mean - mean2) + (e * (axis - mean).abs()).sum().item() + law.lost),
            "var": Estimate(var, abs(var - var2) + (e * ((axis - mean) ** 2 - var).abs()).sum().item() + law.lost)}


def grid_entropy(mass: torch.Tensor, axes) -> float:
    """Differential entropy of a law given by hat masses on ``axes`` (any d). The hat masses' own entropy ``-sum m
    log(m / h^d)`` is the entropy of the law smoothed by the hat (a triangle of variance ``h^2 / 6`` per axis), so by
    de Bruijn's identity it exceeds the law's by ``h^2 / 12`` times its Fisher information ``J`` per axis (to first
    order); that term is taken off, with ``J`` from the masses (``sum (m_k+1 - m_k)^2 / ((m_k+1 + m_k) / 2) / h^2``;
    the spacing cancels), leaving an error of higher order: on a single Gaussian the plain entropy's error falls
    about 4x per halving of the spacing, this one's about 12-16x (tests)."""
    p = mass.clamp(min=0) / mass.clamp(min=0).sum()
    m = p.reshape(-1)
    cell = math.prod((a[1] - a[0]).item() for a in axes)
    pos = m > 0
    entropy = -(m[pos] * torch.log(m[pos] / cell)).sum().item()
    for i in range(len(axes)):
        lo, hi = p.narrow(i, 0, p.shape[i] - 1), p.narrow(i, 1, p.shape[i] - 1)
        both = lo + hi
        on = both > 0
        entropy -= ((hi - lo)[on] ** 2 / (0.5 * both[on])).sum().item() / 12.0
    return entropy


def grid_entropy_error(law: GridLaw, entropy: float) -> float:
    """The part of :func:`grid_entropy`'s error that the masses' errors make: their first-order effect on ``-sum p
    log(p / h^d)``, ``sum e |log(p / h^d) + H| / M`` (a node whose mass is below its error counts its error as its
    mass), plus the lost mass. The spacing's part is the caller's (the change at twice the spacing)."""
    m, e = law.mass.clamp(min=0).reshape(-1), law.error.reshape(-1)
    total = m.sum()
    p = torch.maximum(m, e) / total
    pos = e > 0
    cell = spacing(law.grid) ** law.mass.ndim
    return (e[pos] * (torch.log(p[pos] / cell) + entropy).abs()).sum().item() / total.item() + law.lost


def region_fraction(axis: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """The share of each node's hat area inside ``[lo, hi]`` (a node on an end counts half): the region's mass
    from hat masses, exact for a density linear across each hat. [n]"""
    h = (axis[1] - axis[0]).item()

    def below(a: float) -> torch.Tensor:  # share of each hat's area left of a
        if a == -math.inf:
            return torch.zeros_like(axis)
        if a == math.inf:
            return torch.ones_like(axis)
        t = ((a - axis) / h).clamp(-1, 1)
        return torch.where(t <= 0, 0.5 * (1 + t) ** 2, 1 - 0.5 * (1 - t) ** 2)

    return below(hi) - below(lo)


def region_mass(law: GridLaw, lo: float, hi: float) -> Estimate:
    """The law's mass in ``[lo, hi]`` (1-D), as a share of its mass on the grid, with its error: the masses'
    errors, the lost mass and the change when the masses are restricted to twice the spacing."""
    if law.mass.ndim != 1:
        raise ValueError(f"region_mass is 1-D, got a law of dimension {law.mass.ndim}")
    if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and not math.isnan(lo) and not math.isnan(hi)
            and lo <= hi):
        raise ValueError(f"region_mass needs numbers lo <= hi (infinite ends allowed), got lo={lo!r}, hi={hi!r}")
    (axis,) = law.axes
    m = law.mass.clamp(min=0)
    if not m.sum().item() > 0:
        raise ValueError("region_mass: the law has no mass on its grid")
    v = (m * region_fraction(axis, lo, hi)).sum().item() / m.sum().item()
    mc = coarsen(m)
    v2 = (mc * region_fraction(axis[0::2], lo, hi)).sum().item() / mc.sum().item()
    return Estimate(v, abs(v - v2) + law.error.sum().item() + law.lost)


def region_var(law: GridLaw, lo: float, hi: float) -> Estimate:
    """The variance of the 1-D law within ``[lo, hi]`` (each node's hat counted by its share inside,
    :func:`region_fraction`), with its error: the masses' errors to first order (``sum e f |(x - mu)^2 - var|`` over
    the region's mass), the lost mass, and the change when the masses are restricted to twice the spacing. No mass in
    the region: ``nan`` with an infinite error."""
    region_mass(law, lo, hi)  # the same checks of the law and the ends (ValueError)
    (axis,) = law.axes

    def var_of(mass, ax, err):
        f = region_fraction(ax, lo, hi)
        wgt = mass.clamp(min=0) * f
        total = wgt.sum().item()
        if not total > 0:
            return math.nan, math.inf
        mean = (wgt * ax).sum() / total
        v = ((wgt * (ax - mean) ** 2).sum() / total).item()
        return v, (err * f * ((ax - mean) ** 2 - v).abs()).sum().item() / total

    v, sens = var_of(law.mass, axis, law.error)
    mc = coarsen(law.mass)
    v2, _ = var_of(mc, axis[0::2], torch.zeros_like(mc))
    if not (math.isfinite(v) and math.isfinite(v2)):
        return Estimate(math.nan if not math.isfinite(v) else v, math.inf)
    return Estimate(v, abs(v - v2) + sens + law.lost)


def to_grid(law: GridLaw, grid: Grid) -> GridLaw:
    """``law`` on ``grid`` (nested with the law's own: the same or a multiple-of-two coarser spacing, aligned nodes):
    restricted exactly to the spacing, cropped to the extent (the mass cropped away joins ``lost``) or padded with
    zeros. ``ValueError`` for grids that are not nested."""
    check_grid(grid, "to_grid")
    h, d = spacing(grid), law.mass.ndim
    while spacing(law.grid) < h * (1 - 1e-9):
        lo, hi, n = law.grid
        if int(n) % 2 == 0:
            break
        law = GridLaw((lo, hi, (int(n) - 1) // 2 + 1), coarsen(law.mass), coarsen(law.error), law.lost, law.narrow_steps)
    k = (law.grid[0] - grid[0]) / h
    if abs(spacing(law.grid) - h) > 1e-9 * h or abs(k - round(k)) > 1e-6:
        raise ValueError(f"grids {law.grid} and {grid} are not nested")
    k, m, n = int(round(k)), int(law.grid[2]), int(grid[2])
    a, b = max(k, 0), min(k + m, n)  # the overlap, in the target's nodes
    mass, err = torch.zeros((n,) * d, dtype=F64), torch.zeros((n,) * d, dtype=F64)
    src = tuple(slice(a - k, b - k) for _ in range(d))
    if b > a:
        mass[tuple(slice(a, b) for _ in range(d))] = law.mass[src]
        err[tuple(slice(a, b) for _ in range(d))] = law.error[src]
    cropped = law.mass.clamp(min=0).sum().item() - mass.clamp(min=0).sum().item()
    return GridLaw(tuple(grid), mass, err, law.lost + max(cropped, 0.0), law.narrow_steps)


def common_grid(a: GridLaw, b: GridLaw) -> tuple[GridLaw, GridLaw]:
    """Two laws brought to one grid (:func:`to_grid`): the coarser spacing over the union of the extents.
    ``ValueError`` unless both are laws fit to compute with (:func:`check_grid_law`) and the grids are nested (one
    cell's grid refined or widened from the other's)."""
    check_grid_law(a, "the first law")
    check_grid_law(b, "the second law")
    if a.mass.ndim != b.mass.ndim:
        raise ValueError(f"laws of dimensions {a.mass.ndim} and {b.mass.ndim}")
    h = max(spacing(a.grid), spacing(b.grid))
    lo, hi = min(a.grid[0], b.grid[0]), max(a.grid[1], b.grid[1])
    grid = (lo, hi, int(round((hi - lo) / h)) + 1)
    return to_grid(a, grid), to_grid(b, grid)


def tv_between(a: GridLaw, b: GridLaw) -> Estimate:
    """TV of two laws on nested grids (:func:`common_grid`) with its error (:func:`grid_tv`)."""
    return grid_tv(*common_grid(a, b))


# --- the tilted target on a grid, shared by the cells of one process ----------------------------------------
# The target depends on the law, the reward, the grid and the tolerance alone, not on the sampler, schedule, start or
# REG estimator, so the cells of a sweep ask for few distinct ones (a 2-D target on 201^2 nodes costs ~4 CPU-s,
# benchmarks/target_2d.txt). Bounded: the oldest go first.
_TARGETS = TargetMemo(32)


def shared_target(cond, reward, grid: Grid, tol: float) -> GridLaw:
    """The tilted target of ``reward`` on ``cond`` on ``grid`` (every axis) within ``tol``, as a :class:`GridLaw`,
    computed once per process for equal values of (cond, reward, grid, tol) when ``cond`` is a ``GaussianMixture``
    and the reward a CFG, AutoG or classifier reward (else computed afresh): the same tensors as a fresh
    computation. Callers must not modify them."""
    tk = target_key(cond, reward)

    def make() -> GridLaw:
        t = tilted_target(cond, reward, axes_of(grid, cond.dim), tol=tol)
        return GridLaw(tuple(grid), t.mass, t.error, t.lost, 0)

    return _TARGETS.get(None if tk is None else (tk, tuple(grid), float(tol)), make)


def clear_targets() -> None:
    """Forget the shared targets of this process (:func:`shared_target`)."""
    _TARGETS.clear()


# --- engines: a grid -> one law with its error ---------------------------------------------------------
class Engine(Protocol):
    """``engine(grid, d, effort) -> GridLaw``: one law on ``grid`` (every axis, dimension ``d``) with its error
    estimate, computed once on that grid (no refinement of its own: :func:`converged_laws` decides where to spend);
    ``effort`` in ``0 .. efforts(d, grid)`` buys accuracy the spacing does not (the density's sub-points).
    ``efforts(d, grid)`` is the highest effort the engine can run on ``grid`` (its memory bound), ``-1`` when not
    even effort 0 fits there; the contract never asks for more."""

    def efforts(self, d: int, grid: Grid) -> int: ...

    def __call__(self, grid: Grid, d: int, effort: int = 0) -> GridLaw: ...


def _check_d(d, who: str) -> int:
    if isinstance(d, bool) or d not in MAX_NODES:
        raise ValueError(f"{who}: d must be 1 or 2, got {d!r}")
    return d


def _check_engine_args(who: str, d, grid, effort=0) -> None:
    """``d`` 1 or 2, ``grid`` a grid (:func:`check_grid`), ``effort`` an integer in ``0 .. len(SUBS[d]) - 1``."""
    _check_d(d, who)
    check_grid(grid, who)
    if check_count(effort, f"{who}: effort", least=0) >= len(SUBS[d]):
        raise ValueError(f"{who}: effort must be at most {len(SUBS[d]) - 1} in {d}-D (SUBS[{d}] = {SUBS[d]}), "
                         f"got {effort!r}")


def density_engine(denoiser, sigmas, *, sampler: str = "ddpm", start=None) -> Engine:
    """The exact output law of ``sample(sampler, denoiser, ...)`` by :func:`evaluation.density.output_density` on
    the grid itself, with the density's own error estimate (the change from the grid's even nodes at the observed
    rate of convergence, plus the change from half the sub-points of the deterministic push-forward).
    ``effort`` k takes ``SUBS[d][k]`` sub-points per cell and axis (1-D 16, 64, 256; 2-D 6, 12, 24): the
    sub-points refine with the grid, so their share of the error does not shrink with the spacing.
    ``efforts(d, grid)`` is the highest effort whose run (``nodes x sub^d`` points) fits
    :data:`evaluation.density.MAX_SUB_POINTS` (2-D: 2 up to 201^2 nodes, 1 up to 401^2; 1-D: always 2). The
    law's ``error`` plus ``lost`` is the density's ``total_error``; a run
    with unresolved stochastic steps (kernel means too far apart for the grid: no bound on its error) has an
    infinite error, so the contract refines the grid. ``ValueError`` for ``d`` other than 1 or 2, a grid that is
    not ``(lo, hi, n)`` (:func:`check_grid`), an ``effort`` outside ``0 .. len(SUBS[d]) - 1``."""

    def run(grid: Grid, d: int, effort: int = 0) -> GridLaw:
        _check_engine_args("density_engine", d, grid, effort)
        od = output_density(denoiser, sigmas, axes_of(grid, d), sampler=sampler, start=start,
                            sub=SUBS[d][effort], max_nodes=max(int(grid[2]) ** d, 9))
        error = od.error if not od.unresolved_steps else torch.full_like(od.mass, math.inf)  # not bounded: refine
        return GridLaw(grid, od.mass, error, od.lost, od.narrow_steps)

    def efforts(d: int, grid: Grid) -> int:
        _check_engine_args("density_engine.efforts", d, grid)
        nodes = int(grid[2]) ** d
        return sum(nodes * sub**d <= MAX_SUB_POINTS for sub in SUBS[d]) - 1  # SUBS rise

    run.efforts = efforts
    return run


def refined_engine(propagate: Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, float]]) -> Engine:
    """For a propagator without an error estimate (``axes -> (hat masses, lost)``): it runs at half the spacing
    too; the law is the fine run restricted to the grid, its error the change from the run on the grid itself
    (the error of the coarser run: an upper estimate for the finer one of a method of order >= 1)."""

    def run(grid: Grid, d: int, effort: int = 0) -> GridLaw:
        m, _ = propagate(axes_of(grid, d))
        mf, lost_f = propagate(axes_of(refine(grid), d))
        mf = coarsen(mf)
        return GridLaw(grid, mf, (mf - m).abs() + 1e-15 * mf.max(), lost_f, 0)

    run.efforts = lambda d, grid: 0
    return run


# --- the contract -----------------------------------------------------------------------------------
def converged_laws(engines: Sequence[Engine], grid: Grid, d: int, *, name: str, tol: float | None = None,
                   numbers: Callable[[tuple[GridLaw, ...]], dict[str, Estimate]] | None = None,
                   narrowest: float = math.inf, max_nodes: int | None = None,
                   whole_law: bool = True, unbounded: tuple[str, ...] = ()) -> tuple[tuple[GridLaw, ...], dict]:
    """The laws of ``engines`` on one grid (every axis ``grid = (lo, hi, n)``, dimension ``d``) and the cell's
    published ``numbers(laws) -> {name: Estimate}``, each within ``tol`` (default :func:`default_tol` of ``d``).

    Each engine runs once per grid, and the grid changes by one step at a time (module docstring): refined first
    for kernels narrower than ``MIN_KERNEL_WIDTH`` spacings (``narrowest``, :func:`narrowest_kernel`); widened
    while more than ``LOST_SHARE * tol`` of the mass is missing (lost mass enters every number's error whole, and
    no refinement reduces it); then, while a law's summed mass error exceeds ``2 tol`` (its TV distance to the
    exact law, ``tol``) or a number's error exceeds ``tol``, refined; or, when the last refinement did not reduce
    the masses' error by a third (an error the spacing does not set) or the node budget is reached, the engines'
    ``effort`` is raised, never beyond what every engine affords on the grid (``efforts(d, grid)``; a grid no engine
    can run at effort 0 is not refined to), nor for a law without a bound (an infinite error: unresolved stochastic
    steps, which only a finer grid resolves). Nothing left: ``ValueError`` naming the cell (``name``) and what did
    not converge.

    ``whole_law=False`` (a cell that publishes only its ``numbers``, not the law or a distance of it): the law's
    summed mass error is not judged, only the numbers, and each number's error is the smaller of its own estimate
    and its convergence estimate (:func:`sequence_errors`; ``unbounded`` names the numbers that may diverge slowly
    as the spacing shrinks, a grid entropy) once three grids at one effort are computed; the grid and the effort
    change as above (the masses' error still says where the error lies), and once only the sub-points' part is
    left (or unknown: at effort 0 there is no effort below to compare with), the effort rises on the same grid, and
    at the top effort the cell refuses (refining would not reduce that part)."""
    _check_d(d, name)
    tol = default_tol(d) if tol is None else tol
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"{name}: tol must be a positive number, got {tol!r}")
    if not (isinstance(grid, (tuple, list)) and len(grid) == 3):
        raise ValueError(f"{name}: grid must be (lo, hi, n), got {grid!r}")
    lo, hi, n = grid
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo and int(n) == n and n >= 5 and n % 2 == 1):
        raise ValueError(f"{name}: grid must be (lo, hi, n) with finite lo < hi and an odd n >= 5, got {grid!r}")
    if not engines:
        raise ValueError(f"{name}: engines is empty: give at least one engine (grid -> law)")
    bad = [e for e in engines if not callable(e)]
    if bad:
        raise ValueError(f"{name}: every engine must be a callable (grid, d, effort) -> GridLaw, got {bad[0]!r}")
    if math.isnan(narrowest) or narrowest <= 0:
        raise ValueError(f"{name}: narrowest must be a positive kernel width (inf for a deterministic sampler), "
                         f"got {narrowest!r}")
    if not isinstance(whole_law, bool) or (not whole_law and numbers is None):
        raise ValueError(f"{name}: whole_law must be True or False, and True without numbers to judge; got "
                         f"{whole_law!r} (numbers {'given' if numbers is not None else 'None'})")
    budget = check_count(max_nodes, f"{name}: max_nodes") if max_nodes is not None else MAX_NODES[d]
    first = min(budget, FIRST_NODES[d])

    def efforts(i, e, g):  # engine i's highest effort on g; a plain function: 0
        if not hasattr(e, "efforts"):
            return 0
        k = e.efforts(d, g)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < -1:
            raise ValueError(f"{name}: engine {i}'s efforts(d, grid) must return an integer >= -1 (-1: the grid does "
                             f"not fit), got {k!r} on grid {g}")
        return int(k)

    def top_at(g):  # the highest effort every engine can run on g (-1: not even effort 0)
        return min(efforts(i, e, g) for i, e in enumerate(engines))

    def fits(g, limit):  # g within the node limit, and every engine able to run it
        return int(g[2]) ** d <= limit and top_at(g) >= 0

    g = tuple(grid)
    knob = top_at(g)  # > 0: the engines have an effort knob (sequence_errors' sub-points part)
    if knob < 0:
        raise ValueError(f"{name}: the engines cannot run the grid {g} at all ({int(g[2]) ** d} nodes: more points "
                         f"than their memory bound); give a coarser grid")
    while spacing(g) > narrowest / MIN_KERNEL_WIDTH and fits(refine(g), first):
        g = refine(g)

    def run(g, effort):
        try:
            laws = tuple(e(g, d, effort) for e in engines)
        except ValueError as err:
            raise ValueError(f"{name}: the law does not reach tol {tol:g} on grid {g}: {err}") from err
        for i, law in enumerate(laws):
            _check_law(law, g, d, f"{name}: engine {i}")
        return laws

    history = {}  # whole_law=False: (grid, effort) -> the numbers' values there
    widened, effort, previous = 0, 0, None  # previous: the masses' error one refinement back, at this effort
    while True:
        if int(g[2]) ** d > budget:
            raise ValueError(f"{name}: the grid {g} has {int(g[2]) ** d} nodes, more than the budget {budget}")
        top = top_at(g)
        laws = run(g, effort)
        lost = max(law.lost for law in laws)
        if lost > LOST_SHARE * tol and widened < MAX_WIDEN:
            g, widened, previous = widen(g), widened + 1, None
            effort = min(effort, max(top_at(g), 0))  # a wider grid may afford less (beyond the budget: refused above)
            continue
        if lost > tol:
            raise ValueError(f"{name}: {lost:.3g} of the mass is missing from the grid {g} (tol {tol:g}) after widening "
                             f"it {widened} times")
        worst = max(law.error.sum().item() for law in laws)
        law_ok = worst <= 2 * tol or not whole_law
        nums = numbers(laws) if numbers is not None and law_ok else {}
        spacing_ok = False  # whole_law=False: every number within tol but for the sub-points' part
        if not whole_law:
            history[(g, effort)] = {k: v.value for k, v in nums.items()}
            spaced = sequence_errors(history, g, effort, lost, top=knob, unbounded=unbounded)
            spacing_ok = spaced is not None and all(min(nums[k].error, v) <= tol for k, v in spaced.items())
            if spacing_ok and any(not v.error <= tol for v in nums.values()) and effort > 0 \
                    and (g, effort - 1) not in history:  # compute the effort below on this grid
                history[(g, effort - 1)] = {k: v.value for k, v in numbers(run(g, effort - 1)).items()}
            sharp = sequence_errors(history, g, effort, lost, top=knob, sub=True, unbounded=unbounded) or {}
            nums = {k: Estimate(v.value, min(v.error, sharp.get(k, math.inf))) for k, v in nums.items()}
        bad = {k: v for k, v in nums.items() if not v.error <= tol}
        if law_ok and not bad:
            return laws, nums
        if spacing_ok:  # what is missing the spacing does not set: more sub-points on this grid, or nothing left
            if effort < top:
                effort, previous = effort + 1, None
                continue
            text = ", ".join(f"{k} = {_printed(v.value)} +- {v.error:.2g}" for k, v in bad.items())
            raise ValueError(f"{name}: not converged to tol {tol:g} at the most sub-points the grid allows (effort "
                             f"{effort}, grid {g}): {text}; the change from the effort below is what is left")
        stalled = previous is not None and math.isfinite(previous) and worst > 2 * tol and worst > STALL * previous
        if fits(refine(g), budget) and not (stalled and effort < top):
            # the finer grid may not afford this effort (memory): the most it does (the same sub-point spacing for
            # 2-D's steps of 2), and the stall test starts afresh
            g, capped = refine(g), min(effort, top_at(refine(g)))
            effort, previous = capped, (worst if capped == effort else None)
            continue
        if effort < top and (math.isfinite(worst) or not whole_law):  # no bound (unresolved stochastic steps):
            effort, previous = effort + 1, None  # only a finer grid helps, not the sub-points
            continue
        where = (f"within the budget of {budget} nodes (grid {g}) and at the most sub-points the engines take there "
                 f"(effort {effort})")
        if not law_ok:
            why = " (stochastic steps unresolved on the grid; more sub-points do not resolve them)" \
                if math.isinf(worst) else ""
            raise ValueError(f"{name}: not converged: the law's masses reach an estimated error of {worst:.3g}{why} "
                             f"(summed over the nodes), not 2 tol = {2 * tol:g}, {where}")
        text = ", ".join(f"{k} = {_printed(v.value)} +- {v.error:.2g}" for k, v in bad.items())
        raise ValueError(f"{name}: not converged to tol {tol:g} {where}: {text}")


def _printed(value) -> str:
    return f"{np.round(value, 5).tolist()}" if isinstance(value, tuple) else f"{value:.4g}"


def _coarser(grid: Grid) -> Grid:
    lo, hi, n = grid
    return (lo, hi, (int(n) - 1) // 2 + 1)


def _gaps(a, b) -> np.ndarray:
    """|a - b| per entry of a number (a number may be a tuple: a mean per axis, a mass per region)."""
    return np.atleast_1d(np.abs(np.subtract(np.asarray(a, dtype=float), np.asarray(b, dtype=float))))


def sequence_errors(history: dict, grid: Grid, effort: int, lost: float, *, top: int, sub: bool = False,
                    unbounded: tuple[str, ...] = ()) -> dict[str, float] | None:
    """The convergence estimate of each number computed on ``grid`` at ``effort`` from its values on the nested
    grids computed before (``history``: ``(grid, effort) -> {name: value}``), or ``None`` before there are three:

    - the grid-spacing part: the number's change from twice the spacing, ``d2 = |N_h - N_2h|``, when it shrank at
      least by half from the change before, ``d2 <= d1 / 2`` with ``d1 = |N_2h - N_4h|`` (each entry of a tuple;
      the largest taken) (observed order >= 1, so ``d2`` bounds the remaining ``d2 r / (1 - r)``, ``r = d2 / d1``);
      a number that did not shrink so has reached the level of its noise (node masses hopping between neighbours
      move a region's mass by what crosses its ends, at every spacing): ``2 max(d1, d2)``, the band its values keep;
      except the ``unbounded`` numbers (a grid entropy: of a part of the law narrower than the spacing, it falls by
      about its mass times ``log 2`` per halving, without end): their estimate is not justified, ``inf``;
    - with ``sub``, the sub-points' part (the error the spacing does not set, :func:`density_engine`): the change
      from the effort below on the same grid (a quarter of the sub-points in 1-D, half in 2-D; ``inf`` until it is
      computed; 0 for engines without an effort knob, ``top = 0``); the two parts are taken to add;
    - ``lost``, whole (a share of the mass on the grid moves by at most that much).

    The three grids are taken at ``effort``, or at the highest effort below it that has them."""
    for e in range(effort, -1, -1):
        keys = [(grid, e), (_coarser(grid), e), (_coarser(_coarser(grid)), e)]
        if all(k in history for k in keys):
            break
    else:
        return None
    n1, n2, n4 = (history[k] for k in keys)
    out = {}
    for k in n1:
        d1, d2 = _gaps(n2[k], n4[k]), _gaps(n1[k], n2[k])  # per entry
        plateau = math.inf if k in unbounded else 2 * np.maximum(d1, d2)
        spaced = float(np.max(np.where(d2 <= 0.5 * d1 + 1e-12, d2, plateau)))  # 1e-12: rounding
        if sub and top > 0:
            below = history.get((grid, effort - 1)) if effort > 0 else None
            spaced += float(np.max(_gaps(history[(grid, effort)][k], below[k]))) if below is not None else math.inf
        out[k] = spaced + lost
    return out


def check_grid_law(law, who: str, *, d: int | None = None, balance: bool = True) -> GridLaw:
    """``law`` if it is a :class:`GridLaw` fit to compute with, else ``ValueError`` naming ``who``: a grid
    (:func:`check_grid`); masses and errors tensors of ``n`` nodes per axis (``d`` axes when given); finite masses;
    errors >= 0 (NaN refused; inf is an engine's "no bound", judged as such); ``lost`` a finite number >= 0 (-1e-12:
    a mass balance's rounding); with ``balance``, masses and ``lost`` adding to 1 within the masses' summed error
    and 1e-6 (``lost`` is ``1 - mass.sum()`` for every law of :mod:`evaluation.density` and
    :mod:`evaluation.distances`)."""
    if not isinstance(law, GridLaw):
        raise ValueError(f"{who} must be a GridLaw (hat masses on a grid with their errors and lost mass), got "
                         f"{type(law).__name__}")
    grid = check_grid(law.grid, who)
    mass, error = law.mass, law.error
    if not (isinstance(mass, torch.Tensor) and isinstance(error, torch.Tensor)):
        raise ValueError(f"{who}: mass and error must be tensors, got {type(mass).__name__} and {type(error).__name__}")
    ndim = mass.ndim if d is None else d
    shape = (int(grid[2]),) * ndim
    if ndim < 1 or tuple(mass.shape) != shape or tuple(error.shape) != shape:
        raise ValueError(f"{who}: masses {tuple(mass.shape)} and errors {tuple(error.shape)} do not match the grid's "
                         f"{shape}")
    if not bool(torch.isfinite(mass).all()):
        raise ValueError(f"{who}: non-finite masses")
    if not bool((error >= 0).all()):  # NaN fails too
        raise ValueError(f"{who}: errors that are NaN or negative (min {error.min().item()!r})")
    lost = check_number(law.lost, f"{who}: lost mass")
    if lost < -1e-12:
        raise ValueError(f"{who}: lost mass must be >= 0, got {lost!r}")
    if balance:
        total, err = mass.sum().item() + lost, error.sum().item()
        if not abs(total - 1.0) <= 1e-6 + err:
            raise ValueError(f"{who}: masses and lost mass add to {total:.6g}, not 1 (within the masses' summed error "
                             f"{err:.3g}): not a probability law")
    return law


def _check_law(law: GridLaw, grid: Grid, d: int, who: str) -> None:
    """An engine's law must be on the grid it was asked for, with finite masses and errors >= 0 (inf: no bound);
    its mass balance is the engine's (a law missing mass shows in its error)."""
    if not isinstance(law, GridLaw) or tuple(law.grid) != tuple(grid):
        raise ValueError(f"{who} returned a law on grid {getattr(law, 'grid', law)!r}, not the grid {grid!r} it was given")
    check_grid_law(law, f"{who}'s law", d=d, balance=False)


def as_arrays(law: GridLaw) -> tuple[np.ndarray, np.ndarray]:
    """(mass, error) as numpy arrays, for a cell's stored result."""
    return law.mass.numpy().copy(), law.error.numpy().copy()


def from_arrays(grid: Grid, mass, error, lost: float) -> GridLaw:
    """A stored law back as a :class:`GridLaw`."""
    return GridLaw(tuple(grid), torch.as_tensor(np.asarray(mass), dtype=F64), torch.as_tensor(np.asarray(error), dtype=F64),
                   float(lost), 0)
