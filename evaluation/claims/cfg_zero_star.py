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
early-training setting is outside it. Each sliced W1 is published from a grid of half the experiment's spacing with
its error, the change from the experiment's grid (:func:`flows_result`); a cell whose error exceeds its tolerance
leaves the claim not converged.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple, Sequence

import torch

from .. import flows
from ..accuracy import coarsen, default_tol
from ..flows import (FIGURE, FlowsConfig, FlowsResult, LawCell, LawResult, Verdict, assemble,
                     cfg_zero_star_verdict, describe_cells)
from ..sweep import CellFailed
from ..spec import Law, Method
from .ledger import Claim, Outcome

__all__ = ["CLAIM", "METHODS", "config", "cells", "conclude", "conclude_rule", "verdict_text", "numbers_of",
           "FlowNumbers", "flows_result"]

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
    """The flows experiment's cells of :func:`config`, then each of its output-law cells again on the grid of half
    the spacing (``2 n - 1`` nodes per axis: the cell's nodes stay nodes), for the numbers' errors
    (:func:`flows_result`). Both are cached and shared with :mod:`.apg`."""
    plain = flows.cells(config(quick))
    return plain + [_finer(c) for c in plain if isinstance(c, LawCell)]


def _finer(c: LawCell) -> LawCell:
    return dataclasses.replace(c, points=2 * c.points - 1)


class FlowNumbers(NamedTuple):
    result: FlowsResult  # assembled from the finer grid's laws (the figure's masses restricted to the cell's grid)
    errors: dict  # (preset, w, schedule, steps, method) -> the sw1 error of that cell
    failed: tuple  # CellFailed for every cell whose sw1 error exceeds its tolerance


def flows_result(quick: bool, results: Sequence, tol: float | None = None) -> FlowNumbers:
    """The flows experiment's numbers from :func:`cells`' results, each with its error: the finer grid's sliced W1
    and TV are published, their error the change from the cell's own grid (the coarser run's error, an upper
    estimate for the finer one of a method of order >= 1, the rule of :func:`evaluation.accuracy.refined_engine`)
    plus the lost mass at the grid's farthest reach (a 1-Lipschitz test function moves by at most that per unit of
    mass). A cell whose error exceeds ``tol`` (default :func:`evaluation.accuracy.default_tol` of its dimension) is
    in ``failed``: it must not publish (issue 19).

    Not :func:`evaluation.accuracy.converged_laws`: these 2-D flow outputs are close to singular, so their per-node
    mass errors never meet the contract within its node budget (correlated_2d, CFG w = 1, flow Euler, 10 steps:
    sliced W1 0.049, 0.079, 0.094 on 41, 81, 161 nodes per axis; TV 0.21, 0.54, 0.75), and the contract would
    spend minutes per cell on more sub-points before refusing it."""
    cfg = config(quick)
    plain = flows.cells(cfg)
    if len(results) != len(cells(quick)):
        raise ValueError(f"expected the flows experiment's {len(cells(quick))} results, got {len(results)}")
    fine = dict(zip([_finer(c) for c in plain if isinstance(c, LawCell)], results[len(plain):]))
    merged, by_cell, failed = [], {}, []
    for c, r in zip(plain, results[:len(plain)]):
        if not isinstance(c, LawCell):
            merged.append(r)
            continue
        f = fine[_finer(c)]
        if not (isinstance(r, LawResult) and isinstance(f, LawResult)):
            raise ValueError(f"expected the flows experiment's LawResult for {c!r:.120}, got {type(r).__name__}")
        d = c.law.dim
        reach = 2 * c.half_width * math.sqrt(d)
        err = abs(f.distances.sw1 - r.distances.sw1) + f.distances.lost * reach
        by_cell[(c.law, c.levels, c.method)] = err
        limit = default_tol(d) if tol is None else tol
        if err > limit:  # nan (a cell not defined, e.g. momentum under DDPM) publishes nothing to check
            failed.append(CellFailed(repr(c)[:200], f"ValueError: sliced W1 {f.distances.sw1:.4g} +- {err:.2g} on "
                                     f"{_finer(c).points} nodes per axis, not within tol {limit:g} (the change from "
                                     f"{c.points} nodes)"))
        mass = coarsen(torch.as_tensor(f.mass)).numpy() if f.mass.size else f.mass
        merged.append(LawResult(f.distances, mass))
    errors = {}
    for preset in cfg.presets:
        for w in cfg.weights:
            for sch in cfg.schedules:
                for n in cfg.steps:
                    for name in cfg.methods:
                        key = (Law.preset(preset), flows.levels(sch, n, cfg.shift), Method.parse(name).replace(w=w))
                        errors[(preset, w, sch, n, name)] = by_cell.get(key, math.nan)
    return FlowNumbers(assemble(cfg, merged), errors, tuple(failed))


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


def numbers_of(v: Verdict, label: str, errors: dict | None = None) -> list[tuple]:
    """Counts, the median relative difference, and sliced W1 of rule and baseline in every cell, each sw1 with its
    error from ``errors`` (:func:`flows_result`; nan where absent). The median is a median of ratios: its error is
    the max over the cells of the ratio's first-order error."""
    errors = errors or {}
    err = lambda cell, m: errors.get((*cell, m), math.nan)  # noqa: E731
    ratio_err = [abs(a / b) * (err(c, v.rule) / abs(a) + err(c, v.baseline) / abs(b))
                 for c, a, b in zip(v.cells, v.rule_values, v.baseline_values) if a and b]
    out = [(f"{label}: cells closer than {v.baseline}", len(v.holds)), (f"{label}: cells further", len(v.fails)),
           (f"{label}: ties (within 10%)", len(v.ties)),
           (f"{label}: median sw1 ratio - 1", v.counts()["median_relative"], max(ratio_err, default=math.nan))]
    for cell, a, b in zip(v.cells, v.rule_values, v.baseline_values):
        pr, w, sch, n = cell
        out += [(f"{pr} w={w:g} {sch} n={n}: sw1 {v.rule}", a, err(cell, v.rule)),
                (f"{pr} w={w:g} {sch} n={n}: sw1 {v.baseline}", b, err(cell, v.baseline))]
    return out


def conclude_rule(claim: Claim, r: FlowsResult | FlowNumbers, verdicts: Callable[[FlowsResult], tuple[Verdict, Verdict]],
                  labels: tuple[str, str]) -> Outcome:
    """A flow claim's outcome from the shared cells' result: the verdict of the rule as proposed, ``verdicts(r)[0]``,
    decides; its variant's (``[1]``) is reported beside it. ``labels`` name the two in the numbers. With
    :class:`FlowNumbers` (:func:`flows_result`) each sw1 carries its error, and a cell beyond its tolerance makes
    the claim :data:`evaluation.claims.ledger.NOT_CONVERGED` (:meth:`Claim.not_converged`)."""
    errors = None
    if isinstance(r, FlowNumbers):
        if r.failed:
            return claim.not_converged(r.failed)
        r, errors = r.result, r.errors
    if not isinstance(r, FlowsResult):
        raise ValueError(f"expected the flows experiment's result, got {type(r).__name__}")
    full, variant = verdicts(r)
    numbers = numbers_of(full, labels[0], errors) + numbers_of(variant, labels[1], errors)
    key = (f"sliced W1 to the tilted target: {labels[0]} closer than CFG in {len(full.holds)}, further in "
           f"{len(full.fails)}, tied in {len(full.ties)} of {len(full.cells)} cells ({labels[1]}: "
           f"{len(variant.holds)} / {len(variant.fails)} / {len(variant.ties)})")
    return Outcome(claim.result(verdict_text(full), key, numbers), r)


def conclude(quick: bool, results) -> Outcome:
    return conclude_rule(CLAIM, flows_result(quick, results),
                         lambda r: (cfg_zero_star_verdict(r, zero_init=True), cfg_zero_star_verdict(r)),
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
