"""The digits experiment from the command line.

    python -m images.run --sweep [--quick] [--out out/images] [--device auto|cpu|cuda] [--threads 1]
        [--seeds 0 1 2] [--weights 0.25 1] [--methods cfg autog ...] [--regs paper vjp ...] [--n-samples 200]
        [--checkpoint PATH] [--weak PATH] [--classifier PATH]
    python -m images.run --replot [same options]     # table and plot again from rows.csv, no sampling

Writes ``pareto.png`` / ``pareto.pdf`` (FD-digits against the score, :mod:`figures.digits_pareto`),
``table.md`` (best FD per method and REG estimator, mean ± std over seeds, paired difference to no REG),
``rows.csv`` (every run) and ``samples.png`` (unguided, CFG and CFG + REG digits from one seed) to
``--out`` (each file atomically; ``--out`` and, for ``--replot``, its ``rows.csv`` are checked before any
work). The checkpoints default to the ones shipped in ``images/checkpoints`` (retrain with
``python -m images.train`` and ``python -m images.classifier``, which write to ``out/images/checkpoints``;
pass those files with ``--checkpoint``, ``--weak`` and ``--classifier``).

This is an entry point: like ``paper_plots.py`` it sits above every package, so it may use the figures
(imported inside :func:`main`) and choose matplotlib's file backend; the library modules never do.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch

from sampler import bind, sample, sampling_levels, vp_prior
from sampler.method import Method
from sampler.files import check_writable_dir, write_atomically

from .classifier import DEFAULT_CLASSIFIER, load_classifier
from .data import load_digits_split, to_unit_range
from .metrics import DigitsEvaluator
from .sweep import QUICK, SweepConfig, SweepResult, reference_images, run_shipped
from .sweep_stats import best_per_method, markdown_table, read_csv, summarize, write_csv
from .train import DEFAULT_CHECKPOINT, WEAK_CHECKPOINT, load_model, resolve_device


def sample_panels(model, cfg: SweepConfig, best: list, labels: torch.Tensor, device) -> list[tuple[str, np.ndarray]]:
    """One seed, DDPM: unguided, constant CFG and CFG + REG (paper) at their best weights -> [(title, grid)],
    each grid ``[rows * 8, 80]`` in [0, 1] (rows of ten digits 0..9)."""
    sig = sampling_levels(model.schedule, "ddpm", dict(cfg.steps)["ddpm"])
    methods = [Method("unguided")]
    for reg in ("", "paper"):
        b = [s for s in best if s.sampler == "ddpm" and s.method == "cfg" and s.reg == reg]
        if b:
            methods.append(Method("cfg", w=b[0].w, reg=reg))
    out = []
    for m in methods:
        title = m.label + ("" if m.rule == "unguided" else f" w={m.w:g}")
        den = m.guide(bind(model, labels), bind(model, None), sig)
        g = torch.Generator(device=device).manual_seed(0)
        x = vp_prior(torch.randn((labels.shape[0], 1, 8, 8), generator=g, device=device), float(sig[0]))
        x = to_unit_range(sample("ddpm", den, x, sig, generator=g)).cpu()
        out.append((title, x.reshape(-1, 10, 8, 8).permute(0, 2, 1, 3).reshape(-1, 80).numpy()))
    return out


def plot_panels(panels: list[tuple[str, np.ndarray]], path: Path) -> Path:
    """The digit grids of :func:`sample_panels` side by side (plotting only)."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), squeeze=False)
    for ax, (title, grid) in zip(axes[0], panels):
        ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m images.run", description="Digits: CFG variants and AutoG, without "
                                "and with REG.", allow_abbrev=False)
    p.add_argument("--sweep", action="store_true", help="run the guidance-weight sweep")
    p.add_argument("--replot", action="store_true",
                   help="re-write table.md and pareto.png from --out/rows.csv without sampling (pass the sweep's options)")
    p.add_argument("--quick", action="store_true", help="2 seeds, 2 weights, fewer steps and samples (< 3 min)")
    p.add_argument("--out", default="out/images")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on a shared 2-core box)")
    p.add_argument("--seeds", type=int, nargs="+", default=None)
    p.add_argument("--weights", type=float, nargs="+", default=None)
    p.add_argument("--methods", nargs="+", default=None,
                   help="method spellings without w and reg (sampler.method), e.g. cfg 'cfg,weighting=cosine,hi=10' autog")
    p.add_argument("--regs", nargs="*", default=None,
                   help="REG estimators each method also runs with (paper vjp jvp fd diag; none: no REG runs)")
    p.add_argument("--n-samples", type=int, default=None)
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--weak", default=str(WEAK_CHECKPOINT))
    p.add_argument("--classifier", default=str(DEFAULT_CLASSIFIER))
    a = p.parse_args(argv)
    if not (a.sweep or a.replot):
        p.error("nothing to do: pass --sweep (with --quick for a short run) or --replot")
    if a.threads < 1:  # 0 used to be dropped silently by a truthiness test (issue 11, defect 12)
        p.error(f"--threads must be >= 1, got {a.threads}")
    cfg = QUICK if a.quick else SweepConfig()
    over = {k: tuple(v) for k, v in (("seeds", a.seeds), ("weights", a.weights), ("methods", a.methods),
                                           ("regs", a.regs))
            if v is not None}
    if a.n_samples is not None:  # --n-samples 0 used to fall back to the default silently
        over["n_samples"] = a.n_samples
    try:
        cfg = dataclasses.replace(cfg, **over)
    except ValueError as err:
        p.error(str(err))
    out = Path(a.out)
    try:
        check_writable_dir(out)
    except OSError as err:
        p.error(f"cannot write to --out {out}: {err}")
    rows = None
    if a.replot:
        try:
            rows = read_csv(out / "rows.csv")
        except FileNotFoundError:
            p.error(f"--replot reads {out / 'rows.csv'}, which does not exist: run --sweep with this --out first")
        except (OSError, ValueError) as err:
            p.error(f"--replot cannot read {out / 'rows.csv'}: {err}")
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")  # entry point: files only, no display
    from figures import digits_pareto  # noqa: PLC0415  (the entry point sits above the figures)

    torch.set_num_threads(a.threads)
    try:
        device = resolve_device(a.device)
    except ValueError as err:
        p.error(f"--device: {err}")

    if a.replot:
        data = load_digits_split()
        evaluator = DigitsEvaluator(load_classifier(a.classifier, device), data.test_x)
        res = SweepResult(cfg, rows, evaluator.evaluate(reference_images(data, cfg.n_samples)), math.nan)
        write_atomically(out / "table.md", markdown_table(res))
        digits_pareto.plot(digits_pareto.from_result(res), out, name="pareto")
        print(markdown_table(res))
        return
    print(f"device {device}, {torch.get_num_threads()} thread(s), {cfg.n_runs()} sampling runs")
    t0 = time.perf_counter()
    res = run_shipped(cfg, device=device, checkpoint=a.checkpoint, weak=a.weak, classifier=a.classifier)
    table = markdown_table(res)
    write_atomically(out / "table.md", table)
    write_csv(res, out / "rows.csv")
    digits_pareto.plot(digits_pareto.from_result(res), out, name="pareto")
    labels = torch.arange(30, device=device) % 10
    panels = sample_panels(load_model(a.checkpoint, device), cfg, best_per_method(summarize(res)), labels, device)
    plot_panels(panels, out / "samples.png")
    print(table)
    print(f"wrote {out}/table.md, pareto.png, rows.csv, samples.png in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
