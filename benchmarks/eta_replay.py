"""The progress bar's ETA on the last full main job, replayed (issue 19, item 4: "an ETA that is right within 2x"):
``python benchmarks/eta_replay.py [--cache DIR] [--base REV] [--workers N] [--replay-workers M] [--no-models]``
(``--priors ...``: item 3).
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

3. **With priors** (``--priors [--bar-log FILE] [--write-table FILE]``: the ETA's table of seconds per rate class,
   :mod:`evaluation.costs`). The cells' wall seconds are re-traced from their files' times by re-running a run of
   this tree's order (``Eta.take`` with ``paper_plots.py``'s first cells, as the session-14 run): a cell that
   completes next and is not running must have started at the last completion (forced, exact when the cells running
   are right), otherwise the Eta's choice starts (skipping a class whose cell would run more than :data:`SANE` times
   its estimate so far). ``--bar-log``: the run's bar logged once a minute, to check which classes the re-traced run
   is on and what the real ETA said. A table is fitted to those seconds (``--write-table`` writes it, with a header
   that says it is re-traced), and the ETA is replayed without it, with it, with every prior x 0.5 and x 2 (a machine
   2x slower / faster than the table's) with and without the measured speed scale, and with each class's and kind's
   prior off by a random factor up to 2x and 3x. A real run's log replaces the re-tracing: ``--log
   CACHE/seconds.jsonl`` replays the seconds it measured (its run with the most cells), and ``--table FILE`` adds a
   replay with that table (e.g. the shipped one, from another run: out of sample); its table is written by
   ``python -m evaluation.costs --write-priors CACHE``.

Caveats: the seconds are wall seconds of that run (the machine's load included), not CPU; a cell's seconds do not
depend on when it runs in the replay.
"""
from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import subprocess
import sys
import tempfile
import time
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
    return job()[0]


def job() -> tuple[dict, list]:
    """({key: cell} of the full main job, in the order ``run_cells`` meets them; the keys of ``paper_plots.py``'s
    ``first`` cells with 2 workers, :func:`paper_plots.first_cells`)."""
    from evaluation.sweep import cell_key
    from figures import FIGURES
    from paper_plots import first_cells

    cells, owned = {}, {}
    for name, mod in FIGURES.items():
        hook = getattr(mod, "cells", None)
        if callable(hook):
            owned[name] = list(hook(False))
            for c in owned[name]:
                cells.setdefault(cell_key(c), c)
    return cells, list(dict.fromkeys(cell_key(c) for c in first_cells(owned)))


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


def replay_new(clock: Clock, cells: dict, seconds: dict, workers: int, priors: dict | None = None,
               first: list = (), scale: bool = True):
    """This tree's Eta and order (``first``: ``run_cells``' first cells) on ``seconds``, with the table ``priors``
    (``scale=False``: not scaled by the measured speed)."""
    from evaluation import sweep

    class Unscaled(sweep.Eta):
        def _speed(self) -> float:
            return 1.0

    eta = (sweep.Eta if scale else Unscaled)(clock=clock, priors=priors)
    for k, c in zip(cells, sweep.cell_costs(list(cells.values()))):
        eta.add(k, c.kind, c.cost, group=c.group)
    return _simulate(eta, clock, lambda: eta.take(None, first), eta.begin, seconds, workers)


SANE = 5.0  # traced_seconds: a guessed cell runs at most this many times its class's estimate (+ 30 s)


def traced_seconds(cells: dict, done: dict, workers: int, first: list) -> tuple[dict, float, int, int]:
    """Each cell's wall seconds recovered from the completion times ``done`` by re-running the run on ``workers``
    simulated workers: when a worker is free (at a completion), the cell that completes next in the data is started
    if it is not running yet (it must have been: *forced*, then its seconds are exact), else the cell this tree's Eta
    (no priors) takes with ``first`` (``paper_plots.py``'s order at the session-14 run) among those not started: that
    cell runs past the next completion, and which cell it was is the reconstruction's guess (*ambiguous*; with 2
    workers only the long cells' start times depend on it), skipping a class whose cell would run more than
    :data:`SANE` times its estimate so far (the Eta's order left the run's there; else the cell completing soonest).
    Every cell ends at its file's time. Returns the seconds, the reconstructed end, the forced and the ambiguous
    starts."""
    from evaluation import sweep

    clock = Clock()
    eta = sweep.Eta(clock=clock)
    for k, c in zip(cells, sweep.cell_costs(list(cells.values()))):
        eta.add(k, c.kind, c.cost, group=c.group)
    by_end = sorted((t, k) for k, t in done.items())  # what completes next, in the data
    nxt, finished, started = 0, set(), {}
    running, forced, ambiguous = [], 0, 0

    def fill():
        nonlocal nxt, forced, ambiguous
        while len(running) < workers:
            while nxt < len(by_end) and by_end[nxt][1] in finished:
                nxt += 1
            if nxt == len(by_end):
                return
            k = by_end[nxt][1]
            if k in started:
                left = set(cells) - set(started) - finished
                if not left:
                    return
                k = None
                while left:  # the Eta's choice, unless it would run far longer than its class's estimate so far
                    k = eta.take(left, first)
                    e = eta.estimate(k)
                    if e is None or done[k] - clock.now <= SANE * e + 30.0:
                        break
                    group = eta.pending[k].group
                    left = {x for x in left if eta.pending[x].group != group}  # not that class now
                    k = None
                if k is None:  # no class fits: the cell that completes soonest
                    k = min(set(cells) - set(started) - finished, key=lambda x: done[x])
                if k is None:
                    return
                ambiguous += 1
            else:
                forced += 1
            eta.begin(k)
            started[k] = clock.now
            heapq.heappush(running, (done[k], k))

    fill()
    seconds = {}
    while running:
        end, k = heapq.heappop(running)
        clock.now = end
        seconds[k] = end - started[k]
        finished.add(k)
        eta.finish(k, seconds[k])
        fill()
    return seconds, clock.now, forced, ambiguous


def bar_log(path: Path, cells: dict, done: dict, seconds: dict, root: Path) -> list[str]:
    """Checks of the re-traced seconds and of the replay against the run's own bar, logged once a minute to ``path``
    (lines ``HH:MM:SS <bar>``, UTC on the day of the run's first file, the bar's ``[elapsed, ..., ETA m:ss, on A; B]``):
    at how many of those minutes the classes the re-traced run is on are the bar's (``on`` names two at most, each
    class once), and the real bar's ETA over the true time left."""
    import datetime
    import re

    from evaluation.sweep import _short, cell_costs

    group = {k: _short(c.group) for k, c in zip(cells, cell_costs(list(cells.values())))}
    t0 = min(os.stat(root / type(cells[k]).__qualname__ / k[:2] / f"{k}.json").st_mtime for k in done)
    day = datetime.datetime.fromtimestamp(t0, datetime.timezone.utc).date()
    same = within = minutes = 0
    ratios = []
    for line in path.read_text().splitlines():
        m = re.match(r"(\d\d:\d\d:\d\d) .*\[(?:(\d+):)?(\d+):(\d\d), cells \d+/\d+, ETA (\S+?)(?:, on (.*))?\]", line)
        if not m:
            continue
        at = datetime.datetime.combine(day, datetime.time.fromisoformat(m[1]), datetime.timezone.utc).timestamp() - t0
        elapsed = 3600 * int(m[2] or 0) + 60 * int(m[3]) + int(m[4])
        left = max(done.values()) - at
        if m[5] != "?" and left > 1:
            eta = sum(int(v) * f for v, f in zip(reversed(m[5].split(":")), (1, 60, 3600)))
            ratios.append((elapsed, eta / left))
        if m[6]:
            on = set(m[6].removesuffix(" ...").split("; "))
            running = {group[k] for k in seconds if done[k] - seconds[k] <= at < done[k]}
            minutes += 1
            same += on == running
            within += on <= running
    share = 100 * sum(0.5 <= r <= 2 for _, r in ratios) / max(len(ratios), 1)
    return [f"# check against the run's bar ({path}, once a minute): the re-traced run is on the bar's classes at "
            f"{same} of {minutes} minutes (on them and maybe more at {within}); the real bar's ETA was within 2x of "
            "the "
            f"time left at {share:.0f} % of its {len(ratios)} minutes with an ETA ('ETA ?' at the first two), "
            "ETA / time left: " + " ".join(f"{e // 60}:{r:.2f}" for e, r in ratios[:15]) + " ..."]


def table_of(cells: dict, seconds: dict, about: str, command: str, run: str = "replay") -> tuple[dict, dict]:
    """The ETA's table (:func:`evaluation.costs.priors_table`) of ``seconds``, written and read back as the shipped one
    is (:func:`evaluation.costs.read_priors`): (the table, the priors)."""
    from evaluation import costs, sweep

    records = [{"key": k, "kind": c.kind, "class": c.group, "cost": c.cost, "seconds": seconds[k], "run": run}
               for k, c in zip(cells, sweep.cell_costs(list(cells.values()))) if k in seconds]
    table = costs.priors_table(records, about, command)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "class_seconds.json"
        path.write_text(json.dumps(table))
        return table, costs.read_priors(path)


def scaled(priors: dict, factor, seed: int | None = None) -> dict:
    """``priors`` times ``factor`` (every line), or, with ``seed``, each class and kind times its own log-uniform
    factor in [1/factor, factor] (a table right within ``factor`` per class only)."""
    import random

    rng = random.Random(seed)
    out = {}
    for name, (a, b) in priors.items():
        f = factor if seed is None else math.exp(rng.uniform(-math.log(factor), math.log(factor)))
        out[name] = (a * f, b * f)
    return out


def first_minutes(marks: list, end: float, n: int = 15) -> str:
    """ETA / time left at the first ``n`` simulated minutes."""
    return " ".join(f"{t / 60:.0f}:{'?' if e is None else f'{e / (end - t):.2f}'}" for t, e in marks[:n])


def priors_section(args) -> None:
    """The ETA with the table of priors (``--priors``): see the module's docstring, item 3."""
    from evaluation.sweep import _short

    n = args.replay_workers or args.workers
    cells, first = job()
    code = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    where = f"--log {args.log}" if args.log else f"--cache {args.cache}"
    print(f"# python benchmarks/eta_replay.py --priors {where} --workers {args.workers} "
          f"--replay-workers {n}{f' --bar-log {args.bar_log}' if args.bar_log else ''}"
          f"{f' --write-table {args.write_table}' if args.write_table else ''}"
          f"{f' --table {args.table}' if args.table else ''}; "
          f"this tree at {code} (+ uncommitted changes, if any)")
    if args.log is not None:
        return measured_section(args, cells, first, n)
    done, end = completions(cells, args.cache, args.gap)
    seconds, rebuilt, forced, ambiguous = traced_seconds(cells, done, args.workers, first)
    print(f"# {len(cells)} cells ({len(first)} of them first, as paper_plots.py); {len(done)} stored by the run; "
          f"wall seconds re-traced from the files' times: {forced} starts forced by the completions, {ambiguous} "
          f"guessed (this tree's order); the run ended {end:.0f} s after its first file, the re-traced run at "
          f"{rebuilt:.0f} s; {sum(seconds.values()):.0f} worker-seconds in all")
    if args.bar_log is not None:
        for line in bar_log(args.bar_log, cells, done, seconds, args.cache):
            print(line)
    command = (f"python benchmarks/eta_replay.py --priors --cache {args.cache} --workers {args.workers} "
               f"--write-table {args.write_table}" if args.write_table else "")
    about = (f"PROVISIONAL, APPROXIMATE: made from the wall seconds of the cells of the cold run cached in "
             f"{args.cache} as benchmarks/eta_replay.py --priors re-traces them from the cache files' times (not "
             "measured per cell: no log of cell seconds existed yet); replace it with a cold run's measured log: "
             "python -m evaluation.costs --write-priors CACHE")
    t0 = min(os.stat(args.cache / type(cells[k]).__qualname__ / k[:2] / f"{k}.json").st_mtime for k in done)
    run = time.strftime("%Y-%m-%dT%H:%M:%SZ (its first cached file)", time.gmtime(t0))
    table, priors = table_of(cells, seconds, about, command, run)
    if args.write_table:
        table["machine"] = (f"{args.workers} local workers, {os.cpu_count()} CPUs; the load is not in the cache's file "
                            f"times{'; ' + args.load if args.load else ''}")
        args.write_table.write_text(json.dumps(table, indent=1) + "\n")
        print(f"# wrote {args.write_table}")
    total = sum(seconds.values())
    top = sorted(table["classes"].items(), key=lambda kv: -kv[1]["seconds"])[:4]
    d2 = sum(v["seconds"] for k, v in table["classes"].items()
             if k.startswith("evaluation.claims.cells:OutputCell d=2"))
    print(f"# the 2-D output classes (OutputCell d=2): {100 * d2 / total:.0f} % of the worker-seconds; "
          "the largest classes of the table (share; fixed s + s per unit cost): " + "; ".join(
        f"{_short(k)} {100 * v['seconds'] / total:.0f} % ({v['cells']} cells; {v['fixed']:.3g} + {v['rate']:.3g} c)"
        for k, v in top))
    replay_variants(cells, seconds, n, first, priors, args.table, "no priors (as the session-14 run)")


def measured_section(args, cells: dict, first: list, n: int) -> None:
    """``--priors --log FILE``: the same replays on the seconds a run measured (its ``seconds.jsonl``: the run with
    the most cells), and ``--table``'s table out of sample."""
    from evaluation import costs

    records = costs.read_log(args.log)
    runs: dict[str, int] = {}
    for r in records:
        runs[r["run"]] = runs.get(r["run"], 0) + 1
    run = max(sorted(runs), key=lambda k: runs[k])
    seconds = {r["key"]: r["seconds"] for r in records if r["run"] == run}
    job_keys = set(cells)
    cells = {k: c for k, c in cells.items() if k in seconds}
    first = [k for k in first if k in cells]
    print(f"# measured seconds from {args.log}, the run that began at {run}: {runs[run]} cells, {len(cells)} of them "
          f"cells of this tree's job ({len(job_keys) - len(cells)} of the job's cells not in it, "
          f"{len(set(seconds) - job_keys)} of its cells not in the job: another code version); "
          f"{sum(seconds[k] for k in cells):.0f} worker-seconds")
    _, priors = table_of(cells, seconds, f"the run of {args.log} at {run}", "", run)
    replay_variants(cells, seconds, n, first, priors, args.table, "no priors")


def replay_variants(cells: dict, seconds: dict, n: int, first: list, priors: dict, table: Path | None,
                    none: str) -> None:
    """The replays of :func:`priors_section`: no priors, ``priors`` (in-sample) as they are, scaled and off per class,
    and the table in the file ``table`` (out of sample), each with its share of minutes within 2x."""
    from evaluation import costs

    variants = [(none, None, True),
                ("priors of this run (in-sample)", priors, True),
                ("priors x 0.5 (this machine 2x slower than the table's)", scaled(priors, 0.5), True),
                ("priors x 2 (this machine 2x faster than the table's)", scaled(priors, 2.0), True),
                ("priors x 0.5, not scaled by the measured speed", scaled(priors, 0.5), False),
                ("priors x 2, not scaled by the measured speed", scaled(priors, 2.0), False),
                ("priors off by a factor in [1/2, 2] per class and kind (seed 0)", scaled(priors, 2.0, seed=0), True),
                ("priors off by a factor in [1/3, 3] per class and kind (seed 1)", scaled(priors, 3.0, seed=1), True)]
    if table is not None:
        variants.append((f"the table {table} (out of sample)", costs.read_priors(table), True))
    for name, table_priors, scale in variants:
        marks, wall = replay_new(Clock(), cells, seconds, n, table_priors, first, scale)
        rows = [(t, e) for t, e in marks if wall - t > 1.0]
        within = sum(e is not None and 0.5 <= e / (wall - t) <= 2 for t, e in rows)
        print(f"{name}: within 2x at {100 * within / len(rows):.0f} % of {len(rows)} simulated minutes from the "
              f"first on (wall {wall:.0f} s)")
        print(f"  ETA / time left at minutes {first_minutes(rows, wall)}")
        for line in summary("  ", marks, wall)[1:]:
            print(line)


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
    ap.add_argument("--bar-log", type=Path, help="--priors: the run's bar, logged once a minute (a check)")
    ap.add_argument("--log", type=Path, help="--priors: replay the seconds a run measured (its seconds.jsonl)")
    ap.add_argument("--table", type=Path, help="--priors: also replay with this table of priors (out of sample)")
    ap.add_argument("--write-table", type=Path, help="--priors: write the table of the re-traced seconds there")
    ap.add_argument("--load", default="", help="--write-table: what is known of the run's load, for its header")
    ap.add_argument("--priors", action="store_true",
                    help="replay this tree's Eta with a table of priors made from the run's own seconds (and scaled)")
    args = ap.parse_args()
    if args.priors:
        return priors_section(args)
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
