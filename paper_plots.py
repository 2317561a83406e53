"""Regenerate every figure and the numbers behind them: ``python paper_plots.py [--quick] [--only NAME] [--out DIR]``.

Writes PNG and PDF figures plus ``results.json`` (machine-readable numbers) and ``results.md`` (one caption
and one table per figure) to ``--out``. Everything shown is computed exactly (no sampling), so a run is
deterministic. ``--quick`` leaves out the figure sets too slow for a fast look (``QUICK = False`` in the
module: the claims ledger, whose quick sweep alone takes about 1.5 CPU-minutes); ``--quick --only NAME`` draws
them. The output folder is checked before any work; the results files are written atomically
and always describe the figures of this run (a figure that fails is recorded as failed, and the command
exits with status 1 after the others are done).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")  # entry point: files only, no display

from evaluation.io import check_writable_dir, write_atomically  # noqa: E402
from figures import FIGURES  # noqa: E402


def _flatten(d, prefix=()) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, prefix + (str(k),)))
        else:
            out[prefix + (str(k),)] = v
    return out


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_cell(x) for x in v)
    return str(v)


def table(numbers: dict) -> str:
    """A Markdown table of a figure's nested numbers: rows are the key paths but the last, columns the
    last key (a two-column table when the numbers are flat)."""
    flat = _flatten(numbers)
    if not flat:
        return "(no numbers)"
    if min(len(k) for k in flat) < 2:
        rows = ["| quantity | value |", "|---|---|"]
        rows += [f"| {' / '.join(k)} | {_cell(v)} |" for k, v in flat.items()]
        return "\n".join(rows)
    cols = list(dict.fromkeys(k[-1] for k in flat))
    names = list(dict.fromkeys(" / ".join(k[:-1]) for k in flat))
    rows = ["| | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for name in names:
        vals = [_cell(flat[k]) if (k := tuple(name.split(" / ")) + (c,)) in flat else "" for c in cols]
        rows.append(f"| {name} | " + " | ".join(vals) + " |")
    return "\n".join(rows)


def markdown(results: dict) -> str:
    lines = ["# Results", ""]
    for name, r in results.items():
        lines += [f"## {name}", "", r["caption"], ""]
        lines += [f"**failed**: {r['error']}" if "error" in r else table(r["numbers"]), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--out", type=Path, default=Path("out/figures"), help="output folder (default: out/figures)")
    ap.add_argument("--only", choices=sorted(FIGURES), action="append", help="only this figure (repeatable)")
    ap.add_argument("--quick", action="store_true", help="coarser grids, for a fast look")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: the arrays are small, and extra threads only contend)")
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    try:
        check_writable_dir(args.out)
    except OSError as err:
        ap.error(f"cannot write to --out {args.out}: {err}")
    torch.set_num_threads(args.threads)
    # a figure set too slow for a fast look (QUICK = False) is drawn by --quick only when named with --only
    names = args.only or [n for n, m in FIGURES.items() if not args.quick or getattr(m, "QUICK", True)]
    for name in sorted(set(FIGURES) - set(names) if not args.only else ()):
        print(f"{name:<14} skipped in --quick (draw it with --only {name})", flush=True)
    results, failed = {}, []
    for name in names:
        mod = FIGURES[name]
        start = time.perf_counter()
        try:
            arrays = mod.compute(quick=args.quick)
            paths = mod.plot(arrays, args.out)
            results[name] = {"caption": mod.CAPTION, "numbers": mod.summary(arrays), "files": [p.name for p in paths]}
            done = f"-> {', '.join(p.name for p in paths)}"
        except Exception as err:  # noqa: BLE001 - recorded, reported, and the run fails at the end
            results[name] = {"caption": mod.CAPTION, "error": f"{type(err).__name__}: {err}"}
            failed.append(name)
            done = f"FAILED: {type(err).__name__}: {err}"
        results[name]["seconds"] = round(time.perf_counter() - start, 2)
        print(f"{name:<14} {results[name]['seconds']:6.1f} s  {done}", flush=True)
    write_atomically(args.out / "results.json", json.dumps({"quick": args.quick, "figures": results}, indent=2))
    write_atomically(args.out / "results.md", markdown(results))
    total = sum(r["seconds"] for r in results.values())
    print(f"{'total':<14} {total:6.1f} s  -> {args.out}/results.json, results.md")
    if failed:
        print(f"error: {len(failed)} figure(s) failed: {', '.join(failed)} (see results.md)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
