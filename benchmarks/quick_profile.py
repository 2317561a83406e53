"""Where the CPU time of ``python paper_plots.py --quick`` goes, and the wall time it implies on idle cores (issue 19,
item 4: ``--quick`` within 60 s on 2 idle cores): ``python benchmarks/quick_profile.py [--workers N] [--only NAME ...]
[--full]``. Not a test.

Everything runs in this one process, from an empty temporary cache (``$REG_GUIDANCE_CACHE`` is set to it), measured
in CPU seconds (``time.process_time``), which the machine's load inflates little, unlike wall seconds:

1. the imports of ``paper_plots.py`` (torch, matplotlib, every figure module and what they import);
2. each figure's ``cells(quick)``, then every distinct cell computed once (``evaluation.sweep.compute_cell``) and
   stored, in the order of work of ``run_cells`` (:meth:`evaluation.sweep.Eta.take`, driven by the measured seconds);
3. each figure's ``compute(quick)`` (its arrays, read from the cells now cached) and ``plot`` (its files, to a
   temporary folder), in ``paper_plots.py``'s order;
4. the start-up of a spawned worker of :func:`evaluation.sweep.local_pool`, in a child process: the interpreter, the
   worker's initializer and the imports that unpickling one cell of every kind triggers (CPU of the child).

It prints the CPU seconds by phase, by cell kind (with each kind's largest cell) and by figure, and the wall time that
``--workers`` workers on ``--cores`` idle cores would take (:func:`simulate`): this process alone for its imports and
the cells' list, then the measured cells replayed in ``Eta.take``'s order on the workers, each first paying its
start-up, with the figures drawn after the last cell (as before session 12) or each as soon as its cells are done (a
drawing thread, session 12); then also with the cells of the smaller figures first (``paper_plots.first_cells``) and
with the workers started alongside this process's imports (``paper_plots.start_workers``: ``paper_plots.py`` now,
session 13), the runnable processes sharing the cores. ``--save FILE`` keeps the measured
seconds, ``--load FILE`` replays them without measuring. The replay assumes a cell takes the same CPU in a worker as
here: a worker also pays its own first use of what this process shares across cells (e.g. a module imported by the
first cell of a kind, a cached target), so the estimates are lower bounds of that kind.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _cpu() -> float:
    return time.process_time()


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def worker_startup(cells: list) -> float:
    """CPU seconds of a fresh spawned interpreter that runs the pool worker's initializer and unpickles one cell of
    every kind (the imports a worker pays before its first cell), measured as a child process."""
    payload = pickle.dumps(cells, protocol=4)
    code = ("import pickle, sys; from evaluation.sweep import pool_worker_init; pool_worker_init(); "
            "pickle.loads(sys.stdin.buffer.read())")
    before = _children_cpu()
    subprocess.run([sys.executable, "-c", code], input=payload, cwd=ROOT, check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    return _children_cpu() - before


def simulate(cells: dict, seconds: dict, needs: dict, drawing: dict, *, workers: int, cores: int, startup: float,
             head: float, concurrent: bool, first: list = (), early: bool = False) -> float:
    """Wall seconds of the run on ``cores`` idle cores: ``head`` seconds of this process alone (its imports, the cells'
    list), then ``workers`` workers that each pay ``startup`` and take cells in :meth:`Eta.take`'s order (the measured
    ``seconds``; ``first``: the keys of ``run_cells``' ``first``), while this process draws each figure (``drawing``:
    its CPU seconds, compute and plot; ``needs``: the keys of its cells) once its cells are done (``concurrent``, a
    drawing thread) or, else, after the last cell, in order. ``early``: the workers start with this process, during
    its ``head`` (``paper_plots.start_workers``), and wait for it if they are ready first. The runnable processes share
    the cores equally (each at most one core)."""
    from evaluation.sweep import Eta, cell_costs

    now = [0.0 if early else head]
    head_left = head if early else 0.0  # CPU seconds of this process's head still to run alongside the workers
    eta = Eta(clock=lambda: now[0])
    keys = list(cells)
    for k, c in zip(keys, cell_costs([cells[k] for k in keys])):
        eta.add(k, c.kind, c.cost, group=c.group)
    mine = set(keys)
    busy = {w: ("startup", startup) for w in range(workers)}  # worker -> (key or "startup", CPU seconds left)
    ready: list[int] = []  # workers started before this process has listed the cells
    left_cells = {n: set(ks) for n, ks in needs.items()}
    queue = [n for n in drawing if not left_cells.get(n)] if concurrent else []
    drawer: list = []  # [figure, CPU seconds left] while it draws
    sweep_over = False

    def take(w: int) -> None:
        k = eta.take(mine, first)
        if k is None:
            busy.pop(w, None)
            return
        mine.discard(k)
        eta.begin(k)
        busy[w] = (k, seconds[k])

    while True:
        if not drawer and queue and not head_left and (concurrent or sweep_over):
            n = queue.pop(0)
            drawer = [n, drawing[n]]
        active = len(busy) + bool(drawer) + bool(head_left)
        if not active:
            break
        rate = min(1.0, cores / active)
        step = min([left for _, left in busy.values()] + ([drawer[1]] if drawer else [])
                   + ([head_left] if head_left else [])) / rate
        now[0] += step
        for w in list(busy):
            what, left = busy[w]
            busy[w] = (what, left - step * rate)
        if drawer:
            drawer[1] -= step * rate
            if drawer[1] <= 1e-12:
                drawer = []
        if head_left:
            head_left = max(head_left - step * rate, 0.0) if head_left - step * rate > 1e-12 else 0.0
            if not head_left:  # the cells are listed: the workers that wait take theirs
                for w in ready:
                    take(w)
                ready.clear()
        for w in sorted(busy):
            what, left = busy[w]
            if left > 1e-12:
                continue
            if what != "startup":
                eta.finish(what, seconds[what])
                for n, ks in left_cells.items():
                    if what in ks:
                        ks.discard(what)
                        if not ks and concurrent:
                            queue.append(n)
            elif head_left:
                del busy[w]
                ready.append(w)
                continue
            take(w)
        if not busy and not ready and not head_left and not sweep_over:
            sweep_over = True
            if not concurrent:
                queue = list(drawing)
    return now[0]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--workers", type=int, default=2, help="simulated idle workers of the replay (default 2)")
    ap.add_argument("--only", action="append", default=[], help="only this figure (repeatable)")
    ap.add_argument("--full", action="store_true", help="the whole job instead of --quick")
    ap.add_argument("--verbose", action="store_true", help="print each cell's CPU seconds as it is computed")
    ap.add_argument("--cores", type=int, default=2, help="idle cores of the estimate (default 2)")
    ap.add_argument("--load", help="read the seconds of an earlier --save instead of measuring them")
    ap.add_argument("--save", help="write the measured seconds to this JSON file")
    ap.add_argument("--top", type=int, default=12, help="largest cells listed (default 12)")
    args = ap.parse_args(argv)
    quick = not args.full
    tmp = tempfile.TemporaryDirectory()
    os.environ["REG_GUIDANCE_CACHE"] = str(Path(tmp.name) / "cache")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    phases: dict[str, float] = {}

    c0 = _cpu()
    import torch  # noqa: F401

    import paper_plots  # noqa: F401  (its imports: matplotlib, the sweep engine, every figure module)
    from evaluation.sweep import Cache, cell_key, compute_cell
    from figures import FIGURES

    torch.set_num_threads(1)
    phases["imports (main process)"] = _cpu() - c0

    names = args.only or [n for n, m in FIGURES.items() if not quick or getattr(m, "QUICK", True)]
    c0 = _cpu()
    asked: dict[str, list] = {}
    for n in names:
        hook = getattr(FIGURES[n], "cells", None)
        asked[n] = list(hook(quick)) if callable(hook) else []
    distinct: dict[str, object] = {}
    figures_of: dict[str, list[str]] = defaultdict(list)
    for n, cells in asked.items():
        for c in cells:
            k = cell_key(c)
            distinct.setdefault(k, c)
            if n not in figures_of[k]:
                figures_of[k].append(n)
    phases["cells(quick) and keys"] = _cpu() - c0

    failed = 0
    if args.load:  # the seconds measured by an earlier run (--save): the estimates only
        data = json.loads(Path(args.load).read_text())
        phases, startup, seconds = data["phases"], data["startup"], data["seconds"]
        fig_cpu = {n: tuple(v) for n, v in data["figures"].items()}
    else:
        startup = worker_startup(list({type(c): c for c in distinct.values()}.values()))
        phases[f"worker start-up (each of {args.workers}, not summed below)"] = startup

        cache = Cache(os.environ["REG_GUIDANCE_CACHE"])
        seconds: dict[str, float] = {}
        c0 = _cpu()
        for k, c in distinct.items():
            s = _cpu()
            try:
                result = compute_cell(c)
            except ValueError as err:  # a cell that fails its tolerance: cached as a failure by run_cells
                from evaluation.sweep import CellFailed, encode

                result, failed = CellFailed(f"{c!r:.200}", f"{type(err).__name__}: {err}"), failed + 1
                cache.store_encoded(c, encode(result), k)
            else:
                cache.store(c, result, k)
            seconds[k] = _cpu() - s
            if args.verbose:
                print(f"cell {seconds[k]:8.2f} {type(c).__qualname__:<14} {','.join(figures_of[k])} {c!r:.120}", flush=True)
        phases["cells (one process)"] = _cpu() - c0

        fig_cpu: dict[str, tuple[float, float]] = {}
        with tempfile.TemporaryDirectory() as out:
            for n in names:
                s = _cpu()
                arrays = FIGURES[n].compute(quick=quick)
                m = _cpu()
                FIGURES[n].plot(arrays, Path(out))
                FIGURES[n].summary(arrays)
                fig_cpu[n] = (m - s, _cpu() - m)
        phases["figures: compute (from the cache)"] = sum(v[0] for v in fig_cpu.values())
        phases["figures: plot"] = sum(v[1] for v in fig_cpu.values())

    total = sum(v for p, v in phases.items() if not p.startswith("worker"))
    print(f"paper_plots.py {'--quick ' if quick else ''}{' '.join('--only ' + n for n in args.only)}: "
          f"{len(distinct)} distinct cells ({failed} failed), load average before the end {os.getloadavg()[0]:.2f}\n")
    print("CPU seconds by phase (one process; the workers' start-up measured in a child process)")
    for p, v in phases.items():
        print(f"  {p:<48} {v:7.1f}")
    print(f"  {'total in one process':<48} {total:7.1f}")
    with_workers = total + args.workers * startup
    print(f"  {f'total with {args.workers} worker start-ups':<48} {with_workers:7.1f}")

    by_kind: dict[str, list[float]] = defaultdict(list)
    for k, c in distinct.items():
        by_kind[type(c).__qualname__].append(seconds[k])
    print("\nCPU seconds by cell kind: cells, total, largest")
    for kind, v in sorted(by_kind.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {kind:<28} {len(v):5d} {sum(v):8.1f} {max(v):8.1f}")

    print("\nCPU seconds by figure: its cells (a shared cell counts for each figure that asks for it), compute, plot")
    for n in names:
        own = sum(seconds[cell_key(c)] for c in dict.fromkeys(asked[n]))
        print(f"  {n:<14} {len(asked[n]):5d} cells {own:8.1f} {fig_cpu[n][0]:7.1f} {fig_cpu[n][1]:7.1f}")

    print(f"\nthe {args.top} largest cells (CPU s, kind, figures, configuration)")
    for k in sorted(seconds, key=lambda k: -seconds[k])[:args.top]:
        print(f"  {seconds[k]:7.2f} {type(distinct[k]).__qualname__:<14} {','.join(figures_of[k]):<20} "
              f"{distinct[k]!r:.140}")

    head = phases["imports (main process)"] + phases["cells(quick) and keys"]
    needs = {n: {cell_key(c) for c in asked[n]} for n in names}
    drawing = {n: sum(fig_cpu[n]) for n in names}
    common = dict(workers=args.workers, cores=args.cores, startup=startup, head=head)
    first = list(dict.fromkeys(map(cell_key, paper_plots.first_cells(asked))))
    ordered = simulate(distinct, seconds, needs, drawing, concurrent=True, first=first, **common)
    now = simulate(distinct, seconds, needs, drawing, concurrent=True, first=first, early=True, **common)
    after = simulate(distinct, seconds, needs, drawing, concurrent=True, **common)
    before = simulate(distinct, seconds, needs, drawing, concurrent=False, **common)
    cpu = head + args.workers * startup + sum(seconds.values()) + sum(drawing.values())
    print(f"\nidle-machine estimate, {args.workers} workers on {args.cores} cores (the measured CPU seconds replayed: "
          f"{head:.1f} s of imports and cells(quick) alone, then each worker's start-up {startup:.1f} s and the cells "
          f"in Eta.take's order, the figures drawn {sum(drawing.values()):.1f} s):\n"
          f"  figures drawn after the sweep, in order  {before:6.1f} s wall\n"
          f"  each figure drawn once its cells are done {after:6.1f} s wall\n"
          f"  ... the smaller figures' cells first      {ordered:6.1f} s wall (paper_plots.first_cells)\n"
          f"  ... the workers started before the imports {now:5.1f} s wall (paper_plots.start_workers: now)\n"
          f"  bounds: all CPU / cores {cpu / args.cores:.1f} s; the longest cell {max(seconds.values()):.1f} s")
    if args.save:
        Path(args.save).write_text(json.dumps({"phases": phases, "startup": startup, "seconds": seconds,
                                               "figures": fig_cpu}, indent=1))

if __name__ == "__main__":
    main()
