"""Exact comparison of guidance rules on flows and on VP at matched step counts (issue 14, item 4).

The experiment. On the presets ``paper_1d``, ``correlated_2d`` and ``classes_2d``, for CFG weights ``w`` and
step counts ``n``, the exact output law (:func:`evaluation.density.output_density`, no Monte Carlo) of every
rule of :data:`METHODS` under every schedule of :data:`SCHEDULES`, against the tilted target
``p(x|y) R_0 / Z`` of ``CFGReward(cond, uncond, w)`` at the same ``w`` (:func:`evaluation.distances.tilted_target`),
and the rules' field errors against the exact golden.

Every output law, field-error table and check is a cell of :mod:`evaluation.sweep` (:class:`LawCell`,
:class:`FieldCell`, :class:`CapCell`: a law, levels and a method of :mod:`evaluation.spec`), so :func:`compute`
is cached, resumable and runs on ``workers`` processes; :func:`cells` and :func:`assemble` let a caller (the
claims ledger) run them in its own sweep. ``python -m evaluation.flows [--quick] [--out DIR] [--workers N]`` writes
the key numbers (:func:`summary`) to ``DIR/flows.json``.

Schedules (``n`` denoiser calls each; :func:`levels` gives their :class:`evaluation.spec.Levels`):

- ``flow``: the linear path, ``n`` steps uniform in ``t`` (``sampler.paths.uniform_times``), Euler;
- ``flow_shift``: the same with SD3's shift (``shift_times``, ``shift = 3`` by default), Euler;
- ``vp_ddim``: the standard DDPM schedule (T = 1000, betas 1e-4..0.02) respaced to ``n`` steps, Euler, which
  is DDIM with ``eta = 0`` (the same step, :mod:`sampler.samplers`);
- ``vp_ddpm``: the same levels, DDPM ancestral sampling.

Flow Euler is the contract's Euler at the flow's levels (THEORY.md section 8, pinned in
``tests/sampler/test_paths.py``), so for every rule that is path-free in ``D`` (CFG, REG, APG on ``x0``, the
optimum) ``flow`` and ``vp_ddim`` differ only in the levels they visit. CFG-Zero* and zero-init act on a path's
velocity: on the VP schedules they use the VP path's velocity (the v-prediction direction). Both are invariant
to the path's clock (a common factor of ``alpha'`` and ``sigma'`` cancels), so any :class:`sampler.paths.VPPath`
whose range covers the levels gives the same rule; :data:`VP_GEOMETRY` reaches ``s ~ 2e4`` > 157, the standard
schedule's top level.

Rules (``w`` in the library's convention ``D_c + w (D_c - D_u)``): ``cfg``; ``cfg_zero_star`` (optimised scale);
``cfg_zero_star_init`` (the same, with the first ``zero_init_steps`` velocities zeroed, as the authors' code);
``apg`` (on ``x0``, ``eta = 0``, no momentum, no norm cap: a pure function, so exact under every sampler);
``apg_momentum`` (the same with the paper's reverse momentum ``beta = -0.5``: per-trajectory state, exact only
for the deterministic samplers, whose output law is one push-forward of trajectories that each carry their
own momentum; nan under ``vp_ddpm``, where the law is propagated on a grid and momentum is not a function of
the state); ``cfg,reg=paper`` and ``cfg,reg=vjp`` (REG on CFG); ``optimal`` (the reward-tilted posterior mean). In
``d = 1`` CFG-Zero* is the conditional model and APG with ``eta = 0`` is unguided (``sampler.flow_guidance``),
so both papers' claims are judged on the 2-D presets only.

Start. Every rule but the optimum starts from ``N(0, I)`` in the VP coordinates of the first level
(:func:`evaluation.starts.vp_start`). On the linear path the first level is ``T_NOISE_CAP = 1 - 1e-4``
(``s_0 = 9999``), where ``u = x~/sqrt(1 + s^2)`` and the flow's state ``x_t = x~/(1 + s)`` agree to 5e-9
relative, so this *is* the flow's start ``x_1 = noise``, moved to the cap; on VP it is the usual
``x_T ~ N(0, I)`` at ``abar_T = 4e-5`` (``s_0 = 157``). The optimum starts from the exact marginal of the tilted
chain, ``p_T(u|y) E_T(u)`` (:func:`evaluation.starts.tilted_start`, ``marginal=True``), so its distance to the
target is the sampler's discretisation error alone. What the starts cost is measured, not assumed:
:attr:`FlowsResult.start_tv` (TV between ``N(0, I)`` and the exact conditional marginal at the first level)
and :attr:`FlowsResult.cap_tv` (how far CFG's output moves when the cap goes from ``1 - 1e-4`` to ``1 - 1e-6``).

Distances, each with its error (:class:`LawCell`, the accuracy contract of :mod:`evaluation.accuracy`; tolerance
:func:`evaluation.accuracy.default_tol`, 5e-4 in 1-D and 5e-3 in 2-D). Under the deterministic samplers (flow Euler,
DDIM) the sliced W1 (:func:`sliced_w1`; the exact W1 in 1-D) is :func:`pushed_sw1`'s: the sampler run on every node
of a midpoint rule of the start, against a midpoint rule of the target, no output grid, within the tolerance (else
the cell fails). TV, both KLs and, under DDPM, the sliced W1 are of the grid law (hat masses), and depend on the
grid's resolution: few-step guided samplers concentrate mass on scales below any affordable 2-D spacing, so TV keeps
growing as the grid is refined (e.g. 0.67 -> 0.83 -> 0.92 for CFG on correlated_2d, w = 4, 10 flow steps, at spacings
0.22, 0.125, 0.062), and the grid law's sliced W1 is first order in the spacing and biased low (correlated_2d, CFG
w = 1, flow Euler, 10 steps: 0.049, 0.079, 0.094 on 41, 81, 161 nodes per axis against 0.10277). The numbers named
in :attr:`FlowsConfig.checked` are brought within the tolerance by
:func:`evaluation.accuracy.converged_laws` (by default the 1-D DDPM sliced W1: paper_1d, CFG w = 4, 10 steps
converges on 801 nodes, +- 1.6e-4); the others are published on the configuration's grid with the contract's error
estimates there, which are far above the tolerance for these outputs: measured, TV of paper_1d CFG w = 4, 10 flow
steps is 0.96 +- 0.30 on 801 nodes and does not reach 5e-4 within 16385 nodes (0.995 +- 0.008); correlated_2d, CFG
w = 1, 10 flow steps, 0.21 +- 0.14 on 41^2, and neither it nor the 2-D DDPM cells (correlated_2d w = 1 and 4, 10
steps) reach 5e-3 within the node budget (they stop at 321^2 nodes, where the sub-points of the last deterministic
step exceed memory, after 28-43 CPU-s each). Under DDPM on the 2-D grid (spacing 0.3) the stochastic steps are not
resolved, so those numbers have no bound: their error is ``inf``. A KL whose change cannot be bounded (an output
with no mass where the target has some) has an infinite error too. The verdicts use the sliced W1.
:attr:`FlowsResult.grid_error` measures the change of ``sw1`` under a 2x refinement on the ``flow`` cells, which are
grid-free now (0).

Field errors are in ``D`` (= ``x0``, data) units: at every level ``s`` a sampler visits, the mean over
``x ~ p_s(x|y)`` (Gauss-Hermite on each component of the conditional marginal, :func:`conditional_nodes`) of
``|D_rule(x, s) - m_R(x, s)|``, with ``m_R`` the tilted posterior mean, which is the golden on every path
(THEORY.md section 8). ``D`` units, because there the golden is path-free and so are the rules' errors at
equal ``s``; divide by ``s`` for eps units. With 12 nodes per dimension and component (2-D) the per-level values
are within 3% and their means over levels within 0.5% of 24 nodes. The optimum's field error is 0 (it is the
golden); ``apg_momentum``'s is nan (its delta is not a function of the state).

Findings (sliced W1 to the tilted target on the tests' grid, 2-D spacing 0.3, within 15% of this module's FULL
grid where checked; steps 10 / 20 / 50, w = 0.5, 1, 2, 4, every schedule (DDPM: w = 1, 4) and SD3 shifts
1.5 / 3 / 6; pinned in ``tests/evaluation/test_flows.py`` and the ledger's ``cfg-zero-star`` / ``apg`` claims).
These numbers were measured with the grid laws' sliced W1 (biased low by up to about 0.05 in 2-D, see Distances)
before :func:`pushed_sw1`; the ledger's claims publish the converged values (e.g. CFG, correlated_2d, w = 1, flow,
10 steps: 0.10277 +- 2e-5 where the grid gave 0.049). No rule is closest everywhere, and flow vs VP is not what
decides it: at matched step counts the rules rank the same on flow and VP levels, except at few steps, where what
matters is how many of them sit at high noise.

- correlated_2d: at 50 steps CFG is the closest rule in every cell (0.025-0.085 under Euler / DDIM, 0.09 under
  DDPM; CFG-Zero* 0.15-0.26, APG 0.25-0.40, REG vjp 0.09-0.24); on uniform t already at 10-20 steps. At
  w >= 2 with levels crowded at high noise (SD3 shift 3 or 6, VP) CFG overshoots at few steps (w = 4, 10 steps:
  1.05-1.12, 1.9 under DDPM; 20 steps: 0.12-0.15, 0.49 under DDPM; w = 2, 10 steps: 0.27-0.28); only there are
  CFG-Zero* (w = 4, 10 steps: 0.31-0.69) and APG (0.55-0.71) closer than CFG, and REG is closer still
  (0.15-0.30). Uniform t or shift 1.5 at 10 steps: no overshoot (CFG 0.14-0.15 at w = 4).
- classes_2d: REG (vjp) is the closest rule (23-81% closer than CFG), or within 3% of the closest (w = 0.5,
  10 steps); APG + momentum is 17-34% closer than CFG on every deterministic schedule and step count,
  CFG-Zero* + zero-init 6-47% (within the 10% tie band on VP levels at w >= 2); APG without momentum ranges
  from 21% closer to 14% further.
- paper_1d: the exact optimum's Euler error is 2-2.5x smaller on uniform flow levels than on VP's (10 steps
  0.039 vs 0.081, 50 steps 0.008 vs 0.020); CFG at w = 4 is 5x closer on uniform flow levels at 10 steps
  (0.19 vs 1.02) and slightly further at 50 (0.34 vs 0.27).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch

from analytic.mixture import GaussianMixture
from analytic.presets import PRESETS
from analytic.quadrature import as_axes, gauss_hermite, grid_points
from sampler.paths import LINEAR, T_NOISE_CAP, sampling_sigmas, uniform_times
from sampler.samplers import sample
from sampler.schedules import check_number, sigma_to_abar

from .accuracy import (Estimate, GridLaw, coarsen, converged_laws, default_tol, density_engine, grid_tv,
                       narrowest_kernel, shared_target, to_grid)
from .density import mass_outside, output_density
from .distances import TargetMemo, distances, target_key, total_variation
from .spec import VP_GEOMETRY, Law, Levels, Method
from .starts import vp_start
from .sweep import cell_kind, run_cells

__all__ = ["SCHEDULES", "METHODS", "RULES", "METRICS", "VP_GEOMETRY", "FlowsConfig", "QUICK", "FIGURE", "FULL",
           "levels", "sliced_w1", "sliced_w1_error", "sliced_w1_points", "PushedSW1", "pushed_sw1", "clear_shared_targets",
           "CellDistances", "LawCell", "LawResult", "law_cell", "FieldCell", "FieldSteps",
           "field_steps", "CapCell", "CapTV", "cap_tv", "output_law", "output_cell", "conditional_nodes", "field_cell",
           "FlowsResult", "cells", "assemble", "compute", "main", "Verdict", "describe_cells", "compare", "cfg_zero_star_verdict", "apg_verdict",
           "closest_rules", "summary"]

SCHEDULES = ("flow", "flow_shift", "vp_ddim", "vp_ddpm")
# the rules, by their evaluation.spec.Method spelling without the weight (the weights axis gives w)
METHODS = ("cfg", "cfg_zero_star", "cfg_zero_star_init", "apg", "apg_momentum", "cfg,reg=paper", "cfg,reg=vjp", "optimal")
RULES = METHODS[:-1]  # what a user can run without the exact answer
METRICS = ("sw1", "tv", "kl_target_out", "kl_out_target", "field")
CHECKED = ("sw1", "tv")  # the numbers a LawCell can be asked to bring within its tolerance
_VP_T = 1000  # the standard DDPM schedule the VP schedules respace


# --- the configuration ---------------------------------------------------------------------------------
def _check_names(values, known, what) -> tuple:
    values = tuple(values)
    bad = [v for v in values if v not in known]
    if bad:
        raise ValueError(f"unknown {what} {bad}; choose from {tuple(known)}")
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must not repeat, got {values}")
    return values


def _check_methods(values) -> tuple:
    """Method spellings (:meth:`evaluation.spec.Method.parse`) without a weight, each once, in canonical form."""
    values = tuple(values)
    for v in values:
        m = Method.parse(v)  # ValueError listing the forms
        if str(m) != v or m.w != 1.0:
            raise ValueError(f"methods are canonical Method spellings without w (the weights give it), e.g. {METHODS}; "
                             f"got {v!r} (canonical: {str(m.replace(w=1.0))!r})")
    if len(set(values)) != len(values):
        raise ValueError(f"methods must not repeat, got {values}")
    return values


def _check_count(value, what: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer)) or int(value) != value or value < low:
        raise ValueError(f"{what} must be an integer >= {low}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class FlowsConfig:
    """What :func:`compute` runs: every (preset, weight, schedule, step count, method) cell.

    ``density_range``/``density_points``/``sub``/``field_nodes``/``checked`` are ``(1-D, 2-D)`` pairs: half-width and
    nodes per dimension of the output grid ``[-r, r]^d`` (VP state at every level; the data at the end; wide enough
    for the excursions of over-guided DDPM chains, whose mass would otherwise leave the grid; each :class:`LawCell`'s
    starting grid), sub-points per cell and dimension for the deterministic push-forward of :func:`output_law` and
    the cap check (the cells' own sub-points are the contract's), Gauss-Hermite nodes per dimension and mixture
    component for the field errors, and the grid numbers each :class:`LawCell` brings within its tolerance
    (:data:`CHECKED`; default: the 1-D DDPM sliced W1 only, see the module docstring's Distances). The 2-D optimum costs about 1 s per step on the full grid: it runs only at the step
    counts ``optimal_2d_steps`` (nan elsewhere). ``grid_check`` recomputes ``sw1`` on a 2x finer grid for
    every rule at the largest weight, ``flow``, the fewest steps (:attr:`FlowsResult.grid_error`; 0 since those
    cells' ``sw1`` is :func:`pushed_sw1`'s, which uses no output grid). ``fields``:
    whether to compute the field errors (``False`` leaves them nan; the claims ledger needs only the output
    laws)."""

    presets: tuple[str, ...] = ("paper_1d", "correlated_2d", "classes_2d")
    weights: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    steps: tuple[int, ...] = (10, 20, 50)
    schedules: tuple[str, ...] = SCHEDULES
    methods: tuple[str, ...] = METHODS
    shift: float = 3.0
    density_range: tuple[float, float] = (7.0, 6.0)
    density_points: tuple[int, int] = (1401, 61)
    sub: tuple[int, int] = (16, 4)
    field_nodes: tuple[int, int] = (48, 12)
    optimal_2d_steps: tuple[int, ...] = (10,)
    grid_check: bool = True
    fields: bool = True
    checked: tuple[tuple[str, ...], tuple[str, ...]] = (("sw1",), ())

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        for name, known in (("presets", PRESETS), ("schedules", SCHEDULES), ("methods", None)):
            values = _check_methods(self.methods) if known is None else _check_names(getattr(self, name), known, name)
            if not values:
                raise ValueError(f"{name} must not be empty")
            set_(name, values)
        if "cfg" not in self.methods:
            raise ValueError(f"methods must include 'cfg', the baseline of the verdicts, got {self.methods}")
        ws = tuple(check_number(w, "weight") for w in self.weights)
        if not ws or any(w < 0 for w in ws) or len(set(ws)) != len(ws):
            raise ValueError(f"weights must be distinct numbers >= 0, got {self.weights}")
        set_("weights", ws)
        steps = tuple(_check_count(n, "a step count", 2) for n in self.steps)
        if not steps or len(set(steps)) != len(steps) or max(steps) > _VP_T:
            raise ValueError(f"steps must be distinct integers in [2, {_VP_T}], got {self.steps}")
        set_("steps", steps)
        opt = tuple(_check_count(n, "an optimal_2d step count", 2) for n in self.optimal_2d_steps)
        if not set(opt) <= set(steps):
            raise ValueError(f"optimal_2d_steps {opt} must be among steps {steps}")
        set_("optimal_2d_steps", opt)
        if check_number(self.shift, "shift") <= 0:
            raise ValueError(f"shift must be > 0, got {self.shift}")
        for m in map(Method.parse, self.methods):
            if m.rule == "cfg_zero_star_init" and m.zero_init_steps >= min(steps):
                raise ValueError(f"zero_init_steps={m.zero_init_steps} of {str(m)!r} must be below the smallest step "
                                 f"count {min(steps)}")
        rng = tuple(self.density_range)
        if len(rng) != 2 or any(check_number(r, "density_range") <= 0 for r in rng):
            raise ValueError(f"density_range is a (1-D, 2-D) pair of half-widths > 0, got {self.density_range}")
        set_("density_range", tuple(float(r) for r in rng))
        for name, low in (("density_points", 3), ("sub", 1), ("field_nodes", 2)):
            pair = tuple(getattr(self, name))
            if len(pair) != 2:
                raise ValueError(f"{name} is a (1-D, 2-D) pair, got {pair}")
            set_(name, tuple(_check_count(v, name, low) for v in pair))
        pair = tuple(self.checked) if not isinstance(self.checked, str) else ()
        if len(pair) != 2 or any(isinstance(c, str) or any(k not in CHECKED for k in c) or len(set(c)) != len(c)
                                 for c in pair):
            raise ValueError(f"checked is a (1-D, 2-D) pair of tuples of distinct names from {CHECKED}, got "
                             f"{self.checked!r}")
        set_("checked", tuple(tuple(c) for c in pair))
        for name in ("grid_check", "fields"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")

    def axes(self, d: int) -> tuple[torch.Tensor, ...]:
        """The output grid of the VP state in dimension ``d`` (1 or 2)."""
        if d not in (1, 2):
            raise ValueError(f"d must be 1 or 2, got {d!r}")
        r = self.density_range[d - 1]
        return (torch.linspace(-r, r, self.density_points[d - 1], dtype=torch.float64),) * d

    def refined(self) -> "FlowsConfig":
        """The same experiment on a grid with half the spacing."""
        return FlowsConfig(**{**self.__dict__, "density_points": tuple(2 * n - 1 for n in self.density_points)})

    def runs_optimal(self, d: int, steps: int) -> bool:
        return "optimal" in self.methods and (d == 1 or steps in self.optimal_2d_steps)


QUICK = FlowsConfig(weights=(1.0, 4.0), steps=(10,), density_points=(501, 41), sub=(8, 4), field_nodes=(16, 6),
                    optimal_2d_steps=(), grid_check=False)
FULL = FlowsConfig()
# what ``paper_plots.py`` draws: few and many steps at a moderate and a large weight, on the quick grid, with the
# optimum's law in 1-D only (in 2-D it costs minutes per cell); FULL, every weight and step count on the fine grid
# with the 2-D optimum, is the record: ``compute(config=FULL)``, a long run
FIGURE = FlowsConfig(weights=(1.0, 4.0), steps=(10, 50), density_points=(801, 41), sub=(8, 4), field_nodes=(16, 6),
                     optimal_2d_steps=(), grid_check=False)


# --- levels and methods --------------------------------------------------------------------------------
def levels(schedule: str, steps: int, shift: float = 3.0, start: str = "n01") -> Levels:
    """The :class:`evaluation.spec.Levels` of this experiment's schedule axis: ``flow`` is ``flow:N``,
    ``flow_shift`` is ``flow_shift:N:SHIFT`` (both the deterministic step, flow Euler), ``vp_ddim`` is
    ``standard:N/ddim`` and ``vp_ddpm`` is ``standard:N`` (DDPM ancestral)."""
    steps = _check_count(steps, "steps")
    if schedule == "flow":
        text = f"flow:{steps}"
    elif schedule == "flow_shift":
        text = f"flow_shift:{steps}:{check_number(shift, 'shift')!r}"
    elif schedule == "vp_ddim":
        text = f"standard:{steps}/ddim"
    elif schedule == "vp_ddpm":
        text = f"standard:{steps}/ddpm"
    else:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    lv = Levels.parse(text)
    return Levels(lv.schedule, lv.sampler, start)


def _method(name: str, w: float) -> Method:
    return Method.parse(name).replace(w=float(w))


def _defined(method: Method, lv: Levels) -> bool:
    """Whether ``method``'s exact output law exists under ``lv`` (momentum is trajectory state)."""
    return not (method.rule == "apg_momentum" and lv.sampler != "ddim")


def _start_of(method: Method) -> str:
    return "tilted" if method.rule == "optimal" else "n01"


# --- one cell ------------------------------------------------------------------------------------------
_BLOCK = 8  # directions per batched sort (bounded memory)


def _thetas(d: int, directions: int) -> torch.Tensor:
    """The unit directions of the sliced distances: angles ``(j + 1/2) pi / directions`` in 2-D, one in 1-D. [J, d]"""
    if d == 1:
        return torch.ones(1, 1, dtype=torch.float64)
    phi = (torch.arange(directions, dtype=torch.float64) + 0.5) * math.pi / directions
    return torch.stack([torch.cos(phi), torch.sin(phi)], 1)


class _Sorted(NamedTuple):
    """Weighted points projected on the directions of :func:`_thetas`, each direction sorted (ties by the points'
    order): per block of :data:`_BLOCK` directions, the projections ``z`` [N, b] and the weights in their order
    [N, b]."""

    blocks: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    directions: int  # J, the number of directions


def _sorted_projections(points: torch.Tensor, weights: torch.Tensor, thetas: torch.Tensor) -> _Sorted:
    blocks = []
    for block in thetas.split(_BLOCK):
        z, order = torch.sort(points @ block.T, dim=0, stable=True)  # [N, b]
        blocks.append((z, weights[order]))
    return _Sorted(tuple(blocks), thetas.shape[0])


def _merged(a: _Sorted, b: _Sorted) -> _Sorted:
    """The sorted projections of the union of two point sets, ``a``'s before ``b``'s (and each in its own order) at
    ties: what :func:`_sorted_projections` gives of ``a``'s points followed by ``b``'s, by merging the sorted runs
    (numpy's stable sort is a timsort, which merges two sorted runs in linear time) instead of sorting anew."""
    blocks = []
    for (za, wa), (zb, wb) in zip(a.blocks, b.blocks):
        z = torch.cat([za, zb])  # [Na + Nb, b]: two sorted runs per column
        order = torch.from_numpy(np.argsort(z.numpy(), axis=0, kind="stable"))
        blocks.append((z.gather(0, order), torch.cat([wa, wb]).gather(0, order)))
    return _Sorted(tuple(blocks), a.directions)


def _sliced_w1_sorted(s: _Sorted) -> float:
    """The sliced W1 of a signed measure of total 0 from its sorted projections: the mean over the directions of
    ``int |F(z)| dz``, ``F`` the cumulative of the projected weights (the exact 1-D W1 of the projections of the two
    laws)."""
    total = 0.0
    for z, w in s.blocks:
        cdf = torch.cumsum(w, 0)
        total += float((cdf[:-1].abs() * (z[1:] - z[:-1])).sum())
    return total / s.directions


def _sliced_w1_signed(points: torch.Tensor, diff: torch.Tensor, directions: int) -> float:
    """The sliced W1 of a signed measure of total 0 on ``points`` [N, d] (weights ``diff`` [N]) (:func:`_thetas`'s
    directions)."""
    return _sliced_w1_sorted(_sorted_projections(points, diff, _thetas(points.shape[1], directions)))


def sliced_w1(p: torch.Tensor, q: torch.Tensor, axes, directions: int = 32) -> float:
    """Sliced Wasserstein-1 distance between two laws of node masses on one grid (renormalised), each read as
    point masses at the nodes: the mean over ``directions`` angles ``(j + 1/2) pi / directions`` of the exact W1 of
    the projected laws; in 1-D the exact W1 (one direction).

    Of laws discretised on a grid (hat masses) it is first order in the spacing, and biased low (the hat projection
    moves each law by up to a third of a spacing): 2-D outputs of few-step guided samplers that are near-singular at
    the grid's scale give 0.049, 0.079, 0.094 on 41, 81, 161 nodes per axis where the law's own value is 0.1028
    (correlated_2d, CFG w = 1, flow Euler, 10 steps). :func:`pushed_sw1` computes the sampler's value without an
    output grid."""
    axes = tuple(torch.as_tensor(a, dtype=torch.float64) for a in as_axes(axes))
    p, q = torch.as_tensor(p, dtype=torch.float64), torch.as_tensor(q, dtype=torch.float64)
    shape = tuple(a.numel() for a in axes)
    if p.shape != shape or q.shape != shape:
        raise ValueError(f"masses must have the grid's shape {shape}, got {tuple(p.shape)} and {tuple(q.shape)}")
    if torch.any(p < -1e-12) or torch.any(q < -1e-12) or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("masses must be non-negative with a positive total")
    directions = _check_count(directions, "directions")
    diff = (p.clamp(min=0) / p.clamp(min=0).sum() - q.clamp(min=0) / q.clamp(min=0).sum()).reshape(-1)
    return _sliced_w1_signed(grid_points(axes), diff, directions)


def _projected_w1_error(dp: torch.Tensor, z: torch.Tensor) -> float:
    """Bound on the change of ``int |F_p - F_q|`` along projections ``z`` [N] from per-node errors ``dp`` [N]."""
    z, order = torch.sort(z, stable=True)
    left = dp[order].cumsum(0)
    return (torch.minimum(left, dp.sum() - left)[:-1] * (z[1:] - z[:-1])).sum().item()


def sliced_w1_error(dp: torch.Tensor, X: torch.Tensor, directions: int = 32) -> float:
    """Bound on the change of :func:`sliced_w1` (same directions) from per-node errors ``dp`` [N] of one law's
    (normalised) masses at the points ``X`` [N, d]: along each direction, the cumulative of the errors from the
    nearer end, integrated over the projected spacings; ``inf`` when an error is not finite (no bound)."""
    if not bool(torch.isfinite(dp).all()):
        return math.inf
    if X.shape[1] == 1:
        return _projected_w1_error(dp, X[:, 0])
    return sum(_projected_w1_error(dp, X @ theta) for theta in _thetas(X.shape[1], directions)) / directions


def sliced_w1_points(x: torch.Tensor, wx: torch.Tensor, y: torch.Tensor, wy: torch.Tensor,
                     directions: int = 32) -> float:
    """Sliced W1 (the directions of :func:`sliced_w1`; the exact W1 in 1-D) between two weighted point sets
    ``x`` [N, d] with weights ``wx`` [N] and ``y`` [M, d] with ``wy`` [M] (each renormalised)."""
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    wx, wy = torch.as_tensor(wx, dtype=torch.float64), torch.as_tensor(wy, dtype=torch.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or wx.shape != x.shape[:1] or wy.shape != y.shape[:1]:
        raise ValueError(f"need points [N, d], [M, d] and weights [N], [M], got {tuple(x.shape)}, {tuple(y.shape)}, "
                         f"{tuple(wx.shape)}, {tuple(wy.shape)}")
    for name, w in (("wx", wx), ("wy", wy)):
        if not torch.all(torch.isfinite(w)) or torch.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"{name} must be finite, non-negative with a positive total")
    if not (torch.all(torch.isfinite(x)) and torch.all(torch.isfinite(y))):
        raise ValueError("points must be finite")
    directions = _check_count(directions, "directions")
    return _sliced_w1_signed(torch.cat([x, y]), torch.cat([wx / wx.sum(), -wy / wy.sum()]), directions)


class PushedSW1(NamedTuple):
    """:func:`pushed_sw1`: the sliced W1 of a sampler's output law to the tilted target, with its error."""

    value: float
    error: float  # quadrature errors (start and target) plus the mass outside the box times the reach
    nodes: int  # start quadrature nodes per axis of the published value


def _box(d: int, half_width: float, n: int) -> tuple[torch.Tensor, ...]:
    return (torch.linspace(-half_width, half_width, n, dtype=torch.float64),) * d


def _quadrature(log_f, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Which nodes ``x`` [N, d] of a box's midpoint rule of ``exp(log_f)`` to keep (not below 1e-18 of the largest
    weight) [N] bool, and their normalised weights [kept]."""
    lf = log_f(x).to(torch.float64)
    if torch.any(torch.isnan(lf)) or torch.any(lf == math.inf):
        raise ValueError("the log-density is nan or +inf on the quadrature nodes")
    w = torch.exp(lf - lf.max())
    keep = w > 1e-18
    return keep, w[keep] / w[keep].sum()


_PUSH_NODES = {1: (401, 12801), 2: (41, 641)}  # the start quadrature's first and largest nodes per axis
_TARGET_NODES = {1: 6001, 2: 601}
_OUTSIDE_NODES = {1: 1201, 2: 121}




class _TargetRule(NamedTuple):
    """What :func:`pushed_sw1` needs of the target: its midpoint rule's nodes' range, the sorted projections of the
    rule (weights negated) at :data:`_TARGET_NODES` and at half of them, and its mass outside the box."""

    lo: torch.Tensor  # [d] the nodes' smallest coordinates
    hi: torch.Tensor  # [d] largest
    rule: _Sorted
    half: _Sorted
    outside: float


# One process's target rules, shared by the cells of one law, reward and box (every rule, schedule and step count of
# a weight: 20 of the flows experiment's cells): pushed_sw1's. Bounded: the oldest go first (a 2-D target rule holds
# ~10-35k nodes' projections on 32 directions, 5-20 MB; the experiment has one per law and weight). The grid targets
# are evaluation.accuracy.shared_target's.
_SHARED = TargetMemo(24)


def clear_shared_targets() -> None:
    """Forget this process's shared target rules (:func:`pushed_sw1`'s; the grid targets are
    :func:`evaluation.accuracy.shared_target`'s, :func:`evaluation.accuracy.clear_targets`)."""
    _SHARED.clear()


def _target_rule(built, half_width: float, thetas: torch.Tensor) -> _TargetRule:
    d = built.law.dim
    tk = target_key(built.law.cond, built.reward)
    target = lambda x: built.law.cond.log_prob(x) + built.reward.log_r0(x)  # noqa: E731

    def make() -> _TargetRule:
        rules = []
        for n in (_TARGET_NODES[d], (_TARGET_NODES[d] + 1) // 2):
            y = grid_points(_box(d, half_width, n))
            keep, wy = _quadrature(target, y)
            y = y[keep]
            rules.append(_sorted_projections(y, -wy / wy.sum(), thetas))
            if n == _TARGET_NODES[d]:
                lo, hi = y.min(0).values, y.max(0).values
        frame = _box(d, half_width, _OUTSIDE_NODES[d])  # the mass outside the box, by mass_outside's midpoint rule
        return _TargetRule(lo, hi, *rules, mass_outside(target, frame, name="target"))

    return _SHARED.get(None if tk is None else ("rule", tk, float(half_width), d, thetas.shape[0]), make)


def pushed_sw1(built, half_width: float, *, tol: float, directions: int = 32, pointwise: bool = False) -> PushedSW1:
    """Sliced W1 (:func:`sliced_w1_points`) between the output law of a deterministic sampler (``built``, a
    :class:`evaluation.spec.Built` whose levels' sampler is ``ddim`` with every step deterministic) and its tilted
    target, without an output grid: the midpoint rule of the start law on ``[-half_width, half_width]^d``
    (``n`` nodes per axis), each node run through the sampler itself (the law's exact push-forward of that
    quadrature), against the midpoint rule of the target ``p(x|y) R_0(x)`` on the same box.

    The grid route (:func:`sliced_w1` of hat masses) is first order in the output spacing; this one only in the
    start's spacing where the sampler's map is steep (w = 4, SD3-shifted levels, CFG-Zero* + zero-init:
    0.3547, 0.3581, 0.3600 on 61, 121, 241 nodes), and far faster where it is smooth (1e-6 on 61 nodes).
    The start's nodes double (``2 n - 1``) from 41 per axis (401 in 1-D) until the estimated error is within
    ``tol`` (half of it) or up to 641 (12801); past that the error is returned as it is (the caller judges it).
    Error: the change of the last doubling, times ``1 / (rho - 1)`` when the ratio
    ``rho`` of the last two changes is below 2 (geometric tail; ``inf`` when the changes do not shrink), plus
    twice the target's change from a rule of half its spacing (601 nodes per axis in 2-D, 6001 in 1-D: spacing 0.02
    on the experiment's box), plus the mass of start and target outside the box times the reach of all points
    (a 1-Lipschitz projection moves by at most that per unit of mass). Not for stochastic samplers
    (``ValueError``): their law is not one push-forward of the start.

    Shared work (the same numbers as computing everything afresh): the target's rules, their sorted projections and
    outside mass are computed once per process for equal values of (law, reward, box, directions)
    (:func:`target_key`; :func:`clear_shared_targets` forgets them), and each doubling sorts only the pushed points'
    projections, merging them with the target's. ``pointwise``: the guided denoiser acts on each state alone, as
    every rule but the optimum does (whose quadrature adapts to the batch), so a doubling pushes only the nodes the
    previous rule did not (the coarse rule's nodes are the fine rule's even ones); else every rule is pushed whole."""
    tol = check_number(tol, "tol")
    half_width = check_number(half_width, "half_width")
    if not (tol > 0 and half_width > 0):
        raise ValueError(f"tol and half_width must be > 0, got {tol}, {half_width}")
    if not isinstance(pointwise, bool):
        raise ValueError(f"pointwise must be a bool, got {pointwise!r}")
    directions = _check_count(directions, "directions")
    lv = built.levels
    if lv.sampler != "ddim":
        raise ValueError(f"pushed_sw1 needs a deterministic sampler (ddim, eta = 0), got {lv.sampler!r} of {lv}")
    d = built.law.dim
    s = lv.sigmas()
    scale = torch.sqrt(1 + s**2)  # VE state = scale * VP state
    start = built.start()
    thetas = _thetas(d, directions)
    target = _target_rule(built, half_width, thetas)
    pushed: dict = {}  # the last rule's n, nodes [n^d, d], outputs [n^d, d] and which of them were pushed [n^d]

    def output(n):
        u = grid_points(_box(d, half_width, n))
        keep, w = _quadrature(start, u)
        x, done = torch.zeros_like(u), torch.zeros(u.shape[0], dtype=torch.bool)
        if pointwise and pushed:
            coarse = torch.arange(pushed["n"]) * 2  # the previous rule's nodes among this rule's ('ij' order)
            idx = coarse if d == 1 else (coarse[:, None] * n + coarse[None, :]).reshape(-1)
            if torch.equal(u[idx], pushed["u"]):  # the same nodes to the last bit (else all are pushed afresh)
                x[idx], done[idx] = pushed["x"], pushed["done"]
        todo = keep & ~done
        if todo.any():
            reset = getattr(built.guided, "reset", None)  # APG with momentum: one run, a momentum per trajectory
            if reset is not None:
                reset()
            with torch.no_grad():
                x[todo] = sample("ddim", built.guided, scale[0].item() * u[todo], s).to(torch.float64) \
                    / scale[-1].item()
        done |= todo
        pushed.update(n=n, u=u, x=x, done=done)
        out = x[keep]
        if not torch.all(torch.isfinite(out)):
            raise ValueError(f"pushed_sw1: the sampler's outputs are not finite on start nodes of {lv} ({n} per axis)")
        return out, w

    first, largest = _PUSH_NODES[d]
    values, n, error, used = [], first, math.inf, first
    while n <= largest:
        used = n
        x, wx = output(n)
        xs = _sorted_projections(x, wx / wx.sum(), thetas)
        values.append(_sliced_w1_sorted(_merged(xs, target.rule)))
        if len(values) >= 3:
            last, before = abs(values[-1] - values[-2]), abs(values[-2] - values[-3])
            rho = before / last if last > 0 else math.inf
            error = last * max(1.0, 1.0 / (rho - 1)) if rho > 1 else math.inf
            if error <= tol / 2:
                break
        n = 2 * n - 1
    target_error = 2 * abs(_sliced_w1_sorted(_merged(xs, target.half)) - values[-1])
    frame = _box(d, half_width, _OUTSIDE_NODES[d])  # the mass outside the box, by mass_outside's midpoint rule
    outside = mass_outside(start, frame, name="start") + target.outside
    lo = torch.minimum(x.min(0).values, target.lo)
    hi = torch.maximum(x.max(0).values, target.hi)
    reach = float((hi - lo).norm())
    return PushedSW1(values[-1], error + target_error + outside * reach, used)


class CellDistances(NamedTuple):
    """One output law against the tilted target, each number with its estimated error (:class:`LawCell`: the sliced
    W1 under a deterministic sampler and every checked number within the cell's ``tol``; the others with the
    contract's estimate on their grid, ``inf`` where no bound holds)."""

    sw1: float  # sliced W1 (exact W1 in 1-D), data units
    tv: float
    kl_target_out: float  # KL(target || output): mass the output misses
    kl_out_target: float  # KL(output || target): mass it puts where the target has none
    lost: float  # output mass missing from the final grid
    narrow_steps: int  # stochastic steps narrower than MIN_KERNEL_WIDTH spacings of the final grid
    sw1_error: float = math.nan  # estimated |value - converged value| of each number (nan: the cell is not defined)
    tv_error: float = math.nan
    kl_target_out_error: float = math.nan
    kl_out_target_error: float = math.nan


_UNDEFINED = CellDistances(math.nan, math.nan, math.nan, math.nan, math.nan, 0)


def _axes(d: int, half_width: float, points: int) -> tuple[torch.Tensor, ...]:
    return (torch.linspace(-half_width, half_width, points, dtype=torch.float64),) * d


@dataclass(frozen=True)
class LawCell:
    """A sweep cell: the exact output law of ``method`` on ``law`` under ``levels`` against the tilted target of the
    method's reward, every number of :class:`CellDistances` with its error (tolerance ``tol``, default
    :func:`evaluation.accuracy.default_tol` of the dimension):

    - the sliced W1 under a deterministic sampler is :func:`pushed_sw1`'s (no output grid), always within ``tol``,
      else ``ValueError`` naming the cell;
    - TV, both KLs and, under DDPM, the sliced W1 are of the output law on a grid. The numbers named in ``checked``
      (of :data:`CHECKED`: ``tv``; ``sw1``, for DDPM's grid law) are brought within ``tol`` by
      :func:`evaluation.accuracy.converged_laws`, starting from ``grid`` ``(-r, r, n)`` per axis (refined for narrow
      kernels and the numbers' errors, widened for lost mass), or the cell raises ``ValueError`` naming itself; the
      others are published on the grid where the contract stopped, or, when nothing is checked, on ``grid`` itself,
      with the contract's own error estimates there (:func:`evaluation.accuracy.grid_tv`, :func:`grid_sw1`, the KLs'
      change from twice the spacing plus the masses' errors: ``inf`` where no bound holds), which may exceed ``tol``.

    ``keep_mass`` also returns the output masses restricted to ``grid`` (for drawing)."""

    law: Law
    levels: Levels
    method: Method
    grid: tuple[float, float, int]
    checked: tuple[str, ...] = ()
    keep_mass: bool = False
    tol: float | None = None

    def __post_init__(self):
        lo, hi, n = self.grid
        if not (math.isfinite(lo) and lo == -hi and hi > 0 and int(n) == n and n >= 5 and n % 2 == 1):
            raise ValueError(f"grid must be (-r, r, n) with r > 0 and an odd n >= 5, got {self.grid!r}")
        if not isinstance(self.checked, tuple) or any(c not in CHECKED for c in self.checked) \
                or len(set(self.checked)) != len(self.checked):  # a list would leave the cell unhashable
            raise ValueError(f"checked must be a tuple of distinct names from {CHECKED}, got {self.checked!r}")
        if self.tol is not None and not (isinstance(self.tol, float) and math.isfinite(self.tol) and self.tol > 0):
            raise ValueError(f"tol must be a positive float or None, got {self.tol!r}")

    @property
    def cost(self) -> float:  # relative, for ordering work: steps x grid nodes (the optimum costs more)
        return self.levels.steps * self.grid[2] ** self.law.dim * (20.0 if self.method.rule == "optimal" else 1.0)


class LawResult(NamedTuple):
    distances: CellDistances
    mass: np.ndarray  # output hat masses [n(, n)] on the cell's grid when the cell keeps them (else empty)
    grid: tuple = ()  # the final grid (lo, hi, n) per axis where the numbers converged


def grid_sw1(out: GridLaw, target: GridLaw, directions: int = 32) -> Estimate:
    """:func:`sliced_w1` of two laws on one grid, with its error: the change when both are restricted to twice the
    spacing (first order in the spacing, so the change estimates what is left), plus the change the masses' errors
    can make (:func:`sliced_w1_error`), plus the lost masses times the grid's diameter."""
    if out.grid != target.grid:
        raise ValueError(f"grid_sw1 needs two laws on one grid, got {out.grid} and {target.grid}")
    axes = out.axes
    value = sliced_w1(out.mass.clamp(min=0), target.mass.clamp(min=0), axes, directions)
    coarse = sliced_w1(coarsen(out.mass).clamp(min=0), coarsen(target.mass).clamp(min=0), tuple(a[0::2] for a in axes),
                       directions)
    x = grid_points(axes)  # [N, d]
    moved = sum(sliced_w1_error(law.error.reshape(-1) / law.mass.clamp(min=0).sum(), x, directions)
                for law in (out, target))
    reach = math.sqrt(len(axes)) * (out.grid[1] - out.grid[0])  # lost mass may sit anywhere on the grid
    return Estimate(value, abs(value - coarse) + moved + (out.lost + target.lost) * reach)


def _kls(out: GridLaw, target: GridLaw) -> dict[str, Estimate]:
    """Both KLs of two laws on one grid with their errors: the masses' errors (:func:`evaluation.distances.distances`)
    plus the change when both are restricted to twice the spacing; ``inf`` error where no bound holds."""
    fine = distances(out.mass, target.mass, out.axes, output_error=out.error, target_error=target.error,
                     output_lost=max(out.lost, 0.0), target_lost=max(target.lost, 0.0))
    coarse = distances(coarsen(out.mass), coarsen(target.mass), tuple(a[0::2] for a in out.axes))
    out_ = {}
    for k in ("kl_target_out", "kl_out_target"):
        v, c, e = getattr(fine, k), getattr(coarse, k), getattr(fine, f"{k}_error")
        err = abs(v - c) + e if math.isfinite(v) and math.isfinite(c) else math.inf
        out_[k] = Estimate(v, err if err == err else math.inf)  # nan (inf - inf): no bound
    return out_


@cell_kind(LawCell)
def law_cell(cell: LawCell) -> LawResult:
    if not _defined(cell.method, cell.levels):
        return LawResult(_UNDEFINED, np.zeros(0))
    b = cell.method.build(cell.law, cell.levels)
    d = b.law.dim
    tol = default_tol(d) if cell.tol is None else cell.tol
    sigmas, sampler = cell.levels.sigmas(), cell.levels.sampler
    deterministic = sampler == "ddim"
    target_on = lambda g: shared_target(b.law.cond, b.reward, g, tol)  # noqa: E731

    def grid_numbers(law: GridLaw) -> dict[str, Estimate]:
        tgt = target_on(law.grid)
        return {"tv": grid_tv(law, tgt), **({} if deterministic else {"sw1": grid_sw1(law, tgt)})}

    engine = density_engine(b.guided, sigmas, sampler=sampler, start=b.start())
    checked = [k for k in cell.checked if k == "tv" or not deterministic]  # a deterministic sw1 is pushed_sw1's
    if checked:
        (out,), nums = converged_laws([engine], tuple(cell.grid), d, name=repr(cell), tol=tol,
                                      numbers=lambda laws: {k: grid_numbers(laws[0])[k] for k in checked},
                                      narrowest=narrowest_kernel(sigmas, sampler))
    else:
        out, nums = engine(tuple(cell.grid), d), {}
    n = {**grid_numbers(out), **_kls(out, target_on(out.grid)), **nums}  # the checked ones with the contract's errors
    if deterministic:  # the push-forward of a start quadrature: no output grid (sliced_w1)
        pushed = pushed_sw1(b, cell.grid[1], tol=tol, pointwise=cell.method.rule != "optimal")
        if not pushed.error <= tol:
            raise ValueError(f"{cell!r}: sliced W1 {pushed.value:.4g} +- {pushed.error:.2g} (pushed_sw1), not within "
                             f"tol {tol:g}")
        n["sw1"] = Estimate(pushed.value, pushed.error)
    dist = CellDistances(n["sw1"].value, n["tv"].value, n["kl_target_out"].value, n["kl_out_target"].value, out.lost,
                         out.narrow_steps, n["sw1"].error, n["tv"].error, n["kl_target_out"].error,
                         n["kl_out_target"].error)
    mass = to_grid(out, tuple(cell.grid)).mass.numpy().copy() if cell.keep_mass else np.zeros(0)
    return LawResult(dist, mass, tuple(out.grid))


def _law_cell(preset: str, w: float, schedule: str, steps: int, method: str, config: FlowsConfig, *,
              fine: bool = False, keep_mass: bool = False) -> LawCell:
    m = _method(method, w)
    d = Law.preset(preset).dim
    points = config.density_points[d - 1]
    r = config.density_range[d - 1]
    return LawCell(Law.preset(preset), levels(schedule, steps, config.shift, _start_of(m)), m,
                   (-r, r, 2 * points - 1 if fine else points), config.checked[d - 1], keep_mass)


def _check_cell(preset: str, w: float, steps: int, method: str, config: FlowsConfig) -> tuple[float, int]:
    if not isinstance(config, FlowsConfig):
        raise ValueError(f"config must be a FlowsConfig, got {config!r}")
    _check_names((preset,), PRESETS, "preset")
    _check_methods((method,))
    return check_number(w, "w"), _check_count(steps, "steps", 2)


def output_law(preset: str, w: float, schedule: str, steps: int, method: str, config: FlowsConfig = QUICK,
               estimate_error: bool = True):
    """The exact output law (:class:`evaluation.density.OutputDensity`) of ``method`` (a method spelling of
    :data:`METHODS`) on ``preset`` at weight ``w`` under ``schedule`` with ``steps`` steps, from its start (module
    docstring), on ``config``'s grid. ``ValueError`` for ``apg_momentum`` under DDPM, whose law is not a
    push-forward of states."""
    w, steps = _check_cell(preset, w, steps, method, config)
    cell = _law_cell(preset, w, schedule, steps, method, config)
    if not _defined(cell.method, cell.levels):
        raise ValueError(f"{method!r} carries momentum across steps: its law under {schedule!r} (a stochastic "
                         "sampler) is not a function of the state at each level, so it has no exact grid law")
    b = cell.method.build(cell.law, cell.levels)
    d = cell.law.dim
    return output_density(b.guided, cell.levels.sigmas(), _axes(d, cell.grid[1], cell.grid[2]),
                          sampler=cell.levels.sampler, start=b.start(), sub=config.sub[d - 1],
                          estimate_error=estimate_error)


def output_cell(preset: str, w: float, schedule: str, steps: int, method: str, config: FlowsConfig = QUICK
                ) -> CellDistances:
    """The exact output law of one cell against the tilted target, on ``config``'s grid; all nan where the
    cell is not defined (``apg_momentum`` under DDPM)."""
    w, steps = _check_cell(preset, w, steps, method, config)
    return law_cell(_law_cell(preset, w, schedule, steps, method, config)).distances


def conditional_nodes(preset: str | Law, sigma: float, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Hermite nodes and weights of ``p_s(x|y)``, the conditional marginal at contract level ``sigma``,
    in contract coordinates: ``n^d`` nodes per mixture component, weights ``pi_k w_j`` summing to 1.
    ``preset``: a preset name or any :class:`evaluation.spec.Law` whose conditional is a ``GaussianMixture``.
    ``([K n^d, d], [K n^d])``"""
    n = _check_count(n, "n")
    if not isinstance(preset, Law):
        _check_names((preset,), PRESETS, "preset")
    cond = (preset if isinstance(preset, Law) else Law.preset(preset)).build().cond
    if not isinstance(cond, GaussianMixture):
        raise ValueError(f"conditional_nodes needs a law with a GaussianMixture conditional, got {type(cond).__name__}")
    s = check_number(sigma, "sigma")
    if s < 0:
        raise ValueError(f"sigma must be >= 0, got {s}")
    a = sigma_to_abar(s)
    mix = cond.noised(a)  # VP coordinates
    z, log_w = gauss_hermite(n, cond.dim)
    u = mix.means[:, None, :] + torch.einsum("kij,nj->kni", mix.chol, z)  # [K, n^d, d]
    weights = torch.exp(mix.weights.log()[:, None] + log_w[None])  # [K, n^d]
    return u.reshape(-1, cond.dim) / math.sqrt(a), weights.reshape(-1)


@dataclass(frozen=True)
class FieldCell:
    """A sweep cell: the field errors (``D`` units) of ``methods`` (each at its own weight, the target's reward
    that of ``Method("optimal", w)``) at every level of ``levels``, with ``nodes`` Gauss-Hermite nodes per
    dimension and component (:func:`field_cell`), each with its change from half the nodes as its error estimate."""

    law: Law
    levels: Levels
    w: float
    methods: tuple[Method, ...]
    nodes: int

    @property
    def cost(self) -> float:
        return self.levels.steps * len(self.methods) * self.nodes ** self.law.dim


class FieldSteps(NamedTuple):
    errors: np.ndarray  # [M, steps]
    errors_error: np.ndarray | None = None  # [M, steps] each value's error estimate: its change from half the nodes


@cell_kind(FieldCell)
def field_steps(cell: FieldCell) -> FieldSteps:
    m_R = Method("optimal", cell.w).build(cell.law, cell.levels).guided  # the golden: the tilted posterior mean
    sigmas = cell.levels.sigmas()
    rules = {i: m.build(cell.law, cell.levels).guided for i, m in enumerate(cell.methods)
             if m.rule not in ("optimal", "apg_momentum")}
    preset = cell.law.args[0]
    runs = []
    for nodes in (cell.nodes, max(cell.nodes // 2, 1)):  # the change from half the nodes: the coarser rule's error,
        out = np.full((len(cell.methods), cell.levels.steps), math.nan)  # an upper estimate for the finer one
        for i, m in enumerate(cell.methods):
            if m.rule == "optimal":
                out[i] = 0.0
        for j, s in enumerate(sigmas[:-1].tolist()):
            x, weight = conditional_nodes(preset, s, nodes)
            gold = m_R(x, s).detach()
            for i, g in rules.items():
                out[i, j] = float((weight * (g(x, s).detach() - gold).norm(dim=1)).sum())
        runs.append(out)
    return FieldSteps(runs[0], np.abs(runs[0] - runs[1]))


def _field_cell(preset: str, w: float, schedule: str, steps: int, methods, config: FlowsConfig) -> FieldCell:
    d = Law.preset(preset).dim
    return FieldCell(Law.preset(preset), levels(schedule, steps, config.shift), float(w),
                     tuple(_method(m, w) for m in methods), config.field_nodes[d - 1])


def field_cell(preset: str, w: float, schedule: str, steps: int, methods=RULES, config: FlowsConfig = QUICK
               ) -> np.ndarray:
    """Field errors in ``D`` units at every level ``schedule`` visits: ``[len(methods), steps]``, entry
    ``[m, i]`` the mean of ``|D_m(x, s_i) - m_R(x, s_i)|`` (Euclidean) over ``x ~ p_{s_i}(x|y)``, by Gauss-Hermite
    quadrature on each component of the conditional marginal (:func:`conditional_nodes`,
    ``config.field_nodes``), so every level is resolved at its own scale. ``optimal`` is 0 (it is the golden);
    ``apg_momentum`` is nan (state, not a field)."""
    methods = _check_methods(methods)
    _check_names((preset,), PRESETS, "preset")
    return field_steps(_field_cell(preset, check_number(w, "w"), schedule, steps, methods, config)).errors


@dataclass(frozen=True)
class CapCell:
    """A sweep cell: TV between CFG's flow outputs (``steps`` uniform steps) with the noise end capped at
    ``T_NOISE_CAP`` and at ``1 - 1e-6``, on the grid of a :class:`LawCell`."""

    law: Law
    w: float
    steps: int
    half_width: float
    points: int
    sub: int


class CapTV(NamedTuple):
    tv: float
    tv_error: float = math.nan  # evaluation.accuracy.grid_tv's estimate (the two laws' own errors, the hat smoothing)


@cell_kind(CapCell)
def cap_tv(cell: CapCell) -> CapTV:
    g = Method("cfg", cell.w).build(cell.law, levels("flow", cell.steps)).guided
    axes = _axes(cell.law.dim, cell.half_width, cell.points)
    grid = (-cell.half_width, cell.half_width, cell.points)
    out = []
    for cap in (T_NOISE_CAP, 1 - 1e-6):
        od = output_density(g, sampling_sigmas(LINEAR, uniform_times(cell.steps), cap=cap), axes, sampler="ddim",
                            sub=cell.sub, estimate_error=True)
        out.append(GridLaw(grid, od.mass, od.error, od.lost, od.narrow_steps))
    return CapTV(*grid_tv(*out))


# --- the whole experiment ------------------------------------------------------------------------------

@dataclass(frozen=True)
class FlowsResult:
    """Every cell of a :class:`FlowsConfig`. Cell arrays are indexed ``[preset, weight, schedule, steps,
    method]`` in the config's orders, nan where a cell is not defined (``apg_momentum`` under DDPM, the 2-D
    optimum outside ``optimal_2d_steps``)."""

    config: FlowsConfig
    sw1: np.ndarray  # [P, W, K, S, M] sliced W1 (W1 in 1-D) to the tilted target
    tv: np.ndarray  # [P, W, K, S, M] at the grid's resolution
    kl_target_out: np.ndarray  # [P, W, K, S, M]
    kl_out_target: np.ndarray  # [P, W, K, S, M]
    lost: np.ndarray  # [P, W, K, S, M]
    narrow_steps: np.ndarray  # [P, W, K, S, M] int
    field: np.ndarray  # [P, W, K, S, M] field error (D units), mean over the levels visited
    field_steps: np.ndarray  # [P, W, K, S, M, max(steps)] per level, nan-padded
    levels: np.ndarray  # [K, S, max(steps)] the levels s_i at which the denoiser is called, nan-padded
    start_tv: np.ndarray  # [P, K] TV(N(0, I), exact p_T(u|y)) at the first level, on the grid
    cap_tv: np.ndarray  # [P, W] TV between CFG's flow outputs (fewest steps) with caps 1 - 1e-4 and 1 - 1e-6
    grid_error: np.ndarray  # [P, M] |sw1(h/2) / sw1(h) - 1| at (max w, flow, fewest steps); nan if not checked
    sw1_error: np.ndarray  # [P, W, K, S, M] estimated error of each sw1 (CellDistances), and so on
    tv_error: np.ndarray
    kl_target_out_error: np.ndarray
    kl_out_target_error: np.ndarray
    start_tv_error: np.ndarray  # [P, K]
    cap_tv_error: np.ndarray  # [P, W]
    field_error: np.ndarray  # [P, W, K, S, M] the field's mean over levels moves by at most the mean of their errors
    density_1d: np.ndarray = field(repr=False)  # [W, K, M, n] paper_1d output masses at the fewest steps
    target_1d: np.ndarray = field(repr=False)  # [W, n]
    axis_1d: np.ndarray = field(repr=False)  # [n]
    density_2d: np.ndarray = field(repr=False)  # [W, K, M, m, m] first 2-D preset, fewest steps
    target_2d: np.ndarray = field(repr=False)  # [W, m, m]
    axis_2d: np.ndarray = field(repr=False)  # [m]

    def value(self, metric: str, preset: str, w: float, schedule: str, steps: int, method: str) -> float:
        """One number: ``metric`` (one of :data:`METRICS`) of one cell."""
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")
        c = self.config
        try:
            idx = (c.presets.index(preset), c.weights.index(float(w)), c.schedules.index(schedule),
                   c.steps.index(steps), c.methods.index(method))
        except ValueError:
            raise ValueError(f"no cell ({preset!r}, w={w}, {schedule!r}, steps={steps}, {method!r}) "
                             "in this result") from None
        return float(getattr(self, metric)[idx])


def _first_2d(config: FlowsConfig):
    return next((p for p in config.presets if Law.preset(p).dim == 2), None)


def _start_tv(preset: str, schedule: str, config: FlowsConfig) -> Estimate:
    """TV(N(0, I), exact p_T(u|y)) at the first level from the densities on the grid's nodes, with its error: the
    change from every other node (the rule's error falls at least that fast as the nodes double)."""
    cond = Law.preset(preset).build().cond
    axes = config.axes(cond.dim)
    a = sigma_to_abar(levels(schedule, 2, config.shift).sigmas()[0].item())

    def tv(ax):
        u = grid_points(ax)
        return total_variation(torch.softmax(vp_start(cond.dim)(u), 0), torch.softmax(cond.noised(a).log_prob(u), 0))

    value = tv(axes)
    return Estimate(value, abs(value - tv(tuple(x[0::2] for x in axes))))


def _mean_over_levels(per_level: np.ndarray) -> np.ndarray:
    """nan-padded ``[..., L]`` -> ``[...]``: the mean over the finite entries (nan where there are none)."""
    ok = np.isfinite(per_level)
    count = ok.sum(-1)
    return np.where(count > 0, np.where(ok, per_level, 0.0).sum(-1) / np.maximum(count, 1), math.nan)


def _plan(c: FlowsConfig) -> list[tuple[tuple, Any]]:
    """``(where, cell)`` for every cell of ``c``: the output laws, the field errors (one cell per levels visited:
    VP DDIM and DDPM share theirs), the cap check and the 2x-refined grid check."""
    plan: list[tuple[tuple, Any]] = []
    n_min, fig2 = min(c.steps), _first_2d(c)
    for a, preset in enumerate(c.presets):
        law = Law.preset(preset)
        d = law.dim
        for b, w in enumerate(c.weights):
            for k, sch in enumerate(c.schedules):
                for j, n in enumerate(c.steps):
                    for m, method in enumerate(c.methods):
                        if Method.parse(method).rule == "optimal" and not c.runs_optimal(d, n):
                            continue
                        keep = n == n_min and preset in ("paper_1d", fig2)
                        plan.append((("law", a, b, k, j, m), _law_cell(preset, w, sch, n, method, c, keep_mass=keep)))
                    if c.fields:
                        cell = _field_cell(preset, w, sch, n, c.methods, c)
                        plan.append((("field", a, b, k, j), dataclasses.replace(cell, levels=Levels(cell.levels.schedule))))
            plan.append((("cap", a, b), CapCell(law, float(w), n_min, c.density_range[d - 1], c.density_points[d - 1],
                                               c.sub[d - 1])))
        if c.grid_check and "flow" in c.schedules:
            for m, method in enumerate(c.methods):
                if Method.parse(method).rule != "optimal" or c.runs_optimal(d, n_min):
                    plan.append((("fine", a, m), _law_cell(preset, max(c.weights), "flow", n_min, method, c, fine=True)))
    return plan


def cells(config: FlowsConfig) -> list:
    """The sweep cells of ``config`` (:mod:`evaluation.sweep`), in the order :func:`assemble` reads them."""
    if not isinstance(config, FlowsConfig):
        raise ValueError(f"config must be a FlowsConfig, got {config!r}")
    return [cell for _, cell in _plan(config)]


def assemble(config: FlowsConfig, results: Sequence) -> FlowsResult:
    """The :class:`FlowsResult` of ``config`` from the results of :func:`cells` (same order)."""
    c = config
    plan = _plan(c)
    if len(results) != len(plan):
        raise ValueError(f"the flows experiment of this config has {len(plan)} cells, got {len(results)} results")
    kinds = {"law": LawResult, "fine": LawResult, "field": FieldSteps, "cap": CapTV}
    for (where, cell), r in zip(plan, results):
        if not isinstance(r, kinds[where[0]]):
            raise ValueError(f"expected the flows experiment's {kinds[where[0]].__name__} for {cell!r:.120}, "
                             f"got {type(r).__name__}")
    P, W, K, S, M, L = len(c.presets), len(c.weights), len(c.schedules), len(c.steps), len(c.methods), max(c.steps)
    shape = (P, W, K, S, M)
    arr = {k: np.full(shape, math.nan) for k in CellDistances._fields if k != "narrow_steps"}
    narrow = np.zeros(shape, dtype=int)
    field_steps_, field_steps_error = np.full(shape + (L,), math.nan), np.full(shape + (L,), math.nan)
    levels_ = np.full((K, S, L), math.nan)
    for k, sch in enumerate(c.schedules):
        for j, n in enumerate(c.steps):
            levels_[k, j, :n] = levels(sch, n, c.shift).sigmas()[:-1].numpy()
    fig2 = _first_2d(c)
    ax1, ax2 = c.axes(1)[0], c.axes(2)[0]
    n1, n2 = (ax1.numel() if "paper_1d" in c.presets else 0), (ax2.numel() if fig2 else 0)
    density_1d, target_1d = np.full((W, K, M, n1), math.nan), np.full((W, n1), math.nan)
    density_2d, target_2d = np.full((W, K, M, n2, n2), math.nan), np.full((W, n2, n2), math.nan)
    grid_error, cap, cap_error = np.full((P, M), math.nan), np.full((P, W), math.nan), np.full((P, W), math.nan)
    fine: dict = {}
    for ((kind, *where), _), r in zip(plan, results):
        if kind == "law":
            a, b, k, j, m = where
            for key in arr:
                arr[key][a, b, k, j, m] = getattr(r.distances, key)
            narrow[a, b, k, j, m] = r.distances.narrow_steps
            if r.mass.size:
                if c.presets[a] == "paper_1d":
                    density_1d[b, k, m] = r.mass
                else:
                    density_2d[b, k, m] = r.mass
        elif kind == "field":
            a, b, k, j = where
            field_steps_[a, b, k, j, :, :c.steps[j]] = r.errors
            field_steps_error[a, b, k, j, :, :c.steps[j]] = r.errors_error
        elif kind == "cap":
            cap[tuple(where)], cap_error[tuple(where)] = r.tv, r.tv_error
        elif kind == "fine":
            fine[tuple(where)] = r.distances.sw1
        else:  # pragma: no cover - the plan names no other kind
            raise ValueError(f"unknown plan entry {kind!r}")
    if fine:
        b, k, j = c.weights.index(max(c.weights)), c.schedules.index("flow"), c.steps.index(min(c.steps))
        for (a, m), sw1 in fine.items():
            coarse = arr["sw1"][a, b, k, j, m]
            if math.isfinite(coarse):
                grid_error[a, m] = abs(sw1 / coarse - 1)
    for b, w in enumerate(c.weights):  # the targets drawn beside the densities
        for preset, out in (("paper_1d", target_1d), (fig2, target_2d)):
            if preset in c.presets:
                parts = Law.preset(preset).build()
                d = parts.dim
                r = c.density_range[d - 1]
                out[b] = shared_target(parts.cond, Method("cfg", w).reward(parts), (-r, r, c.density_points[d - 1]),
                                       default_tol(d)).mass.numpy()
    start = np.array([[tuple(_start_tv(pr, sch, c)) for sch in c.schedules] for pr in c.presets])  # [P, K, 2]
    return FlowsResult(c, arr["sw1"], arr["tv"], arr["kl_target_out"], arr["kl_out_target"], arr["lost"], narrow,
                       _mean_over_levels(field_steps_), field_steps_, levels_, start[..., 0], cap, grid_error,
                       *(arr[f"{k}_error"] for k in ("sw1", "tv", "kl_target_out", "kl_out_target")), start[..., 1],
                       cap_error, _mean_over_levels(field_steps_error), density_1d, target_1d, ax1.numpy(), density_2d, target_2d, ax2.numpy())


def compute(quick: bool = False, config: FlowsConfig | None = None, progress: bool = True, *, workers: int = 1,
            cache=None) -> FlowsResult:
    """Every cell of ``config`` (default :data:`QUICK` when ``quick``, else :data:`FULL`) through
    :func:`evaluation.sweep.run_cells` (cached, resumable; ``workers`` local processes), assembled. Deterministic."""
    c = config if config is not None else (QUICK if quick else FULL)
    run = run_cells(cells(c), cache=cache, workers=workers, progress=progress, desc="flows cells")
    return assemble(c, run.results)

# --- verdicts and the key numbers ----------------------------------------------------------------------
Cell = tuple  # (preset, w, schedule, steps)
_CELL_FIELDS = ("preset", "w", "schedule", "steps")


class Verdict(NamedTuple):
    """The claim "``rule`` brings samples closer to the tilted target than ``baseline``", judged cell by cell
    by ``metric``: it holds where ``rule`` is below ``baseline`` by more than ``rtol`` times the baseline, fails
    where it is above by more than that, and is a tie otherwise (``rtol`` covers the grid's discretisation
    error, :attr:`FlowsResult.grid_error`)."""

    claim: str
    rule: str
    baseline: str
    metric: str
    rtol: float
    cells: tuple[Cell, ...]
    rule_values: np.ndarray  # [C]
    baseline_values: np.ndarray  # [C]
    rule_errors: np.ndarray | None = None  # [C] estimated error of each value (nan: none); None: not given
    baseline_errors: np.ndarray | None = None  # [C]

    @property
    def relative(self) -> np.ndarray:
        """``metric(rule) / metric(baseline) - 1`` per cell (negative: closer than the baseline). [C]"""
        return self.rule_values / self.baseline_values - 1

    def outcome(self) -> tuple[str, ...]:
        """``"holds"``, ``"fails"`` or ``"tie"`` per cell."""
        r = self.relative
        return tuple("holds" if x < -self.rtol else "fails" if x > self.rtol else "tie" for x in r)

    def _where(self, kind: str) -> tuple[Cell, ...]:
        return tuple(c for c, o in zip(self.cells, self.outcome()) if o == kind)

    @property
    def holds(self) -> tuple[Cell, ...]:
        return self._where("holds")

    @property
    def fails(self) -> tuple[Cell, ...]:
        return self._where("fails")

    @property
    def ties(self) -> tuple[Cell, ...]:
        return self._where("tie")

    def counts(self, **only) -> dict:
        """Counts of ``holds``/``fails``/``tie`` over the cells matching ``only`` (``preset=``, ``w=``,
        ``schedule=``, ``steps=``; a tuple matches any of its values) and the median relative difference."""
        bad = set(only) - set(_CELL_FIELDS)
        if bad:
            raise ValueError(f"unknown cell fields {sorted(bad)}; choose from {_CELL_FIELDS}")
        want = {k: (v if isinstance(v, tuple) else (v,)) for k, v in only.items()}
        pick = [all(c[_CELL_FIELDS.index(k)] in v for k, v in want.items()) for c in self.cells]
        out = [o for o, keep in zip(self.outcome(), pick) if keep]
        rel = self.relative[np.array(pick, dtype=bool)] if self.cells else np.zeros(0)
        out_ = {"holds": out.count("holds"), "fails": out.count("fails"), "ties": out.count("tie"),
                "median_relative": float(np.median(rel)) if rel.size else math.nan}
        if self.rule_errors is not None and self.baseline_errors is not None:
            # a median of ratios moves by at most the largest first-order error of a ratio
            a, b = self.rule_values, self.baseline_values
            ratio = np.abs(a / b) * (self.rule_errors / np.abs(a) + self.baseline_errors / np.abs(b))
            keep = np.array(pick, dtype=bool) if self.cells else np.zeros(0, dtype=bool)
            out_["median_relative_error"] = float(np.max(ratio[keep])) if keep.any() else math.nan
        return out_


def describe_cells(cells) -> str:
    """A short text for a set of cells ``(preset, w, schedule, steps)``, grouped by preset and weight, e.g.
    ``"correlated_2d w=4: flow_shift (10, 20 steps), vp_ddim (10 steps)"``; ``"none"`` for no cells."""
    groups: dict = {}
    for cell in cells:
        if len(cell) != len(_CELL_FIELDS):
            raise ValueError(f"a cell is {_CELL_FIELDS}, got {cell!r}")
        pr, w, sch, n = cell
        groups.setdefault((pr, w), {}).setdefault(sch, set()).add(n)
    parts = []
    for (pr, w), by_schedule in groups.items():
        scheds = ", ".join(f"{sch} ({', '.join(str(n) for n in sorted(ns))} steps)" for sch, ns in by_schedule.items())
        parts.append(f"{pr} w={w:g}: {scheds}")
    return "; ".join(parts) if parts else "none"


def compare(result: FlowsResult, rule: str, baseline: str = "cfg", *, metric: str = "sw1", rtol: float = 0.1,
            presets=None, claim: str | None = None, max_lost: float = 1e-3) -> Verdict:
    """Judge ``rule`` against ``baseline`` on every defined cell of ``presets`` (default: the 2-D presets,
    where the flow rules do not degenerate), leaving out cells where either law lost more than ``max_lost`` of
    its mass off the grid (their distances would be of a renormalised remainder) and cells where either value has
    no error bound (an infinite error: a 2-D DDPM grid law, see the module docstring)."""
    c = result.config
    for name in (rule, baseline):
        if name not in c.methods:
            raise ValueError(f"method {name!r} was not computed; the result has {c.methods}")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")
    if check_number(rtol, "rtol") < 0 or check_number(max_lost, "max_lost") < 0:
        raise ValueError(f"rtol and max_lost must be >= 0, got {rtol}, {max_lost}")
    if presets is None:
        presets = tuple(p for p in c.presets if Law.preset(p).dim == 2)
    presets = _check_names(presets, c.presets, "presets")
    values = getattr(result, metric)
    errors = getattr(result, f"{metric}_error", np.full(values.shape, math.nan))
    mr, mb = c.methods.index(rule), c.methods.index(baseline)
    cells, rv, bv, re, be = [], [], [], [], []
    for a, pr in enumerate(c.presets):
        for b, w in enumerate(c.weights):
            for k, sch in enumerate(c.schedules):
                for j, n in enumerate(c.steps):
                    x, y = values[a, b, k, j, mr], values[a, b, k, j, mb]
                    lost = max(result.lost[a, b, k, j, mr], result.lost[a, b, k, j, mb])
                    bounded = not (math.isinf(errors[a, b, k, j, mr]) or math.isinf(errors[a, b, k, j, mb]))
                    if pr in presets and math.isfinite(x) and math.isfinite(y) and y > 0 and lost <= max_lost \
                            and bounded:
                        cells.append((pr, w, sch, n))
                        rv.append(x)
                        bv.append(y)
                        re.append(errors[a, b, k, j, mr])
                        be.append(errors[a, b, k, j, mb])
    claim = claim or f"{rule} brings samples closer to the tilted target than {baseline}"
    return Verdict(claim, rule, baseline, metric, float(rtol), tuple(cells), np.array(rv), np.array(bv), np.array(re),
                   np.array(be))


def cfg_zero_star_verdict(result: FlowsResult, *, zero_init: bool = False, metric: str = "sw1",
                          rtol: float = 0.1) -> Verdict:
    """CFG-Zero*'s claim (arXiv 2503.18886) on the 2-D presets: its samples are closer to the target than CFG's."""
    rule = "cfg_zero_star_init" if zero_init else "cfg_zero_star"
    claim = f"CFG-Zero*{' with zero-init' if zero_init else ''} brings samples closer to the tilted target than CFG"
    return compare(result, rule, metric=metric, rtol=rtol, claim=claim)


def apg_verdict(result: FlowsResult, *, momentum: bool = False, metric: str = "sw1", rtol: float = 0.1) -> Verdict:
    """APG's claim (arXiv 2410.02416) on the 2-D presets, read as: closer to the target than CFG at the same ``w``."""
    rule = "apg_momentum" if momentum else "apg"
    claim = f"APG{' with momentum' if momentum else ''} brings samples closer to the tilted target than CFG"
    return compare(result, rule, metric=metric, rtol=rtol, claim=claim)


def closest_rules(result: FlowsResult, metric: str = "sw1") -> np.ndarray:
    """The rule of :data:`RULES` (the optimum excluded) closest to the target in each cell by ``metric``;
    ``""`` where no rule is defined, or a value has no error bound (an infinite error: 2-D DDPM grid laws).
    [P, W, K, S] of str"""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")
    c = result.config
    idx = [m for m, name in enumerate(c.methods) if name in RULES]
    values = getattr(result, metric)[..., idx]
    unbounded = np.isinf(getattr(result, f"{metric}_error")[..., idx]).any(-1, keepdims=True)
    values = np.where(unbounded, math.nan, values)
    out = np.full(values.shape[:-1], "", dtype=object)
    best = np.argmin(np.where(np.isfinite(values), values, np.inf), axis=-1)
    for pos in zip(*np.nonzero(np.isfinite(values).any(-1))):
        out[pos] = c.methods[idx[best[pos]]]
    return out


_FAMILIES = (("flow", ("flow", "flow_shift")), ("vp", ("vp_ddim", "vp_ddpm")))


def summary(result: FlowsResult) -> dict:
    """The key numbers, nested for tables and JSON: which rule is closest where (by sw1 and by TV), the four
    verdicts by schedule, the mean field error, what the starts and the grid cost, and sw1 and TV per cell. Every
    measured number is a ``{"value", "error"}`` leaf (:func:`evaluation.docs.format_number` prints it with its error;
    an error may be ``inf``: no bound), a verdict's median ratio has ``median_relative_error`` beside it; counts are
    integers."""
    c = result.config
    out = {"closest_rule_sw1": {}, "closest_rule_tv": {}, "verdicts_sw1": {}, "verdicts_tv": {},
           "field_error_D_units": {}, "start_and_grid": {}, "sw1": {}, "tv": {}}
    for metric in ("sw1", "tv"):
        best = closest_rules(result, metric)
        for a, pr in enumerate(c.presets):
            for k, sch in enumerate(c.schedules):
                picks = list(best[a, :, k].reshape(-1))
                out[f"closest_rule_{metric}"][f"{pr} / {sch}"] = {r: picks.count(r) for r in RULES if r in c.methods}
        for name, rule in (("cfg_zero_star", "cfg_zero_star"), ("cfg_zero_star_init", "cfg_zero_star_init"),
                           ("apg", "apg"), ("apg_momentum", "apg_momentum")):
            if rule not in c.methods:
                continue
            v = compare(result, rule, metric=metric)
            out[f"verdicts_{metric}"][f"{name} / all"] = v.counts()
            for fam, schs in _FAMILIES:
                out[f"verdicts_{metric}"][f"{name} / {fam}"] = v.counts(schedule=schs)
    for a, pr in enumerate(c.presets):
        for k, sch in enumerate(c.schedules):
            fe, fee = result.field[a, :, k], result.field_error[a, :, k]
            out["field_error_D_units"][f"{pr} / {sch}"] = {
                m: {"value": float(np.nanmean(fe[..., i])), "error": float(np.nanmean(fee[..., i]))}
                if np.isfinite(fe[..., i]).any() else {"value": math.nan, "error": math.nan}
                for i, m in enumerate(c.methods)}
            for j, n in enumerate(c.steps):
                for b, w in enumerate(c.weights):
                    for metric in ("sw1", "tv"):
                        value, error = getattr(result, metric), getattr(result, f"{metric}_error")
                        out[metric][f"{pr} / {sch} / n={n} / w={w:g}"] = {
                            m: {"value": float(value[a, b, k, j, i]), "error": float(error[a, b, k, j, i])}
                            for i, m in enumerate(c.methods)}
        row = {f"start_tv_{sch}": {"value": float(result.start_tv[a, k]), "error": float(result.start_tv_error[a, k])}
               for k, sch in enumerate(c.schedules)}
        top = int(np.argmax(result.cap_tv[a]))
        row.update(cap_tv_max={"value": float(result.cap_tv[a, top]), "error": float(result.cap_tv_error[a, top])},
                   lost_max=float(np.nanmax(result.lost[a])),
                   narrow_ddpm_steps_max=int(result.narrow_steps[a].max()),
                   grid_error_max=float(np.nanmax(result.grid_error[a])) if np.isfinite(result.grid_error[a]).any()
                   else math.nan)
        out["start_and_grid"][pr] = row
    return out


def main(argv=None) -> None:
    """``python -m evaluation.flows``: run the experiment (:data:`FIGURE`, or :data:`QUICK` with ``--quick``)
    through the cell cache and write its key numbers to ``OUT/flows.json``."""
    import argparse
    import json
    from pathlib import Path

    from .io import check_cli_arguments, write_atomically

    ap = argparse.ArgumentParser(prog="python -m evaluation.flows", allow_abbrev=False,
                                 description="Exact guidance rules on flows against VP at matched step counts.")
    ap.add_argument("--quick", action="store_true", help="the QUICK configuration (one step count, coarse grids)")
    ap.add_argument("--out", type=Path, default=Path("out"), help="folder for flows.json (default: out)")
    ap.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    ap.add_argument("--presets", nargs="+", choices=tuple(PRESETS), default=None,
                    help="only these presets (default: the configuration's)")
    args = ap.parse_args(argv)
    check_cli_arguments(ap, args.workers, args.out)
    config = QUICK if args.quick else FIGURE
    if args.presets:
        config = dataclasses.replace(config, presets=tuple(args.presets))
    r = compute(config=config, workers=args.workers)
    path = write_atomically(args.out / "flows.json", json.dumps(summary(r), indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":  # run the package module, so cells are registered under its name (not __main__)
    from evaluation.flows import main as _main

    _main()
