"""The claims ledger: ``python -m evaluation.claims [--quick] [--only ID] [--out DIR] [--workers N]
[--scheduler ADDRESS] [--cache DIR]``.

Writes ``claims.md`` (one table: claim, source, verdict, key number, figure, run; then one section per claim),
``claims.json`` and one figure per claim to ``--out``. A run with ``--only`` updates its claims' entries
in the ledger files already in ``--out`` and keeps the others; each entry says which run made it (full or
``--quick`` sweeps, when, the code version of its cells). Cells are cached (``--cache``, default
``$REG_GUIDANCE_CACHE`` or ``~/.cache/reg-guidance/sweeps``), so a rerun or an interrupted run (Ctrl-C: exit
status 130, one line saying what is kept; ``claims.md`` and ``claims.json`` are written together or not at all) only
computes what is missing. ``--workers N`` runs cells in N
local processes; ``--scheduler tcp://HOST:PORT`` on a running Dask cluster (the ``[sweeps]`` extra; one that does not
answer, or has no running worker, within ``evaluation.sweep.SCHEDULER_TIMEOUT``, 5 s, is an argparse error naming the
address). A claim a
cell of which cannot meet its tolerance (:mod:`evaluation.accuracy`) is written as ``not converged``, naming the
cell and its error, with no verdict, numbers or figure; the other claims conclude, and the run exits with status 1.

This is an entry point, the one place above the floors: it draws the arrays the ledger computed with
:func:`figures.claims.draw` (each claim's ``figures.claims_*`` module); the library modules of ``evaluation``
never import ``figures``.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path

try:  # seconds of imports (torch, every claim): Ctrl-C here is one line too, as everywhere in the run
    import torch

    from ..io import check_sweep_arguments, check_writable_dir, write_atomically
    from ..sweep import SchedulerUnreachable, SweepInterrupted, default_cache_dir
    from .ledger import NOT_CONVERGED, RunStamp, from_json, markdown, merge, run_ledger, to_json
    from .registry import ALL_CLAIMS, CLAIMS, get_claim
except KeyboardInterrupt:
    if __name__ != "__main__":
        raise
    print("interrupted while loading the ledger's modules: nothing computed or written", file=sys.stderr)
    raise SystemExit(130) from None

DESCRIPTION = ("The claims ledger: runs each claim's cells (cached, resumable) and writes claims.md, claims.json and "
               "one figure per claim to --out; a run with --only updates those claims in the ledger already there.")


def main(argv=None) -> int:
    where = ["before any cell ran: no ledger file was written"]  # what Ctrl-C keeps, said in one line; _run updates it
    try:
        return _run(argv, where)
    except KeyboardInterrupt:  # the sweep's own interrupt (SweepInterrupted) is answered in _run
        print(f"interrupted {where[0]}", file=sys.stderr)
        return 130


@contextlib.contextmanager
def _interrupt_deferred():
    """Ctrl-C waits until the block ends (the two ledger files are written together), then interrupts. Only where
    Ctrl-C interrupts (Python's default handler, in the main thread): an ignored or custom SIGINT is left alone."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *_: caught.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _run(argv, where: list) -> int:
    ap = argparse.ArgumentParser(prog="python -m evaluation.claims", description=DESCRIPTION,
                                 allow_abbrev=False)
    ap.add_argument("--quick", action="store_true", help="small sweeps (under two minutes on two cores)")
    ap.add_argument("--only", action="append", choices=[c.id for c in CLAIMS], metavar="ID",
                    help=f"only this claim (repeatable): {', '.join(c.id for c in CLAIMS)}")
    ap.add_argument("--out", type=Path, default=Path("out/claims"),
                    help="output folder (default out/claims); a ledger already there keeps the claims this run does "
                    "not compute")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help=f"local worker processes (default: every core, {os.cpu_count()} here)")
    ap.add_argument("--scheduler", default=None, metavar="ADDRESS", help="a running Dask scheduler, tcp://HOST:PORT")
    ap.add_argument("--cache", type=Path, default=None, help=f"cell cache (default {default_cache_dir()})")
    ap.add_argument("--no-figures", action="store_true", help="write claims.md and claims.json only")
    ap.add_argument("--retry-failed", action="store_true",
                    help="compute again the cells whose failure (a ValueError: a tolerance not met) is cached; "
                         "without it a cached failure is read back (the same code and configuration fail alike)")
    ap.add_argument("--update-docs", action="store_true",
                    help="when the ledger in --out is a full run (no --quick entry), copy claims.json to docs/data/ "
                         "and regenerate the ledger table of docs/claims.md")
    args = ap.parse_args(argv)
    if args.update_docs and args.quick:
        ap.error("--update-docs publishes a full ledger: drop --quick")
    if args.workers < 1:
        ap.error(f"--workers must be >= 1, got {args.workers}")
    try:
        check_writable_dir(args.out)
    except OSError as err:
        ap.error(f"cannot write to --out {args.out}: {err}")
    where[0] = f"before any cell ran: {args.out} is unchanged"
    cache = check_sweep_arguments(ap, args.cache, args.scheduler)
    ledger_json = args.out / "claims.json"
    kept = ([], [])
    if ledger_json.exists():  # a run with --only updates its entries and keeps the others
        try:
            kept = from_json(ledger_json.read_text())
        except (OSError, ValueError) as err:
            ap.error(f"cannot update the ledger {ledger_json}: {err}; move it away or choose another --out")
    torch.set_num_threads(1)
    claims = [get_claim(i) for i in args.only] if args.only else list(CLAIMS)
    for c in ALL_CLAIMS:  # never dropped without a word
        if c.unavailable() and (not args.only or c.id in args.only):
            print(f"{c.id:<16} skipped: {c.unavailable()}", file=sys.stderr)
    start = time.perf_counter()
    where[0] = (f"before the ledger was written (the cells finished are cached in {cache}, but for any a warning "
                f"named): {args.out} is unchanged; rerun to finish")
    try:
        run = run_ledger(claims, quick=args.quick, cache=cache, workers=args.workers, scheduler=args.scheduler,
                         retry_failed=args.retry_failed)
        results = [o.result for o in run.outcomes]
        failed = []
        if not args.no_figures:
            import matplotlib

            matplotlib.use("Agg")
            from figures.claims import draw

            where[0] = (f"while drawing the figures (cells cached in {cache}): claims.md and claims.json in {args.out} "
                        "are unchanged, the figures drawn so far replace theirs; rerun to finish")
            failed = draw(run.outcomes, args.out)[1]
    except SchedulerUnreachable as err:  # connected to only when a cell is missing from the cache
        ap.error(f"--scheduler: {err}")
    except SweepInterrupted as err:
        print(f"{err} (the ledger in {args.out} is unchanged)", file=sys.stderr)
        return 130
    seconds = time.perf_counter() - start
    date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    stamps = [RunStamp(args.quick, date, code) for code in run.codes]
    entries = merge(list(zip(*kept)), list(zip(results, stamps)), [c.id for c in ALL_CLAIMS])
    kept_ids = [r.id for r, _ in entries if r.id not in {n.id for n in results}]
    all_results, all_runs = [r for r, _ in entries], [s for _, s in entries]
    note = (f"Last run: {', '.join(r.id for r in results)}; {run.cells} cells ({run.computed} computed, "
            f"{run.reused} from the cache), {args.workers if args.scheduler is None else 'Dask'} worker(s)"
            + (f"; kept from earlier runs: {', '.join(kept_ids)}." if kept_ids else "."))
    quick = all(s.quick for s in all_runs)
    with _interrupt_deferred():  # both files or neither: an interrupt between them left claims.md ahead of the json
        write_atomically(args.out / "claims.md", markdown(all_results, quick=quick, seconds=seconds, note=note,
                                                          runs=all_runs) + "\n")
        write_atomically(ledger_json, to_json(all_results, quick=quick, seconds=seconds, runs=all_runs) + "\n")
        where[0] = f"after the ledger was written to {args.out} (claims.md, claims.json)" + (
            "; docs/ not updated: rerun with --update-docs" if args.update_docs else "")
    for r in results:
        print(f"{r.id:<16} {r.verdict[:60]:<60} {r.key_number[:90]}")
    print(f"{note} {seconds:.1f} s -> {args.out}/claims.md, claims.json")
    for f in failed:
        print(f"error: figure {f}", file=sys.stderr)
    unconverged = [r for r in results if r.verdict == NOT_CONVERGED]
    for r in unconverged:
        print(f"error: claim {r.id} not converged (no verdict published): {r.key_number}", file=sys.stderr)
    if args.update_docs:
        if quick:
            print(f"error: --update-docs: the ledger in {args.out} still has quick entries; rerun them without --quick",
                  file=sys.stderr)
            return 2
        from ..docs import publish

        print(f"docs: {publish('claims', ledger_json)}")
    return 1 if failed or unconverged else 0


if __name__ == "__main__":
    sys.exit(main())
