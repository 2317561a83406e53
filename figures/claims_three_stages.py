"""Figure: CFG's three stages (claims ledger, ``three-stages``): weak-mode mass and the strong mode's variance of the
exact output law under early-only and late-only windowed CFG at the same mean weight, per split level."""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt

from evaluation.claims import get_claim
from evaluation.claims.ledger import evaluate
from evaluation.claims.three_stages import Stages

from .style import save, style

NAME = "claims_three_stages"
CAPTION = ("Early-only (sigma >= cut) vs late-only windowed CFG at the same mean weight on 0.8/0.2 modes: the weak "
           "mode's mass (left) and the strong mode's variance (right) of the exact output law per split level; "
           "horizontal lines: constant CFG (dashed) and unguided (dotted).")


@functools.cache
def compute(quick: bool = False) -> Stages:
    return evaluate(get_claim("three-stages"), quick=quick).data


def summary(d: Stages) -> dict:
    return {f"{r.sampler} W={r.mean_w:g} {r.window} cut={r.cut:.3g}": {"weak_mass": r.weak_mass,
                                                                      "var_strong": r.var_strong} for r in d.rows}


def plot(d: Stages, out_dir: Path) -> list[Path]:
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        keys = sorted({(r.sampler, r.mean_w) for r in d.rows if r.window in ("early", "late")})
        for (sampler, mean), c in zip(keys, plt.cm.tab10.colors):
            for window, mk in (("early", "-o"), ("late", "--s")):
                rs = sorted((r for r in d.rows if (r.sampler, r.mean_w, r.window) == (sampler, mean, window)),
                            key=lambda r: r.cut)
                for ax, field in zip(axes, ("weak_mass", "var_strong")):
                    ax.plot([r.cut for r in rs], [getattr(r, field) for r in rs], mk, ms=3, color=c,
                            label=f"{sampler} W={mean:g} {window}")
            const = [r for r in d.rows if (r.sampler, r.mean_w, r.window) == (sampler, mean, "constant")][0]
            for ax, field in zip(axes, ("weak_mass", "var_strong")):
                ax.axhline(getattr(const, field), color=c, ls="--", lw=0.6)
        for r in d.rows:
            if r.window == "unguided":
                for ax, field in zip(axes, ("weak_mass", "var_strong")):
                    ax.axhline(getattr(r, field), color="k", ls=":", lw=0.6)
        for ax, title in zip(axes, ("weak-mode mass", "variance within the strong mode")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("split level sigma (early: sigma >= cut)")
            ax.set_title(title)
        axes[0].legend(fontsize=5)
        fig.tight_layout()
        return save(fig, out_dir, NAME)
