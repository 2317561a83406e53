"""REG overhead on the trained digits UNet: runtime and peak memory per estimator against plain guidance,
side by side in one run.

    python benchmarks/images_reg_overhead.py [--repeats 7] [--threads 1] [--device auto|cpu|cuda] [--quick]

Per guidance (CFG with the shipped digits UNet, AutoG with its weak model) and batch size: one guided
denoiser call at a mid noise level, methods interleaved within every repeat (so load on a shared machine
hits all alike), median time as a ratio to the guidance without REG; peak memory of one call (CPU: the
torch profiler's tensor allocations, "extra" = activations, graphs and outputs, "total" = extra +
parameters + input; CUDA: ``max_memory_allocated``). Then whole DDPM runs (16 levels, as in the sweep).
The REG paper reports 1.21x-1.88x runtime and 1.21x-1.71x memory on GPUs with DiT/EDM2/SD.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from reg_overhead import PAPER, cpu_peak_extra, ddpm_run, time_calls  # noqa: E402

from images.train import DEFAULT_CHECKPOINT, WEAK_CHECKPOINT, load_model, resolve_device  # noqa: E402
from sampler import CFG, REG, AutoGuidance, bind, sampling_levels, vp_prior  # noqa: E402

METHODS = ("none", "paper", "vjp", "jvp", "fd")


def make(kind: str, method: str, model, weak, labels, w: float = 1.0):
    cond = bind(model, labels)
    g = CFG(cond, bind(model, None), w) if kind == "CFG" else AutoGuidance(cond, bind(weak, labels), w)
    return g if method == "none" else REG(g, method)


def peak_memory(fn, x, sigma, param_bytes: int, device) -> tuple:
    with torch.no_grad():
        fn(x, sigma)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        with torch.no_grad():
            fn(x, sigma)
        total = torch.cuda.max_memory_allocated(device)
        return total - base, total
    extra = cpu_peak_extra(fn, x, sigma)
    return extra, extra + param_bytes + x.numel() * x.element_size()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="batch 64 only, 3 repeats, 2 whole runs")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    repeats = 3 if a.quick else a.repeats
    model, weak = load_model(DEFAULT_CHECKPOINT, device), load_model(WEAK_CHECKPOINT, device)
    pbytes = {k: sum(q.numel() * q.element_size() for net in nets for q in net.parameters())
              for k, nets in (("CFG", (model.net,)), ("AutoG", (model.net, weak.net)))}
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, repeats {repeats}")
    print(f"digits UNet {sum(q.numel() for q in model.net.parameters())} parameters, weak {sum(q.numel() for q in weak.net.parameters())}")
    print(f"paper: REG runtime {PAPER['runtime'][0]}-{PAPER['runtime'][1]}x, memory {PAPER['memory'][0]}-{PAPER['memory'][1]}x")
    sigma = float(model.schedule.sigmas[300])
    g = torch.Generator(device=device).manual_seed(0)
    for n in ((64,) if a.quick else (16, 200)):
        x = vp_prior(torch.randn(n, 1, 8, 8, generator=g, device=device), sigma)  # x_t ~ N(0, I) in VP units
        labels = torch.arange(n, device=device) % 10
        for kind in ("CFG", "AutoG"):
            fns = {m: make(kind, m, model, weak, labels) for m in METHODS}
            t = time_calls({m: functools.partial(f, x, sigma) for m, f in fns.items()}, repeats, device)
            mem = {m: peak_memory(f, x, sigma, pbytes[kind], device) for m, f in fns.items()}
            print(f"\n{kind}, batch {n}: {t['none'] * 1e3:.2f} ms/call, peak extra {mem['none'][0] / 2**20:.2f} MiB, "
                  f"total {mem['none'][1] / 2**20:.2f} MiB")
            print(f"  {'REG':6s} {'ms/call':>8s} {'time x':>7s} {'extra mem x':>12s} {'total mem x':>12s}")
            for m in METHODS:
                print(f"  {m:6s} {t[m] * 1e3:8.2f} {t[m] / t['none']:7.2f} {mem[m][0] / mem['none'][0]:12.2f} "
                      f"{mem[m][1] / mem['none'][1]:12.2f}")
    # whole sampling runs, as in the sweep (DDPM, 16 levels, batch 200)
    sig = sampling_levels(model.schedule, "ddpm", 16)
    n = 64 if a.quick else 200
    labels = torch.arange(n, device=device) % 10
    x0 = vp_prior(torch.randn(n, 1, 8, 8, generator=g, device=device), float(sig[0]))
    runs = {m: ddpm_run(make("CFG", m, model, weak, labels), x0, sig, device) for m in METHODS}
    med = time_calls(runs, 2 if a.quick else 3, device, warmup=False)
    print(f"\nwhole DDPM runs, CFG w = 1, 16 levels, batch {n}:")
    for m in METHODS:
        print(f"  {m:6s} {med[m]:7.2f} s  {med[m] / med['none']:5.2f}x")


if __name__ == "__main__":
    main()
