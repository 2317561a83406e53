"""CFG's three stages (Jin, Shi & Gu, arXiv 2509.22007): "Stage-wise dynamics of classifier-free guidance in
diffusion models".

Claim (abstract): CFG moves through a direction shift, mode separation, then concentration; strong guidance early
erodes global diversity (weak modes lose mass), strong guidance late shrinks the variance within modes.

Experiment: an unequal-weight conditional ``0.8 N(-1, 0.3^2) + 0.2 N(1, 0.3^2)`` against the unconditional
``0.5 / 0.5`` on the same modes (so the tilt favours the strong mode). Early-only and late-only windowed CFG
(``interval`` weighting) split at a noise level ``cut``, each window's weight set so that the mean weight over the
sampler's steps is the same ``W`` (``w = W K / n`` for a window of ``n`` of the ``K`` steps), beside constant CFG
at ``W``. Each cell (:class:`evaluation.claims.cells.OutputCell`) publishes, each within its tolerance, the mass of
the strong mode's side (x < 0) and the variance within it: the weak mode's mass is the rest. These converge where
the output law's node masses do not (a DDIM output guided late at w = 12 is narrower than any grid), so the cells
are judged on them alone (issue 19). The cut is varied: at the step midpoint of the schedule and at lower noise
levels.
"""
from __future__ import annotations

import math
from typing import NamedTuple


from ..spec import Method, Schedule
from .cells import OutputCell
from .ledger import Claim, Outcome

__all__ = ["CLAIM", "LAW", "STRONG", "cells", "conclude", "window_weights", "StageRow", "Stages"]

LAW = ("mixture:[[[0.8,0.2],[[-1.0],[1.0]],[[[0.09]],[[0.09]]]],"
       "[[0.5,0.5],[[-1.0],[1.0]],[[[0.09]],[[0.09]]]]]")
STRONG = ((-math.inf, 0.0),)  # the strong mode's side: its mass and the variance within it are what a cell publishes


def _config(quick: bool) -> tuple:
    """(schedule, grid, samplers, mean weights, cuts); a cut of ``None`` is the step midpoint."""
    if quick:
        return "standard:20", (-4.0, 4.0, 201), ("ddim",), (3.0,), (None, 1.0)
    return "standard:50", (-4.0, 4.0, 401), ("ddim", "ddpm"), (1.0, 3.0), (None, 1.0, 0.5, 0.2)


def _cut_sigma(schedule: str, cut: float | None) -> float:
    s = Schedule.parse(schedule).vp.sampling_sigmas()
    if cut is not None:
        return float(cut)
    k = (len(s) - 1) // 2
    return math.sqrt(s[k - 1].item() * s[k].item())  # between the two middle evaluation levels


def window_weights(schedule: str, cut: float, mean: float) -> tuple[float, float, int, int]:
    """(w_early, w_late, n_early, n_late): the weights of the windows sigma >= cut and sigma < cut over the
    sampler's evaluation levels (all but the final 0) that give the mean weight ``mean`` over all of them."""
    s = Schedule.parse(schedule).vp.sampling_sigmas()[:-1]
    n_early = int((s >= cut).sum())
    n_late = len(s) - n_early
    if n_early == 0 or n_late == 0:
        raise ValueError(f"cut={cut} leaves one window empty on {schedule!r} (levels {s.min():.3g}..{s.max():.3g})")
    return mean * len(s) / n_early, mean * len(s) / n_late, n_early, n_late


def _methods(schedule: str, cut: float | None, mean: float) -> tuple[Method, Method]:
    c = _cut_sigma(schedule, cut)
    w_e, w_l, _, _ = window_weights(schedule, c, mean)
    # interval weighting: w on [lo, hi]; the late window ends just below the cut (no level lies in between)
    s = Schedule.parse(schedule).vp.sampling_sigmas()[:-1]
    below = float(s[s < c].max())
    return Method("cfg", w_e, "interval", lo=c), Method("cfg", w_l, "interval", hi=below)


def _out(schedule, method, sampler, grid) -> OutputCell:
    return OutputCell(LAW, schedule, method, sampler=sampler, grid=grid, checked=("regions", "region_var"),
                      regions=STRONG)


def cells(quick: bool) -> list:
    schedule, grid, samplers, means, cuts = _config(quick)
    out = []
    for sampler in samplers:
        out.append(_out(schedule, Method("unguided", 0.0), sampler, grid))
        for mean in means:
            out.append(_out(schedule, Method("cfg", mean), sampler, grid))
            for cut in cuts:
                out += [_out(schedule, m, sampler, grid) for m in _methods(schedule, cut, mean)]
    return out


def _modes(result) -> tuple[float, float, float, float]:
    """(weak-mode mass, variance within the strong mode, their errors) of a cell's result."""
    return 1.0 - result.region_mass[0], result.region_var[0], result.region_error[0], result.region_var_error


class StageRow(NamedTuple):
    sampler: str
    mean_w: float
    cut: float  # sigma of the split (nan: constant CFG; -1: unguided)
    window: str  # "unguided", "constant", "early", "late"
    w: float  # the window's weight
    weak_mass: float
    var_strong: float
    weak_error: float  # the cell's error estimates of the two numbers above
    var_error: float


class Stages(NamedTuple):
    rows: tuple[StageRow, ...]


def _rows(quick: bool, results) -> list[StageRow]:
    schedule, grid, samplers, means, cuts = _config(quick)
    it = iter(results)
    rows = []
    for sampler in samplers:
        rows.append(StageRow(sampler, 0.0, -1.0, "unguided", 0.0, *_modes(next(it))))
        for mean in means:
            rows.append(StageRow(sampler, mean, math.nan, "constant", mean, *_modes(next(it))))
            for cut in cuts:
                c = _cut_sigma(schedule, cut)
                w_e, w_l, _, _ = window_weights(schedule, c, mean)
                rows.append(StageRow(sampler, mean, c, "early", w_e, *_modes(next(it))))
                rows.append(StageRow(sampler, mean, c, "late", w_l, *_modes(next(it))))
    return rows


def conclude(quick: bool, results) -> Outcome:
    rows = _rows(quick, results)
    data = Stages(tuple(rows))
    numbers, both, erode, shrink = [], [], [], []
    for r in rows:
        tag = f"{r.sampler} W={r.mean_w:g} {r.window}" + (f" cut={r.cut:.3g}" if r.window in ("early", "late") else "")
        numbers += [(f"{tag}: weak-mode mass", r.weak_mass, r.weak_error),
                    (f"{tag}: variance in the strong mode", r.var_strong, r.var_error)]
    pairs = [(e, l) for e, l in zip(rows, rows[1:]) if e.window == "early" and l.window == "late"]
    for e, l in pairs:
        er = e.weak_mass < l.weak_mass  # early guidance erodes the weak mode more than late
        sh = l.var_strong < e.var_strong  # late guidance shrinks the within-mode variance more than early
        erode.append(er)
        shrink.append(sh)
        both.append((e.sampler, e.mean_w, e.cut, er and sh))
    by_cut = {}
    for (sampler, mean, cut, ok), er, sh in zip(both, erode, shrink):
        n = by_cut.setdefault(round(cut, 3), [0, 0, 0, 0])
        n[0] += 1
        n[1] += er
        n[2] += sh
        n[3] += ok
    for cut, (n, er, sh, ok) in sorted(by_cut.items()):
        numbers += [(f"cut sigma={cut:g}: early erodes more (of {n})", er),
                    (f"cut sigma={cut:g}: late shrinks more (of {n})", sh), (f"cut sigma={cut:g}: both (of {n})", ok)]
    numbers += [("window pairs", len(pairs)), ("pairs where early erodes more", sum(erode)),
                ("pairs where late shrinks more", sum(shrink)), ("pairs where both hold", sum(ok for *_, ok in both))]
    ref = [r for r in rows if r.window == "unguided"][0]
    per_cut = "; ".join(f"cut {c:.2g}: {v[1]}/{v[0]} erode, {v[2]}/{v[0]} shrink" for c, v in sorted(by_cut.items()))
    key = (f"weak-mode mass unguided {ref.weak_mass:.3f}; early-only erodes it more / late-only shrinks the strong mode "
           f"more, per split level: {per_cut}")
    some = [c for c, v in sorted(by_cut.items()) if v[3] > 0]
    if all(ok for *_, ok in both):
        verdict = "holds"
    elif some:
        mid = max(by_cut)
        counts = ", ".join(f"{v[3]}/{v[0]} settings at sigma = {c:.2g}" for c, v in sorted(by_cut.items()))
        verdict = (f"holds only when the windows split near mode separation (both effects in {counts}); split "
                   f"at the step midpoint (sigma = {mid:.2g}, "
                   f"before the modes separate) late-only guidance erodes the weak mode more than early-only "
                   f"({by_cut[mid][1]}/{by_cut[mid][0]} settings the other way); split at sigma = {min(by_cut):.2g} "
                   f"late-only shrinks the strong mode more in {by_cut[min(by_cut)][2]}/{by_cut[min(by_cut)][0]} (its "
                   f"few steps then carry a large weight)")
    else:
        verdict = "fails"
    return Outcome(CLAIM.result(verdict, key, numbers), data)


CLAIM = Claim(
    id="three-stages", source="2509.22007", title="Early CFG erodes weak modes, late CFG shrinks variance",
    statement=("CFG moves through a direction shift, mode separation, then concentration; strong guidance early "
               "erodes global diversity (weak modes lose mass), strong guidance late shrinks the variance within "
               "modes (abstract)."),
    provenance="abstract",
    experiment=("Exact output laws (DDIM and DDPM, DDPM schedule respaced to 50 steps; quick: DDIM, 20 steps) of "
                "0.8 N(-1, 0.3^2) + 0.2 N(1, 0.3^2) guided against 0.5 / 0.5 on the same modes: early-only vs "
                "late-only interval CFG at the same mean weight W = 1, 3 over the steps, split at the step midpoint "
                "and at sigma = 1, 0.5, 0.2; weak-mode mass and within-mode variances."),
    figure="claims_three_stages", cells=cells, conclude=conclude)
