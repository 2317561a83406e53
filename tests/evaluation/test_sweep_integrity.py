"""The sweep cache checks what it reads (issue 20, defects 2 and 4), Ctrl-C ends a sweep with one line saying
what is kept (issue 20), and the progress bar's ETA follows the cells' declared cost (issue 19, item 4)."""
import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest
from tqdm.auto import tqdm

from evaluation import sweep
from evaluation.sweep import BAR_FORMAT, Cache, CacheWarning, SweepInterrupted, cell_key, cell_kind, run_cells

ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Work:
    """``x + 0.5`` after ``0.05 * weight`` seconds (``cost = weight`` unless ``declare`` is False); ``log`` gets
    one line per computation; ``interrupt`` raises KeyboardInterrupt instead (Ctrl-C in the middle of it)."""

    x: float
    weight: float = 1.0
    declare: bool = True
    log: str = ""
    interrupt: bool = False
    unit: float = 0.05

    @property
    def cost(self):
        return self.weight if self.declare else None


class WorkResult(NamedTuple):
    x: float
    y: float


@cell_kind(Work)
def work(cell: Work) -> WorkResult:
    if cell.interrupt:
        raise KeyboardInterrupt
    for _ in tqdm(range(1), disable=True):  # as the exact engines do (tqdm's lock is made in the worker)
        time.sleep(cell.unit * cell.weight)
    if cell.log:
        with open(cell.log, "a") as f:
            f.write(f"{cell.x!r}\n")
    return WorkResult(cell.x, cell.x + 0.5)


def _stored(tmp_path, x=1.0):
    log = tmp_path / "log"
    cell = Work(x, log=str(log))
    cache = Cache(tmp_path / "cache")
    run_cells([cell], cache=cache, progress=False)
    return cell, cache, cache.path(cell), log


def _rerun_recomputes(cell, cache, path, log):
    """The damaged file is a miss: one warning naming it, the cell recomputed (right number) and the file
    overwritten with a record that reads back without a warning."""
    with pytest.warns(CacheWarning, match=str(path)):
        run = run_cells([cell], cache=cache, progress=False)
    assert (run.computed, run.reused) == (1, 0) and run.results[0].y == cell.x + 0.5
    assert log.read_text().count("\n") == 2  # computed at first, and again now
    with _no_warning():
        assert cache.load(cell) == (True, WorkResult(cell.x, cell.x + 0.5))


class _no_warning:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("error", CacheWarning)

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)


def test_an_edited_number_is_not_reused(tmp_path):
    """Defect 2: an edited number in a cache file was read back as the result (a published number changed)."""
    cell, cache, path, log = _stored(tmp_path)
    payload = json.loads(path.read_text())
    payload["result"]["fields"]["y"] = 0.123
    path.write_text(json.dumps(payload))
    _rerun_recomputes(cell, cache, path, log)


def test_another_cells_file_is_not_reused(tmp_path):
    """Defect 2: another cell's file under this cell's name, as copied (its own key) and with the key edited to
    match (its configuration still says which cell it is)."""
    cell, cache, path, log = _stored(tmp_path)
    other = Work(7.0)
    run_cells([other], cache=cache, progress=False)
    path.write_text(cache.path(other).read_text())
    with pytest.warns(CacheWarning, match="key"):
        assert cache.load(cell) == (False, None)
    payload = json.loads(cache.path(other).read_text())
    payload["key"] = cell_key(cell)
    path.write_text(json.dumps(payload))
    with pytest.warns(CacheWarning, match="configuration"):
        assert cache.load(cell) == (False, None)
    _rerun_recomputes(cell, cache, path, log)


def test_an_older_format_is_not_reused(tmp_path):
    cell, cache, path, log = _stored(tmp_path)
    payload = json.loads(path.read_text())
    payload["format"] = sweep.FORMAT - 1
    path.write_text(json.dumps(payload))
    with pytest.warns(CacheWarning, match="format"):
        assert cache.load(cell) == (False, None)
    _rerun_recomputes(cell, cache, path, log)


def _undecodable(path, cell):
    """A record with every check right but a result naming a type that does not exist."""
    result = {"__type__": "tests.evaluation.test_sweep_integrity:Missing", "fields": {}}
    return json.dumps({"format": sweep.FORMAT, "key": cell_key(cell), "config": sweep.encode(cell), "result": result,
                       "sha256": sweep._digest(result)})


@pytest.mark.parametrize("text", ["{}", "[]", '"a string"', "3", '{"format": 2}', "not json", "bytes", "undecodable"])
def test_a_file_of_the_wrong_shape_is_a_miss(tmp_path, text):
    """Defect 4: ``{}`` or a list broke every later run with a bare KeyError / TypeError naming no file."""
    cell, cache, path, log = _stored(tmp_path)
    if text == "undecodable":
        path.write_text(_undecodable(path, cell))
    elif text == "bytes":
        path.write_bytes(b"\xff\xfe\x00garbage")
    else:
        path.write_text(text)
    _rerun_recomputes(cell, cache, path, log)


def test_an_unwritable_cache_is_refused_before_any_cell(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    log = tmp_path / "log"
    with pytest.raises(OSError, match=f"cannot write to the cell cache {blocker / 'c'}.*REG_GUIDANCE_CACHE"):
        run_cells([Work(1.0, log=str(log))], cache=blocker / "c", progress=False)
    assert not log.exists()


# --- Ctrl-C -----------------------------------------------------------------------------------------------
def test_ctrl_c_in_a_cell_says_what_is_kept_and_the_rerun_resumes(tmp_path):
    cache = Cache(tmp_path / "cache")
    # run in this order: the cheapest of the kind first (it measures the kind's rate), then the costliest first
    cells = [Work(float(i), weight=5 - i) for i in range(4)]
    with pytest.raises(SweepInterrupted) as e:  # cells 3, 0, 1 are done when cell 2 is interrupted
        run_cells(cells[:2] + [dataclasses.replace(cells[2], interrupt=True)] + cells[3:], cache=cache, progress=False)
    assert str(e.value) == (f"interrupted: 3 of 4 cells computed and cached in {cache.root} (3 in this run); "
                            "rerun to resume")
    assert isinstance(e.value, KeyboardInterrupt) and (e.value.cached, e.value.total) == (3, 4)
    again = run_cells(cells, cache=cache, progress=False)
    assert (again.reused, again.computed) == (3, 1)


def test_ctrl_c_counts_only_the_cells_it_cached(tmp_path):
    """Issue 20 (nothing silent): the line said "N of M cells computed and cached" counting every finished cell, also
    one that failed under keep_going (never cached) or whose result could not be stored (a folder in the way)."""
    cache = Cache(tmp_path / "cache")
    cells = [Work(1.0, weight=0.2), Work(2.0, weight=0.4), Work(3.0, weight=0.25, interrupt=True),
             Work(4.0, weight=0.3)]
    cache.path(cells[1]).mkdir(parents=True)  # cell 1 cannot be stored
    with pytest.warns(CacheWarning, match=str(cache.path(cells[1]))), pytest.raises(SweepInterrupted) as e:
        run_cells(cells, cache=cache, progress=False)  # order: cell 0 (the probe: cheapest), 1, 3, then 2 interrupts
    assert str(e.value) == (f"interrupted: 2 of 4 cells computed and cached in {cache.root} (2 in this run); "
                            "rerun to resume")
    assert cache.keys() == sorted(cell_key(c) for c in (cells[0], cells[3]))


_INTERRUPTED_POOL = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a suite started in the background ignores it)
from tests.evaluation.test_sweep_integrity import Work
from evaluation.sweep import SweepInterrupted, run_cells
try:
    run_cells([Work(float(i), unit=float(sys.argv[2])) for i in range(8)], cache=sys.argv[1], workers=2,
              progress=False)
except SweepInterrupted as err:
    print(err, file=sys.stderr)
    sys.exit(130)
"""


@pytest.mark.slow  # spawns two workers that import torch: 21 s on a loaded 2-core machine
def test_ctrl_c_ends_local_workers_at_once_without_tracebacks(tmp_path):
    """Ctrl-C reaches the whole process group (parent and workers): the workers leave it to the parent, which
    ends them at once (not after their running cells) and says what is kept in one line."""
    cache = Cache(tmp_path / "cache")
    proc = subprocess.Popen([sys.executable, "-c", _INTERRUPTED_POOL, str(cache.root), "0.2"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.time() + 120
        while len(cache.keys()) < 2:  # the first two cells take 0.2 s each; then the next two are running
            assert proc.poll() is None and time.time() < deadline, "the sweep ended before it could be interrupted"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)
        t0 = time.time()
        _, err = proc.communicate(timeout=60)
        waited = time.time() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Warning" not in err, err  # e.g. "leaked semaphore objects" at exit
    line = err.strip().splitlines()[-1]
    assert line.startswith("interrupted: ") and line.endswith(f"cells computed and cached in {cache.root} "
                                                              f"({len(cache.keys())} in this run); rerun to resume")
    assert f"{len(cache.keys())} of 8 cells" in line
    assert waited < 10


# --- progress -------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Sampled:
    """A Monte Carlo-like cell whose declared cost is on another scale than :class:`Work`'s (1000 per 0.005 s)."""

    x: float

    @property
    def cost(self):
        return 1000.0


@cell_kind(Sampled)
def sampled(cell: Sampled) -> WorkResult:
    time.sleep(0.005)
    return WorkResult(cell.x, cell.x)


class _Recording(tqdm):
    """A bar that records (seconds since start, progress fraction, the bar's ETA in seconds or None, postfix) at
    every redraw."""

    def __init__(self, *a, **k):
        super().__init__(*a, file=io.StringIO(), **k)
        self.t0, self.marks = time.perf_counter(), []

    def set_postfix_str(self, s="", refresh=True):
        out = super().set_postfix_str(s, refresh)
        eta = getattr(self, "eta", None)
        self.marks.append((time.perf_counter() - self.t0, self.n / self.total if self.total else 0.0,
                           eta.eta() if eta is not None else None, s))
        return out


def test_the_eta_comes_from_rates_measured_per_kind_and_is_right_within_2x(tmp_path):
    """Two kinds of cell whose declared costs are on different scales (a cheap Monte Carlo-like kind declaring 1000
    per cell, grid-like cells declaring 1-4): the ETA comes from the seconds measured per unit cost of each kind,
    the cheapest cell of every kind runs first, and once both kinds are measured the ETA is within 2x of the time
    actually left at every update. Weighting by declared cost (the bar before) put the four cheap cells at 99 % of
    the work and predicted the end when most of it was still to come."""
    cells = [Sampled(float(i)) for i in range(4)] + [Work(float(i), weight=w, unit=0.08)
                                                    for i, w in enumerate((1, 1, 4, 1, 1, 1))]
    bar = _Recording(total=0, bar_format=BAR_FORMAT)
    run_cells(cells, cache=tmp_path / "c", bar=bar, desc="work")
    end = bar.marks[-1][0]
    assert bar.marks[-1][3] == "cells 10/10, ETA 0:00"
    updates = [m for m in bar.marks[1:] if ", on " not in m[3]]  # one per finished cell
    assert len(updates) == 10
    on = [m[3].partition(", on ")[2] for m in bar.marks if ", on " in m[3]]  # before each cell: what it computes
    assert sorted(on) == ["Sampled"] * 4 + ["Work"] * 6
    # the first two cells are one of each kind (the cheapest of each): after them every kind is measured
    assert updates[0][2] is None and updates[0][3].endswith("ETA ?")
    checked = 0
    for seconds, fraction, eta, _ in updates[1:]:
        left = end - seconds
        assert eta is not None
        if left > 0.1:  # timer granularity
            assert 0.5 < eta / left < 2, (eta, left)
            assert 0.5 < (1 - fraction) / (left / end) < 2, (fraction, left, end)
            checked += 1
    assert checked >= 4
    bar.close()


def test_one_bar_spans_several_sweeps(tmp_path):
    """``bar=``: each sweep adds its cells to the bar's Eta; cells from the cache count as done from the start."""
    run_cells([Work(1.0)], cache=tmp_path / "c", progress=False)
    bar = _Recording(total=0, bar_format=BAR_FORMAT)
    run_cells([Work(1.0), Work(2.0, weight=3)], cache=tmp_path / "c", bar=bar, desc="first")
    run_cells([Work(3.0, weight=2), Work(4.0, declare=False), Work(5.0, declare=False)], cache=tmp_path / "c",
              bar=bar, desc="second")
    eta = sweep.eta_of(bar)
    assert bar.desc == "second" and eta.done == eta.total == 5 and not eta.pending
    assert bar.n == pytest.approx(bar.total) and bar.total == pytest.approx(eta.done_seconds)
    assert [m[3] for m in bar.marks] == ["cells 1/2, ETA ?", "cells 1/2, ETA ?, on Work", "cells 2/2, ETA 0:00",
                                         "cells 2/5, ETA 0:00", "cells 2/5, ETA 0:00, on Work", "cells 3/5, ETA 0:00",
                                         "cells 3/5, ETA 0:00, on Work", "cells 4/5, ETA 0:00",
                                         "cells 4/5, ETA 0:00, on Work", "cells 5/5, ETA 0:00"]
    bar.close()


@pytest.mark.parametrize("weight", [0.0, -1.0, float("nan"), float("inf")])
def test_a_bad_cost_is_refused(tmp_path, weight):
    with pytest.raises(ValueError, match="declares cost"):
        run_cells([Work(1.0, weight=weight)], cache=tmp_path, progress=False)


def test_bar_must_be_a_tqdm_bar(tmp_path):
    with pytest.raises(ValueError, match="bar must be a tqdm"):
        run_cells([Work(1.0)], cache=tmp_path, bar="yes")
