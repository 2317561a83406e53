"""Figure: weight sweeps, the toy counterpart of the paper's Pareto plots.

Paper 1-D toy, T = 20, DDPM from N(0, 1). For the ledger's guidance families (:data:`FAMILIES`: CFG at a
constant weight, with a linear or cosine weight schedule or on an interval, AutoG with the weak model of
``Method.bad``, CG with the exact Bayes classifier; one spelling, :class:`evaluation.spec.Method`), each with and
without REG (1-D: every estimator is the same): the p_t-weighted field error against the ideal-chain golden (mean
over steps) and the exact output TV and KL(target || output) against the tilted target of the method's own
reward at weight w. Every number is a cell of the claims ledger (:class:`evaluation.claims.cells.OutputCell`,
``FieldCell``: the same cells, cached once), and every number carries its error: the output numbers under the
accuracy contract of :mod:`evaluation.accuracy`, the field error the golden's own quadrature error (the mean over
the grid and the levels of its error estimate, which bounds how far the mean of ``|golden - field|`` moves).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from evaluation.claims.cells import FieldCell, OutputCell
from evaluation.claims.reg_map import FAMILY_VARIANTS, FIELD_1D, GRID_1D, GRID_1D_QUICK
from evaluation.spec import Method
from evaluation.sweep import run_cells

from .style import plain_log_ticks, save, style

NAME = "sweeps"
CAPTION = ("Weight sweeps on the paper's 1-D toy (T = 20, DDPM from N(0, 1)): field error (p_t-weighted, against the "
           "ideal golden) and the exact output TV / KL(target||output) against each method's own tilted target, "
           "as proposed (solid) and with REG (dashed). Lower is closer; REG helps a method where its dashed line "
           "lies below the solid one of the same colour. The field error is the mean over the grid x_t in [-1, 2] "
           "(p_t(x|y) normalised on it) and the levels; each number's error: the golden's quadrature error for the "
           "field error, the accuracy contract's for TV and KL.")
FAMILIES = (Method(),) + FAMILY_VARIANTS  # the ledger's families (evaluation.claims.reg_map), by value
REG_ESTIMATOR = "paper"  # 1-D: every estimator is the same
COLORS = dict(zip(FAMILIES, ("#1f77b4", "#2ca02c", "#9467bd", "#17becf", "#ff7f0e", "#8c564b")))
LAW, SCHEDULE = "paper_1d", "paper"


@dataclass(frozen=True)
class Sweeps:
    weights: tuple[float, ...]
    field: dict  # (family, reg: bool) -> [W] weighted field error
    tv: dict  # (family, reg) -> [W]
    kl: dict  # (family, reg) -> [W]
    tv_error: dict  # (family, reg) -> [W] the TV's estimated error
    kl_error: dict  # (family, reg) -> [W]
    field_error: dict  # (family, reg) -> [W] the weighted field error's error (the golden's)


def weights(quick: bool) -> tuple[float, ...]:
    return (0.5, 1.0, 2.0, 3.0) if quick else (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)


def _method(family: Method, w: float, reg: bool) -> Method:
    return family.replace(w=w, reg=REG_ESTIMATOR if reg else "")


def _pairs(quick: bool):
    """((family, reg, w), output cell, field cell) of every point of the figure."""
    grid = GRID_1D_QUICK if quick else GRID_1D
    for f in FAMILIES:
        for r in (False, True):
            for w in weights(quick):
                m = _method(f, w, r)
                yield (f, r, w), OutputCell(LAW, SCHEDULE, m, grid=grid), FieldCell(LAW, SCHEDULE, m, FIELD_1D, 20)


def cells(quick: bool = False) -> list:
    """The figure's cells (the cells protocol of :mod:`figures`)."""
    return list(dict.fromkeys(c for _, out, fld in _pairs(quick) for c in (out, fld)))


@functools.cache
def compute(quick: bool = False) -> Sweeps:
    res = dict(zip(cells(quick), run_cells(cells(quick), progress=False).results))
    ws = weights(quick)
    keys = [(f, r) for f in FAMILIES for r in (False, True)]
    field, tv, kl, tv_e, kl_e, field_e = ({k: np.full(len(ws), np.nan) for k in keys} for _ in range(6))
    for (f, r, w), out, fld in _pairs(quick):
        i, o, fe = ws.index(w), res[out], res[fld]
        if not (o.valid and fe.valid):
            raise ValueError(f"sweeps: {_method(f, w, r)} has no tilted target on {LAW} ({o.reason or fe.reason})")
        field[f, r][i], tv[f, r][i], kl[f, r][i] = fe.mean_error_weighted, o.tv, o.kl_target_out
        tv_e[f, r][i], kl_e[f, r][i], field_e[f, r][i] = o.tv_error, o.kl_target_out_error, fe.mean_error_weighted_error
    return Sweeps(ws, field, tv, kl, tv_e, kl_e, field_e)


def summary(s: Sweeps) -> dict:
    """Per method, the weight with the smallest output TV (a setting, no error) and the numbers there, each with its
    error (an error that is not known, nan, is published as inf)."""
    out = {}
    for f in FAMILIES:
        for r in (False, True):
            i = int(np.argmin(s.tv[f, r]))
            out[_method(f, f.w, r).label] = {
                "best_w_by_tv": s.weights[i],
                "tv": {"value": float(s.tv[f, r][i]), "error": float(s.tv_error[f, r][i])},
                "kl_target_out": {"value": float(s.kl[f, r][i]), "error": float(s.kl_error[f, r][i])},
                "field_error_weighted": {"value": float(s.field[f, r][i]), "error": _known(s.field_error[f, r][i])}}
    return {"best_per_method": out}


def _known(error: float) -> float:
    return float(error) if np.isfinite(error) else math.inf


def plot(s: Sweeps, out_dir: Path) -> list[Path]:
    with style():
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.9), sharex=True, layout="constrained")
        panels = ((s.field, "field error, $p_t$-weighted (eps units)"), (s.tv, "output TV to the target"),
                  (s.kl, "KL(target || output) (nats)"))
        for ax, (data, label) in zip(axes, panels):
            for f in FAMILIES:
                ax.plot(s.weights, data[f, False], "-o", ms=3, color=COLORS[f])
                ax.plot(s.weights, data[f, True], "--s", ms=3, color=COLORS[f], mfc="none")
            ax.set_xlabel("w")
            ax.set_ylabel(label)
        axes[2].set_yscale("log")
        plain_log_ticks(axes[2].yaxis)  # KL spans about one decade: 0.3, 0.5, 1 instead of one labelled tick
        key = [plt.Line2D([], [], color=COLORS[f], label=f.label) for f in FAMILIES]
        key += [plt.Line2D([], [], color="0.3", ls="-", marker="o", ms=3, label="as proposed"),
                plt.Line2D([], [], color="0.3", ls="--", marker="s", ms=3, mfc="none", label="with REG")]
        fig.legend(handles=key, loc="outside right center", fontsize=7)
        fig.suptitle("paper 1-D toy: weight sweeps, each method against its own tilted target", fontsize=10)
        return save(fig, out_dir, NAME)
