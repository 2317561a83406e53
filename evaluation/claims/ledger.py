"""The claims ledger: what a claim is, how its cells are run, and the table it ends in.

A :class:`Claim` names its source (arXiv id), the statement tested, where the statement was read (the
abstract, read through the search tool, or the body/memory), the exact experiment, a figure, and two
functions: ``cells(quick) -> [cell]`` (sweep cells, :mod:`evaluation.sweep`) and
``conclude(quick, results) -> Outcome`` (the verdict and the figure's arrays from the cells' results, in the
same order). :func:`run_ledger` runs the cells of every selected claim through one sweep (shared cells are
computed once), then concludes each claim.

The ledger's files (``claims.json``, ``claims.md``) may gather claims from several runs (``--only``): each
entry carries the :class:`RunStamp` of the run that made it (quick or full sweeps, when, and the code version
of its cells), :func:`from_json` reads a ledger back and :func:`merge` replaces the entries a run made and
keeps the others.
"""
from __future__ import annotations

import json
import math
from typing import Any, Callable, NamedTuple, Sequence

from ..docs import format_number
from ..sweep import Cache, CellFailed, cell_key, cells_code, run_cells

__all__ = ["Number", "ClaimResult", "Outcome", "Claim", "LedgerRun", "RunStamp", "run_ledger", "evaluate", "markdown",
           "to_json", "from_json", "merge", "VERDICTS", "NOT_CONVERGED"]

VERDICTS = ("holds", "fails", "holds only when")
NOT_CONVERGED = "not converged"  # the state of a claim a cell of which could not meet its tolerance: no verdict


class Number(NamedTuple):
    """One published number; ``error``: its estimated error (the accuracy contract's, :mod:`evaluation.accuracy`),
    ``nan`` for a count or a number without one. Printed by :func:`evaluation.docs.format_number` (with its error
    the value shows the digits the error supports)."""

    name: str
    value: float
    error: float = math.nan


class ClaimResult(NamedTuple):
    id: str
    source: str  # arXiv id
    title: str
    statement: str
    provenance: str  # where the statement was read: "abstract" (search tool) or "memory" (body, unverified)
    experiment: str
    verdict: str  # "holds", "fails" or "holds only when ..."
    key_number: str
    numbers: tuple[Number, ...]
    figure: str  # figure module name (figures/claims_*.py)


class Outcome(NamedTuple):
    result: ClaimResult
    data: Any  # the figure's arrays (a NamedTuple); None when the claim did not converge (no figure)


class Claim(NamedTuple):
    id: str
    source: str
    title: str
    statement: str
    provenance: str
    experiment: str
    figure: str
    cells: Callable[[bool], list]
    conclude: Callable[[bool, tuple], Outcome]
    requires: Callable[[], str] | None = None  # returns why the claim cannot run here ("" when it can)
    partial: bool = False  # the verdict counts over settings: one whose cells failed is left out and named

    def not_converged(self, failures: Sequence[CellFailed]) -> Outcome:
        """The outcome of this claim when cells of it could not be computed (the accuracy contract refused them):
        no verdict, no numbers, no figure; the key number says which cell failed and why."""
        why = f"{len(failures)} cell(s) failed; first: {failures[0]}"
        return Outcome(ClaimResult(self.id, self.source, self.title, self.statement, self.provenance, self.experiment,
                                   NOT_CONVERGED, why, (), self.figure), None)

    def outcome(self, quick: bool, results: Sequence[Any], cells: Sequence | None = None) -> Outcome:
        """The claim's outcome from its cells' ``results`` (in the order of ``cells(quick)``, one per cell; else a
        ValueError naming the missing cells; ``cells``: ``cells(quick)`` when the caller has built them, as
        :func:`run_ledger` has, else they are built here). A failed cell
        (:class:`~evaluation.sweep.CellFailed`) makes the claim :data:`NOT_CONVERGED`, unless the claim is
        ``partial``: its ``conclude`` then gets the failures in place and leaves their settings out, and the
        result says so: the key number names how many cells failed and the first, and the numbers carry
        ``cells not converged (settings left out)``. A partial claim none of whose cells converged is not
        converged."""
        if not isinstance(self.partial, bool):  # a truthy string made a claim partial without a word
            raise ValueError(f"claim {self.id}: partial must be True or False, got {self.partial!r}")
        if cells is not None and not isinstance(cells, (list, tuple)):
            raise ValueError(f"claim {self.id}: cells must be the list of its cells(quick), got {type(cells).__name__}")
        cells = list(self.cells(quick) if cells is None else cells)
        if len(results) != len(cells):  # a conclude looks its cells up: a short tuple gave its bare KeyError
            missing = ", ".join(map(str, cells[len(results):len(results) + 3])) + (
                ", ..." if len(cells) > len(results) + 3 else "")
            raise ValueError(f"claim {self.id}: {len(results)} results for its {len(cells)} cells (quick={quick}); "
                             + (f"missing: {missing}" if missing else "one result per cell, in the order of cells()"))
        failures = [r for r in results if isinstance(r, CellFailed)]
        if not failures:
            return self.conclude(quick, tuple(results))
        if not self.partial or len(failures) == len(results):
            return self.not_converged(failures)
        out = self.conclude(quick, tuple(results))
        r = out.result
        left_out = (f"; {len(failures)} of {len(results)} cells not converged, their settings left out "
                    f"(first: {failures[0]})")
        return Outcome(r._replace(key_number=r.key_number + left_out,
                                  numbers=r.numbers + (Number("cells not converged (settings left out)",
                                                              float(len(failures))),)), out.data)

    def unavailable(self) -> str:
        return self.requires() if self.requires is not None else ""

    def result(self, verdict: str, key_number: str, numbers: Sequence[tuple]) -> ClaimResult:
        """The :class:`ClaimResult` of this claim (checks the verdict's form); ``numbers``: ``(name, value)`` or
        ``(name, value, error)``."""
        if not (verdict in ("holds", "fails") or verdict.startswith("holds only when ")):
            raise ValueError(f"claim {self.id}: a verdict is 'holds', 'fails' or 'holds only when ...', got {verdict!r}")
        return ClaimResult(self.id, self.source, self.title, self.statement, self.provenance, self.experiment, verdict,
                           key_number, tuple(Number(n[0], float(n[1]), float(n[2]) if len(n) > 2 else math.nan)
                                       for n in numbers), self.figure)


class LedgerRun(NamedTuple):
    outcomes: tuple[Outcome, ...]
    cells: int  # distinct cells
    computed: int
    reused: int
    seconds: float
    codes: tuple[str, ...] = ()  # per outcome: the code version of the claim's cells (:func:`cells_code`)


class RunStamp(NamedTuple):
    """Which run made a ledger entry."""

    quick: bool  # the --quick (coarser) sweeps
    date: str  # when the run ended, UTC, ISO 8601 to the second ("" when unknown: a ledger written before stamps)
    code: str  # the code version of the claim's cells, 12 hex digits (:func:`cells_code`; "" when unknown)


def run_ledger(claims: Sequence[Claim], *, quick: bool = False, cache: Cache | str | None = None, workers: int = 1,
               scheduler: str | None = None, progress: bool = True, retry_failed: bool = False) -> LedgerRun:
    """Run the cells of ``claims`` in one sweep and conclude each claim; a claim a cell of which fails (e.g. it
    cannot meet its tolerance) is :data:`NOT_CONVERGED` (:meth:`Claim.outcome`; a ``partial`` claim concludes on the
    settings that converged and names the rest), and the others conclude.
    ``retry_failed``: compute cells whose failure is cached again (:func:`evaluation.sweep.run_cells`)."""
    if not claims:
        raise ValueError("no claims to run")
    per_claim = [list(c.cells(quick)) for c in claims]
    flat = [cell for cells in per_claim for cell in cells]
    run = run_cells(flat, cache=cache, workers=workers, scheduler=scheduler, progress=progress, desc="ledger cells",
                    keep_going=True, retry_failed=retry_failed)
    outcomes, i = [], 0
    for claim, cells in zip(claims, per_claim):
        outcomes.append(claim.outcome(quick, run.results[i:i + len(cells)], cells))
        i += len(cells)
    # distinct cells: a cached failure is both reused and failed in the sweep's counts (it was counted twice)
    return LedgerRun(tuple(outcomes), len(set(map(cell_key, flat))), run.computed, run.reused, run.seconds,
                     tuple(cells_code(cells) for cells in per_claim))


def evaluate(claim: Claim, *, quick: bool = False, cache: Cache | str | None = None, workers: int = 1,
             progress: bool = False) -> Outcome:
    """One claim's outcome (its cells from the cache where stored)."""
    return run_ledger([claim], quick=quick, cache=cache, workers=workers, progress=progress).outcomes[0]


# --- presentation ---------------------------------------------------------------------------------------
def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _stamp_text(stamp: RunStamp) -> str:
    return f"{'quick' if stamp.quick else 'full'}, {stamp.date or 'date unknown'}, code {stamp.code or 'unknown'}"


def _printed(n: Number) -> str:
    """A number as the docs print it (:func:`evaluation.docs.format_number`): with its error when it has one."""
    if float(n.value).is_integer() and not math.isfinite(n.error):
        return format_number(int(n.value))  # a count
    return format_number(n.value, n.error if math.isfinite(n.error) else None)


def markdown(results: Sequence[ClaimResult], *, quick: bool, seconds: float, note: str = "",
             runs: Sequence[RunStamp] | None = None) -> str:
    """The ledger as Markdown: one table, then a section per claim. ``runs`` (one :class:`RunStamp` per
    result) adds a column saying which run made each entry (a ledger merged from several runs)."""
    if runs is not None and len(runs) != len(results):
        raise ValueError(f"runs has {len(runs)} stamps for {len(results)} results")
    lines = ["# The claims ledger", "",
             "Every verdict is computed exactly (Gaussian-mixture diffusion, exact output laws on grids, no Monte "
             "Carlo) by `python -m evaluation.claims`" + (" --quick (coarser sweeps)" if quick else "") +
             f"; {seconds:.0f} s. Provenance says where the statement was read: `abstract` (the paper's abstract, "
             "read for this ledger) or `memory` (the body, as remembered: unverified wording).", ""]
    if runs is not None:
        lines += ["Entries may come from several runs (`--only`): the run column says which made each one (full or "
                  "--quick sweeps, when, UTC, and the code version of its cells).", ""]
    if note:
        lines += [note, ""]
    run_head, run_rule = (" run |", "---|") if runs is not None else ("", "")
    lines += [f"| id | claim | source | verdict | key number | figure |{run_head}", f"|---|---|---|---|---|---|{run_rule}"]
    for i, r in enumerate(results):
        run_cell = f" {_stamp_text(runs[i])} |" if runs is not None else ""
        lines.append(f"| {r.id} | {_cell(r.title)} | arXiv {r.source} ({r.provenance}) | **{_cell(r.verdict)}** | "
                     f"{_cell(r.key_number)} | [{r.figure}]({r.figure}.png) |{run_cell}")
    lines.append("")
    for i, r in enumerate(results):
        lines += [f"## {r.id}: {r.title}", "", f"- **Source**: arXiv {r.source}; statement read from the {r.provenance}.",
                  f"- **Statement**: {r.statement}", f"- **Experiment**: {r.experiment}",
                  f"- **Verdict**: {r.verdict}", f"- **Key number**: {r.key_number}"]
        if runs is not None:
            lines.append(f"- **Run**: {_stamp_text(runs[i])}")
        lines += ["", "| quantity | value |", "|---|---|"]
        lines += [f"| {_cell(n.name)} | {_printed(n)} |" for n in r.numbers]
        lines += ["", f"![{r.figure}]({r.figure}.png)", ""]
    return "\n".join(lines)


def to_json(results: Sequence[ClaimResult], *, quick: bool, seconds: float,
            runs: Sequence[RunStamp] | None = None) -> str:
    """The ledger as JSON (read back by :func:`from_json`); ``runs``: one :class:`RunStamp` per result."""
    if runs is not None and len(runs) != len(results):
        raise ValueError(f"runs has {len(runs)} stamps for {len(results)} results")

    def num(v: float):
        return v if math.isfinite(v) else repr(v)

    def entry(i: int, r: ClaimResult) -> dict:
        e = {**{k: v for k, v in r._asdict().items() if k != "numbers"},
             "numbers": [{"name": n.name, "value": num(n.value), **({"error": n.error} if math.isfinite(n.error) else {})}
                         for n in r.numbers]}
        return e if runs is None else {**e, "run": runs[i]._asdict()}

    return json.dumps({"quick": quick, "seconds": round(seconds, 1),
                       "claims": [entry(i, r) for i, r in enumerate(results)]}, indent=1)


def from_json(text: str) -> tuple[list[ClaimResult], list[RunStamp]]:
    """The entries of a ledger written by :func:`to_json`, with their run stamps (entries written before
    stamps get the file's ``quick`` and an unknown date and code). ``ValueError`` saying what is wrong with
    a file that is not such a ledger."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("claims"), list):
            raise ValueError("no list of claims")
        results, runs = [], []
        for e in data["claims"]:
            numbers = tuple(Number(str(n["name"]), float(n["value"]), float(n.get("error", math.nan))) for n in e["numbers"])
            results.append(ClaimResult(**{k: str(e[k]) for k in ClaimResult._fields if k != "numbers"},
                                       numbers=numbers))
            run = e.get("run", {"quick": data.get("quick", False), "date": "", "code": ""})
            runs.append(RunStamp(bool(run["quick"]), str(run["date"]), str(run["code"])))
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"not a claims ledger ({type(err).__name__}: {err})") from err
    return results, runs


def merge(old: Sequence[tuple[ClaimResult, RunStamp]], new: Sequence[tuple[ClaimResult, RunStamp]],
          order: Sequence[str]) -> list[tuple[ClaimResult, RunStamp]]:
    """The entries of ``new`` and those of ``old`` whose claim ``new`` does not have, in the ledger ``order``
    (claim ids); entries of ids not in ``order`` (claims that no longer exist) are dropped."""
    by_id = {r.id: (r, s) for r, s in old}
    by_id.update({r.id: (r, s) for r, s in new})
    return [by_id[i] for i in order if i in by_id]
