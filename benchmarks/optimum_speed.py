"""The exact optimum as a 2-D denoiser, before and after (issue 19, item 4): ``python benchmarks/optimum_speed.py
[--before REV] [--points N]``.

What a 2-D output law of the optimum costs per sampler step: ``analytic.tilted_posterior`` (the dense route of
``optimal_denoiser``) on ``N`` scattered points in ``[-3, 3]^2`` (default 6724, as many as the states of a 41 x 41 output grid with
2 x 2 sub-points) of ``classes_2d`` at CFG weight 4, at the noise levels of a 10-step flow Euler schedule. Times this
tree and revision ``REV`` (default: the commit before the fast kernels) one after the other in fresh processes on
one thread, and prints per level and in total the two times, their ratio, the largest difference of ``m_R`` and
the largest error estimate each reports (the routes are tolerance-controlled: they must agree within it). The
machine's load is printed beside the times. Not a test.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from revisions import ROOT, checkout, load, run_in

BEFORE = "f07d7fc"  # main before the fast quadrature kernels
ABARS = (0.0122, 0.0588, 0.1552, 0.3077, 0.5, 0.6923, 0.8448, 0.9412, 0.9878)  # flow Euler, 10 steps (t < 1)

CODE = r"""
import json, sys, time, torch
torch.set_num_threads(1)
from analytic import CFGReward, get_preset
from analytic.grid import tilted_posterior
p = get_preset("classes_2d")
r = CFGReward(p.cond, p.uncond, 4.0)
x = 6 * torch.rand(int(sys.argv[1]), 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 3
out = []
for a in map(float, sys.argv[2].split(",")):
    t = time.perf_counter()
    tp = tilted_posterior(p.cond, r, x, a)
    out.append({"abar": a, "seconds": time.perf_counter() - t, "m_R": tp.tilted_mean.tolist(),
                "err": tp.err_tilted_mean.max().item()})
print(json.dumps(out))
"""


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--before", default=BEFORE, help=f"the revision to compare with (default {BEFORE})")
    ap.add_argument("--points", type=int, default=6724, help="points per level (default 6724)")
    args = ap.parse_args(argv)
    if args.points < 1:
        ap.error(f"--points must be >= 1, got {args.points}")
    levels = ",".join(map(str, ABARS))
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = checkout(args.before, Path(tmp) / "before")
        print(f"before ({args.before}): {load()}")
        old = run_in(old_tree, CODE, str(args.points), levels)
        print(f"after (this tree):  {load()}")
        new = run_in(ROOT, CODE, str(args.points), levels)
    print(f"\ntilted_posterior on {args.points} points of classes_2d, w = 4, one thread\n")
    print(f"{'abar':>7} {'before s':>9} {'after s':>8} {'ratio':>6} {'max |dm_R|':>11} {'err before':>11} {'err after':>10}")
    for o, n in zip(old, new):
        dm = max(abs(u - v) for ro, rn in zip(o["m_R"], n["m_R"]) for u, v in zip(ro, rn))
        print(f"{o['abar']:7.4f} {o['seconds']:9.2f} {n['seconds']:8.2f} {o['seconds'] / n['seconds']:6.2f} "
              f"{dm:11.2e} {o['err']:11.2e} {n['err']:10.2e}")
    t_old, t_new = sum(o["seconds"] for o in old), sum(n["seconds"] for n in new)
    print(f"{'total':>7} {t_old:9.2f} {t_new:8.2f} {t_old / t_new:6.2f}")


if __name__ == "__main__":
    main()
