"""Figure: (x, t) maps of |golden - CFG| and |golden - REG| on one colour scale (the paper's Figure 5)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from . import curves_1d
from .style import save, style

NAME = "maps_1d"
CAPTION = ("|golden - CFG| and |golden - REG| over (x_t, t) on the paper's 1-D toy, one colour scale; "
           "top row against the ideal-chain golden, bottom row against the 20-step sampler chain.")

compute = curves_1d.compute  # the same arrays as the curves


def summary(c) -> dict:
    gap = lambda g, m: np.abs(g - m)  # noqa: E731
    return {"max_abs_gap_ideal": {"cfg": float(gap(c.golden, c.cfg).max()), "reg": float(gap(c.golden, c.reg).max())},
            "max_abs_gap_chain": {"cfg": float(gap(c.chain, c.cfg).max()), "reg": float(gap(c.chain, c.reg).max())}}


def plot(c, out_dir: Path) -> list[Path]:
    panels = [("ideal: |golden - CFG|", c.golden, c.cfg), ("ideal: |golden - REG|", c.golden, c.reg),
              ("sampler chain: |golden - CFG|", c.chain, c.cfg), ("sampler chain: |golden - REG|", c.chain, c.reg)]
    vmax = max(np.abs(g - m).max() for _, g, m in panels)
    with style():
        fig, axes = plt.subplots(2, 2, figsize=(8, 5), sharex=True, sharey=True)
        for ax, (title, g, m) in zip(axes.flat, panels):
            im = ax.imshow(np.abs(g - m), aspect="auto", origin="lower", cmap="OrRd", vmin=0, vmax=vmax,
                           extent=[c.x[0], c.x[-1], c.t[0] - 0.5, c.t[-1] + 0.5])
            ax.set_title(title)
        for ax in axes[-1]:
            ax.set_xlabel("$x_t$")
        for ax in axes[:, 0]:
            ax.set_ylabel("step t")
        fig.colorbar(im, ax=axes, shrink=0.8, label="absolute gap (eps units)")
        return save(fig, out_dir, NAME)
