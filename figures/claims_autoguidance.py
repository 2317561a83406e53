"""Figure: autoguidance (claims ledger, ``autoguidance``): TV to the true conditional and output entropy over w
for autoguidance (guide of the same kind), the negative control (another kind of error) and CFG."""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt

from evaluation.claims import get_claim
from evaluation.claims.autoguidance import GUIDES, Autoguidance
from evaluation.claims.ledger import evaluate

from .style import save, style

# the guides of evaluation.claims.autoguidance.GUIDES as a reader names them (the main model: covariances x1.5)
GUIDE_LABELS = {"autog": "AutoG, guide of the same kind (covariances x3)",
                "control": "AutoG, guide of another kind (means shifted; control)",
                "cfg": "CFG (unconditional guide)"}

NAME = "claims_autoguidance"
CAPTION = ("Autoguidance with an exact 'bad model': TV to the true conditional and entropy (dashed: the conditional's) "
           "over w, for a guide of the same kind, a negative control of another kind, and CFG.")


@functools.cache
def compute(quick: bool = False) -> Autoguidance:
    return evaluate(get_claim("autoguidance"), quick=quick).data


def summary(d: Autoguidance) -> dict:
    return {law: {g: float(d.tv[i, j].min()) for j, g in enumerate(GUIDES)} for i, law in enumerate(d.laws)}


def plot(d: Autoguidance, out_dir: Path) -> list[Path]:
    with style():
        fig, axes = plt.subplots(2, len(d.laws), figsize=(max(8.0, 4.2 * len(d.laws)), 6), squeeze=False,
                                 layout="constrained")
        for i, law in enumerate(d.laws):
            for j, g in enumerate(GUIDES):
                axes[0, i].plot(d.ws, d.tv[i, j], "-o", ms=3, label=GUIDE_LABELS[g])
                axes[1, i].plot(d.ws, d.entropy[i, j], "-o", ms=3, label=GUIDE_LABELS[g])
            axes[1, i].axhline(d.cond_entropy[i], color="k", ls="--", lw=0.7)
            axes[0, i].set_title(f"{law}: TV to the conditional")
            axes[1, i].set_title("output entropy (dashed: the conditional's)")
            axes[0, i].set_ylabel("TV")
            axes[1, i].set_ylabel("entropy (nats)")
            axes[1, i].set_xlabel("w")
        fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncol=len(GUIDES), fontsize=7)
        return save(fig, out_dir, NAME)
