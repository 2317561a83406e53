"""Wang et al., "Analysis of classifier-free guidance weight schedulers" (arXiv 2404.13040).

Claim (abstract): simple, monotonically increasing weight schedules (the weight grows along the sampling
chain, towards low noise) consistently improve results over a constant weight.

Experiment: at the same mean weight over the steps (``up``: w_i = 2w (i+1)/(K+1) along the chain; ``down``
its mirror; ``const``), exact DDPM output laws against the tilted target of w, with the exact classifier's
mean confidence (alignment) and the output's differential entropy (diversity), over laws, schedules and w.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .cells import OutputCell
from ..spec import Method
from ..sweep import CellFailed
from .ledger import Claim, Outcome

__all__ = ["CLAIM", "WeightSchedules", "cells", "conclude"]

WEIGHTINGS = ("const", "up", "down")
GRIDS = {"classes_2d": (-3.5, 3.5, 51)}


def _settings(quick: bool):
    if quick:
        return [("paper_1d", s, w) for s in ("paper", "lin:20:0.0001") for w in (1.0, 3.0)]
    return ([(law, s, w) for law in ("paper_1d", "paper_1d_script") for s in ("paper", "lin:20:0.0001", "lin:50:0.0001")
             for w in (1.0, 3.0)] + [("classes_2d", s, w) for s in ("paper", "lin:20:0.0001") for w in (1.0, 3.0)])


def _cell(law, s, w, weighting):
    return OutputCell(law, s, Method("cfg", w, weighting), "n01", grid=GRIDS.get(law, (-5.0, 5.0, 801)))


def cells(quick: bool) -> list:
    return [_cell(*st, k) for st in _settings(quick) for k in WEIGHTINGS]


class WeightSchedules(NamedTuple):
    settings: tuple  # (law, schedule, w)
    tv: np.ndarray  # [S, 3] const, up, down
    confidence: np.ndarray  # [S, 3]
    entropy: np.ndarray  # [S, 3]


def conclude(quick: bool, results) -> Outcome:
    res = dict(zip(cells(quick), results))
    st = [s for s in _settings(quick)  # a setting with a cell that did not converge is left out (Claim.partial)
          if not any(isinstance(res[_cell(*s, k)], CellFailed) for k in WEIGHTINGS)]
    get = lambda f: np.array([[getattr(res[_cell(*s, k)], f) for k in WEIGHTINGS] for s in st])  # noqa: E731
    tv, conf, ent = get("tv"), get("confidence"), get("entropy")
    tv_err = get("tv_error")  # the accuracy contract's estimate of each TV (evaluation.accuracy); counts carry none
    data = WeightSchedules(tuple(st), tv, conf, ent)
    up_better = tv[:, 1] < tv[:, 0]
    up_best = tv.argmin(1) == 1
    numbers = [("settings", len(st)), ("up closer to the tilted target than const", up_better.sum()),
               ("up the closest of the three", up_best.sum()),
               ("down closer than const", (tv[:, 2] < tv[:, 0]).sum()),
               ("up: more entropy than const (diversity kept)", (ent[:, 1] > ent[:, 0]).sum()),
               ("up: more confidence than const", (conf[:, 1] > conf[:, 0]).sum())]
    numbers += [(f"{law} {s} w={w:g}: TV {k}", v, e) for (law, s, w), row, erow in zip(st, tv, tv_err)
                for k, v, e in zip(WEIGHTINGS, row, erow)]
    key = (f"decreasing beats constant in {(tv[:, 2] < tv[:, 0]).sum()}/{len(st)}; "
           f"at equal mean weight the increasing schedule is closer to the tilted target than the constant one in "
           f"{up_better.sum()}/{len(st)} settings, with more entropy in {(ent[:, 1] > ent[:, 0]).sum()}/{len(st)}")
    if up_better.all():
        verdict = "holds"
    elif up_better.mean() >= 0.5:
        failing = sorted({f"{law}/{s}/w={w:g}" for (law, s, w), ok in zip(st, up_better) if not ok})
        verdict = "holds only when the setting is not one of " + ", ".join(failing)
    else:
        verdict = "fails"
    return Outcome(CLAIM.result(verdict, key, numbers), data)


CLAIM = Claim(
    id="schedules", source="2404.13040", title="Increasing guidance schedules beat a constant weight",
    statement=("Simple, monotonically increasing weight schedulers consistently improve performance over a fixed "
               "weight (abstract); tested at equal mean weight against the tilted target of that weight."),
    provenance="abstract",
    experiment=("const / linearly increasing / decreasing weights with the same mean w over the DDPM steps; paper_1d, "
                "paper_1d_script, classes_2d; schedules paper, 20 and 50 steps to abar_T = 1e-4; w = 1, 3: TV to the "
                "tilted target, classifier confidence, output entropy."),
    figure="claims_schedules", cells=cells, conclude=conclude, partial=True)
