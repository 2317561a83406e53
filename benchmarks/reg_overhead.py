"""REG overhead against CFG on the same network, per estimator: runtime and peak memory, side by side.

    python benchmarks/reg_overhead.py [--repeats 9] [--threads 1] [--device cpu|cuda] [--quick]

Networks: the toy MLP (``toy.MLP``, the REG paper's 1-D toy architecture: sinusoidal embeddings of x at
scale 25 and of t, width 128, 3 residual GELU blocks; separate conditional and unconditional networks;
here with d = 2 and a batch of 1000 points) and a small conv UNet (32/64 channels, GroupNorm + SiLU,
class and time embeddings (``toy.SinusoidalEmbedding``), 3 x 32 x 32, batch 8). One guided denoiser call at a mid noise level is timed;
methods are interleaved within every repeat so load on the machine hits all of them alike, and the
median is reported as a ratio to CFG.

Memory: on CPU the peak of tensor bytes allocated during one call (torch profiler, ``profile_memory``;
the profiler backend's own log lines are kept off the terminal, so only the tables are printed),
reported as "extra" (activations, graphs and outputs of the call) and "total" (extra + parameters +
input), the analogue of ``torch.cuda.max_memory_allocated`` which is used on CUDA.

Whole runs: DDPM on the toy MLP with constant and interval weights, where REG costs nothing outside the
interval.

Accuracy: on the exact mixture denoiser (float64), the guided predictions of every estimator against
vjp, relative to the guided prediction and to the REG correction itself.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sampler import CFG, REG, EpsModel, Interval, MixtureModel, VPSchedule, bind, ddpm, vp_prior  # noqa: E402
from toy import MLP, MLPConfig, SinusoidalEmbedding  # noqa: E402

PAPER = {"runtime": (1.21, 1.88), "memory": (1.21, 1.71)}
TARGETS = {"paper": (2.0, None), "vjp": (2.0, None), "jvp": (1.6, 1.3), "fd": (1.6, 1.3)}


# --- networks ---------------------------------------------------------------------------------------
class ResBlock(torch.nn.Module):
    def __init__(self, cin: int, cout: int, emb: int):
        super().__init__()
        self.n1, self.c1 = torch.nn.GroupNorm(8, cin), torch.nn.Conv2d(cin, cout, 3, padding=1)
        self.e = torch.nn.Linear(emb, cout)
        self.n2, self.c2 = torch.nn.GroupNorm(8, cout), torch.nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = torch.nn.Conv2d(cin, cout, 1) if cin != cout else torch.nn.Identity()

    def forward(self, x, e):
        h = self.c1(torch.nn.functional.silu(self.n1(x))) + self.e(e)[:, :, None, None]
        h = self.c2(torch.nn.functional.silu(self.n2(h)))
        return self.skip(x) + h


class SmallUNet(torch.nn.Module):
    """Two resolutions (32, 64 channels), one ResBlock per level and direction, skip connections."""

    def __init__(self, c: int = 3, ch: tuple = (32, 64), n_classes: int = 2, emb: int = 128):
        super().__init__()
        self.t_emb = SinusoidalEmbedding(emb, 1.0)
        self.t_mlp = torch.nn.Sequential(torch.nn.Linear(emb, emb), torch.nn.SiLU(), torch.nn.Linear(emb, emb))
        self.label = torch.nn.Embedding(n_classes, emb)
        self.inp = torch.nn.Conv2d(c, ch[0], 3, padding=1)
        self.d1, self.d2 = ResBlock(ch[0], ch[0], emb), ResBlock(ch[0], ch[1], emb)
        self.mid = ResBlock(ch[1], ch[1], emb)
        self.u2, self.u1 = ResBlock(2 * ch[1], ch[0], emb), ResBlock(2 * ch[0], ch[0], emb)
        self.out = torch.nn.Sequential(torch.nn.GroupNorm(8, ch[0]), torch.nn.SiLU(), torch.nn.Conv2d(ch[0], c, 3, padding=1))

    def forward(self, x, t, cond):
        lab = torch.full((x.shape[0],), 0 if cond is None else 1, dtype=torch.long, device=x.device)
        e = self.t_mlp(self.t_emb(t.to(x.dtype))) + self.label(lab)
        h0 = self.inp(x)
        h1 = self.d1(h0, e)  # [N, 32, H, W]
        h2 = self.d2(torch.nn.functional.avg_pool2d(h1, 2), e)  # [N, 64, H/2, W/2]
        m = self.mid(h2, e)
        u2 = self.u2(torch.cat([m, h2], 1), e)  # [N, 32, H/2, W/2]
        u1 = self.u1(torch.cat([torch.nn.functional.interpolate(u2, scale_factor=2.0), h1], 1), e)
        return self.out(u1)


@dataclass(frozen=True)
class Case:
    name: str
    cond: object  # denoiser
    uncond: object  # denoiser
    x: torch.Tensor
    sigma: float
    param_bytes: int
    methods: tuple


def make_cases(device: torch.device, quick: bool) -> list[Case]:
    torch.manual_seed(0)
    cases = []
    sched = VPSchedule.paper_1d()
    c_net, u_net = MLP(MLPConfig(dim=2)).to(device), MLP(MLPConfig(dim=2)).to(device)
    mlp_c, mlp_u = EpsModel(c_net, sched), EpsModel(u_net, sched)
    n = 250 if quick else 1000
    x = torch.randn(n, 2, device=device)
    pb = sum(p.numel() * p.element_size() for net in (c_net, u_net) for p in net.parameters())
    cases.append(Case("toy MLP (d=2, N=%d)" % n, bind(mlp_c, 0), bind(mlp_u, None), x, float(sched.sigmas[10]), pb,
                      ("cfg", "paper", "vjp", "diag", "jvp", "fd")))
    sched = VPSchedule.standard().respace(50)
    unet = SmallUNet().to(device)
    model = EpsModel(unet, sched)
    n = 4 if quick else 8
    x = torch.randn(n, 3, 32, 32, device=device)
    pb = sum(p.numel() * p.element_size() for p in unet.parameters())
    cases.append(Case("small UNet (3x32x32, N=%d)" % n, bind(model, 1), bind(model, None), x, float(sched.sigmas[25]), pb,
                      ("cfg", "paper", "vjp", "jvp", "fd")))
    return cases


def guided(case: Case, method: str):
    cfg = CFG(case.cond, case.uncond, 2.0)
    return cfg if method == "cfg" else REG(cfg, method)


# --- measurements ----------------------------------------------------------------------------------
def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(calls: dict[str, Callable[[], object]], repeats: int, device, warmup: bool = True) -> dict[str, float]:
    """Median seconds of each zero-argument call, interleaved: every repeat runs all of them, starting one
    further along each time, so load on a shared machine hits all alike. No gradients are recorded."""
    names = list(calls)
    times = {m: [] for m in names}
    with torch.no_grad():
        if warmup:
            for f in calls.values():
                f()
        for r in range(repeats):
            for m in names[r % len(names):] + names[: r % len(names)]:
                _sync(device)
                t0 = time.perf_counter()
                calls[m]()
                _sync(device)
                times[m].append(time.perf_counter() - t0)
    return {m: statistics.median(v) for m, v in times.items()}


def time_methods(case: Case, repeats: int, device) -> dict:
    return time_calls({m: functools.partial(guided(case, m), case.x, case.sigma) for m in case.methods}, repeats, device)


@contextmanager
def _quiet_fd2():
    """Send file descriptor 2 to /dev/null inside the block: the profiler's C++ backend writes its
    start/stop log lines there, below Python's ``sys.stderr`` (no environment variable turns them off)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def cpu_peak_extra(fn, x, sigma) -> int:
    """Peak of tensor bytes allocated during one call, from the profiler's memory events."""
    from torch.profiler import ProfilerActivity, profile

    with _quiet_fd2(), torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn(x, sigma)
        del out
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as fh:
            trace = json.load(fh)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    mem = sorted((e for e in events if e.get("name") == "[memory]" and e["args"].get("Device Type", 0) == 0),
                 key=lambda e: (e["ts"], e["args"].get("Ev Idx", 0)))
    live = peak = 0
    for e in mem:
        live += e["args"]["Bytes"]
        peak = max(peak, live)
    return peak


def memory_methods(case: Case, device) -> dict:
    out = {}
    for m in case.methods:
        fn = guided(case, m)
        with torch.no_grad():
            fn(case.x, case.sigma)  # warm-up
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            with torch.no_grad():
                fn(case.x, case.sigma)
            total = torch.cuda.max_memory_allocated(device)
            extra = total - torch.cuda.memory_allocated(device)
        else:
            extra = cpu_peak_extra(fn, case.x, case.sigma)
            total = extra + case.param_bytes + case.x.numel() * case.x.element_size()
        out[m] = (extra, total)
    return out


def time_sampler_runs(repeats: int, device, quick: bool) -> dict:
    """Whole DDPM runs on the toy MLP (paper_1d schedule, 20 steps): constant weight vs an interval covering
    half of the levels, CFG vs REG-vjp / REG-fd. Interleaved, median seconds per run."""
    torch.manual_seed(1)
    sched = VPSchedule.paper_1d()
    sig = sched.sampling_sigmas()
    c_net, u_net = MLP(MLPConfig(dim=2)).to(device), MLP(MLPConfig(dim=2)).to(device)
    cond, uncond = bind(EpsModel(c_net, sched), 0), bind(EpsModel(u_net, sched), None)
    mid = float(sig[len(sig) // 2])
    weights = {"const": 2.0, "interval": Interval(2.0, 0.0, mid)}  # guidance only on the lower half of the levels
    runs = {}
    for wname, w in weights.items():
        runs[f"cfg/{wname}"] = CFG(cond, uncond, w)
        for est in ("vjp", "fd"):
            runs[f"reg-{est}/{wname}"] = REG(CFG(cond, uncond, w), est)
    x = vp_prior(torch.randn(250 if quick else 1000, 2, device=device), float(sig[0]))
    return time_calls({k: ddpm_run(den, x, sig, device) for k, den in runs.items()}, max(3, repeats // 3), device,
                      warmup=False)


def ddpm_run(den, x: torch.Tensor, sig: torch.Tensor, device) -> Callable[[], torch.Tensor]:
    """One whole DDPM run of ``den`` from ``x`` as a zero-argument call (fixed noise seed)."""
    return lambda: ddpm(den, x, sig, generator=torch.Generator(device=device).manual_seed(0))


def analytic_accuracy() -> list[tuple]:
    """Guided predictions of each estimator against vjp on exact mixture denoisers (float64)."""
    sys_path_analytic = True
    try:
        from analytic import GaussianMixture
    except ImportError:  # the benchmark may run without the analytic package
        sys_path_analytic = False
    if not sys_path_analytic:
        return []
    rows = []
    for d in (2, 16):
        g = torch.Generator().manual_seed(d)
        mk = lambda k, spread: GaussianMixture(  # noqa: E731
            torch.rand(k, generator=g, dtype=torch.float64) + 0.5,
            spread * torch.randn(k, d, generator=g, dtype=torch.float64),
            0.3 * torch.eye(d, dtype=torch.float64).expand(k, d, d) + 0.05 * torch.ones(d, d, dtype=torch.float64))
        model = MixtureModel({0: mk(3, 1.5), None: mk(4, 2.0)})
        x = 1.5 * torch.randn(256, d, generator=g, dtype=torch.float64)
        for sigma in (0.1, 0.5, 2.0):
            cfg = CFG(bind(model, 0), bind(model, None), 2.0)
            d_c = bind(model, 0)(x, sigma)
            ref = REG(cfg, "vjp")(x, sigma)
            for est in ("paper", "diag", "jvp", "fd"):
                got = REG(cfg, est)(x, sigma)
                rel = ((got - ref).norm() / ref.norm()).item()
                rel_corr = ((got - ref).norm() / (ref - d_c).norm()).item()
                rows.append((d, sigma, est, rel, rel_corr))
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: stabler ratios on a shared box)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="smaller batches and 3 repeats")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    repeats = 3 if a.quick else a.repeats
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, repeats {repeats}")
    print(f"paper: REG/CFG runtime {PAPER['runtime'][0]}-{PAPER['runtime'][1]}x, memory {PAPER['memory'][0]}-{PAPER['memory'][1]}x")
    for case in make_cases(device, a.quick):
        times = time_methods(case, repeats, device)
        mem = memory_methods(case, device)
        print(f"\n{case.name}: CFG {times['cfg'] * 1e3:.2f} ms/call, peak extra {mem['cfg'][0] / 2**20:.2f} MiB, "
              f"total {mem['cfg'][1] / 2**20:.2f} MiB")
        print(f"  {'method':8s} {'time x':>8s} {'extra mem x':>12s} {'total mem x':>12s}  target (time, mem)")
        for m in case.methods:
            tr = times[m] / times["cfg"]
            er, tot = mem[m][0] / mem["cfg"][0], mem[m][1] / mem["cfg"][1]
            tgt = TARGETS.get(m)
            verdict = ""
            if tgt is not None:
                ok_t = tr <= tgt[0]
                ok_m = tgt[1] is None or tot <= tgt[1]
                verdict = f"<= {tgt[0]}x" + (f", <= {tgt[1]}x" if tgt[1] else "") + ("  met" if ok_t and ok_m else "  NOT met")
            print(f"  {m:8s} {tr:8.2f} {er:12.2f} {tot:12.2f}  {verdict}")
    runs = time_sampler_runs(repeats, device, a.quick)
    print("\nwhole DDPM runs, toy MLP, 20 levels (interval = guidance on the lower half of the levels only):")
    for k, v in runs.items():
        base = runs["cfg/" + k.split("/")[1]]
        print(f"  {k:18s} {v * 1e3:8.1f} ms  {v / base:5.2f}x its CFG  {v / runs['cfg/const']:5.2f}x constant CFG")
    rows = analytic_accuracy()
    if rows:
        print("\nexact mixture (float64), CFG w = 2: |REG_est - REG_vjp| / |REG_vjp|  (and / |REG_vjp - D_c|)")
        for d, sigma, est, rel, rel_corr in rows:
            flag = "" if est in ("paper", "diag") else ("  met (<= 1e-3)" if rel <= 1e-3 else "  NOT met")
            print(f"  d={d:2d} sigma={sigma:4.1f} {est:6s} {rel:9.2e}  ({rel_corr:9.2e}){flag}")


if __name__ == "__main__":
    main()
