"""What each computed cell cost, recorded by the sweep (``<cache>/seconds.jsonl``), and the ETA's priors made from it
(issue 19, item 4: an ETA right within 2x from the first minute). Small cells, a simulated clock where timing matters:
no test here depends on the machine's speed."""
import dataclasses
import json
import math
import time
from typing import NamedTuple

import pytest
from tqdm.auto import tqdm

from evaluation import costs, sweep
from evaluation.sweep import SECONDS_LOG, Cache, CacheWarning, Eta, cell_key, cell_kind, run_cells


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


@dataclasses.dataclass(frozen=True)
class Refused:
    """A test cell that fails its tolerance after ``delay`` seconds (a ValueError: cached as a failure)."""

    delay: float = 0.05


@cell_kind(Refused)
def refused(cell: Refused) -> TickResult:
    time.sleep(cell.delay)
    raise ValueError("not converged")


def test_a_cell_that_fails_its_tolerance_is_logged_with_its_seconds(tmp_path):
    """Session 15: the cold job's 26 failing 2-D laws (about a quarter of its wall time) were missing from the log, so
    the priors made from it left out their cost. A ValueError on a local worker is logged, ``failed`` true, with its
    seconds from when the worker took it; its cached failure is not logged again on a rerun."""
    out = run_cells([Tick(5), Refused()], cache=tmp_path, progress=False, keep_going=True)
    assert (out.computed, out.failed) == (1, 1)
    lines = _lines(tmp_path)
    assert [(r["key"], r["failed"]) for r in lines] == [(cell_key(Tick(5)), False), (cell_key(Refused()), True)]
    assert lines[1]["seconds"] >= 0.05
    run_cells([Refused()], cache=tmp_path, progress=False, keep_going=True)  # read as a cached failure
    assert len(_lines(tmp_path)) == 2


def test_a_log_that_cannot_be_written_warns_once_and_keeps_the_results(tmp_path):
    (tmp_path / SECONDS_LOG).mkdir()  # a folder where the log goes
    with pytest.warns(CacheWarning, match=rf"cannot append to the log of cell seconds {tmp_path / SECONDS_LOG} "
                                          r"\(IsADirectoryError") as caught:
        result = run_cells([Tick(4), Tick(5)], cache=tmp_path, progress=False)
    assert [r.y for r in result.results] == [16, 25] and result.computed == 2
    assert len([w for w in caught if w.category is CacheWarning]) == 1
    assert caught[0].filename == __file__  # attributed to the caller of run_cells
    assert len(Cache(tmp_path).keys()) == 2  # the results are cached all the same


# --- the table ------------------------------------------------------------------------------------------------------
def test_the_shipped_table_parses_and_says_where_it_comes_from():
    table = json.loads(costs.PRIORS.read_text())
    for field in ("about", "run", "machine", "written", "command"):
        assert isinstance(table[field], str) and table[field]
    priors = costs.read_priors()
    assert len(priors) >= len(table["classes"]) and all(
        isinstance(a, float) and isinstance(b, float) and a >= 0 and b >= 0 for a, b in priors.values())
    assert sweep.eta_of(tqdm(disable=True)).priors == priors  # the bars of run_cells and paper_plots use it


@pytest.mark.parametrize("text, what", [
    ("{not json", r"cannot be read \(JSONDecodeError"),
    ('{"classes": {}}', "is not a table of 'classes' and 'kinds'"),
    ('{"classes": {"k c": {"fixed": 0, "rate": -1}}, "kinds": {}}', r"classes\['k c'\] = .* is not"),
    ('{"classes": {}, "kinds": {"k": {"fixed": 1}}}', r"kinds\['k'\] = .* is not"),
    ('{"classes": {"k c": {"fixed": NaN, "rate": 1}}, "kinds": {}}', r"classes\['k c'\] = .* is not"),
])
def test_a_malformed_table_is_refused_naming_the_file(tmp_path, text, what):
    path = tmp_path / "class_seconds.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"table of class seconds {path}:? .*{what}"):
        costs.read_priors(path)
    assert costs.read_priors(tmp_path / "absent.json") == {}  # no table: no priors (today's behaviour)


def test_the_table_is_written_from_a_runs_log_and_read_back(tmp_path, capsys):
    run_cells([Tick(x, float(x)) for x in range(1, 5)], cache=tmp_path, progress=False)
    with (tmp_path / SECONDS_LOG).open("a") as f:  # a later run of one cell: not the largest run
        f.write(json.dumps({"key": "k", "kind": f"{__name__}:Tick", "class": f"{__name__}:Tick", "cost": 1.0,
                            "seconds": 1e3, "run": "9999-01-01T00:00:00Z"}) + "\n")
    records = costs.read_log(tmp_path / SECONDS_LOG)
    out = tmp_path / "table.json"
    costs.main(["--write-priors", str(tmp_path), "--out", str(out)])
    assert "wrote" in capsys.readouterr().out
    table = json.loads(out.read_text())
    first = [r for r in records if r["run"] == records[0]["run"]]
    assert table["cells"] == 4 and table["run"] == records[0]["run"] and "--write-priors" in table["command"]
    sums = [sum(v) for v in zip(*[(1.0, r["cost"], r["seconds"], r["cost"] ** 2, r["cost"] * r["seconds"])
                                  for r in first])]
    a, b = costs.fit_line(sums)
    assert costs.read_priors(out)[f"{__name__}:Tick"] == pytest.approx((a, b), rel=1e-5, abs=1e-12)
    costs.write_priors(tmp_path, out, run="9999-01-01T00:00:00Z")  # the run asked for
    assert costs.read_priors(out)[f"{__name__}:Tick"] == (0.0, 1e3)
    with pytest.raises(ValueError, match="has no run that began at 'never'"):
        costs.write_priors(tmp_path, out, run="never")


def test_a_malformed_log_line_is_refused_naming_the_file_and_line(tmp_path):
    path = tmp_path / SECONDS_LOG
    good = {"key": "k", "kind": "m:K", "class": "m:K", "cost": 1.0, "seconds": 0.5, "run": "r"}
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "seconds": -1.0}) + "\n")
    with pytest.raises(ValueError, match=rf"{path}:2 is not a cell's record"):
        costs.read_log(path)
    path.write_text(json.dumps(good) + "\n{broken\n")
    with pytest.raises(ValueError, match=rf"{path}:2 is not a JSON record"):
        costs.read_log(path)


# --- the Eta with a table -------------------------------------------------------------------------------------------
PRIORS = {"m:K a": (0.0, 2.0), "m:K b": (1.0, 1.0), "m:K c": (0.0, 1.0), "m:K": (0.0, 10.0)}


def _eta(priors=PRIORS):
    clock = Clock()
    eta = Eta(clock=clock, priors=priors)
    for key, group, cost in (("a1", "m:K a", 3.0), ("a2", "m:K a", 3.0), ("b1", "m:K b", 5.0), ("b2", "m:K b", 5.0),
                             ("c1", "m:K c", 4.0), ("d1", "m:K d", 2.0), ("o1", "m:Other", 1.0)):
        eta.add(key, group.split()[0], cost, group=group)
    return eta, clock


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_unmeasured_class_is_estimated_from_the_table_scaled_by_the_measured_speed():
    eta, clock = _eta()
    assert eta.speed == 1.0  # nothing measured: the table as it is
    assert [eta.estimate(k) for k in ("a2", "b1", "d1", "o1")] == [6.0, 6.0, 20.0, None]  # d: its kind's; o: none
    assert eta.eta() is None  # a kind in neither the table nor measured: unknown, as without a table
    eta.begin("a1")
    clock.now = 12.0
    eta.finish("a1", 12.0)  # the table said 6 s: this machine is 2x slower
    assert eta.speed == 2.0
    assert eta.estimate("a2") == 12.0  # measured: its own line (one task: seconds proportional to cost)
    assert eta.estimate("b1") == 12.0  # not measured: 2 x (1 + 1 x 5)
    assert eta.estimate("d1") == pytest.approx(8.0)  # its kind is measured now: the kind's line, as without a table
    eta.begin("b1")
    eta.finish("b1", 3.0)  # the table said 6 s: 0.5
    eta.begin("c1")
    eta.finish("c1", 16.0)  # 4 s: 4
    assert eta.speed == 2.0  # the median of 2, 0.5 and 4
    assert eta.estimate("b2") == 3.0  # measured: the measurement, not the table


def test_a_measured_class_is_estimated_as_without_a_table():
    with_table, c1 = _eta()
    without, c2 = _eta(priors=None)
    for eta, clock in ((with_table, c1), (without, c2)):
        for key, seconds in (("a1", 7.0), ("b1", 2.0), ("o1", 1.5)):
            eta.begin(key)
            clock.now += seconds
            eta.finish(key, seconds)
        eta.begin("b2")
        clock.now += 30.0  # running far longer than its class's line: counted as if it finished now
    assert with_table.speed != 1.0
    for key in ("a2", "b2"):
        assert with_table.estimate(key) == without.estimate(key)


@pytest.mark.parametrize("priors", [{"m:K a": (1.0,)}, {"m:K a": (1.0, -2.0)}, {"m:K a": (math.inf, 1.0)},
                                    {"m:K a": [1.0, 2.0]}])
def test_a_bad_prior_is_refused(priors):
    with pytest.raises(ValueError, match=r"Eta: the prior of class 'm:K a' must be \(fixed seconds"):
        Eta(priors=priors)


def test_the_table_is_no_results_source():
    """The table changes no result, so regenerating it must not change any cell's code version: no kind's sources
    count the whole ``evaluation`` package (where the table lies) or the engine modules that read it."""
    from evaluation.claims.cells import OutputCell
    from evaluation.flows import LawCell

    assert costs.PRIORS.parent.name == "evaluation"
    for kind in (OutputCell, LawCell, Tick):
        sources = sweep.result_sources(kind)
        assert not {"evaluation", "evaluation.costs", "evaluation.sweep"} & set(sources), sources
