"""Figure: the paper's 1-D experiment with its trained networks, next to the exact mixture.

Shipped paper_1d checkpoints (conditional and unconditional MLPs, trained as in the paper), T = 20, w = 1.
Goldens of the trained chain: the exact grid recursion with the network's eps and the paper's Monte Carlo
estimator (100 stochastic rollouts, R_0 = ratio^w inside the expectation). One cached cell of :mod:`evaluation.sweep`
(:class:`evaluation.findings.TrainedCell`) beside the exact mixture's (``curves_1d``'s cell). The networks' CFG and
REG terms and the seeded Monte Carlo run are measurements of those networks and that run (no error of their own);
the error beside each published number is the exact goldens' quadrature error estimate carried through it."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from evaluation.findings import TrainedCell
from evaluation.sweep import run_cells

from . import curves_1d
from .style import LABELS, PAPER_COLORS, method_label, save, style

NAME = "trained_1d"
CAPTION = ("The paper's 1-D experiment with the shipped trained networks (T = 20, w = 1): top, exact mixture; "
           "bottom, trained networks with their exact grid golden and the paper's 100-rollout Monte Carlo golden "
           "(dots), CFG and REG, in the colours of curves_1d (the paper's Figure 1: golden blue, CFG green, REG red). "
           "The networks' terms and the seeded Monte Carlo run are measurements of those networks "
           "and that run (no error of their own); each number's error is the exact goldens' quadrature estimate.")
STEPS = (20, 12, 4)
POINTS = {False: 1000, True: 301}  # points on [-1, 2] (full, quick)
MC_EVERY = {False: 10, True: 30}  # the Monte Carlo golden at every MC_EVERY-th point
ROLLOUTS = 100


@dataclass(frozen=True)
class Trained1D:
    x: np.ndarray  # [n]
    grid_golden: np.ndarray  # [T, n] trained chain, exact recursion
    mc_x: np.ndarray  # [m] points of the Monte Carlo golden
    mc_golden: np.ndarray  # [len(STEPS), m]
    cfg: np.ndarray  # [T, n] trained
    reg: np.ndarray  # [T, n] trained
    exact: curves_1d.Curves1D
    grid_error: np.ndarray  # [T, n] error estimate of grid_golden


def _cell(quick: bool) -> TrainedCell:
    q = bool(quick)
    return TrainedCell("paper_1d", 1.0, POINTS[q], MC_EVERY[q], STEPS, ROLLOUTS, 0)


def cells(quick: bool = False) -> list:
    """The figure's cells (the cells protocol of :mod:`figures`): the trained networks' and the exact mixture's."""
    return [_cell(quick)] + curves_1d.cells(quick)


@functools.cache  # maps_1d draws the same arrays
def compute(quick: bool = False) -> Trained1D:
    (r,) = run_cells([_cell(quick)], progress=False).results
    return Trained1D(r.x, r.grid_golden, r.mc_x, r.mc_golden, r.cfg, r.reg, curves_1d.compute(quick), r.grid_error)


def summary(c: Trained1D) -> dict:
    """Mean |golden - term| of the networks' CFG and REG against their own chain's exact golden; the seeded Monte
    Carlo golden's mean distance to that golden; and that golden's to the exact mixture's sampler-chain golden. Each
    with its error (the exact goldens' quadrature estimates)."""
    idx = [s - 1 for s in STEPS]
    cols = np.searchsorted(c.x, c.mc_x)
    mc_rows, mc_err = c.grid_golden[idx][:, cols], c.grid_error[idx][:, cols]
    e = c.exact
    return {
        "trained_mean_abs_gap_chain": {m: curves_1d.mean_gap(c.grid_golden, c.grid_error, getattr(c, m))
                                       for m in ("cfg", "reg")},
        "mc_vs_grid_golden_mean_abs": {"value": float(np.abs(c.mc_golden - mc_rows).mean()),
                                       "error": float(np.abs(mc_err).mean())},
        "trained_vs_exact_chain_golden_mean_abs": {
            "value": float(np.abs(c.grid_golden - e.chain).mean()),
            "error": float(np.abs(c.grid_error).mean() + np.abs(e.chain_error).mean())},
    }


def plot(c: Trained1D, out_dir: Path) -> list[Path]:
    e = c.exact
    cfg, reg = (method_label(curves_1d.METHOD[m]) for m in ("cfg", "reg"))
    with style():
        fig, axes = plt.subplots(2, len(STEPS), figsize=(10, 5.6), sharex=True, layout="constrained")
        for j, t in enumerate(STEPS):
            i = t - 1
            top, bottom = axes[0, j], axes[1, j]
            top.plot(e.x, e.golden[i], color=PAPER_COLORS["golden"], lw=1.5, label=LABELS["golden"])
            top.plot(e.x, e.chain[i], color=PAPER_COLORS["chain"], ls="--", label=LABELS["chain"])
            top.plot(e.x, e.cfg[i], color=PAPER_COLORS["cfg"], label=cfg)
            top.plot(e.x, e.reg[i], color=PAPER_COLORS["reg"], label=reg)
            top.set_title(f"exact mixture, t = {t}")
            bottom.plot(c.x, c.grid_golden[i], color=PAPER_COLORS["chain"], ls="--",
                        label="golden (trained chain, grid)")
            bottom.plot(c.mc_x, c.mc_golden[j], "o", ms=2.5, color="k", label="golden (Monte Carlo, 100 rollouts)")
            bottom.plot(c.x, c.cfg[i], color=PAPER_COLORS["cfg"], label=f"{cfg}, trained")
            bottom.plot(c.x, c.reg[i], color=PAPER_COLORS["reg"], label=f"{reg}, trained")
            bottom.set_title(f"trained networks, t = {t}")
            bottom.set_xlabel("$x_t$")
        for row in axes:  # each row's key beside it: inside a panel it covered the curves
            row[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7)
        for ax in axes[:, 0]:
            ax.set_ylabel("guidance (eps units)")
        return save(fig, out_dir, NAME)
