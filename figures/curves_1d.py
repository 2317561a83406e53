"""Figure: 1-D per-step guidance curves, golden vs CFG vs REG (the paper's Figure 1 setting).

Paper 1-D preset, T = 20, w = 1, points on [-1, 2]. Exact: the ideal-chain golden, the sampler-chain
golden (what the paper's Monte Carlo golden estimates), CFG and REG (all estimators coincide in 1-D). One cached
cell of :mod:`evaluation.sweep` (:class:`evaluation.findings.CurvesCell`, the cells protocol of :mod:`figures`);
every mean gap the figure publishes carries its error: the goldens' quadrature error estimates carried through
the mean (CFG and REG are closed forms, exact to machine precision).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from evaluation.findings import CurvesCell
from evaluation.spec import Method
from evaluation.sweep import run_cells

from .style import LABELS, PAPER_COLORS, method_label, save, style

NAME = "curves_1d"
CAPTION = ("Per-step guidance in eps units on the paper's 1-D toy (T = 20, w = 1): exact ideal-chain and "
           "sampler-chain goldens (blue) against CFG (green) and REG (red; 1-D: every REG estimator is the same), in "
           "the colours of the paper's Figure 1; grey: the conditional density p_t(x|y) on its own axis (right). "
           "Pointwise either can be closer (t = 20, x near 0.5: CFG); averaged under p_t(x|y):")
# the method each array of a CurvesCell is, at w = 1 (in 1-D every REG estimator gives the paper's)
METHOD = {"cfg": Method("cfg"), "reg": Method("cfg", reg="paper")}


POINTS = {False: 1000, True: 301}  # points on [-1, 2] (full, quick)


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
    golden_error: np.ndarray  # [T, n] error estimate of golden
    chain_error: np.ndarray  # [T, n] error estimate of chain


def _cell(quick: bool) -> CurvesCell:
    return CurvesCell("paper_1d", 1.0, POINTS[bool(quick)])


def cells(quick: bool = False) -> list:
    """The figure's cell (the cells protocol of :mod:`figures`)."""
    return [_cell(quick)]


@functools.cache  # maps_1d and trained_1d draw the same arrays
def compute(quick: bool = False) -> Curves1D:
    (r,) = run_cells(cells(quick), progress=False).results
    return Curves1D(r.x, np.arange(1, len(r.abar) + 1), r.abar, r.golden, r.chain, r.cfg, r.reg, r.weight,
                    r.golden_error, r.chain_error)


def mean_gap(golden: np.ndarray, error: np.ndarray, field: np.ndarray, weight: np.ndarray | None = None) -> dict:
    """Mean over steps of the mean |golden - field| over the points (``weight`` [T, n]: weighted per step), with its
    error: the same mean of the golden's error estimate (| |a| - |b| | <= |a - b|; the field is a closed form or a
    network's measurement, with no error of its own)."""
    w = np.full(golden.shape, 1.0 / golden.shape[1]) if weight is None else weight / weight.sum(1, keepdims=True)
    return {"value": float((np.abs(golden - field) * w).sum(1).mean()), "error": float((np.abs(error) * w).sum(1).mean())}


def summary(c: Curves1D) -> dict:
    """Mean |golden - CFG| and |golden - REG| (eps units) over the steps and points, against the ideal golden (plain
    and p_t(x|y)-weighted) and the sampler-chain golden, each with its error."""
    kinds = (("mean_abs_gap_ideal", c.golden, c.golden_error, None),
             ("mean_abs_gap_ideal_weighted", c.golden, c.golden_error, c.weight),
             ("mean_abs_gap_chain", c.chain, c.chain_error, None))
    return {kind: {m: mean_gap(g, e, getattr(c, m), wt) for m in ("cfg", "reg")} for kind, g, e, wt in kinds}


def conclusion(c: Curves1D) -> str:
    """Which of CFG and REG is closer to the golden, from the per-step table (mean |gap|, p_t(x|y)-weighted), with
    the largest error of the two means."""
    s = summary(c)["mean_abs_gap_ideal_weighted"]
    near, far = sorted(("cfg", "reg"), key=lambda m: s[m]["value"])
    name = {m: method_label(METHOD[m]) for m in METHOD}
    err = max(s[m]["error"] for m in s)
    return (f"{name[near]} is closer to the ideal golden than {name[far]} where the conditional has its mass: mean "
            f"|gap| under p_t(x|y) {s[near]['value']:.3f} against {s[far]['value']:.3f} eps units, averaged over the "
            f"steps (the golden's quadrature error: at most {err:.1e} on either).")


def plot(c: Curves1D, out_dir: Path) -> list[Path]:
    steps = [20, 15, 10, 6, 4, 2]  # t = 10 as in the paper's comparison figure
    with style():
        fig, axes = plt.subplots(2, 3, figsize=(9, 4.8), sharex=True)
        for ax, t in zip(axes.flat, steps):
            i = t - 1
            ax.plot(c.x, c.golden[i], color=PAPER_COLORS["golden"], lw=1.8, label=LABELS["golden"])
            ax.plot(c.x, c.chain[i], color=PAPER_COLORS["chain"], lw=1.2, ls="--", label=LABELS["chain"])
            ax.plot(c.x, c.cfg[i], color=PAPER_COLORS["cfg"], lw=1.1, label=method_label(METHOD["cfg"]))
            ax.plot(c.x, c.reg[i], color=PAPER_COLORS["reg"], lw=1.1, label=method_label(METHOD["reg"]))
            ax.set_title(f"t = {t}  (abar = {c.abar[i]:.3f})")
            twin = ax.twinx()
            h = c.x[1] - c.x[0]
            twin.fill_between(c.x, c.weight[i] / h, color="0.85", zorder=0)  # a density (per unit x), not masses
            twin.set_ylim(bottom=0)
            twin.tick_params(axis="y", labelsize=6, colors="0.45")
            twin.grid(False)
            if ax in axes[:, -1]:
                twin.set_ylabel("$p_t(x|y)$ (grey)", color="0.45", fontsize=8)
            ax.set_zorder(twin.get_zorder() + 1)
            ax.patch.set_visible(False)
        for ax in axes[-1]:
            ax.set_xlabel("$x_t$")
        for ax in axes[:, 0]:
            ax.set_ylabel("guidance term (eps units)")
        axes.flat[0].legend(loc="best")
        fig.suptitle("1-D paper toy: exact guidance per step (grey: $p_t(x|y)$, right axis)", fontsize=10)
        fig.tight_layout()
        return save(fig, out_dir, NAME)
