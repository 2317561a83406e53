"""Exact field errors and output-distribution distances per method: ``python -m evaluation.report``.

For each standard case (the paper's 1-D setting and the 2-D presets) and each CFG weight ``w`` it
computes, with no Monte Carlo:

- field errors: mean ``|golden - method|`` in eps units over the field grid, averaged over the steps,
  unweighted and weighted by ``p_t(x | y)``, against the ideal-chain golden and (1-D) the sampler-chain
  golden, for CFG and the REG estimators ``paper``, ``vjp``, ``diag``;
- output distances: the exact law of the DDPM sampler's output (:func:`evaluation.density.output_density`)
  against the tilted target ``p(x_0 | y) R_0 / Z`` (:func:`evaluation.distances.tilted_target`): TV, KL both
  ways, W1 (1-D), for unguided, CFG, REG paper/vjp/diag, and the optimum (exact tilted mean) started
  from the tilted start ``N(0, I) E_T`` (THEORY.md), from the tilted true marginal ``p_T(x|y) E_T`` (the
  exact start of the tilted chain; the same when ``abar_T -> 0``) and from the usual ``N(0, I)``.

It prints one table per case and writes ``report.json`` and ``report.md`` to ``--out``.
``--write-regression-table PATH`` also writes the regression table the test suite pins
(``tests/evaluation/regression_table.json``) from the same numbers.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from analytic import CFGReward, get_preset, optimal_denoiser
from sampler import CFG, REG, MixtureModel, TiltedMean, Unguided, bind

from .cases import CASES, DEFAULT_CASES, Case
from .density import output_density, tilted_start, vp_start
from .distances import distances, tilted_target
from .field_errors import field_errors
from .io import check_writable_dir, write_atomically

__all__ = ["CaseResult", "FIELD_METHODS", "DENSITY_METHODS", "compute_case", "regression_entries",
           "regression_table", "REGEN_COMMAND"]

FIELD_METHODS = ("cfg", "reg_paper", "reg_vjp", "reg_diag")
DENSITY_METHODS = ("unguided", "cfg", "reg_paper", "reg_vjp", "reg_diag", "optimal", "optimal_marginal_start",
                   "optimal_untilted_start")
REGEN_COMMAND = "python -m evaluation.report --write-regression-table tests/evaluation/regression_table.json"


class CaseResult(NamedTuple):
    case: str
    w: float
    fields: dict  # {kind: {method: mean error}} (FieldErrors.aggregate())
    golden_size: float  # mean over steps of the p_t-weighted mean |golden|
    distances: dict  # {method: Distances}
    lost: dict  # {method: mass lost off the density grid}
    seconds: float


def _axes(lo: float, hi: float, n: int, d: int) -> tuple[torch.Tensor, ...]:
    return tuple(torch.linspace(lo, hi, n, dtype=torch.float64) for _ in range(d))


class _Memo:
    """Remembers a deterministic ``fn(x, sigma)`` per (sigma, x): the three optimal runs of a case evaluate
    the tilted mean on the same grid points at the same levels."""

    def __init__(self, fn):
        self.fn, self.cache = fn, {}

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        key = (float(sigma), tuple(x.shape), hash(x.detach().cpu().numpy().tobytes()))
        if key not in self.cache:
            self.cache[key] = self.fn(x, sigma)
        return self.cache[key]


def _denoisers(cond, uncond, reward, w: float):
    model = MixtureModel({"c": cond, None: uncond})
    c, u = bind(model, "c"), bind(model, None)
    cfg = CFG(c, u, w)
    opt = TiltedMean(c, _Memo(optimal_denoiser(cond, reward)))
    return {"unguided": Unguided(c), "cfg": cfg, "reg_paper": REG(cfg, "paper"), "reg_vjp": REG(cfg, "vjp"),
            "reg_diag": REG(cfg, "diag"), "optimal": opt, "optimal_marginal_start": opt, "optimal_untilted_start": opt}


def compute_case(case: Case, w: float) -> CaseResult:
    start_time = time.perf_counter()
    p = get_preset(case.preset)
    d = p.cond.dim
    sched = case.make_schedule()
    reward = CFGReward(p.cond, p.uncond, w)
    dens = _denoisers(p.cond, p.uncond, reward, w)
    fe = field_errors(p.cond, sched, _axes(*case.field_range, case.field_points, d),
                      {m: dens[m] for m in FIELD_METHODS}, reward, sampler_chain=case.sampler_chain)
    axes = _axes(*case.density_range, case.density_points, d)
    target = tilted_target(p.cond, reward, axes)
    sigmas = sched.sampling_sigmas()
    a_T = sched.abar[-1].item()
    starts = {"optimal": tilted_start(p.cond, reward, a_T),
              "optimal_marginal_start": tilted_start(p.cond, reward, a_T, marginal=True)}
    dist, lost = {}, {}
    for name, den in dens.items():
        od = output_density(den, sigmas, axes, sampler="ddpm", start=starts.get(name, vp_start(d)),
                            estimate_error=False)
        dist[name] = distances(od.mass, target.mass, axes)
        lost[name] = od.lost
    return CaseResult(case.name, w, fe.aggregate(), fe.golden_size.mean().item(), dist, lost,
                      time.perf_counter() - start_time)


# --- presentation ---------------------------------------------------------------------------------
_FIELD_KINDS = (("ideal", "ideal"), ("ideal_weighted", "ideal, p_t-weighted"), ("chain", "sampler chain"),
                ("chain_weighted", "sampler chain, p_t-weighted"))


def _fmt(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def markdown(results: list[CaseResult], cases: dict[str, Case]) -> str:
    lines = ["# Exact guidance report", "",
             "Field errors: mean |golden - method| (eps units) over the field grid, averaged over the steps. "
             "Distances: exact DDPM output law against the tilted target p(x_0|y) R_0 / Z (no Monte Carlo). "
             "`optimal` starts from the tilted start N(0, I) E_T, `optimal_marginal_start` from p_T(x|y) E_T "
             "(the exact tilted-chain start), `optimal_untilted_start` from N(0, I). All samplers: DDPM.", ""]
    for r in results:
        c = cases[r.case]
        lines += [f"## {r.case}, w = {r.w:g}", "",
                  f"preset `{c.preset}`, schedule `{c.schedule}`, field grid {c.field_points}^d on "
                  f"{list(c.field_range)}, density grid {c.density_points}^d on {list(c.density_range)}; "
                  f"mean p_t-weighted |golden| = {r.golden_size:.4f}; {r.seconds:.1f} s", ""]
        head = "| method | " + " | ".join(lbl for _, lbl in _FIELD_KINDS) + " | TV | KL(out‖target) | KL(target‖out) | W1 |"
        lines += [head, "|" + "---|" * (5 + len(_FIELD_KINDS))]
        for m in DENSITY_METHODS:
            f = [_fmt(r.fields[k].get(m)) if m in r.fields[k] else "-" for k, _ in _FIELD_KINDS]
            dd = r.distances[m]
            lines.append(f"| {m} | " + " | ".join(f) + f" | {_fmt(dd.tv)} | {_fmt(dd.kl_out_target)} | "
                         f"{_fmt(dd.kl_target_out)} | {_fmt(dd.w1)} |")
        lines.append("")
    return "\n".join(lines)


def to_json(results: list[CaseResult], cases: dict[str, Case]) -> dict:
    return {"cases": [asdict(c) for c in cases.values()],
            "results": [{"case": r.case, "w": r.w, "fields": r.fields, "golden_size": r.golden_size,
                         "distances": {m: d._asdict() for m, d in r.distances.items()}, "lost": r.lost,
                         "seconds": r.seconds} for r in results]}


APPROXIMATIONS = ("optimal", "optimal_marginal_start", "optimal_untilted_start")


def regression_entries(r: CaseResult) -> list[dict]:
    """Every stored number of one result: ``{case, w, method, metric, value, kind}``.

    ``kind`` is ``finding`` (a method's field error or output distance: pinned on both sides, so a change
    that flatters or hurts any method is caught) or ``approximation`` (how far the exact optimum's output
    is from its target: it may only shrink)."""
    out = []
    for kind, per in r.fields.items():
        for m, v in per.items():
            if not math.isnan(v):
                out.append({"case": r.case, "w": r.w, "method": m, "metric": f"field_{kind}", "value": v,
                            "kind": "finding"})
    for m, dd in r.distances.items():
        for k, v in dd._asdict().items():
            if not math.isnan(v):
                out.append({"case": r.case, "w": r.w, "method": m, "metric": k, "value": v,
                            "kind": "approximation" if m in APPROXIMATIONS else "finding"})
    return out


def regression_table(results: list[CaseResult], cases: dict[str, Case]) -> dict:
    """The table ``tests/evaluation/test_regression.py`` pins (written by ``--write-regression-table PATH``)."""
    return {
        "command": REGEN_COMMAND,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "note": "exact numbers of every method on the standard cases; findings are pinned on both sides "
                "(|new - stored| <= stored * rtol + atol), approximation errors may only shrink",
        "rtol": 1e-6, "atol": 1e-9,
        "cases": [asdict(c) for c in cases.values()],
        "entries": [e for r in results for e in regression_entries(r)],
    }


def _versions() -> dict:
    import numpy
    import scipy

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "scipy": scipy.__version__}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--out", type=Path, default=Path("report"), help="directory for report.json and report.md")
    ap.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), choices=[c.name for c in CASES],
                    help=f"default {' '.join(DEFAULT_CASES)} (paper_1d_long adds ~10 s)")
    ap.add_argument("--write-regression-table", type=Path, metavar="PATH", default=None,
                    help="also write the regression table the tests pin to PATH "
                         "(tests/evaluation/regression_table.json)")
    args = ap.parse_args(argv)
    try:  # fail on an unusable output before computing anything
        check_writable_dir(args.out)
        if args.write_regression_table is not None:
            check_writable_dir(args.write_regression_table.resolve().parent)
    except OSError as err:
        ap.error(f"cannot write the output: {err}")
    torch.set_num_threads(1)
    cases = {c.name: c for c in CASES if c.name in args.cases}
    start = time.perf_counter()
    jobs = [(c, w) for c in cases.values() for w in c.weights]
    results = [compute_case(c, w) for c, w in tqdm(jobs, desc="cases")]
    md = markdown(results, cases)
    print(md)
    print(f"(all exact, {time.perf_counter() - start:.1f} s)")
    write_atomically(args.out / "report.json", json.dumps(to_json(results, cases), indent=1))
    write_atomically(args.out / "report.md", md + "\n")
    if args.write_regression_table is not None:
        write_atomically(args.write_regression_table, json.dumps(regression_table(results, cases), indent=1) + "\n")
        print(f"wrote {args.write_regression_table}")


if __name__ == "__main__":
    main()
