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

# the weightings of evaluation.claims.schedules.WEIGHTINGS as a reader names them (equal mean weight)
WEIGHTING_LABELS = {"const": "constant weight", "up": "increasing weight", "down": "decreasing weight"}

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
        fig, axes = plt.subplots(3, 1, figsize=(max(7, 0.42 * len(d.settings)), 8), sharex=True, layout="constrained")
        x = np.arange(len(d.settings))
        panels = (("TV to the tilted target", "TV (no unit)"), ("mean classifier confidence", "E[p(y|x)] (probability)"),
                  ("output entropy", "entropy (nats)"))
        for ax, arr, (title, ylabel) in zip(axes, (d.tv, d.confidence, d.entropy), panels):
            for k, name in enumerate(WEIGHTINGS):
                ax.bar(x + (k - 1) * 0.27, arr[:, k], 0.27, label=WEIGHTING_LABELS[name])
            ax.set_title(title)
            ax.set_ylabel(ylabel)
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", fontsize=7,
                   ncol=len(WEIGHTINGS))  # above the panels: inside, it covered the tallest bars
        # one line per setting, turned upright: three-line labels side by side collided
        axes[-1].set_xticks(x, [f"{law}, {s}, w = {w:g}" for law, s, w in d.settings], rotation=90, fontsize=7)
        return save(fig, out_dir, NAME)
