"""Figure: flawed schedules and guidance rescale (claims ledger, ``flawed-schedules``): what starting from N(0, 1)
costs per terminal abar, and how much guidance rescale changes CFG's term along the class axis as d grows."""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from evaluation.claims import get_claim
from evaluation.claims.flawed_schedules import Flawed
from evaluation.claims.ledger import evaluate

from .style import save, style

NAME = "claims_flawed_schedules"
CAPTION = ("Left: TV between the exact outputs started from N(0, 1) and from the exact law of x_T, per schedule's "
           "terminal abar (unguided and CFG). Right: guidance rescale's change of CFG's term along the class axis "
           "(relative, exact ratio of expectations per noise level) in the reducible family against d; at d = 2 "
           "the expectation is infinite (not drawn).")


@functools.cache
def compute(quick: bool = False) -> Flawed:
    return evaluate(get_claim("flawed-schedules"), quick=quick).data


def summary(d: Flawed) -> dict:
    return {s: float(v) for s, v in zip(d.schedules, d.start_tv[:, 0])}


def plot(d: Flawed, out_dir: Path) -> list[Path]:
    with style():
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
        for j, w in enumerate(d.ws):
            a.errorbar(d.abar_T, d.start_tv[:, j] + 1e-12, yerr=d.start_tv_error[:, j], fmt="o", ms=4,
                       label="unguided" if w == 0 else f"CFG w={w:g}")
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("terminal abar_T")
        a.set_ylabel("TV(output from N(0,1), output from exact x_T)")
        a.legend(fontsize=6)
        fin = np.isfinite(d.rescale_rel).all(1)  # [D] the dims with finite expectations (not d = 2: infinite)
        for k, abar in enumerate(d.abar):
            b.errorbar(d.dims[fin], d.rescale_rel[fin, k], yerr=d.rescale_rel_error[fin, k], fmt="-o", ms=3,
                       label=f"abar={abar:g}")
        if fin.any():
            first = np.argmax(fin)
            b.plot(d.dims[fin], d.rescale_rel[first, 0] * d.dims[first] / d.dims[fin], "k:", lw=0.8, label="1/d")
        if not fin.all():
            b.text(0.02, 0.02, "infinite expectation (not drawn) at d = "
                   + ", ".join(f"{v:g}" for v in d.dims[~fin]), transform=b.transAxes, fontsize=7)
        b.set_xscale("log")
        b.set_yscale("log")
        b.set_xlabel("dimension d")
        b.set_ylabel("|rescale - CFG| / |CFG term| along U")
        b.set_title(f"d -> inf: overshoot {d.cfg_overshoot:.3f}, variance ratio {d.cfg_var_ratio:.3f}", fontsize=8)
        b.legend(fontsize=6)
        fig.tight_layout()
        return save(fig, out_dir, NAME)
