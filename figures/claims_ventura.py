"""Figure: variance shrinkage with K classes against d (claims ledger, ``ventura-highd``): CFG's variance ratio along
the class axis for K = 3 and dense classes as d grows, and the weight schedules at the dense largest d."""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt

from evaluation.claims import get_claim
from evaluation.claims.ledger import evaluate
from evaluation.claims.ventura import REGIMES, KClasses

from .style import save, style

NAME = "claims_ventura"
CAPTION = ("Left: exact variance of CFG's output along the class axis over the unguided chain's (w = 2) against d, "
           "for K = 3 classes (separation sqrt(d)) and dense classes (separation 1, K ~ 2 sqrt(d)). Right: at the "
           "dense largest d, the weight schedules and a negative window.")


@functools.cache
def compute(quick: bool = False) -> KClasses:
    return evaluate(get_claim("ventura-highd"), quick=quick).data


def summary(d: KClasses) -> dict:
    return {s: float(v) for s, v in zip(d.schedules, d.schedule_ratio)}


def plot(d: KClasses, out_dir: Path) -> list[Path]:
    with style():
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
        for i, regime in enumerate(REGIMES):
            a.errorbar(d.dims, d.ratio[i], yerr=d.ratio_error[i], fmt="-o", ms=3,
                       label=f"{regime} (K = {', '.join(str(int(k)) for k in d.K[i])})")
        a.axhline(1.0, color="k", ls=":", lw=0.6)
        a.set_xscale("log")
        a.set_xlabel("dimension d")
        a.set_ylabel("variance ratio along U (CFG / unguided)")
        a.legend(fontsize=6)
        b.bar(range(len(d.schedules)), d.schedule_ratio, yerr=d.schedule_error, color="tab:blue")
        b.axhline(1.0, color="k", ls=":", lw=0.6)
        b.set_xticks(range(len(d.schedules)), d.schedules, rotation=30, fontsize=7)
        b.set_title(f"dense classes, d = {int(d.dims[-1])}")
        fig.tight_layout()
        return save(fig, out_dir, NAME)
