"""A cell that cannot meet its tolerance does not stop the others (issue 19, the accuracy contract): under
``run_cells(..., keep_going=True)`` it gives a :class:`CellFailed` (cached: the same code and configuration fail
alike), the ledger writes its claim as
``not converged`` with the cell and the error, and the claims that did converge keep their verdicts."""
import dataclasses
from typing import NamedTuple

import pytest

from evaluation.claims.ledger import NOT_CONVERGED, Claim, Outcome, markdown, run_ledger
from evaluation.sweep import CellFailed, cell_kind, run_cells
from figures.claims import draw


@dataclasses.dataclass(frozen=True)
class Tolerant:
    """``x + 1``; refuses like the accuracy contract does when ``x`` is negative."""

    x: float


class TolerantResult(NamedTuple):
    y: float


@cell_kind(Tolerant)
def tolerant(cell: Tolerant) -> TolerantResult:
    if cell.x < 0:
        raise ValueError(f"cell x={cell.x}: not converged to tol 0.0005 within 16385 nodes")
    return TolerantResult(cell.x + 1)


def test_a_failing_cell_stops_the_sweep_by_default(tmp_path):
    with pytest.raises(RuntimeError, match="x=-1.0: not converged"):
        run_cells([Tolerant(1.0), Tolerant(-1.0)], cache=tmp_path, progress=False)


CALLS = []  # the x of every Flaky cell computed in this process


@dataclasses.dataclass(frozen=True)
class Flaky:
    """Raises ``ValueError`` for ``x < 0`` (deterministic) and ``MemoryError`` for ``x == 0`` (not)."""

    x: float


@cell_kind(Flaky)
def flaky(cell: Flaky) -> TolerantResult:
    CALLS.append(cell.x)
    if cell.x == 0:
        raise MemoryError("out of memory")
    if cell.x < 0:
        raise ValueError(f"cell x={cell.x}: not converged")
    return TolerantResult(cell.x + 1)


def test_keep_going_records_the_failure_and_caches_a_value_error_only(tmp_path):
    """Issue 19: the full job's claims figure asked again for 37 cells that had failed in the sweep and, failures
    being uncached, recomputed them one by one in one process (about an hour). A ValueError (a tolerance that cannot
    be met, a refused configuration) is deterministic, so it is cached; other errors are tried again."""
    cells = [Flaky(1.0), Flaky(-1.0), Flaky(0.0), Flaky(2.0)]
    CALLS.clear()
    run = run_cells(cells, cache=tmp_path, progress=False, keep_going=True)
    assert run.results[0] == TolerantResult(2.0) and run.results[3] == TolerantResult(3.0)
    bad, oom = run.results[1], run.results[2]
    assert isinstance(bad, CellFailed) and "Flaky(x=-1.0)" in bad.cell
    assert bad.error.startswith("ValueError: cell x=-1.0")
    assert isinstance(oom, CellFailed) and oom.error == "MemoryError: out of memory"
    assert (run.computed, run.reused, run.failed) == (2, 0, 2)
    CALLS.clear()
    again = run_cells(cells, cache=tmp_path, progress=False, keep_going=True)
    assert CALLS == [0.0]  # only the memory error is tried again; the ValueError is read back
    assert again.results[1] == bad and isinstance(again.results[2], CellFailed)
    assert (again.computed, again.reused, again.failed) == (0, 3, 2)
    CALLS.clear()
    retried = run_cells(cells, cache=tmp_path, progress=False, keep_going=True, retry_failed=True)
    assert sorted(CALLS) == [-1.0, 0.0] and retried.results[1] == bad
    with pytest.raises(RuntimeError, match=r"x=-1.0: not converged \(a failure cached in .*retry_failed=True"):
        run_cells(cells[:2], cache=tmp_path, progress=False)  # without keep_going a cached failure stops the sweep
    with pytest.raises(ValueError, match="keep_going must be True or False"):
        run_cells(cells, cache=tmp_path, progress=False, keep_going="yes")
    with pytest.raises(ValueError, match="retry_failed must be True or False"):
        run_cells(cells, cache=tmp_path, progress=False, keep_going=True, retry_failed="yes")


def test_a_cached_failure_is_a_failure_without_keep_going_too(tmp_path):
    with pytest.raises(RuntimeError, match="x=-2.0: not converged"):
        run_cells([Tolerant(-2.0)], cache=tmp_path, progress=False)  # computed: fails, and the failure is cached
    with pytest.raises(RuntimeError, match="x=-2.0: not converged.*cached"):
        run_cells([Tolerant(-2.0)], cache=tmp_path, progress=False)


class _Data(NamedTuple):
    y: tuple


def _claim(cid: str, xs: list[float]) -> Claim:
    def conclude(quick, results):
        c = _claim(cid, xs)
        return Outcome(c.result("holds", f"y = {results[0].y}", [("y", results[0].y, 1e-4)]), _Data(tuple(r.y for r in results)))

    return Claim(cid, "0000.00000", f"claim {cid}", "a statement", "memory", "an experiment", "claims_theorem1",
                 lambda quick: [Tolerant(x) for x in xs], conclude)


def test_the_ledger_writes_a_claim_whose_cell_failed_as_not_converged(tmp_path):
    run = run_ledger([_claim("good", [1.0, 2.0]), _claim("bad", [3.0, -4.0])], cache=tmp_path, progress=False)
    good, bad = run.outcomes
    assert good.result.verdict == "holds" and good.data == _Data((2.0, 3.0))
    assert bad.result.verdict == NOT_CONVERGED and bad.data is None and bad.result.numbers == ()
    assert "Tolerant(x=-4.0)" in bad.result.key_number and "not converged to tol 0.0005" in bad.result.key_number
    assert (run.cells, run.computed) == (4, 3)
    table = markdown([good.result, bad.result], quick=True, seconds=1.0)
    assert f"**{NOT_CONVERGED}**" in table
    paths, failed = draw([bad], tmp_path / "figs")  # nothing to draw, and not a failure
    assert (paths, failed) == ([], [])


def _partial_claim(cid: str, xs: list[float]) -> Claim:
    """A claim that counts over settings (one cell each) and leaves out the settings whose cell failed."""

    def conclude(quick, results):
        ys = [r.y for r in results if not isinstance(r, CellFailed)]
        c = _partial_claim(cid, xs)
        return Outcome(c.result("holds", f"{len(ys)} settings", [("settings", len(ys))]), _Data(tuple(ys)))

    return _claim(cid, xs)._replace(conclude=conclude, partial=True)


def test_a_partial_claim_concludes_on_the_settings_that_converged_and_names_the_rest(tmp_path):
    """Session 10: reg-samples (1356 cells) and schedules (48) counted over many settings, and one failed cell of
    either wrote the whole claim as not converged. A partial claim concludes on the converged settings, and its
    result says how many cells were left out and which failed first; a claim that is not partial still refuses."""
    run = run_ledger([_partial_claim("part", [1.0, -2.0, 3.0, -4.0]), _claim("whole", [1.0, -2.0])],
                     cache=tmp_path, progress=False)
    part, whole = run.outcomes
    assert part.result.verdict == "holds" and part.data == _Data((2.0, 4.0))
    assert part.result.key_number.startswith("2 settings; 2 of 4 cells not converged, their settings left out")
    assert "Tolerant(x=-2.0)" in part.result.key_number and "not converged to tol 0.0005" in part.result.key_number
    assert part.result.numbers[-1].name == "cells not converged (settings left out)"
    assert part.result.numbers[-1].value == 2.0
    assert whole.result.verdict == NOT_CONVERGED
    none = run_ledger([_partial_claim("none", [-1.0, -3.0])], cache=tmp_path, progress=False).outcomes[0]
    assert none.result.verdict == NOT_CONVERGED and none.data is None  # nothing converged: nothing to conclude on


def test_a_failure_names_its_cell_once():
    """A cell's own ValueError begins with the cell's repr (the accuracy contract names the cell it refuses); the
    ledger's key number printed it twice, 200 characters apart. The repr, cut at 200 characters in ``cell``, is
    dropped from the reason; a message that does not begin with it is kept whole."""
    cell = "OutputCell(law='classes_2d', method=Method(rule='cfg', w=1.0), grid=(-3.5, 3.5, 51), tol=None)"
    own = CellFailed(cell[:40], f"ValueError: {cell}: the law does not reach tol 0.005 on grid (-7.0, 7.0, 401)")
    assert own.reason == "ValueError: the law does not reach tol 0.005 on grid (-7.0, 7.0, 401)"
    assert str(own) == f"cell {cell[:40]} failed: {own.reason}"
    assert str(own).count("classes_2d") == 1
    other = CellFailed(cell[:40], "MemoryError: out of memory")
    assert other.reason == other.error and str(other) == f"cell {cell[:40]} failed: MemoryError: out of memory"
    unclosed = CellFailed("Cell(x=1", "ValueError: Cell(x=1 is broken")
    assert unclosed.reason == unclosed.error
