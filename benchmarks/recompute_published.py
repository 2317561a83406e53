"""Independent recomputations of a sample of the numbers a sweep cache publishes (issue 19, "Done when").

Given a sweep cache folder (:class:`evaluation.sweep.Cache`), the script draws a seeded random sample of its cells
(stratified by cell kind and dimension: ``--per-kind`` cells of every stratum), keeps the numbers each cell stores
with an error (a field ``x`` beside ``x_error``, or ``region_mass`` beside ``region_error``; node masses excluded),
recomputes them by an independent route and reports agreement: ``|published - reference| <= published error +
reference error``. A number that fails is a finding: it is printed as ``NO`` and counted, never hidden.

Routes:

- **refined**: the same cell with its tolerance 10 times tighter (``dataclasses.replace(cell, tol=tol / 10)``,
  kinds whose configuration has ``tol``; ``None`` is :func:`evaluation.accuracy.default_tol` of the dimension),
  computed by :func:`evaluation.sweep.compute_cell` in a separate process (never written into any cache) within
  ``--budget`` seconds and ``--memory`` GB; a run over budget, out of memory or refusing the tighter tolerance
  (``ValueError``: not converged) is *skipped*, with its reason.
- **monte-carlo**: the output-law cells (claims ``OutputCell`` of the exact model and flows ``LawCell``, both from the
  ``n01`` start): particles run through the same guided sampler of :mod:`sampler` (``Method.build`` on the same
  law and levels, :func:`sampler.sample` from :func:`sampler.vp_prior`, seeded) against the cell's grid law (the
  cell recomputed with ``keep_mass=True`` at its own tolerance unless the cached result keeps its masses):
  1-D mean, variance (:func:`evaluation.accuracy.grid_moments`) and the masses of three intervals
  (:func:`evaluation.accuracy.region_mass`); 2-D means, covariance and the four quadrant masses around the mean;
  plus the cell's published mean (and, for ``OutputCell``, its classifier confidence). The reference error is
  ``K_SE = 4`` standard errors; the particle count is chosen from a pilot run so the standard error is below the
  published error where that fits in ``--mc-seconds``.
- **golden** (findings ``CurvesCell``, ``FieldMapCell``): the ideal-chain golden by Gauss-Hermite (else importance
  sampling) instead of the cell's dense trapezoid quadrature.
- **gauss-legendre** (the field claims ``CharCell``, ``RenyiCell``, ``LinearCell``): each per-level
  ``p_t(x|c)``-weighted mean over the cell's box (the grid's extent; ``LinearCell``: its +-6 sd box) by composite
  Gauss-Legendre, the panels doubled until the last two doublings agree (their larger change is the error), instead
  of the cell's sum over its grid nodes; at the nodes the golden by Gauss-Hermite, REG's Jacobian by central
  differences (Richardson) instead of autograd, the characteristic fixed point by damped Newton (converged at
  its residual's rounding where that is above its tolerance) instead of the rule's secant iteration; CFG's term
  and the moment-matched fields are the same closed forms the cells use. Where that Newton misses part of the
  weight (it stalls at low noise on some mixtures), or the cell published an unconverged mass, ``CharCell``'s gaps
  at that level are skipped with that reason (the two means would be over other points).
  ``LinearCell``'s tail mass from normal tails (``scipy.special.ndtr``); ``RenyiCell``'s identity check against 0
  (the identity is exact, THEORY.md 4). ``CharCell``'s ``unconverged`` (the mass where its own solver failed) has
  no second route and is skipped with that reason.
- **grid nodes, golden by Gauss-Hermite** (claims ``FieldCell``'s ``mean_error`` and ``mean_error_weighted``, means
  over the cell's own grid nodes by definition): the golden at those nodes by Gauss-Hermite; the method's term is
  the cell's own closed form (not independent of its formula, only of its golden).

- **reseeded** (kinds without ``tol`` whose configuration has a ``seed``: Monte Carlo cells, ``InverseCell``): the
  same cell at ``seed + 1``, independent draws of the same estimator, reference error ``K_SE`` times its stored
  standard errors.
- **refined resolution** (flows ``FieldCell``: twice the Gauss-Hermite ``nodes``; flows ``CapCell``: the state grid
  at half the spacing): the same formula at a finer resolution, not independent of it (as route (a)).
- **monte-carlo, guidance rescale in R^d** (claims ``RescaleCell``, whose ``rel`` and ``factor_dev`` are exact
  expectations by reduced-coordinate quadrature, ``inf`` at ``d = 2``): per level up to ``RESCALE_DRAWS`` = 65536
  draws through :func:`evaluation.claims.flawed_schedules.monte_carlo_draws` (``sampler.CFG`` and
  ``GuidanceRescale`` on the ``d``-dimensional mixtures; seeded from ``--seed``, in chunks, fewer when ``--budget``
  ends first); ``rel`` the ratio of the sample means, ``factor_dev`` the sample mean, each agreeing within ``K_SE``
  standard errors plus its published error. At ``d = 2`` and for any infinite published number, the divergence
  test: Hill's tail index of the averaged draws on their top ``TAIL_K`` = 256 within ``K_SE`` standard errors of
  <= 1 (an infinite mean) gives the reference ``inf``, which only an infinite published number agrees with (an
  index above refutes an infinite number).
- **spline recursion** (findings ``CurvesCell``'s ``chain``, the sampler-chain golden): ``log E_t`` as a quintic
  spline on a uniform grid, each step's kernel integral by Gauss-Hermite, the gradient from the spline's derivative
  (:func:`spline_chain`, at two resolutions: their difference is the error), instead of
  :func:`analytic.chain_golden`'s trapezoid sums and tilted-mean gradient; and the curves it stores without an
  error (``cfg``, ``reg``, ``weight``: closed forms, published error 0), :data:`MAX_ELEMENTS` drawn elements of
  each, by autograd of the noised densities' ``log_prob`` (REG's Jacobian by a second derivative) and by scipy's
  normal densities, within a rounding bound.

Everything else is reported as skipped with its reason (``CharCell``'s ``unconverged``: a property of its own
solver). The table goes to ``--out`` (default
``benchmarks/recompute_published.txt``) with a one-line summary at its end (also printed); it is deterministic
given ``--seed`` and the cache, except where a run's time decides a skip.

    python benchmarks/recompute_published.py --cache /tmp/cache_q11 --per-kind 2 --seed 0
    python benchmarks/recompute_published.py --cache CACHE --kinds OutputCell PCCell --out /tmp/part.txt
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing
import random
import sys
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from evaluation.accuracy import (GridLaw, coarsen, default_tol, grid_moments, region_fraction,
                                 region_mass)
from evaluation.sweep import Cache, CacheWarning, CellFailed, cell_key, compute_cell, decode, encode
from sampler import sample, vp_prior

F64 = torch.float64
K_SE = 4.0  # Monte Carlo reference error: this many standard errors
REFINE = 10.0  # the refined route's tolerance is the cell's divided by this
SKIP_FIELDS = ("mass", "target", "target_mass")  # node masses of a law: not numbers the toolkit prints
ERROR_OF = {"region_mass": "region_error"}  # fields whose error is not spelled ``<name>_error``
ONE_D_LAWS = ("dimension:AlongU",)  # kinds without a ``law`` whose ``tol=None`` is default_tol(1) (laws along a line)
MAX_ELEMENTS = 3  # numbers drawn from an array-valued field
DEFAULT_OUT = Path(__file__).with_name("recompute_published.txt")


class Number(NamedTuple):
    name: str
    value: float
    error: float


class Row(NamedTuple):
    kind: str
    cell: str
    number: str
    published: float
    published_error: float
    reference: float  # nan when skipped
    reference_error: float
    route: str
    agree: str  # "yes", "NO" or "skipped: <reason>"


class Entry(NamedTuple):
    key: str
    cell: Any
    result: Any


# --- the cache --------------------------------------------------------------------------------------------------
def read_cache(root: Path) -> tuple[list[Entry], Counter]:
    """Every cell stored under ``root`` that this code reads as current (:meth:`Cache.load`: key, configuration and
    digest checked), and a count of the files left out (``stale``: another code version or an undecodable
    configuration; ``failed``: a cached :class:`CellFailed`). ``ValueError`` for a missing or empty folder."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"--cache {str(root)!r} is not a folder (a sweep cache: evaluation.sweep.Cache)")
    cache = Cache(root)
    files = sorted(p for p in root.glob("*/*/*.json") if p.is_file())
    if not files:
        raise ValueError(f"--cache {str(root)!r} holds no cell results (no <kind>/<xx>/<key>.json files)")
    entries, left = [], Counter()
    for path in files:
        try:  # the configuration, to ask the cache for the cell: Cache.load then checks the whole file
            cell = decode(json.loads(path.read_text())["config"])
            key = cell_key(cell)
        except Exception:  # noqa: BLE001 - an older layout, a kind this code no longer has, a file being written
            left["stale"] += 1
            continue
        if key != path.stem:
            left["stale"] += 1  # stored by another code version
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CacheWarning)
            hit, result = cache.load(cell, key)
        if not hit:
            left["unreadable"] += 1
        elif isinstance(result, CellFailed):
            left["failed"] += 1
        else:
            entries.append(Entry(key, cell, result))
    if not entries:
        raise ValueError(f"--cache {str(root)!r}: none of its {len(files)} files is a current cell result "
                         f"({dict(left)})")
    return entries, left


def kind_name(cell: Any) -> str:
    t = type(cell)
    return f"{t.__module__.removeprefix('evaluation.')}:{t.__qualname__}"


def dimension(cell: Any) -> int | None:
    """The dimension of the cell's law, when it names one (``None`` otherwise)."""
    from evaluation.spec import Law

    law = getattr(cell, "law", None)
    try:
        return (Law.parse(law) if isinstance(law, str) else law).dim
    except Exception:  # noqa: BLE001 - a kind whose ``law`` is spelled otherwise
        return None


def summary(cell: Any, width: int = 70) -> str:
    """The cell's fields that differ from their defaults, short."""
    parts = []
    for f in dataclasses.fields(cell) if dataclasses.is_dataclass(cell) else ():
        v = getattr(cell, f.name)
        if f.default is not dataclasses.MISSING and v == f.default:
            continue
        if f.default_factory is not dataclasses.MISSING and v == f.default_factory():
            continue
        text = str(v) if type(v).__str__ is not object.__str__ and not isinstance(v, (tuple, float)) else repr(v)
        parts.append(text if f.name in ("law", "schedule", "levels", "method") else f"{f.name}={text}")
    out = " ".join(parts)
    return out if len(out) <= width else out[:width - 3] + "..."


# --- published numbers ---------------------------------------------------------------------------------------
def _fields(obj: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return dict(zip(obj._fields, obj))
    return {}


def _elements(value: Any, error: Any) -> list[tuple[str, float, float]]:
    """(index, value, error) of a scalar or an array-valued number with a scalar or matching error."""
    v = np.asarray(value, dtype=float)
    e = np.broadcast_to(np.asarray(error, dtype=float), v.shape) if np.ndim(error) == 0 or \
        np.shape(error) == v.shape else None
    if e is None:
        return []
    if v.ndim == 0:
        return [("", float(v), float(e))]
    return [(str(list(i)) if len(i) > 1 else f"[{i[0]}]", float(v[i]), float(e[i])) for i in np.ndindex(v.shape)]


def published_numbers(result: Any, *, seed: int = 0, prefix: str = "") -> list[Number]:
    """The numbers a cell's result stores with a finite error: each field ``x`` with a field ``x_error`` (nested
    results too; ``region_mass`` with ``region_error``), node masses left out; of an array at most
    :data:`MAX_ELEMENTS` elements, drawn with ``seed``. A result with ``valid`` False has none. An infinite value is
    kept (a claims ``RescaleCell``'s ``rel`` at ``d = 2``; :func:`_agree` never agrees with one), a NaN left out."""
    fields = _fields(result)
    if fields.get("valid", True) is False:
        return []
    out: list[Number] = []
    for name, value in fields.items():
        if _fields(value):
            out += published_numbers(value, seed=seed, prefix=f"{prefix}{name}.")
            continue
        err_name = ERROR_OF.get(name, f"{name}_error")
        if name in SKIP_FIELDS or err_name not in fields or name.endswith("_error") and name[:-6] in fields:
            continue
        try:
            items = _elements(value, fields[err_name])
        except (TypeError, ValueError):
            continue
        items = [(i, v, e) for i, v, e in items if not math.isnan(v) and math.isfinite(e)]  # inf kept (route (h))
        if len(items) > MAX_ELEMENTS:
            pick = sorted(random.Random(f"{seed}:{prefix}{name}").sample(range(len(items)), MAX_ELEMENTS))
            items = [items[j] for j in pick]
        out += [Number(f"{prefix}{name}{i}", v, e) for i, v, e in items]
    return out


def checked_by_the_cell(cell: Any, name: str) -> bool:
    """Whether the cell's accuracy contract brings the number ``name`` within its tolerance: the numbers an
    ``OutputCell`` or a flows ``LawCell`` names in ``checked`` (a LawCell's sliced W1 under DDIM always), every number
    of other kinds. The others are stored with the engines' own error estimate, not the contract's."""
    checked = getattr(cell, "checked", None)
    if checked is None:
        return True
    base = name.removeprefix("distances.").split("[")[0]
    names = set(checked) | ({"region_mass"} if "regions" in checked else set())
    levels = getattr(cell, "levels", None)
    if getattr(levels, "sampler", "") == "ddim":
        names.add("sw1")
    return base in names


# --- sampling --------------------------------------------------------------------------------------------------
def converged_numbers(entry: Entry, *, seed: int = 0) -> tuple[list[Number], int]:
    """The cell's published numbers (:func:`published_numbers`) whose error is within the cell's tolerance (kinds
    with a ``tol``; a cell does not publish a number beyond it as converged), and how many were left out."""
    nums = published_numbers(entry.result, seed=seed)
    tol = effective_tol(entry.cell)
    if tol is None:
        return nums, 0
    kept = [n for n in nums if n.error <= tol]
    return kept, len(nums) - len(kept)


def draw(entries: list[Entry], per_kind: int, seed: int, kinds: tuple[str, ...] = ()) -> list[Entry]:
    """``per_kind`` cells of every (kind, dimension) stratum that publish a converged number, drawn with ``seed``;
    ``kinds``: only kinds whose name (``module:Class`` without ``evaluation.``) contains one of these."""
    strata: dict[tuple, list[Entry]] = defaultdict(list)
    for e in entries:
        if kinds and not any(k in kind_name(e.cell) for k in kinds):
            continue
        if converged_numbers(e, seed=seed)[0]:
            strata[(kind_name(e.cell), dimension(e.cell) or 0)].append(e)
    rng = random.Random(seed)
    chosen = []
    for stratum in sorted(strata):
        cells = sorted(strata[stratum], key=lambda e: e.key)
        chosen += rng.sample(cells, min(per_kind, len(cells)))
    return chosen


# --- running cells apart ---------------------------------------------------------------------------------------
def _child(conn, memory_gb: float) -> None:  # pragma: no cover - runs in the worker process
    import resource
    import threading

    tqdm.set_lock(threading.RLock())  # not tqdm's process lock: a worker ended past its budget would leak it
    torch.set_num_threads(1)
    if memory_gb > 0:
        limit = int(memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    while True:
        cell = conn.recv()
        if cell is None:
            return
        try:
            conn.send(("ok", encode(compute_cell(cell))))
        except MemoryError:
            conn.send(("skip", f"over the memory budget ({memory_gb:g} GB)"))
        except RuntimeError as err:  # torch's allocator: "[enforce fail at alloc_cpu.cpp] ... DefaultCPUAllocator"
            text = str(err)
            conn.send(("skip", f"over the memory budget ({memory_gb:g} GB)" if "alloc" in text.lower()
                       else f"RuntimeError: {text[:160]}"))
        except ValueError as err:
            conn.send(("skip", f"refused: {str(err)[:160]}"))
        except Exception as err:  # noqa: BLE001 - reported, not raised: one cell's failure is a finding
            conn.send(("skip", f"{type(err).__name__}: {str(err)[:160]}"))


class Runner:
    """Computes cells (:func:`evaluation.sweep.compute_cell`, no cache) in one worker process of this script, each
    within ``budget`` seconds (the worker is ended and started again past it) and ``memory_gb`` of address space;
    ``isolate=False`` computes them here, without limits (tests). ``run`` returns ``(result, "")`` or ``(None,
    reason)``."""

    def __init__(self, budget: float, memory_gb: float, isolate: bool = True):
        self.budget, self.memory_gb, self.isolate = budget, memory_gb, isolate
        self.proc = self.conn = None

    def run(self, cell: Any) -> tuple[Any, str]:
        if not self.isolate:
            try:
                return compute_cell(cell), ""
            except ValueError as err:
                return None, f"refused: {str(err)[:160]}"
        if self.proc is None:
            ctx = multiprocessing.get_context("spawn")
            self.conn, theirs = ctx.Pipe()
            self.proc = ctx.Process(target=_child, args=(theirs, self.memory_gb), daemon=True)
            self.proc.start()
        start = time.perf_counter()
        self.conn.send(cell)
        if not self.conn.poll(self.budget):
            self.close(kill=True)
            return None, f"over the budget ({self.budget:g} s)"
        try:
            status, payload = self.conn.recv()
        except EOFError:  # the worker died (memory)
            self.close(kill=True)
            return None, f"the worker ended after {time.perf_counter() - start:.0f} s (memory?)"
        return (decode(payload), "") if status == "ok" else (None, payload)

    def close(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()  # our own worker, by its process
        else:
            self.conn.send(None)
        self.proc.join(10)
        self.proc = self.conn = None


# --- route (a): refined -------------------------------------------------------------------------------------------
def effective_tol(cell: Any) -> float | None:
    """The cell's tolerance (``None`` when its configuration has no ``tol``, or names none and has no 1-D/2-D law)."""
    names = ({f.name for f in dataclasses.fields(cell)} if dataclasses.is_dataclass(cell)
             else set(getattr(cell, "_fields", ())))
    if "tol" not in names:
        return None
    tol = getattr(cell, "tol", None)
    if tol is not None:
        return float(tol)
    d = 1 if kind_name(cell) in ONE_D_LAWS else dimension(cell)
    return default_tol(d) if d in (1, 2) else None


def refined_rows(entry: Entry, nums: list[Number], runner: Runner, seed: int) -> list[Row]:
    """Route (a): the cell at ``tol / REFINE``; when that run is the same computation (every number already within
    it), once more at a tenth of the smallest error of the numbers its contract checks (at most ``REFINE**2`` times
    tighter than the cell's tolerance), so the route does refine."""
    cell = entry.cell
    kind, what = kind_name(cell), summary(cell)
    tol = effective_tol(cell)
    if tol is None:
        why = NO_ROUTE.get(kind, "no tol in the configuration")
        return [Row(kind, what, n.name, n.value, n.error, math.nan, math.nan, "-",
                    f"skipped: no second route here ({why})") for n in nums]
    tighter = [tol / REFINE]
    contract = [n.error for n in nums if checked_by_the_cell(cell, n.name)] or [n.error for n in nums]
    if min(contract) / REFINE < tighter[0]:
        tighter.append(max(min(contract) / REFINE, tol / REFINE**2))
    for t in tighter:
        route = f"refined tol {t:.2g}"
        result, why = runner.run(dataclasses.replace(cell, tol=float(t)))
        if result is None:
            return [Row(kind, what, n.name, n.value, n.error, math.nan, math.nan, route, f"skipped: {why}")
                    for n in nums]
        ref = {n.name: n for n in published_numbers(result, seed=seed)}
        if not all(ref.get(n.name) == n for n in nums):
            break
    else:
        return [Row(kind, what, n.name, n.value, n.error, n.value, n.error, route,
                    "skipped: refined run unchanged (the same computation)") for n in nums]
    return _against(kind, what, nums, ref, route, "refined")


def _against(kind: str, what: str, nums, ref: dict, route: str, run: str, scale: float = 1.0) -> list:
    """One row per published number against the same-named number of another run (``ref``: name -> number), whose
    error is taken ``scale`` times; a number that run does not publish is skipped, saying so."""
    rows = []
    for n in nums:
        r = ref.get(n.name)
        if r is None:
            rows.append(Row(kind, what, n.name, n.value, n.error, math.nan, math.nan, route,
                            f"skipped: not published by the {run} run"))
        else:
            rows.append(Row(kind, what, n.name, n.value, n.error, r.value, scale * r.error, route,
                            _agree(n.value, n.error, r.value, scale * r.error)))
    return rows


def _agree(v: float, e: float, r: float, re: float) -> str:
    """``|v - r| <= e + re``; a NaN, or an infinite number or error on either side, is "NO" (an infinite published
    number is agreed only by a divergence test, route (h); ``inf - inf`` is NaN and ``inf <= inf`` is no agreement)."""
    if not all(math.isfinite(x) for x in (v, e, r, re)):
        return "NO"
    return "yes" if abs(v - r) <= e + re else "NO"


# --- route (b): Monte Carlo through the sampler core ---------------------------------------------------------------
class Setup(NamedTuple):
    """What the Monte Carlo route needs of an output-law cell."""

    build: Any  # () -> a fresh guided denoiser
    sigmas: torch.Tensor
    sampler: str
    d: int
    parts: Any  # evaluation.spec.LawParts
    reward: Any  # the method's reward (its tilted target is what the distances compare with)


def _mc_setup(cell: Any) -> Setup | str:
    """The :class:`Setup` of an output-law cell, or the reason it has no Monte Carlo route."""
    from evaluation.claims.cells import OutputCell
    from evaluation.flows import LawCell
    from evaluation.spec import Law, Schedule

    if isinstance(cell, OutputCell):
        if cell.model != "exact" or cell.start != "n01":
            return f"model {cell.model}, start {cell.start}: no sampled start here"
        law, levels, sampler = Law.parse(cell.law), Schedule.parse(cell.schedule), cell.sampler
    elif isinstance(cell, LawCell):
        if cell.levels.start != "n01":
            return f"start {cell.levels.start}: no sampled start here"
        law, levels, sampler = cell.law, cell.levels, cell.levels.sampler
    else:
        return "no sampler route for this kind"
    parts = law.build()
    return Setup(lambda: cell.method.build(parts, levels).guided, levels.sigmas(), sampler, parts.dim, parts,
                 cell.method.reward(parts))


def _grid_law(entry: Entry, runner: Runner) -> tuple[GridLaw | None, str]:
    """The cell's output law on its grid with its error: its cached masses, or the cell recomputed with
    ``keep_mass=True``. A flows ``LawResult`` keeps no per-node error: its law's summed error is taken as twice its
    TV's error (the TV's error holds the masses' summed error, halved), and the law is used only when that TV is
    converged (error within the cell's tolerance)."""
    from evaluation.claims.cells import OutputLaw

    cell, res = entry.cell, entry.result
    if isinstance(res, OutputLaw):
        if not res.mass.size:
            res, why = runner.run(dataclasses.replace(cell, keep_mass=True))
            if res is None:
                return None, f"{why} (the cell's law, keep_mass)"
        return res.law_of(), ""
    tol, tv_error = effective_tol(cell), res.distances.tv_error
    if not tv_error <= tol:
        return None, f"its law is not converged (TV error {tv_error:.2g} > tol {tol:g})"
    if not res.mass.size:
        res, why = runner.run(dataclasses.replace(cell, keep_mass=True))
        if res is None:
            return None, f"{why} (the cell's law, keep_mass)"
    mass = torch.as_tensor(res.mass, dtype=F64)  # restricted to the cell's own grid
    lost = max(1.0 - mass.sum().item(), 0.0) + 2 * res.distances.tv_error
    return GridLaw(tuple(cell.grid), mass, torch.zeros_like(mass), lost, 0), ""


def _w1_to_target(x: torch.Tensor, setup: Setup, lo: float, hi: float, points: int = 40_001) -> tuple[float, float]:
    """W1 of 1-D particles ``x`` [N, 1] to the tilted target (its density ``p(x|y) R_0(x)`` by quadrature on ``points``
    nodes of [lo, hi] widened to the particles), with ``K_SE`` times the standard size of the particles' own W1 to
    their law, ``integral sqrt(F (1 - F) / N)``, plus the spacing, as its error."""
    v = x[:, 0].sort().values
    lo, hi = min(lo, v[0].item()) - 1.0, max(hi, v[-1].item()) + 1.0
    y = torch.linspace(lo, hi, points, dtype=F64)
    lf = setup.parts.cond.log_prob(y[:, None]) + setup.reward.log_r0(y[:, None])
    p = torch.exp(lf - lf.max())
    F = torch.cat([torch.zeros(1, dtype=F64), torch.cumsum((p[1:] + p[:-1]) / 2, 0)])
    F = F / F[-1]
    Fn = torch.searchsorted(v, y, right=True).double() / v.numel()
    h = (y[1] - y[0]).item()
    w1 = torch.trapezoid((Fn - F).abs(), y).item()
    spread = torch.trapezoid(torch.sqrt(F * (1 - F) / v.numel()), y).item()
    return w1, K_SE * spread + h


def _moments_2d(law: GridLaw) -> dict[str, tuple[float, float]]:
    """Means, covariance (the hats' h^2/6 taken off the variances) and the quadrant masses around the mean's nearest
    node of a 2-D grid law, each with its error: the change when restricted to twice the spacing, the masses' errors
    (first order: ``sum e |g - value|``; summed, for the quadrants) and the lost mass (at the grid's reach, squared
    for second moments)."""
    ax, ay = law.axes

    def numbers(mass, x, y):
        m = mass.clamp(min=0)
        p = m / m.sum()
        h = (x[1] - x[0]).item()
        mx, my = (p.sum(1) * x).sum().item(), (p.sum(0) * y).sum().item()
        X, Y = x[:, None] - mx, y[None, :] - my
        out = {"mean[0]": mx, "mean[1]": my, "cov[0,0]": (p * X**2).sum().item() - h**2 / 6,
               "cov[0,1]": (p * X * Y).sum().item(), "cov[1,1]": (p * Y**2).sum().item() - h**2 / 6}
        return out, p

    fine, p = numbers(law.mass, ax, ay)
    coarse, _ = numbers(coarsen(law.mass), ax[0::2], ay[0::2])
    cx = ax[(ax - fine["mean[0]"]).abs().argmin()].item()
    cy = ay[(ay - fine["mean[1]"]).abs().argmin()].item()
    reach = max(ax.abs().max().item(), ay.abs().max().item())
    err = law.error.sum().item() + law.lost
    X, Y = ax[:, None] - fine["mean[0]"], ay[None, :] - fine["mean[1]"]
    # each number's integrand less the number (a mean's is X itself): its first-order sensitivity to the masses
    centred = {"mean[0]": X.expand_as(p), "mean[1]": Y.expand_as(p), "cov[0,0]": X**2 - fine["cov[0,0]"],
               "cov[0,1]": X * Y - fine["cov[0,1]"], "cov[1,1]": Y**2 - fine["cov[1,1]"]}
    out = {}
    for k in fine:  # first-order sensitivity to the masses' errors, the lost mass at the grid's reach
        sens = (law.error * centred[k].abs()).sum().item()
        lost = law.lost * (2 * reach if k.startswith("mean") else 4 * reach**2)
        out[k] = (fine[k], abs(fine[k] - coarse[k]) + sens + lost)
    for name, (xlo, xhi), (ylo, yhi) in (("P(x<,y<)", (-math.inf, cx), (-math.inf, cy)),
                                         ("P(x>,y<)", (cx, math.inf), (-math.inf, cy)),
                                         ("P(x<,y>)", (-math.inf, cx), (cy, math.inf)),
                                         ("P(x>,y>)", (cx, math.inf), (cy, math.inf))):
        def q(mass, x, y):
            m = mass.clamp(min=0)
            return (m * region_fraction(x, xlo, xhi)[:, None] * region_fraction(y, ylo, yhi)[None, :]).sum().item() \
                / m.sum().item()
        v, v2 = q(law.mass, ax, ay), q(coarsen(law.mass), ax[0::2], ay[0::2])
        out[f"{name} at ({cx:.3g},{cy:.3g})"] = (v, abs(v - v2) + err)
    return out


def _grid_numbers(law: GridLaw) -> dict[str, tuple[float, float]]:
    if law.mass.ndim == 2:
        return _moments_2d(law)
    mom = grid_moments(law)
    mean, sd = mom["mean"].value, math.sqrt(max(mom["var"].value, 0.0))
    out = {"mean": tuple(mom["mean"]), "var": tuple(mom["var"])}
    ends = [round(mean - sd, 2), round(mean + sd, 2)]
    for lo, hi in ((-math.inf, ends[0]), (ends[0], ends[1]), (ends[1], math.inf)):
        if lo < hi:
            out[f"P[{lo:g},{hi:g}]"] = tuple(region_mass(law, lo, hi))
    return out


def _sample_numbers(x: torch.Tensor, names) -> dict[str, tuple[float, float]]:
    """The same numbers of particles ``x`` [N, d], each with its standard error."""
    n = x.shape[0]
    out = {}
    if x.shape[1] == 1:
        v = x[:, 0]
        mean, var = v.mean().item(), v.var().item()
        out["mean"] = (mean, math.sqrt(var / n))
        out["var"] = (var, math.sqrt(max(((v - mean) ** 4).mean().item() - var**2, 0.0) / n))
        for name in names:
            if name.startswith("P["):
                lo, hi = (float(t) for t in name[2:-1].split(","))
                p = ((v >= lo) & (v <= hi)).double().mean().item()
                out[name] = (p, math.sqrt(max(p * (1 - p), 1.0 / n) / n))
        return out
    mx, my = x[:, 0].mean().item(), x[:, 1].mean().item()
    X, Y = x[:, 0] - mx, x[:, 1] - my
    for k, f in (("mean[0]", x[:, 0]), ("mean[1]", x[:, 1]), ("cov[0,0]", X * X), ("cov[0,1]", X * Y),
                 ("cov[1,1]", Y * Y)):
        out[k] = (f.mean().item(), f.std().item() / math.sqrt(n))
    for name in names:
        if name.startswith("P(x"):
            at = name[name.index("at (") + 4:-1].split(",")
            cx, cy = float(at[0]), float(at[1])
            sx = (x[:, 0] < cx) if name[3] == "<" else (x[:, 0] > cx)
            sy = (x[:, 1] < cy) if name[6] == "<" else (x[:, 1] > cy)
            p = (sx & sy).double().mean().item()
            out[name] = (p, math.sqrt(max(p * (1 - p), 1.0 / n) / n))
    return out


def run_particles(setup: Setup, n: int, seed: int) -> torch.Tensor:
    """``n`` output particles of the cell's guided sampler from ``N(0, I)`` in VP coordinates, seeded, in chunks (a
    fresh guided denoiser per chunk: stateful rules start at rest)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        x0 = vp_prior(torch.randn(m, setup.d, generator=gen, dtype=F64), setup.sigmas[0].item())
        out.append(sample(setup.sampler, setup.build(), x0, setup.sigmas, generator=gen))
    return torch.cat(out)


def monte_carlo_rows(entry: Entry, nums: list[Number], runner: Runner, seed: int, seconds: float,
                     max_n: int = 2_000_000) -> list[Row]:
    """Route (b) (module docstring); no rows for a cell without it."""
    cell = entry.cell
    kind, what = kind_name(cell), summary(cell)
    setup = _mc_setup(cell)
    if isinstance(setup, str):
        return []
    law, why = _grid_law(entry, runner)
    grid = _grid_numbers(law) if law is not None else {}
    pub = {n.name: n for n in nums}
    if setup.d == 1 and "mean[0]" in pub:  # a 1-D cell's published mean is a 1-tuple
        pub["mean"] = pub.pop("mean[0]")
    direct = [k for k in ("mean", "mean[0]", "mean[1]") if k in pub]  # published numbers the particles estimate
    w1 = [k for k in ("w1", "distances.sw1") if k in pub and setup.d == 1]
    grid = {k: v for k, v in grid.items() if k not in direct}
    rows = [] if law is not None else [Row(kind, what, "law moments", math.nan, math.nan, math.nan, math.nan,
                                           "monte-carlo", f"skipped: {why}")]
    if not (grid or direct or w1 or "confidence" in pub):
        return rows
    precision = min([e for _, e in grid.values()] + [pub[k].error for k in direct + w1] or [1e-3])
    t0 = time.perf_counter()
    pilot = run_particles(setup, 20_000, seed)
    rate = 20_000 / max(time.perf_counter() - t0, 1e-3)
    need = max((pilot.std(0).max().item() / max(precision, 1e-6)) ** 2, 20_000)
    x = pilot if min(need, rate * seconds) <= 20_000 else run_particles(setup, int(min(need, rate * seconds, max_n)),
                                                                        seed + 1)
    route = f"monte-carlo N={x.shape[0]}"
    mc = _sample_numbers(x, grid)
    for name, (v, e) in grid.items():
        r, se = mc[name]
        rows.append(Row(kind, what, f"{name} (grid law)", v, e, r, K_SE * se, route, _agree(v, e, r, K_SE * se)))
    for name in direct:
        (r, se), n = mc[name], pub[name]
        rows.append(Row(kind, what, name, n.value, n.error, r, K_SE * se, route,
                        _agree(n.value, n.error, r, K_SE * se)))
    for name in w1:
        n = pub[name]
        r, re = _w1_to_target(x, setup, cell.grid[0], cell.grid[1])
        rows.append(Row(kind, what, name, n.value, n.error, r, re, route + " vs target quadrature",
                        _agree(n.value, n.error, r, re)))
    if "confidence" in pub:
        parts = setup.parts
        logs = torch.stack([math.log(float(p)) + c.log_prob(x) for p, c in zip(parts.priors, parts.classes)])
        conf = torch.softmax(logs, 0)[parts.y]
        r, se = conf.mean().item(), conf.std().item() / math.sqrt(x.shape[0])
        c = pub["confidence"]
        rows.append(Row(kind, what, "confidence", c.value, c.error, r, K_SE * se, route,
                        _agree(c.value, c.error, r, K_SE * se)))
    return rows


# --- route (c): the ideal-chain golden by another quadrature ------------------------------------------------------
GOLDEN_KINDS = ("findings:CurvesCell", "findings:FieldMapCell")


def golden_rows(entry: Entry, nums: list[Number]) -> tuple[list[Row], list[Number]]:
    """The findings cells' ideal-chain golden (dense trapezoid quadrature, :func:`analytic.guidance_fields_on_grid`)
    at the same point and level by Gauss-Hermite (:func:`analytic.optimal_guidance`, ``method="gh"``, the tightest of
    1e-10, 1e-7, 1e-5 it meets), else by importance sampling (``method="is"``, ``K_SE`` standard errors). Returns the
    rows and the numbers this route does not cover."""
    from analytic import optimal_guidance
    from evaluation.spec import Law, Method

    cell, res = entry.cell, entry.result
    kind, what = kind_name(cell), summary(cell)
    if kind not in GOLDEN_KINDS:
        return [], nums
    parts = Law.parse(cell.law).build()
    reward = Method("cfg", w=cell.w).reward(parts)
    rows, rest = [], []
    for n in nums:
        if not n.name.startswith("golden["):
            rest.append(n)
            continue
        idx = [int(t) for t in n.name[len("golden["):-1].split(",")]
        if kind == "findings:CurvesCell":
            x = torch.linspace(-1, 2, cell.points, dtype=F64)[idx[1]].reshape(1, 1)
            abar, comp = float(res.abar[idx[0]]), 0
        else:
            axis = torch.as_tensor(res.axis, dtype=F64)
            x = torch.stack([axis[idx[0]], axis[idx[1]]])[None]
            abar, comp = float(cell.abar), idx[2]
        ref = None
        for tol in (1e-10, 1e-7, 1e-5):
            try:
                o = optimal_guidance(parts.cond, reward, x, abar, method="gh", tol=tol)
            except RuntimeError:  # ToleranceNotMet: Gauss-Hermite converges only algebraically for ratio rewards
                continue
            ref = (o.golden[0, comp].item(), o.golden_error[0, comp].item(), f"gauss-hermite tol {tol:g}")
            break
        if ref is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                o = optimal_guidance(parts.cond, reward, x, abar, method="is", tol=1e-3,
                                     generator=torch.Generator().manual_seed(0))
            ref = (o.golden[0, comp].item(), K_SE * o.golden_error[0, comp].item(), "importance sampling")
        rows.append(Row(kind, what, n.name, n.value, n.error, ref[0], ref[1], ref[2],
                        _agree(n.value, n.error, ref[0], ref[1])))
    return rows, rest


# --- route (d): the field claims' p_t-weighted means by another quadrature ------------------------------------------
FIELD_KINDS = ("claims.characteristic:CharCell", "claims.cfgig:RenyiCell", "claims.linear_cfg:LinearCell")
GL_ORDER = {1: 8, 2: 4}  # Gauss-Legendre nodes per panel and axis
# the panel doubling stops here: closed-form integrands (LinearCell), and those with a Gauss-Hermite golden (which
# costs ~5 ms a point in 2-D)
MAX_NODES = {"closed": {1: 16384, 2: 65536}, "golden": {1: 8192, 2: 1024}}
ROUNDING = 64 * np.finfo(float).eps  # relative rounding of the route's sums, added to its error
NEWTON_TOL = 1e-13  # RMS residual of the characteristic fixed point by Newton (the cell's secant: 1e-10)
ROUNDING_D = 16  # the residual's rounding floor, in eps per unit of |y| (:func:`_residual_rounding`)
ROUTE_MISS = 1e-15  # p-mass of the route's unconverged nodes that leaves a mean unchanged within ROUNDING


def _panel_rule(box: list[tuple[float, float]], panels: int, order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite Gauss-Legendre nodes [N, d] and weights [N] on the box ``[(lo, hi)] * d``, ``panels`` per axis."""
    z, wz = np.polynomial.legendre.leggauss(order)
    axes, weights = [], []
    for lo, hi in box:
        edges = np.linspace(lo, hi, panels + 1)
        half = (edges[1:] - edges[:-1])[:, None] / 2
        axes.append(torch.as_tensor(((edges[:-1] + edges[1:])[:, None] / 2 + half * z).ravel(), dtype=F64))
        weights.append(torch.as_tensor((half * wz).ravel(), dtype=F64))
    if len(box) == 1:
        return axes[0][:, None], weights[0]
    X = torch.cartesian_prod(*axes)
    return X, torch.cartesian_prod(*weights).prod(1)


class Integrand(NamedTuple):
    """One published mean at one level: ``sum W p f / sum W p`` with ``p = exp(log_p)`` (``-inf``: left out)."""

    log_p: torch.Tensor  # [N]
    f: torch.Tensor  # [N]
    f_error: torch.Tensor  # [N] the error of f at each node (its own route's estimate)


def _panel_means(integrands, box, d: int, target: float, deadline: float, max_nodes: int):
    """Each integrand's weighted mean (:class:`Integrand`; ``integrands(X) -> {name: Integrand}``) on the box by
    composite Gauss-Legendre, the panels doubled until the last two doublings each change every mean by at most
    ``target`` (or until ``max_nodes`` or the ``deadline``; ``TimeoutError`` past it before three rules); each mean
    with its error: the larger of its last two changes (|f| has kinks, where the rule's convergence is not monotone)
    plus the p-weighted mean of ``f_error``. Returns ``({name: (value, error)}, nodes)``."""
    order, panels, history = GL_ORDER[d], 4 if d == 1 else 2, []
    while True:
        if time.perf_counter() > deadline:  # before three rules: no error estimate
            raise TimeoutError(f"over the budget ({len(history)} rules of 3 done)")
        X, W = _panel_rule(box, panels, order)
        now = {}
        for name, it in integrands(X).items():
            lw = it.log_p + W.log()
            p = torch.softmax(lw, 0) if bool(torch.isfinite(lw).any()) else torch.full_like(W, math.nan)
            now[name] = ((p * it.f).sum().item(), (p * it.f_error).sum().item())
        history.append(now)
        if len(history) >= 3:
            change = {k: max(abs(now[k][0] - history[-2][k][0]), abs(history[-2][k][0] - history[-3][k][0]))
                      for k in now}
            if max(change.values()) <= target or 2**d * X.shape[0] > max_nodes or time.perf_counter() > deadline:
                return {k: (v, change[k] + e) for k, (v, e) in now.items()}, X.shape[0]
        panels *= 2


def _golden_at(cond, reward, X: torch.Tensor, a: float, tol: float) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The ideal-chain golden at points ``X`` by Gauss-Hermite (:func:`analytic.optimal_guidance`, ``method="gh"``),
    ``tol``, else 100 ``tol``; ``RuntimeError`` past them."""
    from analytic import optimal_guidance

    for t in (tol, 100 * tol):  # each failed attempt costs a whole doubling of its nodes
        try:
            o = optimal_guidance(cond, reward, X, a, method="gh", tol=t)
        except RuntimeError:  # ToleranceNotMet
            continue
        return o.golden, o.golden_error, f"gauss-hermite tol {t:.0e}"
    raise RuntimeError(f"Gauss-Hermite golden does not meet {100 * tol:.0e} at abar = {a:.4g}")


def _fd_jacobian(fn, X: torch.Tensor, h: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``J[n, i, j] = d fn_i / d x_j`` [N, d, d] by central differences (Richardson from steps ``h`` and ``h / 2``),
    with the change from the ``h / 2`` differences as its error."""
    d = X.shape[1]

    def central(step):
        cols = []
        for j in range(d):
            e = torch.zeros(d, dtype=F64)
            e[j] = step
            cols.append((fn(X + e) - fn(X - e)) / (2 * step))
        return torch.stack(cols, 2)

    j1, j2 = central(h), central(h / 2)
    j4 = (4 * j2 - j1) / 3
    return j4, (j4 - j2).abs()


def _newton_characteristic(parts, w: float, X: torch.Tensor, a: float
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Characteristic guidance's term in eps units (as :func:`evaluation.claims.characteristic.characteristic_term`)
    at VP points ``X``, its fixed point ``D_u(x + (1 + w) Delta) = D_c(x + w Delta)`` solved by damped Newton
    (Jacobians by autograd, from ``Delta = 0``), not the rule's secant iteration. A point has converged when its RMS
    residual is at most :data:`NEWTON_TOL` or, where that is below what the residual can resolve, its rounding
    (:func:`_residual_rounding`: at high noise ``Delta`` reaches ~1e3-1e4 and ``D = y + sigma^2 score(y)`` cancels
    to ~eps |y|). The term's error at each point is its change under one more Newton step. Returns (term [N, d],
    term error [N, d], converged [N]); the term and its error are nan where the fixed point was not reached (the
    caller must say so, :func:`field_rows`)."""
    s = math.sqrt((1 - a) / a)
    x = X / math.sqrt(a)
    dc, du = parts.cond.denoise, parts.uncond.denoise

    def g(delta):
        return du(x + (1 + w) * delta, s) - dc(x + w * delta, s)

    def jac(delta):
        return torch.func.jacrev(lambda z: g(z).sum(0))(delta).permute(1, 0, 2)  # rows independent: [N, d, d]

    def rms(v):
        return v.pow(2).mean(1).sqrt()

    def tol(delta):
        return _residual_rounding(x, w, delta).clamp(min=NEWTON_TOL)

    delta = torch.zeros_like(x)
    r = g(delta)
    for _ in range(100):
        res = rms(r)
        active = res > tol(delta)
        if not bool(active.any()):
            break
        step = torch.linalg.solve(jac(delta), -r[:, :, None])[:, :, 0]
        lam = torch.ones(x.shape[0], dtype=F64)
        for _ in range(30):  # halve each point's step until its residual falls
            trial = delta + lam[:, None] * step
            rt = g(trial)
            worse = rms(rt) > res
            if not bool(worse.any()):
                break
            lam = torch.where(worse, lam / 2, lam)
        moved = active & ~worse  # a point whose residual did not fall in 30 halvings keeps its Delta
        if not bool(moved.any()):
            break
        delta = torch.where(moved[:, None], trial, delta)
        r = g(delta)
    ok = rms(r) <= tol(delta)
    term = (dc(x, s) - dc(x + w * delta, s)) / s
    nxt = delta + torch.linalg.solve(jac(delta), -r[:, :, None])[:, :, 0]
    error = (term - (dc(x, s) - dc(x + w * nxt, s)) / s).abs()
    return torch.where(ok[:, None], term, math.nan), torch.where(ok[:, None], error, math.nan), ok


def _residual_rounding(x: torch.Tensor, w: float, delta: torch.Tensor) -> torch.Tensor:
    """[N] the RMS rounding of the fixed point's residual ``D_u(y_u) - D_c(y_c)`` at ``y_u = x + (1 + w) Delta``,
    ``y_c = x + w Delta``: each ``D(y) = y + sigma^2 score(y)`` (Tweedie) is rounded to about ``eps |y|`` (its two
    terms cancel), :data:`ROUNDING_D` eps per unit of ``|y_u| + |y_c|``."""
    y = (x + (1 + w) * delta).abs() + (x + w * delta).abs()
    return ROUNDING_D * np.finfo(float).eps * y.pow(2).mean(1).sqrt()


def _level_of(name: str) -> tuple[str, int | None]:
    """``"rel[446]"`` -> ``("rel", 446)``; a scalar's index is ``None``."""
    if "[" not in name:
        return name, None
    base, idx = name[:-1].split("[")
    return base, int(idx)


def _field_setup(cell: Any):
    """(law parts, reward, the levels' abar [T] in the cell's order) of a CharCell or RenyiCell (its
    :func:`evaluation.claims.cfgig.field_levels`: the schedule respaced to ``levels``)."""
    from evaluation.spec import Law, Method, Schedule

    parts = Law.parse(cell.law).build()
    full = Schedule.parse(cell.schedule).vp
    sched = full.respace(min(cell.levels, full.T))
    return parts, Method("cfg", cell.w).reward(parts), [sched.abar[t].item() for t in range(1, sched.T + 1)]


def _field_integrands(kind: str, cell: Any, parts, reward, a: float, tol: float, note: list):
    """``integrands(X)`` of :func:`_panel_means` for the numbers of a CharCell or RenyiCell at level ``a``."""
    c = math.sqrt(1 - a)

    def integrands(X):
        golden, gerr, how = _golden_at(parts.cond, reward, X, a, tol)
        note[:] = [how]
        ge = gerr.norm(dim=1)
        present = reward.present(X, a).detach()
        J, jerr = _fd_jacobian(lambda z: parts.cond.eps(z, a), X, 1e-3 * c)
        reg = present * (1 - c * J.sum(1))
        reg_err = present.abs() * c * jerr.sum(1)
        log_p = parts.cond.noised(a).log_prob(X)
        zero = torch.zeros_like(ge)
        out = {"cfg_size": Integrand(log_p, present.norm(dim=1), zero)}
        miss = golden - present
        if kind.endswith("RenyiCell"):
            dot = (miss * present).sum(1)
            unsure = (dot.abs() <= ge * present.norm(dim=1)).to(F64)
            out.update(missing=Integrand(log_p, miss.norm(dim=1), ge),
                       reg_gap=Integrand(log_p, (golden - reg).norm(dim=1), ge + reg_err.norm(dim=1)),
                       opposes=Integrand(log_p, (dot < 0).to(F64), unsure))
        else:
            term, term_err, ok = _newton_characteristic(parts, cell.w, X, a)
            log_pk = torch.where(ok, log_p, -math.inf)
            out.update(golden=Integrand(log_p, golden.norm(dim=1), ge),
                       char_gap=Integrand(log_pk, torch.where(ok[:, None], term - golden, 0.0).norm(dim=1),
                                          ge + torch.where(ok, term_err.norm(dim=1), 0.0)),
                       cfg_gap=Integrand(log_pk, miss.norm(dim=1), ge),
                       reg_gap=Integrand(log_pk, (reg - golden).norm(dim=1), ge + reg_err.norm(dim=1)),
                       route_unconverged=Integrand(log_p, (~ok).to(F64), zero))
        return out
    return integrands


def _linear_box(cell: Any, parts, a: float) -> list[tuple[float, float]]:
    from evaluation.claims.linear_cfg import moment_matched

    lc = moment_matched(parts.cond)
    mean = math.sqrt(a) * lc.means[0]
    sd = torch.sqrt(a * torch.diagonal(lc.covs[0]) + 1 - a)
    return [((mean[i] - 6 * sd[i]).item(), (mean[i] + 6 * sd[i]).item()) for i in range(parts.dim)]


def _box_tail(mix, box: list[tuple[float, float]], a: float) -> float:
    """``1 - P(box)`` of the VP-noised mixture at level ``a``, from normal tails (``scipy.special.ndtr``); in 2-D the
    second axis given the first, the first integrated by Gauss-Legendre (256 panels of 8 nodes)."""
    from scipy.special import ndtr

    law = mix.noised(a)
    out = 0.0
    for pi, m, S in zip(law.weights.tolist(), law.means.tolist(), law.covs.tolist()):
        (lo1, hi1) = box[0]
        s1 = math.sqrt(S[0][0])
        outside1 = ndtr((lo1 - m[0]) / s1) + ndtr(-(hi1 - m[0]) / s1)
        if len(box) == 1:
            out += pi * outside1
            continue
        x, wx = _panel_rule([box[0]], 256, 8)
        x = x[:, 0].numpy()
        dens = np.exp(-0.5 * ((x - m[0]) / s1) ** 2) / (s1 * math.sqrt(2 * math.pi))
        mc = m[1] + S[0][1] / S[0][0] * (x - m[0])
        sc = math.sqrt(S[1][1] - S[0][1] ** 2 / S[0][0])
        lo2, hi2 = box[1]
        out += pi * (outside1 + float(np.sum(wx.numpy() * dens * (ndtr((lo2 - mc) / sc) + ndtr(-(hi2 - mc) / sc)))))
    return out


CONVERGED_MEANS = ("char_gap", "cfg_gap", "reg_gap")  # CharCell's means over the points its fixed point reached


def _apart_from_the_cell(route_miss: tuple[float, float] | None, res: Any, i: int) -> str:
    """Why a CharCell's means over converged points (:data:`CONVERGED_MEANS`) at level ``i`` cannot be compared,
    else ``""``: the route's Newton missed p-mass above :data:`ROUTE_MISS` of its nodes, or the cell's solver missed
    some of its grid (its published ``unconverged``); either mean is then over other points than the other's."""
    if route_miss is None:
        return ""
    cell_miss = float(res.unconverged[i])
    if route_miss[0] > ROUTE_MISS:
        return (f"the route's Newton missed part of the weight (p-mass {route_miss[0]:.2g} of its nodes; "
                f"the cell's unconverged mass {cell_miss:.2g})")
    if cell_miss > 0:
        return f"the cell's mean leaves out its unconverged p_t-mass (published {cell_miss:.2g}; the route's: 0)"
    return ""


def field_rows(entry: Entry, nums: list[Number], deadline: float) -> tuple[list[Row], list[Number]]:
    """Route (d) (module docstring): the per-level p_t-weighted means of the field claims (``CharCell``,
    ``RenyiCell``, ``LinearCell``) by composite Gauss-Legendre on the cell's box, the golden by Gauss-Hermite, REG's
    Jacobian by central differences and the characteristic fixed point by Newton; ``LinearCell``'s tail mass from
    normal tails; ``RenyiCell``'s identity check against 0 (the identity is exact). Returns the rows and the numbers
    this route does not cover."""
    from evaluation.claims.cfgig import contract_sigma
    from evaluation.spec import Law, Schedule

    cell, res = entry.cell, entry.result
    kind, what = kind_name(cell), summary(cell)
    if kind not in FIELD_KINDS:
        return [], nums
    rows, rest, by_level = [], [], defaultdict(list)
    for n in nums:
        base, i = _level_of(n.name)
        if base == "unconverged":
            rows.append(Row(kind, what, n.name, n.value, n.error, math.nan, math.nan, "-",
                            "skipped: the mass where the cell's own fixed-point iteration failed (a property of "
                            "that solver, no second route)"))
        elif base == "identity_error":
            rows.append(Row(kind, what, n.name, n.value, n.error, 0.0, 0.0, "closed form: the identity is exact",
                            _agree(n.value, n.error, 0.0, 0.0)))
        elif base == "tail_mass":
            parts = Law.parse(cell.law).build()
            sched = Schedule.parse(cell.schedule).vp
            tails = [_box_tail(parts.cond, _linear_box(cell, parts, a), a)
                     for a in (sched.abar[t].item() for t in range(1, sched.T + 1))]
            rows.append(Row(kind, what, n.name, n.value, n.error, max(tails), 1e-15,
                            "normal tails (max over levels)", _agree(n.value, n.error, max(tails), 1e-15)))
        elif i is None:
            rest.append(n)
        else:
            by_level[i].append((base, n))
    if kind.endswith("LinearCell"):
        parts = Law.parse(cell.law).build()
        from evaluation.claims.linear_cfg import moment_matched

        lc, lu = moment_matched(parts.cond), moment_matched(parts.uncond)
        sched = Schedule.parse(cell.schedule).vp
        abar = [sched.abar[t].item() for t in range(1, sched.T + 1)]
    else:
        parts, reward, abar = _field_setup(cell)
    for i in sorted(by_level):
        a = abar[i]
        todo = by_level[i]
        if abs(contract_sigma(a) - float(res.sigma[i])) > 1e-9 * float(res.sigma[i]):
            rows += [Row(kind, what, n.name, n.value, n.error, math.nan, math.nan, "-",
                         f"skipped: level {i} is not sigma {float(res.sigma[i]):.4g} here") for _, n in todo]
            continue
        if time.perf_counter() > deadline:
            rows += [Row(kind, what, n.name, n.value, n.error, math.nan, math.nan, "gauss-legendre panels",
                         "skipped: over the budget") for _, n in todo]
            continue
        target = max(min(n.error for _, n in todo) / 4, 1e-13)
        note = [""]
        if kind.endswith("LinearCell"):
            box = _linear_box(cell, parts, a)

            def integrands(X, a=a):
                log_p = parts.cond.noised(a).log_prob(X)
                g = parts.cond.eps(X, a) - parts.uncond.eps(X, a)
                g_lin = lc.eps(X, a) - lu.eps(X, a)
                zero = torch.zeros(X.shape[0], dtype=F64)
                return {"size": Integrand(log_p, g.norm(dim=1), zero),
                        "gap": Integrand(log_p, (g - g_lin).norm(dim=1), zero)}
        else:
            box = [(cell.grid[0], cell.grid[1])] * parts.dim
            floor = 1e-10 if parts.dim == 1 else 1e-8  # 2-D Gauss-Hermite: ~10 ms a point at 1e-10
            integrands = _field_integrands(kind, cell, parts, reward, a, min(max(target / 10, floor), 1e-6), note)
        try:
            means, nodes = _panel_means(integrands, box, parts.dim, target, deadline,
                                         MAX_NODES["closed" if kind.endswith("LinearCell") else "golden"][parts.dim])
        except (RuntimeError, TimeoutError) as err:
            rows += [Row(kind, what, n.name, n.value, n.error, math.nan, math.nan, "gauss-legendre panels",
                         f"skipped: {str(err)[:120]}") for _, n in todo]
            continue
        if "gap" in means:  # LinearCell's relative difference: gap / size, its error to first order
            (gv, ge), (sv, se) = means["gap"], means["size"]
            means["rel"] = (gv / sv, gv / sv * (ge / max(gv, 1e-300) + se / sv))
        route = f"gauss-legendre {nodes} nodes" + (f", golden {note[0]}" if note[0] else "")
        apart = _apart_from_the_cell(means.pop("route_unconverged", None), res, i)
        for base, n in todo:
            if apart and base in CONVERGED_MEANS:
                rows.append(Row(kind, what, n.name, n.value, n.error, math.nan, math.nan, route, f"skipped: {apart}"))
                continue
            r, re = means[base]
            re += ROUNDING * max(abs(r), abs(n.value))  # a normalised sum's rounding (e.g. a fraction 1 - 1e-16)
            rows.append(Row(kind, what, n.name, n.value, n.error, r, re, route, _agree(n.value, n.error, r, re)))
    return rows, rest


# --- route (e): claims FieldCell's mean field errors, the golden by Gauss-Hermite -----------------------------------
def claims_field_rows(entry: Entry, nums: list[Number], deadline: float) -> tuple[list[Row], list[Number]]:
    """The claims ``FieldCell``'s ``mean_error`` and ``mean_error_weighted`` (means over its levels of the plain and
    ``p_t``-weighted grid means of ``|golden - method's term|``) on the cell's own grid nodes (the grid is part of
    their definition), the ideal-chain golden by Gauss-Hermite (:func:`_golden_at`) instead of the cell's dense
    trapezoid quadrature; the method's term is the same closed form the cell uses
    (:func:`evaluation.field_errors.guidance_term` of ``Method.build``: not independent of the cell's formula, only
    of its golden). Returns the rows and the numbers this route does not cover."""
    from analytic.quadrature import grid_points
    from evaluation.accuracy import axes_of
    from evaluation.claims.cells import FieldCell
    from evaluation.field_errors import guidance_term
    from evaluation.spec import Law, Schedule

    cell = entry.cell
    if not isinstance(cell, FieldCell):
        return [], nums
    kind, what = kind_name(cell), summary(cell)
    mine = [n for n in nums if n.name in ("mean_error", "mean_error_weighted")]
    if not mine:
        return [], nums
    rest = [n for n in nums if n not in mine]
    law = Law.parse(cell.law).build()
    sub = Schedule.parse(cell.schedule).vp.respace(min(cell.levels, Schedule.parse(cell.schedule).vp.T))
    reward = cell.method.reward(law)
    guided = cell.method.build(law, Schedule.parse(cell.schedule)).guided
    X = grid_points(axes_of(cell.grid, law.cond.dim))
    tol = min(max(min(n.error for n in mine) / 10, 1e-10), 1e-6)
    plain, weighted, how = [], [], ""
    try:
        for t in range(1, sub.T + 1):
            if time.perf_counter() > deadline:
                raise TimeoutError("over the budget")
            a = sub.abar[t].item()
            golden, gerr, how = _golden_at(law.cond, reward, X, a, tol)
            gap = (golden - guidance_term(guided, law.cond.denoise, X, a)).norm(dim=1)
            p = torch.softmax(law.cond.noised(a).log_prob(X), 0)
            ge = gerr.norm(dim=1)
            plain.append((gap.mean().item(), ge.mean().item()))
            weighted.append(((p * gap).sum().item(), (p * ge).sum().item()))
    except (RuntimeError, TimeoutError) as err:
        return [Row(kind, what, n.name, n.value, n.error, math.nan, math.nan, "grid nodes, golden by gauss-hermite",
                    f"skipped: {str(err)[:120]}") for n in mine], rest
    rows = []
    for n in mine:
        vals = weighted if n.name.endswith("weighted") else plain
        r = sum(v for v, _ in vals) / len(vals)
        re = sum(e for _, e in vals) / len(vals) + ROUNDING * abs(r)
        rows.append(Row(kind, what, n.name, n.value, n.error, r, re, f"cell's grid nodes, golden {how}",
                        _agree(n.value, n.error, r, re)))
    return rows, rest


# --- route (f): Monte Carlo cells on independent draws ---------------------------------------------------------------
def reseeded_rows(entry: Entry, nums: list[Number], runner: Runner, seed: int = 0) -> tuple[list[Row], list[Number]]:
    """Kinds without a ``tol`` whose configuration has a ``seed`` (Monte Carlo cells, e.g. ``InverseCell``): the same
    cell at ``seed + 1`` (independent draws; the same estimator, so not independent of the cell's formula, only of
    its sample), computed apart like route (a); its stored errors are standard errors, so the reference error is
    ``K_SE`` times them. Returns the rows and the numbers this route does not cover."""
    cell = entry.cell
    names = {f.name for f in dataclasses.fields(cell)} if dataclasses.is_dataclass(cell) else set()
    if not nums or "tol" in names or "seed" not in names:
        return [], nums
    kind, what = kind_name(cell), summary(cell)
    route = f"reseeded (seed {cell.seed + 1}), {K_SE:g} x its error"
    result, why = runner.run(dataclasses.replace(cell, seed=cell.seed + 1))
    if result is None:
        return [Row(kind, what, n.name, n.value, n.error, math.nan, math.nan, route, f"skipped: {why}")
                for n in nums], []
    ref = {n.name: n for n in published_numbers(result, seed=seed)}  # the same elements as ``nums``
    return _against(kind, what, nums, ref, route, "reseeded", K_SE), []


# --- route (g): cells without a tol at a finer resolution of their own ------------------------------------------------
FINER = {"flows:FieldCell": ("nodes", lambda n: 2 * n),  # Gauss-Hermite nodes per dimension and component
         "flows:CapCell": ("points", lambda n: 2 * n - 1)}  # the state grid at half the spacing, the same extent
NO_ROUTE: dict[str, str] = {}  # kinds without a tol, a seed, a resolution or a route of their own: why (none now)


def finer_rows(entry: Entry, nums: list[Number], runner: Runner, seed: int = 0) -> tuple[list[Row], list[Number]]:
    """Kinds of :data:`FINER`: the same cell at twice its resolution (computed apart like route (a); the same formula
    at a finer resolution, not independent of it), its stored errors as the reference's. Returns the rows and the
    numbers this route does not cover."""
    cell = entry.cell
    kind, what = kind_name(cell), summary(cell)
    if kind not in FINER or not nums:
        return [], nums
    field, finer = FINER[kind]
    value = finer(getattr(cell, field))
    route = f"refined {field}={value} (the same formula)"
    result, why = runner.run(dataclasses.replace(cell, **{field: value}))
    if result is None:
        return [Row(kind, what, n.name, n.value, n.error, math.nan, math.nan, route, f"skipped: {why}")
                for n in nums], []
    ref = {n.name: n for n in published_numbers(result, seed=seed)}
    rows = []
    for n in nums:
        r = ref.get(n.name)
        rows.append(Row(kind, what, n.name, n.value, n.error, math.nan, math.nan, route,
                        "skipped: not published by the refined run") if r is None else
                    Row(kind, what, n.name, n.value, n.error, r.value, r.error, route,
                        _agree(n.value, n.error, r.value, r.error)))
    return rows, []



# --- route (h): RescaleCell's exact ratio against Monte Carlo through guidance rescale in R^d -----------------------
RESCALE_DRAWS = 65536  # Monte Carlo draws per level (fewer when the budget ends first)
RESCALE_MIN_DRAWS = 1024  # fewer by the budget's end: skipped
TAIL_K = 256  # Hill's estimator on the top TAIL_K draws (of RESCALE_DRAWS at d = 2 and for an infinite number)


def hill_tail_index(x: np.ndarray, k: int = TAIL_K) -> tuple[float, float]:
    """Hill's estimate of the tail index of positive draws ``x`` (``P(X > t) ~ t^-alpha``) from the top ``k``, and its
    asymptotic standard error ``alpha / sqrt(k)``. A mean is infinite when ``alpha <= 1``."""
    top = np.sort(np.asarray(x, dtype=float))[::-1][:k + 1]
    if top.size < k + 1 or not top[k] > 0:
        raise ValueError(f"Hill's estimator needs {k + 1} positive draws, got {int((top > 0).sum())}")
    alpha = 1.0 / float(np.mean(np.log(top[:k] / top[k])))
    return alpha, alpha / math.sqrt(k)


def _rescale_draws(cell: Any, a: float, seed: int, n: int, deadline: float) -> dict[str, np.ndarray]:
    """At up to ``n`` draws of level ``a`` (:func:`evaluation.claims.flawed_schedules.monte_carlo_draws`, in chunks of
    ~2^21 coordinates seeded ``seed``, ``seed + 1``, ..., as many as are done by ``deadline``): ``gap`` =
    ``|(eps_rescale - eps_cfg) . q|``, ``term`` = ``|(eps_cfg - eps_c) . q|``, ``dev`` = ``|std(eps_c) / std(eps_cfg)
    - 1|``."""
    from evaluation.claims.flawed_schedules import monte_carlo_draws

    chunk = min(n, max(256, 2**21 // cell.d))
    parts, done = [], 0
    while done < n and time.perf_counter() < deadline:
        parts.append(monte_carlo_draws(cell, a, min(chunk, n - done), seed + len(parts)))
        done += parts[-1][0].size
    gap, term, factor = (np.concatenate([p[j] for p in parts]) if parts else np.zeros(0) for j in range(3))
    return {"gap": gap, "term": term, "dev": np.abs(factor - 1)}


def _ratio_of_means(gap: np.ndarray, term: np.ndarray) -> tuple[float, float]:
    """``mean(gap) / mean(term)`` and its first-order (delta-method) standard error."""
    n, mg, mt = gap.size, gap.mean(), term.mean()
    r = mg / mt
    cov = np.cov(gap, term)
    return float(r), float(math.sqrt(max(cov[0, 0] - 2 * r * cov[0, 1] + r**2 * cov[1, 1], 0.0) / n) / mt)


def rescale_rows(entry: Entry, nums: list[Number], deadline: float, seed: int = 0,
                 draws: int = RESCALE_DRAWS) -> tuple[list[Row], list[Number]]:
    """Route (h) (module docstring): a RescaleCell's exact ``rel`` and ``factor_dev`` per level (reduced-coordinate
    quadrature) against guidance rescale itself on ``draws`` draws in ``R^d`` per level (:func:`_rescale_draws`; the
    budget up to ``deadline`` shared among the levels): the ratio of the sample means (``rel``), the sample mean
    (``factor_dev``) agree within ``K_SE`` of their standard errors plus the published error. At ``d = 2``, and for
    any infinite published number, the divergence test instead: Hill's tail index of the draws averaged
    (:func:`hill_tail_index`; ``|(eps_rescale - eps_cfg) . q|``, ``|f - 1|``) within ``K_SE`` standard errors of <= 1
    means an infinite expectation (the reference is ``inf``): an infinite published number agrees, a finite one does
    not; an index above that refutes an infinite number (and a finite one is then checked as at ``d >= 3``).
    Returns the rows and the numbers this route does not cover."""
    cell = entry.cell
    kind, what = kind_name(cell), summary(cell)
    if kind != "claims.flawed_schedules:RescaleCell" or not nums:
        return [], nums
    levels: dict[int, list[tuple[str, Number]]] = defaultdict(list)
    rest, rows = [], []
    for n in nums:
        base, i = _level_of(n.name)
        if base in ("rel", "factor_dev") and i is not None:
            levels[i].append((base, n))
        else:
            rest.append(n)
    for j, i in enumerate(sorted(levels)):
        share = (deadline - time.perf_counter()) / (len(levels) - j)
        base_seed = random.Random(f"{seed}:{entry.key}:rescale:{i}").getrandbits(40)
        x = _rescale_draws(cell, float(cell.levels[i]), base_seed, draws, time.perf_counter() + share)
        size = x["gap"].size
        for base, n in levels[i]:
            if size < min(RESCALE_MIN_DRAWS, draws):
                rows.append(Row(kind, what, n.name, n.value, n.error, math.nan, math.nan, "monte-carlo",
                                f"skipped: over the budget ({size} draws of {draws})"))
                continue
            route = f"monte-carlo N={size}, guidance rescale in R^{cell.d}"
            if base == "rel":
                r, se = _ratio_of_means(x["gap"], x["term"])
            else:
                r, se = float(x["dev"].mean()), float(x["dev"].std() / math.sqrt(size))
            if cell.d == 2 or math.isinf(n.value):
                alpha, a_se = hill_tail_index(x["gap" if base == "rel" else "dev"])
                tail = f"{route}: Hill tail index {alpha:.3g} +- {a_se:.2g} (top {TAIL_K})"
                if alpha - K_SE * a_se <= 1:  # an infinite mean: only an infinite number agrees
                    rows.append(Row(kind, what, n.name, n.value, n.error, math.inf, 0.0,
                                    tail + f" within {K_SE:g} SE of <= 1: infinite mean", "yes" if n.value == math.inf else "NO"))
                    continue
                route = tail + f" above 1 by {K_SE:g} SE: finite mean"  # an infinite published number is then a NO (_agree)
            rows.append(Row(kind, what, n.name, n.value, n.error, r, K_SE * se, route,
                            _agree(n.value, n.error, r, K_SE * se)))
    return rows, rest


# --- route (i): CurvesCell's sampler-chain golden by another recursion, and its closed-form curves by autograd ------
CHAIN_RUNS = ((4e-3, 30), (2e-3, 40))  # (spacing, Gauss-Hermite nodes) of the two spline recursions


def spline_chain(cond, log_r0, sched, x: np.ndarray, h: float, nodes: int, deadline: float = math.inf) -> np.ndarray:
    """The sampler-chain golden ``-sqrt(1 - abar_t) d/dx log E_t`` [T, P] of a 1-D mixture's DDPM chain (THEORY.md 4)
    at points ``x`` [P], by the recursion ``E_t(x) = int N(y; mu_t(x), s_t^2) E_{t-1}(y) dy`` with ``log E_{t-1}`` a
    quintic interpolating spline on a uniform grid of spacing ``h`` (covering the kernels' reach from the points:
    the mean map's image plus the widest node) and each integral by ``nodes``-point Gauss-Hermite; the derivative
    from the spline's (``E_1 = R_0(mu_1)``: autograd). Not :func:`analytic.chain_golden`'s method (trapezoid sums of
    ``E_{t-1}``'s exponentials on its own grids, the gradient from the narrow sum's tilted mean)."""
    from scipy.interpolate import make_interp_spline

    T = sched.T
    z, wz = np.polynomial.hermite_e.hermegauss(nodes)  # probabilists' nodes: N(0, 1) expectations
    logw = np.log(wz / wz.sum())
    s = sched.posterior_variance.sqrt().tolist()
    ab, be, al = sched.abar.tolist(), sched.betas.tolist(), sched.alphas.tolist()

    def mu(y, t, grad=False):  # the DDPM mean of step t, (y - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t)
        Y = torch.as_tensor(np.asarray(y, dtype=float))[:, None].clone().requires_grad_(grad)
        m = (Y - be[t] / math.sqrt(1 - ab[t]) * cond.eps(Y, ab[t])) / math.sqrt(al[t])
        if not grad:
            return m[:, 0].detach().numpy()
        (dm,) = torch.autograd.grad(m.sum(), Y)
        return m[:, 0].detach().numpy(), dm[:, 0].numpy()

    lo, hi, reach = {T: x.min()}, {T: x.max()}, np.abs(z).max()
    for t in range(T, 1, -1):
        m = mu(np.arange(lo[t] - 2 * h, hi[t] + 2 * h, h), t)
        lo[t - 1] = min(x.min(), m.min() - s[t] * reach) - 4 * h
        hi[t - 1] = max(x.max(), m.max() + s[t] * reach) + 4 * h
    spline = {}
    for t in range(1, T):
        if time.perf_counter() > deadline:
            raise TimeoutError(f"over the budget (step {t} of {T})")
        grid = np.linspace(lo[t], hi[t], int(math.ceil((hi[t] - lo[t]) / h)) + 1)
        if t == 1:
            with torch.no_grad():
                log_e = log_r0(torch.as_tensor(mu(grid, 1))[:, None]).numpy().ravel()
        else:
            y = mu(grid, t)[:, None] + s[t] * z
            v = spline[t - 1](y.ravel()).reshape(y.shape) + logw
            top = v.max(1, keepdims=True)
            log_e = (top + np.log(np.exp(v - top).sum(1, keepdims=True)))[:, 0]
        spline[t] = make_interp_spline(grid, log_e, k=5)
    out = np.zeros((T, x.size))
    for t in range(1, T + 1):
        m, dm = mu(x, t, grad=True)
        if t == 1:
            M = torch.as_tensor(m)[:, None].requires_grad_(True)
            (g,) = torch.autograd.grad(log_r0(M).sum(), M)
            grad = g[:, 0].numpy() * dm
        else:
            y = m[:, None] + s[t] * z
            v = spline[t - 1](y.ravel()).reshape(y.shape) + logw
            p = np.exp(v - v.max(1, keepdims=True))
            grad = (p * spline[t - 1](y.ravel(), nu=1).reshape(y.shape)).sum(1) / p.sum(1) * dm
        out[t - 1] = -math.sqrt(1 - ab[t]) * grad
    return out


def _closed_form_curves(cell: Any, result: Any, t: int, x: torch.Tensor) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """CFG's term, REG's and the normalised ``p_t(x|y)`` of a CurvesCell at step ``t`` on its points ``x`` [n], each
    with a rounding bound, by another route than the cell's closed forms: the terms by autograd of the noised
    densities' ``log_prob`` (``-sqrt(1 - abar) d/dx (w log p_c/p_u)``; REG's ``g (1 - c d eps_c/dx)`` with
    ``d eps_c/dx = -c d^2 log p_c / dx^2``, twice autograd) instead of the mixtures' closed-form eps and its
    Jacobian; the weight from scipy's normal densities of the noised components written out (``sqrt(abar) m_k``,
    ``abar v_k + 1 - abar``). Bound: ``ROUNDING`` (x 16 for second derivatives) times the sizes of the terms summed;
    the weight's ``ROUNDING (1 + |log weight|)`` relative (the rounding of its exponent)."""
    from scipy.special import logsumexp
    from scipy.stats import norm

    from evaluation.spec import Law

    parts = Law.parse(cell.law).build()
    a = float(result.abar[t - 1])
    c = math.sqrt(1 - a)
    X = x[:, None].clone().requires_grad_(True)
    lc, lu = parts.cond.noised(a).log_prob(X), parts.uncond.noised(a).log_prob(X)
    (sc,) = torch.autograd.grad(lc.sum(), X, create_graph=True)
    (su,) = torch.autograd.grad(lu.sum(), X, retain_graph=True)
    (hc,) = torch.autograd.grad(sc.sum(), X)
    sc, su, hc = sc[:, 0].detach().numpy(), su[:, 0].detach().numpy(), hc[:, 0].numpy()
    g = -c * cell.w * (sc - su)
    g_size = c * abs(cell.w) * (np.abs(sc) + np.abs(su))
    jac = -c * hc  # d eps_c / dx
    reg = g * (1 - c * jac)
    reg_size = g_size * (1 + c * np.abs(jac)) + 16 * np.abs(g) * c * np.abs(jac)
    cond = parts.cond
    xs = x.numpy()
    logs = [math.log(float(pi)) + norm.logpdf(xs, math.sqrt(a) * float(m), math.sqrt(a * float(v) + 1 - a))
            for pi, m, v in zip(cond.weights, cond.means[:, 0], cond.covs[:, 0, 0])]
    lp = logsumexp(np.stack(logs), axis=0)
    log_weight = lp - logsumexp(lp)
    weight = np.exp(log_weight)  # relative rounding: that of its exponent, absolute ~ eps |log weight|
    return {"cfg": (g, ROUNDING * g_size), "reg": (reg, ROUNDING * reg_size),
            "weight": (weight, ROUNDING * weight * (1 + np.abs(log_weight)))}


def curves_rows(entry: Entry, nums: list[Number], deadline: float, seed: int = 0,
                runs=CHAIN_RUNS) -> tuple[list[Row], list[Number]]:
    """Route (i) (module docstring): a CurvesCell's ``chain`` numbers by :func:`spline_chain` at the two resolutions
    of ``runs`` (the finer is the reference, their difference its error), and :data:`MAX_ELEMENTS` drawn elements of
    each closed-form curve it stores without an error (``cfg``, ``reg``, ``weight``: published error 0) by
    :func:`_closed_form_curves`. Returns the rows and the numbers this route does not cover."""
    from evaluation.spec import Law, Method, Schedule

    cell, res = entry.cell, entry.result
    kind, what = kind_name(cell), summary(cell)
    if kind != "findings:CurvesCell":
        return [], nums
    rows, rest, chain = [], [], []
    for n in nums:
        (chain if n.name.startswith("chain[") else rest).append(n)
    if chain:
        parts = Law.parse(cell.law).build()
        reward = Method("cfg", cell.w).reward(parts)
        x = np.asarray(res.x, dtype=float)
        route = f"spline recursion h={runs[-1][0]:g}, gauss-hermite {runs[-1][1]} (vs h={runs[0][0]:g})"
        try:
            coarse, fine = (spline_chain(parts.cond, reward.log_r0, Schedule.parse("paper").vp, x, h, k, deadline)
                            for h, k in runs)
        except TimeoutError as err:
            rows += [Row(kind, what, n.name, n.value, n.error, math.nan, math.nan, route, f"skipped: {err}")
                     for n in chain]
            chain = []
        for n in chain:
            t, i = (int(v) for v in n.name[len("chain["):-1].split(","))
            r = fine[t, i]
            re = abs(fine[t, i] - coarse[t, i]) + ROUNDING * max(abs(r), abs(n.value))
            rows.append(Row(kind, what, n.name, n.value, n.error, r, re, route, _agree(n.value, n.error, r, re)))
    x = torch.as_tensor(res.x, dtype=F64)
    T, P = np.shape(res.cfg)
    rng = random.Random(f"{seed}:{entry.key}:curves")
    for name in ("cfg", "reg", "weight"):
        for t, i in sorted(rng.sample([(t, i) for t in range(T) for i in range(P)], min(MAX_ELEMENTS, T * P))):
            ref, err = _closed_form_curves(cell, res, t + 1, x)[name]
            v = float(np.asarray(getattr(res, name))[t, i])
            rows.append(Row(kind, what, f"{name}[{t}, {i}] (no stored error)", v, 0.0, float(ref[i]), float(err[i]),
                            "autograd of log p_t" if name != "weight" else "scipy normal densities",
                            _agree(v, 0.0, float(ref[i]), float(err[i]))))
    return rows, rest

# --- the report ----------------------------------------------------------------------------------------------------
def recompute(cache: Path, *, per_kind: int = 2, seed: int = 0, budget: float = 120.0, memory_gb: float = 3.0,
              mc_seconds: float = 20.0, isolate: bool = True, progress: bool = True,
              kinds: tuple[str, ...] = ()) -> tuple[list[Row], str]:
    """The rows of the report and its summary line (module docstring)."""
    if not (isinstance(per_kind, int) and per_kind >= 1):
        raise ValueError(f"per_kind must be a positive integer, got {per_kind!r}")
    entries, left = read_cache(Path(cache))
    chosen = draw(entries, per_kind, seed, kinds)
    if not chosen:
        raise ValueError(f"--kinds {list(kinds)}: no kind of the cache's converged cells matches (kinds there: "
                         f"{sorted({kind_name(e.cell) for e in entries})})")
    runner = Runner(budget, memory_gb, isolate)
    rows: list[Row] = []
    cells: list[Any] = []  # the cell of each row
    above = 0  # numbers of the sampled cells beyond their cell's tolerance: not published as converged
    try:
        for i, entry in enumerate(tqdm(chosen, desc="recomputing", disable=not progress)):
            nums, left_out = converged_numbers(entry, seed=seed)
            above += left_out
            golden, nums = golden_rows(entry, nums)
            field, nums = field_rows(entry, nums, time.perf_counter() + budget)
            more, nums = claims_field_rows(entry, nums, time.perf_counter() + budget)
            field += more
            more, nums = reseeded_rows(entry, nums, runner, seed)
            field += more
            more, nums = finer_rows(entry, nums, runner, seed)
            field += more
            more, nums = rescale_rows(entry, nums, time.perf_counter() + budget, seed)
            field += more
            more, nums = curves_rows(entry, nums, time.perf_counter() + budget, seed)
            field += more
            new = golden + field + (refined_rows(entry, nums, runner, seed) if nums else [])
            new += monte_carlo_rows(entry, nums, runner, seed + 1000 * i, mc_seconds)
            rows += new
            cells += [entry.cell] * len(new)
    finally:
        runner.close()
    rows = [r if "(grid law)" in r.number or r.number == "law moments" or checked_by_the_cell(c, r.number)
            else r._replace(number=r.number + " (unchecked)") for r, c in zip(rows, cells)]
    counts = Counter("skipped" if r.agree.startswith("skipped") else r.agree for r in rows)
    unchecked = Counter(r.agree for r in rows if r.number.endswith("(unchecked)"))
    reasons = Counter(r.agree.removeprefix("skipped: ").split(":")[0].split(" (")[0][:60] for r in rows
                      if r.agree.startswith("skip"))
    drawn_kinds = sorted({kind_name(e.cell) for e in chosen})
    line = (f"recompute_published (seed {seed}, {per_kind} per kind x dimension"
            f"{', kinds ' + ' '.join(kinds) if kinds else ''}): {len(rows)} numbers of {len(chosen)} "
            f"cells ({len(drawn_kinds)} kinds; {len(entries)} current cells in the cache, "
            f"{sum(left.values())} files left out: {dict(left) or 'none'}): {counts['yes']} agreed, "
            f"{counts['NO']} disagreed, {counts['skipped']} "
            f"skipped" + (f" ({'; '.join(f'{k}: {v}' for k, v in reasons.most_common())})" if reasons else "")
            + f"; of them not checked by their cell's contract (marked unchecked): {unchecked['yes']} agreed, "
            f"{unchecked['NO']} disagreed; {above} stored numbers of these cells beyond their cell's tol, "
            "not recomputed")
    return rows, line


def _fmt(v: float) -> str:
    return ("inf" if v > 0 else "-inf") if math.isinf(v) else "-" if not math.isfinite(v) else f"{v:.6g}"


def table(rows: list[Row], line: str, cache: Path) -> str:
    head = ("kind", "cell", "number", "published", "+-", "reference", "+-", "route", "agree")
    body = [(r.kind, r.cell, r.number, _fmt(r.published), _fmt(r.published_error), _fmt(r.reference),
             _fmt(r.reference_error), r.route, r.agree) for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    fmt = lambda cols: "  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()  # noqa: E731
    out = [f"# Independent recomputations of published numbers (benchmarks/recompute_published.py), cache {cache}",
           "# agree: |published - reference| <= published error + reference error (Monte Carlo: 4 standard errors)",
           fmt(head), fmt(["-" * w for w in widths]), *map(fmt, body), "", line]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--cache", type=Path, required=True, help="a sweep cache folder (read only)")
    parser.add_argument("--per-kind", type=int, default=2, help="cells per kind and dimension (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per recomputed cell (default 120)")
    parser.add_argument("--memory", type=float, default=3.0, help="GB of address space per recomputation (default 3)")
    parser.add_argument("--mc-seconds", type=float, default=20.0, help="seconds of particles per cell (default 20)")
    parser.add_argument("--kinds", nargs="+", default=(), metavar="NAME",
                        help="only kinds whose name contains one of these (e.g. OutputCell flows:LawCell)")
    args = parser.parse_args(argv)
    if args.per_kind < 1:
        parser.error(f"--per-kind must be >= 1, got {args.per_kind}")
    torch.set_num_threads(1)
    try:
        rows, line = recompute(args.cache, per_kind=args.per_kind, seed=args.seed, budget=args.budget,
                               memory_gb=args.memory, mc_seconds=args.mc_seconds, kinds=tuple(args.kinds))
    except ValueError as err:
        if str(err).startswith(("--cache", "--kinds")):
            parser.error(str(err))
        raise
    args.out.write_text(table(rows, line, args.cache))
    print(line)
    print(f"table: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
