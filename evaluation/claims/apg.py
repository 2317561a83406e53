"""Sadat, Hilliges, Weber, "Eliminating oversaturation and artifacts of high guidance scales in diffusion models"
(arXiv 2410.02416).

Claim (abstract): splitting CFG's update into parts parallel and orthogonal to the conditional prediction, the
parallel part mainly causes oversaturation; down-weighting it, with a rescaling and a (reverse) momentum of the
update, gives adaptive projected guidance (APG), which keeps CFG's quality gains while allowing high guidance
scales without oversaturation, with better FID and recall than CFG for various models and samplers.

Experiment: the flows experiment shared with :mod:`.cfg_zero_star` (one cell): exact output laws of CFG, APG on
``x0`` with the parallel part removed (``eta = 0``, no norm cap; a pure function of the state, so exact under
every sampler) and APG with the paper's reverse momentum ``beta = -0.5`` (deterministic samplers only, where the
law is one push-forward of trajectories each carrying its momentum), on the 2-D presets (in 1-D the update is
all parallel), under flow Euler and VP DDIM (the deterministic samplers, whose sliced W1
:func:`evaluation.flows.pushed_sw1` computes with an error bound), against the tilted target of the same ``w``. Read as: at the
same weight, APG's samples are closer to what the weight aims at than CFG's (oversaturation = overshooting
it). FID, recall and saturation of images are outside this test.
"""
from __future__ import annotations

from ..flows import apg_verdict
from .cfg_zero_star import cells as flow_cells
from .cfg_zero_star import conclude_rule, flows_result
from .ledger import Claim, Outcome

__all__ = ["CLAIM", "cells", "conclude"]


def cells(quick: bool) -> list:
    """The cells of the flows experiment shared with CFG-Zero* (:func:`evaluation.claims.cfg_zero_star.cells`)."""
    return flow_cells(quick)


def conclude(quick: bool, results) -> Outcome:
    return conclude_rule(CLAIM, flows_result(quick, results), lambda r: (apg_verdict(r, momentum=True), apg_verdict(r)),
                         ("APG + momentum", "APG without momentum"))


CLAIM = Claim(
    id="apg", source="2410.02416", title="APG keeps CFG's gains without oversaturation at high guidance scales",
    statement=("Down-weighting the part of CFG's update parallel to the conditional prediction, with rescaling and "
               "reverse momentum (APG), retains CFG's quality gains while enabling high guidance scales without "
               "oversaturation, improving FID and recall over CFG for various models and samplers (abstract)."),
    provenance="abstract",
    experiment=("Exact output laws of CFG and APG (parallel part removed, eta = 0; with and without reverse momentum "
                "-0.5) on correlated_2d and classes_2d, w = 1, 4, flow Euler (uniform and SD3-shifted t) and VP DDIM "
                "at 10 and 50 steps (quick: correlated_2d, 10 steps), against the tilted target of the same w; sliced "
                "W1 of the sampler's push-forward of the start (no output grid) with its error, ties within 10% "
                "(evaluation.flows)."),
    figure="flows", cells=cells, conclude=conclude)
