"""Figure: weight schedules at equal mean weight (claims ledger, ``schedules``): TV to the tilted target, classifier
confidence and output entropy for constant, increasing and decreasing weights in every setting."""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from evaluation.claims import get_claim
from evaluation.claims.ledger import evaluate
from evaluation.claims.schedules import WEIGHTINGS, WeightSchedules

from .style import save, style

NAME = "claims_schedules"
CAPTION = ("Constant, increasing and decreasing CFG weights with the same mean: TV to the tilted target, mean "
           "classifier confidence and output entropy per setting (exact DDPM output laws).")


@functools.cache
def compute(quick: bool = False) -> WeightSchedules:
    return evaluate(get_claim("schedules"), quick=quick).data


def summary(d: WeightSchedules) -> dict:
    return {f"{law} {s} w={w:g}": dict(zip(WEIGHTINGS, map(float, row))) for (law, s, w), row in zip(d.settings, d.tv)}


def plot(d: WeightSchedules, out_dir: Path) -> list[Path]:
    with style():
        fig, axes = plt.subplots(3, 1, figsize=(max(6, 0.6 * len(d.settings)), 7), sharex=True)
        x = np.arange(len(d.settings))
        for ax, arr, title in zip(axes, (d.tv, d.confidence, d.entropy), ("TV to tilted target", "confidence", "entropy")):
            for k, name in enumerate(WEIGHTINGS):
                ax.bar(x + (k - 1) * 0.27, arr[:, k], 0.27, label=name)
            ax.set_title(title)
        axes[0].legend(fontsize=6)
        axes[-1].set_xticks(x, [f"{law}\n{s}\nw={w:g}" for law, s, w in d.settings], fontsize=5)
        fig.tight_layout()
        return save(fig, out_dir, NAME)
