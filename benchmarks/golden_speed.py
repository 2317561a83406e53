"""How fast, and how accurate, the exact goldens and output densities are: ``python benchmarks/golden_speed.py``.

Prints points x steps per second and errors in eps units: for the ideal-chain goldens against a refined
reference computed in the same run; for the sampler-chain golden its own converged error estimate (the
change between two resolutions), its agreement with an independent nested Gauss-Hermite quadrature at a
handful of points, issue 11's coarse-axis example in 1-D (``--refine`` compares every 2-D golden with a run
at tol 1e-6, ``--mc`` adds a pathwise Monte Carlo with standard errors at the last step; both slow); for the
exact output density of a 1000-step DDPM, the time against the direct banded step it replaced and against
the denoiser calls alone, and the distances' error estimates against sub-cell and grid refinement. Not a
test: numbers depend on the machine, whose load is printed with them (times as wall clock and, beside
them, CPU seconds of this single-threaded process).
"""
from __future__ import annotations

import argparse
import math
import os
import time

import torch

from analytic import CFGReward, optimal_guidance
from analytic.chain import chain_golden, mixture_eps_fn, nested_golden
from analytic.grid import golden_on_grid
from analytic.presets import get_preset
from evaluation.density import gaussian_step, output_density
from evaluation.distances import distances_between, tilted_target
from sampler import CFG, MixtureModel, bind
from sampler.schedules import VPSchedule

F64 = torch.float64


class Seconds(float):
    """Wall-clock seconds, with the process's CPU seconds beside them (the time on one core when the machine's
    other work makes the wall clock meaningless)."""

    cpu: float = math.nan


def timed(fn):
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    seconds = Seconds(time.perf_counter() - start)
    seconds.cpu = time.process_time() - cpu
    return out, seconds


def row(name, n_points, steps, seconds, err):
    cpu = f" (cpu {seconds.cpu:.2f} s)" if isinstance(seconds, Seconds) else ""
    print(f"{name:<58} {n_points:>7} x {steps:<3} {seconds:>8.2f} s{cpu} {n_points * steps / seconds:>12.3g} "
          f"pts*steps/s   max err {err:.1e}")


def mc_golden(eps_fn, log_r0, schedule, x, t, rollouts, batches, seed=0):
    """The golden at one point x [d] by pathwise Monte Carlo over the chain's rollouts (ratio estimator),
    with a standard error from ``batches`` independent batches."""
    gen = torch.Generator().manual_seed(seed)
    ests = []
    for _ in range(batches):
        xs = x.reshape(1, -1).repeat(rollouts, 1).requires_grad_(True)
        p = xs
        for tau in range(t, 0, -1):
            p = schedule.reverse_mean(p, eps_fn(p, tau), tau)
            s = schedule.posterior_variance[tau].sqrt().item()
            if s > 0:
                p = p + s * torch.randn(p.shape, generator=gen, dtype=F64)
        (g,) = torch.autograd.grad(torch.logsumexp(log_r0(p), 0), xs)
        ests.append(g.sum(0))
    est = torch.stack(ests) * -math.sqrt(1 - schedule.abar[t].item())
    return est.mean(0), est.std(0) / math.sqrt(batches)


def ideal_goldens(levels) -> None:
    p = get_preset("paper_1d")
    reward = CFGReward(p.cond, p.uncond, 1.0)
    x = torch.linspace(-1, 2, 1000, dtype=F64)
    golden_on_grid(p.cond, reward, x, levels[0])  # warm-up
    ref, _ = timed(lambda: [golden_on_grid(p.cond, reward, x, a, points_per_width=10).golden for a in levels])
    grid, s = timed(lambda: [golden_on_grid(p.cond, reward, x, a).golden for a in levels])
    row("1-D ideal golden, tensor-grid trapezoid", 1000, 20, s, max((g - r).abs().max().item() for g, r in zip(grid, ref)))
    pts, s = timed(lambda: [optimal_guidance(p.cond, reward, x[:, None], a).golden for a in levels])
    row("1-D ideal golden, pointwise (default, with error est.)", 1000, 20, s,
        max((g - r).abs().max().item() for g, r in zip(pts, ref)))
    gh, s = timed(lambda: [optimal_guidance(p.cond, reward, x[:, None], a, method="gh").golden for a in levels])
    row("1-D ideal golden, Gauss-Hermite (tol 1e-9)", 1000, 20, s, max((g - r).abs().max().item() for g, r in zip(gh, ref)))

    q = get_preset("correlated_2d")
    reward2 = CFGReward(q.cond, q.uncond, 1.0)
    ax = torch.linspace(-1, 2, 200, dtype=F64)
    golden_on_grid(q.cond, reward2, (ax, ax), levels[-1])  # warm-up
    grid2, s = timed(lambda: [golden_on_grid(q.cond, reward2, (ax, ax), a).golden for a in levels])
    sub = torch.cartesian_prod(ax[::19], ax[::19])
    check = [0, 9, 19]
    ref2 = [optimal_guidance(q.cond, reward2, sub, levels[i], method="grid").golden for i in check]
    gh2 = [optimal_guidance(q.cond, reward2, sub, levels[i], method="gh", tol=1e-6).golden for i in check]
    err = max((grid2[i][::19, ::19].reshape(-1, 2) - r).abs().max().item() for i, r in zip(check, gh2))
    row("2-D ideal golden, 200 x 200 tensor grid (vs Gauss-Hermite)", 40000, 20, s, err)
    err_pts = max((r - g).abs().max().item() for r, g in zip(ref2, gh2))
    print(f"{'  (pointwise trapezoid vs Gauss-Hermite on 121 points x 3 steps)':<100} max err {err_pts:.1e}")


def chain_1d(sched) -> None:
    p = get_preset("paper_1d")
    reward = CFGReward(p.cond, p.uncond, 1.0)
    eps = mixture_eps_fn(p.cond, sched)
    x = torch.linspace(-1, 2, 1000, dtype=F64)
    ref = chain_golden(eps, reward.log_r0, sched, x, tol=1e-9, length_scale=reward.length_scale())
    cg, s = timed(lambda: chain_golden(eps, reward.log_r0, sched, x))
    row("1-D sampler-chain golden (tol 1e-6), vs tol 1e-9", 1000, 20, s, (cg.golden - ref.golden).abs().max().item())
    print(f"{'  its own error estimate':<100} max err {cg.err_golden.max().item():.1e}")
    pts = torch.tensor([[1.0], [-0.83], [0.3172], [1.93]], dtype=F64)
    few, s = timed(lambda: chain_golden(eps, reward.log_r0, sched, points=pts))
    nested = max((few.golden[t - 1] - nested_golden(eps, reward.log_r0, sched, pts, t, 40)[1]).abs().max().item()
                 for t in (2, 3, 4))
    row("1-D sampler-chain golden at 4 points (vs nested Gauss-Hermite, t<=4)", 4, 20, s, nested)
    print(f"{'  its own error estimate there, t = 2..4':<100} max err {few.err_golden[1:4].max().item():.1e}")
    # issue 11's example: a coarse requested axis used to degrade the values (-0.4931 instead of -0.4971)
    _, ref = nested_golden(eps, reward.log_r0, sched, pts[:1], 4, 40)
    for n in (23, 221):
        axis = torch.linspace(-0.5, 1.7, n, dtype=F64)
        cg_n = chain_golden(eps, reward.log_r0, sched, axis)
        i = int((axis - 1.0).abs().argmin())
        print(f"    x = 1.0, t = 4 on a {n}-point axis [-0.5, 1.7]: {cg_n.golden[3, i, 0].item():.10f} "
              f"(nested Gauss-Hermite {ref.item():.10f}, diff {abs(cg_n.golden[3, i, 0].item() - ref.item()):.1e}, "
              f"estimate {cg_n.err_golden[3, i, 0].item():.1e})")


def chain_2d(name: str, sched, sched_name: str, mc: bool, refine: bool) -> None:
    q = get_preset(name)
    reward = CFGReward(q.cond, q.uncond, 1.0)
    eps = mixture_eps_fn(q.cond, sched)
    ax = torch.linspace(-1, 2, 121, dtype=F64)
    cg, s = timed(lambda: chain_golden(eps, reward.log_r0, sched, (ax, ax), length_scale=reward.length_scale()))
    per_step = cg.err_golden.amax(dim=(1, 2, 3))
    row(f"2-D sampler-chain golden, {name}, {sched_name}, 121 x 121 (tol 1e-4)", 121 * 121, sched.T, s,
        per_step.max().item())
    print(f"    error estimate per step t = 1..{sched.T}: " + " ".join(f"{v:.0e}" for v in per_step.tolist()))
    if refine:  # an independent refinement: the same golden asked for 100 times tighter
        fine, s_fine = timed(lambda: chain_golden(eps, reward.log_r0, sched, (ax, ax), tol=1e-6,
                                                  length_scale=reward.length_scale()))
        diff = (cg.golden - fine.golden).abs().amax(dim=(1, 2, 3))
        covered = bool(((cg.golden - fine.golden).abs() <= cg.err_golden + fine.err_golden).all())
        print(f"    against the same run at tol 1e-6 ({s_fine.cpu:.0f} s cpu), max |diff| per step: "
              + " ".join(f"{v:.0e}" for v in diff.tolist()) + f"; within the estimates everywhere: {covered}")
    pts = torch.tensor([[-1.0, 2.0], [0.5, 0.5], [1.5, 1.0], [2.0, -1.0], [-0.5, 1.25], [1.0, 0.0]], dtype=F64)
    idx = [(round((a + 1) / 3 * 120), round((b + 1) / 3 * 120)) for a, b in pts.tolist()]
    got = torch.stack([cg.golden[:, i, j] for i, j in idx], 1)  # [T, 6, 2]
    est = torch.stack([cg.err_golden[:, i, j] for i, j in idx], 1)
    for t, nodes in ((2, 96), (3, 40)):
        ref = nested_golden(eps, reward.log_r0, sched, pts, t, nodes)[1]
        half = nested_golden(eps, reward.log_r0, sched, pts, t, nodes * 4 // 5)[1]
        print(f"{f'    6 points, t = {t}: against nested Gauss-Hermite ({nodes}^{2 * (t - 1)} nodes; its own change from {nodes * 4 // 5}: {(ref - half).abs().max().item():.0e})':<100} "
              f"max diff {(got[t - 1] - ref).abs().max().item():.1e} (estimate {est[t - 1].max().item():.0e})")
    if mc:
        for k in (1, 2):
            m, se = mc_golden(eps, reward.log_r0, sched, pts[k], sched.T, 20_000, 20, seed=k)
            dev = (got[-1, k] - m).abs()
            print(f"    point {pts[k].tolist()}, t = {sched.T}: Monte Carlo (4e5 rollouts) {m.tolist()} +- {se.tolist()}; "
                  f"|chain - MC| / se = {(dev / se).max().item():.1f}")


def _direct_step(p, mean, c, axes, lo, h):
    """The banded step output_density used before (every source's Gaussian summed over its whole band)."""
    B = int(math.ceil(2 * 7.5 * c / h[0])) + 2
    k0 = torch.floor((mean[:, 0] - 7.5 * c - lo[0]) / h[0]).long().clamp(-B, axes[0].numel())
    offs = torch.arange(B)
    z = (lo[0] + h[0] * k0.to(F64) - mean[:, 0])[:, None] / c + (h[0] / c) * offs.to(F64)
    w = torch.exp(-0.5 * z * z)
    w = w / w.sum(1, keepdim=True)
    out = torch.zeros(axes[0].numel() + 2 * B, dtype=F64)
    out.index_add_(0, (k0[:, None] + B + offs).flatten(), (p[:, None] * h[0] * w).flatten())
    return out[B:B + axes[0].numel()] / h[0]


def density_1000_steps() -> None:
    p = get_preset("paper_1d")
    m = MixtureModel({"c": p.cond, None: p.uncond})
    cfg = CFG(bind(m, "c"), bind(m, None), 1.0)
    sigmas = VPSchedule.standard().sampling_sigmas()
    axis = torch.linspace(-6, 6, 2001, dtype=F64)
    od, s = timed(lambda: output_density(cfg, sigmas, axis))
    row("1000-step DDPM output density, 2001 points (+ error estimate)", 2001, 1000, s, od.error.sum().item())
    # the distances' error estimates against grid and sub-cell refinement
    reward = CFGReward(p.cond, p.uncond, 1.0)
    d = distances_between(od, tilted_target(p.cond, reward, axis))
    names = ("tv", "kl_out_target", "kl_target_out", "w1")
    print("    distances to the tilted target at 2001 points: "
          + ", ".join(f"{k} {getattr(d, k):.6f} +- {getattr(d, k + '_error'):.1e}" for k in names))
    for label, n, sub in (("twice the sub-points (16 per cell)", 2001, 16), ("a grid twice as fine (4001 points)", 4001, None)):
        fine_axis = torch.linspace(-6, 6, n, dtype=F64)
        f = distances_between(output_density(cfg, sigmas, fine_axis, sub=sub),
                              tilted_target(p.cond, reward, fine_axis, sub=sub or 8))
        print(f"    change with {label}: " + ", ".join(
            f"{k} {abs(getattr(f, k) - getattr(d, k)):.1e} ({'<=' if abs(getattr(f, k) - getattr(d, k)) <= getattr(d, k + '_error') else '>'} est.)"
            for k in names))
    x = axis[:, None]
    _, s_den = timed(lambda: [cfg(x, sg) for sg in sigmas[:-1].tolist()])
    # the stochastic steps alone, new split step against the direct banded step, on the same means
    scale = torch.sqrt(1 + sigmas**2)
    from sampler.samplers import ddim_coefficients
    means, widths = [], []
    for i in range(0, 999, 10):
        D = cfg(scale[i].item() * x, sigmas[i].item())
        a, c = ddim_coefficients(sigmas[i].item(), sigmas[i + 1].item(), 1.0)
        means.append((D + a * (scale[i].item() * x - D)) / scale[i + 1].item())
        widths.append(c / scale[i + 1].item())
    dens = torch.exp(-0.5 * axis**2)
    h = [(axis[1] - axis[0]).item()]
    _, s_new = timed(lambda: [gaussian_step(dens, mu, c, (axis,), [-6.0], h) for mu, c in zip(means, widths)])
    _, s_old = timed(lambda: [_direct_step(dens, mu, c, (axis,), [-6.0], h) for mu, c in zip(means, widths)])
    print(f"    of which the denoiser calls alone: {s_den:.2f} s; stochastic step, split vs direct band "
          f"(100 of the 1000 steps): {s_new:.3f} s vs {s_old:.3f} s ({s_old / s_new:.1f}x)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--mc", action="store_true", help="add a Monte Carlo check of the 2-D chain golden at t = T (slow)")
    ap.add_argument("--refine", action="store_true", help="compare each 2-D chain golden with a run at tol 1e-6 (slow)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # small arrays: a second thread only contends (see paper_plots.py)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start; torch threads 1\n")
    sched = VPSchedule.paper_1d()
    levels = [sched.abar[t].item() for t in range(1, sched.T + 1)]
    print(f"{'':<58} {'points x steps':>13} {'time':>10} {'throughput':>24}   accuracy\n")
    ideal_goldens(levels)
    chain_1d(sched)
    for name in ("correlated_2d", "classes_2d"):
        chain_2d(name, sched, "paper schedule", args.mc, args.refine)
        chain_2d(name, VPSchedule.linear(20, 0.01, 0.4), "20-step linear(0.01, 0.4)", args.mc, args.refine)
    density_1000_steps()
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
