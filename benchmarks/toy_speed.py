"""Toy-MLP speed and the trained golden two ways: ``python benchmarks/toy_speed.py [--skip-train] [--mc-points N]``.

1. Training one paper 1-D network (200 epochs, batch 64, 8000 samples), one torch thread by default
   (target: under two minutes on two cores).
2. The golden of the shipped trained 1-D conditional network (``paper_1d``, w = 1, T = 20, grid of 1000 points
   on [-1, 2]) by the exact grid recursion (``analytic.chain_golden`` with the network's eps) and by the paper's
   Monte Carlo (100 stochastic rollouts per point, differentiated through the chain), both against a refined
   reference (the grid recursion on a 4x finer grid with 48 Gauss-Hermite nodes). Monte Carlo cost is exactly
   linear in the number of points, so by default it runs on every 5th grid point (200 points) and its
   1000-point time is that time x 5 (``--mc-points 1000`` runs them all).
Wall and CPU (process) times are both printed: the machine may be shared. Not a test.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's packages

import analytic as A  # noqa: E402
from sampler.schedules import VPSchedule  # noqa: E402
from toy import default_config, grid_golden, load_pretrained, mc_golden, net_eps_fn, train_network  # noqa: E402


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="threads for the goldens (1: as the figures and report)")
    ap.add_argument("--train-threads", type=int, default=1, help="threads for training (1 is fastest here)")
    ap.add_argument("--mc-points", type=int, default=200)
    ap.add_argument("--rollouts", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if not args.skip_train:
        cfg = default_config("paper_1d", "cond")
        r, wall, cpu = timed(lambda: train_network(cfg, device="cpu", progress=False, threads=args.train_threads))
        print(f"1. training paper_1d/cond, {cfg.epochs} epochs x {cfg.n_samples // cfg.batch_size} steps "
              f"(batch {cfg.batch_size}), {args.train_threads} thread(s): {wall:.1f} s wall, {cpu:.1f} s CPU, "
              f"final loss {r.losses[-1]:.4f}   target < 120 s: {'met' if wall < 120 else 'NOT met'}\n")

    s = VPSchedule.paper_1d()
    p = A.get_preset("paper_1d")
    reward = A.CFGReward(p.cond, p.uncond, 1.0)
    net = load_pretrained("paper_1d", "cond").net
    x = torch.linspace(-1, 2, 1000, dtype=torch.float64)
    fine = torch.linspace(-1, 2, 4 * 999 + 1, dtype=torch.float64)
    ref, ref_wall, _ = timed(lambda: grid_golden(net, 0, reward.log_r0, s, fine, nodes=48).golden[:, ::4])
    grid, g_wall, g_cpu = timed(lambda: grid_golden(net, 0, reward.log_r0, s, x).golden)
    stride = max(1, 1000 // args.mc_points)
    idx = torch.arange(0, 1000, stride)
    f = net_eps_fn(net, 0, s)
    mc, m_wall, m_cpu = timed(lambda: mc_golden(f, reward.log_r0, s, x[idx, None], n_rollouts=args.rollouts, seed=0,
                                               progress=True).golden)
    det = mc_golden(f, reward.log_r0, s, x[idx, None], deterministic=True).golden
    scale = 1000 / idx.numel()

    steps = tuple(range(1, s.T + 1))
    gaps = A.step_gaps(ref, {"grid": grid}, steps)  # per-step mean |golden - reference| [T]
    gaps_mc = A.step_gaps(ref[:, idx], {"mc": mc, "det": det}, steps)

    def err(e):  # mean over steps, and the worst step's mean
        return e.mean().item(), e.max().item()

    print(f"2. golden of the trained paper_1d network, 1000 points x 20 steps (w = 1); reference: 4x finer grid, "
          f"48 nodes ({ref_wall:.1f} s)")
    print(f"{'method':<44} {'wall s':>9} {'CPU s':>9} {'mean|err|':>10} {'worst step':>11}")
    e = err(gaps.of("grid"))
    print(f"{'exact grid recursion (chain_golden)':<44} {g_wall:>9.2f} {g_cpu:>9.2f} {e[0]:>10.2e} {e[1]:>11.2e}")
    e = err(gaps_mc.of("mc"))
    print(f"{f'Monte Carlo, {args.rollouts} rollouts (x{scale:g} for 1000 pts)':<44} {m_wall * scale:>9.1f} "
          f"{m_cpu * scale:>9.1f} {e[0]:>10.2e} {e[1]:>11.2e}")
    e = err(gaps_mc.of("det"))
    print(f"{'one deterministic rollout (the paper (d))':<44} {'':>9} {'':>9} {e[0]:>10.2e} {e[1]:>11.2e}")
    print(f"speed-up of the grid recursion over Monte Carlo: {m_wall * scale / g_wall:.0f}x wall, "
          f"{m_cpu * scale / g_cpu:.0f}x CPU   (target >= 100x with a smaller error: "
          f"{'met' if m_wall * scale / g_wall >= 100 and gaps.of('grid').mean() < gaps_mc.of('mc').mean() else 'NOT met'})")
    print(f"mean |golden| for scale: {ref.abs().mean().item():.3f}")
    print("\nper step t: mean |MC - ref|, |grid - ref|")
    print("  ".join(f"t={t}: {a:.1e}/{b:.1e}" for t, a, b in zip(steps, gaps_mc.of("mc").tolist(),
                                                                   gaps.of("grid").tolist())))


if __name__ == "__main__":
    main()
