"""Figure: (x, t) maps of |golden - CFG| and |golden - REG| on one colour scale (the paper's Figure 5),
for the exact mixture (ideal and sampler-chain goldens) and for the shipped trained networks. The arrays are
``curves_1d``'s and ``trained_1d``'s cached cells (the cells protocol of :mod:`figures`); each largest gap carries
its error: the golden's largest quadrature error estimate (the trained networks' terms are measurements of those
networks, with no error of their own)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from . import curves_1d, trained_1d
from .style import method_label, save, style

NAME = "maps_1d"
CAPTION = ("|golden - CFG| and |golden - REG| over (x_t, t) on the paper's 1-D toy, one colour scale; rows: exact "
           "mixture against the ideal-chain golden, against the 20-step sampler chain, and the trained networks "
           "against their own chain's exact grid golden (their terms are measurements of those networks).")


@dataclass(frozen=True)
class Maps1D:
    exact: curves_1d.Curves1D
    trained: trained_1d.Trained1D


def cells(quick: bool = False) -> list:
    """The figure's cells (the cells protocol of :mod:`figures`): ``curves_1d``'s and ``trained_1d``'s, shared."""
    return list(dict.fromkeys(curves_1d.cells(quick) + trained_1d.cells(quick)))


def compute(quick: bool = False) -> Maps1D:
    return Maps1D(curves_1d.compute(quick), trained_1d.compute(quick))  # both read their cached cells


def _rows(m: Maps1D):
    """(name, x, golden, golden's error estimate, CFG, REG) per row."""
    e, t = m.exact, m.trained
    return (("ideal", e.x, e.golden, e.golden_error, e.cfg, e.reg),
            ("sampler chain", e.x, e.chain, e.chain_error, e.cfg, e.reg),
            ("trained", t.x, t.grid_golden, t.grid_error, t.cfg, t.reg))


def summary(m: Maps1D) -> dict:
    """Per row, the largest |golden - CFG| and |golden - REG| (eps units), each with its error (the golden's largest
    error estimate: | max|a| - max|b| | <= max|a - b|)."""
    return {f"max_abs_gap_{name.replace(' ', '_')}": {
        k: {"value": float(np.abs(g - f).max()), "error": float(np.abs(err).max())} for k, f in (("cfg", c), ("reg", r))}
        for name, _, g, err, c, r in _rows(m)}


def conclusion(m: Maps1D) -> str:
    """Per row, the largest gap of CFG and of REG, and the largest error estimate of any of them."""
    parts = [f"{name}: CFG {np.abs(g - c).max():.3f}, REG {np.abs(g - r).max():.3f}" for name, _, g, _, c, r in _rows(m)]
    err = max(float(np.abs(e).max()) for _, _, _, e, _, _ in _rows(m))
    return ("The REG maps are lighter than the CFG maps where the gap is large; largest gap (eps units), "
            + "; ".join(parts) + f" (the goldens' quadrature errors: at most {err:.1e}).")


def plot(m: Maps1D, out_dir: Path) -> list[Path]:
    rows = _rows(m)
    vmax = max(max(np.abs(g - c).max(), np.abs(g - r).max()) for _, _, g, _, c, r in rows)
    t = m.exact.t
    with style():
        fig, axes = plt.subplots(len(rows), 2, figsize=(8, 7), sharex=True, sharey=True)
        for (name, x, g, _, c, r), row in zip(rows, axes):
            for ax, (m, field) in zip(row, (("cfg", c), ("reg", r))):
                im = ax.imshow(np.abs(g - field), aspect="auto", origin="lower", cmap="OrRd", vmin=0, vmax=vmax,
                               extent=[x[0], x[-1], t[0] - 0.5, t[-1] + 0.5])
                ax.set_title(f"{name}: |golden - {method_label(curves_1d.METHOD[m])}|")
                ax.grid(False)  # the theme's grid would be drawn over the map
                ax.yaxis.get_major_locator().set_params(integer=True)
        for ax in axes[-1]:
            ax.set_xlabel("$x_t$")
        for ax in axes[:, 0]:
            ax.set_ylabel("step t")
        fig.colorbar(im, ax=axes, shrink=0.8, label="absolute gap (eps units)")
        cfg, reg = (method_label(curves_1d.METHOD[k]) for k in ("cfg", "reg"))
        fig.suptitle(f"Paper 1-D toy: where {cfg} and {reg} miss the golden guidance term", fontsize=10)
        return save(fig, out_dir, NAME)
