"""Figure: REG's guidance against the optimum (claims ledger, ``reg-fields``): p_t-weighted field error of REG
against the plain guidance it corrects, per setting (below the diagonal: REG closer), and per noise level for
the paper's 1-D toy and correlated_2d."""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from evaluation.claims import get_claim
from evaluation.claims.ledger import evaluate
from evaluation.claims.reg_fields import RegFields
from evaluation.spec import Method

from .style import method_label, save, style

NAME = "claims_reg_fields"
CAPTION = ("REG's field error against the plain guidance's (p_t-weighted mean |golden - field|, ideal chain) for every "
           "setting of the ledger (below the diagonal: REG closer), and per noise level on two laws.")


@functools.cache
def compute(quick: bool = False) -> RegFields:
    return evaluate(get_claim("reg-fields"), quick=quick).data


def summary(d: RegFields) -> dict:
    return {"settings": len(d.comparisons), "reg_closer": sum(c.mean_reg < c.mean_plain for c in d.comparisons),
            "no_golden": d.invalid}


def plot(d: RegFields, out_dir: Path) -> list[Path]:
    with style():
        fig, axes = plt.subplots(1, 3, figsize=(14, 4.4), layout="constrained")
        ax = axes[0]
        kinds = {"1d": ("#1f77b4", "1-D mixtures"), "2d": ("#2ca02c", "2-D mixtures"),
                 "single": ("#9467bd", "single Gaussians")}
        hi = max(max(c.mean_plain, c.mean_reg) for c in d.comparisons)
        floor = 1e-4 * hi  # errors below (CFG exact on a single Gaussian) are drawn on the edge, not decades away
        for k, (col, label) in kinds.items():
            pts = [(c.mean_plain, c.mean_reg) for c in d.comparisons
                   if ("single" if c.law.startswith("single:") else ("2d" if "2d" in c.law else "1d")) == k]
            if pts:
                x, y = np.maximum(np.array(pts).T, floor)
                ax.scatter(x, y, s=10, color=col, alpha=0.7, label=label)
        ax.plot([floor, hi], [floor, hi], "k--", lw=0.6, label="equal error")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(floor / 1.5, hi * 1.5)
        ax.set_ylim(floor / 1.5, hi * 1.5)
        ax.set_xlabel("plain guidance: field error (eps units)")
        ax.set_ylabel("with REG: field error (eps units)")
        ax.set_title(f"every setting (below the diagonal: REG closer;\nerrors below {floor:.1g} on the edge)")
        ax.legend(fontsize=6)
        for ax, law in zip(axes[1:], ("paper_1d", "correlated_2d")):
            sel = [c for c in d.comparisons if c.law == law and c.family == "cfg" and c.w == 1.0]
            schedules = list(dict.fromkeys(c.schedule for c in sel))
            color = dict(zip(schedules, plt.cm.tab10.colors))
            dashes = dict(zip(dict.fromkeys(c.estimator for c in sel), ("--", ":", "-.")))
            drawn = set()
            for c in sel:
                sig = np.sqrt((1 - c.abar) / c.abar)
                if c.schedule not in drawn:  # the plain guidance once per schedule (it was repeated per estimator)
                    ax.plot(sig, c.plain, "-", color=color[c.schedule], lw=1,
                            label=f"{method_label(Method(c.family))}, {c.schedule} schedule")
                    drawn.add(c.schedule)
                ax.plot(sig, c.reg, dashes[c.estimator], color=color[c.schedule], lw=1,
                        label=f"{method_label(Method(c.family, reg=c.estimator))}, {c.schedule} schedule")
            ax.set_xscale("log")
            ax.set_xlabel("noise level sigma")
            ax.set_ylabel("$p_t$-weighted |golden - field| (eps units)")
            ax.set_title(f"{law}, w = 1")
            if sel:
                ax.legend(fontsize=6)
            else:  # the quick ledger has no such setting
                ax.set_axis_off()
                ax.text(0.5, 0.5, f"{law}, w = 1: not in this run\n(the full ledger has it)", ha="center", va="center",
                        transform=ax.transAxes)
        return save(fig, out_dir, NAME)
