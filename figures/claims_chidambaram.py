"""Figure: what guidance does (claims ledger, ``chidambaram``): exact DDIM output densities over w on two flat
classes, with exact scores and with a small eps error, and the mass outside the support."""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt

from evaluation.claims import get_claim
from evaluation.claims.chidambaram import Guided, edges
from evaluation.claims.ledger import evaluate

from .style import save, style

CLIP = 8.0  # the densities' y limit: narrow spikes (to ~80) would flatten every other curve

NAME = "claims_chidambaram"
CAPTION = ("Guidance on two flat classes (DDIM, exact): as w grows the mass moves to the far edge of the class's "
           "support; with an eps error it leaves the support; the trained toy networks leave it too.")


@functools.cache
def compute(quick: bool = False) -> Guided:
    return evaluate(get_claim("chidambaram"), quick=quick).data


def summary(d: Guided) -> dict:
    return {f"eps error {e:g}": {f"w={w:g}": float(o) for w, o in zip(d.ws, row)} for e, row in zip(d.errors, d.outside)}


def plot(d: Guided, out_dir: Path) -> list[Path]:
    lo, hi = edges("blocks_1d")
    n = len(d.errors) + 1
    cols = 2 if n > 2 else n
    rows = -(-n // cols)
    with style():
        # a grid of two columns (a strip of four was 2700 px wide, its legends unreadable); one key for w
        fig, grid = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False, layout="constrained")
        axes = grid.ravel()
        h = d.x[1] - d.x[0]
        for ax, e, masses in zip(axes, d.errors, d.block_mass):
            for w, m in zip(d.ws, masses):
                ax.plot(d.x, m / m.sum() / h, lw=0.9, label=f"w = {w:g}")
            ax.axvspan(lo, hi, color="0.9", zorder=0)
            ax.set_xlim(-0.5, 4)
            ax.set_ylim(0, CLIP)  # narrow spikes (to ~80) are clipped: the shift of the mass is the point
            ax.set_title(f"blocks_1d, eps error {e:g} (grey: support; density clipped at {CLIP:g})")
            ax.set_xlabel("$x_0$")
            ax.set_ylabel("output density")
        ax = axes[len(d.errors)]
        for i, e in enumerate(d.errors):
            ax.plot(d.ws, d.outside[i], "-o", ms=3, label=f"blocks_1d, eps error {e:g}")
        ax.plot(d.trained_ws, d.trained_outside[0], "--s", ms=3, label="paper_1d, exact scores")
        ax.plot(d.trained_ws, d.trained_outside[1], "--s", ms=3, label="paper_1d, trained networks")
        ax.set_xscale("symlog", linthresh=1)
        ticks = sorted(set(d.ws) | set(d.trained_ws))
        ax.set_xticks(ticks, [f"{w:g}" for w in ticks])  # every weight drawn, as a plain number
        ax.set_xlabel("w")
        ax.set_title("mass outside the support")
        ax.set_ylabel("mass")
        ax.legend(fontsize=7)
        key = dict(fontsize=8, title="densities: w")
        for ax in axes[n:]:
            ax.set_axis_off()
        if n < len(axes):  # a free panel holds the key
            axes[n].legend(*axes[0].get_legend_handles_labels(), loc="center", **key)
        else:
            fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center", **key)
        return save(fig, out_dir, NAME)
