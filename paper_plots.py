"""Regenerate every figure and the numbers behind them: ``python paper_plots.py [--quick] [--only NAME] [--out DIR]``.

Writes PNG and PDF figures plus ``results.json`` and ``results.md`` (one caption line and the numbers per
figure) to ``--out``. Everything shown is computed exactly (no sampling), so a run is deterministic.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")  # entry point: files only, no display

from figures import FIGURES  # noqa: E402


def _markdown(results: dict) -> str:
    lines = ["# Results", ""]
    for name, r in results.items():
        lines += [f"## {name}", "", r["caption"], "", "```json", json.dumps(r["numbers"], indent=2), "```", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out/figures"), help="output folder (default: out/figures)")
    ap.add_argument("--only", choices=sorted(FIGURES), action="append", help="only this figure (repeatable)")
    ap.add_argument("--quick", action="store_true", help="coarser grids, for a fast look")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: the arrays are small, and extra threads only contend)")
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    names = args.only or list(FIGURES)
    results, timings = {}, {}
    for name in names:
        mod = FIGURES[name]
        start = time.perf_counter()
        arrays = mod.compute(quick=args.quick)
        paths = mod.plot(arrays, args.out)
        timings[name] = time.perf_counter() - start
        results[name] = {"caption": mod.CAPTION, "numbers": mod.summary(arrays),
                         "files": [p.name for p in paths], "seconds": round(timings[name], 2)}
        print(f"{name:<14} {timings[name]:6.1f} s  -> {', '.join(p.name for p in paths)}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"quick": args.quick, "figures": results}, indent=2))
    (args.out / "results.md").write_text(_markdown(results))
    print(f"{'total':<14} {sum(timings.values()):6.1f} s  -> {args.out}/results.json, results.md")


if __name__ == "__main__":
    main()
