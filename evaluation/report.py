"""Exact field errors and output-distribution distances per method: ``python -m evaluation.report``.

For each standard case (the paper's 1-D setting and the 2-D presets) and each CFG weight ``w`` it
computes, with no Monte Carlo:

- field errors: mean ``|golden - method|`` in eps units over the field grid, averaged over the steps,
  unweighted and weighted by ``p_t(x | y)``, against the ideal-chain golden and (1-D) the sampler-chain
  golden, for CFG and the REG estimators ``paper``, ``vjp``, ``diag`` (:data:`FIELD_METHODS`);
- output distances: the exact law of the DDPM sampler's output (:func:`evaluation.density.output_density`)
  against the tilted target ``p(x_0 | y) R_0 / Z`` (:func:`evaluation.distances.tilted_target`): TV, KL both
  ways, W1 (1-D), for unguided, CFG, REG paper/vjp/diag, and the optimum (exact tilted mean) started
  from the tilted start ``N(0, I) E_T`` (THEORY.md), from the tilted true marginal ``p_T(x|y) E_T`` (the
  exact start of the tilted chain; the same when ``abar_T -> 0``) and from the usual ``N(0, I)``.

Methods and starts are :mod:`evaluation.spec` values (:data:`DENSITY_RUNS`: a method spelling and the start of its
:class:`~evaluation.spec.Levels`), and every output law and every field table is a cell of :mod:`evaluation.sweep`
(:class:`DensityCell`, :class:`FieldTableCell`): cached, resumable, ``--workers`` processes.
It prints one table per case and writes ``report.json`` and ``report.md`` to ``--out``.
``--write-regression-table PATH`` also writes the regression table the test suite pins
(``tests/evaluation/regression_table.json``) from the same numbers.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .cases import CASES, DEFAULT_CASES, Case
from .density import output_density
from .distances import Distances, distances, tilted_target
from .field_errors import field_errors
from .io import check_cli_arguments, write_atomically
from .spec import Law, Levels, Method, Schedule
from .sweep import cell_kind, run_cells

__all__ = ["CaseResult", "FIELD_METHODS", "DENSITY_RUNS", "DensityCell", "DensityResult", "FieldTableCell",
           "FieldTable", "run_key", "case_cells", "compute_case", "compute", "regression_entries", "regression_table",
           "REGEN_COMMAND"]

FIELD_METHODS = ("cfg", "cfg,reg=paper", "cfg,reg=vjp", "cfg,reg=diag")  # method spellings; w from the case
# (method spelling, start): the optimum from the tilted start N(0, I) E_T, from the tilted true marginal p_T(x|y) E_T
# (the exact start of the tilted chain) and from the usual N(0, I)
DENSITY_RUNS = (("unguided", "n01"), ("cfg", "n01"), ("cfg,reg=paper", "n01"), ("cfg,reg=vjp", "n01"),
                ("cfg,reg=diag", "n01"), ("optimal", "tilted_n01"), ("optimal", "tilted"), ("optimal", "n01"))
REGEN_COMMAND = "python -m evaluation.report --write-regression-table tests/evaluation/regression_table.json"
_START_TEXT = {"n01": "N(0, I)", "tilted": "p_T(x|y) E_T", "tilted_n01": "N(0, I) E_T"}


def run_key(method: str, start: str) -> str:
    """The key of one output-law run in :attr:`CaseResult.distances` and the tables: the method spelling, and
    ``" from START"`` when the start is not ``n01``."""
    return method if start == "n01" else f"{method} from {start}"


class CaseResult(NamedTuple):
    case: str
    w: float
    fields: dict  # {kind: {method spelling: mean error}} (FieldErrors.aggregate())
    golden_size: float  # mean over steps of the p_t-weighted mean |golden|
    distances: dict  # {run_key: Distances}
    lost: dict  # {run_key: mass lost off the density grid}
    seconds: float  # this case's share of its sweep's wall time (cells read from the cache cost about 0)


def _axes(lo: float, hi: float, n: int, d: int) -> tuple[torch.Tensor, ...]:
    return tuple(torch.linspace(lo, hi, n, dtype=torch.float64) for _ in range(d))


@dataclass(frozen=True)
class DensityCell:
    """A sweep cell: the exact output law of ``method`` on ``law`` under ``levels`` (from its start) on the grid
    ``(lo, hi, n)`` per axis, against the tilted target of the method's reward."""

    law: Law
    levels: Levels
    method: Method
    grid: tuple[float, float, int]

    @property
    def cost(self) -> float:
        return self.levels.steps * self.grid[2] ** self.law.dim * (5.0 if self.method.rule == "optimal" else 1.0)


class DensityResult(NamedTuple):
    distances: Distances
    lost: float


@cell_kind(DensityCell)
def density_cell(cell: DensityCell) -> DensityResult:
    b = cell.method.build(cell.law, cell.levels)
    axes = _axes(*cell.grid, b.law.dim)
    od = output_density(b.guided, cell.levels.sigmas(), axes, sampler=cell.levels.sampler, start=b.start(),
                        estimate_error=False)
    return DensityResult(distances(od.mass, tilted_target(b.law.cond, b.reward, axes).mass, axes), od.lost)


@dataclass(frozen=True)
class FieldTableCell:
    """A sweep cell: the field errors of :data:`FIELD_METHODS` at weight ``w`` on ``case`` (its schedule and field
    grid), averaged over the steps, against the ideal-chain and (``case.sampler_chain``) the sampler-chain golden."""

    case: Case
    w: float

    @property
    def cost(self) -> float:
        return 20.0 * self.case.field_points ** Law.parse(self.case.preset).dim


class FieldTable(NamedTuple):
    methods: tuple[str, ...]
    ideal: np.ndarray  # [M] mean over steps
    ideal_weighted: np.ndarray
    chain: np.ndarray
    chain_weighted: np.ndarray
    golden_size: float


@cell_kind(FieldTableCell)
def field_table(cell: FieldTableCell) -> FieldTable:
    case, law = cell.case, Law.parse(cell.case.preset)
    schedule = Schedule.parse(case.schedule)
    built = {m: Method.parse(m).replace(w=cell.w).build(law, schedule) for m in FIELD_METHODS}
    parts, reward = built["cfg"].law, built["cfg"].reward
    fe = field_errors(parts.cond, schedule.vp, _axes(*case.field_range, case.field_points, parts.dim),
                      {m: b.guided for m, b in built.items()}, reward, sampler_chain=case.sampler_chain)
    return FieldTable(tuple(FIELD_METHODS), *(getattr(fe, k).mean(1).numpy() for k in
                                               ("ideal", "ideal_weighted", "chain", "chain_weighted")),
                      fe.golden_size.mean().item())


def case_cells(case: Case, w: float) -> list:
    """The cells of one case at one weight: its field table, then one output law per run of :data:`DENSITY_RUNS`."""
    law, grid = Law.parse(case.preset), (*case.density_range, case.density_points)
    schedule = Schedule.parse(case.schedule)
    return [FieldTableCell(case, float(w))] + [
        DensityCell(law, Levels(schedule, "ddpm", start), Method.parse(m).replace(w=float(w)), grid)
        for m, start in DENSITY_RUNS]


def _case_result(case: Case, w: float, results, seconds: float) -> CaseResult:
    table, *laws = results
    fields = {k: {m: float(v) for m, v in zip(table.methods, getattr(table, k))}
              for k in ("ideal", "ideal_weighted", "chain", "chain_weighted")}
    keys = [run_key(m, s) for m, s in DENSITY_RUNS]
    return CaseResult(case.name, float(w), fields, table.golden_size, {k: r.distances for k, r in zip(keys, laws)},
                      {k: r.lost for k, r in zip(keys, laws)}, seconds)


def compute(jobs, *, workers: int = 1, progress: bool = True, cache=None) -> list[CaseResult]:
    """The results of ``jobs`` (``(case, w)`` pairs) through one sweep of their cells."""
    jobs = list(jobs)
    per = [case_cells(c, w) for c, w in jobs]
    start = time.perf_counter()
    run = run_cells([cell for cells in per for cell in cells], workers=workers, progress=progress, cache=cache,
                    desc="report cells")
    out, i = [], 0
    for (c, w), cells in zip(jobs, per):
        out.append(_case_result(c, w, run.results[i:i + len(cells)], (time.perf_counter() - start) / len(jobs)))
        i += len(cells)
    return out


def compute_case(case: Case, w: float, *, cache=None) -> CaseResult:
    """One case at one weight (its cells from the cache where stored)."""
    return compute([(case, w)], progress=False, cache=cache)[0]


# --- presentation ---------------------------------------------------------------------------------
_FIELD_KINDS = (("ideal", "ideal"), ("ideal_weighted", "ideal, p_t-weighted"), ("chain", "sampler chain"),
                ("chain_weighted", "sampler chain, p_t-weighted"))


def _fmt(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def markdown(results: list[CaseResult], cases: dict[str, Case]) -> str:
    lines = ["# Exact guidance report", "",
             "Field errors: mean |golden - method| (eps units) over the field grid, averaged over the steps. "
             "Distances: exact DDPM output law against the tilted target p(x_0|y) R_0 / Z (no Monte Carlo). "
             "The optimum's start is named in its row (p_T(x|y) E_T: the exact tilted-chain start); every other "
             "method starts from N(0, I). All samplers: DDPM.", ""]
    for r in results:
        c = cases[r.case]
        lines += [f"## {r.case}, w = {r.w:g}", "",
                  f"preset `{c.preset}`, schedule `{c.schedule}`, field grid {c.field_points}^d on "
                  f"{list(c.field_range)}, density grid {c.density_points}^d on {list(c.density_range)}; "
                  f"mean p_t-weighted |golden| = {r.golden_size:.4f}; {r.seconds:.1f} s", ""]
        head = "| method | " + " | ".join(lbl for _, lbl in _FIELD_KINDS) + " | TV | KL(out‖target) | KL(target‖out) | W1 |"
        lines += [head, "|" + "---|" * (5 + len(_FIELD_KINDS))]
        for m, start in DENSITY_RUNS:
            key = run_key(m, start)
            f = [_fmt(r.fields[k].get(m)) if m in r.fields[k] and start == "n01" else "-" for k, _ in _FIELD_KINDS]
            dd = r.distances[key]
            label = Method.parse(m).label + ("" if start == "n01" else f", start {_START_TEXT[start]}")
            lines.append(f"| {label} | " + " | ".join(f) + f" | {_fmt(dd.tv)} | {_fmt(dd.kl_out_target)} | "
                         f"{_fmt(dd.kl_target_out)} | {_fmt(dd.w1)} |")
        lines.append("")
    return "\n".join(lines)


def to_json(results: list[CaseResult], cases: dict[str, Case]) -> dict:
    return {"cases": [asdict(c) for c in cases.values()],
            "results": [{"case": r.case, "w": r.w, "fields": r.fields, "golden_size": r.golden_size,
                         "distances": {m: d._asdict() for m, d in r.distances.items()}, "lost": r.lost,
                         "seconds": r.seconds} for r in results]}


def regression_entries(r: CaseResult) -> list[dict]:
    """Every stored number of one result: ``{case, w, method, start, metric, value, kind}`` (``method`` a
    method spelling without ``w``, ``start`` its start; field errors have start ``n01``).

    ``kind`` is ``finding`` (a method's field error or output distance: pinned on both sides, so a change
    that flatters or hurts any method is caught) or ``approximation`` (how far the exact optimum's output
    is from its target: it may only shrink)."""
    out = []
    for kind, per in r.fields.items():
        for m, v in per.items():
            if not math.isnan(v):
                out.append({"case": r.case, "w": r.w, "method": m, "start": "n01", "metric": f"field_{kind}",
                            "value": v, "kind": "finding"})
    for m, start in DENSITY_RUNS:
        for k, v in r.distances[run_key(m, start)]._asdict().items():
            if not math.isnan(v):
                out.append({"case": r.case, "w": r.w, "method": m, "start": start, "metric": k, "value": v,
                            "kind": "approximation" if Method.parse(m).rule == "optimal" else "finding"})
    return out


def regression_table(results: list[CaseResult], cases: dict[str, Case]) -> dict:
    """The table ``tests/evaluation/test_regression.py`` pins (written by ``--write-regression-table PATH``)."""
    return {
        "command": REGEN_COMMAND,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "note": "exact numbers of every method on the standard cases; findings are pinned on both sides "
                "(|new - stored| <= stored * rtol + atol), approximation errors may only shrink",
        "rtol": 1e-6, "atol": 1e-9,
        "cases": [asdict(c) for c in cases.values()],
        "entries": [e for r in results for e in regression_entries(r)],
    }


def _versions() -> dict:
    import numpy
    import scipy

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "scipy": scipy.__version__}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m evaluation.report", description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--out", type=Path, default=Path("report"), help="directory for report.json and report.md")
    ap.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), choices=[c.name for c in CASES],
                    help=f"default {' '.join(DEFAULT_CASES)} (paper_1d_long adds ~10 s)")
    ap.add_argument("--write-regression-table", type=Path, metavar="PATH", default=None,
                    help="also write the regression table the tests pin to PATH "
                         "(tests/evaluation/regression_table.json)")
    ap.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    args = ap.parse_args(argv)
    table = () if args.write_regression_table is None else (args.write_regression_table.resolve().parent,)
    check_cli_arguments(ap, args.workers, args.out, *table)  # an unusable output fails before any work
    torch.set_num_threads(1)
    cases = {c.name: c for c in CASES if c.name in args.cases}
    start = time.perf_counter()
    jobs = [(c, w) for c in cases.values() for w in c.weights]
    results = compute(jobs, workers=args.workers)
    md = markdown(results, cases)
    print(md)
    print(f"(all exact, {time.perf_counter() - start:.1f} s)")
    write_atomically(args.out / "report.json", json.dumps(to_json(results, cases), indent=1))
    write_atomically(args.out / "report.md", md + "\n")
    if args.write_regression_table is not None:
        write_atomically(args.write_regression_table, json.dumps(regression_table(results, cases), indent=1) + "\n")
        print(f"wrote {args.write_regression_table}")


if __name__ == "__main__":
    main()
