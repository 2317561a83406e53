"""The sweep infrastructure (evaluation.sweep, ARCHITECTURE.md contract 8): keys, atomic cache, resume after a
kill, recomputation of changed cells only, local worker processes and a Dask cluster on loopback."""
import ast
import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from evaluation import sweep
from evaluation.sweep import Cache, cell_key, cell_kind, decode, encode, run_cells

ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Square:
    """A test cell: ``x^2`` after ``delay`` seconds; ``log`` (if set) gets one line per computation."""

    x: float
    delay: float = 0.0
    log: str = ""


class SquareResult(NamedTuple):
    x: float
    y: float
    curve: np.ndarray


@cell_kind(Square)
def square(cell: Square) -> SquareResult:
    time.sleep(cell.delay)
    if cell.log:
        with open(cell.log, "a") as f:
            f.write(f"{cell.x!r}\n")
    return SquareResult(cell.x, cell.x * cell.x, np.linspace(0, cell.x, 3))


def _values(run):
    return [(r.x, r.y, tuple(r.curve)) for r in run.results]


def test_encode_round_trips_results_exactly():
    r = SquareResult(0.1, math.nan, np.array([1 / 3, math.inf, -0.0]))
    back = decode(json.loads(json.dumps(encode(r))))
    assert type(back) is SquareResult and back.x == 0.1 and math.isnan(back.y)
    assert back.curve.dtype == np.float64 and back.curve[0] == 1 / 3 and back.curve[1] == math.inf
    with pytest.raises(ValueError, match="dict"):
        encode({"a": 1})


def test_key_depends_on_configuration_only_through_its_values():
    assert cell_key(Square(1.0)) == cell_key(Square(1.0))
    assert cell_key(Square(1.0)) != cell_key(Square(1.0 + 1e-15))
    assert cell_key(Square(1.0)) != cell_key(Square(1.0, delay=0.1))


def test_unregistered_cell_and_bad_workers_are_refused(tmp_path):
    @dataclasses.dataclass(frozen=True)
    class Unknown:
        a: int = 0

    with pytest.raises(ValueError, match="not a registered cell kind"):
        run_cells([Unknown()], cache=tmp_path, progress=False)
    with pytest.raises(ValueError, match="workers"):
        run_cells([Square(1.0)], cache=tmp_path, workers=0, progress=False)
    with pytest.raises(ValueError, match="frozen"):
        cell_kind(dict)


def test_cache_hits_duplicates_and_changed_cells(tmp_path):
    log = tmp_path / "log"
    cells = [Square(float(i), log=str(log)) for i in range(4)]
    first = run_cells(cells + [cells[0]], cache=tmp_path / "c", progress=False)
    assert (first.computed, first.reused) == (4, 0)
    assert log.read_text().count("\n") == 4  # the repeated cell ran once
    again = run_cells(cells, cache=tmp_path / "c", progress=False)
    assert (again.computed, again.reused) == (0, 4) and _values(again) == _values(first)[:4]
    changed = run_cells(cells[:3] + [Square(9.0, log=str(log))], cache=tmp_path / "c", progress=False)
    assert (changed.computed, changed.reused) == (1, 3)
    assert changed.results[-1].y == 81.0
    assert len(Cache(tmp_path / "c").keys()) == 5


def test_code_version_follows_the_source(tmp_path, monkeypatch):
    mod = tmp_path / "sweep_probe_mod.py"
    src = textwrap.dedent("""
        import dataclasses
        from evaluation.sweep import cell_kind

        @dataclasses.dataclass(frozen=True)
        class Probe:
            a: int = 1

        @cell_kind(Probe)
        def probe(cell):
            return (cell.a, VALUE)

        VALUE = 1
    """)
    mod.write_text(src)
    monkeypatch.syspath_prepend(str(tmp_path))
    import sweep_probe_mod

    k1 = cell_key(sweep_probe_mod.Probe())
    mod.write_text(src.replace("VALUE = 1", "VALUE = 2"))
    sweep._module_digest.cache_clear()
    assert cell_key(sweep_probe_mod.Probe()) != k1
    sweep._module_digest.cache_clear()


def test_code_version_follows_a_packages_data_files(tmp_path, monkeypatch):
    """A cell that runs trained networks depends on the checkpoints shipped inside ``toy``: retrained weights must
    not reuse a result cached from the old ones (the version hashed only the package's .py files)."""
    pkg = tmp_path / "sweep_probe_pkg"
    (pkg / "checkpoints").mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        import dataclasses
        from evaluation.sweep import cell_kind

        @dataclasses.dataclass(frozen=True)
        class DataProbe:
            a: int = 1

        @cell_kind(DataProbe, modules=("sweep_probe_pkg",))
        def probe(cell):
            return cell.a
    """))
    weights = pkg / "checkpoints" / "net.pt"
    weights.write_bytes(b"old weights")
    monkeypatch.syspath_prepend(str(tmp_path))
    import sweep_probe_pkg

    sweep._module_digest.cache_clear()
    k1 = cell_key(sweep_probe_pkg.DataProbe())
    weights.write_bytes(b"new weights")
    sweep._module_digest.cache_clear()
    assert cell_key(sweep_probe_pkg.DataProbe()) != k1
    (pkg / "__pycache__").mkdir(exist_ok=True)
    (pkg / "__pycache__" / "x.pyc").write_bytes(b"bytecode")  # compiled files are not part of the version
    k2 = cell_key(sweep_probe_pkg.DataProbe())
    sweep._module_digest.cache_clear()
    assert cell_key(sweep_probe_pkg.DataProbe()) == k2
    sweep._module_digest.cache_clear()



def _clear_code_caches():
    for f in (sweep._module_digest, sweep._imports, sweep._closure):
        f.cache_clear()


def test_code_version_follows_the_modules_a_kind_imports(tmp_path, monkeypatch):
    """A kind's result can come from a helper in another module (CharCell's and LinearCell's quadrature is
    ``weighted_mean`` of claims.cfgig, which neither declared): editing that module, or one imported inside a function,
    must change the kind's code version, or a result computed by the old helper is read back as current."""
    pkg = tmp_path / "sweep_probe_deps"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helper.py").write_text("VALUE = 1\n")
    (pkg / "lazy.py").write_text("FACTOR = 1\n")
    (pkg / "books.py").write_text("NOTE = 1\n")
    (pkg / "other.py").write_text("UNUSED = 1\n")
    (pkg / "kind.py").write_text(textwrap.dedent("""
        import dataclasses
        from evaluation.sweep import cell_kind
        from .helper import VALUE
        from . import books

        @dataclasses.dataclass(frozen=True)
        class DepProbe:
            a: int = 1

        @cell_kind(DepProbe)
        def probe(cell):
            from .lazy import (
                FACTOR,
            )
            return cell.a * VALUE * FACTOR
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    from sweep_probe_deps.kind import DepProbe

    _clear_code_caches()
    assert {"sweep_probe_deps.helper", "sweep_probe_deps.lazy", "sweep_probe_deps.books"} <= \
        set(sweep.result_sources(DepProbe))
    k1 = cell_key(DepProbe())
    for name, text in (("helper", "VALUE = 2\n"), ("lazy", "FACTOR = 2\n")):
        old = (pkg / f"{name}.py").read_text()
        (pkg / f"{name}.py").write_text(text)
        _clear_code_caches()
        assert cell_key(DepProbe()) != k1, name
        (pkg / f"{name}.py").write_text(old)
    (pkg / "other.py").write_text("UNUSED = 2\n")  # not imported: not part of the version
    _clear_code_caches()
    assert cell_key(DepProbe()) == k1
    # a module of NOT_RESULT_SOURCES (bookkeeping that computes no result) is left out
    monkeypatch.setitem(sweep.NOT_RESULT_SOURCES, "sweep_probe_deps.books", "the probe's bookkeeping")
    _clear_code_caches()
    k2 = cell_key(DepProbe())
    (pkg / "books.py").write_text("NOTE = 2\n")
    _clear_code_caches()
    assert cell_key(DepProbe()) == k2
    _clear_code_caches()


def test_the_ledgers_kinds_count_the_helpers_they_import():
    """On the project itself: the characteristic claim's cells depend on claims.cfgig's quadrature and on accuracy's
    estimates (undeclared before), not on the ledger's bookkeeping; every module left out exists."""
    import importlib.util

    from evaluation.claims.characteristic import CharCell

    sources = set(sweep.result_sources(CharCell))
    assert {"evaluation.claims.cfgig", "evaluation.accuracy", "evaluation.claims.characteristic", "analytic",
            "sampler"} <= sources
    assert not sources & set(sweep.NOT_RESULT_SOURCES)
    assert all(importlib.util.find_spec(name) for name in sweep.NOT_RESULT_SOURCES)

_KILLED_RUN = """
import sys
from tests.evaluation.test_sweep import Square
from evaluation.sweep import run_cells
cells = [Square(float(i), delay=0.3) for i in range(12)]
run_cells(cells, cache=sys.argv[1], progress=False)
"""


def test_killed_run_resumes_without_duplicates_or_gaps(tmp_path):
    cache = Cache(tmp_path / "cache")
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, str(cache.root)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.time() + 120
        while len(cache.keys()) < 4:  # let a third of the cells finish, then kill it mid-sweep
            assert proc.poll() is None and time.time() < deadline, "the sweep ended before it could be killed"
            time.sleep(0.05)
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    before = len(cache.keys())
    assert 4 <= before < 12
    cells = [Square(float(i), delay=0.3) for i in range(12)]
    resumed = run_cells(cells, cache=cache, progress=False)
    assert (resumed.reused, resumed.computed) == (before, 12 - before)
    fresh = run_cells(cells, cache=tmp_path / "fresh", progress=False)
    assert _values(resumed) == _values(fresh)
    assert sorted(cache.keys()) == sorted(cell_key(c) for c in cells)  # each cell once, none missing
    assert not list(cache.root.rglob("*.tmp"))


def test_worker_processes_give_the_same_numbers(tmp_path):
    cells = [Square(float(i) / 7) for i in range(6)]
    one = run_cells(cells, cache=tmp_path / "a", progress=False)
    two = run_cells(cells, cache=tmp_path / "b", workers=2, progress=False)
    assert two.computed == 6 and _values(one) == _values(two)


def test_dask_cluster_on_loopback(tmp_path):
    distributed = pytest.importorskip("distributed", reason="dask.distributed is the optional [sweeps] extra")
    cells = [Square(float(i) / 3) for i in range(5)]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        run = run_cells(cells, cache=tmp_path / "d", scheduler=cluster.scheduler_address, progress=False)
    local = run_cells(cells, cache=tmp_path / "l", progress=False)
    assert run.computed == 5 and _values(run) == _values(local)
    again = run_cells(cells, cache=tmp_path / "d", progress=False)  # written by the parent: reusable locally
    assert again.reused == 5


@pytest.mark.parametrize("where", ["in-process", "local workers", "dask"])
def test_a_result_that_cannot_be_stored_is_still_returned(tmp_path, where):
    """Issue 20 (nothing silent): a folder where a cell's cache file goes made Cache.store_encoded raise
    IsADirectoryError inside run_cells, and the run ended with that bare error (keep_going or not), losing the
    computed results. Now the result is returned, with one CacheWarning naming the file, the OS error and that the
    cell will be recomputed next time; the folder is left alone, the other cells are cached as usual."""
    cell, other = Square(3.0), Square(4.0)
    cache = Cache(tmp_path / "c")
    path = cache.path(cell)
    path.mkdir(parents=True)
    (path / "kept").write_text("mine")
    expected = [(3.0, 9.0, (0.0, 1.5, 3.0)), (4.0, 16.0, (0.0, 2.0, 4.0))]
    message = (rf"cannot store the result of cell Square\(x=3.0, .*\) in {path} \(IsADirectoryError: Is a directory\):"
               r" this run uses it, but it is not cached, so the cell will be recomputed next time")

    def run():
        with pytest.warns(sweep.CacheWarning) as caught:
            if where == "dask":
                distributed = pytest.importorskip("distributed", reason="the optional [sweeps] extra")
                with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                                              host="127.0.0.1", dashboard_address=None) as cluster:
                    result = run_cells([cell, other], cache=cache, scheduler=cluster.scheduler_address, progress=False)
            else:
                result = run_cells([cell, other], cache=cache, workers=2 if where == "local workers" else 1,
                                   progress=False)
        warned = [w for w in caught if w.category is sweep.CacheWarning]
        assert len(warned) == 1 and re.fullmatch(message, str(warned[0].message))
        assert warned[0].filename == __file__  # attributed to the caller of run_cells
        return result

    first = run()
    assert _values(first) == expected and (first.computed, first.reused, first.failed) == (2, 0, 0)
    assert path.is_dir() and [p.name for p in path.iterdir()] == ["kept"] and (path / "kept").read_text() == "mine"
    assert cache.keys() == [cell_key(other)] and not list(cache.root.rglob("*.tmp"))
    again = run()  # not cached: computed again (and named again); the other cell is reused
    assert _values(again) == expected and (again.computed, again.reused) == (1, 1)


@dataclasses.dataclass(frozen=True)
class Opaque:
    """A test cell whose result the cache cannot hold when ``bad`` (a dict), else ``x + 1``."""

    x: float
    bad: bool = False


@cell_kind(Opaque)
def opaque(cell: Opaque):
    return {"x": cell.x} if cell.bad else cell.x + 1


def test_cells_may_be_any_iterable(tmp_path):
    """Issue 20 round 3: a generator of cells gave a bare KeyError with a hash (the cells were walked twice)."""
    cells = [Square(float(i)) for i in range(3)]
    listed = run_cells(cells, cache=tmp_path / "a", progress=False)
    gen = run_cells((c for c in cells), cache=tmp_path / "b", progress=False)
    assert gen.computed == 3 and _values(gen) == _values(listed) == [(x, x * x, tuple(np.linspace(0, x, 3)))
                                                                      for x in (0.0, 1.0, 2.0)]
    with pytest.raises(ValueError, match=r"cells must be an iterable of cells, got one cell Square\(x=1.0.*\[cell\]"):
        run_cells(Square(1.0), cache=tmp_path, progress=False)
    with pytest.raises(ValueError, match="cells must be an iterable of cell configurations .*got int"):
        run_cells(3, cache=tmp_path, progress=False)


def test_bad_workers_name_the_argument(tmp_path):
    """Issue 20 round 3: workers='a' said "invalid literal for int() with base 10"."""
    for bad in ("a", None, True, 2.5, 0):
        with pytest.raises(ValueError, match=rf"workers must be a .*, got {bad!r}"):
            run_cells([Square(1.0)], cache=tmp_path, workers=bad, progress=False)


def test_a_scheduler_address_is_checked_before_connecting(tmp_path):
    """Issue 20 round 3: scheduler='nope' failed deep inside distributed ("missing port number")."""
    for bad in ("nope", "tcp://host", "tcp://host:0", "tcp://host:99999", "host:80/x", "", 8786):
        with pytest.raises(ValueError, match=rf"scheduler must be a Dask scheduler address .*got {bad!r}"):
            run_cells([Square(1.0)], cache=tmp_path, scheduler=bad, progress=False)
    for good in ("tcp://127.0.0.1:8786", "127.0.0.1:8786", "tls://my-host.example:443", "tcp://[::1]:8786",
                 "inproc://10.0.0.1/123/1", None):
        assert sweep.check_scheduler(good) == good


def test_an_unreachable_scheduler_fails_fast_naming_it(tmp_path, monkeypatch):
    """Issue 20: a well-formed address where no scheduler listens waited distributed's 30 s, then ended in its
    OSError traceback. Now run_cells waits SCHEDULER_TIMEOUT (5 s; 1 s here) and raises SchedulerUnreachable, a
    ValueError naming the address; nothing is cached."""
    import socket

    pytest.importorskip("distributed", reason="dask.distributed is the optional [sweeps] extra")
    assert 0 < sweep.SCHEDULER_TIMEOUT <= 5  # distributed's own default is 30 s
    monkeypatch.setattr(sweep, "SCHEDULER_TIMEOUT", 1.0)
    with socket.socket() as bound:  # bound, not listening: the connection is refused
        bound.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{bound.getsockname()[1]}"
        start = time.perf_counter()
        expected = (rf"cannot connect to a Dask scheduler at '{address}' \(waited at most 1 s: OSError: .*\); "
                    r"is a Dask scheduler running there\?")
        with pytest.raises(sweep.SchedulerUnreachable, match=expected):
            run_cells([Square(1.0)], cache=tmp_path, scheduler=address, progress=False)
        assert time.perf_counter() - start < 10
    assert issubclass(sweep.SchedulerUnreachable, ValueError) and not list(tmp_path.rglob("*.json"))


def test_a_scheduler_without_workers_fails_in_bounded_time_naming_it(tmp_path, monkeypatch):
    """Issue 20: a reachable Dask scheduler with no worker took the cells and waited forever (distributed queues
    them until a worker joins). Now run_cells waits SCHEDULER_TIMEOUT (1 s here) for a running worker, then raises
    SchedulerUnreachable naming the address and saying that workers are missing; nothing is cached."""
    distributed = pytest.importorskip("distributed", reason="dask.distributed is the optional [sweeps] extra")
    monkeypatch.setattr(sweep, "SCHEDULER_TIMEOUT", 1.0)
    with distributed.LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        start = time.perf_counter()
        expected = (rf"the Dask scheduler at '{address}' has no running worker "
                    rf"\(waited 1 s: with cells pending, 0 workers\); start one with 'dask worker {address}'")
        with pytest.raises(sweep.SchedulerUnreachable, match=expected) as caught:
            run_cells([Square(1.0)], cache=tmp_path, scheduler=address, progress=False)
        assert time.perf_counter() - start < 10
        assert caught.value.workers and caught.value.scheduler == address
    assert not list(tmp_path.rglob("*.json"))


def test_an_adaptive_cluster_without_workers_gets_the_cells_first(tmp_path):
    """The check for workers comes after the cells are submitted: an adaptive cluster (no worker until it sees
    work) starts one and the sweep runs, instead of being refused for having none on connecting."""
    distributed = pytest.importorskip("distributed", reason="dask.distributed is the optional [sweeps] extra")
    cells = [Square(float(i)) for i in range(3)]
    with distributed.LocalCluster(n_workers=0, threads_per_worker=1, processes=False, protocol="tcp",
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        cluster.adapt(minimum=0, maximum=1, interval="100ms")
        run = run_cells(cells, cache=tmp_path, scheduler=cluster.scheduler_address, progress=False)
    assert run.computed == 3 and _values(run) == _values(run_cells(cells, cache=tmp_path / "l", progress=False))


def test_a_cluster_whose_workers_leave_stops_in_bounded_time_keeping_the_finished_cells(tmp_path, monkeypatch):
    """Issue 20: when every worker leaves while cells are pending, Dask keeps them queued forever. run_cells checks
    the cluster whenever no cell has finished for SCHEDULER_TIMEOUT (1 s here) and raises SchedulerUnreachable
    (workers missing); the cells finished before are cached, so a rerun resumes."""
    import threading

    distributed = pytest.importorskip("distributed", reason="dask.distributed is the optional [sweeps] extra")
    monkeypatch.setattr(sweep, "SCHEDULER_TIMEOUT", 1.0)
    cells = [Square(0.0)] + [Square(float(i), delay=0.5) for i in range(1, 5)]
    cache = tmp_path / "c"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        address = cluster.scheduler_address

        def retire() -> None:  # once the first cell is cached, the only worker leaves
            deadline = time.perf_counter() + 30
            while not list(cache.rglob("*.json")) and time.perf_counter() < deadline:
                time.sleep(0.02)
            cluster.scale(0)

        retiring = threading.Thread(target=retire, daemon=True)
        retiring.start()
        start = time.perf_counter()
        with pytest.raises(sweep.SchedulerUnreachable, match=rf"the Dask scheduler at '{address}' has no running "
                                                             r"worker \(waited 1 s: with cells pending, 0 workers\)"):
            run_cells(cells, cache=cache, scheduler=address, progress=False)
        assert time.perf_counter() - start < 20
        retiring.join(timeout=30)
    kept = run_cells(cells, cache=cache, progress=False)  # locally: the finished cells are reused
    assert 1 <= kept.reused < len(cells) and kept.reused + kept.computed == len(cells)


@pytest.mark.parametrize("keep_going", [False, True])
def test_a_scheduler_that_closes_mid_run_is_named_not_blamed_on_a_cell(tmp_path, monkeypatch, keep_going):
    """Issue 20 (found probing the scheduler fix): when the scheduler closed mid-run, the sweep stopped with "cell
    Square(...) failed: CancelledError: " (an empty message blaming whichever cell came first), or under keep_going
    listed every pending cell as failed. Now the cancelled cell sends run_cells to check the cluster: it raises
    SchedulerUnreachable naming the address; the cells finished before are cached."""
    import threading

    distributed = pytest.importorskip("distributed", reason="dask.distributed is the optional [sweeps] extra")
    monkeypatch.setattr(sweep, "SCHEDULER_TIMEOUT", 1.0)
    cells = [Square(0.0)] + [Square(float(i), delay=0.3) for i in range(1, 7)]
    cache = tmp_path / "c"
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                                       host="127.0.0.1", dashboard_address=None)
    address = cluster.scheduler_address

    def close() -> None:  # once the first cell is cached, the scheduler goes
        deadline = time.perf_counter() + 30
        while not list(cache.rglob("*.json")) and time.perf_counter() < deadline:
            time.sleep(0.02)
        cluster.close()

    closing = threading.Thread(target=close, daemon=True)
    closing.start()
    start = time.perf_counter()
    try:
        with pytest.raises(sweep.SchedulerUnreachable, match=rf"Dask scheduler at '{address}' .*with cells pending"):
            run_cells(cells, cache=cache, scheduler=address, progress=False, keep_going=keep_going)
        assert time.perf_counter() - start < 20
    finally:
        closing.join(timeout=30)
        cluster.close()
    kept = run_cells(cells, cache=cache, progress=False)  # locally: the finished cells are reused
    assert 1 <= kept.reused < len(cells)


def test_keep_going_records_a_result_the_cache_cannot_hold(tmp_path):
    """Issue 20 round 3: under keep_going=True a cell returning an unencodable result aborted the whole sweep
    (storing was outside keep_going). Now it is that cell's CellFailed (cached, as every ValueError: the same code
    fails alike); without keep_going the sweep stops with the RuntimeError naming the cell, as for a cell that raises."""
    cells = [Opaque(1.0), Opaque(2.0, bad=True), Opaque(3.0)]
    run = run_cells(cells, cache=tmp_path, progress=False, keep_going=True)
    assert run.results[0] == 2.0 and run.results[2] == 4.0 and run.failed == 1 and run.computed == 2
    failed = run.results[1]
    assert isinstance(failed, sweep.CellFailed) and failed.cell == "Opaque(x=2.0, bad=True)"
    assert failed.error.startswith("ValueError: cannot encode dict")
    assert sorted(Cache(tmp_path).keys()) == sorted(cell_key(c) for c in cells)
    assert Cache(tmp_path).load(cells[1]) == (True, failed)  # the failure, read back instead of computed again
    with pytest.raises(RuntimeError, match=r"cell Opaque\(x=2.0, bad=True\) failed: ValueError: cannot encode dict"):
        run_cells(cells, cache=tmp_path / "strict", progress=False)


class Unpicklable(Exception):
    """An exception pickle cannot rebuild (``__init__`` takes two arguments, ``args`` holds one)."""

    def __init__(self, message, extra):
        super().__init__(message)
        self.extra = extra


@dataclasses.dataclass(frozen=True)
class Raises:
    x: float


@cell_kind(Raises)
def raises(cell: Raises) -> float:
    if cell.x < 0:
        raise Unpicklable("weird", 1)
    time.sleep(0.5)  # the good cell is still running when the bad one's exception comes back
    return cell.x + 1


def test_an_unpicklable_exception_in_a_worker_fails_only_its_cell(tmp_path):
    """Issue 20 round 3 (found re-running the probe): the parent could not unpickle the exception, the process pool
    broke, and the good cell running beside it was reported failed with BrokenProcessPool (by default the sweep
    stopped naming whichever cell came first)."""
    run = run_cells([Raises(1.0), Raises(-1.0)], cache=tmp_path / "a", workers=2, progress=False, keep_going=True)
    assert run.results[0] == 2.0 and run.computed == 1 and run.failed == 1
    assert run.results[1].cell == "Raises(x=-1.0)" and "Unpicklable: weird" in run.results[1].error
    # in this process the exception is raised as it is when it pickles (once dask.distributed is imported, tblib
    # pickles exceptions without calling __init__), as a RuntimeError otherwise; the message is the same
    with pytest.raises(RuntimeError, match=r"cell Raises\(x=-1.0\) failed: (RuntimeError: )?Unpicklable: weird"):
        run_cells([Raises(-1.0)], cache=tmp_path / "b", progress=False)


@dataclasses.dataclass(frozen=True)
class Exits:
    code: int


@cell_kind(Exits)
def exits(cell: Exits) -> float:
    if cell.code:
        raise SystemExit(cell.code)  # as sys.exit (or an argparse error) inside a library the cell calls
    return 1.0


@pytest.mark.parametrize("workers", [1, 2])
def test_a_cell_that_exits_the_interpreter_is_that_cells_failure(tmp_path, workers):
    """Issue 20 (found re-running the probe): a cell raising SystemExit ended the calling process with that status
    and no message at all, under keep_going=True too, from a worker process too. Now it is the cell's failure: a
    CellFailed under keep_going (the other cells computed and cached), else the RuntimeError naming the cell."""
    run = run_cells([Exits(0), Exits(3)], cache=tmp_path / "a", workers=workers, progress=False, keep_going=True)
    assert run.results[0] == 1.0 and run.computed == 1 and run.failed == 1
    assert run.results[1] == sweep.CellFailed("Exits(code=3)", "RuntimeError: the cell exited the interpreter "
                                              "(SystemExit(3)) instead of returning a result or raising an Exception")
    assert Cache(tmp_path / "a").keys() == [cell_key(Exits(0))]
    with pytest.raises(RuntimeError, match=r"cell Exits\(code=3\) failed: RuntimeError: the cell exited the "
                                           r"interpreter \(SystemExit\(3\)\)"):
        run_cells([Exits(3)], cache=tmp_path / "b", workers=workers, progress=False)


def test_a_cache_file_too_deeply_nested_to_parse_is_a_miss(tmp_path):
    """Issue 20 (found re-running the probe): a cache file of deeply nested JSON ('[[[...]]]', 1e5 deep) escaped
    Cache.load as json's bare RecursionError naming no file, and broke every run until deleted by hand. Now it is a
    miss like any unreadable file: a CacheWarning naming it, the cell recomputed and the file overwritten."""
    cell = Square(2.0)
    run_cells([cell], cache=tmp_path, progress=False)
    path = Cache(tmp_path).path(cell)
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.warns(sweep.CacheWarning, match=rf"{path} cannot be read as a result \(RecursionError"):
        run = run_cells([cell], cache=tmp_path, progress=False)
    assert (run.computed, run.reused) == (1, 0) and _values(run) == [(2.0, 4.0, (0.0, 1.0, 2.0))]
    assert Cache(tmp_path).load(cell)[0]


def test_on_result_gives_every_distinct_cell_once_as_soon_as_its_result_is_known(tmp_path):
    """Issue 19 (--quick within 60 s): paper_plots draws a figure while the others' cells compute, so run_cells tells
    its caller each result as it is known: a cached one at the start, a computed one when it arrives, a failure under
    keep_going (a :class:`CellFailed`)."""
    from tests.helpers import Refuses

    run_cells([Refuses(1.0)], cache=tmp_path, progress=False)  # cached before the sweep
    seen = []
    cells = [Refuses(2.0), Refuses(1.0), Refuses(-1.0), Refuses(2.0)]
    run = run_cells(cells, cache=tmp_path, progress=False, keep_going=True,
                    on_result=lambda cell, result: seen.append((cell, result)))
    assert seen[0] == (Refuses(1.0), 2.0)  # the cached one first, before any cell is computed
    assert sorted(seen[1:], key=lambda s: s[0].x) == [(Refuses(-1.0), run.results[2]), (Refuses(2.0), 3.0)]
    assert isinstance(run.results[2], sweep.CellFailed)
    with pytest.raises(ValueError, match="on_result"):
        run_cells(cells, cache=tmp_path, progress=False, on_result="print")


def test_first_cells_start_before_the_others_and_must_be_among_the_cells(tmp_path):
    """Issue 19: ``run_cells(first=...)`` starts those cells first (after one probe of every kind), in that order."""
    log = tmp_path / "order.txt"
    cells = [Square(float(x), log=str(log)) for x in (1, 2, 3)]
    run = run_cells(cells, cache=tmp_path / "c", progress=False, first=[cells[2], cells[1], cells[2]])
    assert [r.y for r in run.results] == [1.0, 4.0, 9.0]
    assert log.read_text().split() == ["1.0", "3.0", "2.0"]  # the kind's probe, then first in its order
    with pytest.raises(ValueError, match="first names 1 cell"):
        run_cells(cells, cache=tmp_path / "c", progress=False, first=[Square(4.0)])


def test_run_cells_runs_on_the_callers_pool_and_leaves_it_open(tmp_path):
    """Issue 19: paper_plots starts its workers before its imports and hands the pool to run_cells (``pool=``)."""
    import concurrent.futures as cf

    cells = [Square(float(x)) for x in (1, 2, 3)]
    with cf.ThreadPoolExecutor(2) as pool:
        run = run_cells(cells, cache=tmp_path, progress=False, workers=2, pool=pool)
        assert [r.y for r in run.results] == [1.0, 4.0, 9.0] and run.computed == 3
        assert pool.submit(abs, -2).result() == 2  # still open: its owner closes it
        with pytest.raises(ValueError, match="pool must be"):
            run_cells(cells, cache=tmp_path, progress=False, pool=pool, scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(ValueError, match="pool must be"):
        run_cells(cells, cache=tmp_path, progress=False, pool="processes")


def test_a_kind_run_as_main_is_read_under_its_importable_name(monkeypatch):
    """``python -m evaluation.report`` registers its kinds in ``__main__``; their code version reads that module's
    relative imports against its package (session 14: ``from .spec import`` raised ImportError)."""
    import types

    from evaluation import sweep

    main = types.ModuleType("__main__")
    main.__spec__ = types.SimpleNamespace(name="evaluation.report")
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert sweep._importable("__main__") == "evaluation.report"
    assert sweep._importable("evaluation.spec") == "evaluation.spec"


def test_code_version_ignores_comments_docstrings_and_blank_lines(tmp_path, monkeypatch):
    """Prose is not code: editing a docstring, a comment or a blank line keeps every cached result (a docstring slip
    once waited for an hour's republish), while any change to code, a string that is not a docstring included,
    is a new version."""
    mod = tmp_path / "sweep_prose_mod.py"
    src = textwrap.dedent('''
        """The module's docstring."""
        import dataclasses
        from evaluation.sweep import cell_kind

        @dataclasses.dataclass(frozen=True)
        class Prose:
            a: int = 1

        @cell_kind(Prose)
        def prose(cell):
            """Its docstring, with a non-ASCII letter: \u03a3."""
            return cell.a * SCALE, "# a string, not a comment"  # a comment

        SCALE = 1
    ''')
    mod.write_text(src)
    monkeypatch.syspath_prepend(str(tmp_path))
    import sweep_prose_mod

    def key_after(text):
        mod.write_text(text)
        sweep._module_digest.cache_clear()
        return cell_key(sweep_prose_mod.Prose())

    k = key_after(src)
    for prose in (src.replace("The module's docstring.", "Another docstring,\n over two lines."),
                  src.replace("a non-ASCII letter: \u03a3", "none"),
                  src.replace("# a comment", "# another comment"),
                  src.replace("SCALE = 1", "SCALE = 1  # a new comment\n\n\n")):
        assert key_after(prose) == k
    for code in (src.replace("SCALE = 1", "SCALE = 2"),
                 src.replace("# a string, not a comment", "# another string")):
        assert key_after(code) != k
    sweep._module_digest.cache_clear()


def _without_docstrings(tree):
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:]
    return ast.dump(tree)


def test_code_text_keeps_every_statement_of_the_project():
    """An independent route: the text the version hashes parses to the same syntax tree as the source with its
    docstrings removed (ast drops comments and blank lines itself), for every module of the packages cells depend on
    (a module whose only statement in some body is a docstring does not parse once stripped: skipped, counted)."""
    root = Path(sweep.__file__).parents[1]
    files = sorted(p for pkg in ("analytic", "sampler", "toy", "evaluation") for p in (root / pkg).rglob("*.py"))
    compared = 0
    for path in files:
        src = path.read_text()
        try:
            stripped = ast.parse(sweep.code_text(src))
        except SyntaxError:
            continue
        assert ast.dump(stripped) == _without_docstrings(ast.parse(src)), path
        compared += 1
    assert compared >= 0.9 * len(files) and compared > 50
