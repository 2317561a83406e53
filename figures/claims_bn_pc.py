"""Figure: CFG is a predictor-corrector (claims ledger, ``bn-pc``): TV between CFG-DDPM and the exact
predictor-corrector chain as T grows, beside DDPM vs DDIM and both against the gamma-powered law."""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt

from evaluation.claims import get_claim
from evaluation.claims.bradley_nakkiran import PredictorCorrector
from evaluation.claims.ledger import evaluate

from .style import plain_log_ticks, save, style, ticks_at

NAME = "claims_bn_pc"
CAPTION = ("Bradley & Nakkiran: the exact law of the DDIM-predictor + Langevin-corrector chain (gamma' = 2 gamma - 1) "
           "converges to CFG-DDPM's as T grows; CFG-DDIM stays apart; neither is the gamma-powered law.")


@functools.cache
def compute(quick: bool = False) -> PredictorCorrector:
    return evaluate(get_claim("bn-pc"), quick=quick).data


def summary(d: PredictorCorrector) -> dict:
    return {f"w={w:g}": {"tv_pcg_ddpm": [float(v) for v in d.tv_pcg_ddpm[i]],
                         "tv_ddim_ddpm": [float(v) for v in d.tv_ddim_ddpm[i]]} for i, w in enumerate(d.ws)}


def plot(d: PredictorCorrector, out_dir: Path) -> list[Path]:
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        ax = axes[0]
        for i, w in enumerate(d.ws):
            ax.plot(d.T, d.tv_pcg_ddpm[i], "-o", ms=3, label=f"TV(PCG, CFG-DDPM) w={w:g}")
            ax.plot(d.T, d.tv_ddim_ddpm[i], "--s", ms=3, label=f"TV(CFG-DDIM, CFG-DDPM) w={w:g}")
            ax.plot(d.T, d.tv_ddpm_target[i], ":", label=f"TV(CFG-DDPM, gamma-law) w={w:g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks_at(ax.xaxis, d.T)  # every T drawn, as a plain number (not 3 x 10^1)
        plain_log_ticks(ax.yaxis)
        ax.set_xlabel("T")
        ax.set_ylabel("total variation")
        ax.set_title("distances between the laws as T grows")
        ax.legend(fontsize=6)
        ax = axes[1]
        for m, lab in zip(d.laws, ("CFG-DDPM", "CFG-DDIM", "predictor-corrector", "gamma-powered law")):
            ax.plot(d.x, m / (d.x[1] - d.x[0]), label=lab)
        ax.set_xlim(-1.5, 3)
        ax.set_title(f"output densities, w = {d.ws[0]:g}, T = {d.T[-1]}")
        ax.set_xlabel("$x_0$")
        ax.set_ylabel("output density")
        ax.legend(fontsize=6)
        fig.tight_layout()
        return save(fig, out_dir, NAME)
