"""Regenerate every figure and the numbers behind them: ``python paper_plots.py [--quick] [--only NAME] [--out DIR]
[--workers N]``.

Writes PNG and PDF figures plus ``results.json`` (machine-readable numbers) and ``results.md`` (one caption
and one table per figure) to ``--out``. Everything shown is computed exactly (no sampling), so a run is
deterministic. One job, on every core by default (``--workers``, default ``os.cpu_count()``), with one progress
bar (in seconds of work measured per class of cell, with ``cells done/total``, an ETA from the measured seconds and
what the workers are on, then the figure being drawn: :class:`evaluation.sweep.Eta`): first the cells of every
figure that declares them (the ``cells(quick)`` hook, :mod:`figures`) run in one cached sweep of :func:`evaluation.sweep.run_cells` (a cell that fails fails the figures that list it, and the sweep
goes on; a figure that copes with failed cells, ``PARTIAL = True`` in its module, computes anyway: the claims ledger
reports such a claim as not converged, or concludes a partial claim on its converged settings, reading the failures
from the cache), while the figures without the hook compute their arrays in worker processes; each figure with the
hook reads its arrays from the cache (a warm rerun of those recomputes nothing) and is drawn as soon as its own cells
are done, by a thread of this process while the workers compute the other cells (``--workers`` > 1; the figures left
when the sweep ends are drawn after it, in order), except one whose arrays, code and matplotlib are those of the files
it drew last time in ``--out``, files unchanged since (a digest of each in ``--out/.drawn.json``; ``--redraw`` draws
them all). ``results.json`` lists the figures in order. The workers start before this file imports torch, matplotlib
and the figures (:func:`start_workers`), and the cells of every figure but the largest go first, the figures with the
fewest cells first (:func:`first_cells`), so that they are drawn while the others' cells compute (issue 19).
``--quick`` leaves out the figure sets too slow for a fast look (``QUICK = False`` in the module: the claims
ledger); ``--quick --only NAME`` draws them. The output folder is checked before any work; no figure may write a
file another wrote (it fails instead); the results files are written atomically and always describe the figures
of this run (a figure that fails is recorded as failed, and the command exits with status 1 after the others are
done). Ctrl-C ends the run with exit status 130 and one line saying what is kept: the finished cells are cached (a
rerun resumes), the figures drawn so far are in ``--out``, and its results files are unchanged.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import functools
import hashlib
import json
import math
import multiprocessing
import os
import pickle
import queue
import sys
import threading
import time
from pathlib import Path


def _start_worker() -> None:
    """The initializer of :func:`start_workers`' processes: :func:`evaluation.sweep.pool_worker_init`, imported in
    the worker."""
    from evaluation.sweep import pool_worker_init

    pool_worker_init()


def _warm_up() -> None:
    """A worker's first task: the imports its cells need (torch, scipy, the exact engines; ``evaluation`` itself
    loads its exports on first use, so they are named)."""
    import importlib

    for name in ("evaluation.density", "evaluation.distances", "evaluation.field_errors", "evaluation.spec"):
        importlib.import_module(name)


def start_workers(argv: list[str]) -> cf.ProcessPoolExecutor | None:
    """The local pool of the run (``--workers`` processes, spawned like :func:`evaluation.sweep.local_pool`'s), started
    before this file imports torch, matplotlib and the figures, with one warm-up task per worker so that every worker
    starts now and pays its own imports meanwhile (issue 19: on --quick, 2 x 3.9 CPU-s that followed this process's
    4.2 s of imports on the critical path); ``None`` for one worker, ``--help`` or an unreadable ``--workers`` (the
    command line is read fully, and refused, by :func:`main`). Only the stdlib is imported here."""
    if "-h" in argv or "--help" in argv:
        return None
    ap = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    ap.add_argument("--workers")
    try:
        workers = int(ap.parse_known_args(argv)[0].workers or os.cpu_count() or 1)
    except ValueError:
        return None
    if workers < 2:
        return None
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                  initializer=_start_worker)
    for _ in range(workers):  # one process is spawned per task submitted while none is idle
        pool.submit(_warm_up)
    return pool


EARLY_POOL = start_workers(sys.argv[1:]) if __name__ == "__main__" else None

if __name__ != "__mp_main__":
    # A worker process of evaluation.sweep.local_pool (spawned) runs this file again, as "__mp_main__", before its first
    # task; its tasks (cells, _compute) import what they use, so a worker skips the figures, matplotlib and the rest
    # here (issue 19: about 1.3 CPU-s per worker, on the critical path of --quick, where this process waits for them).
    import matplotlib
    import torch

    matplotlib.use("Agg")  # entry point: files only, no display

    from tqdm.auto import tqdm  # noqa: E402

    from evaluation.docs import numbers_table  # noqa: E402
    from evaluation.io import check_sweep_arguments, check_writable_dir, write_atomically  # noqa: E402
    from evaluation.sweep import (BAR_FORMAT, CellFailed, SweepInterrupted, cell_key, cells_code, eta_of,  # noqa: E402
                                  local_pool, pool_closer, run_cells)
    from figures import FIGURES  # noqa: E402


def markdown(results: dict) -> str:
    lines = ["# Results", ""]
    for name, r in results.items():
        lines += [f"## {name}", "", r["caption"], ""]
        lines += [f"**failed**: {r['error']}" if "error" in r else numbers_table(r["numbers"]), ""]
    return "\n".join(lines)


def _compute(names: tuple[str, ...], quick: bool, threads: int) -> dict:
    """Figures' arrays, the seconds each took and its CPU seconds, one after the other in one worker process (figures
    without a ``cells`` hook; a figure that ``USES`` others shares their cached arrays in this process)."""
    import torch

    from figures import FIGURES  # in a worker: this file's own imports are skipped there

    torch.set_num_threads(threads)
    out = {}
    for name in names:
        start, cpu = time.perf_counter(), time.thread_time()
        out[name] = (FIGURES[name].compute(quick=quick), time.perf_counter() - start, time.thread_time() - cpu)
    return out


def _groups(names: list[str]) -> list[tuple[str, ...]]:
    """The figures in tasks for the workers: a figure that ``USES`` others (their cached arrays) goes with them, after
    them; the others alone."""
    uses = {n: [u for u in getattr(FIGURES[n], "USES", ()) if u in names] for n in names}
    root = {n: n for n in names}

    def find(n: str) -> str:
        while root[n] != n:
            n = root[n]
        return n

    for n in names:
        for u in uses[n]:
            root[find(n)] = find(u)
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(find(n), []).append(n)
    return [tuple(sorted(g, key=lambda n: bool(uses[n]))) for g in groups.values()]  # users last, else in order


def first_cells(owned: dict[str, list]) -> list:
    """The cells ``run_cells`` starts first (its ``first``): those of every figure but the one with the most cells, the
    figures with the fewest cells first, so that each is drawn by the drawing thread while the others' cells compute
    and the largest figure's cells end the sweep (issue 19: in Eta.take's order alone, the six cheap cells of
    fields_2d ran last and its drawing, the longest, came after the sweep, about 2 s of one idle core on --quick)."""
    size = {n: len(set(map(cell_key, cells))) for n, cells in owned.items()}
    order = sorted(owned, key=lambda n: size[n])  # stable: among equals, the figures' order
    return [c for n in order[:-1] for c in owned[n]]


FIGURE_SECONDS = 5.0
"""A figure's seconds on the bar before the first one is measured, when the last run in --out does not say: reading its
cells from the cache and drawing took 1-9 s per figure in the session-9 full job and 1-9 s in --quick."""


def _names(names) -> str:
    """Figure names for the bar: all of them when they are few, else how many."""
    names = list(names)
    return ", ".join(names) if len(names) <= 3 else f"{len(names)} figures"


def _previous_seconds(out: Path) -> dict:
    """Seconds per figure of the last run written to ``out`` (the order of the costliest first, and the figures'
    estimates on the bar), or {}."""
    try:
        figs = json.loads((out / "results.json").read_text())["figures"]
        items = figs.items()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
    seconds = {n: r.get("seconds") if isinstance(r, dict) else None for n, r in items}
    return {n: float(s) for n, s in seconds.items()  # finite seconds >= 0 only (a NaN there crashed the bar)
            if isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and s >= 0}


DRAWN = ".drawn.json"  # in --out: per figure, the digest of what it drew and its files (a warm rerun redraws nothing)
_SOURCES = ("analytic", "sampler", "evaluation", "figures", "toy")  # code a figure's look may depend on


@functools.cache
def _code_digest() -> bytes:
    """One digest of every module a figure's drawing can reach (any change there redraws every figure)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256(matplotlib.__version__.encode())
    for package in _SOURCES:
        for path in sorted((root / package).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.digest()


def _stamp(name: str, arrays, quick: bool) -> str | None:
    """The digest of what figure ``name`` draws: its arrays (or the module's ``fingerprint(arrays)``: what its plot
    reads), the code and matplotlib's version; ``None`` when the arrays do not pickle (then it is always drawn)."""
    fingerprint = getattr(FIGURES[name], "fingerprint", None)
    try:
        data = pickle.dumps(fingerprint(arrays) if callable(fingerprint) else arrays, protocol=4)
    except Exception:  # noqa: BLE001 - not picklable: no stamp, the figure is drawn
        return None
    return hashlib.sha256(_code_digest() + f"{name}:{quick}:".encode() + data).hexdigest()


def _read_drawn(out: Path) -> dict:
    try:
        drawn = json.loads((out / DRAWN).read_text())
        return drawn if isinstance(drawn, dict) else {}
    except (OSError, ValueError):
        return {}


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _drawn_entry(stamp: str, paths: list[Path]) -> dict:
    """What .drawn.json records of a figure's drawing: the stamp of what it drew, its files and each file's sha256."""
    return {"stamp": stamp, "files": [p.name for p in paths], "sha256": {p.name: _file_digest(p) for p in paths}}


def _kept_files(out: Path, last, stamp: str | None) -> list[Path] | None:
    """The files figure's last drawing left in ``out`` (``last``: its entry in .drawn.json), when that drawing was of
    what it draws now (``stamp``) and each file is still the one it wrote (its sha256: not redrawn since by another
    checkout, edited, or another folder's); else None (draw it). An entry naming anything but a file of ``out``
    itself is None too (a foreign or corrupt .drawn.json once made a figure keep results.md or /etc/hostname)."""
    if stamp is None or not isinstance(last, dict) or last.get("stamp") != stamp:
        return None
    files, digests = last.get("files"), last.get("sha256")
    if not (isinstance(files, list) and files and isinstance(digests, dict)):
        return None
    paths = []
    for f in files:
        if not isinstance(f, str) or f in ("", ".", "..", DRAWN) or Path(f).name != f:
            return None
        path = out / f
        try:
            if not path.is_file() or digests.get(f) != _file_digest(path):
                return None
        except OSError:
            return None
        paths.append(path)
    return paths


def main(argv=None, pool: cf.ProcessPoolExecutor | None = None) -> int:
    """The command (``argv``: its arguments, default ``sys.argv[1:]``); ``pool``: the workers :func:`start_workers`
    started for it (``--workers`` of them), used for the cells and the figures' computations and closed here."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--out", type=Path, default=Path("out/figures"), help="output folder (default: out/figures)")
    ap.add_argument("--only", choices=sorted(FIGURES), action="append", help="only this figure (repeatable)")
    ap.add_argument("--quick", action="store_true", help="coarser grids, for a fast look")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="local worker processes for the cells and the figures' computations (default: every core, "
                         f"{os.cpu_count()} here; 1 runs everything in this process)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads per process (default 1: the arrays are small, and extra threads only contend)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar (one line per figure only)")
    ap.add_argument("--retry-failed", action="store_true",
                    help="compute again the cells whose failure (a ValueError: a tolerance not met) is cached; "
                         "without it a cached failure is read back (the same code and configuration fail alike)")
    ap.add_argument("--redraw", action="store_true",
                    help="draw every figure; without it a figure whose arrays, code and matplotlib are those of the "
                         f"files it drew last time in --out, unchanged since (recorded in --out/{DRAWN}), keeps them")
    ap.add_argument("--update-docs", action="store_true",
                    help="after a full run of every figure (no --quick, no --only), copy results.json to "
                         "docs/data/, regenerate the findings block of docs/findings.md and copy the figures "
                         "docs/img shows")
    args = ap.parse_args(argv)
    if args.update_docs and (args.quick or args.only):
        ap.error("--update-docs publishes a full run of every figure: drop --quick and --only")
    if args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    if args.workers < 1:
        ap.error(f"--workers must be >= 1, got {args.workers}")
    try:
        check_writable_dir(args.out)
    except OSError as err:
        ap.error(f"cannot write to --out {args.out}: {err}")
    cache = check_sweep_arguments(ap, None)  # the figures' cells go to the default cache
    torch.set_num_threads(args.threads)
    # a figure set too slow for a fast look (QUICK = False) is drawn by --quick only when named with --only
    names = args.only or [n for n, m in FIGURES.items() if not args.quick or getattr(m, "QUICK", True)]
    names = list(dict.fromkeys(names))
    for name in sorted(set(FIGURES) - set(names) if not args.only else ()):
        print(f"{name:<14} skipped in --quick (draw it with --only {name})", flush=True)
    results, failed, written = {}, [], {}
    drawn = {} if args.redraw else _read_drawn(args.out)
    start_all = time.perf_counter()

    def record(name: str, start: float, cpu_start: float, arrays=None, err: BaseException | None = None) -> None:
        mod = FIGURES[name]
        if err is None:
            try:
                stamp, last = _stamp(name, arrays, args.quick), drawn.pop(name, None)
                kept = _kept_files(args.out, last, stamp)
                paths = kept if kept is not None else mod.plot(arrays, args.out)
                clash = [p.name for p in paths if p.name in written]
                if clash:  # a figure must never overwrite another's file
                    raise RuntimeError(f"{name} wrote {', '.join(clash)}, already written by "
                                       f"{', '.join(sorted({written[c] for c in clash}))}")
                written.update({p.name: name for p in paths})
                if stamp is not None:  # its files are its drawing of these arrays (not another figure's)
                    drawn[name] = _drawn_entry(stamp, paths)
                conclusion = getattr(mod, "conclusion", None)  # what to conclude, from the figure's own numbers
                caption = mod.CAPTION + (f" {conclusion(arrays)}" if callable(conclusion) else "")
                results[name] = {"caption": caption, "numbers": mod.summary(arrays), "files": [p.name for p in paths]}
                if name in owned:  # which source computed its numbers (as the ledger stamps its entries)
                    results[name]["code"] = cells_code(owned[name])
                done = f"-> {', '.join(p.name for p in paths)}" + (" (unchanged: kept)" if paths is kept else "")
            except Exception as e:  # noqa: BLE001 - recorded, reported, and the run fails at the end
                err = e
        if err is not None:
            results[name] = {"caption": mod.CAPTION, "error": f"{type(err).__name__}: {err}"}
            failed.append(name)
            done = f"FAILED: {type(err).__name__}: {err}"
        results[name]["seconds"] = round(time.perf_counter() - start, 2)
        results[name]["cpu_seconds"] = round(time.thread_time() - cpu_start, 2)  # this figure's thread (not its cells)
        tqdm.write(f"{name:<14} {results[name]['seconds']:6.1f} s ({results[name]['cpu_seconds']:6.1f} s CPU)  {done}")

    # 1. every figure's cells (the figures that declare them, figures/__init__.py) in one cached sweep
    hooked = [n for n in names if callable(getattr(FIGURES[n], "cells", None))]
    cells, cell_error, owned = [], {}, {}
    for name in hooked:
        try:
            own = list(FIGURES[name].cells(args.quick))
        except Exception as err:  # noqa: BLE001 - that figure fails, the others go on
            cell_error[name] = err
        else:
            owned[name] = own
            cells += own
    plain = [n for n in names if n not in hooked]
    pooled = plain if args.workers > 1 and (len(plain) > 1 or (plain and cells)) else []
    # one bar for the whole run, in seconds of work measured per class of task (evaluation.sweep.Eta): the cells,
    # then the figures (kind "figure": arrays read from the cache or a worker, and the plot), counted from the start
    # at their seconds in the last run written to --out, else FIGURE_SECONDS each, until the first one is measured
    bar = tqdm(total=0, desc="paper_plots", disable=args.no_progress, dynamic_ncols=True, bar_format=BAR_FORMAT)
    eta = eta_of(bar)
    before = _previous_seconds(args.out)
    for name in names:
        eta.add(("figure", name), "figure", prior=before.get(name) or FIGURE_SECONDS, group=f"figure {name}",
                alone=True)  # drawn in this process, one after the other, after the cells
    close_pool = pool_closer(pool) if pool is not None else None
    interrupted, cells_done, finished = None, False, False
    early = pool
    # a figure is drawn as soon as its cells are done: during the sweep by one drawing thread of this process (the
    # workers are other processes; with --workers 1 everything waits for the sweep), after it in this thread
    users: dict[str, list[str]] = {}  # cell key -> the figures that list it
    waiting = {name: set() for name in owned}  # figure -> keys of its cells not done yet
    for name, own in owned.items():
        for k in dict.fromkeys(map(cell_key, own)):  # a cell listed twice is waited for once
            waiting[name].add(k)
            users.setdefault(k, []).append(name)
    failed_cells: dict[str, CellFailed] = {}
    ready: queue.SimpleQueue = queue.SimpleQueue()  # figures whose arrays can be made now (None: stop)
    timed: queue.SimpleQueue = queue.SimpleQueue()  # (figure, seconds) drawn by the thread, for the bar
    stop = threading.Event()

    def draw(name: str) -> float:
        """Figure ``name``'s arrays (from the cache, or its worker) and its files, recorded; its seconds."""
        start, cpu_start = time.perf_counter(), time.thread_time()
        bad = [failed_cells[k] for k in dict.fromkeys(map(cell_key, owned.get(name, ()))) if k in failed_cells]
        if bad and not getattr(FIGURES[name], "PARTIAL", False) and name not in cell_error:
            cell_error[name] = RuntimeError(f"{len(bad)} of its cells failed; first: {bad[0]}")
        if name in cell_error:
            record(name, start, cpu_start, err=cell_error[name])
        else:
            try:
                if name in futures:
                    fut, key = futures[name]
                    arrays, seconds, cpu = fut.result()[key]
                    start = time.perf_counter() - seconds  # its own time, not the wait for a worker
                    cpu_start = time.thread_time() - cpu
                else:
                    arrays = FIGURES[name].compute(quick=args.quick)
            except Exception as err:  # noqa: BLE001
                record(name, start, cpu_start, err=err)
            else:
                record(name, start, cpu_start, arrays)
        return time.perf_counter() - start

    def drawer() -> None:
        while not stop.is_set() and (name := ready.get()) is not None and not stop.is_set():
            if name not in results:
                timed.put((name, draw(name)))

    def count_drawn() -> None:
        while not timed.empty():
            name, seconds = timed.get()
            eta.finish(("figure", name), seconds)

    def on_result(cell, result) -> None:  # in this thread, as each cell's result is known
        k = cell_key(cell)
        if isinstance(result, CellFailed):
            failed_cells[k] = result
        for name in users.get(k, ()):
            if k in waiting[name]:
                waiting[name].discard(k)
                if not waiting[name]:
                    ready.put(name)
        count_drawn()

    thread = threading.Thread(target=drawer, name="paper_plots drawer", daemon=True)
    try:
        # 2. figures without cells: their own computations, in worker processes (costliest first), meanwhile
        futures = {}
        if pooled:
            if pool is None:
                pool, close_pool = local_pool(min(args.workers, len(pooled)))  # Ctrl-C: the workers leave it to us
            for group in sorted(_groups(pooled), key=lambda g: -sum(before.get(n, 0.0) for n in g)):
                fut = pool.submit(_compute, group, args.quick, args.threads)
                futures.update({n: (fut, n) for n in group})
                for n in group:  # drawn once its worker is done
                    fut.add_done_callback(lambda _, n=n: ready.put(n))
        for name in names:  # no cells to wait for: a figure whose cells cannot be listed, or that has none
            if name in cell_error or (name in owned and not waiting[name]):
                ready.put(name)
        if cells:
            if args.workers > 1:
                thread.start()
            try:  # a cell that fails fails the figures that list it, not the sweep (the others' cells go on)
                run_cells(cells, workers=args.workers, bar=bar, keep_going=True, retry_failed=args.retry_failed,
                          desc=f"cells of {_names(n for n in hooked if n not in cell_error)}", on_result=on_result,
                          first=first_cells(owned) if args.workers > 1 else (),  # drawn while the rest compute
                          pool=early if args.workers > 1 else None)
            except Exception as err:  # noqa: BLE001 - every hooked figure not drawn yet reports it
                stop.set()
                ready.put(None)
                if thread.is_alive():
                    thread.join()
                cell_error.update({n: err for n in hooked if n not in cell_error and n not in results})
        cells_done = True
        if early is not None and not pooled:  # no work left for the workers (a warm rerun's are still importing)
            close_pool(True)
            close_pool = None
        stop.set()
        ready.put(None)
        if thread.is_alive():
            thread.join()  # it ends after the figure it draws
        count_drawn()
        # 3. each figure not drawn yet: its arrays (warm from the cells' cache, or from its worker) and its plot
        for name in names:
            if name in results:
                continue
            bar.set_description_str("figures", refresh=False)
            eta.begin(("figure", name))
            eta.show(bar)
            eta.finish(("figure", name), draw(name))
            eta.show(bar)
        finished = True
    except KeyboardInterrupt as err:  # Ctrl-C (SweepInterrupted during the cells): one line, below
        interrupted = err
    finally:
        stop.set()
        ready.put(None)
        if thread.is_alive():
            thread.join()  # the figure it draws is finished, not cut off
        if close_pool is not None:
            close_pool(not finished)  # interrupted or failed: end the workers at once
        bar.close()
    results = {name: results[name] for name in names if name in results}  # in the order of the figures
    if interrupted is not None:
        what = str(interrupted) if isinstance(interrupted, SweepInterrupted) else \
            f"interrupted{' after the cells (cached in ' + str(cache) + ', but for any a warning named)' if cells_done else ''}; rerun to resume"
        drawn = sum("error" not in r for r in results.values())
        print(f"{what} ({drawn} figure(s) drawn so far in {args.out}; its results.json and results.md are unchanged)",
              file=sys.stderr)
        return 130
    date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_atomically(args.out / "results.json", json.dumps({"quick": args.quick, "date": date, "figures": results},
                                                           indent=2))
    write_atomically(args.out / "results.md", markdown(results))
    try:  # this run's figures re-entered when drawn; a record that cannot be written only costs a redraw
        write_atomically(args.out / DRAWN, json.dumps(drawn, indent=1))
    except OSError as err:
        print(f"warning: cannot record what was drawn in {args.out / DRAWN} ({err.strerror or err}): the next run "
              "draws every figure", file=sys.stderr)
    total = time.perf_counter() - start_all
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"{'total':<14} {total:6.1f} s wall, {args.workers} worker(s), load average {load} on {os.cpu_count()} cores "
          f"-> {args.out}/results.json, results.md")
    if failed:
        print(f"error: {len(failed)} figure(s) failed: {', '.join(failed)} (see results.md)", file=sys.stderr)
        return 1
    if args.update_docs:
        from evaluation.docs import publish, publish_images

        images = publish_images(args.out)  # refuses (copying none) before anything is published
        print(f"docs: {publish('findings', args.out / 'results.json')}, {len(images)} images in docs/img")
    return 0


if __name__ == "__main__":
    try:
        status = main(pool=EARLY_POOL)
    finally:  # closed by main, but for a command line it refused before its sweep: end the workers at once
        if EARLY_POOL is not None:
            pool_closer(EARLY_POOL)(True)
    sys.exit(status)
