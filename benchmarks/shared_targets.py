"""Shared tilted targets of the ledger's output cells, before and after: ``python benchmarks/shared_targets.py [--n N]
[--seed S]``.

Computes the same ``N`` reg-samples output cells of one law twice in this process, CPU seconds per pass side by side:
*before*, every cell computes its own targets (:func:`evaluation.claims.cells.clear_targets` before each cell, as
before the shared targets); *after*, the cells share this process's targets (:func:`shared_target`), as a sweep
worker's cells do. Checks the two passes' results are equal. Not a test.
"""
from __future__ import annotations

import argparse
import random
import sys
import time

from revisions import ROOT, load

sys.path.insert(0, str(ROOT))


def main(argv=None) -> None:
    import torch

    from evaluation.claims import reg_map
    from evaluation.claims.cells import OutputCell, clear_targets, output_law

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--n", type=int, default=16, help="cells (default 16)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--law", default="paper_1d")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cells = [c for c in reg_map.cells(False) if isinstance(c, OutputCell) and c.law == args.law]
    random.Random(args.seed).shuffle(cells)
    cells = cells[:args.n]
    print(f"# {len(cells)} reg-samples output cells of {args.law}; {load()}")
    out = {}
    for label in ("before", "after"):
        clear_targets()
        start = time.process_time()
        res = []
        for c in cells:
            if label == "before":
                clear_targets()
            res.append(output_law(c))
        out[label] = (time.process_time() - start, res)
    same = all(repr(a) == repr(b) for a, b in zip(out["before"][1], out["after"][1]))
    b, a = out["before"][0], out["after"][0]
    print(f"before {b:.2f} CPU-s, after {a:.2f} CPU-s, ratio {b / a:.2f}; results equal: {same}; end {load()}")


if __name__ == "__main__":
    main()
