"""Figure: strong guidance splits a component (claims ledger, ``split-component``): the exact output densities of
CFG on a three-component mixture per sampler and step count as w grows, with the modes counted above the floor."""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt

from evaluation.claims import get_claim
from evaluation.claims.ledger import evaluate
from evaluation.claims.split_component import Split

from .style import save, style

NAME = "claims_split_component"
CAPTION = ("Exact output densities of CFG towards N(0, 0.5^2) against the equal mixture N(-1.5, 0.3^2), N(0, 0.5^2), "
           "N(1.5, 0.3^2), one panel per sampler and step count, one curve per weight; dots: the counted modes "
           "(prominence above the floor, resolved at twice the spacing).")


@functools.cache
def compute(quick: bool = False) -> Split:
    return evaluate(get_claim("split-component"), quick=quick).data


def summary(d: Split) -> dict:
    return {f"{r.sampler} {r.schedule} w={r.w:g}": {"modes": r.modes.count} for r in d.rows}


def plot(d: Split, out_dir: Path) -> list[Path]:
    panels = list(dict.fromkeys((r.sampler, r.schedule) for r in d.rows))
    with style():
        fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), squeeze=False)
        for ax, (sampler, sched) in zip(axes[0], panels):
            rows = [r for r in d.rows if (r.sampler, r.schedule) == (sampler, sched)]
            for r, c in zip(rows, plt.cm.viridis([i / max(len(rows) - 1, 1) for i in range(len(rows))])):
                keep = (r.x > -2.5) & (r.x < 2.5)
                ax.plot(r.x[keep], r.density[keep], color=c, lw=1, label=f"w={r.w:g} ({r.modes.count:g})")
                for loc in r.modes.locations:
                    i = abs(r.x - loc).argmin()
                    ax.plot(r.x[i], r.density[i], "o", ms=3, color=c)
            ax.set_yscale("log")
            ax.set_ylim(1e-3, None)
            ax.set_title(f"{sampler}, {sched}")
            ax.set_xlabel("x")
            ax.legend(fontsize=5, title="w (modes)", title_fontsize=6)
        axes[0][0].set_ylabel("output density")
        fig.tight_layout()
        return save(fig, out_dir, NAME)
