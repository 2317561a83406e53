"""What a cell's work costs, for the order of work and the progress bar of :func:`evaluation.sweep.run_cells`
(:class:`evaluation.sweep.Eta`; issue 19, item 4: an ETA right within 2x).

A cell's cost has two parts (:class:`Cost`):

- its **rate class** (``group``): the settings that change the seconds per unit of work by a factor no size
  predicts (the dimension, the sampler, the guidance rule and REG estimator, the start, the model), so that cells
  of one class are timed together and a class measured on cheap cells says nothing about another: in the session-9
  full job a 2-D output cell declared 20 x 51^2 = 52020 and took 100-300 s, as long as 1-D cells declaring 30x more
  took 1 s (``benchmarks/eta_replay.txt``);
- its **relative cost** within the class (``cost``): the size of the work (steps x grid nodes, draws x dimension).

What no setting predicts (the accuracy contract refining one cell's grid many times more than another's, e.g.
``bn-pc``'s ``ddpm_grid`` cells at w = 3 against w = 1, 60x) is left to the measurements: the sweep measures every
class on its costliest cell early and counts a cell that runs longer than its estimate while it runs
(:class:`evaluation.sweep.Eta`). A class per weight as well did no better in the replay of that job.

A kind without a model here is one class with its cells' declared ``cost`` (``None`` when it declares none: the
sweep counts it as the mean of its class). The models live here, not on the cell types, so that refining them
changes no cell's code version (:func:`evaluation.sweep.code_version` hashes the kinds' own modules, not this one):
the cache stays valid. A model reads the configuration only; it computes nothing.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import numbers
import statistics
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, Sequence

from .spec import Law, Schedule

__all__ = ["Cost", "cost_of", "declared_cost", "MODELS", "fit_line", "add_to_sums", "nonnegative", "SECONDS_LOG",
           "PRIORS", "read_priors", "read_log", "priors_table", "write_priors"]


class Cost(NamedTuple):
    group: str  # the rate class within the kind ("" for the kind as a whole)
    cost: float | None  # relative cost within the class (None: the mean of its class)


def declared_cost(cell: Any) -> float | None:
    """The cell's own ``cost`` (finite, > 0), or ``None`` when it declares none; ``ValueError`` naming the cell for
    any other value."""
    v = getattr(cell, "cost", None)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"cell {cell!r:.200} declares cost {v!r}; a cost is a finite number > 0")
    return float(v)


def _dim(law: Any) -> int:
    return (law if isinstance(law, Law) else Law.parse(law)).dim


def _method(m: Any) -> str:
    return m.rule + (f"+{m.reg}" if getattr(m, "reg", "") else "")


def _output_cell(c: Any) -> Cost:  # evaluation.claims.cells.OutputCell
    d = _dim(c.law)
    return Cost(f"d={d} {c.sampler} {_method(c.method)} {c.start} {c.model}",
                Schedule.parse(c.schedule).steps * float(c.grid[2]) ** d)


def _claims_field_cell(c: Any) -> Cost:  # evaluation.claims.cells.FieldCell: goldens on a grid at a few levels
    d = _dim(c.law)
    return Cost(f"d={d} {_method(c.method)}", min(c.levels, Schedule.parse(c.schedule).steps) * float(c.grid[2]) ** d)


def _pc_cell(c: Any) -> Cost:  # evaluation.claims.bradley_nakkiran.PCCell
    return Cost(c.kind, float(Schedule.parse(c.schedule).vp.T))


def _autog_cell(c: Any) -> Cost:  # evaluation.claims.autoguidance.AutogCell
    return Cost(f"d={_dim(c.law)} {c.guide}", float(Schedule.parse(c.schedule).steps))


def _law_cell(c: Any) -> Cost:  # evaluation.flows.LawCell: the contract's laws from a starting grid
    d = c.law.dim
    checked = ",".join(c.checked) or "-"
    return Cost(f"d={d} {c.levels.sampler} {_method(c.method)} {checked}", c.levels.steps * float(c.grid[2]) ** d)


def _flows_field_cell(c: Any) -> Cost:  # evaluation.flows.FieldCell
    return Cost(f"d={c.law.dim}", c.levels.steps * len(c.methods) * float(c.nodes) ** c.law.dim)


def _field_point(c: Any) -> Cost:  # evaluation.dimension.FieldPoint: mostly a fixed part per draw, not d
    # benchmarks/census.txt: 192 draws take 1.5 CPU-s at d = 128 ... 512, 1.7 at d = 2048, 3.0 at d = 4096 (its
    # declared n_points x d says 32x from d = 128 to 4096: a cheap first cell then predicted hours)
    return Cost("", c.n_points * (1.0 + c.law.dim / 2048.0))


MODELS: dict[str, Callable[[Any], Cost]] = {
    "evaluation.dimension:FieldPoint": _field_point,
    "evaluation.claims.cells:OutputCell": _output_cell,
    "evaluation.claims.cells:FieldCell": _claims_field_cell,
    "evaluation.claims.bradley_nakkiran:PCCell": _pc_cell,
    "evaluation.claims.autoguidance:AutogCell": _autog_cell,
    "evaluation.flows:LawCell": _law_cell,
    "evaluation.flows:FieldCell": _flows_field_cell,
}
"""The cost models, by the cell type's ``module:qualname`` (names, not the types: this module imports no cell kind)."""


def cost_of(cell: Any) -> Cost:
    """The rate class and relative cost of ``cell`` (its kind's model in :data:`MODELS`, else its declared ``cost``
    in the kind's one class)."""
    model = MODELS.get(f"{type(cell).__module__}:{type(cell).__qualname__}")
    if model is None:
        return Cost("", declared_cost(cell))
    group, cost = model(cell)
    if cost is not None and not (math.isfinite(cost) and cost > 0):
        raise ValueError(f"the cost model of {type(cell).__qualname__} gives cost {cost!r} for {cell!r:.200}")
    return Cost(group, cost)


# --- the ETA's priors: what each rate class cost in the last cold run ---------------------------------------------
def add_to_sums(sums: list[float], cost: float, seconds: float) -> None:
    """Add one measured task to the sums :func:`fit_line` reads (n, Σcost, Σseconds, Σcost², Σcost·seconds)."""
    for i, v in enumerate((1.0, cost, seconds, cost * cost, cost * seconds)):
        sums[i] += v


def fit_line(sums: Sequence[float]) -> tuple[float, float]:
    """(a, b) of ``seconds = a + b cost`` by least squares from the sums (n, Σcost, Σseconds, Σcost², Σcost·seconds)
    of measured tasks, with a, b >= 0: seconds proportional to cost (b = Σseconds / Σcost) when the costs are all
    equal or the line would start below zero, a constant (the mean) when it would fall."""
    n, c, s, cc, cs = sums
    var = cc - c * c / n
    if var > 1e-12 * cc:
        b = (cs - c * s / n) / var
        a = (s - b * c) / n
        if b < 0:
            return s / n, 0.0
        if a >= 0:
            return a, b
    return 0.0, s / c


PRIORS = Path(__file__).with_name("class_seconds.json")
"""The shipped table of seconds per rate class (and per kind), measured by the last cold run of the main job
(``python paper_plots.py``) and written by ``python -m evaluation.costs --write-priors CACHE`` from that run's log
(``CACHE/seconds.jsonl``, :func:`evaluation.sweep.run_cells`): :class:`evaluation.sweep.Eta`'s estimates for a class
before it is measured, scaled by this machine's speed. Read by the engine only (never by a cell kind: it is no
result's source)."""


def nonnegative(v: Any) -> bool:
    """Whether ``v`` is a finite real number >= 0 (not a bool): seconds, or a line's fixed part or rate."""
    return not isinstance(v, bool) and isinstance(v, numbers.Real) and math.isfinite(v) and v >= 0


SECONDS_LOG = "seconds.jsonl"
"""The cache folder's log of what each computed cell cost (written by :func:`evaluation.sweep.run_cells`, read by
:func:`read_log`)."""


def read_priors(path: str | Path = PRIORS) -> dict[str, tuple[float, float]]:
    """``{rate class or kind: (fixed seconds, seconds per unit of declared cost)}`` from a table written by
    :func:`write_priors` (its ``classes``, then its ``kinds`` for the names that are no class); ``{}`` when the file
    does not exist (no priors: the ETA waits for measurements). ``ValueError`` naming the file and the entry for a
    table that cannot be read or has an entry that is not two finite numbers >= 0 (``fixed``, ``rate``)."""
    path = Path(path)
    try:
        table = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise ValueError(f"the ETA's table of class seconds {path} cannot be read ({type(err).__name__}: {err}); "
                         "regenerate it: python -m evaluation.costs --write-priors CACHE") from None
    where = f"the ETA's table of class seconds {path}"
    if not isinstance(table, dict) or not all(isinstance(table.get(p), dict) for p in ("classes", "kinds")):
        raise ValueError(f"{where} is not a table of 'classes' and 'kinds' (a JSON object of objects)")
    out: dict[str, tuple[float, float]] = {}
    for part in ("kinds", "classes"):  # a class named like its kind (a kind with one class) is the class's entry
        for name, entry in table[part].items():
            if not (isinstance(entry, dict) and nonnegative(entry.get("fixed")) and nonnegative(entry.get("rate"))):
                raise ValueError(f"{where}: {part}[{name!r}] = {entry!r:.200} is not {{'fixed': seconds >= 0, "
                                 "'rate': seconds per unit of cost >= 0, ...}")
            out[name] = (float(entry["fixed"]), float(entry["rate"]))
    return out


def read_log(path: str | Path) -> list[dict]:
    """The records of a log of cell seconds (``CACHE/seconds.jsonl``, one JSON object per computed cell:
    :func:`evaluation.sweep.run_cells`); ``ValueError`` naming the file and line of a record that is not a JSON object
    with a key, kind, class, cost > 0, finite seconds >= 0 and the UTC time its run began."""
    records = []
    path = Path(path)
    for i, text in enumerate(path.read_text().splitlines(), 1):
        if not text.strip():
            continue
        try:
            r = json.loads(text)
        except ValueError as err:
            raise ValueError(f"{path}:{i} is not a JSON record ({err})") from None
        if not (isinstance(r, dict) and all(isinstance(r.get(f), str) for f in ("key", "kind", "class", "run"))
                and nonnegative(r.get("cost")) and r["cost"] > 0 and nonnegative(r.get("seconds"))):
            raise ValueError(f"{path}:{i} is not a cell's record (key, kind, class, run, cost > 0, seconds >= 0): "
                             f"{text:.200}")
        records.append(r)
    return records


def _lines(records: Iterable[dict], field: str) -> dict[str, dict]:
    sums: dict[str, list[float]] = {}
    for r in records:
        add_to_sums(sums.setdefault(r[field], [0.0] * 5), r["cost"], r["seconds"])
    out = {}
    for name in sorted(sums):
        a, b = fit_line(sums[name])
        out[name] = {"fixed": float(f"{a:.6g}"), "rate": float(f"{b:.6g}"), "cells": int(sums[name][0]),
                     "seconds": round(sums[name][2], 3)}
    return out


def priors_table(records: Sequence[dict], about: str, command: str) -> dict:
    """The table of :data:`PRIORS` from the records of one run (:func:`read_log`): per rate class and per kind the line
    ``seconds = fixed + rate x cost`` fitted to its cells (:func:`fit_line`, as :class:`evaluation.sweep.Eta` fits its
    measurements), its cells and summed seconds; with ``about`` (which run, when, on what machine load) and the
    ``command`` that regenerates it."""
    if not records:
        raise ValueError("no cell records to make the ETA's table from")
    loads = sorted(r["load"] for r in records if nonnegative(r.get("load")))
    runs = sorted({r["run"] for r in records})
    workers = sorted({str(r.get("workers")) for r in records})
    cpus = sorted({str(r.get("cpus")) for r in records})
    machine = (f"{', '.join(cpus)} CPUs, {', '.join(workers)} workers; 1-minute load average while the cells "
               + (f"arrived: {loads[0]:.1f} .. {loads[-1]:.1f}, median {statistics.median(loads):.1f}" if loads else
                  "arrived: not recorded"))
    return {"about": about, "run": ", ".join(runs), "machine": machine,
            "written": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": command, "cells": len(records),
            "worker_seconds": round(sum(r["seconds"] for r in records), 1),
            "use": "evaluation.sweep.Eta: a class not measured yet is estimated at (fixed + rate x cost) of its class "
                   "here, else of its kind here, times this machine's speed (the median over measured classes of "
                   "measured / predicted seconds); measurements replace it",
            "classes": _lines(records, "class"), "kinds": _lines(records, "kind")}


def write_priors(cache: str | Path, out: str | Path = PRIORS, run: str | None = None, about: str = "") -> Path:
    """Write the table of the run ``run`` (its UTC start, as the log says; default: the run with the most cells) in
    ``cache``'s log of cell seconds to ``out`` (default :data:`PRIORS`), and return ``out``."""
    log = Path(cache) / SECONDS_LOG
    records = read_log(log)
    counts: dict[str, int] = {}
    for r in records:
        counts[r["run"]] = counts.get(r["run"], 0) + 1
    if not counts:
        raise ValueError(f"{log} records no computed cell")
    if run is None:
        run = max(sorted(counts), key=lambda k: counts[k])
    elif run not in counts:
        raise ValueError(f"{log} has no run that began at {run!r}; its runs: {', '.join(sorted(counts))}")
    chosen = [r for r in records if r["run"] == run]
    text = about or f"the cells of the run that began at {run} UTC, read from {log}"
    out = Path(out)
    command = f"python -m evaluation.costs --write-priors {cache} --run {run}"
    command += "" if out.resolve() == PRIORS.resolve() else f" --out {out}"
    table = priors_table(chosen, text, command + (f" --about '{about}'" if about else ""))
    out.write_text(json.dumps(table, indent=1, sort_keys=False) + "\n")
    read_priors(out)  # what is written reads back
    return out


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m evaluation.costs", allow_abbrev=False,
                                 description="Write the ETA's table of seconds per rate class "
                                             "(evaluation/class_seconds.json) from a cold run's log of cell seconds.")
    ap.add_argument("--write-priors", metavar="CACHE", required=True, type=Path,
                    help="the cache folder of the run (its seconds.jsonl, written by run_cells)")
    ap.add_argument("--run", help="the UTC start of the run to use, as the log spells it (default: the run with the "
                                  "most cells)")
    ap.add_argument("--out", type=Path, default=PRIORS, help=f"the table to write (default {PRIORS})")
    ap.add_argument("--about", default="", help="which run this is (default: its start and the log's path)")
    args = ap.parse_args(argv)
    try:
        path = write_priors(args.write_priors, args.out, args.run, args.about)
    except (OSError, ValueError) as err:
        ap.error(str(err))
    table = json.loads(path.read_text())
    print(f"wrote {path}: {len(table['classes'])} rate classes, {len(table['kinds'])} kinds, {table['cells']} cells, "
          f"{table['worker_seconds']:.0f} worker-seconds ({table['run']}; {table['machine']})")


if __name__ == "__main__":
    main()
