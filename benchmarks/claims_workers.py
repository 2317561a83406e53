"""Speed-up of the claims ledger with 2 local worker processes over 1: ``python benchmarks/claims_workers.py
[--full]``.

Runs every cell of the ``--quick`` ledger (``--full``: the whole ledger) from an empty cache, once in this
process (``workers=1``) and once in two spawned worker processes (``workers=2``), checks that both give
identical results, and prints the wall times and their ratio, with the machine's load average before each
run (on a shared machine the ratio measures the share of the cores the runs got, not the code). Not a test.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

from evaluation.claims import CLAIMS
from evaluation.sweep import encode, run_cells


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--full", action="store_true", help="the whole ledger instead of --quick")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cells = [c for claim in CLAIMS for c in claim.cells(not args.full)]
    print(f"{len(cells)} cells ({'full' if args.full else 'quick'} ledger), {os.cpu_count()} cores\n")
    times, results = {}, {}
    for workers in (1, 2):
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            run = run_cells(cells, cache=cache, workers=workers, progress=False)
            times[workers] = time.perf_counter() - start
        results[workers] = run.results
        print(f"workers={workers}: {times[workers]:7.1f} s  ({run.computed} cells computed; load average before: {load:.2f})")
    same = json.dumps(encode(results[1])) == json.dumps(encode(results[2]))
    print(f"\nspeed-up of 2 workers over 1: {times[1] / times[2]:.2f}x   (results identical: {same})")


if __name__ == "__main__":
    main()
