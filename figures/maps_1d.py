"""Figure: (x, t) maps of |golden - CFG| and |golden - REG| on one colour scale (the paper's Figure 5),
for the exact mixture (ideal and sampler-chain goldens) and for the shipped trained networks."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from . import curves_1d, trained_1d
from .style import save, style

NAME = "maps_1d"
USES = ("curves_1d", "trained_1d")  # their arrays (paper_plots computes them in the same process)
CAPTION = ("|golden - CFG| and |golden - REG| over (x_t, t) on the paper's 1-D toy, one colour scale; rows: exact "
           "mixture against the ideal-chain golden, against the 20-step sampler chain, and the trained networks "
           "against their own chain's exact grid golden.")


@dataclass(frozen=True)
class Maps1D:
    exact: curves_1d.Curves1D
    trained: trained_1d.Trained1D


def compute(quick: bool = False) -> Maps1D:
    return Maps1D(curves_1d.compute(quick), trained_1d.compute(quick))  # both cached: shared with their figures


def _rows(m: Maps1D):
    e, t = m.exact, m.trained
    return (("ideal", e.x, e.golden, e.cfg, e.reg), ("sampler chain", e.x, e.chain, e.cfg, e.reg),
            ("trained", t.x, t.grid_golden, t.cfg, t.reg))


def summary(m: Maps1D) -> dict:
    return {f"max_abs_gap_{name.replace(' ', '_')}": {"cfg": float(np.abs(g - c).max()), "reg": float(np.abs(g - r).max())}
            for name, _, g, c, r in _rows(m)}


def conclusion(m: Maps1D) -> str:
    """Per row, the largest gap of CFG and of REG (exact goldens: quadrature errors far below the digits shown)."""
    parts = [f"{name}: CFG {np.abs(g - c).max():.3f}, REG {np.abs(g - r).max():.3f}" for name, _, g, c, r in _rows(m)]
    return ("The REG maps are lighter than the CFG maps where the gap is large; largest gap (eps units), "
            + "; ".join(parts) + ".")


def plot(m: Maps1D, out_dir: Path) -> list[Path]:
    rows = _rows(m)
    vmax = max(max(np.abs(g - c).max(), np.abs(g - r).max()) for _, _, g, c, r in rows)
    t = m.exact.t
    with style():
        fig, axes = plt.subplots(len(rows), 2, figsize=(8, 7), sharex=True, sharey=True)
        for (name, x, g, c, r), row in zip(rows, axes):
            for ax, (label, field) in zip(row, (("CFG", c), ("REG", r))):
                im = ax.imshow(np.abs(g - field), aspect="auto", origin="lower", cmap="OrRd", vmin=0, vmax=vmax,
                               extent=[x[0], x[-1], t[0] - 0.5, t[-1] + 0.5])
                ax.set_title(f"{name}: |golden - {label}|")
                ax.grid(False)  # the theme's grid would be drawn over the map
                ax.yaxis.get_major_locator().set_params(integer=True)
        for ax in axes[-1]:
            ax.set_xlabel("$x_t$")
        for ax in axes[:, 0]:
            ax.set_ylabel("step t")
        fig.colorbar(im, ax=axes, shrink=0.8, label="absolute gap (eps units)")
        fig.suptitle("Paper 1-D toy: where CFG and REG miss the golden guidance term", fontsize=10)
        return save(fig, out_dir, NAME)
