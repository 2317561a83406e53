"""The tilted start on tensor grids against the same start at the grids' points, side by side in one run:
``python benchmarks/tilted_start.py [--law NAME] [--sizes 101,201] [--grid-only 401] [--base REV] [--no-whole]
[--out PATH]``.

1. :func:`evaluation.density.mass_outside` of the tilted start ``p_T(u|y) E_T(u)``
   (:func:`evaluation.starts.tilted_start`, ``marginal=True``; the ledger's ``tilted`` start) of ``--law``
   (default ``classes_2d``) with the CFG reward at ``w = 1`` and ``abar_T`` of the ``paper`` schedule's first
   level, on ``n x n`` grids of [-3.5, 3.5]^2 (``--sizes``): the start as :func:`tilted_start` returns it (its
   ``on_grid``: the grid and ``mass_outside``'s frame, each one tensor grid through the separable kernels of
   :func:`analytic.grid.tilted_posterior`) against the same start wrapped in a plain function (no ``on_grid``:
   the route at the points, row-wise kernels, as before the change), in this process, on the same inputs.
   Printed: CPU seconds of each (``time.process_time``, one torch thread: the machine is shared), their ratio and
   the relative difference of the two shares; for the sizes of ``--grid-only`` (the accuracy contract's largest
   2-D working grid, 401^2), the grid route alone (the points route takes minutes there).
2. One whole 2-D law with that start (``--no-whole`` skips it):
   :func:`evaluation.density.output_density` of the same law, ``paper`` schedule, DDPM, CFG ``w = 1``, on the first
   size, in a fresh process for revision ``--base`` (default 644d755, before the change; :mod:`benchmarks.revisions`)
   and for this tree: CPU seconds, and the largest differences of the masses and the per-node errors (relative to
   the largest mass) and of ``lost``.

Writes the table to ``--out`` (default ``benchmarks/tilted_start.txt``). Not a test.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from revisions import ROOT, checkout, load, run_in

sys.path.insert(0, str(ROOT))  # this tree's packages, also where an editable install points elsewhere

import torch  # noqa: E402

WHOLE = """
import json, sys, time, torch
torch.set_num_threads(1)
from evaluation.density import output_density
from evaluation.spec import Law, Levels, Method
law, n = sys.argv[1], int(sys.argv[2])
built = Method("cfg", 1.0).build(Law.parse(law).build(), Levels.parse("paper/ddpm/tilted"))
ax = torch.linspace(-3.5, 3.5, n, dtype=torch.float64)
t = time.process_time()
od = output_density(built.guided, built.levels.sigmas(), (ax, ax), start=built.start())
cpu = time.process_time() - t
print(json.dumps({"cpu": cpu, "mass": od.mass.flatten().tolist(), "error": od.error.flatten().tolist(),
                  "lost": od.lost, "start_lost": od.start_lost}))
"""


def main(argv=None) -> None:
    from evaluation.density import mass_outside
    from evaluation.spec import Law, Levels, Method

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--law", default="classes_2d", help="a 2-D law (evaluation.spec.Law), default classes_2d")
    ap.add_argument("--sizes", default="101,201", help="nodes per axis of the grids, comma-separated")
    ap.add_argument("--grid-only", default="401", help="sizes timed on the grid route only ('' for none)")
    ap.add_argument("--base", default="644d755", help="the revision before the change (default 644d755)")
    ap.add_argument("--no-whole", action="store_true", help="skip part 2 (the whole output_density)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "tilted_start.txt"))
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    torch.set_num_threads(1)
    lines = [f"# python benchmarks/tilted_start.py --law {args.law} --sizes {args.sizes} --grid-only '{args.grid_only}' "
             f"--base {args.base}"
             f"{' --no-whole' if args.no_whole else ''}   ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"one torch thread; CPU s = time.process_time)", f"# {load()}"]

    print("\n".join(lines), flush=True)

    def say(s: str) -> None:
        print(s, flush=True)
        lines.append(s)

    built = Method("cfg", 1.0).build(Law.parse(args.law).build(), Levels.parse("paper/ddpm/tilted"))
    start = built.start()
    a_T = 1 / (1 + built.levels.sigmas()[0].item() ** 2)
    say(f"1. mass_outside(tilted_start({args.law}, CFG w=1, abar_T={a_T:.4f}, marginal=True), n x n grid of "
        f"[-3.5, 3.5]^2)")
    say(f"{'grid':>9s} {'points s':>9s} {'grid s':>8s} {'ratio':>7s} {'share outside':>14s} {'rel. difference':>16s}")
    for n in sizes:
        axes = (torch.linspace(-3.5, 3.5, n, dtype=torch.float64),) * 2
        t = time.process_time()
        ref = mass_outside(lambda u: start(u), axes, name="start")  # no on_grid: the points route
        t_points = time.process_time() - t
        t = time.process_time()
        fast = mass_outside(start, axes, name="start")
        t_grid = time.process_time() - t
        say(f"{f'{n}^2':>9s} {t_points:9.1f} {t_grid:8.2f} {t_points / t_grid:6.1f}x {fast:14.6e} "
            f"{abs(fast - ref) / ref:16.2e}")
    for n in [int(s) for s in args.grid_only.split(",") if s]:
        axes = (torch.linspace(-3.5, 3.5, n, dtype=torch.float64),) * 2
        t = time.process_time()
        fast = mass_outside(start, axes, name="start")
        say(f"{f'{n}^2':>9s} {'-':>9s} {time.process_time() - t:8.2f} {'-':>7s} {fast:14.6e} {'-':>16s}")
    if not args.no_whole:
        n = sizes[0]
        say("")
        say(f"2. output_density({args.law}, paper schedule, DDPM, CFG w=1, the tilted start, {n}^2 nodes on "
            f"[-3.5, 3.5]^2, default error estimate), fresh process each")
        with tempfile.TemporaryDirectory() as tmp:
            base = run_in(checkout(args.base, Path(tmp) / "base"), WHOLE, args.law, str(n))
        new = run_in(ROOT, WHOLE, args.law, str(n))
        top = max(base["mass"])
        dm = max(abs(a - b) for a, b in zip(base["mass"], new["mass"])) / top
        de = max(abs(a - b) for a, b in zip(base["error"], new["error"])) / top
        say(f"base {args.base}: {base['cpu']:.1f} CPU s; this tree: {new['cpu']:.1f} CPU s; ratio "
            f"{base['cpu'] / new['cpu']:.2f}x")
        say(f"max |mass difference| {dm:.2e}, max |error difference| {de:.2e} (of the largest mass {top:.3e}); "
            f"|lost difference| {abs(base['lost'] - new['lost']):.2e} (lost {new['lost']:.4e}, of which the start's "
            f"{new['start_lost']:.4e}; relative difference of the start's {abs(base['start_lost'] - new['start_lost']) / base['start_lost']:.2e})")
    lines.append(f"# end: {load()}")
    print(lines[-1])
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
