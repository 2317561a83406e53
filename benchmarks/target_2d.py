"""2-D tilted targets of two revisions, side by side in one run:
``python benchmarks/target_2d.py [--base REV] [--cases 0,1,2,3,4] [--repeat R] [--memory | --no-memory] [--out FILE]``.

Each case is one :func:`evaluation.distances.tilted_target` call of the kind the ledger makes (CFG on the exact 2-D
mixtures, 201^2 and 401^2 nodes on [-3.5, 3.5]^2, ``tol`` 5e-3 = :data:`evaluation.accuracy.TOL_2D`, as
:func:`evaluation.accuracy.shared_target` asks), computed in this process by this tree's
``evaluation/distances.py`` and by the one of revision ``--base`` (default ``9fcf8aa``: midpoint sub-cells, 8 and 16
per cell and axis, deposited to the hats, and the mass outside on a third of the grid's spacing; this tree:
Gauss-Legendre on the hats' linear pieces, and the mass outside on at most 101^2 cells; an earlier comparison, the
blockwise lattice deposit against the point deposit of ``644d755``, is in the history of ``target_2d.txt``;
extracted by :mod:`benchmarks.revisions` and loaded from its path as a module of this tree's ``evaluation`` package,
so both run on this tree's ``analytic``), one torch thread, ``--repeat`` times each (default 2, interleaved: old,
new, old, new). Printed and written to ``--out`` (default ``benchmarks/target_2d.txt``): the smallest CPU seconds
(``time.process_time``: the machine is shared) of the whole call and of its quadrature part (``_target_masses`` or
``_target_on_subpoints``, every refinement) over the repeats, their ratios, the points per cell and axis reached,
the largest differences of the results (masses and per-node errors relative to the largest mass, ``log Z`` and its
error bound, ``lost`` and ``outside`` absolutely), and each revision's summed error against a reference (this tree
with 8 and 16 Gauss-Legendre nodes per piece, ``tol`` 1e-10) beside its summed estimate.
``--memory`` (default on): for each revision, the peak resident memory of a fresh process computing case 0.
Not a test.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from revisions import ROOT, checkout, comparison_parser, load, module_from, run_in, timed_part

sys.path.insert(0, str(ROOT))

CASES = [  # (law, CFG weight, grid, tol)
    ("classes_2d", 1.0, (-3.5, 3.5, 201), 5e-3),
    ("classes_2d", 3.0, (-3.5, 3.5, 201), 5e-3),
    ("correlated_2d", 1.0, (-3.5, 3.5, 201), 5e-3),
    ("classes_2d", 3.0, (-3.5, 3.5, 401), 5e-3),
    ("correlated_2d", 1.0, (-3.5, 3.5, 401), 5e-3),
]
QUADRATURE = ("_target_masses", "_target_on_subpoints")  # this tree's quadrature part, and the midpoint route's

PEAK = """
import importlib, json, sys, torch
torch.set_num_threads(1)
from evaluation.accuracy import axes_of
from evaluation.spec import Law, Method
dist = importlib.import_module("evaluation.distances")
def hwm():  # this process's peak resident memory in MB (VmHWM: its own, unlike ru_maxrss, which exec inherits)
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
law, w, lo, hi = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
n, tol = int(sys.argv[5]), float(sys.argv[6])
built = Law.parse(law).build()
reward, axes = Method("cfg", w).reward(built), axes_of((lo, hi, n), 2)
before = hwm()
dist.tilted_target(built.cond, reward, axes, tol=tol)
print(json.dumps({"before": before, "peak": hwm()}))
"""


def _run(mod, cond, reward, axes, tol):
    """tilted_target of ``mod``, the CPU seconds of the call and of its quadrature part, and the points per cell and
    axis used."""
    with timed_part(mod, next(q for q in QUADRATURE if hasattr(mod, q))) as (spent, calls):
        t = time.process_time()
        tt = mod.tilted_target(cond, reward, axes, tol=tol)
        return tt, time.process_time() - t, spent[0], tuple(a[3] for a in calls)  # (cond, reward, axes, sub)


def main(argv=None) -> None:
    import torch

    from evaluation.accuracy import axes_of
    from evaluation.spec import Law, Method

    ap = comparison_parser(__doc__, "9fcf8aa", len(CASES), "target_2d.txt")
    ap.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                    help="also the peak memory of case 0 in a fresh process per revision")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    lines = [f"# python benchmarks/target_2d.py --base {args.base} --cases {args.cases} --repeat {args.repeat}"
             f"{'' if args.memory else ' --no-memory'}   ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"one torch thread)",
             f"# tilted_target, CFG, tol as the ledger's 2-D cells; CPU s = time.process_time; {load()}"]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        base = checkout(args.base, Path(tmp) / "base")
        old = module_from(base / "evaluation" / "distances.py", "distances_base")
        new = module_from(ROOT / "evaluation" / "distances.py", "distances_this")
        for i in (int(j) for j in args.cases.split(",")):
            law_name, w, grid, tol = CASES[i]
            law = Law.parse(law_name).build()
            reward, axes = Method("cfg", w).reward(law), axes_of(grid, 2)
            runs = {old: [], new: []}
            for _ in range(args.repeat):
                for mod in (old, new):
                    runs[mod].append(_run(mod, law.cond, reward, axes, tol))
            a, b = runs[old][0][0], runs[new][0][0]
            t_old, s_old = (min(r[k] for r in runs[old]) for k in (1, 2))
            t_new, s_new = (min(r[k] for r in runs[new]) for k in (1, 2))
            subs_old, subs_new = runs[old][0][3], runs[new][0][3]
            again = all(torch.equal(r[0].mass, runs[mod][0][0].mass) for mod in (old, new) for r in runs[mod])
            top = a.mass.max().item()
            ref = new.tilted_target(law.cond, reward, axes, points=8, tol=1e-10)  # beyond either revision's rule
            off = [(x.mass - ref.mass).abs().sum().item() for x in (a, b)]
            block = [f"[{i}] {law_name}, CFG w={w:g}, grid {grid[2]}^2 on [{grid[0]}, {grid[1]}], tol {tol:g}; "
                     f"points per cell and axis (old / new) {subs_old} / {subs_new}",
                     f"    whole call: before {t_old:7.1f} CPU-s  after {t_new:7.1f} CPU-s  "
                     f"ratio {t_old / t_new:5.2f}x",
                     f"    quadrature: before {s_old:7.1f} CPU-s  after {s_new:7.1f} CPU-s  "
                     f"ratio {s_old / s_new:5.2f}x",
                     f"    summed |mass - reference| (estimate): before {off[0]:.3g} ({a.error.sum().item():.3g})  "
                     f"after {off[1]:.3g} ({b.error.sum().item():.3g}); reference's estimate "
                     f"{ref.error.sum().item():.2g}",
                     f"    max |diff|: mass {(a.mass - b.mass).abs().max().item() / top:.2e}, error "
                     f"{(a.error - b.error).abs().max().item() / top:.2e} (of the largest mass {top:.3g}); "
                     f"log_Z {abs(a.log_Z - b.log_Z):.2e}, log_Z_error {abs(a.log_Z_error - b.log_Z_error):.2e}; "
                     f"lost {abs(a.lost - b.lost):.2e} (lost {a.lost:.6g}), outside {abs(a.outside - b.outside):.2e}; "
                     f"error sums {a.error.sum().item():.4g} / {b.error.sum().item():.4g}; "
                     f"repeats bit-identical: {again}"]
            print("\n".join(block), flush=True)
            lines += block
        if args.memory:
            law_name, w, grid, tol = CASES[0]
            argv_ = (law_name, str(w), str(grid[0]), str(grid[1]), str(grid[2]), str(tol))
            peaks = {rev: run_in(tree, PEAK, *argv_, cache=Path(tmp) / f"cache_{rev}")
                     for rev, tree in ((args.base, base), ("this tree", ROOT))}
            block = ["[memory] case 0 in a fresh process, peak resident set (VmHWM) after the imports / after the "
                     "whole call:"] + [f"    {rev}: {p['before']:.0f} / {p['peak']:.0f} MB" for rev, p in peaks.items()]
            print("\n".join(block), flush=True)
            lines += block
    lines.append(f"# end: {load()}")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(lines[-1])


if __name__ == "__main__":
    main()
