"""Statistics and files of a digits sweep (:mod:`images.sweep`): means and standard deviations over seeds,
the best weight per method, paired differences, the Markdown table, and the rows as CSV.

Everything here reads a ``SweepResult`` (or rows read back from CSV); nothing samples.
"""
from __future__ import annotations

import csv
import io
import math
import statistics
from pathlib import Path
from typing import NamedTuple

from sampler import ESTIMATORS
from sampler.files import write_atomically

from .sweep import SweepResult, SweepRow

__all__ = ["Summary", "summarize", "best_per_method", "best_vs_best", "markdown_table", "write_csv", "read_csv"]


class Summary(NamedTuple):
    sampler: str
    method: str
    reg: str  # "" (no REG) or a REG estimator
    w: float
    fd: float  # mean over seeds
    fd_std: float  # standard deviation over seeds
    d_fd: float  # mean paired difference to the same method without REG at this w and seed (nan without REG)
    d_fd_std: float
    score: float
    score_std: float
    accuracy: float
    n_seeds: int


def _std(v: list) -> float:
    return statistics.stdev(v) if len(v) > 1 else math.nan


def summarize(result: SweepResult) -> list:
    """Mean and standard deviation over seeds per (sampler, method, reg, w) -> [Summary]."""
    groups: dict = {}
    for r in result.rows:
        groups.setdefault((r.sampler, r.method, r.reg, r.w), []).append(r)
    base = {(r.sampler, r.method, r.w, r.seed): r.fd for r in result.rows if not r.reg}
    out = []
    for (smp, m, e, w), rs in groups.items():
        fd = [r.fd for r in rs]
        diffs = [r.fd - base[(smp, m, w, r.seed)] for r in rs if e and (smp, m, w, r.seed) in base]
        out.append(Summary(smp, m, e, w, statistics.fmean(fd), _std(fd),
                           statistics.fmean(diffs) if diffs else math.nan, _std(diffs) if diffs else math.nan,
                           statistics.fmean(r.score for r in rs), _std([r.score for r in rs]),
                           statistics.fmean(r.accuracy for r in rs), len(rs)))
    return out


def best_per_method(summaries: list) -> list:
    """The weight with the lowest mean FD for every (sampler, method, reg) -> [Summary]."""
    best: dict = {}
    for s in summaries:
        key = (s.sampler, s.method, s.reg)
        if key not in best or s.fd < best[key].fd:
            best[key] = s
    return list(best.values())


def best_vs_best(result: SweepResult, against: str = "") -> dict:
    """Paired per-seed FD differences between each (sampler, method, reg)'s best weight and the best weight
    of the same method with REG estimator ``against`` (``""``: without REG; ``"unguided"``: the unguided
    runs): ``{(sampler, method, reg): (mean, std)}`` over the seeds both have."""
    if against not in ("unguided", "") + ESTIMATORS:
        raise ValueError(f"against must be 'unguided', '' (no REG) or one of {ESTIMATORS}, got {against!r}")
    best = {(s.sampler, s.method, s.reg): s.w for s in best_per_method(summarize(result))}
    fd = {(r.sampler, r.method, r.reg, r.w, r.seed): r.fd for r in result.rows}
    out = {}
    for (smp, m, e), w in best.items():
        if m == "unguided":
            continue
        ref_key = (smp, "unguided", "") if against == "unguided" else (smp, m, against)
        if ref_key not in best or ref_key == (smp, m, e):
            continue
        diffs = [fd[(smp, m, e, w, r.seed)] - fd[ref_key + (best[ref_key], r.seed)]
                 for r in result.rows if (smp, m, e, w) == (r.sampler, r.method, r.reg, r.w)
                 and ref_key + (best[ref_key], r.seed) in fd]
        if diffs:
            out[(smp, m, e)] = (statistics.fmean(diffs), _std(diffs))
    return out


def read_csv(path: str | Path) -> list:
    """The rows written by :func:`write_csv` -> [SweepRow] (to re-tabulate or re-plot without sampling)."""
    with open(path, newline="") as fh:
        rd = csv.DictReader(fh)
        if rd.fieldnames != list(SweepRow._fields):
            raise ValueError(f"{str(path)!r} does not hold sweep rows (columns {rd.fieldnames})")
        return [SweepRow(r["sampler"], int(r["seed"]), r["method"], r["reg"], float(r["w"]), float(r["fd"]),
                         float(r["score"]), float(r["accuracy"]), float(r["seconds"])) for r in rd]


def _fmt(v: float, std: float, digits: int = 2) -> str:
    return f"{v:.{digits}f}" if math.isnan(std) else f"{v:.{digits}f} ± {std:.{digits}f}"


def markdown_table(result: SweepResult) -> str:
    """Best FD-digits per method and REG estimator (mean ± std over seeds), per sampler, as Markdown."""
    cfg = result.config
    best = best_per_method(summarize(result))
    order = {m: i for i, m in enumerate(("unguided",) + cfg.methods)}
    reg_order = {e: i for i, e in enumerate(("",) + ESTIMATORS)}
    best.sort(key=lambda s: (s.sampler, order.get(s.method, len(order)), s.method, reg_order[s.reg]))
    lines = [
        f"Digits, {cfg.n_samples} samples per run, seeds {list(cfg.seeds)}, weights {list(cfg.weights)}, "
        f"steps {dict(cfg.steps)}. FD-digits and the score are toy-scale counterparts of FID/IS, "
        "not comparable to ImageNet numbers. Mean ± standard deviation over seeds; "
        "ΔFD (same w) = paired difference to the same method without REG at the same weight and seeds; "
        "ΔFD (best) = paired difference between this row's best weight and the best weight without REG "
        "(for the no-REG rows: against the unguided runs).",
        "",
        f"Reference: training images vs held-out: FD {result.reference.fd:.2f}, score {result.reference.score:.2f}.",
        "",
        "| sampler | method | REG | best w | FD-digits ↓ | ΔFD (same w) | ΔFD (best) | score ↑ | accuracy ↑ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    bvb = best_vs_best(result)
    bvu = best_vs_best(result, "unguided")
    for s in best:
        d = "" if math.isnan(s.d_fd) else _fmt(s.d_fd, s.d_fd_std)
        b = bvb.get((s.sampler, s.method, s.reg)) or bvu.get((s.sampler, s.method, s.reg))
        b = "" if b is None else _fmt(*b)
        lines.append(f"| {s.sampler} | {s.method} | {s.reg or '–'} | {s.w:g} | {_fmt(s.fd, s.fd_std)} | {d} | {b} | "
                     f"{_fmt(s.score, s.score_std)} | {s.accuracy:.3f} |")
    return "\n".join(lines) + "\n"


def write_csv(result: SweepResult, path: str | Path) -> Path:
    """Every row of ``result`` to ``path`` (columns: the ``SweepRow`` fields; read back with :func:`read_csv`),
    atomically: a reader sees the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO(newline="")
    wr = csv.writer(text)
    wr.writerow(SweepRow._fields)
    wr.writerows(result.rows)
    return write_atomically(path, text.getvalue())
