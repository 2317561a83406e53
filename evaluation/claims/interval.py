"""Kynkäänniemi et al., "Applying guidance in a limited interval improves sample and distribution quality"
(arXiv 2404.07724).

Claim (abstract): guidance is harmful at high noise levels, largely unnecessary at low ones, beneficial only
in the middle; restricting it to an interval of noise levels improves the results. (From memory of the body:
a 1-D example where guidance at every level drops a mode and the interval keeps it.)

Experiment: exact DDPM output laws of CFG with weight ``w`` only for sigma in [sigma_lo, sigma_hi] (zero
outside), over a grid of interval endpoints, on paper_1d and paper_1d_script with a schedule reaching
abar_T = 1e-4 in 50 steps, against the tilted target of ``w`` (what the guidance aims at) and against the
conditional law itself (the unguided exact chain: distribution quality, the paper's FID view), and the mass
of each conditional mode. The p_t-weighted size of the CFG and REG terms per level shows where REG's
correction acts.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from ..accuracy import region_mass, tv_between
from .cells import FieldCell, OutputCell
from ..spec import Law, Method
from .ledger import Claim, Outcome

__all__ = ["CLAIM", "IntervalMap", "ENDS", "cells", "conclude"]

SCHEDULE = "lin:50:0.0001"
ENDS = (0.0, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, math.inf)  # sigma_max of the schedule is about 100
GRID = (-5.0, 5.0, 601)  # the starting grid: the contract widens it where guidance pushes mass off it
RIGHT = ((1.0, math.inf),)  # the conditional's right mode: x > 1 (its modes are symmetric about 1)


def _laws(quick: bool) -> tuple[str, ...]:
    return ("paper_1d",) if quick else ("paper_1d", "paper_1d_script")


def _ws(quick: bool) -> tuple[float, ...]:
    return (5.0,) if quick else (2.0, 5.0)


def _ends(quick: bool) -> tuple[float, ...]:
    return (0.0, 0.3, 1.0, math.inf) if quick else ENDS


def _pairs(quick: bool):
    e = _ends(quick)
    return [(lo, hi) for i, lo in enumerate(e) for hi in e[i + 1:]]


def _cell(law, w, lo, hi, reg=""):
    return OutputCell(law, SCHEDULE, Method("cfg", w, "interval", reg, lo, hi), "n01", grid=GRID, keep_mass=True,
                      regions=RIGHT)


def _base(law):
    return OutputCell(law, SCHEDULE, Method("unguided", 0.0), "n01", grid=GRID, keep_mass=True, regions=RIGHT)


def right_mass_exact(law: str) -> float:
    """The conditional's exact mass above x = 1 (Gaussian tails of its components, no grid)."""
    c = Law.parse(law).build().cond
    z = (RIGHT[0][0] - c.means[:, 0]) / c.covs[:, 0, 0].sqrt()
    return (c.weights * torch.special.ndtr(-z)).sum().item()


def cells(quick: bool) -> list:
    out = []
    for law in _laws(quick):
        out.append(_base(law))
        for w in _ws(quick):
            out += [_cell(law, w, lo, hi) for lo, hi in _pairs(quick)]
            out += [FieldCell(law, SCHEDULE, Method("cfg", w, reg=r), levels=50) for r in ("", "paper")]
    return out


class IntervalMap(NamedTuple):
    laws: tuple[str, ...]
    ws: tuple[float, ...]
    ends: tuple[float, ...]
    tv_target: np.ndarray  # [L, W, E, E] TV to the tilted target (nan where lo >= hi)
    tv_cond: np.ndarray  # [L, W, E, E] TV to the conditional (the unguided exact chain)
    mode_mass: np.ndarray  # [L, W, E, E] output mass above x = 1 (the conditional's right mode)
    cond_mode_mass: np.ndarray  # [L] that mass under the conditional (exact)
    target_mode_mass: np.ndarray  # [L, W]
    sigma: np.ndarray  # [L, W, 50] levels of the field curves
    cfg_term: np.ndarray  # [L, W, 50] p_t-weighted mean |CFG term|
    reg_term: np.ndarray  # [L, W, 50] p_t-weighted mean |REG term|
    golden: np.ndarray  # [L, W, 50] p_t-weighted mean |golden|


def conclude(quick: bool, results) -> Outcome:
    res = dict(zip(cells(quick), results))
    laws, ws, ends = _laws(quick), _ws(quick), _ends(quick)
    E = len(ends)
    shape = (len(laws), len(ws), E, E)
    tv_t, tv_c, mm = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    tv_e = np.full(shape, np.nan)  # the cells' estimated TV errors (evaluation.accuracy)
    cond_mm, tgt_mm = np.zeros(len(laws)), np.zeros((len(laws), len(ws)))
    sig, cfg_t, reg_t, gold = (np.zeros((len(laws), len(ws), 50)) for _ in range(4))
    for a, law in enumerate(laws):
        base = res[_base(law)]
        cond_mm[a] = right_mass_exact(law)
        for b, w in enumerate(ws):
            for i, lo in enumerate(ends):
                for j, hi in enumerate(ends):
                    if j <= i:
                        continue
                    r = res[_cell(law, w, lo, hi)]
                    tv_t[a, b, i, j], tv_e[a, b, i, j] = r.tv, r.tv_error
                    tv_c[a, b, i, j] = tv_between(r.law_of(), base.law_of()).value
                    mm[a, b, i, j] = r.region_mass[0]
                    tgt_mm[a, b] = region_mass(r.target_law(), *RIGHT[0]).value
            f0, f1 = (res[FieldCell(law, SCHEDULE, Method("cfg", w, reg=rr), levels=50)] for rr in ("", "paper"))
            sig[a, b] = np.sqrt((1 - f0.abar) / f0.abar)
            cfg_t[a, b], reg_t[a, b], gold[a, b] = f0.term_size, f1.term_size, f0.golden_size
    data = IntervalMap(laws, ws, ends, tv_t, tv_c, mm, cond_mm, tgt_mm, sig, cfg_t, reg_t, gold)
    # against the tilted target: does excluding the highest / the lowest levels help?
    incl_high = np.nanmin(tv_t[:, :, :, E - 1], axis=2)  # best interval reaching sigma_max
    excl_high = np.nanmin(tv_t[:, :, :, :E - 1], axis=(2, 3))  # best interval stopping below it
    incl_low = np.nanmin(tv_t[:, :, 0, :], axis=2)  # best interval starting at sigma = 0
    excl_low = np.nanmin(tv_t[:, :, 1:, :], axis=(2, 3))
    best = [np.unravel_index(np.nanargmin(tv_t[a, b]), (E, E)) for a in range(len(laws)) for b in range(len(ws))]
    numbers = []
    for a, law in enumerate(laws):
        for b, w in enumerate(ws):
            i, j = best[a * len(ws) + b]
            numbers += [(f"{law} w={w:g}: TV to tilted target, guidance everywhere", tv_t[a, b, 0, E - 1], tv_e[a, b, 0, E - 1]),
                        (f"{law} w={w:g}: best interval lo", ends[i]), (f"{law} w={w:g}: best interval hi", ends[j]),
                        (f"{law} w={w:g}: TV to tilted target, best interval", tv_t[a, b, i, j], tv_e[a, b, i, j]),
                        (f"{law} w={w:g}: best TV, intervals stopping below sigma_max", excl_high[a, b]),
                        (f"{law} w={w:g}: best TV, intervals starting above 0", excl_low[a, b]),
                        (f"{law} w={w:g}: right-mode mass: target", tgt_mm[a, b]),
                        (f"{law} w={w:g}: right-mode mass: guidance everywhere", mm[a, b, 0, E - 1]),
                        (f"{law} w={w:g}: right-mode mass: best interval", mm[a, b, i, j]),
                        (f"{law} w={w:g}: TV to the conditional, guidance everywhere", tv_c[a, b, 0, E - 1])]
    numbers += [(f"{law}: right-mode mass of the conditional", cond_mm[a]) for a, law in enumerate(laws)]
    low_hurts = bool(np.all(excl_low < incl_low))
    high_hurts = bool(np.all(excl_high < incl_high))
    i0, j0 = best[len(ws) - 1]
    key = (f"{laws[0]}, w={ws[-1]:g}: TV to the tilted target {tv_t[0, -1, 0, E - 1]:.3f} with guidance everywhere, "
           f"{tv_t[0, -1, i0, j0]:.3f} on the best interval [{ends[i0]:g}, {ends[j0]:g}]; right-mode mass "
           f"{mm[0, -1, 0, E - 1]:.2f} (everywhere) vs {tgt_mm[0, -1]:.2f} (target), {cond_mm[0]:.2f} (conditional)")
    if low_hurts and high_hurts:
        verdict = "holds"
    elif low_hurts:
        verdict = ("holds only when read as 'leave out the low noise levels': against the tilted target, guidance "
                   "below the interval's lower end hurts, but guidance at the highest noise levels is needed (every "
                   "best interval reaches sigma_max)")
    elif high_hurts:
        verdict = "holds only when read as 'leave out the high noise levels' (low-noise guidance is needed here)"
    else:
        verdict = "fails"
    return Outcome(CLAIM.result(verdict, key, numbers), data)


CLAIM = Claim(
    id="interval", source="2404.07724", title="Guidance helps only in a middle interval of noise levels",
    statement=("Guidance is harmful toward the beginning of the chain (high noise), largely unnecessary toward the end "
               "(low noise) and beneficial only in the middle; restricting it to an interval improves quality "
               "(abstract). A 1-D example where guidance everywhere drops a mode is from memory of the body."),
    provenance="abstract",
    experiment=("CFG with weight w = 2, 5 only for sigma in [lo, hi] (lo, hi over 0, 0.03 .. 10, inf), DDPM, 50 steps "
                "to abar_T = 1e-4, paper_1d and paper_1d_script: TV to the tilted target, TV to the conditional (the "
                "unguided exact chain), mass of the right conditional mode; CFG and REG term sizes per level."),
    figure="claims_interval", cells=cells, conclude=conclude)
