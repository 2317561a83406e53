"""Entry point: ``python -m toy.report [--mc-points N] [--skip-golden] [--skip-2d]``.

Prints, for the shipped checkpoints: (1) network quality (eps error per step against the exact mixture,
W1 of DDPM samples); (2) the golden of the trained 1-D network two ways (Monte Carlo and the grid
recursion) beside the analytic goldens; (3) CFG and REG fields of the trained networks and of the exact
mixture against their goldens, on the same grids and steps (1-D paper grid; 2-D 41 x 41 on [-1, 2]^2).
"""
from __future__ import annotations

import argparse

import torch

import analytic as A
from sampler.schedules import VPSchedule

from .checkpoints import available_checkpoints, load_pretrained
from .fields import exact_fields, trained_fields
from .golden import compare_goldens, grid_golden
from .quality import eps_error, sample_w1


def _labels(preset: A.Preset, role: str):
    """(label, exact law) pairs a network of ``role`` is evaluated with."""
    y = preset.y if preset.classes else 0
    if role == "uncond":
        return [(None, preset.uncond)]
    if role == "joint":
        return [(y, preset.cond), (None, preset.uncond)]
    return [(y, preset.cond)]


def quality_table(schedule: VPSchedule, n: int = 8000) -> None:
    print("1. quality of the shipped networks (eps: p_t-weighted RMS error vs exact eps; W1: 1-D exact, 2-D sliced;"
          " x_T from the exact p_T, and from N(0, I) as the paper samples)")
    print(f"{'checkpoint':<24} {'label':>5} {'epochs':>6} {'train s':>8} {'eps err mean':>12} {'t=1/10/20':>20} "
          f"{'|eps| mean':>10} {'W1':>7} {'floor':>7} {'W1 prior':>8}")
    for preset_name, role in available_checkpoints():
        ck = load_pretrained(preset_name, role)
        p = A.get_preset(preset_name)
        for label, m in _labels(p, role):
            e = eps_error(ck.net, label, m, schedule)
            w = sample_w1(ck.net, label, m, schedule, n=n)
            wp = sample_w1(ck.net, label, m, schedule, n=n, start="prior")
            per = "/".join(f"{e.rms[t - 1]:.3f}" for t in (1, 10, 20))
            print(f"{preset_name + '/' + role:<24} {str(label):>5} {ck.config.epochs:>6} {ck.train_seconds:>8.0f} "
                  f"{e.mean:>12.4f} {per:>20} {e.rms_exact.mean().item():>10.3f} {w.w1:>7.4f} {w.floor:>7.4f} "
                  f"{wp.w1:>8.4f}")
    print()


def golden_table(schedule: VPSchedule, mc_points: int, rollouts: int) -> None:
    p = A.get_preset("paper_1d")
    reward = A.CFGReward(p.cond, p.uncond, 1.0)
    net = load_pretrained("paper_1d", "cond").net
    axis = torch.linspace(-1, 2, mc_points, dtype=torch.float64)
    c = compare_goldens(net, 0, p.cond, reward, schedule, axis, n_rollouts=rollouts, seed=0, progress=False)
    print(f"2. golden of the trained paper_1d network (w = 1, {mc_points} points on [-1, 2]); mean |difference| "
          "in eps units per step")
    cols = ["MC vs grid", "det vs grid", "grid vs exact chain", "grid vs ideal", "exact chain vs ideal", "|golden|"]
    print(f"{'t':>3} {'abar':>6} " + " ".join(f"{h:>20}" for h in cols))
    rows = [c.mc_vs_grid, c.det_vs_grid, c.grid_vs_exact_chain, c.grid_vs_ideal, c.exact_chain_vs_ideal,
            c.golden_size]
    for t in [1, 2, 5, 10, 15, 20]:
        print(f"{t:>3} {c.abar[t - 1].item():>6.3f} " + " ".join(f"{r[t - 1].item():>20.4f}" for r in rows))
    print(f"{'all':>3} {'':>6} " + " ".join(f"{r.mean().item():>20.4f}" for r in rows))
    print(f"   (MC: {rollouts} rollouts; 'grid': chain_golden with the network's eps; 'exact chain': the same with "
          "the exact mixture eps; 'ideal': analytic.golden_on_grid)\n")


def _pt_weights(m: A.GaussianMixture, x: torch.Tensor, schedule: VPSchedule, steps) -> torch.Tensor:
    return torch.stack([m.noised(schedule.abar[t].item()).log_prob(x).exp() for t in steps])


def fields_table(schedule: VPSchedule, preset_name: str, axes, w: float = 1.0) -> None:
    p = A.get_preset(preset_name)
    reward = A.CFGReward(p.cond, p.uncond, w)
    x = torch.cartesian_prod(*axes) if len(axes) > 1 else axes[0][:, None]
    steps = tuple(range(1, schedule.T + 1))
    y = p.y if p.classes else 0
    exact_golden = A.chain_golden(A.mixture_eps_fn(p.cond, schedule), reward.log_r0, schedule,
                                  axes if len(axes) > 1 else axes[0]).golden
    cases = [("exact mixture", exact_fields(p.cond, reward, schedule, x), exact_golden)]
    shipped = set(available_checkpoints())
    if (preset_name, "cond") in shipped and (preset_name, "uncond") in shipped:
        nc, nu = load_pretrained(preset_name, "cond").net, load_pretrained(preset_name, "uncond").net
        g = grid_golden(nc, y, reward.log_r0, schedule, axes if len(axes) > 1 else axes[0]).golden
        cases.append(("trained, two networks", trained_fields(nc, y, nu, None, w, schedule, x), g))
    if (preset_name, "joint") in shipped:
        nj = load_pretrained(preset_name, "joint").net
        g = grid_golden(nj, y, reward.log_r0, schedule, axes if len(axes) > 1 else axes[0]).golden
        cases.append(("trained, one net + null label", trained_fields(nj, y, nj, None, w, schedule, x), g))
    wts = _pt_weights(p.cond, x, schedule, steps)
    print(f"3. {preset_name}: mean |golden - field| over {x.shape[0]} grid points and steps 1..{schedule.T} "
          f"(w = {w}; golden = that case's sampler-chain golden; unweighted / p_t(x|y)-weighted)")
    print(f"{'case':<32} {'|golden|':>15} {'CFG':>15} {'REG paper':>15} {'REG vjp':>15} {'REG diag':>15}")
    for name, f, g in cases:
        e, ew = A.step_gaps(g, f.by_method(), f.steps), A.step_gaps(g, f.by_method(), f.steps, wts)
        cells = [(e.golden_size.mean().item(), ew.golden_size.mean().item())]
        cells += [(e.of(m).mean().item(), ew.of(m).mean().item()) for m in ("present", "reg_paper", "reg_vjp", "reg_diag")]
        print(f"{name:<32} " + " ".join(f"{a:>7.3f}/{b:<7.3f}" for a, b in cells))
    print()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m toy.report", description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--mc-points", type=int, default=200)
    ap.add_argument("--rollouts", type=int, default=100)
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-golden", action="store_true")
    ap.add_argument("--skip-2d", action="store_true")
    ap.add_argument("--threads", type=int)
    args = ap.parse_args(argv)
    if args.threads is not None and args.threads < 1:  # 0 used to be dropped silently (issue 11, defect 12)
        ap.error(f"--threads must be >= 1, got {args.threads}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    s = VPSchedule.paper_1d()
    if not args.skip_quality:
        quality_table(s)
    if not args.skip_golden:
        golden_table(s, args.mc_points, args.rollouts)
    fields_table(s, "paper_1d", (torch.linspace(-1, 2, 1000, dtype=torch.float64),))
    if not args.skip_2d:
        ax = torch.linspace(-1, 2, 41, dtype=torch.float64)
        for name in ("correlated_2d", "classes_2d"):
            fields_table(s, name, (ax, ax))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
