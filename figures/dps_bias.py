"""Figure: DPS and its variance-corrected successors against the exact posterior per noise level
(:mod:`evaluation.inverse`): DPS's mean log-gap ``log E_t - log R_0(x0_hat)`` and each rule's RMS field error
against the exact optimum, with the exact term's size for scale."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt

from evaluation.inverse import RULES, SETTINGS, InverseBias
from evaluation.inverse import cells as _cells
from evaluation.inverse import compute as _compute_results

from .style import save, style

NAME = "dps_bias"
CAPTION = ("DPS against the exact posterior of a Gaussian-mixture prior under a linear-Gaussian measurement, per "
           "noise level: DPS's mean log-gap (top) and the RMS field error of DPS, TMPD and PiGDM against the exact "
           "optimum, beside the exact term's size (bottom); bars: errors.")


def cells(quick: bool = False) -> list:
    return _cells(quick)


@functools.cache
def compute(quick: bool = False) -> tuple[InverseBias, ...]:
    return _compute_results(quick)


def _largest(values, errors) -> dict:
    """The largest of ``values`` with its own error (the error of the entry that is largest)."""
    i = int(values.argmax())
    return {"value": float(values[i]), "error": float(errors[i])}


def summary(results: Sequence[InverseBias]) -> dict:
    """Per setting, the largest DPS log-gap and each rule's largest RMS field error over the noise levels, each with
    its estimated (Monte Carlo) error."""
    return {name: {"max DPS log-gap": _largest(r.log_gap, r.log_gap_error),
                   **{f"max {rule} field error": _largest(r.field[i], r.field_error[i]) for i, rule in enumerate(RULES)}}
            for name, r in zip(SETTINGS, results)}


def plot(results: Sequence[InverseBias], out_dir: Path) -> list[Path]:
    with style():
        fig, axes = plt.subplots(2, len(results), figsize=(5 * len(results), 6.4), squeeze=False, sharex=True)
        for j, (name, r) in enumerate(zip(SETTINGS, results)):
            top, bot = axes[0][j], axes[1][j]
            top.errorbar(r.sigma, r.log_gap, yerr=r.log_gap_error, fmt="-o", ms=3, color="tab:red")
            top.set_title(name, fontsize=9)
            top.set_ylabel("E[log E_t - log R_0(x0_hat)] (nats)")
            for i, rule in enumerate(RULES):
                bot.errorbar(r.sigma, r.field[i], yerr=r.field_error[i], fmt="-o", ms=3, label=rule)
            bot.plot(r.sigma, r.exact, "k:", label="|exact term|")
            bot.set_yscale("log")
            bot.set_ylabel("RMS field error (eps units)")
            bot.set_xlabel("sigma")
            bot.legend(fontsize=6)
            for ax in (top, bot):
                ax.set_xscale("log")
        fig.tight_layout()
        return save(fig, out_dir, NAME)
