"""Figure: guidance, confidence and entropy on random mixtures (claims ledger, ``wu-gmm``): the exact
classifier's mean confidence and the output entropy against w for every random law (DDPM and DDIM)."""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt

from evaluation.claims import get_claim
from evaluation.claims.ledger import evaluate
from evaluation.claims.wu import Monotone

from .style import save, style

NAME = "claims_wu_gmm"
CAPTION = ("Random two-class mixtures: mean classifier confidence and output entropy against w (DDPM solid, DDIM "
           "dashed); red curves violate monotonicity.")


@functools.cache
def compute(quick: bool = False) -> Monotone:
    return evaluate(get_claim("wu-gmm"), quick=quick).data


def summary(d: Monotone) -> dict:
    return {"laws": len(d.seeds), "confidence_monotone": int(d.confidence_up.all(1).sum()),
            "entropy_monotone": int(d.entropy_down.all(1).sum())}


def plot(d: Monotone, out_dir: Path) -> list[Path]:
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
        panels = ((d.confidence, d.confidence_up, axes[0], "mean classifier confidence (should rise with w)",
                   "E[p(y|x)]"),
                  (d.entropy, d.entropy_down, axes[1], "output entropy (should fall with w)", "entropy (nats)"))
        for arr, monotone, ax, title, ylabel in panels:  # monotone: the claim's own decision (within the errors)
            for s in range(len(d.seeds)):
                for j, ls in enumerate(("-", "--")):
                    ax.plot(d.ws, arr[s, j], ls, lw=0.7, color="0.6" if monotone[s, j] else "#d62728")
            ax.set_xlabel("w")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
        key = [plt.Line2D([], [], color="0.6", ls="-", label="DDPM, monotone in w"),
               plt.Line2D([], [], color="0.6", ls="--", label="DDIM, monotone in w"),
               plt.Line2D([], [], color="#d62728", label="not monotone (violates the claim)")]
        axes[1].legend(handles=key, fontsize=7, title=f"{len(d.seeds)} random mixtures", title_fontsize=7)
        return save(fig, out_dir, NAME)
