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


def _short(label: str) -> str:
    """``"single:1:0.353553390593:0:0.5 w=1"`` -> ``"single Gaussian s_c = 0.354, w = 1"``; law names stay."""
    law, _, w = label.rpartition(" ")
    if law.startswith("single:"):
        law = f"single Gaussian s_c = {float(law.split(':')[2]):.3g}"
    return f"{law}, {w.replace('=', ' = ')}"


def plot(d: Renyi, out_dir: Path) -> list[Path]:
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        fig.set_layout_engine("constrained")
        for (lab, t), c in zip(zip(d.labels, d.terms), plt.cm.tab10.colors):
            axes[0].plot(t.sigma, t.missing, "-", color=c, label=_short(lab))
            axes[0].plot(t.sigma, t.reg_gap, "--", color=c, lw=0.8)
            axes[1].plot(t.sigma, t.opposes, "-o", ms=2, color=c)
        for ax in axes:
            ax.set_xscale("log")
            ax.set_xlabel("noise level sigma")
        axes[0].set_yscale("log")
        axes[0].set_ylabel("eps units")
        axes[0].set_title("$p_t$-weighted |missing term| (solid) and what REG leaves of it (dashed)")
        axes[1].set_ylabel("fraction of $p_t$ mass")
        axes[1].set_title("where the missing term opposes CFG (repulsive)")
        handles, _ = axes[0].get_legend_handles_labels()
        handles += [plt.Line2D([], [], color="0.3", ls="-", label="missing term"),
                    plt.Line2D([], [], color="0.3", ls="--", label="REG's remaining gap")]
        fig.legend(handles=handles, loc="outside right center", fontsize=7)
        return save(fig, out_dir, NAME)
