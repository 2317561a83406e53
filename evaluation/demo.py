"""Exact guidance errors in the REG paper's 1-D setting: ``python -m evaluation.demo``.

For every DDPM step of the paper's schedule (T = 20, betas 1e-4..0.02), on 1000 points of [-1, 2],
it prints the mean absolute gap between the exact optimal guidance and CFG / REG (all in eps units,
the term added to ``eps_c``), unweighted as in the paper's figures and weighted by the conditional
noised density ``p_t(x | y)``, against two goldens: the ideal chain (exact posterior) and the
sampler chain (the 20-step DDPM chain actually run, which is what the paper's Monte Carlo golden
estimates). In 1-D every REG estimator is the same number. :func:`compute` gives the per-step curves with
the goldens' error estimates (the figure ``curves_1d`` draws them from a cached cell,
:class:`evaluation.findings.CurvesCell`), :func:`errors` the table.
"""
from __future__ import annotations

import argparse
import time
from typing import NamedTuple

import torch

from analytic import PRESETS, StepGaps, chain_golden, get_preset, guidance_fields_on_grid, mixture_eps_fn, step_gaps
from sampler.schedules import prior_mismatch

from .spec import Law, Method, Schedule

__all__ = ["Curves", "DemoErrors", "compute", "errors"]


class Curves(NamedTuple):
    """Per-step guidance on a 1-D grid, rows ``t = 1..T``, each [T, n] (``x`` [n])."""

    x: torch.Tensor
    abar: torch.Tensor  # [T]
    golden: torch.Tensor  # ideal-chain golden
    chain: torch.Tensor  # sampler-chain golden
    cfg: torch.Tensor  # CFG's term w (eps_c - eps_u)
    reg: torch.Tensor  # REG's (every estimator coincides in 1-D)
    weight: torch.Tensor  # p_t(x | y) normalised on the grid
    golden_error: torch.Tensor  # error estimate of ``golden`` (the quadrature's, analytic.golden_on_grid)
    chain_error: torch.Tensor  # error estimate of ``chain`` (analytic.chain_golden)


class DemoErrors(NamedTuple):
    """Mean |golden - method| per step for ``cfg`` and ``reg``."""

    ideal: StepGaps
    ideal_weighted: StepGaps
    chain: StepGaps


def compute(preset: str = "paper_1d", w: float = 1.0, n_points: int = 1000) -> Curves:
    p = Law.parse(preset).build()
    if p.cond.dim != 1:
        raise ValueError(f"the demo is for 1-D laws; {preset!r} has d = {p.cond.dim}")
    sched = Schedule.parse("paper").vp
    reward = Method("cfg", w).reward(p)
    x = torch.linspace(-1, 2, n_points, dtype=torch.float64)
    chain = chain_golden(mixture_eps_fn(p.cond, sched), reward.log_r0, sched, x)
    rows = {k: [] for k in ("golden", "cfg", "reg", "weight", "golden_error")}
    for t in range(1, sched.T + 1):
        a = sched.abar[t].item()
        f = guidance_fields_on_grid(p.cond, reward, x, a)
        rows["golden"].append(f.golden[:, 0])
        rows["cfg"].append(f.present[:, 0])
        rows["reg"].append(f.reg_paper[:, 0])
        rows["golden_error"].append(f.golden_error[:, 0])
        rows["weight"].append(torch.softmax(p.cond.noised(a).log_prob(x[:, None]), 0))
    stack = {k: torch.stack(v) for k, v in rows.items()}
    return Curves(x, sched.abar[1:].clone(), stack["golden"], chain.golden[..., 0], stack["cfg"], stack["reg"],
                  stack["weight"], stack["golden_error"], chain.err_golden[..., 0])


def errors(c: Curves) -> DemoErrors:
    steps = range(1, c.golden.shape[0] + 1)
    fields = {"cfg": c.cfg[..., None], "reg": c.reg[..., None]}
    return DemoErrors(step_gaps(c.golden[..., None], fields, steps), step_gaps(c.golden[..., None], fields, steps, c.weight),
                      step_gaps(c.chain[..., None], fields, steps))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m evaluation.demo", description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--preset", default="paper_1d", choices=sorted(k for k in PRESETS if k.startswith("paper")))
    ap.add_argument("--w", type=float, default=1.0, help="guidance weight (eps_c + w (eps_c - eps_u))")
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (small arrays: 1 is fastest)")
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    if args.points < 2:
        ap.error(f"--points must be >= 2, got {args.points}")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    curves = compute(args.preset, args.w, args.points)
    e = errors(curves)
    p = get_preset(args.preset)
    mean = (p.cond.weights @ p.cond.means[:, 0]).item()
    var = (p.cond.weights @ (p.cond.covs[:, 0, 0] + p.cond.means[:, 0] ** 2)).item() - mean**2
    pm = prior_mismatch(Schedule.parse("paper").vp, data_std=var**0.5, data_mean=mean)
    print(f"{p.description}; CFG weight w = {args.w}; {args.points} points on [-1, 2]; T = 20")
    print(f"(x_T is far from N(0, 1): abar_T = {pm.abar_T:.3f}; for the conditional, x_T has mean "
          f"{pm.mean:.2f} and std {pm.std:.2f}, KL to N(0,1) = {pm.kl:.2f} nats)\n")
    print("mean |golden - guidance| in eps units; t = paper's step index + 1; REG = any estimator (1-D)")
    print(f"{'t':>3} {'abar':>7} | {'ideal: CFG':>10} {'REG':>8} | {'p_t-weighted CFG':>16} {'REG':>8} | "
          f"{'sampler chain: CFG':>18} {'REG':>8}")
    cols = [e.ideal.of("cfg"), e.ideal.of("reg"), e.ideal_weighted.of("cfg"), e.ideal_weighted.of("reg"),
            e.chain.of("cfg"), e.chain.of("reg")]
    for i in reversed(range(len(curves.abar))):
        v = [c[i].item() for c in cols]
        print(f"{i + 1:>3} {curves.abar[i].item():>7.4f} | {v[0]:>10.4f} {v[1]:>8.4f} | {v[2]:>16.4f} "
              f"{v[3]:>8.4f} | {v[4]:>18.4f} {v[5]:>8.4f}")
    m = [c.mean().item() for c in cols]
    print(f"{'all':>11} | {m[0]:>10.4f} {m[1]:>8.4f} | {m[2]:>16.4f} {m[3]:>8.4f} | {m[4]:>18.4f} {m[5]:>8.4f}")
    print(f"\n(computed exactly, no Monte Carlo, in {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
