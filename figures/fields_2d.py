"""Figure: 2-D guidance vector fields (golden, CFG, REG (paper), REG (vjp)) at several noise levels, with the
error of each method against the golden as the background. One cached cell of :mod:`evaluation.sweep` per preset
and level (:class:`evaluation.findings.FieldMapCell`, the cells protocol of :mod:`figures`); every published mean
error carries its error: the golden's quadrature error estimate carried through the mean (the methods' fields are
closed forms, exact to machine precision)."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from evaluation.findings import FieldMapCell
from evaluation.spec import Method
from evaluation.sweep import run_cells

from .style import method_label, save, style

NAME = "fields_2d"
CAPTION = ("2-D guidance fields (eps units, w = 1) on the correlated_2d and classes_2d presets at three noise "
           "levels: arrows are the fields, the background of each method is its error |golden - method|. Each row's "
           "colour scale ends at the 99th percentile of its errors (the arrow on the colour bar): the 1 % of points "
           "above it, which would otherwise blank the rest of the row, are drawn in the darkest colour.")
PRESETS = ("correlated_2d", "classes_2d")
LEVELS = (0.5, 0.82, 0.95)
METHODS = ("golden", "present", "reg_paper", "reg_vjp")
W = 1.0
# the method each field of a FieldMapCell is (at w = W)
METHOD = {"present": Method("cfg", w=W), "reg_paper": Method("cfg", w=W, reg="paper"),
          "reg_vjp": Method("cfg", w=W, reg="vjp")}
POINTS = {False: 49, True: 25}  # grid points per axis of [-1, 2]^2 (full, quick)


@dataclass(frozen=True)
class Fields2D:
    axis: np.ndarray  # [n]
    fields: dict  # (preset, abar, method) -> [n, n, 2]
    density: dict  # (preset, abar) -> [n, n] p_t(x | y)
    golden_error: dict  # (preset, abar) -> [n, n, 2] error estimate of the golden field


def _cells(quick: bool) -> dict:
    """{(preset, abar): its cell}."""
    return {(p, a): FieldMapCell(p, W, a, POINTS[bool(quick)]) for p in PRESETS for a in LEVELS}


def cells(quick: bool = False) -> list:
    """The figure's cells (the cells protocol of :mod:`figures`)."""
    return list(_cells(quick).values())


@functools.cache
def compute(quick: bool = False) -> Fields2D:
    one = _cells(quick)
    res = dict(zip(one, run_cells(list(one.values()), progress=False).results))
    fields = {(p, a, m): getattr(r, m) for (p, a), r in res.items() for m in METHODS}
    density = {k: r.density for k, r in res.items()}
    error = {k: r.golden_error for k, r in res.items()}
    return Fields2D(next(iter(res.values())).axis, fields, density, error)


def summary(f: Fields2D) -> dict:
    """The p_t(x|y)-weighted mean |golden - method| (eps units) per preset and level, each with its error (the same
    mean of the golden's error estimate: | |a| - |b| | <= |a - b|)."""
    out = {}
    for name in PRESETS:
        for a in LEVELS:
            wt = f.density[name, a] / f.density[name, a].sum()
            g = f.fields[name, a, "golden"]
            err = float((wt * np.linalg.norm(f.golden_error[name, a], axis=-1)).sum())
            out[f"{name}@abar={a}"] = {
                m: {"value": float((wt * np.linalg.norm(g - f.fields[name, a, m], axis=-1)).sum()), "error": err}
                for m in METHODS[1:]}
    return {"weighted_mean_error_norm": out}


def conclusion(f: Fields2D) -> str:
    """What the figure shows, from its numbers: the method closest to the golden in each (preset, level), counting a
    case only where the closest is ahead of the next by more than their errors."""
    s = summary(f)["weighted_mean_error_norm"]
    best, tied = {}, 0
    for case, errs in s.items():
        first, second = sorted(errs, key=lambda m: errs[m]["value"])[:2]
        if errs[second]["value"] - errs[first]["value"] > errs[first]["error"] + errs[second]["error"]:
            best[case] = first
        else:
            tied += 1
    counts = {m: sum(b == m for b in best.values()) for m in METHODS[1:]}
    ranked = ", ".join(f"{method_label(METHOD[m])} in {counts[m]}" for m in METHODS[1:] if counts[m])
    return (f"Closest to the golden field (p_t(x|y)-weighted mean error) in the {len(s)} preset x level cases: "
            f"{ranked}" + (f"; {tied} too close to call within their errors" if tied else "") + ".")




def plot(f: Fields2D, out_dir: Path) -> list[Path]:
    paths = []
    X, Y = np.meshgrid(f.axis, f.axis, indexing="ij")
    step = max(1, len(f.axis) // 16)
    titles = {"golden": "golden field on $p_t(x|y)$ (grey)"}
    titles |= {m: method_label(METHOD[m], formula=True) for m in METHOD}
    for name in PRESETS:
        with style():
            fig, axes = plt.subplots(len(LEVELS), len(METHODS), figsize=(11, 8.4), sharex=True, sharey=True,
                                     layout="constrained")
            for r, a in enumerate(LEVELS):
                g = f.fields[name, a, "golden"]
                errs = [np.linalg.norm(g - f.fields[name, a, m], axis=-1) for m in METHODS[1:]]
                # the colour scale ends at the 99th percentile: one thin spike must not blank the rest of the row
                vmax = float(np.percentile(np.concatenate([e.ravel() for e in errs]), 99))
                for c, m in enumerate(METHODS):
                    ax = axes[r, c]
                    v = f.fields[name, a, m]
                    if m == "golden":
                        ax.contourf(X, Y, f.density[name, a], levels=12, cmap="Greys")
                    else:
                        im = ax.pcolormesh(X, Y, errs[c - 1], cmap="OrRd", vmin=0, vmax=vmax, shading="auto")
                    ax.quiver(X[::step, ::step], Y[::step, ::step], v[::step, ::step, 0], v[::step, ::step, 1],
                              color="k", width=0.004)
                    ax.set_aspect("equal")
                    ax.grid(False)
                    if r == 0:
                        ax.set_title(titles[m])
                    if r == len(LEVELS) - 1:
                        ax.set_xlabel("$x_1$")
                    if c == 0:
                        ax.set_ylabel(f"abar = {a}\n$x_2$")
                fig.colorbar(im, ax=axes[r, :].tolist(), shrink=0.9, extend="max",
                             label="|golden - method| (eps units)")
            fig.suptitle(f"{name}: guidance fields at w = 1 (arrows) and each method's error (colour)", fontsize=10)
            paths += save(fig, out_dir, f"{NAME}_{name}")
    return paths
