"""Figure: guidance interval (claims ledger, ``interval``): TV to the tilted target over the interval endpoints
(sigma_lo, sigma_hi), and the sizes of the CFG and REG terms and of the golden per noise level."""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from evaluation.claims import get_claim
from evaluation.claims.interval import IntervalMap
from evaluation.claims.ledger import evaluate

from .style import save, style

NAME = "claims_interval"
CAPTION = ("Guidance only for sigma in [lo, hi]: TV of the exact DDPM output to the tilted target over the endpoints, "
           "and the p_t-weighted sizes of the golden, CFG and REG terms per level (where REG's damping acts).")


@functools.cache
def compute(quick: bool = False) -> IntervalMap:
    return evaluate(get_claim("interval"), quick=quick).data


def summary(d: IntervalMap) -> dict:
    out = {}
    for a, law in enumerate(d.laws):
        for b, w in enumerate(d.ws):
            i, j = np.unravel_index(np.nanargmin(d.tv_target[a, b]), d.tv_target.shape[2:])
            out[f"{law} w={w:g}"] = {"best_lo": d.ends[i], "best_hi": d.ends[j], "tv_best": float(d.tv_target[a, b, i, j]),
                                     "tv_everywhere": float(d.tv_target[a, b, 0, -1])}
    return out


def plot(d: IntervalMap, out_dir: Path) -> list[Path]:
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
        ax = axes[0]
        Z = d.tv_target[0, -1]
        im = ax.imshow(Z, cmap="viridis", origin="lower")
        labels = [f"{e:g}" for e in d.ends]
        ax.set_xticks(range(len(d.ends)), labels)
        ax.set_yticks(range(len(d.ends)), labels)
        ax.set_xlabel("guidance on up to sigma_hi")
        ax.set_ylabel("guidance on from sigma_lo")
        ax.grid(False)
        for i in range(len(d.ends)):
            for j in range(len(d.ends)):
                if np.isfinite(Z[i, j]):
                    ax.text(j, i, f"{Z[i, j]:.2f}", ha="center", va="center", fontsize=8,
                            color="w" if Z[i, j] < np.nanmean(Z) else "k")  # readable on viridis' light end
        ax.set_title(f"{d.laws[0]}, w = {d.ws[-1]:g}: TV to the tilted target")
        fig.colorbar(im, ax=ax, fraction=0.04, label="TV to the tilted target")
        ax = axes[1]
        ax.plot(d.sigma[0, -1], d.golden[0, -1], "k-", label="|golden|")
        ax.plot(d.sigma[0, -1], d.cfg_term[0, -1], "-", label="|CFG term|")
        ax.plot(d.sigma[0, -1], d.reg_term[0, -1], "--", label="|REG term|")
        ax.set_xscale("log")
        ax.set_xlabel("noise level sigma")
        ax.set_ylabel("eps units")
        ax.set_title("$p_t$-weighted term sizes per level")
        ax.legend(fontsize=7)
        fig.tight_layout()
        return save(fig, out_dir, NAME)
