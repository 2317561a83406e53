"""The main job, before and after (issue 19, item 4): ``python benchmarks/main_job.py [--before REV] [--full]
[--only NAME ...]``.

Runs ``python paper_plots.py --quick`` (``--full``: the whole job) of this tree and of revision ``REV`` (default:
main before the one-job orchestration), each from an empty cache and then again warm (same cache), one after the
other in fresh processes, and prints per figure and in total the wall seconds of each run side by side with their
ratios, the CPU seconds the figure's own process reports where the revision records them, and the machine's load
before each run (on a shared machine the wall times measure the share of the cores the runs got: compare the
ratios, and the load). Not a test.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from revisions import ROOT, checkout, load

BEFORE = "f07d7fc"  # main before the one-job paper_plots and the fast quadrature kernels


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(tree: Path, cache: Path, out: Path, args: list[str]) -> tuple[float, dict]:
    """Wall seconds of one ``paper_plots.py`` run in ``tree`` and its results.json figures (with ``"cpu"``: the CPU
    seconds of the run and all its worker processes, which the machine's load does not inflate)."""
    env = {"PYTHONPATH": str(tree), "REG_GUIDANCE_CACHE": str(cache), "PATH": "/usr/bin:/bin"}
    start, cpu = time.perf_counter(), _children_cpu()
    res = subprocess.run([sys.executable, "paper_plots.py", "--out", str(out), *args], cwd=tree, env=env,
                         capture_output=True, text=True)
    seconds = time.perf_counter() - start
    cpu_seconds = _children_cpu() - cpu
    if res.returncode not in (0, 1):  # 1: a figure failed, recorded in results.json
        raise RuntimeError(f"paper_plots.py in {tree} failed:\n{res.stderr[-3000:]}")
    figs = json.loads((out / "results.json").read_text())["figures"]
    figs["cpu"] = {"seconds": cpu_seconds}
    return seconds, figs


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--before", default=BEFORE, help=f"the revision to compare with (default {BEFORE})")
    ap.add_argument("--full", action="store_true", help="the whole job instead of --quick")
    ap.add_argument("--only", action="append", default=[], help="only this figure (repeatable)")
    args = ap.parse_args(argv)
    flags = ([] if args.full else ["--quick"]) + [f for n in args.only for f in ("--only", n)]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        trees = {"before": checkout(args.before, tmp / "before"), "after": ROOT}
        for label, tree in trees.items():
            for state in ("cold", "warm"):
                print(f"{label} {state}: {load()}", flush=True)
                seconds, figs = run(tree, tmp / f"cache_{label}", tmp / f"out_{label}_{state}", flags)
                rows[label, state] = (seconds, figs)
                print(f"  {seconds:.1f} s wall, {figs['cpu']['seconds']:.1f} s CPU", flush=True)
    names = [n for n in dict.fromkeys(n for _, figs in rows.values() for n in figs) if n != "cpu"] + ["cpu"]
    print(f"\npaper_plots.py {' '.join(flags)}: wall seconds per figure (the figure's own compute and plot; cells "
          "that run before it are in the total); 'cpu': CPU seconds of the whole run, workers included\n")
    head = " ".join(f"{f'{lab} {st}':>13}" for lab in ("before", "after") for st in ("cold", "warm"))
    print(f"{'figure':<14} {head} {'cold ratio':>10} {'warm ratio':>10}")
    for n in names + ["total"]:
        vals = {}
        for key, (seconds, figs) in rows.items():
            vals[key] = seconds if n == "total" else figs.get(n, {}).get("seconds", float("nan"))
        cells = " ".join(f"{vals[k]:13.1f}" for k in (("before", "cold"), ("before", "warm"), ("after", "cold"),
                                                        ("after", "warm")))
        ratio = [vals["before", s] / vals["after", s] if vals["after", s] else float("nan") for s in ("cold", "warm")]
        print(f"{n:<14} {cells} {ratio[0]:10.2f} {ratio[1]:10.2f}")


if __name__ == "__main__":
    main()
