"""Figure: output distributions against the tilted target.

1-D (paper_1d, T = 20, DDPM): the exact output laws of unguided, CFG, REG and the optimum (exact optimal guidance
from the tilted start N(0, 1) E_T) against ``p(x|y) R_0 / Z``, for w = 1 and 3: cells of the claims ledger
(:class:`evaluation.claims.cells.OutputCell`), so every TV and KL carries its error (the accuracy contract of
:mod:`evaluation.accuracy`). 2-D (correlated_2d, 20-step schedule reaching abar_T = 0.007): DDPM sample clouds over
the target's contours (a picture only; no number is taken from them).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from evaluation import tilted_target
from evaluation.cases import get_case
from evaluation.claims.cells import OutputCell
from evaluation.docs import format_number
from evaluation.spec import Law, Method, Schedule
from evaluation.sweep import run_cells
from sampler import sample, vp_prior

from .style import COLORS, START_LABELS, method_label, save, style

NAME = "outputs"
CAPTION = ("Output laws against the tilted target p(x|y) R_0 / Z: exact DDPM output densities on the paper's "
           "1-D toy (T = 20) for w = 1 and 3, and 2-D DDPM sample clouds on correlated_2d (20 steps to abar = 0.007). "
           "Unguided, CFG and REG start from N(0, 1); the optimum starts from the tilted start N(0, 1) E_T / Z (the "
           "start its exactness needs: from N(0, 1) it is not the optimum of the whole chain), so its curve shows what "
           "is reachable, not a like-for-like rule.")
METHODS_1D = ("unguided", "cfg", "reg", "optimal")
METHODS_2D = ("cfg", "reg_paper", "reg_vjp", "optimal")
METHOD_2D = {"cfg": Method("cfg"), "reg_paper": Method("cfg", reg="paper"), "reg_vjp": Method("cfg", reg="vjp"),
             "optimal": Method("optimal")}  # w = 1
WEIGHTS = (1.0, 3.0)
COLOR = {"unguided": "#8c564b", "cfg": COLORS["cfg"], "reg": COLORS["reg_paper"], "reg_paper": COLORS["reg_paper"],
         "reg_vjp": COLORS["reg_vjp"], "optimal": COLORS["golden"]}


GRID_1D = (-6.0, 6.0, 801)  # where the 1-D cells start (the accuracy contract refines and widens it as needed)
STARTS = {"optimal": "tilted_n01"}  # the optimum's start; every other method starts from N(0, 1)


@dataclass(frozen=True)
class Outputs:
    x: dict  # (w, method) -> [n] the grid of that output law (each cell's final grid)
    density: dict  # (w, method) -> [n] hat masses
    target: dict  # (w, method) -> [n] the tilted target's hat masses on the same grid
    tv: dict  # (w, method) -> total variation to the target
    kl: dict  # (w, method) -> KL(target || output)
    tv_error: dict  # (w, method) -> the TV's estimated error
    kl_error: dict  # (w, method) -> the KL's estimated error
    axis2: np.ndarray  # [m] 2-D target grid axis
    target2: np.ndarray  # [m, m] target mass
    samples2: dict  # method -> [n2, 2]


def _method(m: str, w: float) -> Method:
    return {"unguided": Method("unguided", w=w), "cfg": Method("cfg", w=w), "reg": Method("cfg", w=w, reg="paper"),
            "optimal": Method("optimal", w=w)}[m]


def _label(m: str) -> str:
    """The legend entry of the 1-D method ``m``: its Method.label, and its start where it is not N(0, 1)."""
    return method_label(_method(m, 1.0), formula=True) + (f", {START_LABELS[STARTS[m]]}" if m in STARTS else "")


def _cells_1d(quick: bool) -> dict:
    """{(w, method): its output cell} of the 1-D panels."""
    tol = 1e-3 if quick else 1e-4
    return {(w, m): OutputCell("paper_1d", "paper", _method(m, w), STARTS.get(m, "n01"), grid=GRID_1D, keep_mass=True,
                               tol=tol)
            for w in WEIGHTS for m in METHODS_1D}


def cells(quick: bool = False) -> list:
    """The figure's cells (the cells protocol of :mod:`figures`): the 1-D output laws."""
    return list(_cells_1d(quick).values())


@functools.cache
def compute(quick: bool = False) -> Outputs:
    one = _cells_1d(quick)
    res = dict(zip(one, run_cells(list(one.values()), progress=False).results))
    x, density, target, tv, kl, tv_e, kl_e = {}, {}, {}, {}, {}, {}, {}
    for k, r in res.items():
        if not r.valid:
            raise ValueError(f"outputs: {one[k]!r} has no result: {r.reason}")
        lo, hi, n = r.grid
        x[k], density[k], target[k] = np.linspace(lo, hi, int(n)), r.mass, r.target_mass
        tv[k], kl[k], tv_e[k], kl_e[k] = r.tv, r.kl_target_out, r.tv_error, r.kl_target_out_error
    # 2-D sample clouds
    law2, sched2 = Law.parse("correlated_2d"), Schedule.parse(get_case("correlated_2d").schedule)
    built = {m: METHOD_2D[m].build(law2, sched2) for m in METHODS_2D}
    axis2 = torch.linspace(-1.5, 2.5, 81, dtype=torch.float64)
    target2 = tilted_target(built["cfg"].law.cond, built["cfg"].reward, (axis2, axis2)).mass.numpy()
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(500 if quick else 2000, 2, dtype=torch.float64, generator=gen)
    samples2 = {}
    for m in METHODS_2D:
        x2 = vp_prior(noise, sched2.vp.sigmas[-1].item())
        samples2[m] = sample("ddpm", built[m].guided, x2, sched2.vp.sampling_sigmas(),
                             generator=torch.Generator().manual_seed(1)).numpy()
    return Outputs(x, density, target, tv, kl, tv_e, kl_e, axis2.numpy(), target2, samples2)


def summary(o: Outputs) -> dict:
    """TV and KL(target || output) of each 1-D law, each with its estimated error."""
    return {f"w={w}": {m: {"tv": {"value": o.tv[w, m], "error": o.tv_error[w, m]},
                           "kl_target_out": {"value": o.kl[w, m], "error": o.kl_error[w, m]}} for m in METHODS_1D}
            for w in WEIGHTS}


def conclusion(o: Outputs) -> str:
    """The ranking of the rules (not the optimum) by TV to the target at each weight, from the numbers (each TV with
    its error)."""
    parts = []
    for w in WEIGHTS:
        ranked = sorted(("unguided", "cfg", "reg"), key=lambda m: o.tv[w, m])
        parts.append(f"w = {w:g}: " + " < ".join(
            f"{method_label(_method(m, w))} ({format_number(o.tv[w, m], o.tv_error[w, m])})" for m in ranked))
    return "TV to the target, from N(0, 1): " + "; ".join(parts) + "."


def plot(o: Outputs, out_dir: Path) -> list[Path]:
    with style():
        fig = plt.figure(figsize=(13, 3.9), layout="constrained")
        grid = fig.add_gridspec(2, len(WEIGHTS) * 2 + 2)
        axes = [fig.add_subplot(grid[:, 2 * i:2 * i + 2]) for i in range(len(WEIGHTS))]
        for ax, w in zip(axes, WEIGHTS):
            x = o.x[w, "cfg"]
            ax.fill_between(x, o.target[w, "cfg"] / (x[1] - x[0]), color="0.85", label="tilted target")
            for m in METHODS_1D:
                x = o.x[w, m]
                ax.plot(x, o.density[w, m] / (x[1] - x[0]), color=COLOR[m], lw=1.2, ls="--" if m == "optimal" else "-",
                        label=f"{_label(m)} (TV {o.tv[w, m]:.3f})")
            ax.set_xlim(-1, 2.5)
            ax.set_title(f"paper 1-D, w = {w:g}, DDPM T = 20")
            ax.set_xlabel("$x_0$")
            ax.set_ylabel("output density")
            ax.legend(loc="upper left")
        X, Y = np.meshgrid(o.axis2, o.axis2, indexing="ij")
        for k, m in enumerate(METHODS_2D):  # one small panel per method: clouds drawn together hide each other
            ax = fig.add_subplot(grid[k // 2, 2 * len(WEIGHTS) + k % 2])
            ax.contour(X, Y, o.target2, levels=6, colors="0.4", linewidths=0.6)
            s = o.samples2[m]
            ax.scatter(s[:, 0], s[:, 1], s=1.5, alpha=0.4, color=COLOR[m], rasterized=True)
            ax.set_xlim(-0.3, 2.3)
            ax.set_ylim(-0.3, 2.0)
            ax.set_aspect("equal")
            ax.set_title(method_label(METHOD_2D[m], formula=True) + (" (from N(0, 1))" if m == "optimal" else ""),
                         fontsize=7)
            ax.tick_params(labelsize=6)
            ax.set_xlabel("$x_1$", fontsize=7, labelpad=1)
            ax.set_ylabel("$x_2$", fontsize=7, labelpad=1)
        fig.suptitle("Output laws against the tilted target (grey); right: correlated_2d, w = 1, DDPM samples over "
                     "the target's contours", fontsize=9)
        return save(fig, out_dir, NAME)
