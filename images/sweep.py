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

This module runs the sweep: ``compute(...) -> SweepResult`` (one ``SweepRow`` per sampling run) and
``run_shipped`` (the same with the shipped UNets, classifier and reference images). Statistics over seeds,
the Markdown table and the CSV files are :mod:`images.sweep_stats`; the Pareto figure is
:mod:`figures.digits_pareto` (it reads results, it never samples).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional, Sequence

import torch
from tqdm.auto import tqdm

from sampler import CFG, ESTIMATORS, REG, SAMPLERS, AutoGuidance, Constant, Cosine, Interval, LinearRamp, Unguided, bind
from sampler.levels import sampling_levels
from sampler.samplers import sample, vp_prior

from .classifier import DEFAULT_CLASSIFIER, load_classifier
from .data import DigitsSplit, load_digits_split
from .metrics import DigitsEvaluator, Scores
from .train import DEFAULT_CHECKPOINT, WEAK_CHECKPOINT, load_model

__all__ = [
    "METHODS",
    "SweepConfig",
    "QUICK",
    "SweepRow",
    "SweepResult",
    "Summary",
    "make_weight",
    "make_guidance",
    "compute",
    "reference_images",
    "run_shipped",
]

METHODS = ("vanilla", "linear", "cosine", "interval", "autog")


@dataclass(frozen=True)
class SweepConfig:
    methods: tuple = METHODS
    estimators: tuple = ("none", "paper", "vjp", "jvp")
    weights: tuple = (0.25, 0.5, 1.0, 2.0)
    samplers: tuple = ("ddpm", "heun")
    steps: tuple = (("ddpm", 16), ("heun", 10))  # levels per sampler (see sampler.sampling_levels)
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
    levels, see :func:`sampler.sampling_levels`); ``weak``: the AutoG weak model on the same schedule.
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
    steps = dict(config.steps)
    t_start = time.perf_counter()
    for sampler_name, seed, method, est, w in tqdm(jobs, desc="digits sweep", disable=not progress):
        sig = sampling_levels(model.schedule, sampler_name, steps[sampler_name])
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


def reference_images(data: DigitsSplit, n: int, seed: int = 1234) -> torch.Tensor:
    """``n`` real training digits (a seeded draw without replacement), scored like a sample: the floor of
    FD-digits at this sample size. [n, 1, 8, 8]"""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= data.train_x.shape[0]:
        raise ValueError(f"n must be an integer in [1, {data.train_x.shape[0]}], got {n!r}")
    g = torch.Generator().manual_seed(int(seed))
    return data.train_x[torch.randperm(data.train_x.shape[0], generator=g)[:n]]


def run_shipped(
    config: SweepConfig = SweepConfig(),
    *,
    device: str | torch.device = "cpu",
    checkpoint: str | os.PathLike = DEFAULT_CHECKPOINT,
    weak: str | os.PathLike = WEAK_CHECKPOINT,
    classifier: str | os.PathLike = DEFAULT_CLASSIFIER,
    progress: bool = True,
) -> SweepResult:
    """:func:`compute` with the shipped digits UNet, its weak model and the classifier (or the given
    checkpoints), scored against the held-out digits, with :func:`reference_images` as the floor."""
    data = load_digits_split()
    evaluator = DigitsEvaluator(load_classifier(classifier, device), data.test_x)
    ref_train = reference_images(data, config.n_samples)
    model, weak_model = load_model(checkpoint, device), load_model(weak, device)
    return compute(model, weak_model, evaluator, config, device=device, reference_train=ref_train, progress=progress)
