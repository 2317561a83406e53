"""Exact comparison of guidance rules on flows and on VP at matched step counts (issue 14, item 4).

The experiment. On the presets ``paper_1d``, ``correlated_2d`` and ``classes_2d``, for CFG weights ``w`` and
step counts ``n``, the exact output law (:func:`evaluation.density.output_density`, no Monte Carlo) of every
rule of :data:`METHODS` under every schedule of :data:`SCHEDULES`, against the tilted target
``p(x|y) R_0 / Z`` of ``CFGReward(cond, uncond, w)`` at the same ``w`` (:func:`evaluation.distances.tilted_target`),
and the rules' field errors against the exact golden.

Schedules (``n`` denoiser calls each):

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
the state); ``reg_paper`` and ``reg_vjp`` (REG on CFG); ``optimal`` (the reward-tilted posterior mean). In
``d = 1`` CFG-Zero* is the conditional model and APG with ``eta = 0`` is unguided (``sampler.flow_guidance``),
so both papers' claims are judged on the 2-D presets only.

Start. Every rule but the optimum starts from ``N(0, I)`` in the VP coordinates of the first level
(:func:`evaluation.density.vp_start`). On the linear path the first level is ``T_NOISE_CAP = 1 - 1e-4``
(``s_0 = 9999``), where ``u = x~/sqrt(1 + s^2)`` and the flow's state ``x_t = x~/(1 + s)`` agree to 5e-9
relative, so this *is* the flow's start ``x_1 = noise``, moved to the cap; on VP it is the usual
``x_T ~ N(0, I)`` at ``abar_T = 4e-5`` (``s_0 = 157``). The optimum starts from the exact marginal of the tilted
chain, ``p_T(u|y) E_T(u)`` (:func:`evaluation.density.tilted_start`, ``marginal=True``), so its distance to the
target is the sampler's discretisation error alone. What the starts cost is measured, not assumed:
:attr:`FlowsResult.start_tv` (TV between ``N(0, I)`` and the exact conditional marginal at the first level)
and :attr:`FlowsResult.cap_tv` (how far CFG's output moves when the cap goes from ``1 - 1e-4`` to ``1 - 1e-6``).

Distances. TV and both KLs of the grid laws (hat masses) depend on the grid's resolution here: few-step
guided samplers concentrate mass on scales below any affordable 2-D spacing, so TV keeps growing as the grid
is refined (e.g. 0.67 -> 0.83 -> 0.92 for CFG on correlated_2d, w = 4, 10 flow steps, at spacings 0.22,
0.125, 0.062). The sliced Wasserstein-1 distance (:func:`sliced_w1`; the exact W1 in 1-D) changes by a few per
cent over the same refinement, so the verdicts use it; TV and the KLs are reported at the stated spacing.
:attr:`FlowsResult.grid_error` measures the change of ``sw1`` under a 2x refinement on a few cells.

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
No rule is closest everywhere, and flow vs VP is not what decides it: at matched step counts the rules rank
the same on flow and VP levels, except at few steps, where what matters is how many of them sit at high noise.

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

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from analytic import CFGReward, get_preset, optimal_denoiser, optimal_guidance
from analytic.presets import PRESETS
from analytic.quadrature import as_axes, gauss_hermite, grid_points
from sampler import APG, CFG, REG, CFGZeroStar, MixtureModel, TiltedMean, VPSchedule, ZeroInit, bind, zero_init_sigma
from sampler.paths import LINEAR, T_NOISE_CAP, Path, VPPath, sampling_sigmas, shift_times, uniform_times
from sampler.schedules import check_number, sigma_to_abar

from .density import output_density, tilted_start, vp_start
from .distances import distances, tilted_target, total_variation
from .sweep import cell_kind

__all__ = ["SCHEDULES", "METHODS", "RULES", "METRICS", "VP_GEOMETRY", "FlowsConfig", "QUICK", "FIGURE", "FULL",
           "schedule_sigmas", "schedule_path", "schedule_sampler", "make_guidance", "tilted_mean_denoiser",
           "sliced_w1", "CellDistances", "output_law", "output_cell", "conditional_nodes", "field_cell", "FlowsResult",
           "compute", "compute_cell", "Verdict", "describe_cells", "compare", "cfg_zero_star_verdict", "apg_verdict",
           "closest_rules", "summary"]

SCHEDULES = ("flow", "flow_shift", "vp_ddim", "vp_ddpm")
METHODS = ("cfg", "cfg_zero_star", "cfg_zero_star_init", "apg", "apg_momentum", "reg_paper", "reg_vjp", "optimal")
RULES = METHODS[:-1]  # what a user can run without the exact answer
METRICS = ("sw1", "tv", "kl_target_out", "kl_out_target", "field")
VP_GEOMETRY = VPPath(beta_min=0.1, beta_max=40.0)  # covers s up to ~2.2e4; the rules do not depend on the clock
_VP_T = 1000  # the standard DDPM schedule the VP schedules respace
_NARROW = 0.05  # contract levels below which the posterior is narrow enough for few Gauss-Hermite nodes


# --- the configuration ---------------------------------------------------------------------------------
def _check_names(values, known, what) -> tuple:
    values = tuple(values)
    bad = [v for v in values if v not in known]
    if bad:
        raise ValueError(f"unknown {what} {bad}; choose from {tuple(known)}")
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must not repeat, got {values}")
    return values


def _check_count(value, what: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer)) or int(value) != value or value < low:
        raise ValueError(f"{what} must be an integer >= {low}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class FlowsConfig:
    """What :func:`compute` runs: every (preset, weight, schedule, step count, method) cell.

    ``density_range``/``density_points``/``sub``/``field_nodes`` are ``(1-D, 2-D)`` pairs: half-width and nodes
    per dimension of the output grid ``[-r, r]^d`` (VP state at every level; the data at the end; wide enough for
    the excursions of over-guided DDPM chains, whose mass would otherwise leave the grid), sub-points per cell and
    dimension for the deterministic push-forward, and Gauss-Hermite nodes per dimension and mixture component
    for the field errors. The 2-D optimum costs about 1 s per step on the full grid: it runs only at the step
    counts ``optimal_2d_steps`` (nan elsewhere). ``grid_check`` recomputes ``sw1`` on a 2x finer grid for
    every rule at the largest weight, ``flow``, the fewest steps (:attr:`FlowsResult.grid_error`). ``fields``:
    whether to compute the field errors (``False`` leaves them nan; the claims ledger needs only the output
    laws)."""

    presets: tuple[str, ...] = ("paper_1d", "correlated_2d", "classes_2d")
    weights: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    steps: tuple[int, ...] = (10, 20, 50)
    schedules: tuple[str, ...] = SCHEDULES
    methods: tuple[str, ...] = METHODS
    shift: float = 3.0
    apg_momentum: float = -0.5
    zero_init_steps: int = 1
    density_range: tuple[float, float] = (7.0, 6.0)
    density_points: tuple[int, int] = (1401, 61)
    sub: tuple[int, int] = (8, 2)
    field_nodes: tuple[int, int] = (48, 12)
    optimal_2d_steps: tuple[int, ...] = (10,)
    grid_check: bool = True
    fields: bool = True

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        for name, known in (("presets", PRESETS), ("schedules", SCHEDULES), ("methods", METHODS)):
            values = _check_names(getattr(self, name), known, name)
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
        check_number(self.apg_momentum, "apg_momentum")
        zi = _check_count(self.zero_init_steps, "zero_init_steps")
        if zi >= min(steps):
            raise ValueError(f"zero_init_steps={zi} must be below the smallest step count {min(steps)}")
        rng = tuple(self.density_range)
        if len(rng) != 2 or any(check_number(r, "density_range") <= 0 for r in rng):
            raise ValueError(f"density_range is a (1-D, 2-D) pair of half-widths > 0, got {self.density_range}")
        set_("density_range", tuple(float(r) for r in rng))
        for name, low in (("density_points", 3), ("sub", 1), ("field_nodes", 2)):
            pair = tuple(getattr(self, name))
            if len(pair) != 2:
                raise ValueError(f"{name} is a (1-D, 2-D) pair, got {pair}")
            set_(name, tuple(_check_count(v, name, low) for v in pair))
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


QUICK = FlowsConfig(weights=(1.0, 4.0), steps=(10,), density_points=(501, 41), sub=(4, 2), field_nodes=(16, 6),
                    optimal_2d_steps=(), grid_check=False)
FULL = FlowsConfig()
# what ``paper_plots.py`` draws: few and many steps at a moderate and a large weight, on the quick grid, with the
# optimum's law in 1-D only (in 2-D it costs minutes per cell); FULL, every weight and step count on the fine grid
# with the 2-D optimum, is the record: ``compute(config=FULL)``, a long run
FIGURE = FlowsConfig(weights=(1.0, 4.0), steps=(10, 50), density_points=(801, 41), sub=(4, 2), field_nodes=(16, 6),
                     optimal_2d_steps=(), grid_check=False)


# --- schedules and rules -------------------------------------------------------------------------------
def schedule_sigmas(schedule: str, steps: int, shift: float = 3.0) -> torch.Tensor:
    """The contract levels ``schedule`` walks in ``steps`` steps. [steps + 1] float64, ending at 0."""
    steps = _check_count(steps, "steps")
    if schedule == "flow":
        return sampling_sigmas(LINEAR, uniform_times(steps))
    elif schedule == "flow_shift":
        return sampling_sigmas(LINEAR, shift_times(uniform_times(steps), shift))
    elif schedule in ("vp_ddim", "vp_ddpm"):
        return VPSchedule.linear(_VP_T).respace(steps).sampling_sigmas()
    else:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")


def schedule_path(schedule: str) -> Path:
    """The path whose velocity CFG-Zero* and zero-init use under ``schedule``."""
    if schedule in ("flow", "flow_shift"):
        return LINEAR
    elif schedule in ("vp_ddim", "vp_ddpm"):
        return VP_GEOMETRY
    else:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")


def schedule_sampler(schedule: str) -> str:
    """The sampler ``schedule`` runs (``euler`` = DDIM with ``eta = 0``)."""
    if schedule in ("flow", "flow_shift", "vp_ddim"):
        return "euler"
    elif schedule == "vp_ddpm":
        return "ddpm"
    else:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")


def _defined(method: str, schedule: str) -> bool:
    """Whether ``method``'s exact output law exists under ``schedule`` (momentum is trajectory state)."""
    return not (method == "apg_momentum" and schedule_sampler(schedule) != "euler")


def tilted_mean_denoiser(cond, reward):
    """The tilted posterior mean ``m_R(x, s)`` as a denoiser: ``analytic.optimal_denoiser``, except below
    ``s = 0.05``, where the posterior is narrow and the Gauss-Hermite posterior route
    (``optimal_guidance(method="gh")``) meets the same 1e-8 tolerance with at most 32 nodes per dimension, 10-30x
    faster than the dense quadrature the denoiser tries first in 2-D (it falls back to the denoiser if not)."""
    dense = optimal_denoiser(cond, reward)

    def m_R(x: torch.Tensor, s: float) -> torch.Tensor:
        if s < _NARROW:
            a = sigma_to_abar(s)
            try:
                return optimal_guidance(cond, reward, x * math.sqrt(a), a, method="gh", tol=1e-8,
                                        max_nodes=32 if cond.dim == 2 else 256).tilted_mean
            except RuntimeError:
                pass
        return dense(x, s)

    return m_R


def make_guidance(method: str, preset: str, w: float, schedule: str, steps: int, *, shift: float = 3.0,
                  apg_momentum: float = -0.5, zero_init_steps: int = 1):
    """The guided denoiser of ``method`` on ``preset`` at weight ``w`` for ``schedule`` with ``steps`` steps.
    ``apg_momentum`` objects are fresh, so their momentum starts at 0."""
    p = get_preset(preset)
    model = MixtureModel({"c": p.cond, "u": p.uncond})
    c, u = bind(model, "c"), bind(model, "u")
    path = schedule_path(schedule)
    if method == "cfg":
        return CFG(c, u, w)
    elif method == "cfg_zero_star":
        return CFGZeroStar(c, u, w, path)
    elif method == "cfg_zero_star_init":
        sigma_zero = zero_init_sigma(schedule_sigmas(schedule, steps, shift), zero_init_steps)
        return ZeroInit(CFGZeroStar(c, u, w, path), sigma_zero, path)
    elif method == "apg":
        return APG(c, u, w, eta=0.0)
    elif method == "apg_momentum":
        return APG(c, u, w, eta=0.0, momentum=apg_momentum)
    elif method in ("reg_paper", "reg_vjp"):
        return REG(CFG(c, u, w), method[len("reg_"):])
    elif method == "optimal":
        return TiltedMean(c, tilted_mean_denoiser(p.cond, CFGReward(p.cond, p.uncond, w)))
    else:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")


# --- one cell ------------------------------------------------------------------------------------------
def sliced_w1(p: torch.Tensor, q: torch.Tensor, axes, directions: int = 32) -> float:
    """Sliced Wasserstein-1 distance between two laws of node masses on one grid (renormalised): the mean over
    ``directions`` angles ``(j + 1/2) pi / directions`` of the exact W1 of the projected laws; in 1-D the exact
    W1 (one direction). A metric, and stable under grid refinement where TV is not (module docstring)."""
    axes = tuple(torch.as_tensor(a, dtype=torch.float64) for a in as_axes(axes))
    p, q = torch.as_tensor(p, dtype=torch.float64), torch.as_tensor(q, dtype=torch.float64)
    shape = tuple(a.numel() for a in axes)
    if p.shape != shape or q.shape != shape:
        raise ValueError(f"masses must have the grid's shape {shape}, got {tuple(p.shape)} and {tuple(q.shape)}")
    if torch.any(p < -1e-12) or torch.any(q < -1e-12) or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("masses must be non-negative with a positive total")
    directions = _check_count(directions, "directions")
    X = grid_points(axes)  # [N, d]
    diff = (p.clamp(min=0) / p.clamp(min=0).sum() - q.clamp(min=0) / q.clamp(min=0).sum()).reshape(-1)
    if len(axes) == 1:
        thetas = torch.ones(1, 1, dtype=torch.float64)
    else:
        phi = (torch.arange(directions, dtype=torch.float64) + 0.5) * math.pi / directions
        thetas = torch.stack([torch.cos(phi), torch.sin(phi)], 1)  # [J, 2]
    total = 0.0
    for theta in thetas:
        z = X @ theta
        z, order = torch.sort(z, stable=True)
        cdf = torch.cumsum(diff[order], 0)
        total += float((cdf[:-1].abs() * (z[1:] - z[:-1])).sum())
    return total / thetas.shape[0]


class CellDistances(NamedTuple):
    """One output law against the tilted target (TV and KLs at the grid's resolution)."""

    sw1: float  # sliced W1 (exact W1 in 1-D), data units
    tv: float
    kl_target_out: float  # KL(target || output): mass the output misses
    kl_out_target: float  # KL(output || target): mass it puts where the target has none
    lost: float  # mass that left the grid
    narrow_steps: int  # stochastic steps narrower than half a grid spacing (computed with sub-sources)


_UNDEFINED = CellDistances(math.nan, math.nan, math.nan, math.nan, math.nan, 0)


def _config_kwargs(config: FlowsConfig) -> dict:
    return dict(shift=config.shift, apg_momentum=config.apg_momentum, zero_init_steps=config.zero_init_steps)


def _start(method: str, preset: str, w: float, sigma0: float):
    p = get_preset(preset)
    if method == "optimal":
        return tilted_start(p.cond, CFGReward(p.cond, p.uncond, w), sigma_to_abar(sigma0), marginal=True)
    return vp_start(p.cond.dim)


def _target(preset: str, w: float, config: FlowsConfig):
    p = get_preset(preset)
    return tilted_target(p.cond, CFGReward(p.cond, p.uncond, w), config.axes(p.cond.dim))


def output_law(preset: str, w: float, schedule: str, steps: int, method: str, config: FlowsConfig = QUICK,
               estimate_error: bool = True):
    """The exact output law (:class:`evaluation.density.OutputDensity`) of ``method`` on ``preset`` at weight
    ``w`` under ``schedule`` with ``steps`` steps, from its start (module docstring), on ``config``'s grid.
    ``ValueError`` for ``apg_momentum`` under DDPM, whose law is not a push-forward of states."""
    if not isinstance(config, FlowsConfig):
        raise ValueError(f"config must be a FlowsConfig, got {config!r}")
    _check_names((preset,), PRESETS, "preset")
    _check_names((method,), METHODS, "method")
    if not _defined(method, schedule):
        raise ValueError(f"{method!r} carries momentum across steps: its law under {schedule!r} (a stochastic "
                         "sampler) is not a function of the state at each level, so it has no exact grid law")
    d = get_preset(preset).cond.dim
    sigmas = schedule_sigmas(schedule, steps, config.shift)
    g = make_guidance(method, preset, check_number(w, "w"), schedule, steps, **_config_kwargs(config))
    return output_density(g, sigmas, config.axes(d), sampler=schedule_sampler(schedule),
                          start=_start(method, preset, w, sigmas[0].item()), sub=config.sub[d - 1],
                          estimate_error=estimate_error)


def _output(preset: str, w: float, schedule: str, steps: int, method: str, config: FlowsConfig, target
            ) -> tuple[CellDistances, np.ndarray | None]:
    """One cell's distances and output masses (``None`` where the cell is not defined)."""
    if not _defined(method, schedule):
        return _UNDEFINED, None
    od = output_law(preset, w, schedule, steps, method, config, estimate_error=False)
    axes = od.axes
    dist = distances(od.mass, target.mass, axes)
    cell = CellDistances(sliced_w1(od.mass, target.mass, axes), dist.tv, dist.kl_target_out, dist.kl_out_target,
                         od.lost, od.narrow_steps)
    return cell, od.mass.numpy()


def output_cell(preset: str, w: float, schedule: str, steps: int, method: str, config: FlowsConfig = QUICK
                ) -> CellDistances:
    """The exact output law of one cell against the tilted target, on ``config``'s grid; all nan where the
    cell is not defined (``apg_momentum`` under DDPM)."""
    if not isinstance(config, FlowsConfig):
        raise ValueError(f"config must be a FlowsConfig, got {config!r}")
    _check_names((preset,), PRESETS, "preset")
    _check_names((method,), METHODS, "method")
    schedule_sampler(schedule)  # validates the name
    w, steps = check_number(w, "w"), _check_count(steps, "steps", 2)
    return _output(preset, w, schedule, steps, method, config, _target(preset, w, config))[0]


def conditional_nodes(preset: str, sigma: float, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Hermite nodes and weights of ``p_s(x|y)``, the conditional marginal at contract level ``sigma``,
    in contract coordinates: ``n^d`` nodes per mixture component, weights ``pi_k w_j`` summing to 1.
    ``([K n^d, d], [K n^d])``"""
    n = _check_count(n, "n")
    p = get_preset(preset)
    s = check_number(sigma, "sigma")
    if s < 0:
        raise ValueError(f"sigma must be >= 0, got {s}")
    a = sigma_to_abar(s)
    mix = p.cond.noised(a)  # VP coordinates
    z, log_w = gauss_hermite(n, p.cond.dim)
    u = mix.means[:, None, :] + torch.einsum("kij,nj->kni", mix.chol, z)  # [K, n^d, d]
    weights = torch.exp(mix.weights.log()[:, None] + log_w[None])  # [K, n^d]
    return u.reshape(-1, p.cond.dim) / math.sqrt(a), weights.reshape(-1)


def field_cell(preset: str, w: float, schedule: str, steps: int, methods=RULES, config: FlowsConfig = QUICK
               ) -> np.ndarray:
    """Field errors in ``D`` units at every level ``schedule`` visits: ``[len(methods), steps]``, entry
    ``[m, i]`` the mean of ``|D_m(x, s_i) - m_R(x, s_i)|`` (Euclidean) over ``x ~ p_{s_i}(x|y)``, by Gauss-Hermite
    quadrature on each component of the conditional marginal (:func:`conditional_nodes`,
    ``config.field_nodes``), so every level is resolved at its own scale. ``optimal`` is 0 (it is the golden);
    ``apg_momentum`` is nan (state, not a field)."""
    methods = _check_names(methods, METHODS, "methods")
    p = get_preset(preset)
    golden = tilted_mean_denoiser(p.cond, CFGReward(p.cond, p.uncond, w))
    sigmas = schedule_sigmas(schedule, steps, config.shift)
    rules = {m: make_guidance(m, preset, w, schedule, steps, **_config_kwargs(config))
             for m in methods if m not in ("optimal", "apg_momentum")}
    out = np.full((len(methods), steps), math.nan)
    if "optimal" in methods:
        out[methods.index("optimal")] = 0.0
    for i, s in enumerate(sigmas[:-1].tolist()):
        x, weight = conditional_nodes(preset, s, config.field_nodes[p.cond.dim - 1])
        m_R = golden(x, s)
        for m, g in rules.items():
            out[methods.index(m), i] = float((weight * (g(x, s).detach() - m_R).norm(dim=1)).sum())
    return out


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
    return next((p for p in config.presets if get_preset(p).cond.dim == 2), None)


def _cap_tv(preset: str, w: float, steps: int, config: FlowsConfig) -> float:
    """TV between CFG's flow output with the noise end capped at ``T_NOISE_CAP`` and at ``1 - 1e-6``."""
    d = get_preset(preset).cond.dim
    g = make_guidance("cfg", preset, w, "flow", steps)
    out = [output_density(g, sampling_sigmas(LINEAR, uniform_times(steps), cap=cap), config.axes(d), sampler="euler",
                          sub=config.sub[d - 1]).mass for cap in (T_NOISE_CAP, 1 - 1e-6)]
    return total_variation(*out)


def _start_tv(preset: str, schedule: str, config: FlowsConfig) -> float:
    p = get_preset(preset)
    u = grid_points(config.axes(p.cond.dim))
    a = sigma_to_abar(schedule_sigmas(schedule, 2, config.shift)[0].item())
    return total_variation(torch.softmax(vp_start(p.cond.dim)(u), 0), torch.softmax(p.cond.noised(a).log_prob(u), 0))


def _grid_error(preset: str, result_sw1: np.ndarray, config: FlowsConfig) -> np.ndarray:
    """``|sw1(h/2)/sw1(h) - 1|`` per method at (max w, flow, fewest steps); nan where not run."""
    out = np.full(len(config.methods), math.nan)
    if not (config.grid_check and "flow" in config.schedules):
        return out
    fine, w, n = config.refined(), max(config.weights), min(config.steps)
    target = _target(preset, w, fine)
    d = get_preset(preset).cond.dim
    for m, method in enumerate(config.methods):
        coarse = result_sw1[config.weights.index(w), config.schedules.index("flow"), config.steps.index(n), m]
        if math.isfinite(coarse) and (method != "optimal" or config.runs_optimal(d, n)):
            out[m] = abs(_output(preset, w, "flow", n, method, fine, target)[0].sw1 / coarse - 1)
    return out


def _levels_key(schedule: str) -> str:
    """Schedules that visit the same levels with the same rules share field errors."""
    return "vp" if schedule in ("vp_ddim", "vp_ddpm") else schedule


def _mean_over_levels(per_level: np.ndarray) -> np.ndarray:
    """nan-padded ``[..., L]`` -> ``[...]``: the mean over the finite entries (nan where there are none)."""
    ok = np.isfinite(per_level)
    count = ok.sum(-1)
    return np.where(count > 0, np.where(ok, per_level, 0.0).sum(-1) / np.maximum(count, 1), math.nan)


def compute(quick: bool = False, config: FlowsConfig | None = None, progress: bool = True) -> FlowsResult:
    """Run every cell of ``config`` (default :data:`QUICK` when ``quick``, else :data:`FULL`). Deterministic."""
    c = config if config is not None else (QUICK if quick else FULL)
    if not isinstance(c, FlowsConfig):
        raise ValueError(f"config must be a FlowsConfig, got {c!r}")
    P, W, K, S, M, L = len(c.presets), len(c.weights), len(c.schedules), len(c.steps), len(c.methods), max(c.steps)
    shape = (P, W, K, S, M)
    arr = {k: np.full(shape, math.nan) for k in ("sw1", "tv", "kl_target_out", "kl_out_target", "lost")}
    narrow = np.zeros(shape, dtype=int)
    field_steps = np.full(shape + (L,), math.nan)
    levels = np.full((K, S, L), math.nan)
    for k, sch in enumerate(c.schedules):
        for j, n in enumerate(c.steps):
            levels[k, j, :n] = schedule_sigmas(sch, n, c.shift)[:-1].numpy()
    n_min, fig2 = min(c.steps), _first_2d(c)
    ax1, ax2 = c.axes(1)[0], c.axes(2)[0]
    n1, n2 = (ax1.numel() if "paper_1d" in c.presets else 0), (ax2.numel() if fig2 else 0)
    density_1d, target_1d = np.full((W, K, M, n1), math.nan), np.full((W, n1), math.nan)
    density_2d, target_2d = np.full((W, K, M, n2, n2), math.nan), np.full((W, n2, n2), math.nan)
    grid_error = np.full((P, M), math.nan)
    for a, preset in enumerate(tqdm(c.presets, desc="flows presets", disable=not progress)):
        d = get_preset(preset).cond.dim
        for b, w in enumerate(tqdm(c.weights, desc=preset, leave=False, disable=not progress)):
            target = _target(preset, w, c)
            if preset == "paper_1d":
                target_1d[b] = target.mass.numpy()
            if preset == fig2:
                target_2d[b] = target.mass.numpy()
            fields = {}
            for k, sch in enumerate(c.schedules):
                for j, n in enumerate(c.steps):
                    for m, method in enumerate(c.methods):
                        if method == "optimal" and not c.runs_optimal(d, n):
                            continue
                        cell, mass = _output(preset, w, sch, n, method, c, target)
                        for key in arr:
                            arr[key][a, b, k, j, m] = getattr(cell, key)
                        narrow[a, b, k, j, m] = cell.narrow_steps
                        if n == n_min and mass is not None:
                            if preset == "paper_1d":
                                density_1d[b, k, m] = mass
                            if preset == fig2:
                                density_2d[b, k, m] = mass
                    key = (_levels_key(sch), n)
                    if not c.fields:
                        continue
                    if key not in fields:
                        fields[key] = field_cell(preset, w, sch, n, c.methods, c)
                    field_steps[a, b, k, j, :, :n] = fields[key]
        grid_error[a] = _grid_error(preset, arr["sw1"][a], c)
    start_tv = np.array([[_start_tv(pr, sch, c) for sch in c.schedules] for pr in c.presets])
    cap_tv = np.array([[_cap_tv(pr, w, n_min, c) for w in c.weights] for pr in c.presets])
    return FlowsResult(c, arr["sw1"], arr["tv"], arr["kl_target_out"], arr["kl_out_target"], arr["lost"], narrow,
                       _mean_over_levels(field_steps), field_steps, levels, start_tv, cap_tv, grid_error,
                       density_1d, target_1d, ax1.numpy(), density_2d, target_2d, ax2.numpy())


@cell_kind(FlowsConfig, modules=("evaluation.density", "evaluation.distances"))
def compute_cell(config: FlowsConfig) -> FlowsResult:
    """:func:`compute` of ``config`` as a sweep cell (:mod:`evaluation.sweep`): a ``FlowsConfig`` is its own cache
    key, so the claims ledger runs and caches this experiment like any other cell."""
    return compute(config=config, progress=False)


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
        return {"holds": out.count("holds"), "fails": out.count("fails"), "ties": out.count("tie"),
                "median_relative": float(np.median(rel)) if rel.size else math.nan}


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
    its mass off the grid (their distances would be of a renormalised remainder)."""
    c = result.config
    for name in (rule, baseline):
        if name not in c.methods:
            raise ValueError(f"method {name!r} was not computed; the result has {c.methods}")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")
    if check_number(rtol, "rtol") < 0 or check_number(max_lost, "max_lost") < 0:
        raise ValueError(f"rtol and max_lost must be >= 0, got {rtol}, {max_lost}")
    if presets is None:
        presets = tuple(p for p in c.presets if get_preset(p).cond.dim == 2)
    presets = _check_names(presets, c.presets, "presets")
    values = getattr(result, metric)
    mr, mb = c.methods.index(rule), c.methods.index(baseline)
    cells, rv, bv = [], [], []
    for a, pr in enumerate(c.presets):
        for b, w in enumerate(c.weights):
            for k, sch in enumerate(c.schedules):
                for j, n in enumerate(c.steps):
                    x, y = values[a, b, k, j, mr], values[a, b, k, j, mb]
                    lost = max(result.lost[a, b, k, j, mr], result.lost[a, b, k, j, mb])
                    if pr in presets and math.isfinite(x) and math.isfinite(y) and y > 0 and lost <= max_lost:
                        cells.append((pr, w, sch, n))
                        rv.append(x)
                        bv.append(y)
    claim = claim or f"{rule} brings samples closer to the tilted target than {baseline}"
    return Verdict(claim, rule, baseline, metric, float(rtol), tuple(cells), np.array(rv), np.array(bv))


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
    ``""`` where no rule is defined. [P, W, K, S] of str"""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")
    c = result.config
    idx = [m for m, name in enumerate(c.methods) if name in RULES]
    values = getattr(result, metric)[..., idx]
    out = np.full(values.shape[:-1], "", dtype=object)
    best = np.argmin(np.where(np.isfinite(values), values, np.inf), axis=-1)
    for pos in zip(*np.nonzero(np.isfinite(values).any(-1))):
        out[pos] = c.methods[idx[best[pos]]]
    return out


_FAMILIES = (("flow", ("flow", "flow_shift")), ("vp", ("vp_ddim", "vp_ddpm")))


def summary(result: FlowsResult) -> dict:
    """The key numbers, nested for tables and JSON: which rule is closest where (by sw1 and by TV), the four
    verdicts by schedule, the mean field error, what the starts and the grid cost, and sw1 and TV per cell."""
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
            fe = result.field[a, :, k]
            out["field_error_D_units"][f"{pr} / {sch}"] = {
                m: float(np.nanmean(fe[..., i])) if np.isfinite(fe[..., i]).any() else math.nan
                for i, m in enumerate(c.methods)}
            for j, n in enumerate(c.steps):
                for b, w in enumerate(c.weights):
                    for metric in ("sw1", "tv"):
                        out[metric][f"{pr} / {sch} / n={n} / w={w:g}"] = {
                            m: float(getattr(result, metric)[a, b, k, j, i]) for i, m in enumerate(c.methods)}
        row = {f"start_tv_{sch}": float(result.start_tv[a, k]) for k, sch in enumerate(c.schedules)}
        row.update(cap_tv_max=float(np.max(result.cap_tv[a])), lost_max=float(np.nanmax(result.lost[a])),
                   narrow_ddpm_steps_max=int(result.narrow_steps[a].max()),
                   grid_error_max=float(np.nanmax(result.grid_error[a])) if np.isfinite(result.grid_error[a]).any()
                   else math.nan)
        out["start_and_grid"][pr] = row
    return out
