"""Figure: guidance rules on flows against VP at matched step counts (issue 14, item 4).

Everything is :func:`evaluation.flows.compute` (exact output laws, sliced W1 to the tilted target, field errors
in ``D`` units); this module only draws it. Panels: (a) paper_1d output densities, flow Euler against VP DDIM;
(b, c) the first 2-D preset's output laws under flow Euler and VP DDIM at the largest weight; (d) sliced W1 to
the target against ``w`` and (e) against the step count, mean over the 2-D presets; (f) field errors per level.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from evaluation import flows
from evaluation.flows import FlowsResult
from evaluation.spec import Method
from evaluation.sweep import run_cells

from .style import COLORS, save, style

NAME = "flows"
CAPTION = ("Guidance on flows vs VP, exact: output laws, sliced W1 to the tilted target p(x|y) R_0 / Z and field "
           "errors (D units) of CFG, CFG-Zero* (+ zero-init), APG (+ momentum), REG and the optimum under flow Euler "
           "(uniform and SD3-shifted t) and VP DDIM / DDPM at matched step counts. Lower sliced W1 is closer to the "
           "target; a rule helps where its line lies below CFG's. Every number carries its estimated error: the "
           "deterministic samplers' sliced W1 is converged (no output grid) and so is the 1-D DDPM one; TV, and the "
           "2-D DDPM sliced W1, are of the output law on the drawn grid, with errors far above the tolerance (these "
           "near-singular outputs do not converge within the node budget) and infinite under 2-D DDPM (its noise "
           "steps are narrower than the grid). With --quick: flow Euler and VP DDIM only, 10 steps.")
SHOWN = ("cfg", "cfg_zero_star", "cfg_zero_star_init", "apg", "apg_momentum", "cfg,reg=paper", "cfg,reg=vjp", "optimal")
COLOR = {"cfg": COLORS["cfg"], "cfg_zero_star": "#2ca02c", "cfg_zero_star_init": "#17becf", "apg": "#9467bd",
         "apg_momentum": "#8c564b", "cfg,reg=paper": COLORS["reg_paper"], "cfg,reg=vjp": COLORS["reg_vjp"],
         "optimal": COLORS["golden"]}
# one marker per rule as well as a colour: the bottom panels draw up to 21 lines (7 rules x 3 schedules)
MARKER = {"cfg": "o", "cfg_zero_star": "s", "cfg_zero_star_init": "D", "apg": "^", "apg_momentum": "v",
          "cfg,reg=paper": "P", "cfg,reg=vjp": "X", "optimal": "*"}
LINE = {"flow": "-", "flow_shift": ":", "vp_ddim": "--", "vp_ddpm": "-."}
SCHEDULE = {"flow": "flow Euler", "flow_shift": "flow Euler, shifted t", "vp_ddim": "VP DDIM", "vp_ddpm": "VP DDPM"}


def cells(quick: bool = False) -> list:
    """The figure's cells (the cells protocol of :mod:`figures`): every output law, field table and check of the
    flows experiment's configuration, cells of :mod:`evaluation.sweep` cached like the ledger's."""
    return flows.cells(_config(quick))


QUICK_SCHEDULES = ("flow", "vp_ddim")  # --quick: flow Euler against VP DDIM only (half the cells: a fast look)


def _config(quick: bool) -> flows.FlowsConfig:
    return dataclasses.replace(flows.QUICK, schedules=QUICK_SCHEDULES) if quick else flows.FIGURE


@functools.cache
def compute(quick: bool = False) -> FlowsResult:
    return flows.assemble(_config(quick), run_cells(cells(quick), progress=False).results)


def summary(r: FlowsResult) -> dict:
    return flows.summary(r)


def conclusion(r: FlowsResult) -> str:
    """In how many 2-D cells (preset x weight x schedule x steps) each rule is closer to the target than CFG."""
    c = r.config
    rows = [i for i, p in enumerate(c.presets) if p != "paper_1d"]
    if not rows:
        return ""
    base = r.sw1[rows][..., c.methods.index("cfg")]
    parts = []
    for m in c.methods:
        if m in ("cfg", "optimal"):
            continue
        v = r.sw1[rows][..., c.methods.index(m)]
        ok = np.isfinite(v) & np.isfinite(base)
        parts.append(f"{Method.parse(m).label} {int((v[ok] < base[ok]).sum())}/{int(ok.sum())}")
    return "Cells (2-D presets) where a rule's sliced W1 is below CFG's: " + ", ".join(parts) + "."


def _smooth(axis: np.ndarray, mass: np.ndarray, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The grid law drawn smoothly: cubic-spline upsampling ``k`` times per axis (display only; the numbers are the
    grid's)."""
    from scipy.ndimage import zoom

    fine = np.linspace(axis[0], axis[-1], k * (len(axis) - 1) + 1)
    return fine, np.clip(zoom(mass, (len(fine) / len(axis),) * 2, order=3, grid_mode=False), 0, None)


def _mean_2d(r: FlowsResult, arr: np.ndarray) -> np.ndarray:
    """Mean over the 2-D presets of ``arr [P, ...]`` (nan where any is nan)."""
    rows = [i for i, p in enumerate(r.config.presets) if p != "paper_1d"]
    return arr[rows].mean(0) if rows else np.full(arr.shape[1:], np.nan)


def _density_panel(ax, r: FlowsResult, k: int, title: str) -> None:
    c = r.config
    b = len(c.weights) - 1
    x, tgt = _smooth(r.axis_2d, r.target_2d[b])
    X, Y = np.meshgrid(x, x, indexing="ij")
    ax.contourf(X, Y, tgt, levels=8, cmap="Greys")
    for name in ("cfg", "cfg_zero_star", "apg", "cfg,reg=vjp"):
        if name in c.methods:
            mass = r.density_2d[b, k, c.methods.index(name)]
            if np.isfinite(mass).all() and mass.max() > 0:
                _, fine = _smooth(r.axis_2d, mass)
                ax.contour(X, Y, fine, levels=[0.25 * fine.max()], colors=[COLOR[name]], linewidths=1.2)
                ax.plot([], [], color=COLOR[name], label=Method.parse(name).label)
    ax.set_xlim(-1.5, 3.0)
    ax.set_ylim(-1.5, 2.5)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=6, title="grey: target", title_fontsize=6)


def _curves(ax, r: FlowsResult, schedules, xy, ms: float = 3.5) -> None:
    """One line per rule and schedule: ``xy(m, k) -> (xs, ys)`` for method index ``m`` and schedule index ``k``."""
    c = r.config
    for name in SHOWN[:-1]:
        if name in c.methods:
            for sch in schedules:
                xs, ys = xy(c.methods.index(name), c.schedules.index(sch))
                ax.plot(xs, ys, LINE[sch], marker=MARKER[name], ms=ms, color=COLOR[name], lw=1.0,
                        label=Method.parse(name).label if sch == schedules[0] else None)


def plot(r: FlowsResult, out_dir: Path) -> list[Path]:
    c = r.config
    j0 = int(np.argmin(c.steps))
    schedules = [s for s in ("flow", "flow_shift", "vp_ddim") if s in c.schedules]
    fields = bool(np.isfinite(r.field_steps).any())  # FlowsConfig(fields=False), as the claims ledger runs it
    with style():
        fig, axes = plt.subplots(2, 3, figsize=(14, 8), layout="constrained")
        ax = axes[0, 0]
        if r.density_1d.size and 1.0 in c.weights:
            b = c.weights.index(1.0)
            h = r.axis_1d[1] - r.axis_1d[0]
            ax.fill_between(r.axis_1d, r.target_1d[b] / h, color="0.85", label="tilted target")
            for sch in ("flow", "vp_ddim"):
                for name in ("cfg", "cfg,reg=vjp", "optimal"):
                    if name in c.methods and sch in c.schedules:
                        ax.plot(r.axis_1d, r.density_1d[b, c.schedules.index(sch), c.methods.index(name)] / h,
                                LINE[sch], color=COLOR[name], lw=1.0,
                                label=f"{Method.parse(name).label}, {SCHEDULE[sch]}")
            ax.set_xlim(-1, 3)
            top = 1.6 * (r.target_1d[b] / h).max()
            ax.set_ylim(0, top)  # a spike of a concentrated output would flatten every other curve
            clipped = any((np.asarray(line.get_ydata(), float) > top).any() for line in ax.get_lines())
            ax.set_title(f"paper_1d, w = 1, {min(c.steps)} steps"
                         + (f"\n(density clipped at {top:.2g}, 1.6x the target's peak)" if clipped else ""))
            ax.set_xlabel("$x_0$")
            ax.set_ylabel("output density")
            ax.legend(fontsize=6)
        else:
            ax.set_axis_off()
            ax.text(0.5, 0.5, "paper_1d (or w = 1) is not in this run", ha="center", va="center",
                    transform=ax.transAxes)
        fig2 = next((p for p in c.presets if p != "paper_1d"), None)
        for ax, sch in zip(axes[0, 1:], ("flow", "vp_ddim")):
            if fig2 and sch in c.schedules:
                _density_panel(ax, r, c.schedules.index(sch),
                               f"{fig2}, w = {c.weights[-1]:g}, {SCHEDULE[sch]}, {min(c.steps)} steps\n"
                               "outputs' 25% contours")
            else:
                ax.set_axis_off()
        _curves(axes[1, 0], r, schedules, lambda m, k: (c.weights, _mean_2d(r, r.sw1[:, :, k, j0, m])))
        axes[1, 0].set_xlabel("w")
        axes[1, 0].set_title(f"{min(c.steps)} steps")
        _curves(axes[1, 1], r, schedules, lambda m, k: (c.steps, _mean_2d(r, r.sw1[:, :, k, :, m]).mean(0)))
        axes[1, 1].set_xlabel("steps")
        axes[1, 1].set_title("mean over w")
        for ax in axes[1, :2]:
            ax.set_ylabel("sliced W1 to the target\n(data units, mean of the 2-D presets)")
        handles, labels = axes[1, 0].get_legend_handles_labels()
        handles += [plt.Line2D([], [], color="0.3", ls=LINE[s]) for s in schedules]
        labels += [SCHEDULE[s] for s in schedules]
        ax = axes[1, 2]
        if fields and fig2:
            a, b = c.presets.index(fig2), len(c.weights) - 1
            _curves(ax, r, schedules, lambda m, k: (r.levels[k, j0], r.field_steps[a, b, k, j0, m]), ms=2.5)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("contract level s (the sampler visits the markers)")
            ax.set_ylabel("mean |D - m_R| under p_s(x|y) (data units)")
            ax.set_title(f"field errors, {fig2}, w = {c.weights[-1]:g}, {min(c.steps)} steps")
            # the key below the figure: inside a panel it covered lines
            fig.legend(handles, labels, loc="outside lower center", fontsize=7, ncol=len(handles) // 2 + 1,
                       title="rule (colour and marker), schedule (line)", title_fontsize=7)
        else:  # no field errors (the claims ledger's run): the panel holds the key instead of an empty plot
            ax.set_axis_off()
            ax.legend(handles, labels, loc="center", fontsize=8, title="rule (colour), schedule (line)")
        return save(fig, out_dir, NAME)
