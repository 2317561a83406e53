"""Figure: REG's guidance against the optimum (claims ledger, ``reg-fields``): p_t-weighted field error of REG
against the plain guidance it corrects, per setting (below the diagonal: REG closer), and per noise level for
the paper's 1-D toy and correlated_2d."""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from evaluation.claims import get_claim
from evaluation.claims.ledger import evaluate
from evaluation.claims.reg_fields import RegFields

from .style import save, style

NAME = "claims_reg_fields"
CAPTION = ("REG's field error against the plain guidance's (p_t-weighted mean |golden - field|, ideal chain) for every "
           "setting of the ledger (below the diagonal: REG closer), and per noise level on two laws.")


@functools.cache
def compute(quick: bool = False) -> RegFields:
    return evaluate(get_claim("reg-fields"), quick=quick).data


def summary(d: RegFields) -> dict:
    return {"settings": len(d.comparisons), "reg_closer": sum(c.mean_reg < c.mean_plain for c in d.comparisons),
            "no_golden": d.invalid}


def plot(d: RegFields, out_dir: Path) -> list[Path]:
    with style():
        fig, axes = plt.subplots(1, 3, figsize=(13, 4))
        ax = axes[0]
        kinds = {"single": "#9467bd", "2d": "#2ca02c", "1d": "#1f77b4"}
        for c in d.comparisons:
            k = "single" if c.law.startswith("single:") else ("2d" if "2d" in c.law else "1d")
            ax.scatter(c.mean_plain, c.mean_reg, s=8, color=kinds[k], alpha=0.7)
        hi = max(max(c.mean_plain, c.mean_reg) for c in d.comparisons)
        ax.plot([0, hi], [0, hi], "k--", lw=0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("plain guidance: field error")
        ax.set_ylabel("with REG: field error")
        ax.set_title("every setting (blue 1-D mixtures, green 2-D, purple single Gaussians)")
        for ax, law in zip(axes[1:], ("paper_1d", "correlated_2d")):
            sel = [c for c in d.comparisons if c.law == law and c.family == "cfg" and c.w == 1.0]
            for c, col in zip(sel, plt.cm.tab10.colors):
                sig = np.sqrt((1 - c.abar) / c.abar)
                ax.plot(sig, c.plain, "-", color=col, lw=1, label=f"{c.schedule} CFG")
                ax.plot(sig, c.reg, "--", color=col, lw=1, label=f"{c.schedule} REG {c.estimator}")
            ax.set_xscale("log")
            ax.set_xlabel("sigma")
            ax.set_ylabel("p_t-weighted |golden - field|")
            ax.set_title(f"{law}, w = 1")
            ax.legend(fontsize=5)
        fig.tight_layout()
        return save(fig, out_dir, NAME)
