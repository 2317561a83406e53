"""The flows figure's cells before and after the shared targets of their sliced W1 (issue 19, item 4):
``python benchmarks/flows_sw1.py [--before REV]``.

Runs ``python paper_plots.py --quick --only flows --no-progress`` in revision ``REV`` (default 392b859, before the
shared target rules, grid targets and start pushes of :func:`evaluation.flows.pushed_sw1`) and in this tree, each
from its own empty cache, one after the other in fresh processes, and prints the CPU seconds of each run (with its
worker processes; the machine's load does not inflate them) and the wall seconds side by side with their ratio and
the load before each run. Then reads every cell's result back from each run's cache (in that tree's code, warm)
and prints the largest relative difference of the two runs' numbers, per field of the output-law cells
(``sw1``, ``sw1_error``, ``tv``, ...) and over the field-error and cap cells. Not a test.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

from main_job import run
from revisions import ROOT, checkout, load, run_in

BEFORE = "392b859"

# every cell's numbers, read back from the cache of a finished run (all hits: "computed" must be 0)
_READ = """
import json, math, numpy as np
from evaluation import flows
from evaluation.sweep import run_cells
r = run_cells(flows.cells(flows.QUICK), progress=False)
rows = []
for c, x in zip(flows.cells(flows.QUICK), r.results):
    if isinstance(x, flows.LawResult):
        rows.append({"kind": "law", "cell": repr(c)[:160], **{k: float(v) for k, v in x.distances._asdict().items()},
                     "mass": [float(v) for v in np.asarray(x.mass).reshape(-1)]})
    else:
        rows.append({"kind": type(x).__name__, "cell": repr(c)[:160],
                     "values": [float(v) for v in np.asarray(x[0], dtype=float).reshape(-1)]})
print(json.dumps({"computed": r.computed, "rows": rows}))
"""


def _rel(a: float, b: float) -> float:
    """|a - b| / |a| (0 when both are equal, nan included; inf when only one is nan)."""
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0
    if math.isnan(a) or math.isnan(b):
        return math.inf
    return abs(a - b) / abs(a) if a else math.inf


def compare(before: list[dict], after: list[dict]) -> dict[str, float]:
    """The largest relative difference per number of the two runs' cells (same cells, same order)."""
    if len(before) != len(after) or any(x["cell"] != y["cell"] for x, y in zip(before, after)):
        raise ValueError("the two runs computed different cells")
    worst: dict[str, float] = {}
    for x, y in zip(before, after):
        if x["kind"] == "law":
            keys = [k for k in x if k not in ("kind", "cell", "mass")]
            pairs = [(k, x[k], y[k]) for k in keys] + [("mass", u, v) for u, v in zip(x["mass"], y["mass"])]
        else:
            pairs = [(x["kind"], u, v) for u, v in zip(x["values"], y["values"])]
        for k, u, v in pairs:
            worst[k] = max(worst.get(k, 0.0), _rel(u, v))
    return worst


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--before", default=BEFORE, help=f"the revision to compare with (default {BEFORE})")
    args = ap.parse_args(argv)
    print(f"# python benchmarks/flows_sw1.py --before {args.before}: paper_plots.py --quick --only flows "
          "--no-progress, empty caches")
    rows, numbers = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        trees = {"before": checkout(args.before, tmp / "before"), "after": ROOT}
        for label, tree in trees.items():
            cache = tmp / f"cache_{label}"
            at = load()
            wall, figs = run(tree, cache, tmp / f"out_{label}", ["--quick", "--only", "flows", "--no-progress"])
            rows[label] = (wall, figs["cpu"]["seconds"], at)
            read = run_in(tree, _READ, cache=cache)
            if read["computed"]:
                raise RuntimeError(f"{label}: {read['computed']} cells were not in the run's cache")
            numbers[label] = read["rows"]
            print(f"{label:6} {wall:7.1f} s wall {rows[label][1]:7.1f} CPU-s   ({at} before the run)", flush=True)
    (bw, bc, _), (aw, ac, _) = rows["before"], rows["after"]
    print(f"ratio before/after: CPU {bc / ac:.2f}, wall {bw / aw:.2f}; end {load()}")
    worst = compare(numbers["before"], numbers["after"])
    laws = sum(r["kind"] == "law" for r in numbers["after"])
    print(f"{len(numbers['after'])} cells ({laws} output laws): largest relative difference before/after per number: "
          + ", ".join(f"{k} {v:.3g}" for k, v in worst.items()))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
