"""Figure: output distributions against the tilted target.

1-D (paper_1d, T = 20, DDPM): the exact output density of unguided, CFG, REG and the optimum (exact
optimal guidance from the tilted start N(0, 1) E_T) against ``p(x|y) R_0 / Z``, for w = 1 and 3.
2-D (correlated_2d, 20-step schedule reaching abar_T = 0.007): DDPM sample clouds over the target's contours.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from analytic import CFGReward, get_preset, optimal_denoiser
from evaluation import distances, output_density, tilted_start, tilted_target
from evaluation.cases import get_case
from evaluation.spec import Schedule
from sampler import CFG, REG, MixtureModel, TiltedMean, Unguided, bind, sample, vp_prior
from sampler.schedules import VPSchedule

from .style import COLORS, save, style

NAME = "outputs"
CAPTION = ("Output laws against the tilted target p(x|y) R_0 / Z: exact DDPM output densities on the paper's "
           "1-D toy (T = 20) for w = 1 and 3, and 2-D DDPM sample clouds on correlated_2d (20 steps to abar = 0.007). "
           "Unguided, CFG and REG start from N(0, 1); the optimum starts from the tilted start N(0, 1) E_T / Z (the "
           "start its exactness needs: from N(0, 1) it is not the optimum of the whole chain), so its curve shows what "
           "is reachable, not a like-for-like rule.")
METHODS_1D = ("unguided", "cfg", "reg", "optimal")
METHODS_2D = ("cfg", "reg_paper", "reg_vjp", "optimal")
WEIGHTS = (1.0, 3.0)
LABEL = {"unguided": "unguided", "cfg": "CFG", "reg": "REG paper ($J^T 1$)", "reg_paper": "REG paper ($J^T 1$)",
         "reg_vjp": "REG vjp ($J^T g$)", "optimal": "optimum, tilted start"}
COLOR = {"unguided": "#8c564b", "cfg": COLORS["cfg"], "reg": COLORS["reg_paper"], "reg_paper": COLORS["reg_paper"],
         "reg_vjp": COLORS["reg_vjp"], "optimal": COLORS["golden"]}


@dataclass(frozen=True)
class Outputs:
    x: np.ndarray  # [n] 1-D density grid
    density: dict  # (w, method) -> [n]
    target: dict  # w -> [n]
    tv: dict  # (w, method) -> total variation to the target
    kl: dict  # (w, method) -> KL(target || output)
    axis2: np.ndarray  # [m] 2-D target grid axis
    target2: np.ndarray  # [m, m] target mass
    samples2: dict  # method -> [n2, 2]


def _guidances(cond, uncond, reward, w):
    model = MixtureModel({"c": cond, "u": uncond})
    c, u = bind(model, "c"), bind(model, "u")
    cfg = CFG(c, u, w)
    return {"unguided": Unguided(c), "cfg": cfg, "reg": REG(cfg, "paper"), "reg_paper": REG(cfg, "paper"),
            "reg_vjp": REG(cfg, "vjp"), "optimal": TiltedMean(c, optimal_denoiser(cond, reward))}


@functools.cache
def compute(quick: bool = False) -> Outputs:
    p = get_preset("paper_1d")
    sched = VPSchedule.paper_1d()
    sigmas = sched.sampling_sigmas()
    axis = torch.linspace(-6, 6, 801 if quick else 2001, dtype=torch.float64)
    density, target, tv, kl = {}, {}, {}, {}
    for w in WEIGHTS:
        reward = CFGReward(p.cond, p.uncond, w)
        tgt = tilted_target(p.cond, reward, axis)
        target[w] = tgt.mass.numpy()
        g = _guidances(p.cond, p.uncond, reward, w)
        for m in METHODS_1D:
            start = tilted_start(p.cond, reward, sched.abar[-1].item()) if m == "optimal" else None
            od = output_density(g[m], sigmas, axis, sampler="ddpm", start=start, estimate_error=False)
            density[w, m] = od.mass.numpy()
            dist = distances(od.mass, tgt.mass, axis)
            tv[w, m], kl[w, m] = dist.tv, dist.kl_target_out
    # 2-D sample clouds
    q = get_preset("correlated_2d")
    s2 = Schedule.parse(get_case("correlated_2d").schedule).vp
    reward2 = CFGReward(q.cond, q.uncond, 1.0)
    axis2 = torch.linspace(-1.5, 2.5, 81, dtype=torch.float64)
    target2 = tilted_target(q.cond, reward2, (axis2, axis2)).mass.numpy()
    g2 = _guidances(q.cond, q.uncond, reward2, 1.0)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(500 if quick else 2000, 2, dtype=torch.float64, generator=gen)
    samples2 = {}
    for m in METHODS_2D:
        x = vp_prior(noise, s2.sigmas[-1].item())
        samples2[m] = sample("ddpm", g2[m], x, s2.sampling_sigmas(), generator=torch.Generator().manual_seed(1)).numpy()
    return Outputs(axis.numpy(), density, target, tv, kl, axis2.numpy(), target2, samples2)


def summary(o: Outputs) -> dict:
    return {f"w={w}": {m: {"tv": o.tv[w, m], "kl_target_out": o.kl[w, m]} for m in METHODS_1D} for w in WEIGHTS}


def conclusion(o: Outputs) -> str:
    """The ranking of the rules (not the optimum) by TV to the target at each weight, from the numbers."""
    parts = []
    for w in WEIGHTS:
        ranked = sorted(("unguided", "cfg", "reg"), key=lambda m: o.tv[w, m])
        parts.append(f"w = {w:g}: " + " < ".join(f"{LABEL[m].split(' (')[0]} ({o.tv[w, m]:.3f})" for m in ranked))
    return "TV to the target, from N(0, 1): " + "; ".join(parts) + "."


def plot(o: Outputs, out_dir: Path) -> list[Path]:
    h = o.x[1] - o.x[0]
    with style():
        fig = plt.figure(figsize=(13, 3.9), layout="constrained")
        grid = fig.add_gridspec(2, len(WEIGHTS) * 2 + 2)
        axes = [fig.add_subplot(grid[:, 2 * i:2 * i + 2]) for i in range(len(WEIGHTS))]
        for ax, w in zip(axes, WEIGHTS):
            ax.fill_between(o.x, o.target[w] / h, color="0.85", label="tilted target")
            for m in METHODS_1D:
                ax.plot(o.x, o.density[w, m] / h, color=COLOR[m], lw=1.2, ls="--" if m == "optimal" else "-",
                        label=f"{LABEL[m]} (TV {o.tv[w, m]:.3f})")
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
            ax.set_title(LABEL[m] if m != "optimal" else "optimum (from N(0, 1))", fontsize=7)
            ax.tick_params(labelsize=6)
        fig.suptitle("Output laws against the tilted target (grey); right: correlated_2d, w = 1, DDPM samples over "
                     "the target's contours", fontsize=9)
        return save(fig, out_dir, NAME)
