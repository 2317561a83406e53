"""The claims ledger: what a claim is, how its cells are run, and the table it ends in.

A :class:`Claim` names its source (arXiv id), the statement tested, where the statement was read (the
abstract, read through the search tool, or the body/memory), the exact experiment, a figure, and two
functions: ``cells(quick) -> [cell]`` (sweep cells, :mod:`evaluation.sweep`) and
``conclude(quick, results) -> Outcome`` (the verdict and the figure's arrays from the cells' results, in the
same order). :func:`run_ledger` runs the cells of every selected claim through one sweep (shared cells are
computed once), then concludes each claim.
"""
from __future__ import annotations

import json
import math
from typing import Any, Callable, NamedTuple, Sequence

from ..sweep import Cache, run_cells

__all__ = ["Number", "ClaimResult", "Outcome", "Claim", "LedgerRun", "run_ledger", "evaluate", "markdown", "to_json",
           "VERDICTS"]

VERDICTS = ("holds", "fails", "holds only when")


class Number(NamedTuple):
    name: str
    value: float


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
    data: Any  # the figure's arrays (a NamedTuple)


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

    def unavailable(self) -> str:
        return self.requires() if self.requires is not None else ""

    def result(self, verdict: str, key_number: str, numbers: Sequence[tuple[str, float]]) -> ClaimResult:
        """The :class:`ClaimResult` of this claim (checks the verdict's form)."""
        if not (verdict in ("holds", "fails") or verdict.startswith("holds only when ")):
            raise ValueError(f"claim {self.id}: a verdict is 'holds', 'fails' or 'holds only when ...', got {verdict!r}")
        return ClaimResult(self.id, self.source, self.title, self.statement, self.provenance, self.experiment, verdict,
                           key_number, tuple(Number(n, float(v)) for n, v in numbers), self.figure)


class LedgerRun(NamedTuple):
    outcomes: tuple[Outcome, ...]
    cells: int  # distinct cells
    computed: int
    reused: int
    seconds: float


def run_ledger(claims: Sequence[Claim], *, quick: bool = False, cache: Cache | str | None = None, workers: int = 1,
               scheduler: str | None = None, progress: bool = True) -> LedgerRun:
    """Run the cells of ``claims`` in one sweep and conclude each claim."""
    if not claims:
        raise ValueError("no claims to run")
    per_claim = [list(c.cells(quick)) for c in claims]
    flat = [cell for cells in per_claim for cell in cells]
    run = run_cells(flat, cache=cache, workers=workers, scheduler=scheduler, progress=progress, desc="ledger cells")
    outcomes, i = [], 0
    for claim, cells in zip(claims, per_claim):
        outcomes.append(claim.conclude(quick, run.results[i:i + len(cells)]))
        i += len(cells)
    return LedgerRun(tuple(outcomes), run.computed + run.reused, run.computed, run.reused, run.seconds)


def evaluate(claim: Claim, *, quick: bool = False, cache: Cache | str | None = None, workers: int = 1,
             progress: bool = False) -> Outcome:
    """One claim's outcome (its cells from the cache where stored)."""
    return run_ledger([claim], quick=quick, cache=cache, workers=workers, progress=progress).outcomes[0]


# --- presentation ---------------------------------------------------------------------------------------
def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(results: Sequence[ClaimResult], *, quick: bool, seconds: float, note: str = "") -> str:
    lines = ["# The claims ledger", "",
             "Every verdict is computed exactly (Gaussian-mixture diffusion, exact output laws on grids, no Monte "
             "Carlo) by `python -m evaluation.claims`" + (" --quick (coarser sweeps)" if quick else "") +
             f"; {seconds:.0f} s. Provenance says where the statement was read: `abstract` (the paper's abstract, "
             "read for this ledger) or `memory` (the body, as remembered: unverified wording).", ""]
    if note:
        lines += [note, ""]
    lines += ["| id | claim | source | verdict | key number | figure |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.id} | {_cell(r.title)} | arXiv {r.source} ({r.provenance}) | **{_cell(r.verdict)}** | "
                     f"{_cell(r.key_number)} | [{r.figure}]({r.figure}.png) |")
    lines.append("")
    for r in results:
        lines += [f"## {r.id}: {r.title}", "", f"- **Source**: arXiv {r.source}; statement read from the {r.provenance}.",
                  f"- **Statement**: {r.statement}", f"- **Experiment**: {r.experiment}",
                  f"- **Verdict**: {r.verdict}", f"- **Key number**: {r.key_number}", "",
                  "| quantity | value |", "|---|---|"]
        lines += [f"| {_cell(n.name)} | {n.value:.4g} |" for n in r.numbers]
        lines += ["", f"![{r.figure}]({r.figure}.png)", ""]
    return "\n".join(lines)


def to_json(results: Sequence[ClaimResult], *, quick: bool, seconds: float) -> str:
    def num(v: float):
        return v if math.isfinite(v) else repr(v)

    return json.dumps({"quick": quick, "seconds": round(seconds, 1), "claims": [
        {**{k: v for k, v in r._asdict().items() if k != "numbers"},
         "numbers": [{"name": n.name, "value": num(n.value)} for n in r.numbers]} for r in results]}, indent=1)
