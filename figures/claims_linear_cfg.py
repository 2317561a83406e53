"""Figure: linear CFG (claims ledger, ``linear-cfg``): the relative difference between each preset's CFG direction
and that of its moment-matched Gaussians per noise level, with the 10 % line where they part."""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt

from evaluation.claims import get_claim
from evaluation.claims.ledger import evaluate
from evaluation.claims.linear_cfg import PART, LinearCFG, agreeing_share, parting_sigma

from .style import save, style

NAME = "claims_linear_cfg"
CAPTION = ("Linear CFG (moment-matched Gaussians) against the mixture's CFG: p_t(x|c)-weighted relative difference of "
           "eps_c - eps_u per noise level; they agree at high noise and part below sigma ~ 1.4 (dotted: the 10 % line "
           "and each preset's parting sigma).")


@functools.cache
def compute(quick: bool = False) -> LinearCFG:
    return evaluate(get_claim("linear-cfg"), quick=quick).data


def summary(d: LinearCFG) -> dict:
    return {law: {"parting_sigma": parting_sigma(g), "share_within_10pc": agreeing_share(g)}
            for law, g in zip(d.laws, d.gaps)}


def plot(d: LinearCFG, out_dir: Path) -> list[Path]:
    with style():
        fig, ax = plt.subplots(figsize=(6, 3.8))
        for (law, g), c in zip(zip(d.laws, d.gaps), plt.cm.tab10.colors):
            ax.plot(g.sigma, g.rel, "-", color=c, label=law)
            ax.axvline(parting_sigma(g), color=c, ls=":", lw=0.8)
        ax.axhline(PART, color="k", ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sigma")
        ax.set_ylabel("E|g_mix - g_lin| / E|g_mix|")
        ax.set_title("CFG on mixtures vs on moment-matched Gaussians")
        ax.legend(fontsize=6)
        fig.tight_layout()
        return save(fig, out_dir, NAME)
