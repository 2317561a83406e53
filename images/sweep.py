"""The digits experiment: guidance-weight sweeps for CFG variants and AutoG, without and with REG.

For each sampler (DDPM ancestral, Heun), seed, method, REG estimator and weight ``w`` (the library's
convention ``D_c + w (D_c - D_u)``), ``n_samples`` digits with balanced requested labels are drawn
through the shared sampler core and scored with ``images.metrics`` (FD-digits against the held-out
images, the Inception-style score, class accuracy). All methods of one seed start from the same noise
(and use the same DDPM noise), so differences between methods are paired.

Methods (weights are functions of sigma, ``sampler.weights``):

- ``vanilla``: ``Constant(w)``;
- ``linear``: ``LinearRamp`` from 0 at ``ramp_sigma_max`` (and above) to ``2 w`` at sigma = 0;
- ``cosine``: ``Cosine(2 w, s=1, ramp_sigma_max)``: 0 at ``ramp_sigma_max``, ``2 w`` at sigma = 0;
  (both ramps average ``w`` over ``sigma`` in ``[0, ramp_sigma_max]``);
- ``interval``: ``Interval(w, *interval)``, no guidance outside;
- ``autog``: ``AutoGuidance`` with the weak model, ``Constant(w)``.

Estimators: ``none`` (the guidance itself) or one of ``sampler.reg.ESTIMATORS`` through ``REG``.

``compute(...) -> SweepResult`` (rows); ``summarize`` (mean and standard deviation over seeds, best
weight per method); ``markdown_table``; ``plot_pareto`` (plotting never samples).
"""
from __future__ import annotations

import csv
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Sequence

import torch

from sampler import CFG, ESTIMATORS, REG, SAMPLERS, AutoGuidance, Constant, Cosine, Interval, LinearRamp, Unguided, bind
from sampler.schedules import VPSchedule, karras_sigmas
from sampler.samplers import sample, vp_prior

from .metrics import DigitsEvaluator, Scores

__all__ = [
    "METHODS",
    "SweepConfig",
    "QUICK",
    "SweepRow",
    "SweepResult",
    "Summary",
    "make_weight",
    "make_guidance",
    "levels",
    "compute",
    "summarize",
    "best_per_method",
    "markdown_table",
    "plot_pareto",
    "write_csv",
    "read_csv",
    "best_vs_best",
]

METHODS = ("vanilla", "linear", "cosine", "interval", "autog")


@dataclass(frozen=True)
class SweepConfig:
    methods: tuple = METHODS
    estimators: tuple = ("none", "paper", "vjp", "jvp")
    weights: tuple = (0.25, 0.5, 1.0, 2.0)
    samplers: tuple = ("ddpm", "heun")
    steps: tuple = (("ddpm", 16), ("heun", 10))  # levels per sampler (see levels())
    seeds: tuple = (0, 1, 2)
    n_samples: int = 200
    ramp_sigma_max: float = 10.0
    interval: tuple = (0.3, 3.0)

    def __post_init__(self):
        for name in ("methods", "estimators", "weights", "samplers", "seeds"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        object.__setattr__(self, "steps", tuple((str(k), int(v)) for k, v in dict(self.steps).items()))
        for m in self.methods:
            if m not in METHODS:
                raise ValueError(f"unknown method {m!r}; choose from {METHODS}")
        for e in self.estimators:
            if e != "none" and e not in ESTIMATORS:
                raise ValueError(f"unknown estimator {e!r}; choose 'none' or one of {ESTIMATORS}")
        for s in self.samplers:
            if s not in SAMPLERS:
                raise ValueError(f"unknown sampler {s!r}; choose from {SAMPLERS}")
            if s not in dict(self.steps):
                raise ValueError(f"no step count for sampler {s!r} in steps={self.steps}")
        for w in self.weights:
            if not (isinstance(w, (int, float)) and math.isfinite(w) and w > 0):
                raise ValueError(f"weights must be positive numbers (w = 0 is the unguided baseline, always run), got {w!r}")
        if isinstance(self.n_samples, bool) or not isinstance(self.n_samples, int) or self.n_samples < 10:
            raise ValueError(f"n_samples must be an integer >= 10, got {self.n_samples!r}")
        lo, hi = self.interval
        if not 0 <= lo < hi:
            raise ValueError(f"interval must be (lo, hi) with 0 <= lo < hi, got {self.interval}")
        if not self.ramp_sigma_max > 0:
            raise ValueError(f"ramp_sigma_max must be positive, got {self.ramp_sigma_max}")

    def n_runs(self) -> int:
        return len(self.samplers) * len(self.seeds) * (1 + len(self.methods) * len(self.estimators) * len(self.weights))


QUICK = SweepConfig(weights=(0.25, 1.0), steps=(("ddpm", 10), ("heun", 8)), seeds=(0, 1), n_samples=100)


class SweepRow(NamedTuple):
    sampler: str
    seed: int
    method: str  # one of METHODS, or "unguided" (w = 0)
    estimator: str  # "none" or a REG estimator
    w: float
    fd: float
    score: float
    accuracy: float
    seconds: float


class SweepResult(NamedTuple):
    config: SweepConfig
    rows: list  # [SweepRow]
    reference: Scores  # real training images scored like samples (the floor at this sample size); nan if not given
    seconds: float


def make_weight(method: str, w: float, config: SweepConfig):
    """The weight schedule of ``method`` at nominal weight ``w`` (see the module docstring)."""
    if method in ("vanilla", "autog"):
        return Constant(w)
    elif method == "linear":
        return LinearRamp(0.0, 2.0 * w, 0.0, config.ramp_sigma_max)
    elif method == "cosine":
        return Cosine(2.0 * w, 1.0, config.ramp_sigma_max)
    elif method == "interval":
        return Interval(w, *config.interval)
    else:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def make_guidance(method: str, estimator: str, w: float, model: Callable, weak: Optional[Callable], labels: Any,
                  config: SweepConfig):
    """Guidance (wrapped in ``REG`` unless ``estimator == "none"``) for ``method`` at weight ``w``."""
    cond = bind(model, labels)
    if method == "autog":
        if weak is None:
            raise ValueError("method 'autog' needs a weak model")
        g = AutoGuidance(cond, bind(weak, labels), make_weight(method, w, config))
    else:
        g = CFG(cond, bind(model, None), make_weight(method, w, config))
    return g if estimator == "none" else REG(g, estimator)


def levels(schedule: VPSchedule, sampler_name: str, n_steps: int) -> torch.Tensor:
    """Noise levels ``[K + 1]`` (decreasing, ending in 0) for a sampler, all levels of ``schedule`` so
    a discrete-time ``EpsModel`` accepts them. ``ddpm``/``ddim``/``euler``: the DDPM respacing (even in
    ``t``); ``heun``: the levels nearest (in log sigma) to EDM's grid (Karras et al. 2022, rho = 7)
    between the schedule's smallest and largest level, which the ODE solver needs (even-in-``t`` levels
    leave huge steps at high noise)."""
    if isinstance(n_steps, bool) or int(n_steps) != n_steps or not 1 <= n_steps <= schedule.T:
        raise ValueError(f"n_steps must be an integer in [1, {schedule.T}], got {n_steps!r}")
    if sampler_name == "heun":
        sig = schedule.sigmas  # [T + 1], increasing, sig[0] = 0
        target = karras_sigmas(int(n_steps), float(sig[1]), float(sig[-1]))[:-1]  # [n]
        idx = torch.argmin((sig[1:, None].log() - target[None].log()).abs(), dim=0) + 1  # [n]
        idx = torch.unique(idx).flip(0)
        return torch.cat([sig[idx], torch.zeros(1, dtype=sig.dtype)])
    elif sampler_name in SAMPLERS:
        return schedule.respace(int(n_steps)).sigmas.flip(0)
    else:
        raise ValueError(f"unknown sampler {sampler_name!r}; choose from {SAMPLERS}")


def compute(
    model: Callable,
    weak: Optional[Callable],
    evaluator: DigitsEvaluator,
    config: SweepConfig = SweepConfig(),
    *,
    image_shape: Sequence[int] = (1, 8, 8),
    num_classes: int = 10,
    device: str | torch.device = "cpu",
    reference_train: Optional[torch.Tensor] = None,
    progress: bool = True,
) -> SweepResult:
    """Run the sweep. ``model``: the contract model (an ``EpsModel``, whose ``schedule`` gives the
    levels, see :func:`levels`); ``weak``: the AutoG weak model on the same schedule.
    ``reference_train``: real (training) images, scored like a sample (the floor of FD at this size)."""
    if "autog" in config.methods and weak is None:
        raise ValueError("the sweep includes 'autog' but no weak model was given")
    if not hasattr(model, "schedule"):
        raise ValueError("model must carry its VP schedule (sampler.model.EpsModel)")
    device = torch.device(device)
    n = config.n_samples
    labels = torch.arange(n, device=device) % num_classes  # balanced requested classes [N]
    rows = []
    jobs = []
    for sampler_name in config.samplers:
        for seed in config.seeds:
            jobs.append((sampler_name, seed, "unguided", "none", 0.0))
            for method in config.methods:
                for est in config.estimators:
                    for w in config.weights:
                        jobs.append((sampler_name, seed, method, est, float(w)))
    it = jobs
    if progress:
        from tqdm.auto import tqdm  # noqa: PLC0415

        it = tqdm(jobs, desc="digits sweep")
    steps = dict(config.steps)
    t_start = time.perf_counter()
    for sampler_name, seed, method, est, w in it:
        sig = levels(model.schedule, sampler_name, steps[sampler_name])
        g = torch.Generator(device=device).manual_seed(int(seed))
        noise = torch.randn((n, *image_shape), generator=g, device=device)
        x_start = vp_prior(noise, float(sig[0]))
        den = Unguided(bind(model, labels)) if method == "unguided" else make_guidance(method, est, w, model, weak, labels, config)
        t0 = time.perf_counter()
        x = sample(sampler_name, den, x_start, sig, generator=g)
        dt = time.perf_counter() - t0
        s = evaluator.evaluate(x, labels)
        rows.append(SweepRow(sampler_name, int(seed), method, est, w, s.fd, s.score, s.accuracy, dt))
    ref = evaluator.evaluate(reference_train) if reference_train is not None else Scores(math.nan, math.nan, math.nan)
    return SweepResult(config, rows, ref, time.perf_counter() - t_start)


class Summary(NamedTuple):
    sampler: str
    method: str
    estimator: str
    w: float
    fd: float  # mean over seeds
    fd_std: float  # standard deviation over seeds
    d_fd: float  # mean paired difference to the same method's "none" at this w and seed (nan for "none")
    d_fd_std: float
    score: float
    score_std: float
    accuracy: float
    n_seeds: int


def _std(v: list) -> float:
    return statistics.stdev(v) if len(v) > 1 else math.nan


def summarize(result: SweepResult) -> list:
    """Mean and standard deviation over seeds per (sampler, method, estimator, w) -> [Summary]."""
    groups: dict = {}
    for r in result.rows:
        groups.setdefault((r.sampler, r.method, r.estimator, r.w), []).append(r)
    base = {(r.sampler, r.method, r.w, r.seed): r.fd for r in result.rows if r.estimator == "none"}
    out = []
    for (smp, m, e, w), rs in groups.items():
        fd = [r.fd for r in rs]
        diffs = [r.fd - base[(smp, m, w, r.seed)] for r in rs if e != "none" and (smp, m, w, r.seed) in base]
        out.append(Summary(smp, m, e, w, statistics.fmean(fd), _std(fd),
                           statistics.fmean(diffs) if diffs else math.nan, _std(diffs) if diffs else math.nan,
                           statistics.fmean(r.score for r in rs), _std([r.score for r in rs]),
                           statistics.fmean(r.accuracy for r in rs), len(rs)))
    return out


def best_per_method(summaries: list) -> list:
    """The weight with the lowest mean FD for every (sampler, method, estimator) -> [Summary]."""
    best: dict = {}
    for s in summaries:
        key = (s.sampler, s.method, s.estimator)
        if key not in best or s.fd < best[key].fd:
            best[key] = s
    return list(best.values())


def best_vs_best(result: SweepResult, against: str = "none") -> dict:
    """Paired per-seed FD differences between each (sampler, method, estimator)'s best weight and the
    best weight of the same method with estimator ``against`` (or, for ``against="unguided"``, the
    unguided runs): ``{(sampler, method, estimator): (mean, std)}`` over the seeds both have."""
    best = {(s.sampler, s.method, s.estimator): s.w for s in best_per_method(summarize(result))}
    fd = {(r.sampler, r.method, r.estimator, r.w, r.seed): r.fd for r in result.rows}
    out = {}
    for (smp, m, e), w in best.items():
        if m == "unguided":
            continue
        ref_key = (smp, "unguided", "none") if against == "unguided" else (smp, m, against)
        if ref_key not in best or ref_key == (smp, m, e):
            continue
        diffs = [fd[(smp, m, e, w, r.seed)] - fd[ref_key + (best[ref_key], r.seed)]
                 for r in result.rows if (smp, m, e, w) == (r.sampler, r.method, r.estimator, r.w)
                 and ref_key + (best[ref_key], r.seed) in fd]
        if diffs:
            out[(smp, m, e)] = (statistics.fmean(diffs), _std(diffs))
    return out


def read_csv(path: str | Path) -> list:
    """The rows written by :func:`write_csv` -> [SweepRow] (to re-tabulate or re-plot without sampling)."""
    with open(path, newline="") as fh:
        rd = csv.DictReader(fh)
        if rd.fieldnames != list(SweepRow._fields):
            raise ValueError(f"{str(path)!r} does not hold sweep rows (columns {rd.fieldnames})")
        return [SweepRow(r["sampler"], int(r["seed"]), r["method"], r["estimator"], float(r["w"]), float(r["fd"]),
                         float(r["score"]), float(r["accuracy"]), float(r["seconds"])) for r in rd]


def _fmt(v: float, std: float, digits: int = 2) -> str:
    return f"{v:.{digits}f}" if math.isnan(std) else f"{v:.{digits}f} ± {std:.{digits}f}"


def markdown_table(result: SweepResult) -> str:
    """Best FD-digits per method and estimator (mean ± std over seeds), per sampler, as Markdown."""
    cfg = result.config
    best = best_per_method(summarize(result))
    order = {m: i for i, m in enumerate(("unguided",) + METHODS)}
    est_order = {e: i for i, e in enumerate(("none",) + ESTIMATORS)}
    best.sort(key=lambda s: (s.sampler, order[s.method], est_order[s.estimator]))
    lines = [
        f"Digits, {cfg.n_samples} samples per run, seeds {list(cfg.seeds)}, weights {list(cfg.weights)}, "
        f"steps {dict(cfg.steps)}. FD-digits and the score are toy-scale counterparts of FID/IS, "
        "not comparable to ImageNet numbers. Mean ± standard deviation over seeds; "
        "ΔFD (same w) = paired difference to the same method without REG at the same weight and seeds; "
        "ΔFD (best) = paired difference between this row's best weight and the best weight without REG "
        "(for the no-REG rows: against the unguided runs).",
        "",
        f"Reference: training images vs held-out: FD {result.reference.fd:.2f}, score {result.reference.score:.2f}.",
        "",
        "| sampler | method | REG | best w | FD-digits ↓ | ΔFD (same w) | ΔFD (best) | score ↑ | accuracy ↑ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    bvb = best_vs_best(result)
    bvu = best_vs_best(result, "unguided")
    for s in best:
        d = "" if math.isnan(s.d_fd) else _fmt(s.d_fd, s.d_fd_std)
        b = bvb.get((s.sampler, s.method, s.estimator)) or bvu.get((s.sampler, s.method, s.estimator))
        b = "" if b is None else _fmt(*b)
        lines.append(f"| {s.sampler} | {s.method} | {s.estimator} | {s.w:g} | {_fmt(s.fd, s.fd_std)} | {d} | {b} | "
                     f"{_fmt(s.score, s.score_std)} | {s.accuracy:.3f} |")
    return "\n".join(lines) + "\n"


def write_csv(result: SweepResult, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(SweepRow._fields)
        wr.writerows(result.rows)
    return path


def plot_pareto(result: SweepResult, path: str | Path) -> Path:
    """FD-digits against the score (as the paper plots FID against IS), one panel per sampler and
    method, one line per estimator across the weights (seed means, error bars = std over seeds)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import seaborn as sns  # noqa: PLC0415

    cfg = result.config
    summ = summarize(result)
    base = {s.sampler: s for s in summ if s.method == "unguided"}
    colors = dict(zip(("none",) + ESTIMATORS, sns.color_palette("deep", 1 + len(ESTIMATORS))))
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig, axes = plt.subplots(len(cfg.samplers), len(cfg.methods), figsize=(3.0 * len(cfg.methods), 2.8 * len(cfg.samplers)),
                                 squeeze=False, sharey="row")
        for i, smp in enumerate(cfg.samplers):
            for j, m in enumerate(cfg.methods):
                ax = axes[i, j]
                for e in cfg.estimators:
                    pts = sorted((s for s in summ if s.sampler == smp and s.method == m and s.estimator == e), key=lambda s: s.w)
                    if not pts:
                        continue
                    ax.errorbar([p.score for p in pts], [p.fd for p in pts],
                                yerr=[0 if math.isnan(p.fd_std) else p.fd_std for p in pts],
                                marker="o", ms=3, lw=1.2, capsize=2, color=colors[e], label="CFG/AutoG" if e == "none" else f"REG {e}")
                    for p in pts:
                        ax.annotate(f"{p.w:g}", (p.score, p.fd), fontsize=6, xytext=(2, 2), textcoords="offset points")
                if smp in base:
                    ax.plot([base[smp].score], [base[smp].fd], "k*", ms=7, label="unguided")
                ax.set_title(f"{m} ({smp}, {dict(cfg.steps)[smp]} steps)", fontsize=8)
                ax.set_xlabel("digits score (IS-style) →", fontsize=7)
                if j == 0:
                    ax.set_ylabel("FD-digits ↓", fontsize=7)
        axes[0, -1].legend(fontsize=6, loc="best")
        fig.suptitle("Digits: FD against score over the guidance weight (toy-scale FID/IS; labels = w)", fontsize=9)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=130)
        plt.close(fig)
    return path
