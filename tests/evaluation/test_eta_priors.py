"""What each computed cell cost, recorded by the sweep (``<cache>/seconds.jsonl``), and the ETA's priors made from it
(issue 19, item 4: an ETA right within 2x from the first minute). Small cells, a simulated clock where timing matters:
no test here depends on the machine's speed."""
import dataclasses
import json
from typing import NamedTuple

import pytest

from evaluation import sweep
from evaluation.sweep import SECONDS_LOG, Cache, CacheWarning, cell_key, cell_kind, run_cells


@dataclasses.dataclass(frozen=True)
class Tick:
    """A test cell with a declared cost."""

    x: int
    cost: float = 1.0


class TickResult(NamedTuple):
    y: int


@cell_kind(Tick)
def tick(cell: Tick) -> TickResult:
    return TickResult(cell.x * cell.x)


def _lines(root):
    path = root / SECONDS_LOG
    return [json.loads(t) for t in path.read_text().splitlines()] if path.exists() else []


def test_the_log_records_computed_cells_once_and_cached_cells_not(tmp_path):
    cells = [Tick(1, 2.0), Tick(2, 3.0), Tick(1, 2.0)]  # a duplicate is computed once
    first = run_cells(cells, cache=tmp_path, progress=False)
    assert first.computed == 2
    lines = _lines(tmp_path)
    assert [r["key"] for r in lines] == [cell_key(Tick(1, 2.0)), cell_key(Tick(2, 3.0))]
    for r, cost in zip(lines, (2.0, 3.0)):
        assert r["kind"] == f"{__name__}:Tick" and r["class"] == r["kind"] and r["cost"] == cost
        assert r["seconds"] >= 0 and r["workers"] == 1 and r["run"] <= r["at"]
    again = run_cells(cells + [Tick(3)], cache=tmp_path, progress=False)  # two cached, one new
    assert (again.computed, again.reused) == (1, 2)
    assert [r["key"] for r in _lines(tmp_path)] == [r["key"] for r in lines] + [cell_key(Tick(3))]
    assert Cache(tmp_path).keys() == sorted(cell_key(Tick(x, c)) for x, c in ((1, 2.0), (2, 3.0), (3, 1.0)))


def test_a_log_that_cannot_be_written_warns_once_and_keeps_the_results(tmp_path):
    (tmp_path / SECONDS_LOG).mkdir()  # a folder where the log goes
    with pytest.warns(CacheWarning, match=rf"cannot append to the log of cell seconds {tmp_path / SECONDS_LOG} "
                                          r"\(IsADirectoryError") as caught:
        result = run_cells([Tick(4), Tick(5)], cache=tmp_path, progress=False)
    assert [r.y for r in result.results] == [16, 25] and result.computed == 2
    assert len([w for w in caught if w.category is CacheWarning]) == 1
    assert caught[0].filename == __file__  # attributed to the caller of run_cells
    assert len(Cache(tmp_path).keys()) == 2  # the results are cached all the same
