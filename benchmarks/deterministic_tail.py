"""The deterministic tail's push-forward by segments against the cloud-in-cell point deposit it replaced, in
whole ledger cells: ``python benchmarks/deterministic_tail.py [--base REV] [--cells 0,1,...]``.

Each cell (:class:`evaluation.claims.cells.OutputCell`, DDIM and one DDPM, whose last step is deterministic) is
computed by :func:`evaluation.claims.cells.output_law` under the accuracy contract, once in this tree and once in
the revision ``--base`` (default ``s6-int``, before the change; extracted by :mod:`benchmarks.revisions`), each in
a fresh process with an empty cache and one thread. Printed side by side: the CPU seconds
(``time.process_time``: the machine is shared, wall time would measure the load), their ratio, the grids and
sub-points per cell the contract chose (every ``output_density`` call it made), and the published numbers with
their errors, which must agree within those errors. Not a test.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from revisions import ROOT, checkout, load, run_in

CELLS = [  # OutputCell(...) source, evaluated in each tree
    "OutputCell('rand1d:3', 'lin:20:0.0001', Method('cfg', 0.5), 'n01', 'ddim', (-7.0, 7.0, 561), "
    "checked=('confidence', 'entropy'))",
    "OutputCell('rand1d:3', 'lin:20:0.0001', Method('cfg', 2.0), 'n01', 'ddim', (-7.0, 7.0, 561), "
    "checked=('tv', 'confidence'))",
    "OutputCell('paper_1d', 'lin:20:0.0001', Method('cfgpp', 0.5), 'n01', 'ddim', (-5.0, 5.0, 601))",
    "OutputCell('paper_1d', 'lin:20:0.0001', Method('cfg', 1.0), 'n01', 'ddpm', (-5.0, 5.0, 801), "
    "checked=('tv', 'confidence'))",
    "OutputCell('blocks_1d', 'lin:50:0.0001', Method('cfg', 8.0), 'n01', 'ddim', (-5.0, 5.0, 801), tol=1e-3, "
    "checked=('confidence',))",  # chidambaram's law, schedule, grid and tol at w = 8
]

RUN = r"""
import json, sys, time
import torch
torch.set_num_threads(1)
import evaluation.accuracy as acc
from evaluation.claims.cells import OutputCell, output_law
from evaluation.spec import Method
calls = []
inner = acc.output_density
def recorded(*a, **k):
    t0 = time.process_time()
    od = inner(*a, **k)
    calls.append((int(a[2][0].numel()), int(k['sub']), round(time.process_time() - t0, 2)))
    return od
acc.output_density = recorded
cell = eval(sys.argv[1])
t0 = time.process_time()
try:
    r = output_law(cell)
except ValueError as err:  # not converged within the contract's budget: report the cost and why
    print(json.dumps({'cpu': time.process_time() - t0, 'calls': calls, 'grid': [], 'nums': {},
                      'failed': str(err)[-200:]}))
    raise SystemExit(0)
cpu = time.process_time() - t0
nums = {k: (getattr(r, k), getattr(r, k + '_error')) for k in ('tv', 'confidence', 'entropy')}
print(json.dumps({'cpu': cpu, 'calls': calls, 'grid': list(r.grid), 'nums': nums, 'failed': ''}))
"""


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--base", default="s6-int", help="the revision before the change (default s6-int)")
    ap.add_argument("--cells", default=",".join(str(i) for i in range(len(CELLS))),
                    help="indices into CELLS, comma-separated (default all)")
    args = ap.parse_args(argv)
    picks = [int(i) for i in args.cells.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        base = checkout(args.base, Path(tmp) / "base")
        print(f"base {args.base} vs this tree; CPU seconds (time.process_time), one thread; {load()}\n")
        for i in picks:
            src = CELLS[i]
            before = run_in(base, RUN, src, cache=Path(tmp) / f"cb{i}")
            after = run_in(ROOT, RUN, src, cache=Path(tmp) / f"ca{i}")
            print(f"[{i}] {src}")
            print(f"    CPU before {before['cpu']:8.1f} s   after {after['cpu']:8.1f} s   "
                  f"ratio before/after {before['cpu'] / after['cpu']:6.1f}x")
            for name, run in (("before", before), ("after", after)):
                calls = ", ".join(f"{n} nodes sub {s} ({t:.0f} s)" for n, s, t in run["calls"])
                print(f"    {name:6s} output_density calls: {calls}; final grid {tuple(run['grid'])}")
                if run["failed"]:
                    print(f"    {name:6s} NOT CONVERGED: ...{run['failed']}")
            for k in dict.fromkeys([*before["nums"], *after["nums"]]):
                text = {n: (f"{r['nums'][k][0]:.6f} +- {r['nums'][k][1]:.1e}" if k in r["nums"] else "(none)")
                        for n, r in (("before", before), ("after", after))}
                line = f"    {k:10s} before {text['before']:22s} after {text['after']:22s}"
                if k in before["nums"] and k in after["nums"]:
                    (vb, eb), (va, ea) = before["nums"][k], after["nums"][k]
                    ok = abs(vb - va) <= eb + ea
                    line += f" |diff| {abs(vb - va):.1e} {'within' if ok else 'BEYOND'} the errors"
                print(line)
            print(f"    ({load()})", flush=True)


if __name__ == "__main__":
    main()
