"""The exact mixture score in component-major layout against the layout it replaced, side by side in one run:
``python benchmarks/mixture_eps.py [--base REV] [--n N] [--out PATH]``.

1. ``GaussianMixture.eps`` on N points of the 2-D output laws' grids (uniform on [-3.5, 3.5]^2) for mixtures of
   2, 3 and 4 components (``correlated_2d``'s conditional and unconditional, and a 4-component concatenation),
   at three noise levels: this tree's class against ``analytic/mixture.py`` of ``--base`` (default 392b859, before
   the change) loaded by path in the same process, on the same inputs. Printed: CPU seconds per call
   (``time.process_time``, one thread), their ratio, the largest difference relative to the largest ``|eps|``,
   and the largest per-point relative difference where ``|eps|`` exceeds 1e-3 of its largest value.
2. One whole 2-D law, :func:`evaluation.density.output_density` of ``correlated_2d``, paper schedule, DDPM, CFG
   ``w = 1`` on a 101^2 grid of [-3.5, 3.5]^2, in a fresh process for ``--base`` and for this tree
   (:mod:`benchmarks.revisions`): CPU seconds and the largest difference of the masses.
3. The same comparison of ``eps`` (no timing) on 60 random mixtures, d = 1, 2, 3, 5 and K = 1 ... 4, a third of them
   with covariance eigenvalues spread over 8 decades, at 2000 points of which 100 lie 100-500 from the means,
   at abar = 1 (the score), 0.999, 0.5, 0.01: the largest differences, overall and without the far points. Where
   they exceed 1e-13 (d = 5, condition numbers 5e5-6e7) both layouts are equally far from a 50-digit mpmath
   reference (1e-11 to 3e-13 of the largest |eps|, same medians): the rounding of the squared whitened distances,
   not the layout.

Writes the table to ``--out`` (default ``benchmarks/mixture_eps.txt``). Not a test.
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from revisions import ROOT, checkout, load, run_in

sys.path.insert(0, str(ROOT))  # this tree's packages, also where an editable install points elsewhere

import torch  # noqa: E402

from analytic import GaussianMixture  # noqa: E402
from analytic.presets import get_preset  # noqa: E402

LAW = """
import json, time, torch
torch.set_num_threads(1)
from analytic.presets import get_preset
from evaluation.density import output_density
from sampler import CFG, MixtureModel, bind
from sampler.schedules import VPSchedule
p = get_preset("correlated_2d")
m = MixtureModel({"c": p.cond, None: p.uncond})
cfg = CFG(bind(m, "c"), bind(m, None), 1.0)
ax = torch.linspace(-3.5, 3.5, 101, dtype=torch.float64)
t = time.process_time()
od = output_density(cfg, VPSchedule.paper_1d().sampling_sigmas(), (ax, ax))
cpu = time.process_time() - t
print(json.dumps({"cpu": cpu, "mass": od.mass.flatten().tolist(), "error": od.error.sum().item(), "lost": od.lost}))
"""


def old_class(rev: str, into: Path):
    """``GaussianMixture`` of ``analytic/mixture.py`` at ``rev``, loaded by path (its imports resolve in this tree)."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:analytic/mixture.py"], capture_output=True,
                         text=True, check=True).stdout
    path = into / "analytic_mixture_old.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("analytic_mixture_old", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.GaussianMixture


def cpu_per_call(f, reps: int) -> float:
    f()
    t = time.process_time()
    for _ in range(reps):
        f()
    return (time.process_time() - t) / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--base", default="392b859")
    ap.add_argument("--n", type=int, default=360_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "mixture_eps.txt"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    lines = [f"python benchmarks/mixture_eps.py --base {args.base} --n {args.n} --reps {args.reps}; {load()}; "
             f"one thread, CPU s per call", ""]

    def say(s: str) -> None:
        print(s, flush=True)
        lines.append(s)

    with tempfile.TemporaryDirectory() as tmp:
        Old = old_class(args.base, Path(tmp))
        p, q = get_preset("correlated_2d"), get_preset("classes_2d")
        mixtures = {"correlated_2d cond (K=2)": p.cond, "correlated_2d uncond (K=3)": p.uncond,
                    "correlated_2d cond + classes_2d class 0 (K=4)": GaussianMixture.concat((p.cond, q.classes[0]),
                                                                                            (0.5, 0.5))}
        g = torch.Generator().manual_seed(0)
        x = 7 * torch.rand(args.n, 2, dtype=torch.float64, generator=g) - 3.5
        say(f"1. eps(x, abar) on N = {args.n} points uniform on [-3.5, 3.5]^2")
        say(f"{'mixture':48s} {'abar':>5s} {'old s':>8s} {'new s':>8s} {'ratio':>6s} {'max|d|/max|eps|':>16s} "
            f"{'max per-point rel':>18s}")
        for name, m in mixtures.items():
            mo = Old(m.weights, m.means, m.covs)
            for abar in (0.9, 0.3, 0.02):
                e_new, e_old = m.eps(x, abar), mo.eps(x, abar)
                t_old = cpu_per_call(lambda: mo.eps(x, abar), args.reps)
                t_new = cpu_per_call(lambda: m.eps(x, abar), args.reps)
                top = e_old.abs().max()
                nrm = e_old.norm(dim=1)
                big = nrm > 1e-3 * nrm.max()
                per_point = ((e_new - e_old).norm(dim=1)[big] / nrm[big]).max().item()
                say(f"{name:48s} {abar:5.2f} {t_old:8.4f} {t_new:8.4f} {t_old / t_new:6.2f} "
                    f"{((e_new - e_old).abs().max() / top).item():16.2e} {per_point:18.2e}")
        say("")
        say("2. output_density(CFG w=1, correlated_2d, paper schedule, DDPM, 101^2 nodes on [-3.5, 3.5]^2), "
            "fresh process each")
        base = run_in(checkout(args.base, Path(tmp) / "base"), LAW)
        new = run_in(ROOT, LAW)
        dm = max(abs(a - b) for a, b in zip(base["mass"], new["mass"]))
        say(f"base {args.base}: {base['cpu']:.2f} CPU s; this tree: {new['cpu']:.2f} CPU s; ratio "
            f"{base['cpu'] / new['cpu']:.2f}; max |mass difference| {dm:.2e} (largest mass {max(new['mass']):.3e}, "
            f"error estimate sum {new['error']:.2e}, lost {new['lost']:.2e})")
        say("")
        say("3. eps on random mixtures (d = 1, 2, 3, 5; K = 1..4; condition numbers up to 1e8), 2000 points each")
        near = far = 0.0
        g = torch.Generator().manual_seed(1)
        for trial in range(60):
            d, K = [1, 2, 3, 5][trial % 4], 1 + trial % 4
            Q = torch.linalg.qr(torch.randn(K, d, d, dtype=torch.float64, generator=g))[0]
            eig = 10 ** (8 * torch.rand(K, d, dtype=torch.float64, generator=g) - 6) if trial % 3 == 0 else \
                torch.ones(K, d, dtype=torch.float64)
            covs = Q @ torch.diag_embed(eig) @ Q.transpose(-1, -2)
            mu = 3 * torch.randn(K, d, dtype=torch.float64, generator=g)
            w = torch.rand(K, dtype=torch.float64, generator=g) + 0.1
            m, mo = GaussianMixture(w, mu, covs), Old(w, mu, covs)
            x = 4 * torch.randn(2000, d, dtype=torch.float64, generator=g)
            x[:100] *= 30
            for abar in (1.0, 0.999, 0.5, 0.01):
                e_new, e_old = (m.eps(x, abar), mo.eps(x, abar)) if abar < 1 else (m.score(x, 1.0), mo.score(x, 1.0))
                far = max(far, ((e_new - e_old).abs().max() / e_old.abs().max()).item())
                near = max(near, ((e_new - e_old)[100:].abs().max() / e_old[100:].abs().max()).item())
        say(f"max|d|/max|eps| over all points {far:.2e}; without the 100 far points {near:.2e}")
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
