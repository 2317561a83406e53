"""The claims ledger: ``python -m evaluation.claims [--quick] [--only ID] [--out DIR] [--workers N]
[--scheduler ADDRESS] [--cache DIR]``.

Writes ``claims.md`` (one table: claim, source, verdict, key number, figure; then one section per claim),
``claims.json`` and one figure per claim to ``--out``. Cells are cached (``--cache``, default
``$REG_GUIDANCE_CACHE`` or ``~/.cache/reg-guidance/sweeps``), so a rerun or an interrupted run only
computes what is missing. ``--workers N`` runs cells in N local processes; ``--scheduler tcp://HOST:PORT``
on a running Dask cluster (the ``[sweeps]`` extra).

This is an entry point, the one place above the floors: it draws the arrays the ledger computed with
:func:`figures.claims.draw` (each claim's ``figures.claims_*`` module); the library modules of ``evaluation``
never import ``figures``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from ..sweep import default_cache_dir, write_atomically
from . import CLAIMS, get_claim
from .ledger import markdown, run_ledger, to_json


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sweeps (under two minutes on two cores)")
    ap.add_argument("--only", action="append", choices=[c.id for c in CLAIMS], metavar="ID",
                    help=f"only this claim (repeatable): {', '.join(c.id for c in CLAIMS)}")
    ap.add_argument("--out", type=Path, default=Path("out/claims"), help="output folder (default out/claims)")
    ap.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    ap.add_argument("--scheduler", default=None, metavar="ADDRESS", help="a running Dask scheduler, tcp://HOST:PORT")
    ap.add_argument("--cache", type=Path, default=None, help=f"cell cache (default {default_cache_dir()})")
    ap.add_argument("--no-figures", action="store_true", help="write claims.md and claims.json only")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error(f"--workers must be >= 1, got {args.workers}")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / ".write-test").write_text("")
        (args.out / ".write-test").unlink()
    except OSError as err:
        ap.error(f"cannot write to --out {args.out}: {err}")
    torch.set_num_threads(1)
    claims = [get_claim(i) for i in args.only] if args.only else list(CLAIMS)
    start = time.perf_counter()
    run = run_ledger(claims, quick=args.quick, cache=args.cache, workers=args.workers, scheduler=args.scheduler)
    results = [o.result for o in run.outcomes]
    failed = []
    if not args.no_figures:
        import matplotlib

        matplotlib.use("Agg")
        from figures.claims import draw

        failed = draw(run.outcomes, args.out)[1]
    seconds = time.perf_counter() - start
    note = (f"{run.cells} cells ({run.computed} computed, {run.reused} from the cache), "
            f"{args.workers if args.scheduler is None else 'Dask'} worker(s).")
    write_atomically(args.out / "claims.md", markdown(results, quick=args.quick, seconds=seconds, note=note) + "\n")
    write_atomically(args.out / "claims.json", to_json(results, quick=args.quick, seconds=seconds) + "\n")
    for r in results:
        print(f"{r.id:<16} {r.verdict[:60]:<60} {r.key_number[:90]}")
    print(f"{note} {seconds:.1f} s -> {args.out}/claims.md, claims.json")
    for f in failed:
        print(f"error: figure {f}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
