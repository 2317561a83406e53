"""The 2-D output density's error estimate against its actual error, on the claims ledger's 2-D DDPM laws at the
grid where the accuracy contract first runs them (issue 20: "estimates tight enough to steer refinement", within
about 10x): ``python benchmarks/estimate_2d.py [--ref N] [--only SUBSTRING ...]``. Not a test.

For each law (an :class:`evaluation.claims.cells.OutputCell` of the ledger, listed below with its first grid):
:func:`evaluation.density._density` at the first grid with the contract's sub-points (``SUBS[2][0]``), the parts of
its estimate (the spacing's part, the change from the check's even nodes at the observed rate ``rho``; the
sub-points' part), and the actual error of the returned masses and of the check's (the masses before session 15,
which returned the run at fewer sub-points with twice their change as its part) against a reference at ``--ref``
nodes per axis (``2 SUBS[2][0]`` sub-points would not fit ``MAX_SUB_POINTS`` there: ``SUBS[2][0]``, no estimate),
restricted exactly to the grid. ``est_old`` is the estimate of the code before session 15 on the check's masses
(the same runs: rate halved, twice the sub-points' change). The reference's own error is not known; it is about
the actual error of a 401^2 law, a few times 1e-4 (compare ``--ref 401`` with ``--ref 801``).
"""
from __future__ import annotations

import argparse
import math
import time

from evaluation import density as D
from evaluation.accuracy import SUBS, axes_of
from evaluation.claims.cells import OutputCell
from evaluation.spec import Law, Method, Schedule
from evaluation.starts import tilted_start, vp_start

# (law, schedule, w, REG estimator, start, first grid): the ledger's 2-D DDPM laws (`schedules` and `reg-samples`),
# at the grid the contract runs first (narrow kernels refine the paper schedule's 51^2 to 201^2; the linear schedule's
# lost mass widens it twice to (-7, 7) and its kernels refine it to 401^2, the same spacing)
CASES = [
    ("correlated_2d", "paper", 1.0, "", "n01", (-3.5, 3.5, 201)),
    ("correlated_2d", "paper", 1.0, "", "tilted", (-3.5, 3.5, 201)),
    ("correlated_2d", "paper", 1.0, "diag", "n01", (-3.5, 3.5, 201)),
    ("correlated_2d", "paper", 1.0, "vjp", "tilted", (-3.5, 3.5, 201)),
    ("correlated_2d", "paper", 3.0, "", "n01", (-3.5, 3.5, 201)),
    ("correlated_2d", "paper", 3.0, "", "tilted", (-3.5, 3.5, 201)),
    ("correlated_2d", "paper", 3.0, "paper", "tilted", (-3.5, 3.5, 201)),
    ("classes_2d", "paper", 1.0, "", "n01", (-3.5, 3.5, 201)),
    ("classes_2d", "paper", 1.0, "diag", "tilted", (-3.5, 3.5, 201)),
    ("classes_2d", "paper", 3.0, "", "n01", (-3.5, 3.5, 201)),
    ("classes_2d", "paper", 3.0, "vjp", "tilted", (-3.5, 3.5, 201)),
    ("classes_2d", "linear:20:0.01:0.4", 1.0, "", "n01", (-7.0, 7.0, 401)),
    ("correlated_2d", "linear:20:0.01:0.4", 1.0, "", "n01", (-7.0, 7.0, 401)),
]


def probe(law_name, schedule, w, reg, start_name, grid, ref_n: int) -> str:
    cell = OutputCell(law_name, schedule, Method("cfg", w, reg=reg), start=start_name)
    law = Law.parse(cell.law).build()
    sched = Schedule.parse(cell.schedule)
    sig = sched.vp.sampling_sigmas()
    reward = cell.method.reward(law)
    guided = cell.method.build(law, sched, cell.model).guided
    a_T = sched.vp.abar[-1].item()
    start = {"n01": vp_start(2), "tilted": tilted_start(law.cond, reward, a_T, marginal=True)}[cell.start]
    t = time.process_time()
    pair = D._density(guided, sig, axes_of(grid, 2), "ddpm", 0.0, start, SUBS[2][0], 0.5, False, True, 0.5)
    cpu = time.process_time() - t
    raw = (D._restrict(pair.check) - pair.coarse).abs().sum().item()
    fine = D._restrict(D._restrict(pair.check) - pair.coarse).abs().sum().item()
    rho = (D._restrict(pair.coarse) - pair.coarser).abs().sum().item() / fine
    spacing_part, sub_part = raw * D._convergence_factor(pair), pair.sub_error.sum().item()
    est_new = spacing_part + sub_part
    est_old = raw / max(1.0, 0.5 * min(rho, 16.0) - 1.0) + 2 * (pair.mass - pair.check).abs().sum().item()
    lo, hi, n = grid
    ref = D.output_density(guided, sig, axes_of((lo, hi, ref_n), 2), start=start, sub=SUBS[2][0],
                           max_nodes=ref_n**2, estimate_error=False)
    rm = D._restrict(ref.mass, round(math.log2((ref_n - 1) / (n - 1))))
    new, old = (pair.mass - rm).abs().sum().item(), (pair.check - rm).abs().sum().item()
    return (f"{law_name:13} {schedule:18} w={w:g} {reg or '-':5} {start_name:6} {n}^2 | masses: error {new:.2e}, "
            f"estimate {est_new:.2e} = {spacing_part:.2e} + {sub_part:.2e} ({est_new / new:4.1f}x) | before: error "
            f"{old:.2e}, estimate {est_old:.2e} ({est_old / old:4.1f}x) | rho {rho:.3g}, narrow {pair.narrow}, "
            f"{cpu:.0f} CPU-s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--ref", type=int, default=801, help="nodes per axis of the reference on (lo, hi) (default 801)")
    ap.add_argument("--only", nargs="*", default=(), help="run the cases whose line contains one of these")
    args = ap.parse_args()
    print(f"# python benchmarks/estimate_2d.py --ref {args.ref}; SUBS[2][0] = {SUBS[2][0]} sub-points, checked at "
          f"{D.check_sub(SUBS[2][0])}")
    for case in CASES:
        if args.only and not any(s in " ".join(map(str, case)) for s in args.only):
            continue
        print(probe(*case, args.ref), flush=True)


if __name__ == "__main__":
    main()
