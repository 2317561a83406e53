"""2-D DDPM output laws with the old and the new stochastic step, side by side in one run:
``python benchmarks/density_2d.py [--base REV] [--cases 0,1,2] [--repeat R] [--out FILE]``.

Each case is one :func:`evaluation.density.output_density` call (DDPM, the N(0, I) start, the default error estimate
and sub-points) of the ledger's kind: CFG on the exact mixtures, computed in this process by this tree's
``evaluation/density.py`` and by the one of revision ``--base`` (default ``392b859``, before the tiled 2-D scatter;
extracted by :mod:`benchmarks.revisions` and loaded from its path, so both run on this tree's ``analytic`` and
``sampler``), one torch thread, ``--repeat`` times each (default 2, interleaved: old, new, old, new). Printed and
written to ``--out`` (default ``benchmarks/density_2d.txt``): the smallest CPU seconds (``time.process_time``: the
machine is shared) of the whole call and of its scatter (``_narrow_scatter``) over the repeats, their ratios, and
the largest differences of the results: masses and per-node errors relative to the largest mass, the lost mass
absolutely (a mass of the whole law, 1 - sum: its rounding is that of a sum of mass 1) and relative to the largest
mass. Not a test.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from revisions import ROOT, checkout, comparison_parser, load, module_from, timed_part

sys.path.insert(0, str(ROOT))

CASES = [  # (law, schedule, CFG weight, grid): the reg-samples cell's 2-D law on its refined grid; classes_2d at 20
    # and 100 steps, and at w = 3 (more sub-sources: kernel means further apart than the kernels are wide)
    ("correlated_2d", "paper", 1.0, (-3.5, 3.5, 201)),
    ("classes_2d", "lin:20:0.0001", 1.0, (-3.5, 3.5, 101)),
    ("classes_2d", "lin:100:0.0001", 1.0, (-3.5, 3.5, 101)),
    ("classes_2d", "lin:100:0.0001", 3.0, (-3.5, 3.5, 101)),
]


def _run(mod, guided, sigmas, axes):
    """output_density of ``mod`` and the CPU seconds of the call and of its scatter."""
    with timed_part(mod, "_narrow_scatter") as (spent, _):
        t = time.process_time()
        od = mod.output_density(guided, sigmas, axes, sampler="ddpm", start=mod.vp_start(len(axes)))
        return od, time.process_time() - t, spent[0]


def main(argv=None) -> None:
    import torch

    from evaluation.accuracy import axes_of
    from evaluation.spec import Law, Method, Schedule

    args = comparison_parser(__doc__, "392b859", len(CASES), "density_2d.txt").parse_args(argv)
    torch.set_num_threads(1)
    lines = [f"# python benchmarks/density_2d.py --base {args.base} --cases {args.cases} --repeat {args.repeat}   "
             f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, one torch thread)",
             f"# DDPM, CFG, N(0, I) start, output_density defaults; CPU s = time.process_time; {load()}"]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        base = checkout(args.base, Path(tmp) / "base")
        old = module_from(base / "evaluation" / "density.py", "density_base")
        new = module_from(ROOT / "evaluation" / "density.py", "density_this")
        for i in (int(j) for j in args.cases.split(",")):
            law_name, schedule, w, grid = CASES[i]
            law, sched = Law.parse(law_name).build(), Schedule.parse(schedule)
            guided = Method("cfg", w).build(law, sched).guided
            sigmas, axes = sched.vp.sampling_sigmas(), axes_of(grid, 2)
            runs = {old: [], new: []}
            for _ in range(args.repeat):
                for mod in (old, new):
                    runs[mod].append(_run(mod, guided, sigmas, axes))
            a, b = runs[old][0][0], runs[new][0][0]
            t_old, s_old = (min(r[k] for r in runs[old]) for k in (1, 2))
            t_new, s_new = (min(r[k] for r in runs[new]) for k in (1, 2))
            again = all(torch.equal(r[0].mass, runs[mod][0][0].mass) for mod in (old, new) for r in runs[mod])
            top = a.mass.max().item()
            d_mass = (a.mass - b.mass).abs().max().item() / top
            d_err = (a.error - b.error).abs().max().item() / top
            d_lost = abs(a.lost - b.lost)
            same = (a.narrow_steps, a.unresolved_steps) == (b.narrow_steps, b.unresolved_steps)
            block = [f"[{i}] {law_name}, {schedule} ({len(sigmas) - 1} steps), CFG w={w:g}, "
                     f"grid {grid[2]}^2 on [{grid[0]}, {grid[1]}]",
                     f"    whole call: before {t_old:7.1f} CPU-s  after {t_new:7.1f} CPU-s  ratio {t_old / t_new:5.2f}x",
                     f"    scatter:    before {s_old:7.1f} CPU-s  after {s_new:7.1f} CPU-s  ratio {s_old / s_new:5.2f}x",
                     f"    max |diff|: mass {d_mass:.2e}, error {d_err:.2e} (of the largest mass {top:.3g}); "
                     f"lost {d_lost:.2e} (lost {a.lost:.6g}; {d_lost / top:.2e} of the largest mass); "
                     f"narrow/unresolved steps equal: {same}; repeats bit-identical: {again}"]
            print("\n".join(block), flush=True)
            lines += block
    lines.append(f"# end: {load()}")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(lines[-1])


if __name__ == "__main__":
    main()
