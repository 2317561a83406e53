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

from evaluation import demo

from .style import LABELS, save, style

NAME = "curves_1d"
CAPTION = ("Per-step guidance in eps units on the paper's 1-D toy (T = 20, w = 1): exact ideal-chain and "
           "sampler-chain goldens (blue) against CFG (green) and REG (red; 1-D: every REG estimator is the same), in "
           "the colours of the paper's Figure 1; grey: the conditional density p_t(x|y) on its own axis (right). "
           "Pointwise either can be closer (t = 20, x near 0.5: CFG); averaged under p_t(x|y):")
# the paper's Figure 1 colours (paper_figure_compare_t10.png: blue golden, red REG, green CFG), so the two figures
# can be compared side by side without remapping
PAPER_COLORS = {"golden": "#1f77b4", "chain": "#6baed6", "cfg": "#2ca02c", "reg": "#d62728"}


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
    errors: demo.DemoErrors  # the per-step table of evaluation.demo


@functools.cache  # maps_1d draws the same arrays
def compute(quick: bool = False, preset: str = "paper_1d", w: float = 1.0) -> Curves1D:
    c = demo.compute(preset, w, 301 if quick else 1000)
    arr = {k: v.numpy() for k, v in c._asdict().items()}
    return Curves1D(arr["x"], np.arange(1, len(arr["abar"]) + 1), arr["abar"], arr["golden"], arr["chain"],
                    arr["cfg"], arr["reg"], arr["weight"], demo.errors(c))


def summary(c: Curves1D) -> dict:
    e = c.errors
    mean = lambda gaps, m: float(gaps.of(m).mean())  # noqa: E731
    return {kind: {m: mean(getattr(e, attr), m) for m in ("cfg", "reg")}
            for kind, attr in (("mean_abs_gap_ideal", "ideal"), ("mean_abs_gap_ideal_weighted", "ideal_weighted"),
                               ("mean_abs_gap_chain", "chain"))}


def conclusion(c: Curves1D) -> str:
    """Which of CFG and REG is closer to the golden, from the per-step table (mean |gap|, p_t(x|y)-weighted)."""
    s = summary(c)["mean_abs_gap_ideal_weighted"]
    near, far = sorted(("cfg", "reg"), key=s.get)
    name = {"cfg": "CFG", "reg": "REG"}
    return (f"{name[near]} is closer to the ideal golden than {name[far]} where the conditional has its mass: mean "
            f"|gap| under p_t(x|y) {s[near]:.3f} against {s[far]:.3f} eps units, averaged over the steps.")


def plot(c: Curves1D, out_dir: Path) -> list[Path]:
    steps = [20, 15, 10, 6, 4, 2]  # t = 10 as in the paper's comparison figure
    with style():
        fig, axes = plt.subplots(2, 3, figsize=(9, 4.8), sharex=True)
        for ax, t in zip(axes.flat, steps):
            i = t - 1
            ax.plot(c.x, c.golden[i], color=PAPER_COLORS["golden"], lw=1.8, label=LABELS["golden"])
            ax.plot(c.x, c.chain[i], color=PAPER_COLORS["chain"], lw=1.2, ls="--", label=LABELS["chain"])
            ax.plot(c.x, c.cfg[i], color=PAPER_COLORS["cfg"], lw=1.1, label=LABELS["cfg"])
            ax.plot(c.x, c.reg[i], color=PAPER_COLORS["reg"], lw=1.1, label="REG")
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
