"""The accuracy contract of a cell that propagates a law on a grid (issue 19): one function,
:func:`converged_laws`, under every output-law cell of the claims ledger.

A cell names a starting grid ``(lo, hi, n)`` per axis and a tolerance ``tol``. Then

- kernels narrower than the grid refine it before anything runs: the spacing is halved until the narrowest
  stochastic kernel of the sampler (:func:`narrowest_kernel`, VP units) is at least ``MIN_KERNEL_WIDTH``
  spacings (within the node budget; beyond it the density's own estimate decides);
- each law is computed to ``tol`` by its engine: :func:`density_engine` is
  :func:`evaluation.density.output_density` with its own error estimate (it refines its working grid until the
  summed per-node error is below ``tol``; when the budget is reached first it takes 4 times the sub-points per
  cell and axis of the deterministic push-forward (every DDIM step, DDPM's last) and reruns, up to ``MAX_SUB``:
  the sub-points refine with the grid, so their share of the error does not shrink with the spacing); :func:`refined_engine` serves propagators without an estimate, by
  running them again at half the spacing;
- mass missing from the grid beyond ``tol`` (the density's ``lost``: the start's mass outside the grid plus what
  left it) widens it (twice the width, the same spacing, so grids stay nested) and the
  cell reruns, at most ``MAX_WIDEN`` times, then ``ValueError`` naming the cell;
- the cell's published numbers come back from its ``numbers`` callback as :class:`Estimate` (value, error); the
  error holds the masses' error and the grid-spacing error of the number itself, estimated by evaluating it again
  on the same masses restricted exactly to twice the spacing (:func:`coarsen`; hat masses of nested grids
  restrict exactly). A number whose error exceeds ``tol`` halves the spacing and reruns; past the node budget
  the cell raises ``ValueError`` naming it and the number: it never publishes an unconverged number.

Grids only ever double in width or halve in spacing from the cell's own, so the laws of two cells built from
the same starting grid always have a common grid (:func:`common_grid`) and can be compared (:func:`tv_between`).
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch

from sampler.samplers import check_sigmas, ddim_coefficients

from .density import output_density
from .distances import total_variation

__all__ = ["DEFAULT_TOL", "MIN_KERNEL_WIDTH", "MAX_WIDEN", "Estimate", "GridLaw", "axes_of", "refine", "widen",
           "spacing", "narrowest_kernel", "coarsen", "grid_tv", "region_fraction", "region_mass", "to_grid", "common_grid",
           "tv_between", "density_engine", "refined_engine", "converged_laws", "as_arrays", "from_arrays"]

F64 = torch.float64
DEFAULT_TOL = 1e-4  # TV-like numbers printed with 3 digits are converged to them
MIN_KERNEL_WIDTH = 0.5  # stochastic kernels narrower than this many spacings refine the grid (density's threshold)
MAX_WIDEN = 3  # the grid may grow to 8 times the cell's width
MAX_NODES = {1: 2**14 + 1, 2: 201**2}  # node budget (given grid and the density's working grids), per dimension
DEFAULT_SUB, MAX_SUB = {1: 8, 2: 3}, {1: 128, 2: 12}  # sub-points per cell and axis of a deterministic push-forward

Grid = tuple  # (lo, hi, n): every axis the same


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
    """TV of two laws on one grid: the masses' errors (half their sums), the lost masses, and the change of the TV
    when both are restricted to twice the spacing (the hat smoothing of the TV itself; it vanishes as the
    spacing does, and grows without bound relative to the value for an output that is effectively singular)."""
    if p.grid != q.grid or p.mass.shape != q.mass.shape:
        raise ValueError(f"grid_tv needs two laws on one grid, got {p.grid} and {q.grid}")
    tv = total_variation(p.mass, q.mass)
    tv2 = total_variation(coarsen(p.mass), coarsen(q.mass))
    return Estimate(tv, 0.5 * (p.error.sum().item() + q.error.sum().item()) + abs(tv - tv2) + p.lost + q.lost)


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
    (axis,) = law.axes
    m = law.mass.clamp(min=0)
    v = (m * region_fraction(axis, lo, hi)).sum().item() / m.sum().item()
    mc = coarsen(m)
    v2 = (mc * region_fraction(axis[0::2], lo, hi)).sum().item() / mc.sum().item()
    return Estimate(v, abs(v - v2) + law.error.sum().item() + law.lost)


def to_grid(law: GridLaw, grid: Grid) -> GridLaw:
    """``law`` on ``grid`` (nested with the law's own: the same or a multiple-of-two coarser spacing, aligned nodes):
    restricted exactly to the spacing, cropped to the extent (the mass cropped away joins ``lost``) or padded with
    zeros. ``ValueError`` for grids that are not nested."""
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
    ``ValueError`` unless the grids are nested (one cell's grid refined or widened from the other's)."""
    if a.mass.ndim != b.mass.ndim:
        raise ValueError(f"laws of dimensions {a.mass.ndim} and {b.mass.ndim}")
    h = max(spacing(a.grid), spacing(b.grid))
    lo, hi = min(a.grid[0], b.grid[0]), max(a.grid[1], b.grid[1])
    grid = (lo, hi, int(round((hi - lo) / h)) + 1)
    return to_grid(a, grid), to_grid(b, grid)


def tv_between(a: GridLaw, b: GridLaw) -> Estimate:
    """TV of two laws on nested grids (:func:`common_grid`) with its error (:func:`grid_tv`)."""
    return grid_tv(*common_grid(a, b))


# --- engines: a grid -> one law to tol -------------------------------------------------------------
Engine = Callable[[tuple, int, float, int], GridLaw]  # (grid, d, tol, max_nodes) -> law on that grid


def density_engine(denoiser, sigmas, *, sampler: str = "ddpm", start=None) -> Engine:
    """The exact output law of ``sample(sampler, denoiser, ...)`` by :func:`evaluation.density.output_density`,
    to ``tol`` by its own error estimate (it refines its working grid up to ``max_nodes``; past it the law comes
    back with the error reached, and :func:`converged_laws` decides: widen first if mass was lost, else raise).
    The law's ``error`` plus ``lost`` is the density's ``total_error``; a run with unresolved stochastic steps
    (no bound on its error) raises ``ValueError``."""

    def run(grid: Grid, d: int, tol: float, max_nodes: int) -> GridLaw:
        axes, sub = axes_of(grid, d), DEFAULT_SUB[d]
        while True:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # the budget: judged by converged_laws
                od = output_density(denoiser, sigmas, axes, sampler=sampler, start=start, sub=sub, tol=tol,
                                    max_nodes=max(max_nodes, int(grid[2]) ** d), on_budget="warn")
            e = od.error.sum().item()
            if e <= tol or 4 * sub > MAX_SUB[d]:
                break
            sub *= 4  # past the budget: more sub-points for the deterministic push-forward (module docstring)
        if od.unresolved_steps:
            raise ValueError(f"{od.unresolved_steps} stochastic step(s) unresolved on the working grid (error not bounded)")
        return GridLaw(grid, od.mass, od.error, od.lost, od.narrow_steps)

    return run


def refined_engine(propagate: Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, float]]) -> Engine:
    """For a propagator without an error estimate (``axes -> (hat masses, lost)``): it runs at half the spacing
    too; the law is the fine run restricted to the grid, its error the change from the run on the grid itself
    (an upper estimate for a method of order >= 1)."""

    def run(grid: Grid, d: int, tol: float, max_nodes: int) -> GridLaw:
        fine = refine(grid)
        if int(fine[2]) ** d > max_nodes:
            raise ValueError(f"the error estimate needs {int(fine[2]) ** d} nodes, more than max_nodes={max_nodes}")
        m, lost = propagate(axes_of(grid, d))
        mf, lost_f = propagate(axes_of(fine, d))
        mf = coarsen(mf)
        return GridLaw(grid, mf, (mf - m).abs() + 1e-15 * mf.max(), lost_f, 0)

    return run


# --- the contract -----------------------------------------------------------------------------------
def converged_laws(engines: Sequence[Engine], grid: Grid, d: int, *, name: str, tol: float = DEFAULT_TOL,
                   numbers: Callable[[tuple[GridLaw, ...]], dict[str, Estimate]] | None = None,
                   narrowest: float = math.inf, max_nodes: int | None = None) -> tuple[tuple[GridLaw, ...], dict]:
    """The laws of ``engines`` on one grid (every axis ``grid = (lo, hi, n)``, dimension ``d``) and the cell's
    published ``numbers(laws) -> {name: Estimate}``, each within ``tol`` (module docstring: refine for kernels
    narrower than ``MIN_KERNEL_WIDTH`` spacings (``narrowest``, :func:`narrowest_kernel`), widen for lost mass,
    refine for numbers). ``name`` names the cell in every ``ValueError``."""
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"{name}: tol must be a positive number, got {tol!r}")
    lo, hi, n = grid
    if not (hi > lo and int(n) == n and n >= 5 and n % 2 == 1):
        raise ValueError(f"{name}: grid must be (lo, hi, n) with lo < hi and an odd n >= 5, got {grid!r}")
    budget = int(max_nodes) if max_nodes is not None else MAX_NODES[d]
    g = tuple(grid)
    while spacing(g) > narrowest / MIN_KERNEL_WIDTH and int(refine(g)[2]) ** d <= budget:
        g = refine(g)
    widened = 0
    while True:
        if int(g[2]) ** d > budget:
            raise ValueError(f"{name}: the grid {g} has {int(g[2]) ** d} nodes, more than the budget {budget}")
        try:
            laws = tuple(e(g, d, tol, budget) for e in engines)
        except ValueError as err:
            raise ValueError(f"{name}: the law does not reach tol {tol:g} on grid {g}: {err}") from err
        lost = max(law.lost for law in laws)
        if lost > tol:
            if widened == MAX_WIDEN:
                raise ValueError(f"{name}: {lost:.3g} of the mass is missing from the grid {g} (tol {tol:g}) after widening "
                                 f"it {widened} times")
            g, widened = widen(g), widened + 1
            continue
        worst = max(law.error.sum().item() for law in laws)
        if not worst <= tol:
            raise ValueError(f"{name}: the law's masses reach an estimated error of {worst:.3g} (summed over the nodes), "
                             f"not tol {tol:g}, within {budget} nodes (grid {g})")
        nums = numbers(laws) if numbers is not None else {}
        bad = {k: v for k, v in nums.items() if not v.error <= tol}
        if not bad:
            return laws, nums
        if int(refine(g)[2]) ** d > budget:
            worst = ", ".join(f"{k} = {v.value:.4g} +- {v.error:.2g}" for k, v in bad.items())
            raise ValueError(f"{name}: not converged to tol {tol:g} within {budget} nodes (grid {g}): {worst}")
        g = refine(g)


def as_arrays(law: GridLaw) -> tuple[np.ndarray, np.ndarray]:
    """(mass, error) as numpy arrays, for a cell's stored result."""
    return law.mass.numpy().copy(), law.error.numpy().copy()


def from_arrays(grid: Grid, mass, error, lost: float) -> GridLaw:
    """A stored law back as a :class:`GridLaw`."""
    return GridLaw(tuple(grid), torch.as_tensor(np.asarray(mass), dtype=F64), torch.as_tensor(np.asarray(error), dtype=F64),
                   float(lost), 0)
