"""The digits experiment: guidance-weight sweeps for CFG variants and AutoG, without and with REG.

For each sampler (DDPM ancestral, Heun), seed, method, REG estimator and weight ``w`` (the library's
convention ``D_c + w (D_c - D_u)``), ``n_samples`` digits with balanced requested labels are drawn
through the shared sampler core and scored with ``images.metrics`` (FD-digits against the held-out
images, the Inception-style score, class accuracy). All methods of one seed start from the same noise
(and use the same DDPM noise), so differences between methods are paired.

Methods are :class:`sampler.method.Method` spellings without ``w`` and ``reg`` (the sweep sets both): the
default :data:`METHODS` are constant CFG (``cfg``), the linear and cosine ramps from 0 at sigma = 10 (and above)
to ``2 w`` at sigma = 0 (``cfg,weighting=linear,lo=0,hi=10``, ``cfg,weighting=cosine,hi=10``; both average ``w``
over sigma in [0, 10]), CFG on the interval sigma in [0.3, 3] only (``cfg,weighting=interval,lo=0.3,hi=3``) and
AutoG with the weak network (``autog``). Every method runs alone and with each REG estimator of ``regs``.

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
from typing import Callable, NamedTuple, Optional, Sequence

import torch
from tqdm.auto import tqdm

from sampler import ESTIMATORS, SAMPLERS, bind
from sampler.levels import sampling_levels
from sampler.method import Method
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
    "SWEEP_RULES",
    "compute",
    "reference_images",
    "run_shipped",
]

METHODS = ("cfg", "cfg,weighting=linear,lo=0,hi=10", "cfg,weighting=cosine,hi=10", "cfg,weighting=interval,lo=0.3,hi=3",
           "autog")
SWEEP_RULES = ("cfg", "autog", "apg", "apg_momentum")  # the rules built from the network alone (and the weak one)


@dataclass(frozen=True)
class SweepConfig:
    """methods: :class:`sampler.method.Method` spellings without ``w`` and ``reg`` (kept in their canonical
    spelling, ``str(Method.parse(m))``); regs: the REG estimators each method also runs with (every method
    always runs without REG too); weights: the ``w`` of every method (the unguided run, ``w = 0``, always runs)."""

    methods: tuple = METHODS
    regs: tuple = ("paper", "vjp", "jvp")
    weights: tuple = (0.25, 0.5, 1.0, 2.0)
    samplers: tuple = ("ddpm", "heun")
    steps: tuple = (("ddpm", 16), ("heun", 10))  # levels per sampler (see sampler.sampling_levels)
    seeds: tuple = (0, 1, 2)
    n_samples: int = 200

    def __post_init__(self):
        for name in ("methods", "regs", "weights", "samplers", "seeds"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
            if not getattr(self, name) and name != "regs":
                raise ValueError(f"{name} must not be empty")
        object.__setattr__(self, "steps", tuple((str(k), int(v)) for k, v in dict(self.steps).items()))
        methods = []
        for text in self.methods:
            m = Method.parse(text)
            if m.rule not in SWEEP_RULES:
                raise ValueError(f"methods: rule {m.rule!r} of {text!r} is not swept here; choose one of {SWEEP_RULES}")
            if m.w != 1.0 or m.reg:
                raise ValueError(f"methods: {text!r} must not set w or reg (the sweep sets them from weights and regs)")
            methods.append(str(m))
        if len(set(methods)) != len(methods):
            raise ValueError(f"methods must be distinct, got {self.methods}")
        object.__setattr__(self, "methods", tuple(methods))
        for e in self.regs:
            if e not in ESTIMATORS:
                raise ValueError(f"unknown REG estimator {e!r} in regs; choose from {ESTIMATORS}")
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

    def runs(self) -> list[Method]:
        """The methods of one sampler and seed, in sweep order: unguided (``w = 0``), then every method at
        every weight without REG and with each of :attr:`regs`."""
        out = [Method("unguided", w=0.0)]
        for text in self.methods:
            for reg in ("",) + self.regs:
                out.extend(Method.parse(text).replace(w=float(w), reg=reg) for w in self.weights)
        return out

    def n_runs(self) -> int:
        return len(self.samplers) * len(self.seeds) * (1 + len(self.methods) * (1 + len(self.regs)) * len(self.weights))


QUICK = SweepConfig(weights=(0.25, 1.0), steps=(("ddpm", 10), ("heun", 8)), seeds=(0, 1), n_samples=100)


class SweepRow(NamedTuple):
    sampler: str
    seed: int
    method: str  # a spelling of SweepConfig.methods, or "unguided" (w = 0)
    reg: str  # "" (no REG) or a REG estimator: the row's method is Method.parse(method).replace(w=w, reg=reg)
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
    if weak is None and any(Method.parse(m).rule == "autog" for m in config.methods):
        raise ValueError("the sweep includes 'autog' but no weak model was given")
    if not hasattr(model, "schedule"):
        raise ValueError("model must carry its VP schedule (sampler.model.EpsModel)")
    device = torch.device(device)
    n = config.n_samples
    labels = torch.arange(n, device=device) % num_classes  # balanced requested classes [N]
    cond, uncond = bind(model, labels), bind(model, None)
    weak_cond = None if weak is None else bind(weak, labels)
    rows = []
    jobs = [(s, seed, m) for s in config.samplers for seed in config.seeds for m in config.runs()]
    steps = dict(config.steps)
    t_start = time.perf_counter()
    for sampler_name, seed, method in tqdm(jobs, desc="digits sweep", disable=not progress):
        sig = sampling_levels(model.schedule, sampler_name, steps[sampler_name])
        g = torch.Generator(device=device).manual_seed(int(seed))
        noise = torch.randn((n, *image_shape), generator=g, device=device)
        x_start = vp_prior(noise, float(sig[0]))
        den = method.guide(cond, uncond, sig, weak=weak_cond)
        t0 = time.perf_counter()
        x = sample(sampler_name, den, x_start, sig, generator=g)
        dt = time.perf_counter() - t0
        s = evaluator.evaluate(x, labels)
        rows.append(SweepRow(sampler_name, int(seed), str(method.replace(w=1.0, reg="")), method.reg, method.w,
                             s.fd, s.score, s.accuracy, dt))
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
