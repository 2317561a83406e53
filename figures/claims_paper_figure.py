"""Figure: the REG paper's 1-D figure from its released networks (claims ledger, ``paper-figure``): at t = 10 the
exact grid golden of the networks' chain, the paper's Monte Carlo golden, CFG and REG; per step the gaps and
the Monte Carlo error; and the paper's own panel when it is shipped beside the networks."""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt

from evaluation.claims import get_claim
from evaluation.claims.ledger import evaluate
from evaluation.claims.paper_figure import PaperFigure

from . import curves_1d
from .style import COLORS, PAPER_COLORS, method_label, save, style

NAME = "claims_paper_figure"
CAPTION = ("The paper's 1-D figure from its own networks: exact golden of their chain vs the paper's Monte Carlo "
           "golden, CFG and REG at t = 10; per-step gaps and the Monte Carlo golden's error; the paper's panel.")


@functools.cache
def compute(quick: bool = False) -> PaperFigure:
    return evaluate(get_claim("paper-figure"), quick=quick).data


def summary(f: PaperFigure) -> dict:
    return {f"t={int(t)}": {"mc_error": float(m), "cfg_gap": float(c), "reg_gap": float(r)}
            for t, m, c, r in zip(f.t, f.mc_error, f.cfg_gap, f.reg_gap)}


def plot(f: PaperFigure, out_dir: Path) -> list[Path]:
    cfg, reg = (method_label(curves_1d.METHOD[m]) for m in ("cfg", "reg"))  # in 1-D every estimator is the paper's
    with style():
        n = 3 if f.paper_png else 2
        fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.6))
        ax, k = axes[0], 9  # t = 10
        ax.plot(f.x, f.exact[k], color=COLORS["golden"], label="golden, exact (grid)")
        ax.plot(f.x, f.mc[k], color="#1f77b4", lw=0.8, label="golden, Monte Carlo (paper)")
        ax.plot(f.x, f.cfg[k], color=PAPER_COLORS["cfg"], label=cfg)
        ax.plot(f.x, f.reg[k], color=PAPER_COLORS["reg"], label=reg)
        ax.set_xlabel("x")
        ax.set_title("released networks, t = 10 (eps units)")
        ax.legend(fontsize=6)
        ax = axes[1]
        ax.plot(f.t, f.cfg_gap, "-o", ms=3, color=PAPER_COLORS["cfg"], label=f"|golden - {cfg}|")
        ax.plot(f.t, f.reg_gap, "-o", ms=3, color=PAPER_COLORS["reg"], label=f"|golden - {reg}|")
        ax.plot(f.t, f.mc_error, "-s", ms=3, color="#1f77b4", label="|MC golden - exact golden|")
        ax.set_xlabel("t")
        ax.set_title("per step, mean over the grid")
        ax.legend(fontsize=6)
        if f.paper_png:
            axes[2].imshow(plt.imread(f.paper_png))
            axes[2].axis("off")
            axes[2].set_title("the paper's panel (t = 10)")
        fig.tight_layout()
        return save(fig, out_dir, NAME)
