"""Figure: where CFG is exact, where REG helps and where it hurts, from the single-Gaussian closed forms.

Conditional N(1, s_c^2) against unconditional N(0, s_u^2) with s_u = 0.5, ideal chain: the ratio of REG's
to CFG's relative weighted RMS gap over (abar, r = s_c^2 / s_u^2) for several w (analytic.symbolic). One cached
cell of :mod:`evaluation.sweep` per weight (:class:`evaluation.findings.ClosedFormCell`, the cells protocol of
:mod:`figures`). The published fractions are exact counts of closed-form signs on the grid; their error is the share
of grid points whose sign float64 cannot decide (within :data:`evaluation.findings.UNDECIDED` of zero), 0 when
every sign is decided.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import matplotlib.patches as mpatches
import matplotlib.patheffects as mpe
import matplotlib.pyplot as plt
import numpy as np

from evaluation.findings import ClosedFormCell
from evaluation.sweep import run_cells

from .style import save, style

NAME = "closed_forms"
CAPTION = ("Single Gaussians in closed form: log10(REG gap / CFG gap) over noise level and variance ratio "
           "r = s_c^2/s_u^2 (blue: REG closer to the optimum; grey hatched: E_t infinite; white-dotted black line: "
           "r = 1, where CFG is exact); dashed lines are the "
           "derived boundaries r = (1+w)/(2+w) and r = (1+2w)/(2+2w). The fractions are exact counts over the grid "
           "(error: the share of points whose sign float64 cannot decide).")
WEIGHTS = (0.5, 1.0, 3.0)
S_U = 0.5
POINTS = {False: 60, True: 25}  # grid points per axis (full, quick)


@dataclass(frozen=True)
class ClosedForms:
    abar: np.ndarray  # [A]
    ratio: np.ndarray  # [R]
    log_ratio: dict  # w -> [R, A] log10(rel_gap_reg / rel_gap_cfg), nan where undefined
    diverges: dict  # w -> [R, A] bool, E_t infinite
    undecided: dict  # w -> [R, A] bool, a sign within evaluation.findings.UNDECIDED of zero


def _cells(quick: bool) -> dict:
    """{w: its cell}."""
    return {w: ClosedFormCell(w, 1.0, 0.0, S_U, POINTS[bool(quick)]) for w in WEIGHTS}


def cells(quick: bool = False) -> list:
    """The figure's cells (the cells protocol of :mod:`figures`)."""
    return list(_cells(quick).values())


@functools.cache
def compute(quick: bool = False) -> ClosedForms:
    one = _cells(quick)
    res = dict(zip(one, run_cells(list(one.values()), progress=False).results))
    r0 = res[WEIGHTS[0]]
    return ClosedForms(r0.abar, r0.ratio, {w: r.log_ratio for w, r in res.items()},
                       {w: r.diverges for w, r in res.items()}, {w: r.undecided for w, r in res.items()})


def summary(c: ClosedForms) -> dict:
    """Per weight, the share of the (finite-E_t) grid where REG is closer than CFG and the share where E_t is
    infinite, each with its error (the share of points whose sign is undecided in float64)."""
    out = {}
    for w in WEIGHTS:
        ok, und = ~c.diverges[w], c.undecided[w]
        out[f"w={w}"] = {"fraction_reg_better": {"value": float((c.log_ratio[w][ok] < 0).mean()),
                                                 "error": float(und[ok].mean())},
                         "fraction_diverging": {"value": float(c.diverges[w].mean()), "error": float(und.mean())}}
    return out


# r = 1 lies on the band where CFG is exact and the ratio saturates dark red: a black dotted line vanished in it,
# white dots outlined in black show on the dark band and on the pale colours alike (the key draws the same line)
R_ONE = {"color": "w", "ls": ":", "lw": 1.4, "path_effects": [mpe.withStroke(linewidth=2.6, foreground="k")]}


def plot(c: ClosedForms, out_dir: Path) -> list[Path]:
    with style():
        fig, axes = plt.subplots(1, len(WEIGHTS), figsize=(11, 3.6), sharey=True)
        for ax, w in zip(axes, WEIGHTS):
            im = ax.pcolormesh(c.abar, c.ratio, np.clip(c.log_ratio[w], -2, 2), cmap="RdBu_r", vmin=-2, vmax=2,
                               shading="auto")
            if c.diverges[w].any():
                ax.contourf(c.abar, c.ratio, c.diverges[w].astype(float), levels=[0.5, 1.5], colors=["0.75"],
                            hatches=["///"])
            for r in ((1 + w) / (2 + w), (1 + 2 * w) / (2 + 2 * w)):
                ax.axhline(r, color="k", ls="--", lw=0.8)
            ax.axhline(1.0, **R_ONE)
            ax.set_yscale("log")
            ax.set_yticks([0.1, 0.2, 0.5, 1, 2, 3], ["0.1", "0.2", "0.5", "1", "2", "3"])
            ax.set_xlabel("abar")
            ax.set_title(f"w = {w}")
            ax.grid(False)
        axes[0].set_ylabel("r = $s_c^2 / s_u^2$")
        fig.colorbar(im, ax=axes.tolist(), label="log10(REG gap / CFG gap)\n(blue: REG closer, red: CFG closer)")
        key = [mpatches.Patch(facecolor="0.75", hatch="///", label="$E_t$ infinite (no optimum)"),
               plt.Line2D([], [], color="k", ls="--", lw=0.8, label="r = (1+w)/(2+w) and r = (1+2w)/(2+2w)"),
               plt.Line2D([], [], **R_ONE, label="r = 1: CFG exact")]
        fig.legend(handles=key, loc="lower center", bbox_to_anchor=(0.45, -0.12), ncol=3, fontsize=7)
        return save(fig, out_dir, NAME)
