"""Wu, Chen, Li, Wang, Wei, "Theoretical insights for diffusion guidance: a case study for Gaussian mixture
models" (arXiv 2403.01639).

Claim (abstract): under mild conditions, guidance raises the classification confidence of the samples and
lowers the differential entropy of the output distribution, for DDPM and DDIM. (The conditions, isotropic
components with well-separated means in the paper as remembered, are from memory.)

Experiment: random two-class 1-D mixtures (1-3 components per class, means in [-3, 3], standard deviations
in [0.2, 1], seeded), CFG towards class 0 with the class marginal as the unconditional law, exact DDPM and
DDIM output laws for w = 0..4 (20 steps to abar_T = 1e-4): the exact Bayes classifier's mean confidence
E_out[p(y | x)] and the output's differential entropy, each checked for monotonicity in w; the settings that
violate either are where the conditions end.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .cells import OutputCell
from ..spec import Method
from .ledger import Claim, Outcome

__all__ = ["CLAIM", "Monotone", "cells", "conclude"]

GRID = (-7.0, 7.0, 561)
WS = (0.0, 0.5, 1.0, 2.0, 4.0)
SAMPLERS = ("ddpm", "ddim")


def _seeds(quick: bool) -> range:
    return range(4) if quick else range(24)


def _cell(seed: int, w: float, sampler: str) -> OutputCell:
    return OutputCell(f"rand1d:{seed}", "lin:20:0.0001", Method("cfg", w), "n01", sampler, GRID,
                      checked=("confidence", "entropy"))  # what the claim publishes, within the cell's tol


def _ws(quick: bool) -> tuple[float, ...]:
    return (0.0, 1.0, 4.0) if quick else WS


def cells(quick: bool) -> list:
    return [_cell(s, w, sm) for s in _seeds(quick) for sm in SAMPLERS for w in _ws(quick)]


class Monotone(NamedTuple):
    seeds: np.ndarray
    ws: np.ndarray
    confidence: np.ndarray  # [S, 2, W] (samplers ddpm, ddim)
    entropy: np.ndarray  # [S, 2, W]


def conclude(quick: bool, results) -> Outcome:
    res = dict(zip(cells(quick), results))
    seeds = list(_seeds(quick))
    conf = np.array([[[res[_cell(s, w, sm)].confidence for w in _ws(quick)] for sm in SAMPLERS] for s in seeds])
    ent = np.array([[[res[_cell(s, w, sm)].entropy for w in _ws(quick)] for sm in SAMPLERS] for s in seeds])
    data = Monotone(np.array(seeds), np.array(_ws(quick)), conf, ent)
    tol = 1e-4
    conf_up = np.all(np.diff(conf, axis=2) > -tol, axis=2)  # [S, 2]
    ent_down = np.all(np.diff(ent, axis=2) < tol, axis=2)
    numbers = []
    for j, sm in enumerate(SAMPLERS):
        numbers += [(f"{sm}: laws where confidence rises with w", conf_up[:, j].sum()),
                    (f"{sm}: laws where entropy falls with w", ent_down[:, j].sum()),
                    (f"{sm}: largest confidence drop between weights", -np.diff(conf[:, j], axis=1).max()),
                    (f"{sm}: largest entropy rise between weights", np.diff(ent[:, j], axis=1).max())]
    numbers.append(("random laws", len(seeds)))
    bad_conf = [s for s, ok in zip(seeds, conf_up.all(1)) if not ok]
    bad_ent = [s for s, ok in zip(seeds, ent_down.all(1)) if not ok]
    key = (f"confidence rises with w in {conf_up.all(1).sum()}/{len(seeds)} random laws (DDPM and DDIM), entropy "
           f"falls in {ent_down.all(1).sum()}/{len(seeds)}")
    if not bad_conf and not bad_ent:
        verdict = "holds"
    elif len(bad_conf) + len(bad_ent) < len(seeds):
        verdict = ("holds only when the law meets conditions this search does not always meet: violations for "
                   f"seeds {sorted(set(bad_conf) | set(bad_ent))} (confidence: {bad_conf}, entropy: {bad_ent})")
    else:
        verdict = "fails"
    return Outcome(CLAIM.result(verdict, key, numbers), data)


CLAIM = Claim(
    id="wu-gmm", source="2403.01639", title="Guidance raises confidence and lowers entropy (Gaussian mixtures)",
    statement=("Under mild conditions, incorporating diffusion guidance boosts classification confidence and "
               "diminishes distribution diversity, lowering the differential entropy of the output, for DDPM and DDIM "
               "(abstract)."),
    provenance="abstract",
    experiment=("24 seeded random two-class 1-D mixtures; CFG towards class 0 for w = 0, 0.5, 1, 2, 4; exact DDPM and "
                "DDIM output laws (20 steps to abar_T = 1e-4); exact Bayes-classifier confidence and differential "
                "entropy of the output, checked for monotonicity in w."),
    figure="claims_wu_gmm", cells=cells, conclude=conclude)
