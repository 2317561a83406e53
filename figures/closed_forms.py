"""Figure: where CFG is exact, where REG helps and where it hurts, from the single-Gaussian closed forms.

Conditional N(1, s_c^2) against unconditional N(0, s_u^2) with s_u = 0.5, ideal chain: the ratio of REG's
to CFG's relative weighted RMS gap over (abar, r = s_c^2 / s_u^2) for several w (analytic.symbolic).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.patches as mpatches
import matplotlib.pyplot as plt
import numpy as np

from analytic import symbolic

from .style import save, style

NAME = "closed_forms"
CAPTION = ("Single Gaussians in closed form: log10(REG gap / CFG gap) over noise level and variance ratio "
           "r = s_c^2/s_u^2 (blue: REG closer to the optimum; grey hatched: E_t infinite; dotted: r = 1, where CFG is exact); dashed lines are the "
           "derived boundaries r = (1+w)/(2+w) and r = (1+2w)/(2+2w).")
WEIGHTS = (0.5, 1.0, 3.0)
S_U = 0.5


@dataclass(frozen=True)
class ClosedForms:
    abar: np.ndarray  # [A]
    ratio: np.ndarray  # [R]
    log_ratio: dict  # w -> [R, A] log10(rel_gap_reg / rel_gap_cfg), nan where undefined
    diverges: dict  # w -> [R, A] bool, E_t infinite


def compute(quick: bool = False) -> ClosedForms:
    n = 25 if quick else 60
    abar = np.linspace(0.02, 0.98, n)
    ratio = np.geomspace(0.1, 3.0, n)
    log_ratio, diverges = {}, {}
    for w in WEIGHTS:
        lr = np.full((n, n), np.nan)
        dv = np.zeros((n, n), dtype=bool)
        for i, r in enumerate(ratio):
            for j, a in enumerate(abar):
                try:
                    g = symbolic.gap_summary(a, 1.0, S_U * np.sqrt(r), 0.0, S_U, w)
                except ValueError:  # E_t diverges here
                    dv[i, j] = True
                    continue
                lr[i, j] = np.log10(max(float(g.rel_gap_reg), 1e-12) / max(float(g.rel_gap_cfg), 1e-12))
        log_ratio[w], diverges[w] = lr, dv
    return ClosedForms(abar, ratio, log_ratio, diverges)


def summary(c: ClosedForms) -> dict:
    out = {}
    for w in WEIGHTS:
        ok = ~c.diverges[w]
        out[f"w={w}"] = {"fraction_reg_better": float((c.log_ratio[w][ok] < 0).mean()),
                         "fraction_diverging": float(c.diverges[w].mean())}
    return out


def plot(c: ClosedForms, out_dir: Path) -> list[Path]:
    with style():
        fig, axes = plt.subplots(1, len(WEIGHTS), figsize=(11, 3.6), sharey=True)
        for ax, w in zip(axes, WEIGHTS):
            im = ax.pcolormesh(c.abar, c.ratio, np.clip(c.log_ratio[w], -2, 2), cmap="RdBu_r", vmin=-2, vmax=2,
                               shading="auto")
            if c.diverges[w].any():
                ax.contourf(c.abar, c.ratio, c.diverges[w].astype(float), levels=[0.5, 1.5], colors=["0.75"],
                            hatches=["///"])
            for r in ((1 + w) / (2 + w), (1 + 2 * w) / (2 + 2 * w)):
                ax.axhline(r, color="k", ls="--", lw=0.8)
            ax.axhline(1.0, color="k", ls=":", lw=0.8)
            ax.set_yscale("log")
            ax.set_yticks([0.1, 0.2, 0.5, 1, 2, 3], ["0.1", "0.2", "0.5", "1", "2", "3"])
            ax.set_xlabel("abar")
            ax.set_title(f"w = {w}")
            ax.grid(False)
        axes[0].set_ylabel("r = $s_c^2 / s_u^2$")
        fig.colorbar(im, ax=axes.tolist(), label="log10(REG gap / CFG gap)\n(blue: REG closer, red: CFG closer)")
        key = [mpatches.Patch(facecolor="0.75", hatch="///", label="$E_t$ infinite (no optimum)"),
               plt.Line2D([], [], color="k", ls="--", lw=0.8, label="r = (1+w)/(2+w) and r = (1+2w)/(2+2w)"),
               plt.Line2D([], [], color="k", ls=":", lw=0.8, label="r = 1: CFG exact")]
        fig.legend(handles=key, loc="lower center", bbox_to_anchor=(0.45, -0.12), ncol=3, fontsize=7)
        return save(fig, out_dir, NAME)
