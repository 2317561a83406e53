"""Figure: 1-D per-step guidance curves, golden vs CFG vs REG (the paper's Figure 1 setting).

Paper 1-D preset, T = 20, w = 1, points on [-1, 2]. Exact: the ideal-chain golden, the sampler-chain
golden (what the paper's Monte Carlo golden estimates), CFG and REG (all estimators coincide in 1-D).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from analytic import CFGReward, chain_golden, get_preset, guidance_fields_on_grid, mixture_eps_fn
from sampler.schedules import VPSchedule

from .style import COLORS, LABELS, save, style

NAME = "curves_1d"
CAPTION = ("Per-step guidance in eps units on the paper's 1-D toy (T = 20, w = 1): exact ideal-chain and "
           "sampler-chain goldens against CFG and REG (1-D: every REG estimator is the same).")


@dataclass(frozen=True)
class Curves1D:
    x: np.ndarray  # [n]
    t: np.ndarray  # [T] steps 1..T
    abar: np.ndarray  # [T]
    golden: np.ndarray  # [T, n]
    chain: np.ndarray  # [T, n]
    cfg: np.ndarray  # [T, n]
    reg: np.ndarray  # [T, n]
    weight: np.ndarray  # [T, n] p_t(x | y) normalised on the grid


@functools.cache  # maps_1d draws the same arrays
def compute(quick: bool = False, preset: str = "paper_1d", w: float = 1.0) -> Curves1D:
    p = get_preset(preset)
    sched = VPSchedule.paper_1d()
    reward = CFGReward(p.cond, p.uncond, w)
    x = torch.linspace(-1, 2, 301 if quick else 1000, dtype=torch.float64)
    chain = chain_golden(mixture_eps_fn(p.cond, sched), reward.log_r0, sched, x).golden[..., 0]
    rows = {k: [] for k in ("golden", "cfg", "reg", "weight")}
    for t in range(1, sched.T + 1):
        a = sched.abar[t].item()
        f = guidance_fields_on_grid(p.cond, reward, x, a)
        rows["golden"].append(f.golden[:, 0])
        rows["cfg"].append(f.present[:, 0])
        rows["reg"].append(f.reg_paper[:, 0])
        rows["weight"].append(torch.softmax(p.cond.noised(a).log_prob(x[:, None]), 0))
    stack = {k: torch.stack(v).numpy() for k, v in rows.items()}
    return Curves1D(x.numpy(), np.arange(1, sched.T + 1), sched.abar[1:].numpy(), stack["golden"],
                    chain.numpy(), stack["cfg"], stack["reg"], stack["weight"])


def summary(c: Curves1D) -> dict:
    def mean_gap(g, m, weighted=False):
        gap = np.abs(g - m)
        return float((gap * c.weight).sum(1).mean() if weighted else gap.mean())

    return {
        "mean_abs_gap_ideal": {"cfg": mean_gap(c.golden, c.cfg), "reg": mean_gap(c.golden, c.reg)},
        "mean_abs_gap_ideal_weighted": {"cfg": mean_gap(c.golden, c.cfg, True), "reg": mean_gap(c.golden, c.reg, True)},
        "mean_abs_gap_chain": {"cfg": mean_gap(c.chain, c.cfg), "reg": mean_gap(c.chain, c.reg)},
    }


def plot(c: Curves1D, out_dir: Path) -> list[Path]:
    steps = [20, 16, 12, 8, 4, 2]
    with style():
        fig, axes = plt.subplots(2, 3, figsize=(9, 4.8), sharex=True)
        for ax, t in zip(axes.flat, steps):
            i = t - 1
            ax.plot(c.x, c.golden[i], color=COLORS["golden"], lw=1.6, label=LABELS["golden"])
            ax.plot(c.x, c.chain[i], color=COLORS["chain"], lw=1.2, ls="--", label=LABELS["chain"])
            ax.plot(c.x, c.cfg[i], color=COLORS["cfg"], lw=1.1, label=LABELS["cfg"])
            ax.plot(c.x, c.reg[i], color=COLORS["reg_paper"], lw=1.1, label="REG")
            ax.set_title(f"t = {t}  (abar = {c.abar[i]:.3f})")
            twin = ax.twinx()
            twin.fill_between(c.x, c.weight[i], color="0.85", zorder=0)
            twin.set_yticks([])
            ax.set_zorder(twin.get_zorder() + 1)
            ax.patch.set_visible(False)
        for ax in axes[-1]:
            ax.set_xlabel("$x_t$")
        for ax in axes[:, 0]:
            ax.set_ylabel("guidance term (eps units)")
        axes.flat[0].legend(loc="best")
        fig.suptitle("1-D paper toy: exact guidance per step (grey: $p_t(x|y)$)", fontsize=10)
        fig.tight_layout()
        return save(fig, out_dir, NAME)
