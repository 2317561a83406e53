"""Figure: 2-D guidance vector fields (golden, CFG, REG paper, REG vjp) at several noise levels, with the
error of each method against the golden as the background."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from analytic import CFGReward, get_preset, guidance_fields_on_grid

from .style import LABELS, save, style

NAME = "fields_2d"
CAPTION = ("2-D guidance fields (eps units, w = 1) on the correlated_2d and classes_2d presets at three noise "
           "levels: arrows are the fields, the background of each method is its error |golden - method|.")
PRESETS = ("correlated_2d", "classes_2d")
LEVELS = (0.5, 0.82, 0.95)
METHODS = ("golden", "present", "reg_paper", "reg_vjp")


@dataclass(frozen=True)
class Fields2D:
    axis: np.ndarray  # [n]
    fields: dict  # (preset, abar, method) -> [n, n, 2]
    density: dict  # (preset, abar) -> [n, n] p_t(x | y)


def compute(quick: bool = False, w: float = 1.0) -> Fields2D:
    n = 25 if quick else 49
    axis = torch.linspace(-1, 2, n, dtype=torch.float64)
    pts = torch.cartesian_prod(axis, axis)
    fields, density = {}, {}
    for name in PRESETS:
        p = get_preset(name)
        reward = CFGReward(p.cond, p.uncond, w)
        for a in LEVELS:
            f = guidance_fields_on_grid(p.cond, reward, (axis, axis), a)
            for m in METHODS:
                fields[name, a, m] = getattr(f, m).reshape(n, n, 2).numpy()
            density[name, a] = p.cond.noised(a).log_prob(pts).exp().reshape(n, n).numpy()
    return Fields2D(axis.numpy(), fields, density)


def summary(f: Fields2D) -> dict:
    out = {}
    for name in PRESETS:
        for a in LEVELS:
            wt = f.density[name, a] / f.density[name, a].sum()
            g = f.fields[name, a, "golden"]
            out[f"{name}@abar={a}"] = {
                m: float((wt * np.linalg.norm(g - f.fields[name, a, m], axis=-1)).sum()) for m in METHODS[1:]}
    return {"weighted_mean_error_norm": out}


def conclusion(f: Fields2D) -> str:
    """What the figure shows, from its numbers: the method closest to the golden in each (preset, level)."""
    s = summary(f)["weighted_mean_error_norm"]
    best = {case: min(errs, key=errs.get) for case, errs in s.items()}
    counts = {m: sum(b == m for b in best.values()) for m in METHODS[1:]}
    ranked = ", ".join(f"{TITLES[m]} in {counts[m]}" for m in METHODS[1:] if counts[m])
    return (f"Closest to the golden field (p_t(x|y)-weighted mean error) in the {len(best)} preset x level cases: "
            f"{ranked}.")


TITLES = {"golden": "golden (ideal chain)", "present": "CFG", "reg_paper": "REG paper (J^T 1)",
          "reg_vjp": "REG vjp (J^T g)"}


def plot(f: Fields2D, out_dir: Path) -> list[Path]:
    paths = []
    X, Y = np.meshgrid(f.axis, f.axis, indexing="ij")
    step = max(1, len(f.axis) // 16)
    titles = {"golden": "golden field on $p_t(x|y)$ (grey)", "present": "CFG", "reg_paper": LABELS["reg_paper"],
              "reg_vjp": LABELS["reg_vjp"]}
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
