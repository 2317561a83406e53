"""How fast, and how accurate, the exact goldens are: ``python benchmarks/golden_speed.py``.

Prints points x steps per second and the largest error of the golden term (eps units) against a
refined reference computed in the same run. Not a test: numbers depend on the machine.
"""
from __future__ import annotations

import time

import torch

from analytic import CFGReward, optimal_guidance
from analytic.chain import chain_golden, mixture_eps_fn
from analytic.grid import golden_on_grid
from analytic.presets import get_preset
from sampler.schedules import VPSchedule


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def row(name, n_points, steps, seconds, err):
    print(f"{name:<52} {n_points:>7} x {steps:<3} {seconds:>8.2f} s {n_points * steps / seconds:>12.3g} pts*steps/s"
          f"   max err {err:.1e}")


def main() -> None:
    torch.set_num_threads(1)  # small arrays: a second thread only contends (see paper_plots.py)
    sched = VPSchedule.paper_1d()
    levels = [sched.abar[t].item() for t in range(1, sched.T + 1)]
    print(f"{'':<52} {'points x steps':>13} {'time':>10} {'throughput':>24}   accuracy vs refined reference\n")

    # --- 1-D, the paper's setting -----------------------------------------------------------------
    p = get_preset("paper_1d")
    reward = CFGReward(p.cond, p.uncond, 1.0)
    x = torch.linspace(-1, 2, 1000, dtype=torch.float64)
    golden_on_grid(p.cond, reward, x, levels[0])  # warm-up
    ref, _ = timed(lambda: [golden_on_grid(p.cond, reward, x, a, points_per_width=10).golden for a in levels])
    grid, s = timed(lambda: [golden_on_grid(p.cond, reward, x, a).golden for a in levels])
    row("1-D ideal golden, tensor-grid trapezoid", 1000, 20, s, max((g - r).abs().max().item() for g, r in zip(grid, ref)))
    pts, s = timed(lambda: [optimal_guidance(p.cond, reward, x[:, None], a).golden for a in levels])
    row("1-D ideal golden, pointwise (default, with error est.)", 1000, 20, s,
        max((g - r).abs().max().item() for g, r in zip(pts, ref)))
    gh, s = timed(lambda: [optimal_guidance(p.cond, reward, x[:, None], a, method="gh").golden for a in levels])
    row("1-D ideal golden, Gauss-Hermite (tol 1e-9)", 1000, 20, s, max((g - r).abs().max().item() for g, r in zip(gh, ref)))

    eps = mixture_eps_fn(p.cond, sched)
    fine = torch.linspace(-1, 2, 4 * 999 + 1, dtype=torch.float64)
    chain_ref, _ = timed(lambda: chain_golden(eps, reward.log_r0, sched, fine, nodes=48).golden[:, ::4])
    chain, s = timed(lambda: chain_golden(eps, reward.log_r0, sched, x).golden)
    row("1-D sampler-chain golden (grid recursion)", 1000, 20, s, (chain - chain_ref).abs().max().item())

    # --- 2-D -------------------------------------------------------------------------------------------
    q = get_preset("correlated_2d")
    reward2 = CFGReward(q.cond, q.uncond, 1.0)
    ax = torch.linspace(-1, 2, 200, dtype=torch.float64)
    golden_on_grid(q.cond, reward2, (ax, ax), levels[-1])  # warm-up
    grid2, s = timed(lambda: [golden_on_grid(q.cond, reward2, (ax, ax), a).golden for a in levels])
    sub = torch.cartesian_prod(ax[::19], ax[::19])
    check = [0, 9, 19]
    ref2 = [optimal_guidance(q.cond, reward2, sub, levels[i], method="grid").golden for i in check]
    gh2 = [optimal_guidance(q.cond, reward2, sub, levels[i], method="gh", tol=1e-6).golden for i in check]
    err = max((grid2[i][::19, ::19].reshape(-1, 2) - r).abs().max().item() for i, r in zip(check, gh2))
    row("2-D ideal golden, 200 x 200 tensor grid (vs Gauss-Hermite)", 40000, 20, s, err)
    err_pts = max((r - g).abs().max().item() for r, g in zip(ref2, gh2))
    print(f"{'  (pointwise trapezoid vs Gauss-Hermite on 121 points x 3 steps)':<96} max err {err_pts:.1e}")

    ax_c = torch.linspace(-1, 2, 61, dtype=torch.float64)
    eps2 = mixture_eps_fn(q.cond, sched)
    chain2, s = timed(lambda: chain_golden(eps2, reward2.log_r0, sched, (ax_c, ax_c)).golden)
    ax_f = torch.linspace(-1, 2, 121, dtype=torch.float64)
    chain2_ref = chain_golden(eps2, reward2.log_r0, sched, (ax_f, ax_f), nodes=16).golden[:, ::2, ::2]
    row("2-D sampler-chain golden, 61 x 61 grid (vs 121 x 121)", 61 * 61, 20, s, (chain2 - chain2_ref).abs().max().item())


if __name__ == "__main__":
    main()
