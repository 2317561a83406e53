"""The cells of the findings figures (``figures.curves_1d``, ``maps_1d``, ``trained_1d``, ``fields_2d``,
``closed_forms``): each a frozen configuration of :mod:`evaluation.sweep` (cached, resumable, shared), whose result
carries the error of every exact number beside it.

- :class:`CurvesCell`: per-step guidance on a 1-D grid of an exact mixture (:func:`evaluation.demo.compute`): the
  ideal-chain and sampler-chain goldens with the engines' error estimates, the CFG and REG terms (closed forms:
  machine precision) and ``p_t(x|y)``.
- :class:`TrainedCell`: the same for the shipped trained networks of a preset (:func:`toy.load_pretrained`): their
  CFG and REG terms (measurements of those networks: no error of their own), the exact grid golden of their chain
  with its error estimate, and the paper's seeded Monte Carlo golden (one run: a measurement of that run).
- :class:`FieldMapCell`: 2-D guidance fields at one noise level (:func:`analytic.guidance_fields_on_grid`): the golden
  with its error estimate, CFG and REG's estimators (closed forms) and ``p_t(x|y)``.
- :class:`ClosedFormCell`: the single-Gaussian closed forms of :mod:`analytic.symbolic` over (variance ratio, noise
  level) at one weight, with the points whose sign float64 cannot decide.

Laws are spelled as in :mod:`evaluation.spec` (``Law.parse``); the weight ``w`` is CFG's (the reward
``Method("cfg", w).reward``), which CFG and REG share.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from analytic import guidance_fields_on_grid, symbolic
from analytic.quadrature import grid_points
from sampler.schedules import check_count, check_number

from . import demo
from .spec import Law, Method, Schedule
from .sweep import cell_kind

__all__ = ["CurvesCell", "Curves", "TrainedCell", "TrainedCurves", "FieldMapCell", "FieldMap", "ClosedFormCell",
           "ClosedForms", "UNDECIDED"]

F64 = torch.float64
UNDECIDED = 1e-9  # a closed-form sign within this (relative) of zero is counted as not decided in float64


def _number(cell, name: str) -> float:
    """The field ``name`` of the frozen ``cell``, checked by the shared :func:`sampler.schedules.check_number` and
    stored as a float: ``w=1``, ``1.0`` and ``np.float32(1)`` are one cell with one cache key."""
    value = check_number(getattr(cell, name), name)
    object.__setattr__(cell, name, value)
    return value


def _count(cell, name: str, least: int) -> int:
    """The field ``name`` of the frozen ``cell``, checked by the shared :func:`sampler.schedules.check_count` (an
    integer ``>= least``) and stored as an int: ``points=60``, ``60.0`` and ``np.int64(60)`` are one cell."""
    value = check_count(getattr(cell, name), name, least=least)
    object.__setattr__(cell, name, value)
    return value


def _check_1d(law: str) -> None:
    if Law.parse(law).dim != 1:
        raise ValueError(f"law must be a 1-D law, got {law!r} (d = {Law.parse(law).dim})")


@dataclass(frozen=True)
class CurvesCell:
    """Per-step guidance of the exact 1-D ``law`` under the paper's schedule (T = 20) at CFG weight ``w`` on
    ``points`` evenly spaced points of [-1, 2] (:func:`evaluation.demo.compute`)."""

    law: str = "paper_1d"
    w: float = 1.0
    points: int = 1000

    def __post_init__(self):
        _check_1d(self.law)
        _number(self, "w")
        _count(self, "points", 2)

    @property
    def cost(self) -> float:
        return float(self.points)


class Curves(NamedTuple):
    """Rows ``t = 1..T``, each [T, n] (``x`` [n], ``abar`` [T])."""

    x: np.ndarray
    abar: np.ndarray
    golden: np.ndarray  # ideal-chain golden
    golden_error: np.ndarray  # its error estimate (analytic.golden_on_grid)
    chain: np.ndarray  # sampler-chain golden
    chain_error: np.ndarray  # its error estimate (analytic.chain_golden)
    cfg: np.ndarray  # closed form
    reg: np.ndarray  # closed form (every REG estimator in 1-D)
    weight: np.ndarray  # p_t(x | y) normalised on the points


@cell_kind(CurvesCell)
def curves(cell: CurvesCell) -> Curves:
    c = demo.compute(cell.law, cell.w, cell.points)
    return Curves(*(getattr(c, k).numpy() for k in Curves._fields))


@dataclass(frozen=True)
class TrainedCell:
    """The shipped trained networks of the 1-D preset ``law`` (conditional and unconditional, the paper's schedule)
    at CFG weight ``w`` on ``points`` evenly spaced points of [-1, 2]: their CFG and REG terms at every step, the exact
    grid golden of their own chain, and the paper's Monte Carlo golden (``rollouts`` stochastic rollouts, ``seed``)
    at every ``mc_every``-th point for the steps ``steps``."""

    law: str = "paper_1d"
    w: float = 1.0
    points: int = 1000
    mc_every: int = 10
    steps: tuple[int, ...] = (20, 12, 4)
    rollouts: int = 100
    seed: int = 0

    def __post_init__(self):
        _check_1d(self.law)
        _number(self, "w")
        _count(self, "points", 2)
        _count(self, "mc_every", 1)
        _count(self, "rollouts", 1)
        _count(self, "seed", 0)
        T = Schedule.parse("paper").vp.T
        try:
            steps = tuple(check_count(t, "steps") for t in self.steps)
        except (TypeError, ValueError):
            steps = ()
        if not steps or not all(1 <= t <= T for t in steps):
            raise ValueError(f"steps must be a non-empty tuple of steps in 1..{T}, got {self.steps!r}")
        object.__setattr__(self, "steps", steps)  # a list or numpy integers: the same cell as the tuple of ints

    @property
    def cost(self) -> float:
        return float(self.points + len(self.steps) * self.rollouts * (self.points // self.mc_every + 1))


class TrainedCurves(NamedTuple):
    x: np.ndarray  # [n]
    grid_golden: np.ndarray  # [T, n] exact golden of the networks' chain
    grid_error: np.ndarray  # [T, n] its error estimate (analytic.chain_golden)
    mc_x: np.ndarray  # [m] points of the Monte Carlo golden
    mc_golden: np.ndarray  # [len(steps), m] one seeded Monte Carlo run
    cfg: np.ndarray  # [T, n] the networks' CFG term
    reg: np.ndarray  # [T, n] the networks' REG term


@cell_kind(TrainedCell)
def trained_curves(cell: TrainedCell) -> TrainedCurves:
    from toy import grid_golden, load_pretrained, mc_golden, net_eps_fn, trained_fields

    parts = Law.parse(cell.law).build()
    sched = Schedule.parse("paper").vp
    reward = Method("cfg", w=cell.w).reward(parts)
    net_c, net_u = (load_pretrained(parts.name, role).net for role in ("cond", "uncond"))
    x = torch.linspace(-1, 2, cell.points, dtype=F64)
    grid = grid_golden(net_c, 0, reward.log_r0, sched, x)
    mc_x = x[:: cell.mc_every]
    mc = mc_golden(net_eps_fn(net_c, 0, sched), reward.log_r0, sched, mc_x[:, None], steps=cell.steps,
                   n_rollouts=cell.rollouts, seed=cell.seed)
    f = trained_fields(net_c, 0, net_u, None, cell.w, sched, x[:, None])
    return TrainedCurves(x.numpy(), grid.golden[..., 0].numpy(), grid.err_golden[..., 0].numpy(), mc_x.numpy(),
                         mc.golden[..., 0].numpy(), f.present[..., 0].numpy(), f.reg_paper[..., 0].numpy())


@dataclass(frozen=True)
class FieldMapCell:
    """The guidance fields (eps units) of the 2-D ``law`` at CFG weight ``w`` and level ``abar`` on the
    ``points`` x ``points`` grid of [-1, 2]^2."""

    law: str
    w: float = 1.0
    abar: float = 0.5
    points: int = 49

    def __post_init__(self):
        if Law.parse(self.law).dim != 2:
            raise ValueError(f"law must be a 2-D law, got {self.law!r} (d = {Law.parse(self.law).dim})")
        _number(self, "w")
        if not 0 < _number(self, "abar") < 1:
            raise ValueError(f"abar must lie in (0, 1), got {self.abar!r}")
        _count(self, "points", 2)

    @property
    def cost(self) -> float:
        return float(self.points) ** 2


class FieldMap(NamedTuple):
    """Each field [n, n, 2] in 'ij' order over ``axis`` [n]; ``density`` [n, n]."""

    axis: np.ndarray
    golden: np.ndarray
    golden_error: np.ndarray  # the golden's error estimate (analytic.golden_on_grid)
    present: np.ndarray  # CFG (closed form)
    reg_paper: np.ndarray  # closed forms
    reg_vjp: np.ndarray
    density: np.ndarray  # p_t(x | y) at the grid points (closed form)


@cell_kind(FieldMapCell)
def field_map(cell: FieldMapCell) -> FieldMap:
    parts = Law.parse(cell.law).build()
    n = cell.points
    axis = torch.linspace(-1, 2, n, dtype=F64)
    f = guidance_fields_on_grid(parts.cond, Method("cfg", w=cell.w).reward(parts), (axis, axis), cell.abar)
    arr = lambda v: v.reshape(n, n, 2).numpy()  # noqa: E731
    density = parts.cond.noised(cell.abar).log_prob(grid_points((axis, axis))).exp().reshape(n, n)
    return FieldMap(axis.numpy(), arr(f.golden), arr(f.golden_error), arr(f.present), arr(f.reg_paper),
                    arr(f.reg_vjp), density.numpy())


@dataclass(frozen=True)
class ClosedFormCell:
    """Conditional ``N(mu_c, s_u^2 r)`` against unconditional ``N(mu_u, s_u^2)`` (the law
    ``single:MU_C:S_C:MU_U:S_U`` with ``S_C = s_u sqrt(r)``), ideal chain, CFG weight ``w``: REG's relative weighted
    RMS gap over CFG's (:func:`analytic.symbolic.gap_summary`) at ``points`` levels ``abar`` in [0.02, 0.98]
    (linear) and ``points`` ratios ``r`` in [0.1, 3] (geometric)."""

    w: float = 1.0
    mu_c: float = 1.0
    mu_u: float = 0.0
    s_u: float = 0.5
    points: int = 60

    def __post_init__(self):
        for name in ("w", "mu_c", "mu_u", "s_u"):
            _number(self, name)
        if not self.s_u > 0:
            raise ValueError(f"s_u must be > 0, got {self.s_u!r}")
        _count(self, "points", 2)

    @property
    def cost(self) -> float:
        return float(self.points) ** 2


class ClosedForms(NamedTuple):
    abar: np.ndarray  # [A]
    ratio: np.ndarray  # [R]
    log_ratio: np.ndarray  # [R, A] log10(rel_gap_reg / rel_gap_cfg), nan where E_t is infinite
    diverges: np.ndarray  # [R, A] bool: E_t infinite (the tilted posterior precision is not positive)
    undecided: np.ndarray  # [R, A] bool: the sign of log_ratio or of the precision is within UNDECIDED of zero


@cell_kind(ClosedFormCell)
def closed_forms(cell: ClosedFormCell) -> ClosedForms:
    n = cell.points
    abar, ratio = np.linspace(0.02, 0.98, n), np.geomspace(0.1, 3.0, n)
    lr = np.full((n, n), np.nan)
    dv = np.zeros((n, n), dtype=bool)
    undecided = np.zeros((n, n), dtype=bool)
    for i, r in enumerate(ratio):
        s_c = cell.s_u * np.sqrt(r)
        for j, a in enumerate(abar):
            prec = float(symbolic.tilted_precision(a, cell.mu_c, s_c, cell.mu_u, cell.s_u, cell.w))
            size = abs(1 + cell.w) / s_c**2 + abs(cell.w) / cell.s_u**2 + a / (1 - a)  # its terms' size
            try:
                g = symbolic.gap_summary(a, cell.mu_c, s_c, cell.mu_u, cell.s_u, cell.w)
            except ValueError:  # E_t diverges here
                dv[i, j] = True
                undecided[i, j] = abs(prec) <= UNDECIDED * size
                continue
            lr[i, j] = np.log10(max(float(g.rel_gap_reg), 1e-12) / max(float(g.rel_gap_cfg), 1e-12))
            undecided[i, j] = abs(prec) <= UNDECIDED * size or abs(lr[i, j]) <= UNDECIDED
    return ClosedForms(abar, ratio, lr, dv, undecided)
