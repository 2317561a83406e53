"""DPS against the exact posterior: ``python -m evaluation.inverse [--quick] [--out DIR] [--cache DIR]
[--update-docs]`` writes ``inverse.json`` and ``dps_bias.png`` to ``--out`` (:mod:`evaluation.inverse`).

This is an entry point, above the floors: it draws the arrays with :mod:`figures.dps_bias`; the library module
:mod:`evaluation.inverse` never imports ``figures``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..io import check_sweep_arguments, check_writable_dir, write_atomically
from ..sweep import default_cache_dir
from . import SETTINGS, compute, to_results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m evaluation.inverse", allow_abbrev=False,
                                 description="DPS against the exact posterior per noise level")
    ap.add_argument("--quick", action="store_true", help="fewer levels and draws (seconds)")
    ap.add_argument("--out", type=Path, default=Path("out/inverse"))
    ap.add_argument("--cache", type=Path, default=None, help=f"cell cache (default {default_cache_dir()})")
    ap.add_argument("--update-docs", action="store_true", help="publish a full run to docs/ (refused with --quick)")
    args = ap.parse_args(argv)
    if args.update_docs and args.quick:
        ap.error("--update-docs publishes a full run: drop --quick")
    try:
        check_writable_dir(args.out)
    except OSError as err:
        ap.error(f"cannot write to --out {args.out}: {err}")
    cache = check_sweep_arguments(ap, args.cache)
    torch.set_num_threads(1)
    results = compute(args.quick, cache=cache, progress=True)
    data = to_results(results, args.quick)
    path = args.out / "inverse.json"
    write_atomically(path, json.dumps(data, indent=1) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    from figures.dps_bias import plot

    plot(results, args.out)
    for (name, _), r in zip(SETTINGS.items(), results):
        print(f"{name}: DPS log-gap {r.log_gap[-1]:.3g} (noisiest) .. {r.log_gap[0]:.3g}; field error DPS "
              f"{r.field[0].max():.3g}, TMPD {r.field[1].max():.3g}, PiGDM {r.field[2].max():.3g} (max over levels)")
    if args.update_docs:
        import shutil

        from ..docs import REPOSITORY, publish

        print(f"docs: {publish('inverse', path)}")
        shutil.copyfile(args.out / "dps_bias.png", REPOSITORY / "docs" / "img" / "dps_bias.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
