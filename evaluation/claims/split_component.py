"""Strong guidance can split a component (Wu et al., arXiv 2403.01639, section 6, "a curious example of strong
guidance").

Claim (section title read; the three-component setting from a summary): in a three-component mixture, a large
weight can split one component of the guided output in two.

Experiment: the conditional ``N(0, 0.5^2)`` against the unconditional equal mixture ``N(-1.5, 0.3^2)``,
``N(0, 0.5^2)``, ``N(1.5, 0.3^2)`` (the conditional is the middle component of the unconditional law); CFG at
weights ``w`` over a grid, exact output laws (:class:`evaluation.claims.cells.OutputCell`, the accuracy contract's
masses with their per-node errors) under DDPM and DDIM on the 1000-step DDPM schedule respaced to 20 to 200
steps. The modes of each output density are counted by :func:`count_modes`, with a floor: a local maximum counts
only if its prominence (scipy's: the height above the higher of the two lowest points that separate it from a
higher peak or the grid's end) exceeds ``FRAC`` of the density's maximum and twice the density's largest per-node
error, and the count must be the same on the masses restricted to twice the spacing (otherwise it is not resolved
and is reported as nan). Reported: the count per weight and the interval of ``w`` where the count first changes.
A DDIM output that puts most of its mass in a single grid cell is a collapsed (point-like) law: one mode, and no
density to split.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.signal import find_peaks

from ..accuracy import coarsen, spacing
from ..spec import Method
from .cells import OutputCell
from .ledger import Claim, Outcome

__all__ = ["CLAIM", "LAW", "FRAC", "COLLAPSED", "Modes", "count_modes", "SplitRow", "Split", "cells", "conclude"]

LAW = ("mixture:[[[1.0],[[0.0]],[[[0.25]]]],"
       "[[0.3333333333333333,0.3333333333333333,0.3333333333333334],"
       "[[-1.5],[0.0],[1.5]],[[[0.09]],[[0.25]],[[0.09]]]]]")
FRAC = 0.01  # a mode's prominence must exceed this share of the density's maximum
COLLAPSED = 0.5  # an output with more than this share of its mass on one node is a point-like law
GRID = (-4.0, 4.0, 201)


class Modes(NamedTuple):
    count: float  # modes above the floor (nan: the count changes at twice the spacing, not resolved)
    locations: tuple[float, ...]  # where they are (on the fine grid)
    floor: float  # the prominence a mode had to exceed (density units)
    collapsed: bool  # most of the mass on one node: a point-like law


def _peaks(f: np.ndarray, floor: float) -> np.ndarray:
    # zero padding: a maximum on the grid's end is a peak too (its base is 0, the density's value off the grid)
    idx, _ = find_peaks(np.concatenate([[0.0], f, [0.0]]), prominence=floor)
    return idx - 1


def count_modes(mass, error, grid: tuple[float, float, int], frac: float = FRAC) -> Modes:
    """The modes of the density of hat masses ``mass`` [n] on ``grid`` with per-node errors ``error`` [n]
    (module docstring). ``ValueError`` naming the argument for shapes that do not match, a ``frac`` outside (0, 1),
    a grid that is not ``(lo, hi, n)`` with finite ``lo < hi``, masses that are not finite or have no positive
    entry, and errors that are NaN or negative (issue 20: each gave a count, or nan, without a word)."""
    mass, error = np.asarray(mass, dtype=float), np.asarray(error, dtype=float)
    if not (isinstance(grid, (tuple, list)) and len(grid) == 3
            and all(isinstance(v, (int, float, np.number)) and np.isfinite(v) for v in grid) and grid[0] < grid[1]):
        raise ValueError(f"grid must be (lo, hi, n) with finite lo < hi, got {grid!r}")
    if mass.ndim != 1 or mass.shape != error.shape or mass.size != int(grid[2]) or mass.size < 3:
        raise ValueError(f"mass and error must be 1-D of the grid's {int(grid[2])} nodes, got {mass.shape} and "
                         f"{error.shape}")
    if not 0 < frac < 1:
        raise ValueError(f"frac must be in (0, 1), got {frac!r}")
    if not np.isfinite(mass).all():
        raise ValueError(f"mass has {int((~np.isfinite(mass)).sum())} non-finite entries (NaN or inf)")
    if not mass.max() > 0:
        raise ValueError(f"mass has no positive entry (largest {mass.max():.3g}): no density to count modes of")
    if not (error >= 0).all():  # NaN fails too; inf (no bound) is allowed: it floors every mode, count nan
        raise ValueError(f"error must be >= 0 per node, got {int((~(error >= 0)).sum())} NaN or negative entries")
    h = spacing(grid)
    m = np.clip(mass, 0, None)
    f = m / h
    floor = max(frac * f.max(), 2 * error.max() / h)
    fine = _peaks(f, floor)
    x = np.linspace(grid[0], grid[1], int(grid[2]))
    if m.max() > COLLAPSED * m.sum():
        return Modes(1.0, (float(x[np.argmax(m)]),), floor, True)
    mc = coarsen(m).numpy() / (2 * h)
    coarse = _peaks(mc, max(frac * mc.max(), floor))
    # no mode above the floor: the error swamps the density, nothing is resolved
    count = float(len(fine)) if len(coarse) == len(fine) and len(fine) else math.nan
    return Modes(count, tuple(float(x[i]) for i in fine), floor, False)


def _config(quick: bool) -> tuple:
    """((sampler, schedule, weights), ...): the weights bracket each setting's change (DDPM with 20 steps is slow
    to resolve above w = 4: its kernels are narrow)."""
    if quick:
        return (("ddpm", "standard:50", (14.0, 16.0)), ("ddpm", "standard:200", (0.0, 20.0)),
                ("ddim", "standard:50", (0.0, 16.0)))
    return (("ddpm", "standard:20", (0.0, 1.0, 2.0, 3.0, 4.0)),
            ("ddpm", "standard:50", (0.0, 4.0, 8.0, 12.0, 14.0, 15.0, 16.0, 18.0, 20.0)),
            ("ddpm", "standard:100", (0.0, 16.0, 20.0, 25.0, 30.0, 40.0)),
            ("ddpm", "standard:200", (0.0, 12.0, 16.0, 20.0, 30.0, 50.0)),
            ("ddim", "standard:50", (0.0, 4.0, 8.0, 16.0, 30.0)))


def _cell(sampler: str, schedule: str, w: float) -> OutputCell:
    method = Method("unguided", 0.0) if w == 0 else Method("cfg", w)
    # checked=(): the masses to tol (the contract); the distances to the tilted target are not what is published
    return OutputCell(LAW, schedule, method, sampler=sampler, grid=GRID, keep_mass=True, checked=())


def cells(quick: bool) -> list:
    return [_cell(s, sch, w) for s, sch, ws in _config(quick) for w in ws]


class SplitRow(NamedTuple):
    sampler: str
    schedule: str
    w: float
    modes: Modes
    x: np.ndarray  # [n] the output's grid
    density: np.ndarray  # [n]


class Split(NamedTuple):
    rows: tuple[SplitRow, ...]


def first_change(ws, counts) -> tuple[float, float]:
    """(w before, w after) the first change of the mode count from its value at the smallest weight (nan, nan if
    it never changes; a nan count ends the search there)."""
    for a, b, ca, cb in zip(ws, ws[1:], counts, counts[1:]):
        if math.isnan(cb):
            break
        if cb != counts[0]:
            return float(a), float(b)
    return math.nan, math.nan


def conclude(quick: bool, results) -> Outcome:
    it = iter(results)
    rows, numbers, splits, collapse, top = [], [], {}, {}, {}
    for sampler, sched, ws in _config(quick):
        counts = []
        tag = f"{sampler} {sched}"
        for w in ws:
            r = next(it)
            modes = count_modes(r.mass, r.mass_error, r.grid)
            x = np.linspace(*r.grid[:2], int(r.grid[2]))
            rows.append(SplitRow(sampler, sched, w, modes, x, np.clip(r.mass, 0, None) / spacing(r.grid)))
            counts.append(modes.count)
            target = count_modes(r.target_mass, r.target_error, r.grid)
            numbers += [(f"{tag} w={w:g}: modes of the output", modes.count),
                        (f"{tag} w={w:g}: modes of the tilted target p_c^(1+w) / p_u^w", target.count)]
        a, b = first_change(ws, counts)
        splits[tag] = (a, b, counts[ws.index(b)] if math.isfinite(b) else math.nan)
        collapse[tag] = [w for w, row in zip(ws, rows[-len(ws):]) if row.modes.collapsed]
        top[tag] = ws[-1]
        numbers += [(f"{tag}: count changes above w", a), (f"{tag}: count changes by w", b)]
    data = Split(tuple(rows))
    split_at = {t: v for t, v in splits.items() if math.isfinite(v[1])}
    never = [t for t in splits if t not in split_at]
    desc = "; ".join(f"{t}: {v[2]:g} modes from w = {v[1]:g} (1 at w = {v[0]:g})" for t, v in split_at.items())
    kept = "; ".join(f"{t}: one mode up to w = {top[t]:g}" + (f", a point-like law from w = {min(collapse[t]):g}"
                                                               if collapse[t] else "") for t in never)
    key = "; ".join(p for p in (desc, kept) if p)
    numbers.append(("settings where the output splits", len(split_at)))
    if split_at and not never:
        verdict = "holds"
    elif split_at:
        verdict = (f"holds only when the sampler is DDPM with few steps ({desc}); with more steps or DDIM the "
                   f"component does not split ({kept}): the split is the coarse sampler's, not guidance's")
    else:
        verdict = "fails"
    return Outcome(CLAIM.result(verdict, key, numbers), data)


CLAIM = Claim(
    id="split-component", source="2403.01639", title="Strong guidance splits a component",
    statement=("In a three-component mixture, large guidance weights can split one component of the guided output in "
               "two (section 6, 'a curious example of strong guidance'; section title read, setting from a summary)."),
    provenance="memory",
    experiment=("CFG on N(0, 0.5^2) against the equal mixture N(-1.5, 0.3^2), N(0, 0.5^2), N(1.5, 0.3^2), w = 0..50; "
                "exact DDPM (20, 50, 100, 200 steps of the respaced DDPM schedule) and DDIM (50) output laws; modes "
                f"whose prominence exceeds {FRAC:.0%} of the peak density and twice its error, resolved at twice the "
                "spacing (quick: DDPM 50 steps at w = 14, 16, DDPM 200 and DDIM 50 steps at 0, 20 / 16)."),
    figure="claims_split_component", cells=cells, conclude=conclude)
