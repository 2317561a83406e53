"""Figure: Theorem 1 of the REG paper (claims ledger, ``theorem1``): TV between the exact output law of the
optimally guided DDPM chain and the tilted target against the number of steps, per start and schedule."""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt

from evaluation.claims import get_claim
from evaluation.claims.ledger import evaluate
from evaluation.claims.theorem1 import Theorem1

from .style import START_LABELS, plain_log_ticks, save, schedule_label, style, ticks_at

NAME = "claims_theorem1"
CAPTION = ("Theorem 1: the exact optimal guidance's output law against the tilted target as T grows, from the "
           "tilted marginal p_T E_T (first order in 1/T) and from N(0,1) (stalls under the truncated schedule, "
           "abar_T = 0.8168). Where two lines lie on each other (the two starts under the schedule that reaches "
           "abar_T = 1e-4, which forgets its start), their markers tell them apart.")


@functools.cache
def compute(quick: bool = False) -> Theorem1:
    return evaluate(get_claim("theorem1"), quick=quick).data


def summary(d: Theorem1) -> dict:
    return {c: {f"T={T}": float(v) for T, v in zip(d.T, row)} for c, row in zip(d.curves, d.tv)}


def curve_label(curve: str) -> str:
    """``"lin:T:0.8168 / tilted"`` (a :class:`Theorem1` curve) -> ``"linear betas to abar_T = 0.8168, tilted start
    p_T E_T"``."""
    schedule, _, start = curve.partition(" / ")
    return f"{schedule_label(schedule)}, {START_LABELS.get(start, start)}"


def plot(d: Theorem1, out_dir: Path) -> list[Path]:
    with style():
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for k, (c, row) in enumerate(zip(d.curves, d.tv)):  # markers and dashes: curves that coincide stay visible
            ax.plot(d.T, row, ("-", "--", "-.", ":")[k % 4], marker="osv^D"[k % 5], ms=6 - k, mfc="none", label=curve_label(c))
        ax.plot(d.T, d.tv[0, 0] * d.T[0] / d.T, "k:", lw=0.7, label="1/T")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks_at(ax.xaxis, d.T)
        plain_log_ticks(ax.yaxis, minor=(2, 5))
        ax.set_xlabel("T")
        ax.set_ylabel("TV(output, tilted target)")
        ax.set_title("optimal guidance, paper_1d, w = 1")
        ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.2))  # below: the lines stay visible
        fig.tight_layout()
        return save(fig, out_dir, NAME)
