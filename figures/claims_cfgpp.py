"""Figure: CFG++ (claims ledger, ``cfgpp``): the equivalent per-step CFG scale at lambda = 1, the TV of CFG++ laws
to conditional DDIM as T grows, and the output densities."""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt

from evaluation.claims import get_claim
from evaluation.claims.cfgpp import CFGpp
from evaluation.claims.ledger import evaluate

from .style import save, style, ticks_at

NAME = "claims_cfgpp"
CAPTION = ("CFG++ is CFG with the per-step scale s_i = lam sigma_i / (sigma_i - sigma_(i+1)): the scale at lambda = 1, "
           "the distance of CFG++ laws from conditional sampling as T grows, and the densities at the largest T.")


@functools.cache
def compute(quick: bool = False) -> CFGpp:
    return evaluate(get_claim("cfgpp"), quick=quick).data


def summary(d: CFGpp) -> dict:
    return {f"lambda={l:g}": {f"T={T}": float(v) for T, v in zip(d.T, row)} for l, row in zip(d.lambdas, d.tv_cond)}


def plot(d: CFGpp, out_dir: Path) -> list[Path]:
    with style():
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        axes[0].plot(range(1, len(d.lerp_scales) + 1), d.lerp_scales, "-o", ms=3)
        axes[0].set_xlabel("step (from the noisiest)")
        axes[0].xaxis.get_major_locator().set_params(integer=True)  # steps are integers (ticks were at 2.5, 7.5)
        axes[0].set_title("lambda = 1, 20 steps: equivalent CFG scale s_i")
        for l, row in zip(d.lambdas, d.tv_cond):
            axes[1].plot(d.T, row, "-o", ms=3, label=f"lambda={l:g}")
        axes[1].set_xscale("log")
        ticks_at(axes[1].xaxis, d.T)  # every T drawn, as a plain number (not 2 x 10^1)
        axes[1].set_xlabel("T")
        axes[1].set_title("TV to conditional DDIM")
        axes[1].legend(fontsize=6)
        h = d.x[1] - d.x[0]
        axes[2].plot(d.x, d.cond_mass / h, "k", label="conditional DDIM")
        for l, m in zip(d.lambdas, d.masses):
            axes[2].plot(d.x, m / h, label=f"CFG++ lambda={l:g}")
        axes[2].set_xlim(-3, 4)
        axes[2].set_ylim(0, 2.5 * (d.cond_mass / h).max())  # spikes of concentrated laws are clipped
        axes[2].set_title(f"densities, T = {d.T[-1]} (clipped at 2.5x the conditional's peak)")
        axes[2].set_xlabel("$x_0$")
        axes[2].set_ylabel("output density")
        axes[1].set_ylabel("TV")
        axes[0].set_ylabel("scale s_i")
        axes[2].legend(fontsize=6)
        fig.tight_layout()
        return save(fig, out_dir, NAME)
