"""The progress bar's ETA and the order of work of a sweep (issue 19, item 4: "an ETA that is right within 2x"), on a
simulated clock: no test here sleeps or depends on the machine's speed.

The scenario is the session-9 full job's (benchmarks/eta_replay.txt): one kind of cell whose declared cost (steps x
nodes^d) does not separate its dimensions, 1-D cells with a fixed part per cell, and a few 2-D cells that declare
less than the large 1-D ones but take a hundred times longer."""
import dataclasses
import heapq
import io
from typing import NamedTuple

import numpy as np
import pytest
from tqdm.auto import tqdm

from evaluation import costs, sweep
from evaluation.claims.cells import OutputCell
from evaluation.sweep import BAR_FORMAT, Eta, cell_kind, run_cells


class Clock:
    """Simulated wall seconds (``perf_counter`` too, to stand in for the ``time`` module)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def perf_counter(self) -> float:
        return self.now


CLOCK = Clock()


@dataclasses.dataclass(frozen=True)
class Grid:
    """A grid-like cell: ``steps`` steps on ``nodes``^``d`` nodes; computing it advances :data:`CLOCK` by its true
    seconds (:func:`true_seconds`)."""

    steps: int
    nodes: int
    d: int
    i: int = 0

    @property
    def cost(self) -> float:
        return float(self.steps * self.nodes ** self.d)


def true_seconds(c: Grid) -> float:
    if c.d == 1:
        return 0.2 + 1.25e-5 * c.cost  # a fixed part (a law, a target) and a part that grows with the work
    return (100.0, 150.0, 250.0, 120.0)[c.i % 4]  # 52020 declared, the cost of 4000 1-D steps: the grid refines


class GridResult(NamedTuple):
    seconds: float


@cell_kind(Grid)
def grid(cell: Grid) -> GridResult:
    CLOCK.now += true_seconds(cell)
    return GridResult(true_seconds(cell))


def job() -> list[Grid]:
    one = [Grid(t, 801, 1, i) for t in (10, 20, 50, 200, 1000) for i in range(8)]
    return one + [Grid(20, 51, 2, i) for i in range(8)]


@pytest.fixture
def grid_model(monkeypatch):
    """The cost model of :class:`Grid` (as :mod:`evaluation.costs` has one per kind): its dimension is its class."""
    monkeypatch.setitem(costs.MODELS, f"{__name__}:Grid", lambda c: costs.Cost(f"d={c.d}", c.cost))
    monkeypatch.setattr(sweep, "time", CLOCK)  # the workers' timing and the Eta's default clock: simulated
    CLOCK.now = 0.0


class _Recording(tqdm):
    """A bar that records (clock, the Eta's ETA, postfix) at every redraw."""

    def __init__(self, *a, **k):
        super().__init__(*a, file=io.StringIO(), **k)
        self.marks = []

    def set_postfix_str(self, s="", refresh=True):
        out = super().set_postfix_str(s, refresh)
        self.marks.append((CLOCK.now, sweep.eta_of(self).eta(), s))
        return out


def test_the_eta_is_within_2x_once_every_class_is_measured(tmp_path, grid_model):
    """The session-9 job's ETA said 7-13 minutes with 40 minutes of 2-D cells left: its rate per kind came from 1-D
    cells and its order (the largest declared cost first) ran the 2-D cells after the large 1-D ones. Now every
    class (here: the dimension) is measured early, on its costliest cell, and the estimates are a fixed part plus a
    part that grows with the cost: from the moment the first 2-D cell is measured, the ETA is within 2x of the time
    actually left at every update (before: within 2x at none of the first half's updates)."""
    bar = _Recording(total=0, bar_format=BAR_FORMAT)
    run_cells(job(), cache=tmp_path / "c", bar=bar)
    end = CLOCK.now
    assert end == pytest.approx(sum(map(true_seconds, job())))
    assert bar.marks[-1][1:] == (0.0, "cells 48/48, ETA 0:00")
    first_2d = min(t for t, _, s in bar.marks if "cells 3/" in s)  # cheapest 1-D, costliest 1-D, then a 2-D cell
    checked = [(t, e) for t, e, _ in bar.marks if t >= first_2d and end - t > 1.0]
    assert first_2d < 0.2 * end and len(checked) >= 40
    for t, e in checked:
        assert e is not None and 0.5 <= e / (end - t) <= 2, (t, e, end - t)
    bar.close()


def test_the_costliest_cells_run_first_so_the_run_ends_on_short_ones(tmp_path, grid_model):
    """The order of work (Eta.take): the cheapest cell of the kind (its first measurement), then the costliest of each
    class, then the largest estimate first; the results are those of the cells in the order given, whatever the
    order of work."""
    order = []
    log = lambda c: order.append(c) or GridResult(true_seconds(c))  # noqa: E731
    kind = sweep._KINDS[Grid]
    sweep._KINDS[Grid] = kind._replace(compute=lambda c: (grid(c), log(c))[1])
    try:
        cells = job()
        run = run_cells(cells, cache=tmp_path / "c", progress=False)
    finally:
        sweep._KINDS[Grid] = kind
    assert [r.seconds for r in run.results] == [true_seconds(c) for c in cells]
    assert order[0] == Grid(10, 801, 1, 0)  # the kind's cheapest: a quick first rate
    assert order[1] == Grid(1000, 801, 1, 0)  # the 1-D class's costliest
    assert order[2].d == 2 and order[3].d == 2  # the 2-D class on two cells (one is not all it knows)
    assert all(c.d == 2 for c in order[4:10])  # then the largest estimates: every 2-D cell before the 1-D ones
    assert [c.steps for c in order[-8:]] == [20] + [10] * 7  # the run ends on the shortest


def simulate(eta: Eta, clock: Clock, seconds: dict, workers: int, probe=None) -> tuple[list, list]:
    """Run the Eta's tasks on ``workers`` simulated workers in the order of Eta.take: ([(time, ETA, estimate of the
    task ``probe``)] every 10 s, [(time, key)] as the tasks finish)."""
    running, marks, ends, tick = [], [], [], 10.0

    def fill():
        while len(running) < workers and (k := eta.take()) is not None:
            eta.begin(k)
            heapq.heappush(running, (clock.now + seconds[k], len(ends) + len(running), k))

    fill()
    while running:
        end, _, k = heapq.heappop(running)
        while tick < end:
            clock.now = tick
            marks.append((tick, eta.eta(), eta.estimate(probe) if probe in eta.pending else None))
            tick += 10.0
        clock.now = end
        eta.finish(k, seconds[k])
        ends.append((end, k))
        fill()
    return marks, ends


def test_on_two_workers_the_eta_is_within_2x_and_a_long_cell_counts_while_it_runs():
    """Two workers, and a 2-D class whose first cell is 10x shorter than the others (the accuracy contract refined
    their grids, not its): while the second one runs past that estimate, the estimates of the class's waiting cells
    grow with it; once two cells of every class are measured, the ETA is within 2x of the time left at every 10 s,
    also when the last cells run alone, and the two workers are busy until near the end."""
    clock = Clock()
    eta = Eta(clock=clock)
    seconds = {}
    for c in job():
        key = (c.steps, c.d, c.i)
        seconds[key] = true_seconds(c) if c.d == 1 or c.i else 12.0
        eta.add(key, "Grid", c.cost, group=f"d={c.d}")
    marks, ends = simulate(eta, clock, seconds, workers=2, probe=(20, 2, 7))
    end = clock.now
    assert end < sum(seconds.values()) / 2 + 60
    two_d = [t for t, k in ends if k[1] == 2]
    assert seconds[[k for _, k in ends if k[1] == 2][0]] == 12.0  # the cheap one first: it misleads
    growing = [e for t, _, e in marks if two_d[0] < t < two_d[1] and e is not None]
    assert growing[0] == pytest.approx(12.0) and growing[-1] > 100.0 and growing == sorted(growing)
    warm = max(two_d[1], [t for t, k in ends if k[1] == 1][1])
    checked = [(t, e) for t, e, _ in marks if t >= warm and end - t > 1]
    assert warm < 0.3 * end and len(checked) > 40
    for t, e in checked:
        assert e is not None and 0.5 <= e / (end - t) <= 2, (t, e, end - t)


def test_a_class_without_a_measurement_is_estimated_from_its_kind_and_unknown_without_one():
    clock = Clock()
    eta = Eta(clock=clock)
    eta.add("a", "K", 1.0, group="K x")
    eta.add("b", "K", 2.0, group="K y")
    eta.add("c", "L", 1.0)
    assert eta.eta() is None and eta.postfix() == "cells 0/3, ETA ?"
    assert eta.take() == "a"  # the first kind's cheapest
    eta.begin("a")
    assert eta.take() == "c"  # the next kind not measured at all
    eta.begin("c")
    assert eta.postfix() == "cells 0/3, ETA ?, on K x; L"
    clock.now = 4.0
    eta.finish("a", 4.0)
    assert eta.estimate("b") == pytest.approx(8.0)  # class y from its kind (4 s per unit cost), L still unknown
    assert eta.remaining() is None
    eta.finish("c", 1.0)
    assert eta.remaining() == pytest.approx(8.0) and eta.postfix() == "cells 2/3, ETA 0:08"


@pytest.mark.parametrize("a, b", [(0.5, 2e-3), (0.0, 1e-2), (3.0, 0.0)])
def test_the_line_is_the_least_squares_fit(a, b):
    """The fixed part and the growth of a class are the least-squares line through its measurements (numpy's
    polyfit), and never negative: a line that would start below zero is a proportion, one that would fall a
    constant."""
    rng = np.random.default_rng(0)
    cost = rng.uniform(10, 1000, 12)
    secs = a + b * cost + rng.normal(0, 1e-3, 12)
    sums = [len(cost), cost.sum(), secs.sum(), (cost * cost).sum(), (cost * secs).sum()]
    got = costs.fit_line(sums)
    want_b, want_a = np.polyfit(cost, secs, 1)
    if want_a >= 0 and want_b >= 0:
        assert got == pytest.approx((want_a, want_b), rel=1e-9, abs=1e-12)
    elif want_b < 0:
        assert got == pytest.approx((secs.mean(), 0.0))
    else:
        assert got == pytest.approx((0.0, secs.sum() / cost.sum()))
    assert costs.fit_line([2, 20.0, 7.0, 200.0, 70.0]) == pytest.approx((0.0, 0.35))  # equal costs: a proportion
    assert costs.fit_line([2, 3.0, 1.0, 5.0, 1.0]) == pytest.approx((0.5, 0.0))  # (1, 1 s), (2, 0 s): would fall
    assert costs.fit_line([2, 3.0, 4.0, 5.0, 7.0]) == pytest.approx((0.0, 4 / 3))  # (1, 1 s), (2, 3 s): would start < 0
    assert costs.fit_line([2, 3.0, 5.0, 5.0, 8.0]) == pytest.approx((1.0, 1.0))  # (1, 2 s), (2, 3 s)


def test_output_cells_of_another_dimension_or_sampler_are_another_class():
    """evaluation.costs: the classes of the kind that mixed 1 s and 300 s cells in one rate."""
    one = costs.cost_of(OutputCell("paper_1d", "lin:20:0.0001"))
    two = costs.cost_of(OutputCell("classes_2d", "lin:20:0.0001", grid=(-5.0, 5.0, 51)))
    ddim = costs.cost_of(OutputCell("paper_1d", "lin:20:0.0001", sampler="ddim"))
    assert len({one.group, two.group, ddim.group}) == 3
    assert (one.cost, two.cost) == (20 * 801.0, 20 * 51.0 ** 2)
    assert costs.cost_of(Grid(2, 3, 1)) == ("", 6.0)  # no model: the kind's one class, its declared cost


def test_a_bad_cost_from_a_model_is_refused(monkeypatch):
    monkeypatch.setitem(costs.MODELS, f"{__name__}:Grid", lambda c: costs.Cost("", float("nan")))
    with pytest.raises(ValueError, match="cost model of Grid gives cost nan"):
        costs.cost_of(Grid(2, 3, 1))


def test_the_time_before_the_first_task_begins_is_not_throughput():
    """A warm ``paper_plots.py --quick`` said "ETA 8090:34" as its first figure began: the throughput counted the
    seconds spent reading 339 cached cells (no work) since the bar was made. It counts from the first task begun."""
    clock = Clock()
    eta = Eta(clock=clock)
    eta.add("f1", "figure", prior=5.0)
    eta.add("f2", "figure", prior=5.0)
    clock.now = 2.0  # the cells read from the cache
    eta.begin("f1")
    clock.now = 2.001
    assert eta.eta() == pytest.approx(10.0 - 0.001)
    clock.now = 3.0
    eta.finish("f1", 1.0)
    assert eta.eta() == pytest.approx(1.0)  # the second figure: as long as the first, one at a time


def test_tasks_run_one_at_a_time_after_a_parallel_sweep_are_not_shared_by_its_workers():
    """``paper_plots.py`` draws its figures one at a time after the cells ran on two workers: the ETA divided their
    seconds by the cells' throughput (about 2) and said about half the time left (0.31-0.48 of it in a --quick run).
    Tasks added ``alone`` count whole, during the sweep and after it."""
    clock = Clock()
    eta = Eta(clock=clock)
    for k in ("c1", "c2"):
        eta.add(k, "cell", 1.0)
    for k in ("f1", "f2", "f3"):
        eta.add(k, "figure", 1.0, prior=4.0, alone=True)
    eta.begin("c1"), eta.begin("c2")
    clock.now = 5.0
    assert eta.estimate("c1") is None and eta.remaining() is None
    eta.finish("c1", 5.0)
    assert eta.eta() == pytest.approx(0.0 + 12.0)  # c2 is as long as c1 (done now), then 3 figures of 4 s
    clock.now = 10.0
    eta.finish("c2", 10.0)  # two workers: 1.5 s of work per second
    eta.begin("f1")
    clock.now = 14.0
    eta.finish("f1", 4.0)
    eta.begin("f2")
    assert eta.eta() == pytest.approx(8.0)  # two figures of 4 s, one after the other (was 8 / (19 / 14) = 5.9)


def test_take_starts_the_first_tasks_in_their_order_once_every_kind_is_probed():
    """Issue 19: run_cells' ``first`` (paper_plots' cells of the smaller figures, drawn while the rest compute) come
    after one probe of every kind and before the costliest-first order; a key not waiting is passed over."""
    def order(first):
        eta = Eta(clock=Clock())
        for k, cost in [("a1", 1.0), ("a2", 5.0), ("a3", 3.0)]:
            eta.add(k, "A", cost)
        eta.add("b1", "B", 1.0)
        done = []
        while (k := eta.take(None, first)) is not None:
            eta.begin(k)
            eta.finish(k, 1.0)
            done.append(k)
        return done

    assert order(()) == ["a1", "b1", "a2", "a3"]  # probes, then the costliest first
    assert order(["a3", "unknown", "a1"]) == ["a1", "b1", "a3", "a2"]
