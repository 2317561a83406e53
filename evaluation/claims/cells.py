"""The ledger's generic sweep cells (evaluation.sweep): the exact output law of one guided sampler against its
tilted target, and the field error of one guidance against the ideal-chain golden.

Both are pure functions of their frozen configuration; everything they name is a string or a number
(:mod:`evaluation.spec`), so a cell is its own cache key. The output law runs under the accuracy contract
of :mod:`evaluation.accuracy`: every number it returns carries its error, the grid it names is where the
computation starts (the result's ``grid`` is where it ended), and a number it is asked to check that cannot be
brought within ``tol`` raises ``ValueError`` naming the cell instead of being published.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from analytic import check_integrable
from analytic.quadrature import grid_points

from ..accuracy import (Estimate, default_tol, GridLaw, axes_of, clear_targets, coarsen, converged_laws, density_engine,
                        from_arrays, grid_entropy, grid_entropy_error, grid_tv, narrowest_kernel, region_mass, region_var,
                        shared_target)
from ..distances import distances
from ..field_errors import field_errors, guidance_term
from ..spec import STARTS, Law, Method, Schedule
from ..starts import tilted_start, vp_start
from ..sweep import cell_kind

__all__ = ["OutputCell", "OutputLaw", "FieldCell", "FieldResult", "STARTS", "CHECKED", "OF_THE_LAW", "axes_of",
           "shared_target", "clear_targets"]

F64 = torch.float64
CHECKED = ("tv", "kl_out_target", "kl_target_out", "w1", "mean", "entropy", "confidence", "regions", "region_var")
OF_THE_LAW = ("tv", "kl_out_target", "kl_target_out", "w1")  # distances of the whole law: judged with the law itself


@dataclass(frozen=True)
class OutputCell:
    """The exact output law of ``method`` on ``law`` under ``schedule`` with ``sampler`` from ``start``
    (``n01``: N(0, I); ``tilted``: p_T(x|y) E_T, the exact start of the tilted chain; ``tilted_n01``:
    N(0, I) E_T), starting from the grid ``(lo, hi, n)`` per axis of the VP state, against the tilted target of
    the method's reward. ``model``: ``exact`` mixtures or the ``trained`` toy networks.

    Accuracy contract (:func:`evaluation.accuracy.converged_laws`): the numbers named in ``checked`` are computed
    to ``tol`` (the grid widens for lost mass and refines for narrow kernels and for the numbers' errors), or the
    cell raises ``ValueError``. The law itself (its summed mass error within ``2 tol``) is judged too when the cell
    publishes it or a distance of it: ``checked`` empty (the masses are what the cell publishes) or naming one
    of ``OF_THE_LAW``; a cell that checks only numbers of the law (a mean, the confidence, region masses) is
    judged on those numbers alone (``whole_law=False``), so an output concentrated below the spacing, whose
    per-node masses do not converge, still publishes the numbers that do. ``regions``: 1-D intervals
    ``(lo, hi)`` whose output mass (``regions``: :func:`evaluation.accuracy.region_mass`) and variance within
    (``region_var``: :func:`evaluation.accuracy.region_var`) the cell publishes."""

    law: str
    schedule: str
    method: Method = field(default_factory=Method)
    start: str = "n01"
    sampler: str = "ddpm"
    grid: tuple[float, float, int] = (-5.0, 5.0, 801)
    model: str = "exact"
    keep_mass: bool = False
    tol: float | None = None  # None: evaluation.accuracy.default_tol of the law's dimension (5e-4 1-D, 5e-3 2-D)
    checked: tuple[str, ...] = ("tv",)
    regions: tuple[tuple[float, float], ...] = ()

    def __post_init__(self):
        Law.parse(self.law), Schedule.parse(self.schedule)  # refuse a bad name here, not in a worker
        if self.start not in STARTS:
            raise ValueError(f"unknown start {self.start!r}; choose one of {STARTS}")
        if self.sampler not in ("ddpm", "ddim"):
            raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {self.sampler!r}")
        if self.tol is not None and (isinstance(self.tol, bool) or not isinstance(self.tol, (int, float))
                                     or not (math.isfinite(self.tol) and self.tol > 0)):
            raise ValueError(f"tol must be a positive number or None, got {self.tol!r}")
        bad = [c for c in self.checked if c not in CHECKED]
        if bad or isinstance(self.checked, str):
            raise ValueError(f"checked must be a tuple of names from {CHECKED}, got {self.checked!r}")
        if any(len(r) != 2 or not r[0] < r[1] for r in self.regions):
            raise ValueError(f"regions must be (lo, hi) pairs with lo < hi, got {self.regions!r}")

    @property
    def cost(self) -> float:  # relative, for ordering work: steps x grid nodes
        d = Law.parse(self.law).dim
        return Schedule.parse(self.schedule).steps * self.grid[2] ** d * (3.0 if self.method.rule == "optimal" else 1.0)


class OutputLaw(NamedTuple):
    valid: bool  # False when the tilted target does not exist (E_t infinite); then the numbers are nan
    reason: str
    tv: float
    kl_out_target: float
    kl_target_out: float
    w1: float  # 1-D only (nan in 2-D)
    lost: float  # output mass missing from the (final) grid: the start's outside it plus what left it
    narrow_steps: int
    mean: tuple  # output mean per dimension
    target_mean: tuple
    entropy: float  # differential entropy of the output (from hat masses)
    target_entropy: float
    confidence: float  # E_output[p(y | x)], the exact Bayes classifier of the law's classes
    target_confidence: float
    mass: np.ndarray  # [n(, n)] output hat masses on ``grid`` when keep_mass, else empty
    target_mass: np.ndarray
    # the accuracy contract: the estimated error of each number above (evaluation.accuracy.Estimate's error)
    tv_error: float = math.nan
    kl_out_target_error: float = math.nan
    kl_target_out_error: float = math.nan
    w1_error: float = math.nan
    mean_error: float = math.nan  # largest over dimensions
    entropy_error: float = math.nan
    confidence_error: float = math.nan
    grid: tuple = ()  # the final grid (lo, hi, n) per axis the masses live on (widened / refined from the cell's)
    mass_error: np.ndarray = np.zeros(0)  # [n(, n)] per-node error of ``mass`` when keep_mass
    region_mass: tuple = ()  # output mass in each of the cell's ``regions`` (share of the mass on the grid)
    region_error: tuple = ()
    target_error: np.ndarray = np.zeros(0)  # [n(, n)] per-node error of ``target_mass`` when keep_mass
    region_var: tuple = ()  # the output's variance within each of the cell's ``regions``
    region_var_error: float = math.nan  # largest over the regions

    def law_of(self) -> GridLaw:
        """The stored output law (keep_mass cells) as a :class:`evaluation.accuracy.GridLaw`."""
        return from_arrays(self.grid, self.mass, self.mass_error, self.lost)

    def target_law(self) -> GridLaw:
        return from_arrays(self.grid, self.target_mass, self.target_error, 0.0)


def _stats(mass: torch.Tensor, axes, classifier) -> tuple[tuple, float, float]:
    """Mean, differential entropy (:func:`evaluation.accuracy.grid_entropy`, the hats' smoothing taken off) and mean
    confidence of a law given by hat masses."""
    p = mass.clamp(min=0) / mass.clamp(min=0).sum()
    m = p.reshape(-1)
    X = grid_points(axes)
    return tuple((m @ X).tolist()), grid_entropy(mass, axes), (m @ classifier(X)).item()


def _nan_law(reason: str, d: int) -> OutputLaw:
    nan = math.nan
    return OutputLaw(False, reason, nan, nan, nan, nan, nan, 0, (nan,) * d, (nan,) * d, nan, nan, nan, nan,
                     np.zeros(0), np.zeros(0))


def _numbers(out: GridLaw, target: GridLaw, classifier, regions) -> dict[str, Estimate]:
    """Every number an output cell publishes, each with its error: the masses' errors (through the number's
    sensitivity to them) plus its change when both laws are restricted to twice the spacing."""
    axes = out.axes
    d = len(axes)
    coarse = tuple(a[0::2] for a in axes)
    mc, tc = coarsen(out.mass), coarsen(target.mass)
    l1 = out.error.sum().item() + out.lost  # the output's summed mass error: a number of the output alone moves by
    # at most this much per unit of its range
    fine = distances(out.mass, target.mass, axes, output_error=out.error, target_error=target.error,
                     output_lost=max(out.lost, 0.0), target_lost=max(target.lost, 0.0))  # 1 - sum: may round below 0
    crs = distances(mc, tc, coarse)
    (mean, ent, conf), (mean2, ent2, conf2) = _stats(out.mass, axes, classifier), _stats(mc, coarse, classifier)
    X = grid_points(axes)
    err = out.error.reshape(-1)
    span = [(err * (X[:, i] - m).abs()).sum().item() for i, m in enumerate(mean)]  # first-order sensitivity of a mean
    nums = {"tv": grid_tv(out, target),
            "kl_out_target": Estimate(fine.kl_out_target, abs(fine.kl_out_target - crs.kl_out_target)
                                      + fine.kl_out_target_error),
            "kl_target_out": Estimate(fine.kl_target_out, abs(fine.kl_target_out - crs.kl_target_out)
                                      + fine.kl_target_out_error),
            "w1": Estimate(fine.w1, abs(fine.w1 - crs.w1) + 0.5 * (l1 + target.error.sum().item() + target.lost)
                           * (axes[0][-1] - axes[0][0]).item()),
            "mean": Estimate(mean, max(abs(a - b) + s for a, b, s in zip(mean, mean2, span))),
            "entropy": Estimate(ent, abs(ent - ent2) + grid_entropy_error(out, ent)),
            "confidence": Estimate(conf, abs(conf - conf2) + l1)}
    if regions:
        if d != 1:
            raise ValueError(f"regions are 1-D intervals, the law has dimension {d}")
        rs = [region_mass(out, lo, hi) for lo, hi in regions]
        nums["regions"] = Estimate(tuple(r.value for r in rs), max(r.error for r in rs))
        var = [region_var(out, lo, hi) for lo, hi in regions]
        nums["region_var"] = Estimate(tuple(v.value for v in var), max(v.error for v in var))
    return nums


@cell_kind(OutputCell)
def output_law(cell: OutputCell) -> OutputLaw:
    law = Law.parse(cell.law).build()
    d = law.cond.dim
    tol = default_tol(d) if cell.tol is None else cell.tol
    sched = Schedule.parse(cell.schedule).vp
    reward = cell.method.reward(law)
    try:
        check_integrable(law.cond, reward, 1e-12)  # the target exists iff E_t is finite at every level
    except ValueError as err:
        return _nan_law(f"tilted target does not exist: {str(err)[:120]}", d)
    guided = cell.method.build(law, Schedule.parse(cell.schedule), cell.model).guided
    a_T = sched.abar[-1].item()
    targets = {}

    def target_on(g) -> GridLaw:
        if g not in targets:
            targets[g] = shared_target(law.cond, reward, g, tol)
        return targets[g]

    try:  # the exact routines refuse a target or start they cannot resolve (e.g. centred far off the grid)
        m = target_on(cell.grid).mass
        m = m / m.sum()
        edge = sum((m.narrow(i, 0, 1).sum() + m.narrow(i, m.shape[i] - 1, 1).sum()).item() for i in range(d))
        if edge > 1e-8:
            raise ValueError(f"the tilted target reaches the grid's edge (mass {edge:.2g} on the boundary nodes)")
        start = {"n01": vp_start(d), "tilted": tilted_start(law.cond, reward, a_T, marginal=True),
                 "tilted_n01": tilted_start(law.cond, reward, a_T)}[cell.start]
        start(axes_of((cell.grid[0], cell.grid[1], 3), d)[0][:, None].expand(-1, d))  # fails here if it fails
    except ValueError as err:
        return _nan_law(f"target or start not resolvable: {str(err)[:120]}", d)
    classes = list(law.classes)
    priors = torch.tensor(law.priors, dtype=F64)

    def classifier(x):  # p(y | x) of the exact Bayes classifier
        logs = torch.stack([torch.log(p) + c.log_prob(x) for p, c in zip(priors, classes)])
        return torch.softmax(logs, 0)[law.y]

    def published(laws):
        nums = _numbers(laws[0], target_on(laws[0].grid), classifier, cell.regions)
        return {k: nums[k] for k in cell.checked}

    whole_law = not cell.checked or any(c in OF_THE_LAW for c in cell.checked)

    sigmas = sched.sampling_sigmas()
    (out,), checked = converged_laws([density_engine(guided, sigmas, sampler=cell.sampler, start=start)], cell.grid, d,
                               name=repr(cell), tol=tol, numbers=published,
                               narrowest=narrowest_kernel(sigmas, cell.sampler), whole_law=whole_law,
                                     unbounded=("entropy",))
    tgt = target_on(out.grid)
    n = {**_numbers(out, tgt, classifier, cell.regions), **checked}  # the checked ones with the contract's errors
    t_mean, t_ent, t_conf = _stats(tgt.mass, out.axes, classifier)
    keep = lambda m: m.numpy().copy() if cell.keep_mass else np.zeros(0)  # noqa: E731
    reg = n.get("regions", Estimate((), 0.0))
    var = n.get("region_var", Estimate((), math.nan))
    return OutputLaw(True, "", n["tv"].value, n["kl_out_target"].value, n["kl_target_out"].value, n["w1"].value,
                     out.lost, out.narrow_steps, n["mean"].value, t_mean, n["entropy"].value, t_ent,
                     n["confidence"].value, t_conf, keep(out.mass), keep(tgt.mass),
                     n["tv"].error, n["kl_out_target"].error, n["kl_target_out"].error, n["w1"].error,
                     n["mean"].error, n["entropy"].error, n["confidence"].error, tuple(out.grid), keep(out.error),
                     tuple(reg.value), (reg.error,) * len(cell.regions), keep(tgt.error),
                     tuple(var.value), var.error)


@dataclass(frozen=True)
class FieldCell:
    """Mean |golden - method| (eps units, ideal-chain golden) over a grid of ``x_t`` at up to ``levels``
    levels of ``schedule`` (evenly spaced in the step index, always the first and the last), plain and
    weighted by ``p_t(x | y)``. The ideal-chain golden at a level depends on that level alone, so fewer
    levels subsample the same per-step curve."""

    law: str
    schedule: str
    method: Method = field(default_factory=Method)
    grid: tuple[float, float, int] = (-1.0, 2.0, 201)
    levels: int = 20


class FieldResult(NamedTuple):
    valid: bool
    reason: str
    abar: np.ndarray  # [L] levels, noisiest last
    error: np.ndarray  # [L] unweighted mean |golden - method|
    error_weighted: np.ndarray  # [L] p_t-weighted
    golden_size: np.ndarray  # [L] p_t-weighted mean |golden|
    term_size: np.ndarray  # [L] p_t-weighted mean |method's guidance term|
    mean_error: float
    mean_error_weighted: float
    # their errors: the mean over the levels of the golden's (weighted) mean error estimate on the grid
    # (evaluation.field_errors.FieldErrors.golden_error*); a mean of |golden - method| moves by at most that much
    mean_error_error: float = math.nan
    mean_error_weighted_error: float = math.nan


@cell_kind(FieldCell)
def field_error(cell: FieldCell) -> FieldResult:
    law = Law.parse(cell.law).build()
    sched = Schedule.parse(cell.schedule).vp
    sub = sched.respace(min(cell.levels, sched.T))  # the same abar at the kept steps
    reward = cell.method.reward(law)
    try:
        check_integrable(law.cond, reward, 1e-12)
    except ValueError as err:
        e = np.zeros(0)
        return FieldResult(False, f"E_t diverges: {str(err)[:120]}", e, e, e, e, e, math.nan, math.nan)
    # the guided denoiser is built for the full schedule (its weights are defined on its levels)
    guided = cell.method.build(law, Schedule.parse(cell.schedule)).guided
    axes = axes_of(cell.grid, law.cond.dim)
    fe = field_errors(law.cond, sub, axes, {"m": guided}, reward, sampler_chain=False)
    X = grid_points(axes)
    size = []
    for t in range(1, sub.T + 1):  # p_t-weighted mean |term| of the method itself
        a = sub.abar[t].item()
        weight = torch.softmax(law.cond.noised(a).log_prob(X), 0)
        size.append((weight * guidance_term(guided, law.cond.denoise, X, a).norm(dim=1)).sum().item())
    return FieldResult(True, "", fe.abar.numpy(), fe.ideal[0].numpy(), fe.ideal_weighted[0].numpy(),
                       fe.golden_size.numpy(), np.array(size), fe.ideal[0].mean().item(),
                       fe.ideal_weighted[0].mean().item(), fe.golden_error.mean().item(),
                       fe.golden_error_weighted.mean().item())
