"""Figure: guidance, confidence and entropy on random mixtures (claims ledger, ``wu-gmm``): the exact
classifier's mean confidence and the output entropy against w for every random law (DDPM and DDIM)."""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

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
    up = np.all(np.diff(d.confidence, axis=2) > -1e-4, axis=2)
    down = np.all(np.diff(d.entropy, axis=2) < 1e-4, axis=2)
    return {"laws": len(d.seeds), "confidence_monotone": int(up.all(1).sum()), "entropy_monotone": int(down.all(1).sum())}


def plot(d: Monotone, out_dir: Path) -> list[Path]:
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
        panels = ((d.confidence, axes[0], 1, "mean classifier confidence (should rise with w)", "E[p(y|x)]"),
                  (d.entropy, axes[1], -1, "output entropy (should fall with w)", "entropy (nats)"))
        for arr, ax, sign, title, ylabel in panels:
            for s in range(len(d.seeds)):
                for j, ls in enumerate(("-", "--")):
                    ok = np.all(sign * np.diff(arr[s, j]) > -1e-4)
                    ax.plot(d.ws, arr[s, j], ls, lw=0.7, color="0.6" if ok else "#d62728")
            ax.set_xlabel("w")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
        key = [plt.Line2D([], [], color="0.6", ls="-", label="DDPM, monotone in w"),
               plt.Line2D([], [], color="0.6", ls="--", label="DDIM, monotone in w"),
               plt.Line2D([], [], color="#d62728", label="not monotone (violates the claim)")]
        axes[1].legend(handles=key, fontsize=7, title=f"{len(d.seeds)} random mixtures", title_fontsize=7)
        return save(fig, out_dir, NAME)
