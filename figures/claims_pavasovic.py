"""Figure: CFG's distortions against the dimension (claims ledger, ``pavasovic-highdim``): the output law's mean
overshoot and variance ratio along the class axis (against the unguided chain) and its TV to the class-conditional,
for class separation fixed and growing like sqrt(d)."""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt

from evaluation.claims import get_claim
from evaluation.claims.ledger import evaluate
from evaluation.claims.pavasovic import SEPARATIONS, HighDim

from .style import save, style

NAME = "claims_pavasovic"
CAPTION = ("Two isotropic classes in R^d, exact: CFG's mean overshoot and variance ratio along the class axis and TV "
           "to the class-conditional against d, separation fixed (dashed) or growing like sqrt(d) (solid), per w.")
LINE = {"fixed": "--", "sqrt_d": "-"}


@functools.cache
def compute(quick: bool = False) -> HighDim:
    return evaluate(get_claim("pavasovic-highdim"), quick=quick).data


def summary(d: HighDim) -> dict:
    over = d.mean[..., 1:] - d.mean[..., :1]
    return {sep: {"overshoot_first_last_d": [float(over[s, 0, -1]), float(over[s, -1, -1])],
                  "tv_first_last_d": [float(d.tv[s, 0, -1]), float(d.tv[s, -1, -1])]}
            for s, sep in enumerate(SEPARATIONS)}


def plot(d: HighDim, out_dir: Path) -> list[Path]:
    over = d.mean[..., 1:] - d.mean[..., :1]
    ratio = d.var[..., 1:] / d.var[..., :1]
    colors = plt.get_cmap("viridis")
    with style():
        fig, axes = plt.subplots(1, 3, figsize=(13, 4.4), layout="constrained")
        for s, sep in enumerate(SEPARATIONS):
            for j, w in enumerate(d.ws[1:]):
                c = colors(0.85 * j / max(1, len(d.ws) - 2))  # up to 0.85: the yellow end is faint on white
                axes[0].plot(d.dims, over[s, :, j], LINE[sep], marker="o", ms=3, color=c)
                axes[1].plot(d.dims, ratio[s, :, j], LINE[sep], marker="o", ms=3, color=c)
                axes[2].plot(d.dims, d.tv[s, :, j + 1], LINE[sep], marker="o", ms=3, color=c)
            axes[2].plot(d.dims, d.tv[s, :, 0], LINE[sep], color="0.6")
        key = [plt.Line2D([], [], color=colors(0.85 * j / max(1, len(d.ws) - 2)), marker="o", ms=3, label=f"w = {w:g}")
               for j, w in enumerate(d.ws[1:])]
        key += [plt.Line2D([], [], color="0.6", label="unguided")]
        key += [plt.Line2D([], [], color="0.2", ls=LINE[sep], label=f"separation {sep.replace('_', ' ')}")
                for sep in SEPARATIONS]
        titles = ("mean overshoot along U (vs unguided)", "variance ratio along U (vs unguided)",
                  "TV to the class-conditional")
        ylabels = ("output mean - unguided mean, along U", "output variance / unguided variance, along U",
                   "TV (no unit)")
        for ax, title, ylabel in zip(axes, titles, ylabels):
            ax.set_ylabel(ylabel)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("d")
            ax.set_title(title)
        fig.legend(handles=key, loc="outside lower center", ncol=len(key), fontsize=7)
        return save(fig, out_dir, NAME)
