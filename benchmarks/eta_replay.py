"""The progress bar's ETA on the last full main job, replayed (issue 19, item 4: "an ETA that is right within 2x"):
``python benchmarks/eta_replay.py [--cache DIR] [--base REV] [--workers N] [--replay-workers M] [--no-models]``.
Not a test.

1. **The job's cells and what each cost.** Lists the cells of ``python paper_plots.py`` (every figure's
   ``cells(False)``, deduplicated by cache key, in the order ``run_cells`` meets them) and reads the modification
   time of each one's file in ``--cache`` (read only; default ``/tmp/cache_full9``, the session-9 cold run: 2 local
   workers, 3313 cells). A cold run stores each result when it arrives, so the times are the cells' completions;
   files written after the first pause of more than ``--gap`` seconds belong to a later run and are left out (cells
   that failed were not cached by that run: their times are unknown). The run's order of work is recomputed with
   ``--base``'s rule (the cheapest cell of every kind, then the largest declared cost first) and each cell's wall
   seconds are recovered by list scheduling: with ``--workers`` workers taking cells in that order, a cell starts
   when the earliest running one ends. A failed cell's time is first absorbed by the next cell its worker took
   (the earliest consistent completion), then shared equally between them. Check: the reconstructed run ends when
   the real one did.
2. **The replay.** Both ETAs, ``--base``'s ``Eta`` (its order: as in the run) and this tree's (``Eta.take``'s order:
   a probe of every kind, then of every rate class of :mod:`evaluation.costs`, then the costliest estimate first),
   run the same cells with those wall seconds on ``--replay-workers`` simulated workers (default ``--workers``) and a
   simulated clock. Once a simulated minute the ETA is compared with the true time left. Prints the share of those
   minutes at which the ETA is within 2x (from 5 % of the run on, and over the whole run; and within 2x or 1 minute),
   the extreme ratios, the ratio at every 5 % of the run, and the simulated wall time of each order (the
   costliest-first order ends sooner: no worker is left alone with a long cell at the end).

Caveats: the seconds are wall seconds of that run (the machine's load included), not CPU; a cell's seconds do not
depend on when it runs in the replay.
"""
from __future__ import annotations

import argparse
import heapq
import math
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

from revisions import ROOT, checkout, module_from

sys.path.insert(0, str(ROOT))  # this tree's packages first


class Clock:
    """A simulated clock: ``perf_counter()`` is its time (for ``--base``'s Eta, which reads ``time.perf_counter``)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def perf_counter(self) -> float:
        return self.now


def job_cells() -> dict:
    """{key: cell} of the full main job, in the order ``run_cells`` meets them."""
    from evaluation.sweep import cell_key
    from figures import FIGURES

    cells = {}
    for mod in FIGURES.values():
        hook = getattr(mod, "cells", None)
        for c in (hook(False) if callable(hook) else ()):
            cells.setdefault(cell_key(c), c)
    return cells


def base_costs(base, cells: dict) -> tuple[dict, dict]:
    """({key: cost}, {key: kind name}) by ``base``'s sweep module: its :func:`~evaluation.sweep.cell_costs`, or, in
    revisions before that was public, its private ``_costs`` (a cost per cell; later ``(rate class, cost)``) and
    ``_kind_name``."""
    values = list(cells.values())
    public = getattr(base, "cell_costs", None)
    if public is not None:
        got = public(values)
        return {k: c.cost for k, c in zip(cells, got)}, {k: c.kind for k, c in zip(cells, got)}
    costs = [c[1] if isinstance(c, tuple) else c for c in base._costs(values)]
    return dict(zip(cells, costs)), {k: base._kind_name(c) for k, c in cells.items()}


def base_order(cells: dict, base) -> tuple[list, dict, dict]:
    """The order of work of ``base``'s run_cells (its costs, :func:`base_costs`; the cheapest cell of each kind, then
    the largest declared cost first), with the costs and kinds."""
    cost, kind = base_costs(base, cells)
    order = sorted(cells, key=lambda k: -cost[k])
    probes, kinds = [], set()
    for k in reversed(order):
        if kind[k] not in kinds:
            kinds.add(kind[k])
            probes.append(k)
    return probes + [k for k in order if k not in set(probes)], cost, kind


def completions(cells: dict, root: Path, gap: float) -> tuple[dict, float]:
    """({key: seconds from the first file} of the cells stored by the first run in ``root``, that run's end)."""
    times = {}
    for k, c in cells.items():
        try:
            times[k] = os.stat(root / type(c).__qualname__ / k[:2] / f"{k}.json").st_mtime
        except FileNotFoundError:
            pass
    ts = sorted(times.values())
    t0, end = ts[0], ts[-1]
    for a, b in zip(ts, ts[1:]):
        if b - a > gap:
            end = a
            break
    return {k: t - t0 for k, t in times.items() if t <= end}, end - t0


def wall_seconds(order: list, done: dict, workers: int) -> tuple[dict, float, int]:
    """Each cell's wall seconds by list scheduling (see the module's docstring), the reconstructed end, and how many
    cells' times were imputed."""
    free = [(0.0, w) for w in range(workers)]  # (free at, worker)
    seconds, chain = {}, {w: [] for w in range(workers)}
    for k in order:
        at, w = heapq.heappop(free)
        if k in done:
            end = max(done[k], at)
            seconds[k] = end - at
            if chain[w]:  # failed cells before it on this worker: share the time equally
                share = seconds[k] / (len(chain[w]) + 1)
                for f in chain[w] + [k]:
                    seconds[f] = share
                chain[w] = []
        else:
            end = at
            seconds[k] = 0.0
            chain[w].append(k)
        heapq.heappush(free, (end, w))
    return seconds, max(t for t, _ in free), sum(k not in done for k in order)


def replay_base(base, clock: Clock, order: list, cost: dict, kind: dict, seconds: dict, workers: int):
    base.time = types.SimpleNamespace(perf_counter=clock.perf_counter)  # its module's clock: the simulated one
    eta = base.Eta()
    for k in order:
        eta.add(k, kind[k], cost[k])
    queue = list(reversed(order))

    def next_cell():
        return queue.pop() if queue else None

    return _simulate(eta, clock, next_cell, lambda k: None, seconds, workers)


def replay_new(clock: Clock, cells: dict, seconds: dict, workers: int):
    from evaluation import sweep

    eta = sweep.Eta(clock=clock)
    for k, c in zip(cells, sweep.cell_costs(list(cells.values()))):
        eta.add(k, c.kind, c.cost, group=c.group)
    return _simulate(eta, clock, eta.take, eta.begin, seconds, workers)


def _simulate(eta, clock: Clock, next_cell, begin, seconds: dict, workers: int):
    """[(time, ETA or None)] every 60 simulated seconds (running cells count as they run), and the end."""
    running, marks = [], []  # (ends at, seq, key)
    seq = 0

    def fill():
        nonlocal seq
        while len(running) < workers:
            k = next_cell()
            if k is None:
                return
            begin(k)
            heapq.heappush(running, (clock.now + seconds[k], seq, k))
            seq += 1

    fill()
    tick = 60.0
    while running:
        end, _, k = running[0]
        while tick < end:
            clock.now = tick
            marks.append((tick, eta.eta()))
            tick += 60.0
        clock.now = end
        heapq.heappop(running)
        eta.finish(k, seconds[k])
        fill()
    return marks, clock.now


def summary(name: str, marks: list, end: float) -> list[str]:
    rows = [(t, e, e / (end - t) if e is not None else None) for t, e in marks if end - t > 1.0]
    late = [(t, e, r) for t, e, r in rows if t >= 0.05 * end]

    def share(rs, slack=0.0):  # within 2x, or within ``slack`` seconds
        return 100 * sum(e is not None and (0.5 <= r <= 2 or abs(e - (end - t)) <= slack) for t, e, r in rs) / len(rs)

    known = [r for _, _, r in late if r is not None]
    lines = [f"{name}: simulated wall {end:.0f} s; the ETA, once a minute, is within 2x of the time left at "
             f"{share(late):.0f} % of {len(late)} minutes from 5 % of the run on ({share(rows):.0f} % of all; within "
             f"2x or 1 minute: {share(late, 60):.0f} %); unknown at {sum(r is None for _, _, r in late)}; ETA / time "
             f"left from 5 % on: min {min(known, default=math.nan):.2f}, max {max(known, default=math.nan):.2f}"]
    cells = []
    for p in range(0, 100, 5):
        at = [r for t, _, r in rows if t >= p / 100 * end]
        cells.append(f"{p}%:{'?' if not at or at[0] is None else f'{at[0]:.2f}'}")
    lines.append("  ETA / time left at % of the run: " + " ".join(cells))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/cache_full9"), help="the cold run's cache (read only)")
    ap.add_argument("--base", default="64f60ef", help="the revision whose Eta and order the run used")
    ap.add_argument("--workers", type=int, default=2, help="the run's local workers")
    ap.add_argument("--replay-workers", type=int, help="the replay's simulated workers (default: --workers)")
    ap.add_argument("--gap", type=float, default=1200.0, help="a pause (s) between stored files that ends the run")
    ap.add_argument("--no-models", action="store_true",
                    help="also replay this tree's Eta with one rate class per kind (no evaluation.costs models)")
    args = ap.parse_args()
    n = args.replay_workers or args.workers
    base = module_from(checkout(args.base, Path(tempfile.mkdtemp())) / "evaluation" / "sweep.py", "sweep_base")
    cells = job_cells()
    order, cost, kind = base_order(cells, base)
    done, end = completions(cells, args.cache, args.gap)
    seconds, rebuilt, imputed = wall_seconds(order, done, args.workers)
    code = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    print(f"# python benchmarks/eta_replay.py --cache {args.cache} --base {args.base} --workers {args.workers} "
          f"--replay-workers {n}{' --no-models' if args.no_models else ''}; "
          f"this tree at {code} (+ uncommitted changes, if any)")
    print(f"# {len(cells)} cells; {len(done)} stored by the run, {imputed} not (failed: time shared with the next "
          f"cell of their worker); the run ended {end:.0f} s after its first file, the reconstruction at "
          f"{rebuilt:.0f} s; {sum(seconds.values()):.0f} worker-seconds in all")
    top = sorted(seconds, key=lambda k: -seconds[k])[:5]
    print("# longest cells (wall s): " + "; ".join(f"{seconds[k]:.0f} {cells[k]!r:.90}" for k in top))
    for line in summary(f"before ({args.base}: kind rates, its order)",
                        *replay_base(base, Clock(), order, cost, kind, seconds, n)):
        print(line)
    for line in summary("after (this tree: rate classes, probes then costliest first)",
                        *replay_new(Clock(), cells, seconds, n)):
        print(line)
    if args.no_models:
        from evaluation import costs

        costs.MODELS.clear()
        for line in summary("this tree without the cost models (one class per kind)",
                            *replay_new(Clock(), cells, seconds, n)):
            print(line)


if __name__ == "__main__":
    main()
