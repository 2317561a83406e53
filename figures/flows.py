"""Figure: guidance rules on flows against VP at matched step counts (issue 14, item 4).

Everything is :func:`evaluation.flows.compute` (exact output laws, sliced W1 to the tilted target, field errors
in ``D`` units); this module only draws it. Panels: (a) paper_1d output densities, flow Euler against VP DDIM;
(b, c) the first 2-D preset's output laws under flow Euler and VP DDIM at the largest weight; (d) sliced W1 to
the target against ``w`` and (e) against the step count, mean over the 2-D presets; (f) field errors per level.
"""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from evaluation import flows
from evaluation.flows import FlowsResult
from evaluation.spec import Method

from .style import COLORS, save, style

NAME = "flows"
CAPTION = ("Guidance on flows vs VP, exact: output laws, sliced W1 to the tilted target p(x|y) R_0 / Z and field "
           "errors (D units) of CFG, CFG-Zero* (+ zero-init), APG (+ momentum), REG and the optimum under flow Euler "
           "(uniform and SD3-shifted t) and VP DDIM / DDPM at matched step counts.")
SHOWN = ("cfg", "cfg_zero_star", "cfg_zero_star_init", "apg", "apg_momentum", "cfg,reg=paper", "cfg,reg=vjp", "optimal")
COLOR = {"cfg": COLORS["cfg"], "cfg_zero_star": "#2ca02c", "cfg_zero_star_init": "#98df8a", "apg": "#9467bd",
         "apg_momentum": "#c5b0d5", "cfg,reg=paper": COLORS["reg_paper"], "cfg,reg=vjp": COLORS["reg_vjp"],
         "optimal": COLORS["golden"]}
LINE = {"flow": "-", "flow_shift": ":", "vp_ddim": "--", "vp_ddpm": "-."}


@functools.cache
def compute(quick: bool = False) -> FlowsResult:
    return flows.compute(config=flows.QUICK if quick else flows.FIGURE)


def summary(r: FlowsResult) -> dict:
    return flows.summary(r)


def _mean_2d(r: FlowsResult, arr: np.ndarray) -> np.ndarray:
    """Mean over the 2-D presets of ``arr [P, ...]`` (nan where any is nan)."""
    rows = [i for i, p in enumerate(r.config.presets) if p != "paper_1d"]
    return arr[rows].mean(0) if rows else np.full(arr.shape[1:], np.nan)


def _density_panel(ax, r: FlowsResult, k: int, title: str) -> None:
    c = r.config
    x = r.axis_2d
    X, Y = np.meshgrid(x, x, indexing="ij")
    b = len(c.weights) - 1
    ax.contourf(X, Y, r.target_2d[b], levels=8, cmap="Greys")
    for name in ("cfg", "cfg_zero_star", "apg", "cfg,reg=vjp"):
        if name in c.methods:
            mass = r.density_2d[b, k, c.methods.index(name)]
            if np.isfinite(mass).all() and mass.max() > 0:
                ax.contour(X, Y, mass, levels=[0.25 * mass.max()], colors=[COLOR[name]], linewidths=1.0)
                ax.plot([], [], color=COLOR[name], label=Method.parse(name).label)
    ax.set_xlim(-1.5, 3.0)
    ax.set_ylim(-1.5, 2.5)
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=6)


def _curves(ax, r: FlowsResult, schedules, xy, marker="o") -> None:
    """One line per rule and schedule: ``xy(m, k) -> (xs, ys)`` for method index ``m`` and schedule index ``k``."""
    c = r.config
    for name in SHOWN[:-1]:
        if name in c.methods:
            for sch in schedules:
                xs, ys = xy(c.methods.index(name), c.schedules.index(sch))
                ax.plot(xs, ys, LINE[sch], marker=marker, ms=3, color=COLOR[name],
                        label=Method.parse(name).label if sch == schedules[0] else None)


def plot(r: FlowsResult, out_dir: Path) -> list[Path]:
    c = r.config
    j0 = int(np.argmin(c.steps))
    schedules = [s for s in ("flow", "flow_shift", "vp_ddim") if s in c.schedules]
    styles = ", ".join(f"{LINE[s]} {s}" for s in schedules)
    with style():
        fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
        ax = axes[0, 0]
        if r.density_1d.size and 1.0 in c.weights:
            b = c.weights.index(1.0)
            h = r.axis_1d[1] - r.axis_1d[0]
            ax.fill_between(r.axis_1d, r.target_1d[b] / h, color="0.85", label="tilted target")
            for sch in ("flow", "vp_ddim"):
                for name in ("cfg", "cfg,reg=vjp", "optimal"):
                    if name in c.methods and sch in c.schedules:
                        ax.plot(r.axis_1d, r.density_1d[b, c.schedules.index(sch), c.methods.index(name)] / h,
                                LINE[sch], color=COLOR[name], lw=1.0, label=f"{Method.parse(name).label}, {sch}")
            ax.set_xlim(-1, 3)
            ax.set_title(f"paper_1d, w = 1, {min(c.steps)} steps")
            ax.set_xlabel("$x_0$")
            ax.legend(fontsize=6)
        fig2 = next((p for p in c.presets if p != "paper_1d"), None)
        for ax, sch in zip(axes[0, 1:], ("flow", "vp_ddim")):
            if fig2 and sch in c.schedules:
                _density_panel(ax, r, c.schedules.index(sch),
                               f"{fig2}, w = {c.weights[-1]:g}, {sch}, {min(c.steps)} steps (25% contour)")
        _curves(axes[1, 0], r, schedules, lambda m, k: (c.weights, _mean_2d(r, r.sw1[:, :, k, j0, m])))
        axes[1, 0].set_xlabel("w")
        axes[1, 0].set_title(f"{min(c.steps)} steps ({styles})")
        _curves(axes[1, 1], r, schedules, lambda m, k: (c.steps, _mean_2d(r, r.sw1[:, :, k, :, m]).mean(0)))
        axes[1, 1].set_xlabel("steps")
        axes[1, 1].set_title(f"mean over w ({styles})")
        for ax in axes[1, :2]:
            ax.set_ylabel("sliced W1 to the target (mean of 2-D presets)")
        axes[1, 0].legend(fontsize=6)
        ax = axes[1, 2]
        if not np.isfinite(r.field_steps).any():  # FlowsConfig(fields=False), as the claims ledger runs it
            ax.text(0.5, 0.5, "field errors not computed\n(FlowsConfig.fields = False)", ha="center", va="center")
            ax.set_axis_off()
        elif fig2:
            a, b = c.presets.index(fig2), len(c.weights) - 1
            _curves(ax, r, schedules, lambda m, k: (r.levels[k, j0], r.field_steps[a, b, k, j0, m]), marker=".")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("contract level s (the sampler visits the markers)")
            ax.set_ylabel("mean |D - m_R| under p_s(x|y)")
            ax.set_title(f"field errors, {fig2}, w = {c.weights[-1]:g}, {min(c.steps)} steps")
            ax.legend(fontsize=6)
        fig.tight_layout()
        return save(fig, out_dir, NAME)
