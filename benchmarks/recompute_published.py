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
- closed forms: none of the sampled kinds has one in this script (see docs/benchmarks.md).

Everything else (kinds without ``tol`` whose numbers have no second route here) is reported as skipped with that
reason. The table goes to ``--out`` (default ``benchmarks/recompute_published.txt``) with a one-line summary at its
end (also printed); it is deterministic given ``--seed`` and the cache, except where a run's time decides a skip.

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
    :data:`MAX_ELEMENTS` elements, drawn with ``seed``. A result with ``valid`` False has none."""
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
        items = [(i, v, e) for i, v, e in items if math.isfinite(v) and math.isfinite(e)]
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
        return [Row(kind, what, n.name, n.value, n.error, math.nan, math.nan, "-",
                    "skipped: no second route here (no tol in the configuration)") for n in nums]
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
    rows = []
    for n in nums:
        r = ref.get(n.name)
        if r is None:
            rows.append(Row(kind, what, n.name, n.value, n.error, math.nan, math.nan, route,
                            "skipped: not published by the refined run"))
        else:
            rows.append(Row(kind, what, n.name, n.value, n.error, r.value, r.error, route,
                            _agree(n.value, n.error, r.value, r.error)))
    return rows


def _agree(v: float, e: float, r: float, re: float) -> str:
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
            new = golden + (refined_rows(entry, nums, runner, seed) if nums else [])
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
    return "-" if not math.isfinite(v) else f"{v:.6g}"


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
