"""Figure: guidance, confidence and entropy on random two-class 1-D laws (claims ledger, ``wu-gmm``): the exact
classifier's mean confidence and the output entropy against w for every law of the claim's sweep (DDPM and DDIM),
the random mixtures (``rand1d``, outside the paper's conditions) and the laws that meet them (``rand1d_iso``: one
Gaussian per class, one width) drawn apart."""
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
CAPTION = ("Random two-class 1-D laws: mean classifier confidence and output entropy against w (DDPM solid, DDIM "
           "dashed); random mixtures grey, laws that meet the paper's conditions (one Gaussian per class, one width) "
           "blue with markers; red curves violate monotonicity.")
ISO = "rand1d_iso:"  # the family that meets the paper's conditions
GREY, BLUE, RED = "0.6", "#1f77b4", "#d62728"


@functools.cache
def compute(quick: bool = False) -> Monotone:
    return evaluate(get_claim("wu-gmm"), quick=quick).data


def _iso(d: Monotone) -> np.ndarray:
    """[S] the law meets the paper's conditions."""
    return np.array([str(s).startswith(ISO) for s in d.seeds], dtype=bool)


def summary(d: Monotone) -> dict:
    iso, ok = _iso(d), d.confidence_up.all(1) & d.entropy_down.all(1)
    return {"laws": len(d.seeds), "confidence_monotone": int(d.confidence_up.all(1).sum()),
            "entropy_monotone": int(d.entropy_down.all(1).sum()), "paper_conditions_laws": int(iso.sum()),
            "paper_conditions_both_monotone": int(ok[iso].sum())}


def plot(d: Monotone, out_dir: Path) -> list[Path]:
    iso = _iso(d)
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), layout="constrained")
        panels = ((d.confidence, d.confidence_up, axes[0], "mean classifier confidence (should rise with w)",
                   "E[p(y|x)]"),
                  (d.entropy, d.entropy_down, axes[1], "output entropy (should fall with w)", "entropy (nats)"))
        for arr, monotone, ax, title, ylabel in panels:  # monotone: the claim's own decision (within the errors)
            for s in np.argsort(iso, kind="stable"):  # the paper's conditions drawn over the random mixtures and
                for j, ls in enumerate(("-", "--")):  # the violations over both
                    good = monotone[s, j]
                    if iso[s]:
                        ax.plot(d.ws, arr[s, j], ls, lw=0.9, marker="o", ms=2, color=BLUE if good else RED,
                                zorder=2 if good else 3)
                    else:
                        ax.plot(d.ws, arr[s, j], ls, lw=0.7, color=GREY if good else RED, zorder=1 if good else 3)
            ax.set_xlabel("w")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
        key = [plt.Line2D([], [], color=GREY, lw=0.7, label=f"random mixtures ({int((~iso).sum())}), monotone"),
               plt.Line2D([], [], color=BLUE, lw=0.9, marker="o", ms=2,
                          label=f"paper's conditions ({int(iso.sum())}: one Gaussian per class, one width), monotone"),
               plt.Line2D([], [], color=RED, lw=0.7, label="not monotone (violates the claim)"),
               plt.Line2D([], [], color="0.2", ls="-", lw=0.7, label="DDPM"),
               plt.Line2D([], [], color="0.2", ls="--", lw=0.7, label="DDIM")]
        fig.legend(handles=key, loc="outside lower center", ncol=2, fontsize=7)
        return save(fig, out_dir, NAME)
