"""Figure: weight sweeps, the toy counterpart of the paper's Pareto plots.

Paper 1-D toy, T = 20, DDPM from N(0, 1). For vanilla, linear, cosine and interval CFG, AutoG (bad model:
covariances x2) and CG (exact Bayes classifier between the conditional and unconditional laws), each
with and without REG (1-D: every estimator is the same): the p_t-weighted field error against the
ideal-chain golden (mean over steps) and the exact output TV and KL(target || output) against the tilted
target of the method's own reward at weight w. Schedules are given the same w at sigma -> 0 scale:
linear ramps 0 -> 2w and cosine rises 0 -> 2w, so both average about w over the chain.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from analytic import AutoGReward, CFGReward, ClassifierReward, degrade, get_preset
from evaluation import distances, field_errors, output_density, tilted_target
from sampler import (CFG, REG, AutoGuidance, ClassifierGuidance, Constant, Cosine, Interval, LinearRamp,
                     MixtureModel, bind)
from sampler.schedules import VPSchedule

from .style import save, style

NAME = "sweeps"
CAPTION = ("Weight sweeps on the paper's 1-D toy (T = 20, DDPM): field error (p_t-weighted, ideal golden) and "
           "exact output TV / KL(target||output) against each method's tilted target, with and without REG.")
FAMILIES = ("vanilla", "linear", "cosine", "interval", "autog", "cg")
COLORS = dict(zip(FAMILIES, ("#1f77b4", "#2ca02c", "#9467bd", "#17becf", "#ff7f0e", "#8c564b")))
LABEL = {"vanilla": "CFG (constant w)", "linear": "CFG, linear ramp", "cosine": "CFG, cosine schedule",
         "interval": "CFG, guidance interval", "autog": "AutoG (weak model)", "cg": "classifier guidance"}


@dataclass(frozen=True)
class Sweeps:
    weights: tuple[float, ...]
    field: dict  # (family, reg: bool) -> [W] weighted field error
    tv: dict  # (family, reg) -> [W]
    kl: dict  # (family, reg) -> [W]


def _family(name, w, p, c, u, bad, sig):
    """(guidance, reward) of one family at weight w."""
    if name == "autog":
        return AutoGuidance(c, bad, Constant(w)), AutoGReward(p.cond, degrade(p.cond, 2.0), w)
    if name == "cg":
        reward = ClassifierReward([p.cond, p.uncond], [0.5, 0.5], 0, w)
        grad = lambda x, s: reward.num.score_ve(x, s) - reward.den.score_ve(x, s)  # noqa: E731
        return ClassifierGuidance(c, grad, w), reward
    weight = {"vanilla": Constant(w), "linear": LinearRamp(0.0, 2 * w, sig[-1], sig[0]),
              "cosine": Cosine(2 * w, 1.0, sig[0]), "interval": Interval(w, 0.05, 0.3)}[name]
    return CFG(c, u, weight), CFGReward(p.cond, p.uncond, w)


@functools.cache
def compute(quick: bool = False) -> Sweeps:
    p = get_preset("paper_1d")
    sched = VPSchedule.paper_1d()
    sigmas = sched.sampling_sigmas()
    sig = (sched.sigmas[-1].item(), sched.sigmas[1].item())  # sigma_max, sigma_min
    model = MixtureModel({"c": p.cond, "u": p.uncond, "bad": degrade(p.cond, 2.0)})
    c, u, bad = bind(model, "c"), bind(model, "u"), bind(model, "bad")
    weights = (0.5, 1.0, 2.0, 3.0) if quick else (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
    axis = torch.linspace(-6, 6, 801 if quick else 2001, dtype=torch.float64)
    field_axis = torch.linspace(-1, 2, 201 if quick else 500, dtype=torch.float64)
    field, tv, kl = ({(f, r): [] for f in FAMILIES for r in (False, True)} for _ in range(3))
    for w in weights:
        for f in FAMILIES:
            guided, reward = _family(f, w, p, c, u, bad, sig)
            variants = {False: guided, True: REG(guided, "paper")}
            fe = field_errors(p.cond, sched, field_axis, {str(r): g for r, g in variants.items()}, reward,
                              sampler_chain=False).aggregate()["ideal_weighted"]
            target = tilted_target(p.cond, reward, axis).mass
            for r, g in variants.items():
                dist = distances(output_density(g, sigmas, axis, sampler="ddpm", estimate_error=False).mass, target, axis)
                field[f, r].append(fe[str(r)])
                tv[f, r].append(dist.tv)
                kl[f, r].append(dist.kl_target_out)
    arr = lambda d: {k: np.array(v) for k, v in d.items()}  # noqa: E731
    return Sweeps(weights, arr(field), arr(tv), arr(kl))


def summary(s: Sweeps) -> dict:
    out = {}
    for f in FAMILIES:
        for r in (False, True):
            i = int(np.argmin(s.tv[f, r]))
            out[f + ("+REG" if r else "")] = {"best_w_by_tv": s.weights[i], "tv": float(s.tv[f, r][i]),
                                              "kl_target_out": float(s.kl[f, r][i]),
                                              "field_error_weighted": float(s.field[f, r][i])}
    return {"best_per_method": out}


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
        key = [plt.Line2D([], [], color=COLORS[f], label=LABEL[f]) for f in FAMILIES]
        key += [plt.Line2D([], [], color="0.3", ls="-", marker="o", ms=3, label="as proposed"),
                plt.Line2D([], [], color="0.3", ls="--", marker="s", ms=3, mfc="none", label="with REG")]
        fig.legend(handles=key, loc="outside right center", fontsize=7)
        fig.suptitle("paper 1-D toy: weight sweeps, each method against its own tilted target", fontsize=10)
        return save(fig, out_dir, NAME)
