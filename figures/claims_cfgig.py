"""Figure: CFG's missing term (claims ledger, ``cfgig``): the size of golden - CFG per noise level for each law,
how much of it REG's correction leaves, and whether it opposes the CFG term."""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt

from evaluation.claims import get_claim
from evaluation.claims.cfgig import Renyi
from evaluation.claims.ledger import evaluate

from .style import save, style

NAME = "claims_cfgig"
CAPTION = ("CFGiG's missing term (= golden - CFG, ideal chain) per noise level: it vanishes as sigma -> 0; solid "
           "|golden - CFG|, dashed |golden - REG|; right: the share of it opposing the CFG term.")


@functools.cache
def compute(quick: bool = False) -> Renyi:
    return evaluate(get_claim("cfgig"), quick=quick).data


def summary(d: Renyi) -> dict:
    return {lab: {"max_missing": float(t.missing.max()), "at_sigma_min": float(t.missing[0])}
            for lab, t in zip(d.labels, d.terms)}


def plot(d: Renyi, out_dir: Path) -> list[Path]:
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        for (lab, t), c in zip(zip(d.labels, d.terms), plt.cm.tab10.colors):
            short = lab.replace("single:1:", "single s_c=").split(":0:")[0] + lab[lab.rfind(" "):]
            axes[0].plot(t.sigma, t.missing, "-", color=c, label=short)
            axes[0].plot(t.sigma, t.reg_gap, "--", color=c, lw=0.8)
            axes[1].plot(t.sigma, t.opposes, "-o", ms=2, color=c, label=short)
        for ax in axes:
            ax.set_xscale("log")
            ax.set_xlabel("sigma")
        axes[0].set_yscale("log")
        axes[0].set_title("p_t-weighted |missing term| (eps units)")
        axes[1].set_title("fraction opposing CFG (repulsive)")
        axes[0].legend(fontsize=5)
        fig.tight_layout()
        return save(fig, out_dir, NAME)
