"""Figure: CFG and REG's estimators against the exact optimum as the dimension grows (issue 13).

Everything is :func:`evaluation.dimension.compute` (exact reduced golden in any d, every estimator on the exact
denoisers, exact 1-D output laws); this module only draws it. Rows: fixed separation of the class means, and
separation growing like ``sqrt(d)`` (Pavasovic et al.'s regime). Columns: (a) the field error
``E_{p_t(x|y)} |golden - field|`` against d with equal class variances (Pavasovic et al.'s isotropic classes),
averaged over the noise levels, ``U`` at a random orientation (solid) and on the axes (the paper's ``J^T 1``,
dotted); (b) the same with unequal class variances; (c) the output law along ``U``: the mean's overshoot past the
tilted target's and the variance relative to it.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np

from evaluation import dimension
from evaluation.dimension import LAW_METHODS, METHODS, ORIENTATIONS, SEPARATIONS, VARIANCES, DimensionStudy

from .style import COLORS, method_label, save, style

NAME = "dimension"
CAPTION = ("Guidance in d = 1 to 4096, exact: mean field error |golden - field| under p_t(x|y) of CFG and REG's "
           "estimators (paper J^T 1, vjp, diag) with fixed and sqrt(d)-growing class separation, U at a random "
           "orientation or on the axes, and the output law along U (mean overshoot, variance ratio to the tilted "
           "target) of CFG, REG, damped CFG and the optimum. Bands: +-2 standard errors of the Monte Carlo mean over "
           "the points (n_points per cell): a bump (REG paper near d = 8-16) that leaves its band is not sampling noise "
           "but the random orientation of U drawn at that d (J^T 1 depends on U's coordinates). "
           "Numbers: each field error (averaged over the levels) with one Monte Carlo standard error plus the golden's "
           "quadrature error; closer / further: how many of the (d, abar) cells an estimator is closer to the optimum "
           "than CFG, or further, beyond two standard errors and the golden's error (exact counts of that rule); the "
           "output-law moments along U with their errors under the accuracy contract. "
           "Conclude: every REG estimator is closer to the optimum than CFG; J^T 1 and diag drift towards damped CFG "
           "as d grows at a random orientation.")
SHOWN = ("cfg", "cfg,reg=paper", "cfg,reg=vjp", "cfg,reg=diag", "damped")
COLOR = {"cfg": COLORS["cfg"], "cfg,reg=paper": COLORS["reg_paper"], "cfg,reg=vjp": COLORS["reg_vjp"],
         "cfg,reg=diag": COLORS["reg_diag"], "damped": "#8c564b", "unguided": "#aaaaaa", "optimal": COLORS["golden"]}
# names that are not Method.label's: the d -> inf limit (no Method), and the estimators that coincide with vjp
OTHER_LABEL = {"damped": "damped CFG (d -> inf limit)"}
SAME_AS = {"cfg,reg=vjp": " (= jvp, fd)"}


def _label(m: str) -> str:
    """The legend entry of the study's method ``m``: its Method.label (with the formula of a REG estimator)."""
    return OTHER_LABEL[m] if m in OTHER_LABEL else method_label(m, formula=True) + SAME_AS.get(m, "")


def cells(quick: bool = False) -> list:
    """The study's cells (the cells protocol of :mod:`figures`)."""
    return dimension.cells(quick)


@functools.cache
def compute(quick: bool = False) -> DimensionStudy:
    return dimension.compute(quick=quick)


def fingerprint(r: DimensionStudy) -> DimensionStudy:
    """What :func:`plot` draws (``paper_plots.py`` keeps the files when it is unchanged): the study without its
    run time."""
    return dataclasses.replace(r, seconds=0.0)


def summary(r: DimensionStudy) -> dict:
    return dimension.summary(r)


def _field_panel(ax, r: DimensionStudy, s: int, v: int) -> None:
    err = r.err[s, v].mean(axis=2)  # [O, D, M], mean over the noise levels
    # standard error of that mean over the points (independent per level): sqrt(sum se^2) / L
    se = np.sqrt((r.err_se[s, v] ** 2).sum(axis=2)) / r.err_se.shape[4]
    o_rand, o_axes = ORIENTATIONS.index("random"), ORIENTATIONS.index("axes")
    for m in SHOWN:
        i = METHODS.index(m)
        ax.plot(r.dims, err[o_rand, :, i], "-", marker="o", ms=3, color=COLOR[m], label=_label(m))
        lo, hi = err[o_rand, :, i] - 2 * se[o_rand, :, i], err[o_rand, :, i] + 2 * se[o_rand, :, i]
        ax.fill_between(r.dims, np.maximum(lo, err[o_rand, :, i] / 10), hi, color=COLOR[m], alpha=0.18, lw=0)
    i = METHODS.index("cfg,reg=paper")
    ax.plot(r.dims, err[o_axes, :, i], ":", marker=".", color=COLOR["cfg,reg=paper"],
            label=f"{_label('cfg,reg=paper')}, U on the axes")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("d")
    ax.set_ylabel("mean |golden - field| (eps units)")
    ax.set_title(f"{SEPARATIONS[s]} separation, {VARIANCES[v]} variances, U random")


def _law_panels(ax_mean, ax_var, r: DimensionStudy, s: int) -> None:
    """The output law along U: mean overshoot and variance ratio, in two panels (twin axes were hard to read)."""
    for i, m in enumerate(LAW_METHODS):
        ax_mean.plot(r.law_dims, r.law_mean[s, :, i] - r.target_mean[s], "-", marker="o", ms=3, color=COLOR[m],
                     label=_label(m))
        ax_var.plot(r.law_dims, r.law_var[s, :, i] / r.target_var[s], "-", marker="o", ms=3, color=COLOR[m])
    ax_mean.axhline(0.0, color="0.6", lw=0.6)
    ax_var.axhline(1.0, color="0.6", lw=0.6)
    for ax in (ax_mean, ax_var):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("d")
    ax_mean.set_ylabel("output mean - target mean along U")
    ax_var.set_ylabel("output variance / target variance")
    ax_mean.set_title(f"{SEPARATIONS[s]} separation: mean along U ({r.law_steps} DDPM steps)")
    ax_var.set_title(f"{SEPARATIONS[s]} separation: variance along U")


def plot(r: DimensionStudy, out_dir: Path) -> list[Path]:
    with style():
        fig, axes = plt.subplots(len(SEPARATIONS), 4, figsize=(19, 8.5), layout="constrained")
        for s in range(len(SEPARATIONS)):
            for v in range(len(VARIANCES)):
                _field_panel(axes[s, v], r, s, v)
                axes[s, v].yaxis.set_major_locator(mticker.LogLocator(base=10, numticks=12))
                axes[s, v].margins(y=0.15)  # the top line keeps a tick above it
            _law_panels(axes[s, 2], axes[s, 3], r, s)
        fields = axes[0, 0].get_legend_handles_labels()
        laws = axes[0, 2].get_legend_handles_labels()
        fig.legend(*fields, loc="outside lower left", ncol=3, fontsize=7, title="field error (columns 1-2)")
        fig.legend(*laws, loc="outside lower right", ncol=3, fontsize=7, title="output law (columns 3-4)")
        fig.suptitle(f"Guidance as d grows: w = {r.w:g}, class means +-{r.delta:g} around mu q (mu = {r.mu0:g} or "
                     f"{r.mu0:g} sqrt(d)) and -mu q, {r.n_points} points per cell, levels abar in "
                     f"{np.round(r.abars, 4).tolist()}", fontsize=10)
        return save(fig, out_dir, NAME)
