"""Figure: does REG bring the samples closer? (claims ledger, ``reg-samples``).

The gap TV(REG) - TV(CFG) of exact DDPM output laws against the tilted target (negative: REG closer) over
schedules x w for the paper's 1-D toy from N(0, 1) and from the exact tilted start; over the number of
steps; over the variance ratio r of single Gaussians with the closed-form field boundaries; and against
the gap of the p_t-weighted field errors for every setting of the map.
"""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from evaluation.claims import get_claim
from evaluation.claims.ledger import evaluate
from evaluation.claims.reg_map import SCHED_FULL, T_FAMILIES, RegMap, select

from .style import START_LABELS, save, schedule_label, style, ticks_at

NAME = "claims_reg_samples"
CAPTION = ("REG's samples against CFG's: TV(REG) - TV(CFG) of exact output laws (blue: REG closer) over schedules "
           "and w from N(0,1) and from the exact tilted start, over T, over the variance ratio r of single "
           "Gaussians (dashed: the closed-form field boundaries), and against the field-error gap.")


@functools.cache
def compute(quick: bool = False) -> RegMap:
    return evaluate(get_claim("reg-samples"), quick=quick).data


def summary(m: RegMap) -> dict:
    gs = [g for g in m.gaps if g.decided]  # the settings the claim counts (gap beyond its error)
    out = {"settings": len(gs), "reg_closer_tv": sum(g.d_tv < 0 for g in gs),
           "reg_closer_field": sum(g.d_field < 0 for g in gs),
           "field_closer_tv_not": sum(g.d_field < 0 <= g.d_tv for g in gs)}
    for g in select(m, law="paper_1d", schedule="paper", family="cfg"):
        out[f"paper_1d paper w={g.w:g} {g.start}"] = {"tv_cfg": g.tv_plain, "tv_reg": g.tv_reg}
    return out


def _heat(ax, m: RegMap, start: str, law: str = "paper_1d"):
    sel = [g for g in select(m, law=law, family="cfg", start=start) if g.schedule in SCHED_FULL]
    scheds = [s for s in SCHED_FULL if any(g.schedule == s for g in sel)]
    ws = sorted({g.w for g in sel})
    Z = np.full((len(scheds), len(ws)), np.nan)
    for g in sel:
        Z[scheds.index(g.schedule), ws.index(g.w)] = g.d_tv
    lim = np.nanmax(np.abs(Z)) if np.isfinite(Z).any() else 1.0
    im = ax.imshow(Z, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    for i in range(len(scheds)):
        for j in range(len(ws)):
            if np.isfinite(Z[i, j]):
                ax.text(j, i, f"{Z[i, j]:+.2f}", ha="center", va="center", fontsize=7,
                        color="w" if abs(Z[i, j]) > 0.6 * lim else "k")  # readable on the dark cells
    ax.set_xticks(range(len(ws)), [f"{w:g}" for w in ws])
    ax.set_yticks(range(len(scheds)), scheds)
    ax.grid(False)
    ax.set_xlabel("w")
    ax.set_ylabel("schedule (lin:T:abar_T: linear betas, T steps)")
    ax.set_title(f"{law}, {START_LABELS[start]}: TV(REG) - TV(CFG)")
    return im


def plot(m: RegMap, out_dir: Path) -> list[Path]:
    with style():
        # two rows of three (a strip of five was 3500 px wide, its numbers unreadable); the last panel holds a key
        fig, grid = plt.subplots(2, 3, figsize=(17, 10), layout="constrained")
        axes = [grid[0, 0], grid[0, 1], grid[0, 2], grid[1, 0], grid[1, 1]]
        _heat(axes[0], m, "n01")
        im = _heat(axes[1], m, "tilted")
        fig.colorbar(im, ax=axes[1], fraction=0.05, label="TV(REG) - TV(CFG): blue, REG closer")
        ax, drawn_T = axes[2], []
        for fam, ls in zip(T_FAMILIES, ("-", "--", ":")):
            of_fam = {fam.format(T=T): T for T in (10, 20, 40, 50, 100, 200, 1000)}
            for w, c in ((1.0, "#1f77b4"), (3.0, "#d62728")):
                for st, mk in (("n01", "o"), ("tilted", "s")):
                    pts = sorted((of_fam[g.schedule], g.d_tv) for g in m.gaps if g.law == "paper_1d"
                                 and g.family == "cfg" and g.w == w and g.start == st and g.schedule in of_fam)
                    if len(pts) > 1:
                        drawn_T += [T for T, _ in pts]
                        ax.plot(*zip(*pts), ls=ls, marker=mk, ms=3, color=c,
                                label=f"{schedule_label(fam.format(T='T'))}, w = {w:g}, {START_LABELS[st]}")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xscale("log")
        ticks_at(ax.xaxis, drawn_T)  # the step counts drawn (not the zero line's axes-fraction x data)
        ax.set_xlabel("T")
        ax.set_ylabel("TV(REG) - TV(CFG)")
        ax.set_title("paper_1d: number of steps (key: last panel)")
        grid[1, 2].set_axis_off()
        grid[1, 2].legend(*ax.get_legend_handles_labels(), loc="center", fontsize=8, ncol=1,
                          title="number of steps (upper right): schedule, w, start")
        ax = axes[3]
        singles = [g for g in m.gaps if g.law.startswith("single:")]
        for w, c in zip(sorted({g.w for g in singles}), plt.cm.tab10.colors):  # colour: w; line: the start
            drawn = False  # the two starts nearly agree on this schedule: solid under dashed, both visible
            for st, ls, mk, mfc in (("n01", "-", "o", c), ("tilted", "--", "s", "none")):
                pts = sorted((4 * float(g.law.split(":")[2]) ** 2, g.d_tv) for g in singles
                             if g.w == w and g.start == st and g.schedule == "lin:20:0.0001")
                if pts:
                    ax.plot(*zip(*pts), ls=ls, marker=mk, ms=4, mfc=mfc, color=c,
                            label=f"w = {w:g}, {START_LABELS[st]}")
                    drawn = True
            if drawn:
                ax.axvline((1 + w) / (2 + w), color=c, ls="--", lw=0.6)
                ax.axvline((1 + 2 * w) / (2 + 2 * w), color=c, ls=":", lw=0.6)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("r = $s_c^2 / s_u^2$ (dashed, dotted: the derived boundaries)")
        ax.set_ylabel("TV(REG) - TV(CFG)")
        ax.set_title("single Gaussians (lin to abar_T=1e-4)")
        ax.legend(fontsize=7)
        ax = axes[4]
        for st, c in (("n01", "#1f77b4"), ("tilted", "#d62728")):
            sel = [g for g in m.gaps if g.start == st]
            ax.scatter([g.d_field for g in sel], [g.d_tv for g in sel], s=6, color=c, alpha=0.6,
                       label=START_LABELS[st])
        ax.axhline(0, color="k", lw=0.5)
        ax.axvline(0, color="k", lw=0.5)
        ax.set_xscale("symlog", linthresh=0.05)
        ax.set_xlabel("field error gap (REG - plain, p_t-weighted)")
        ax.set_ylabel("TV gap (REG - plain)")
        ax.set_title("every setting: closer fields vs closer samples")
        ax.legend(fontsize=7)
        return save(fig, out_dir, NAME)
