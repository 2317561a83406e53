"""Figure: characteristic guidance against the exact optimum (claims ledger, ``characteristic``): per noise level,
the p_t-weighted gap of the characteristic, CFG and REG terms to the golden (the score of the diffusion of
p_c^(1+w)/p_u^w), relative to the CFG term's peak size; single Gaussians left, mixtures right."""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from evaluation.claims import get_claim
from evaluation.claims.characteristic import Characteristics
from evaluation.claims.ledger import evaluate

from .style import save, style

NAME = "claims_characteristic"
CAPTION = ("Characteristic guidance vs the exact optimum (diffusion of p_c^(1+w)/p_u^w): p_t-weighted gap per noise "
           "level over the CFG term's peak size; solid characteristic, dashed CFG, dotted REG. Left single "
           "Gaussians (exact to the fixed point's tolerance), right mixtures.")


@functools.cache
def compute(quick: bool = False) -> Characteristics:
    return evaluate(get_claim("characteristic"), quick=quick).data


def summary(d: Characteristics) -> dict:
    return {lab: {"max_rel_char": float(np.max(g.char_gap) / np.max(g.cfg_size)),
                  "max_rel_cfg": float(np.max(g.cfg_gap) / np.max(g.cfg_size))}
            for lab, g in zip(d.labels, d.gaps)}


def plot(d: Characteristics, out_dir: Path) -> list[Path]:
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
        for (lab, gauss, g), c in zip(zip(d.labels, d.gaussian, d.gaps), plt.cm.tab10.colors):
            ax = axes[0 if gauss else 1]
            short = lab.replace("single:1:", "single s_c=").replace(":0:0.5 ", " ")
            scale = max(float(np.max(g.cfg_size)), 1e-300)
            ax.plot(g.sigma, np.maximum(g.char_gap / scale, 1e-16), "-o", ms=2, color=c, label=short)
            ax.plot(g.sigma, g.cfg_gap / scale, "--", color=c, lw=0.8)
            ax.plot(g.sigma, g.reg_gap / scale, ":", color=c, lw=0.8)
        for ax, title in zip(axes, ("single Gaussians", "mixtures")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("sigma")
            ax.set_title(title)
            ax.legend(fontsize=5)
        axes[0].set_ylabel("|term - optimum| / max |CFG term| (p_t-weighted)")
        fig.tight_layout()
        return save(fig, out_dir, NAME)
