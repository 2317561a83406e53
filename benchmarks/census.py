"""What the main job costs, cell by cell (issue 19, item 4): ``python benchmarks/census.py [--quick] [--per-group K]
[--timeout S] [--seed N] [--enumerate-only] [--only OWNER ...] [--group SUBSTRING ...]``.

Lists the cells of every claim of the ledger (``ALL_CLAIMS``, ``claim.cells(quick)``) and of every figure of
``paper_plots.py`` with the cells hook (``figures.FIGURES``, ``cells(quick)``; the ``claims`` figure is the ledger,
listed per claim), dedupes them by cache key (a shared cell is computed once by the sweep), groups the distinct
cells by kind and by what drives their cost (sampler, steps, dimension, grid nodes, push-forward sub-points,
method), and times a random sample of each group: every sampled cell is computed in a forked child of this process
(one torch thread, no sweep cache: nothing is read or written), its CPU seconds (user + system, from ``wait4``) are
recorded, and a cell that runs past ``--timeout`` CPU seconds is killed and reported as a finding (its cost is then a
lower bound). Each group's CPU seconds are extrapolated by the ratio estimator (measured CPU seconds per unit of the
cells' declared ``cost``, times the group's summed cost; cells without a declared cost count 1 each), with its
standard error (sample standard deviation of the ratios / sqrt(k), finite-population corrected; a group with one
sampled cell of several gets an error equal to its estimate: unknown spread); the errors of the groups add in
quadrature. Prints per group, per claim / figure (a shared cell counts in each owner; the total counts it once) and
in total, the top cells by measured cost and the machine's load before and after. CPU seconds, not wall: the
machine may be shared. Not a test.

Caveat: the sweep's workers keep in-process caches (built laws, goldens) across cells; each sampled cell here starts
from this process's state (imports done, nothing computed), so the estimate is an upper side for kinds that share
such caches.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import os
import pickle
import random
import resource
import signal
import sys
import time
from pathlib import Path

import numpy as np

from revisions import ROOT, load

sys.path.insert(0, str(ROOT))  # this tree's packages, not whichever the environment installed


# --- enumeration -------------------------------------------------------------------------------------------------
def owners_of_cells(quick: bool, only: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """``({key: cell}, {key: [owner, ...]})`` of every distinct cell of the main job (owners: ``claim:ID`` and
    ``figure:NAME``), in the order first met."""
    from evaluation.claims import ALL_CLAIMS
    from evaluation.sweep import cell_key
    from figures import FIGURES

    lists = []
    for c in ALL_CLAIMS:
        if not c.unavailable():
            lists.append((f"claim:{c.id}", list(c.cells(quick))))
    for name, mod in FIGURES.items():
        hook = getattr(mod, "cells", None)
        if name == "claims" or not callable(hook):
            continue
        lists.append((f"figure:{name}", list(hook(quick))))
    cells, owners = {}, collections.defaultdict(list)
    for owner, cs in lists:
        if only and owner not in only and owner.split(":", 1)[1] not in only:
            continue
        for c in cs:
            k = cell_key(c)
            cells.setdefault(k, c)
            if owner not in owners[k]:
                owners[k].append(owner)
    return cells, dict(owners)


def _dim(law) -> int:
    from evaluation.spec import Law

    return (law if isinstance(law, Law) else Law.parse(law)).dim


def _method(m) -> str:
    reg = getattr(m, "reg", "") or ""
    return f"{m.rule}{'+' + reg if reg else ''}"


def drivers(cell) -> str:
    """The group of a cell: its kind and what drives its cost."""
    from evaluation.spec import Schedule

    kind = type(cell).__module__.rsplit(".", 1)[-1] + "." + type(cell).__name__
    f = {x.name: getattr(cell, x.name) for x in dataclasses.fields(cell)} if dataclasses.is_dataclass(cell) else \
        cell._asdict() if hasattr(cell, "_asdict") else {}
    if kind == "cells.OutputCell":
        s = Schedule.parse(cell.schedule)
        return (f"{kind} d={_dim(cell.law)} {cell.sampler} T={s.steps} n={cell.grid[2]} {_method(cell.method)} "
                f"{cell.start} {cell.model}")
    if kind == "cells.FieldCell":
        s = Schedule.parse(cell.schedule)
        return f"{kind} d={_dim(cell.law)} L={min(cell.levels, s.steps)} n={cell.grid[2]} {_method(cell.method)}"
    if kind == "flows.LawCell":
        return (f"{kind} d={cell.law.dim} {cell.levels.sampler} T={cell.levels.steps} n={cell.grid[2]} "
                f"checked={','.join(cell.checked) or '-'} {_method(cell.method)}")
    if kind == "flows.FieldCell":
        return f"{kind} d={cell.law.dim} T={cell.levels.steps} nodes={cell.nodes} M={len(cell.methods)}"
    if kind == "flows.CapCell":
        return f"{kind} d={cell.law.dim} T={cell.steps} n={cell.points} sub={cell.sub}"
    if kind == "dimension.FieldPoint":
        return f"{kind} d={cell.law.dim} N={cell.n_points}"
    if kind == "dimension.AlongU":
        return f"{kind} T={cell.steps} n={cell.points}"
    parts = []
    for name in ("law", "preset", "sampler", "steps", "schedule", "method", "grid", "points", "sub", "dim", "d"):
        if name in f:
            v = f[name]
            if name == "law":
                try:
                    v = f"d={_dim(v)}"
                except Exception:  # noqa: BLE001 - a law spelt otherwise: named as is
                    v = str(v)[:30]
            elif name == "method":
                v = _method(v) if hasattr(v, "rule") else str(v)[:30]
            elif name == "schedule":
                try:
                    v = f"T={Schedule.parse(v).steps}"
                except Exception:  # noqa: BLE001
                    v = str(v)[:30]
            elif name == "grid":
                v = f"n={v[2]}" if isinstance(v, tuple) and len(v) == 3 else str(v)[:30]
            parts.append(f"{name}={v}" if not str(v).startswith(("d=", "T=", "n=")) else str(v))
    return " ".join([kind] + parts)


def declared_cost(cell) -> float:
    v = getattr(cell, "cost", None)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else 1.0


# --- timing --------------------------------------------------------------------------------------------------------
def time_cell(cell, timeout: float) -> tuple[float, str]:
    """(CPU seconds, status) of computing ``cell`` in a forked child (``ok``, ``timeout``: killed after ``timeout``
    CPU seconds by ``RLIMIT_CPU``, or ``error: ...``)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one thread, compute, report the status
        os.close(r)
        status = "ok"
        try:
            resource.setrlimit(resource.RLIMIT_CPU, (math.ceil(timeout), math.ceil(timeout) + 5))  # SIGXCPU past it
            import torch

            torch.set_num_threads(1)
            from evaluation.sweep import compute_cell

            compute_cell(cell)
        except BaseException as err:  # noqa: BLE001 - reported to the parent
            status = f"error: {type(err).__name__}: {str(err)[:1000]}"
        os.write(w, pickle.dumps(status))
        os.close(w)
        os._exit(0)
    os.close(w)
    start = time.monotonic()
    killed = False
    while True:
        done, st, ru = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - start > 20 * timeout:  # a guard only: the limit is on CPU seconds (RLIMIT_CPU)
            os.kill(pid, signal.SIGKILL)
            _, st, ru = os.wait4(pid, 0)
            killed = True
            break
        time.sleep(0.05)
    data = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    cpu = ru.ru_utime + ru.ru_stime
    if killed or (os.WIFSIGNALED(st) and os.WTERMSIG(st) in (signal.SIGXCPU, signal.SIGKILL)):
        return cpu, "timeout"
    return cpu, pickle.loads(data) if data else f"error: child exited with status {st}"


# --- extrapolation -------------------------------------------------------------------------------------------------
def estimate(group_cells: list, samples: list[tuple[str, float, str]], cost: dict, spread: float
             ) -> tuple[float, float, float]:
    """(ratio CPU-s per unit cost, group estimate, its standard error) from the sampled ``(key, cpu, status)``;
    ``spread``: the relative standard deviation of the ratios assumed when one cell was timed."""
    ratios = [cpu / cost[k] for k, cpu, _ in samples]
    total = sum(cost[k] for k in group_cells)
    r = float(np.mean(ratios))
    n, k = len(group_cells), len(ratios)
    if k == n:
        se = 0.0
    elif k == 1:
        se = spread * r * math.sqrt(1 - 1 / n) * total
    else:
        se = float(np.std(ratios, ddof=1)) / math.sqrt(k) * math.sqrt(1 - k / n) * total
    return r, r * total, se


def sample_size(n: int, per_group: int) -> int:
    """Cells timed in a group of ``n``: 1 up to 12 cells, ``per_group`` up to 100, one more above."""
    return min(n, 1 if n <= 12 else per_group if n <= 100 else per_group + 1)


def pooled_spread(est_rows: dict) -> dict:
    """Per kind, the pooled relative standard deviation of the CPU-per-cost ratios within its groups of >= 2 timed
    cells (the spread a group with one timed cell is given)."""
    acc = collections.defaultdict(list)
    for g, ratios in est_rows.items():
        if len(ratios) >= 2 and np.mean(ratios) > 0:
            acc[g.split(" ", 1)[0]].append(float(np.std(ratios, ddof=1) / np.mean(ratios)))
    every = [v for vs in acc.values() for v in vs]
    out = {k: float(np.sqrt(np.mean(np.square(v)))) for k, v in acc.items()}
    out[""] = float(np.sqrt(np.mean(np.square(every)))) if every else 1.0
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--quick", action="store_true", help="the --quick job's cells instead of the full job's")
    ap.add_argument("--per-group", type=int, default=2, help="cells timed per group (default 2)")
    ap.add_argument("--timeout", type=float, default=120.0, help="CPU seconds allowed per timed cell (default 120)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--enumerate-only", action="store_true", help="list the groups, time nothing")
    ap.add_argument("--only", action="append", default=[], help="only this claim id or figure name (repeatable)")
    ap.add_argument("--group", action="append", default=[], help="time only groups containing this text (repeatable)")
    ap.add_argument("--shard", default="0/1", help="I/N: time only every N-th group from the I-th (default 0/1)")
    ap.add_argument("--samples", action="append", default=[],
                    help="JSON file of timed cells (key -> [CPU-s, status]): read (repeatable) and reused instead "
                         "of timing again; the new timings are added to the first")
    args = ap.parse_args(argv)
    shard, shards = (int(v) for v in args.shard.split("/"))
    print(f"# python benchmarks/census.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; start {load()}", flush=True)
    import evaluation

    print(f"# code: {Path(evaluation.__file__).parent.parent}", flush=True)
    t0 = time.process_time()
    cells, owners = owners_of_cells(args.quick, tuple(args.only))
    listed = collections.Counter(o for os_ in owners.values() for o in os_)
    groups = collections.defaultdict(list)
    for k, c in cells.items():
        groups[drivers(c)].append(k)
    cost = {k: declared_cost(c) for k, c in cells.items()}
    print(f"# {len(cells)} distinct cells in {len(groups)} groups ({'quick' if args.quick else 'full'} job; "
          f"enumerated in {time.process_time() - t0:.1f} CPU-s)", flush=True)
    measured = {}
    for path in args.samples:
        if os.path.exists(path):
            with open(path) as f:
                measured.update({k: tuple(v) for k, v in json.load(f).items()})
    def kind_of(g: str) -> str:  # the kind and its dimension: a 2-D cell's cost per unit declared cost is not 1-D's
        parts = g.split(" ")
        return " ".join(parts[:2]) if len(parts) > 1 and parts[1].startswith("d=") else parts[0]

    def group_rows(g: str) -> list:
        return [(k, *measured[k]) for k in groups[g] if k in measured]

    def kind_ratios() -> dict:
        """Per kind, the CPU-s per unit cost of each timed group (its mean ratio), for groups not timed."""
        out = collections.defaultdict(list)
        for g in groups:
            r = group_rows(g)
            if r:
                out[kind_of(g)].append(float(np.mean([cpu / cost[k] for k, cpu, _ in r])))
        return out

    def predicted(g: str, ratios: dict) -> float:
        rs = ratios.get(kind_of(g))
        return math.inf if not rs else float(np.median(rs)) * sum(cost[k] for k in groups[g])

    todo_groups = [] if args.enumerate_only else [g for i, g in enumerate(sorted(groups)) if i % shards == shard and (
        not args.group or any(t in g for t in args.group))]
    print(f"# timing up to {sum(sample_size(len(groups[g]), args.per_group) for g in todo_groups)} cells (shard "
          f"{args.shard}, at most {args.timeout:g} CPU-s each), the groups of the largest predicted cost first",
          flush=True)
    while todo_groups:
        ratios = kind_ratios()  # the costliest first, by what is measured so far (an unknown kind first of all)
        todo_groups.sort(key=lambda g: -predicted(g, ratios))
        g = todo_groups.pop(0)
        ks = groups[g]
        rng = random.Random(f"{args.seed} {g}")  # the same sample whatever the shard
        sample = rng.sample(ks, sample_size(len(ks), args.per_group))
        need = sample_size(len(ks), args.per_group) - len(group_rows(g))
        for k in [k for k in sample if k not in measured][:max(need, 0)]:
            cpu, status = time_cell(cells[k], args.timeout)
            measured[k] = (cpu, status)
            flag = "" if status == "ok" else f"  <-- {status}"
            print(f"  {cpu:8.2f} CPU-s  {g}  {cells[k]!r:.260}{flag}", flush=True)
            if args.samples:
                old = {}
                if os.path.exists(args.samples[0]):
                    with open(args.samples[0]) as f:
                        old = json.load(f)
                old[k] = [cpu, status]
                tmp = args.samples[0] + ".tmp"
                with open(tmp, "w") as f:
                    json.dump(old, f)
                os.replace(tmp, args.samples[0])
    order = sorted(groups, key=lambda g: (-len(groups[g]), g))
    rows = {g: group_rows(g) for g in order}
    spread = pooled_spread({g: [cpu / cost[k] for k, cpu, _ in r] for g, r in rows.items()})
    ratios = kind_ratios()
    est = {}
    modelled = set()
    print("\n# per group: cells, estimated CPU-s +- standard error, timed cells (CPU-s each; ! = did not finish: a "
          "lower bound); 'model': not timed, the median CPU-s per unit cost of its kind's timed groups times its "
          "cells' cost, +- the spread of that ratio over those groups")
    for g in order:
        ks = groups[g]
        if rows[g]:
            est[g] = estimate(ks, rows[g], cost, spread.get(g.split(" ", 1)[0], spread[""]))
            r, e, se = est[g]
            times = ", ".join(f"{cpu:.1f}{'' if st == 'ok' else '!' + st[:7]}" for _, cpu, st in rows[g])
            print(f"{len(ks):5d} cells  {e:9.1f} +- {se:7.1f}  [{times}]  {g}")
        elif kind_of(g) in ratios:
            rs = ratios[kind_of(g)]
            r = float(np.median(rs))
            rel = float(np.std(rs, ddof=1) / np.mean(rs)) if len(rs) > 1 else 1.0
            total_cost = sum(cost[k] for k in ks)
            est[g] = (r, r * total_cost, rel * r * total_cost)
            modelled.add(g)
            print(f"{len(ks):5d} cells  {est[g][1]:9.1f} +- {est[g][2]:7.1f}  model  {g}")
        else:
            print(f"{len(ks):5d} cells  (not timed, no timed group of its kind)  {g}")
    if not est:
        return
    per_cell = {k: est[g][0] * cost[k] for g, ks in groups.items() if g in est for k in ks}
    print("\n# per claim / figure (distinct cells it lists; shared cells count in each owner; * = partly not timed)")
    print(f"{'owner':<34} {'cells':>6} {'CPU-s':>9} {'+-':>7}")
    rows = []
    for o in listed:
        ks = [k for k, os_ in owners.items() if o in os_]
        by_g = collections.defaultdict(list)
        for k in ks:
            by_g[drivers(cells[k])].append(k)
        tot = sum(per_cell.get(k, 0.0) for k in ks)
        # the error of the owner's part of each group: that group's error in proportion to the owner's cost share
        se = math.sqrt(sum((est[g][2] * sum(cost[k] for k in kg) / sum(cost[k] for k in groups[g])) ** 2
                           for g, kg in by_g.items() if g in est))
        rows.append((tot, o, len(ks), se, any(k not in per_cell for k in ks)))
    for tot, o, n, se, partial in sorted(rows, reverse=True):
        print(f"{o:<34} {n:6d} {tot:9.1f} {se:7.1f}{' *' if partial else ''}")
    total = sum(per_cell.values())
    total_se = math.sqrt(sum(v[2] ** 2 for v in est.values()))
    print(f"{'TOTAL (distinct cells)':<34} {len(per_cell):6d} {total:9.1f} {total_se:7.1f}"
          f"{' (of ' + str(len(cells)) + ' cells)' if len(per_cell) < len(cells) else ''}")
    print("\n# top groups by estimated CPU-s")
    for g, (r, e, se) in sorted(est.items(), key=lambda x: -x[1][1])[:15]:
        print(f"{e:9.1f} +- {se:7.1f}  {len(groups[g]):5d} cells  {g}")
    print("\n# top timed cells by CPU-s")
    mine = {k: v for k, v in measured.items() if k in cells}
    for k, (cpu, status) in sorted(mine.items(), key=lambda x: -x[1][0])[:10]:
        print(f"{cpu:8.2f}  {status:<8.60} {','.join(owners[k])}  {cells[k]!r:.300}")
    bad = [(k, v) for k, v in mine.items() if v[1] != "ok"]
    if bad:
        print("\n# cells that did not finish (timeout: cost is a lower bound) or failed")
        for k, (cpu, status) in bad:
            print(f"{cpu:8.2f}  {status}  {','.join(owners[k])}  {cells[k]!r}")
    print(f"\n# end {load()}; census CPU {time.process_time() - t0:.1f} s in this process", flush=True)


if __name__ == "__main__":
    main()
