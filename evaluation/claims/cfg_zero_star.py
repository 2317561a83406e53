"""Fan, Zheng, Yeh, Liu, "CFG-Zero*: improved classifier-free guidance for flow matching models" (arXiv 2503.18886).

Claim (abstract): CFG-Zero*, CFG with (a) an optimised scale ``s* = <v_c, v_u> / |v_u|^2`` that corrects the
estimated velocity and (b) zero-init, zeroing the first steps of the ODE solver, consistently outperforms CFG
on flow-matching models (text-to-image and text-to-video). The abstract motivates it with Gaussian mixtures
whose ground-truth flow is known, where inaccurate early flow estimates send CFG's samples astray.

Experiment: :mod:`evaluation.flows` run as ledger cells (those of a :class:`~evaluation.flows.FlowsConfig`): exact
output laws of CFG, CFG-Zero* (optimised scale alone) and CFG-Zero* with zero-init (the first step zeroed, as
the authors' code) on the 2-D presets (in 1-D the optimised scale makes CFG-Zero* the conditional model), flow
Euler with uniform and SD3-shifted levels and VP DDIM / DDPM at matched step counts, against the tilted target
of CFG's weight; verdict per cell by sliced W1 with a 10% tie band (:func:`evaluation.flows.compare`). The
models are exact, so this tests the rule itself, not its repair of a poorly trained velocity: the abstract's
early-training setting is outside it.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from .. import flows
from ..flows import FIGURE, FlowsConfig, FlowsResult, Verdict, assemble, cfg_zero_star_verdict, describe_cells
from .ledger import Claim, Outcome

__all__ = ["CLAIM", "METHODS", "config", "cells", "conclude", "conclude_rule", "verdict_text", "numbers_of"]

METHODS = ("cfg", "cfg_zero_star", "cfg_zero_star_init", "apg", "apg_momentum")  # shared with the APG claim


def config(quick: bool) -> FlowsConfig:
    """The flows experiment both flow claims (this and :mod:`.apg`) read: the same cells, computed once. ``quick``:
    correlated_2d (where the rules differ most), w = 1 and 4, 10 steps, the deterministic schedules, the
    tests' grid (2-D spacing 0.3); else :data:`evaluation.flows.FIGURE` (w = 1 and 4, 10 and 50 steps, every
    schedule) on the 2-D presets without the optimum and the field errors (the verdicts need the output laws
    only; :data:`evaluation.flows.FULL`, every weight and step count on a finer grid, is a long run)."""
    if quick:
        return FlowsConfig(presets=("correlated_2d",), weights=(1.0, 4.0), steps=(10,),
                           schedules=("flow", "flow_shift", "vp_ddim"), methods=METHODS, density_points=(701, 41),
                           sub=(4, 2), field_nodes=(16, 6), optimal_2d_steps=(), grid_check=False, fields=False)
    return dataclasses.replace(FIGURE, presets=("correlated_2d", "classes_2d"), methods=METHODS, optimal_2d_steps=(),
                               fields=False)


def cells(quick: bool) -> list:
    return flows.cells(config(quick))


def verdict_text(v: Verdict) -> str:
    """``holds`` (never further than the baseline), ``fails`` (never closer) or ``holds only when`` the cells
    where it is closer, described; when the baseline's own distance separates those cells from the ones where
    the rule is further, the verdict says so with the two distances."""
    if not v.fails:
        return "holds"
    if not v.holds:
        return "fails"
    out = {c: b for c, b in zip(v.cells, v.baseline_values)}
    lo, hi = min(out[c] for c in v.holds), max(out[c] for c in v.fails)
    where = (f"{v.baseline} itself lands far from the target (its sliced W1 >= {lo:.2f} where the rule is closer, "
             f"<= {hi:.2f} where it is further)" if lo > hi else "the setting is one of these")
    return (f"holds only when {where}: closer in {len(v.holds)} of {len(v.cells)} cells ({describe_cells(v.holds)}), "
            f"further in {len(v.fails)} ({describe_cells(v.fails)}), within 10% in {len(v.ties)}")


def numbers_of(v: Verdict, label: str) -> list[tuple[str, float]]:
    """Counts, the median relative difference, and sliced W1 of rule and baseline in every cell."""
    out = [(f"{label}: cells closer than {v.baseline}", len(v.holds)), (f"{label}: cells further", len(v.fails)),
           (f"{label}: ties (within 10%)", len(v.ties)),
           (f"{label}: median sw1 ratio - 1", v.counts()["median_relative"])]
    for (pr, w, sch, n), a, b in zip(v.cells, v.rule_values, v.baseline_values):
        out += [(f"{pr} w={w:g} {sch} n={n}: sw1 {v.rule}", a), (f"{pr} w={w:g} {sch} n={n}: sw1 {v.baseline}", b)]
    return out


def conclude_rule(claim: Claim, r: FlowsResult, verdicts: Callable[[FlowsResult], tuple[Verdict, Verdict]],
                  labels: tuple[str, str]) -> Outcome:
    """A flow claim's outcome from the shared cells' result: the verdict of the rule as proposed, ``verdicts(r)[0]``,
    decides; its variant's (``[1]``) is reported beside it. ``labels`` name the two in the numbers."""
    if not isinstance(r, FlowsResult):
        raise ValueError(f"expected the flows experiment's result, got {type(r).__name__}")
    full, variant = verdicts(r)
    numbers = numbers_of(full, labels[0]) + numbers_of(variant, labels[1])
    key = (f"sliced W1 to the tilted target: {labels[0]} closer than CFG in {len(full.holds)}, further in "
           f"{len(full.fails)}, tied in {len(full.ties)} of {len(full.cells)} cells ({labels[1]}: "
           f"{len(variant.holds)} / {len(variant.fails)} / {len(variant.ties)})")
    return Outcome(claim.result(verdict_text(full), key, numbers), r)


def conclude(quick: bool, results) -> Outcome:
    return conclude_rule(CLAIM, assemble(config(quick), results), lambda r: (cfg_zero_star_verdict(r, zero_init=True), cfg_zero_star_verdict(r)),
                         ("CFG-Zero* (+ zero-init)", "optimised scale alone"))


CLAIM = Claim(
    id="cfg-zero-star", source="2503.18886", title="CFG-Zero* outperforms CFG on flow-matching models",
    statement=("CFG-Zero*, CFG with an optimised scale for the unconditional velocity and zero-init (the first ODE "
               "steps zeroed), consistently outperforms CFG on flow-matching models (abstract)."),
    provenance="abstract",
    experiment=("Exact output laws of CFG, CFG-Zero* and CFG-Zero* + zero-init (first step) on correlated_2d and "
                "classes_2d, w = 1, 4, flow Euler (uniform and SD3-shifted t, shift 3) and VP DDIM / DDPM at 10 and 50 "
                "steps (quick: correlated_2d, 10 steps, no DDPM), against the tilted target of CFG's w; sliced W1, ties within 10% "
                "(evaluation.flows)."),
    figure="flows", cells=cells, conclude=conclude)
