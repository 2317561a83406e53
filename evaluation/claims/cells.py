"""The ledger's generic sweep cells (evaluation.sweep): the exact output law of one guided sampler against its
tilted target, and the field error of one guidance against the ideal-chain golden.

Both are pure functions of their frozen configuration; everything they name is a string or a number
(:mod:`evaluation.spec`), so a cell is its own cache key.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from analytic import check_integrable
from analytic.quadrature import grid_points

from ..density import output_density, tilted_start, vp_start
from ..distances import distances, tilted_target
from ..field_errors import field_errors, guidance_term
from ..sweep import cell_kind
from ..spec import STARTS, Law, Method, Schedule

__all__ = ["OutputCell", "OutputLaw", "FieldCell", "FieldResult", "STARTS", "axes_of"]

F64 = torch.float64


def axes_of(grid: tuple[float, float, int], d: int) -> tuple[torch.Tensor, ...]:
    lo, hi, n = grid
    return tuple(torch.linspace(lo, hi, int(n), dtype=F64) for _ in range(d))


@dataclass(frozen=True)
class OutputCell:
    """The exact output law of ``method`` on ``law`` under ``schedule`` with ``sampler`` from ``start``
    (``n01``: N(0, I); ``tilted``: p_T(x|y) E_T, the exact start of the tilted chain; ``tilted_n01``:
    N(0, I) E_T), on the grid ``(lo, hi, n)`` per axis of the VP state, against the tilted target of the
    method's reward. ``model``: ``exact`` mixtures or the ``trained`` toy networks."""

    law: str
    schedule: str
    method: Method = field(default_factory=Method)
    start: str = "n01"
    sampler: str = "ddpm"
    grid: tuple[float, float, int] = (-5.0, 5.0, 801)
    model: str = "exact"
    keep_mass: bool = False

    def __post_init__(self):
        Law.parse(self.law), Schedule.parse(self.schedule)  # refuse a bad name here, not in a worker
        if self.start not in STARTS:
            raise ValueError(f"unknown start {self.start!r}; choose one of {STARTS}")
        if self.sampler not in ("ddpm", "ddim"):
            raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {self.sampler!r}")

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
    lost: float  # mass that left the grid
    narrow_steps: int
    mean: tuple  # output mean per dimension
    target_mean: tuple
    entropy: float  # differential entropy of the output (from hat masses)
    target_entropy: float
    confidence: float  # E_output[p(y | x)], the exact Bayes classifier of the law's classes
    target_confidence: float
    mass: np.ndarray  # [n(, n)] output hat masses when keep_mass, else empty
    target_mass: np.ndarray


def _stats(mass: torch.Tensor, axes, classifier) -> tuple[tuple, float, float]:
    m = (mass.clamp(min=0) / mass.clamp(min=0).sum()).reshape(-1)
    X = grid_points(axes)
    cell = math.prod((a[1] - a[0]).item() for a in axes)
    pos = m > 0
    entropy = -(m[pos] * torch.log(m[pos] / cell)).sum().item()
    return tuple((m @ X).tolist()), entropy, (m @ classifier(X)).item()


def _nan_law(reason: str, d: int) -> OutputLaw:
    nan = math.nan
    return OutputLaw(False, reason, nan, nan, nan, nan, nan, 0, (nan,) * d, (nan,) * d, nan, nan, nan, nan,
                     np.zeros(0), np.zeros(0))


@cell_kind(OutputCell, modules=("evaluation.spec", "evaluation.density", "evaluation.distances", "toy"))
def output_law(cell: OutputCell) -> OutputLaw:
    law = Law.parse(cell.law).build()
    d = law.cond.dim
    sched = Schedule.parse(cell.schedule).vp
    reward = cell.method.reward(law)
    try:
        check_integrable(law.cond, reward, 1e-12)  # the target exists iff E_t is finite at every level
    except ValueError as err:
        return _nan_law(f"tilted target does not exist: {str(err)[:120]}", d)
    guided = cell.method.build(law, Schedule.parse(cell.schedule), cell.model).guided
    axes = axes_of(cell.grid, d)
    a_T = sched.abar[-1].item()
    try:  # the exact routines refuse a target or start they cannot resolve (e.g. centred far off the grid)
        target = tilted_target(law.cond, reward, axes)
        m = target.mass / target.mass.sum()
        edge = sum((m.narrow(i, 0, 1).sum() + m.narrow(i, m.shape[i] - 1, 1).sum()).item() for i in range(d))
        if edge > 1e-8:
            raise ValueError(f"the tilted target reaches the grid's edge (mass {edge:.2g} on the boundary nodes)")
        start = {"n01": vp_start(d), "tilted": tilted_start(law.cond, reward, a_T, marginal=True),
                 "tilted_n01": tilted_start(law.cond, reward, a_T)}[cell.start]
        start(axes_of((cell.grid[0], cell.grid[1], 3), d)[0][:, None].expand(-1, d))  # fails here if it fails
    except ValueError as err:
        return _nan_law(f"target or start not resolvable: {str(err)[:120]}", d)
    od = output_density(guided, sched.sampling_sigmas(), axes, sampler=cell.sampler, start=start, estimate_error=False)
    dist = distances(od.mass, target.mass, axes)
    classes = list(law.classes)
    priors = torch.tensor(law.priors, dtype=F64)

    def classifier(x):  # p(y | x) of the exact Bayes classifier
        logs = torch.stack([torch.log(p) + c.log_prob(x) for p, c in zip(priors, classes)])
        return torch.softmax(logs, 0)[law.y]

    mean, ent, conf = _stats(od.mass, axes, classifier)
    t_mean, t_ent, t_conf = _stats(target.mass, axes, classifier)
    keep = lambda m: m.numpy().copy() if cell.keep_mass else np.zeros(0)  # noqa: E731
    return OutputLaw(True, "", dist.tv, dist.kl_out_target, dist.kl_target_out, dist.w1, od.lost, od.narrow_steps,
                     mean, t_mean, ent, t_ent, conf, t_conf, keep(od.mass), keep(target.mass))


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


@cell_kind(FieldCell, modules=("evaluation.spec", "evaluation.field_errors", "toy"))
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
                       fe.ideal_weighted[0].mean().item())
