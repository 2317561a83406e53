"""Figure: the digits sweep as the REG paper plots it, FD-digits against the score over the guidance weight.

One panel per sampler and method (constant, linear, cosine and interval CFG, AutoG: the ``methods`` of the
sweep's configuration), one line without REG and one per REG estimator across the weights: seed means, error bars = standard deviation
over seeds, the unguided run as a star. :func:`compute` runs the sweep of :mod:`images.sweep` with the
shipped networks (minutes; ``quick``: :data:`images.sweep.QUICK`); :func:`from_result` turns any sweep
result (also rows read back from CSV) into the arrays :func:`plot` draws, without sampling.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from images.sweep import QUICK, SweepConfig, SweepResult, run_shipped
from images.sweep_stats import summarize
from sampler import ESTIMATORS
from sampler.method import Method

from .style import save, style

NAME = "digits_pareto"
CAPTION = ("Digits (8x8, class-conditional UNet): FD-digits against the digits score over the guidance weight "
           "(toy-scale FID/IS; labels = w), per sampler and method, without and with each REG estimator; "
           "seed means with standard deviations.")


class Curve(NamedTuple):
    """One method + REG estimator across the weights (ascending ``w``); each [W]."""

    w: np.ndarray
    score: np.ndarray  # mean over seeds
    fd: np.ndarray  # mean over seeds
    fd_std: np.ndarray  # standard deviation over seeds (0 with one seed)


@dataclass(frozen=True)
class DigitsPareto:
    samplers: tuple[str, ...]
    methods: tuple[str, ...]  # Method spellings without w and reg
    regs: tuple[str, ...]  # "" (no REG) and the REG estimators
    steps: dict  # sampler -> number of levels
    curves: dict  # (sampler, method, reg) -> Curve
    unguided: dict  # sampler -> (score, fd), seed means


def from_result(result: SweepResult) -> DigitsPareto:
    """The arrays of the figure from a sweep result (no sampling)."""
    if not isinstance(result, SweepResult):
        raise ValueError(f"result must be an images.sweep.SweepResult, got {type(result).__name__}")
    cfg = result.config
    summ = summarize(result)
    curves = {}
    for smp in cfg.samplers:
        for m in cfg.methods:
            for e in ("",) + cfg.regs:
                pts = sorted((s for s in summ if (s.sampler, s.method, s.reg) == (smp, m, e)), key=lambda s: s.w)
                if pts:
                    curves[smp, m, e] = Curve(np.array([p.w for p in pts]), np.array([p.score for p in pts]),
                                              np.array([p.fd for p in pts]), np.nan_to_num(np.array([p.fd_std for p in pts])))
    unguided = {s.sampler: (s.score, s.fd) for s in summ if s.method == "unguided"}
    return DigitsPareto(cfg.samplers, cfg.methods, ("",) + cfg.regs, dict(cfg.steps), curves, unguided)


@functools.cache
def compute(quick: bool = False) -> DigitsPareto:
    """Run the digits sweep with the shipped networks on the CPU (``quick``: 2 seeds, 2 weights, fewer steps)."""
    return from_result(run_shipped(QUICK if quick else SweepConfig(), device="cpu", progress=False))


def summary(c: DigitsPareto) -> dict:
    """The best (lowest mean FD) weight of every sampler and method (keys ``SAMPLER/METHOD``, the method's
    spelling with its REG estimator, e.g. ``ddpm/cfg,reg=paper``), and the unguided runs."""
    best = {}
    for (smp, m, e), cur in c.curves.items():
        i = int(np.argmin(cur.fd))
        best[f"{smp}/{Method.parse(m).replace(reg=e)}"] = {"w": float(cur.w[i]), "fd": float(cur.fd[i]), "score": float(cur.score[i])}
    return {"best_fd": best, "unguided": {s: {"score": float(v[0]), "fd": float(v[1])} for s, v in c.unguided.items()}}


def plot(c: DigitsPareto, out_dir: Path, name: str = NAME) -> list[Path]:
    """Write ``name``.png and ``name``.pdf to ``out_dir``."""
    colors = dict(zip(("",) + ESTIMATORS, sns.color_palette("deep", 1 + len(ESTIMATORS))))
    with style():
        fig, axes = plt.subplots(len(c.samplers), len(c.methods), figsize=(3.0 * len(c.methods), 2.8 * len(c.samplers)),
                                 squeeze=False, sharey="row")
        for i, smp in enumerate(c.samplers):
            for j, m in enumerate(c.methods):
                ax = axes[i, j]
                for e in c.regs:
                    cur = c.curves.get((smp, m, e))
                    if cur is None:
                        continue
                    ax.errorbar(cur.score, cur.fd, yerr=cur.fd_std, marker="o", ms=3, lw=1.2, capsize=2, color=colors[e],
                                label=Method.parse(m).replace(reg=e).label)
                    for w, x, y in zip(cur.w, cur.score, cur.fd):
                        ax.annotate(f"{w:g}", (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
                if smp in c.unguided:
                    ax.plot([c.unguided[smp][0]], [c.unguided[smp][1]], "k*", ms=7, label="unguided")
                ax.set_title(f"{Method.parse(m).label} ({smp}, {c.steps[smp]} steps)", fontsize=8)
                ax.set_xlabel("digits score (IS-style) →", fontsize=7)
                if j == 0:
                    ax.set_ylabel("FD-digits ↓", fontsize=7)
        axes[0, -1].legend(fontsize=6, loc="best")
        fig.suptitle("Digits: FD against score over the guidance weight (toy-scale FID/IS; labels = w)", fontsize=9)
        fig.tight_layout()
        return save(fig, out_dir, name)
