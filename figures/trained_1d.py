"""Figure: the paper's 1-D experiment with its trained networks, next to the exact mixture.

Shipped paper_1d checkpoints (conditional and unconditional MLPs, trained as in the paper), T = 20, w = 1.
Goldens of the trained chain: the exact grid recursion with the network's eps and the paper's Monte Carlo
estimator (100 stochastic rollouts, R_0 = ratio^w inside the expectation)."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from analytic import CFGReward, get_preset
from sampler.schedules import VPSchedule
from toy import grid_golden, load_pretrained, mc_golden, net_eps_fn, trained_fields

from . import curves_1d
from .style import COLORS, LABELS, save, style

NAME = "trained_1d"
CAPTION = ("The paper's 1-D experiment with the shipped trained networks (T = 20, w = 1): top, exact mixture; "
           "bottom, trained networks with their exact grid golden and the paper's 100-rollout Monte Carlo golden "
           "(dots), CFG and REG.")
STEPS = (20, 12, 4)


@dataclass(frozen=True)
class Trained1D:
    x: np.ndarray  # [n]
    grid_golden: np.ndarray  # [T, n] trained chain, exact recursion
    mc_x: np.ndarray  # [m] points of the Monte Carlo golden
    mc_golden: np.ndarray  # [len(STEPS), m]
    cfg: np.ndarray  # [T, n] trained
    reg: np.ndarray  # [T, n] trained
    exact: curves_1d.Curves1D


@functools.cache
def compute(quick: bool = False) -> Trained1D:
    p = get_preset("paper_1d")
    sched = VPSchedule.paper_1d()
    reward = CFGReward(p.cond, p.uncond, 1.0)
    net_c, net_u = load_pretrained("paper_1d", "cond").net, load_pretrained("paper_1d", "uncond").net
    n = 301 if quick else 1000
    x = torch.linspace(-1, 2, n, dtype=torch.float64)
    grid = grid_golden(net_c, 0, reward.log_r0, sched, x).golden[..., 0]
    mc_x = x[:: (30 if quick else 10)]
    mc = mc_golden(net_eps_fn(net_c, 0, sched), reward.log_r0, sched, mc_x[:, None], steps=STEPS, n_rollouts=100, seed=0)
    f = trained_fields(net_c, 0, net_u, None, 1.0, sched, x[:, None])
    return Trained1D(x.numpy(), grid.numpy(), mc_x.numpy(), mc.golden[..., 0].numpy(), f.present[..., 0].numpy(),
                     f.reg_paper[..., 0].numpy(), curves_1d.compute(quick))


def summary(c: Trained1D) -> dict:
    idx = [s - 1 for s in STEPS]
    mc_rows = c.grid_golden[idx][:, np.searchsorted(c.x, c.mc_x)]
    return {
        "trained_mean_abs_gap_chain": {"cfg": float(np.abs(c.grid_golden - c.cfg).mean()),
                                       "reg": float(np.abs(c.grid_golden - c.reg).mean())},
        "mc_vs_grid_golden_mean_abs": float(np.abs(c.mc_golden - mc_rows).mean()),
        "trained_vs_exact_chain_golden_mean_abs": float(np.abs(c.grid_golden - c.exact.chain).mean()),
    }


def plot(c: Trained1D, out_dir: Path) -> list[Path]:
    e = c.exact
    with style():
        fig, axes = plt.subplots(2, len(STEPS), figsize=(10, 5.6), sharex=True, layout="constrained")
        for j, t in enumerate(STEPS):
            i = t - 1
            top, bottom = axes[0, j], axes[1, j]
            top.plot(e.x, e.golden[i], color=COLORS["golden"], lw=1.5, label=LABELS["golden"])
            top.plot(e.x, e.chain[i], color=COLORS["chain"], ls="--", label=LABELS["chain"])
            top.plot(e.x, e.cfg[i], color=COLORS["cfg"], label="CFG")
            top.plot(e.x, e.reg[i], color=COLORS["reg_paper"], label="REG")
            top.set_title(f"exact mixture, t = {t}")
            bottom.plot(c.x, c.grid_golden[i], color=COLORS["chain"], ls="--", label="golden (trained chain, grid)")
            bottom.plot(c.mc_x, c.mc_golden[j], "o", ms=2.5, color="k", label="golden (Monte Carlo, 100 rollouts)")
            bottom.plot(c.x, c.cfg[i], color=COLORS["cfg"], label="CFG (trained)")
            bottom.plot(c.x, c.reg[i], color=COLORS["reg_paper"], label="REG (trained)")
            bottom.set_title(f"trained networks, t = {t}")
            bottom.set_xlabel("$x_t$")
        for row in axes:  # each row's key beside it: inside a panel it covered the curves
            row[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7)
        for ax in axes[:, 0]:
            ax.set_ylabel("guidance (eps units)")
        return save(fig, out_dir, NAME)
