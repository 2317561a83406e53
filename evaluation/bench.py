"""The guidance bench (issue 22): an exact report card for any guidance rule.

``python -m evaluation.bench [--rule FILE.py:NAME]... [--quick] [--out DIR] [--workers N] [--scheduler ADDR]``
scores every rule of :data:`REGISTRY` and every ``--rule`` on the versioned settings of :data:`STANDARD`
(:data:`QUICK` with ``--quick``) and writes ``bench.json``, ``bench.md`` (the leaderboard, generated from
``bench.json``) and ``bench.png`` to ``DIR``. ``docs/bench.md`` is the user's guide.

The user's rule contract. A rule is a plain function (or an instance of a class)::

    def my_cfg(eps_c, eps_u, x, sigma, w):   # tensors [N, d] (float64), sigma a float, w a float
        return eps_c + w * (eps_c - eps_u)   # the guided eps [N, d]

in eps units at the contract's noise level ``sigma`` (VE coordinates: ``x = x0 + sigma * noise``, the sampler
contract of :mod:`sampler`; on flow levels ``sigma = t / (1 - t)``), with the weight in the library's convention
(``w = 0`` is the conditional model; diffusers' scale is ``1 + w``). Attributes:

- ``rule.space = "x0"``: the rule receives and returns denoised predictions (``x0_c, x0_u -> x0``);
  ``rule.space = "velocity"``: path velocities (``v_c, v_u -> v``) of the levels' path (the linear path on flow
  levels, :data:`evaluation.spec.VP_GEOMETRY` on VP levels); default ``"eps"``.
- ``rule.reset()``: a stateful rule (momentum); it is called before every sampling run (each batch of
  trajectories). A class named by ``FILE.py:NAME`` is instantiated with no arguments, once per cell.
- ``rule.coordinatewise = True``: the promise that output coordinate ``i`` depends only on coordinate ``i`` of
  the inputs, the same way for every ``i``, and that the rule returns ``eps_c`` where ``eps_c == eps_u``. The
  any-d reducible family is then scored exactly along its line (the reduction carries the rule); otherwise by
  Monte Carlo with standard errors (rows ``"exact": false``).
- ``rule.min_dim = k``: the rule is defined only on samples of at least ``k`` coordinates (a standard deviation or
  a projection over one sample's coordinates); on laws of fewer dimensions its rows are ``undefined``.

:class:`RuleGuidance` adapts such a rule into a guidance object of the sampler contract (``D``-form:
``D = x - sigma * eps``). A rule file is loaded by path (``importlib.util.spec_from_file_location``) in every
worker, and its cells are cached under a key that includes the file's sha256, so an edited rule recomputes.

Routes. Each cell (one rule, one setting, one weight) is scored

- ``exact``: the output law by :func:`evaluation.density.output_density` (no Monte Carlo) on the 1-D and 2-D
  presets, and on the reducible family along its line when the reduction carries the rule (equal variances;
  built-in rules that are functions of the predictions coordinate by coordinate, REG's rotation-equivariant
  estimators and the optimum, or a user rule marked ``coordinatewise``);
- ``monte_carlo``: on the reducible family otherwise: ``mc_samples`` trajectories of the sampler in ``d``
  dimensions from ``N(0, I)`` (seeded), projected on the line; errors are standard errors from disjoint blocks;
  TV and the KLs of a sample set are not estimated (nan: a histogram's are biased), W1 and the distortions are;
- ``undefined``: a stateful rule under DDPM on a preset, whose law is not a push-forward of states, or a law of
  fewer dimensions than the rule's ``min_dim`` (nan).

Metrics (each with ``<metric>_error``; for exact rows from the error estimates of ``output_density`` and
``tilted_target``, first order): ``sw1`` (W1 in 1-D and along the reducible line, sliced W1 in 2-D,
:func:`evaluation.flows.sliced_w1`), ``tv``, ``kl_target_out``, ``kl_out_target`` against the tilted target
``p(x|y) R_0 / Z`` of the CFG reward at ``w`` (:func:`evaluation.distances.tilted_target`); ``overshoot`` (the
output mean minus the target's, along the unit vector from the conditional mean to the target's mean:
positive past the target), ``var_ratio`` (trace of the output covariance over the target's), ``mode_tv``
(half the summed difference of the mass per mode, a mode being a component of ``p(x|y)`` and its mass the mean
responsibility; the masses themselves in ``mode_mass`` / ``mode_mass_target``); ``field`` (D units): the mean
over the levels of ``E_{x ~ p_s(x|y)} |D_rule(x, s) - m_R(x, s)|`` (``field_levels`` per level, Gauss-Hermite
on the conditional marginal as :mod:`evaluation.flows`, error the change from half the nodes; Monte Carlo on
the reducible route; nan for stateful rules, whose delta is not a function of the state).

Score (:func:`leaderboard`): the median over settings of ``sw1(rule) / sw1(optimum)`` at the same law, levels and
weight, over the settings where the optimum is computed; 1 is the exact optimum (from the tilted chain's start,
so its distance is the sampler's discretisation error alone), lower is better. ``score_error``: the first-order
error of the median setting's ratio.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import json
import math
import os
import statistics
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from analytic import GaussianMixture
from analytic.reducible import ReducibleMixture
from analytic.reducible_golden import optimal_guidance_reducible
from sampler.paths import denoised_from_velocity, velocity_from_denoised
from sampler.samplers import sample
from sampler.schedules import sigma_to_abar

from .density import output_density
from .distances import distances_between, tilted_target, wasserstein1
from .flows import conditional_nodes, sliced_w1, sliced_w1_error
from .spec import Law, Levels, Method
from .sweep import SchedulerUnreachable, cell_kind, run_cells

__all__ = ["BENCH_VERSION", "REGISTRY", "PROVIDERS", "Provider", "BenchConfig", "STANDARD", "QUICK", "METRICS",
           "RuleGuidance", "load_rule", "rule_source", "BenchCell", "BenchResult", "bench_cell", "monte_carlo",
           "MonteCarlo", "check_rules", "line_law", "cells", "run", "leaderboard", "markdown", "plot", "main"]

BENCH_VERSION = 1  # bump when the settings, the metrics or the score change: rows of two versions do not compare
F64 = torch.float64

# --- the registry: one line per rule ------------------------------------------------------------------------
# name -> source: an evaluation.spec Method spelling without w (the bench's weights give it), a user rule
# "FILE.py:NAME", or "PROVIDER:NAME" of an optional provider of PROVIDERS (e.g. "diffusers:ClassifierFreeGuidance")
REGISTRY: dict[str, str] = {
    "optimal": "optimal",
    "unguided": "unguided",
    "cfg": "cfg",
    "cfg_interval": "cfg,weighting=interval,lo=0.28,hi=5.42",  # Kynkaanniemi et al. 2024's EDM2 interval
    "cfg_linear": "cfg,weighting=linear",
    "reg_vjp": "cfg,reg=vjp",
    "reg_paper": "cfg,reg=paper",
    "cfg_zero_star": "cfg_zero_star",
    "cfg_zero_star_init": "cfg_zero_star_init",
    "apg": "apg",
    "apg_momentum": "apg_momentum",
    "practice:GuidanceRescale": "practice:GuidanceRescale",  # evaluation.bench_providers: the rules' settings
    "practice:CFGNorm": "practice:CFGNorm",
    "practice:DynamicThresholding": "practice:DynamicThresholding",
    "practice:TCFG": "practice:TCFG",
    "practice:MamboG": "practice:MamboG",
    "diffusers:ClassifierFreeGuidance": "diffusers:ClassifierFreeGuidance",
    "diffusers:AdaptiveProjectedGuidance": "diffusers:AdaptiveProjectedGuidance",
    "diffusers:ClassifierFreeZeroStarGuidance": "diffusers:ClassifierFreeZeroStarGuidance",
    "diffusers:TangentialClassifierFreeGuidance": "diffusers:TangentialClassifierFreeGuidance",
    "diffusers:MagnitudeAwareGuidance": "diffusers:MagnitudeAwareGuidance",
}


class Provider(NamedTuple):
    """An optional source of rules: ``module.<function>(name)`` returns a rule of the user contract; ``requires`` is
    the distribution it needs (its absence skips the provider's entries with a message)."""

    module: str
    requires: str
    function: str = "rule"


PROVIDERS: dict[str, Provider] = {
    "diffusers": Provider("evaluation.bench_providers", "diffusers", "diffusers_rule"),
    "practice": Provider("evaluation.bench_providers", "torch", "practice_rule"),
}


# --- the settings ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchConfig:
    """The settings: every law x levels x weight. Grids are ``(1-D, 2-D)`` pairs: half-width and nodes per axis of
    the output grid, Gauss-Hermite nodes per dimension and component for the field errors (even: the error is the
    change from half of them). ``mc_samples`` trajectories (seed ``mc_seed``) on the Monte Carlo route. The
    optimum is run in 2-D only with ``optimal_2d`` (it costs minutes per cell)."""

    laws: tuple[str, ...]
    levels: tuple[str, ...]
    weights: tuple[float, ...]
    half_width: tuple[float, float] = (8.0, 6.0)
    points: tuple[int, int] = (2001, 61)
    field_nodes: tuple[int, int] = (32, 12)
    mc_samples: int = 8192
    mc_seed: int = 0
    optimal_2d: bool = True

    def __post_init__(self):
        for name, parse in (("laws", Law.parse), ("levels", Levels.parse)):
            values = tuple(getattr(self, name))
            if not values or len(set(values)) != len(values):
                raise ValueError(f"{name} must be distinct and non-empty, got {values}")
            for v in values:
                parse(v)  # ValueError naming the forms
            object.__setattr__(self, name, values)
        for law in self.laws:
            d = Law.parse(law).dim
            if d > 2 and Law.parse(law).kind != "reducible":
                raise ValueError(f"laws beyond 2-D must be of the reducible family, got {law!r} (d = {d})")
        ws = tuple(float(w) for w in self.weights)
        if not ws or any(not math.isfinite(w) or w < 0 for w in ws) or len(set(ws)) != len(ws):
            raise ValueError(f"weights must be distinct finite numbers >= 0, got {self.weights}")
        object.__setattr__(self, "weights", ws)
        for name in ("points", "field_nodes"):
            pair = tuple(getattr(self, name))
            if len(pair) != 2 or any(isinstance(v, bool) or int(v) != v or v < 4 for v in pair):
                raise ValueError(f"{name} is a (1-D, 2-D) pair of integers >= 4, got {pair}")
            if name == "field_nodes" and any(v % 2 for v in pair):
                raise ValueError(f"field_nodes must be even (the error compares with half), got {pair}")
            object.__setattr__(self, name, tuple(int(v) for v in pair))
        hw = tuple(float(v) for v in self.half_width)
        if len(hw) != 2 or any(not v > 0 for v in hw):
            raise ValueError(f"half_width is a (1-D, 2-D) pair of numbers > 0, got {self.half_width}")
        object.__setattr__(self, "half_width", hw)
        if isinstance(self.mc_samples, bool) or int(self.mc_samples) != self.mc_samples or self.mc_samples < 64:
            raise ValueError(f"mc_samples must be an integer >= 64, got {self.mc_samples!r}")


_REDUCIBLE = "reducible:64:1.5:1.5:1:7"  # d = 64, equal variances (the line carries CFG-type rules), random line
STANDARD = BenchConfig(laws=("paper_1d", "correlated_2d", "classes_2d", _REDUCIBLE),
                       levels=tuple(f"{s}:{n}{x}" for s, x in (("standard", "/ddpm"), ("standard", "/ddim"), ("flow", ""))
                                    for n in (10, 20, 50)),
                       weights=(1.0, 2.0, 4.0))
QUICK = BenchConfig(laws=("paper_1d", "correlated_2d", _REDUCIBLE), levels=("standard:10/ddpm", "flow:10"),
                    weights=(1.0, 4.0), points=(1001, 41), field_nodes=(16, 6), mc_samples=4096, optimal_2d=False)

METRICS = ("sw1", "tv", "kl_target_out", "kl_out_target", "overshoot", "var_ratio", "mode_tv", "field")


# --- the user's rule contract ------------------------------------------------------------------------------
SPACES = ("eps", "x0", "velocity")


class RuleGuidance:
    """A rule of the user contract (module docstring) as a guidance object of the sampler contract, over the
    conditional and unconditional denoisers ``cond``/``uncond`` at weight ``w``; ``path`` gives the velocity of
    ``space = "velocity"`` rules. ``reset()`` forwards to the rule's (a new sampling run)."""

    def __init__(self, rule, cond, uncond, w: float, path):
        if not callable(rule):
            raise ValueError(f"a rule must be callable as rule(eps_c, eps_u, x, sigma, w), got {rule!r}")
        space = getattr(rule, "space", "eps")
        if space not in SPACES:
            raise ValueError(f"rule.space must be one of {SPACES}, got {space!r}")
        self.rule, self.cond, self.uncond, self.w, self.path, self.space = rule, cond, uncond, float(w), path, space

    def active(self, sigma: float) -> bool:
        return True

    def reset(self) -> None:
        reset = getattr(self.rule, "reset", None)
        if reset is not None:
            reset()

    def delta(self, x: torch.Tensor, sigma: float, d_cond: torch.Tensor) -> torch.Tensor:
        return self(x, sigma) - d_cond

    def _call(self, a, b, x, s):
        out = self.rule(a, b, x.clone(), s, self.w)  # a copy: a rule writing into x must not move the sampler's state
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            raise ValueError(f"rule {getattr(self.rule, '__name__', self.rule)!r} must return a tensor of the input's "
                             f"shape {tuple(x.shape)}, got {type(out).__name__} "
                             f"{tuple(out.shape) if isinstance(out, torch.Tensor) else ''}")
        return out.to(x.dtype)

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        s = float(sigma)
        d_c, d_u = self.cond(x, s), self.uncond(x, s)
        if self.space == "eps":
            return x - s * self._call((x - d_c) / s, (x - d_u) / s, x, s)
        if self.space == "x0":
            return self._call(d_c, d_u, x, s)
        v = self._call(velocity_from_denoised(self.path, x, s, d_c), velocity_from_denoised(self.path, x, s, d_u), x, s)
        return denoised_from_velocity(self.path, x, s, v)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _split_file_rule(source: str) -> tuple[Path, str] | None:
    """``(path, NAME)`` when ``source`` is ``FILE.py:NAME``, else None."""
    head, sep, name = source.rpartition(":")
    return (Path(head), name) if sep and head.endswith(".py") else None


def _file_rule(path: Path, name: str, digest: str | None = None):
    if not path.is_file():
        raise ValueError(f"rule file {str(path)!r} does not exist (a rule is FILE.py:NAME)")
    if not name.isidentifier():
        raise ValueError(f"rule NAME must be a Python name in {str(path)!r}:NAME, got {name!r}")
    found = _digest(path)
    if digest is not None and found != digest:
        raise ValueError(f"rule file {str(path)!r} changed during the run (sha256 {found[:12]}, expected {digest[:12]})")
    spec = importlib.util.spec_from_file_location(f"bench_rule_{found[:16]}", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot load {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as err:  # noqa: BLE001 - any failure of the user's file (a sys.exit too)
        raise ValueError(f"rule file {str(path)!r} failed to import: {type(err).__name__}: {err}") from err
    if not hasattr(module, name):
        names = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                       and getattr(v, "__module__", None) == module.__name__)
        raise ValueError(f"rule file {str(path)!r} has no {name!r}; its callables: {names}")
    return getattr(module, name)


def _is_method(source: str) -> bool:
    """Whether a (checked) source is an evaluation.spec Method spelling, not a user file or a provider's rule."""
    return _split_file_rule(source) is None and source.partition(":")[0] not in PROVIDERS


def _provider_rule(provider: str, name: str):
    p = PROVIDERS[provider]
    if importlib.util.find_spec(p.requires) is None:
        raise ModuleNotFoundError(f"{provider}:{name} needs {p.requires!r}, which is not installed")
    return getattr(importlib.import_module(p.module), p.function)(name)


def rule_source(source: str) -> tuple[str, str]:
    """``(source, digest)`` of a registry or ``--rule`` source, checked: a user file made absolute with its sha256
    (``ValueError`` for a missing file, a missing NAME, a NAME that is not callable or a rule that fails a probe
    call), a provider's with its module's digest and the required distribution's version
    (``ModuleNotFoundError`` when that is absent), a Method spelling with ``""`` (its code is in the code version)."""
    if not isinstance(source, str) or not source:
        raise ValueError(f"a rule source is a Method spelling, FILE.py:NAME or PROVIDER:NAME, got {source!r}")
    split = _split_file_rule(source)
    if split is not None:
        path = split[0].expanduser().resolve()
        rule = load_rule(f"{path}:{split[1]}")
        _probe(rule, source)
        return f"{path}:{split[1]}", _digest(path)
    head, sep, name = source.partition(":")
    if sep and head in PROVIDERS:
        from importlib.metadata import version

        rule = _provider_rule(head, name)
        _probe(rule, source)
        module = importlib.util.find_spec(PROVIDERS[head].module)
        text = Path(module.origin).read_bytes() if module and module.origin else b""
        return source, hashlib.sha256(text + version(PROVIDERS[head].requires).encode()).hexdigest()
    if source.endswith(".py") or ".py:" in source:
        raise ValueError(f"a user rule is FILE.py:NAME (a file and the rule's name in it), got {source!r}")
    if sep and head.isidentifier():
        raise ValueError(f"unknown rule provider {head!r} in {source!r}; registered providers: {sorted(PROVIDERS)} "
                         "(evaluation.bench.PROVIDERS)")
    m = Method.parse(source)  # ValueError naming the forms
    if m.w != 1.0:
        raise ValueError(f"registry methods are spelled without w (the bench's weights give it), got {source!r}")
    return str(m), ""


def load_rule(source: str, digest: str | None = None):
    """The rule object of a user file (``FILE.py:NAME``) or a provider (``PROVIDER:NAME``); a class is instantiated
    with no arguments (a fresh object per call). ``digest``: the file's expected sha256 (``ValueError`` if the file
    changed since :func:`rule_source` read it)."""
    split = _split_file_rule(source)
    if split is not None:
        obj = _file_rule(split[0], split[1], digest or None)
    else:
        head, sep, name = source.partition(":")
        if not (sep and head in PROVIDERS):
            raise ValueError(f"not a user or provider rule: {source!r}")
        obj = _provider_rule(head, name)
    if inspect.isclass(obj):
        try:
            obj = obj()
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"rule class {source!r} must be constructible with no arguments: {err}") from err
    if not callable(obj):
        raise ValueError(f"rule {source!r} is a {type(obj).__name__}, not callable as rule(eps_c, eps_u, x, sigma, w)")
    return obj


def _probe(rule, source: str) -> None:
    """Call the rule once on small tensors, so a broken rule fails before any cell runs."""
    k = getattr(rule, "min_dim", 1)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"rule {source!r}: rule.min_dim must be an integer >= 1, got {k!r}")
    _coordinatewise(rule, source)
    x = torch.zeros(2, k, dtype=F64)
    g = RuleGuidance(rule, lambda x, s: 0.5 * x, lambda x, s: 0.25 * x, 1.0, Levels.parse("flow:4").schedule.path)
    try:
        g.reset()
        g(x + 1.0, 1.0)
        g.reset()
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"rule {source!r} failed on a probe call rule(eps_c, eps_u, x, sigma=1.0, w=1.0) on tensors "
                         f"{list(x.shape)}: {type(err).__name__}: {err}") from err


# --- one cell ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchCell:
    """A sweep cell: rule ``source`` (``digest`` its file's sha256, part of the key) on ``law`` under ``levels`` at
    weight ``w``, on the output grid ``[-half_width, half_width]^d`` with ``points`` nodes per axis, ``field_nodes``
    Gauss-Hermite nodes, and ``mc_samples`` trajectories (seed ``mc_seed``) on the Monte Carlo route."""

    source: str
    digest: str
    law: Law
    levels: Levels
    w: float
    half_width: float
    points: int
    field_nodes: int
    mc_samples: int
    mc_seed: int

    @property
    def cost(self) -> float:
        optimal = self.source == "optimal"
        return self.levels.steps * self.points ** min(self.law.dim, 2) * (20.0 if optimal else 1.0)


class BenchResult(NamedTuple):
    route: str  # "exact", "monte_carlo" or "undefined"
    values: tuple  # one float per METRICS
    errors: tuple  # one float per METRICS
    mode_mass: tuple
    mode_mass_target: tuple
    field_levels: tuple  # per level, D units
    lost: float


def _coordinatewise(rule, source: str) -> bool:
    """The rule's ``coordinatewise`` flag (default False); ``ValueError`` unless it is a bool (``"yes"`` is not a
    promise)."""
    c = getattr(rule, "coordinatewise", False)
    if not isinstance(c, bool):
        raise ValueError(f"rule {source!r}: rule.coordinatewise must be True or False, got {c!r}")
    return c


def _carried(source: str, rule) -> bool:
    """Whether the reducible family's line carries the rule (module docstring)."""
    if rule is not None:
        return _coordinatewise(rule, source)
    m = Method.parse(source)
    return m.rule in ("unguided", "cfg", "optimal") and m.reg in ("", "vjp", "jvp", "fd")


def _stateful(source: str, rule) -> bool:
    return hasattr(rule, "reset") if rule is not None else Method.parse(source).rule == "apg_momentum"


def line_law(law: Law) -> Law | None:
    """The law along the reducible family's line when the complement carries no class information (equal
    complement variances 1 everywhere), else None."""
    parts = law.build()
    if not isinstance(parts.cond, ReducibleMixture):
        return None
    if not all(torch.allclose(m.comp_vars, torch.ones_like(m.comp_vars)) for m in (parts.cond, parts.uncond)):
        return None
    return Law.mixture(parts.cond.subspace_mixture(), parts.uncond.subspace_mixture())


def _guided(cell: BenchCell, law: Law, rule):
    """(guided denoiser, levels it runs on) of the cell's rule on ``law``."""
    if rule is None:
        m = Method.parse(cell.source).replace(w=cell.w)
        lv = Levels(cell.levels.schedule, cell.levels.sampler, "tilted" if m.rule == "optimal" else "n01")
        return m.build(law, lv).guided, lv
    base = Method("cfg", cell.w).build(law, cell.levels).guided
    return RuleGuidance(rule, base.cond, base.uncond, cell.w, cell.levels.schedule.path), cell.levels


def _expect(p: torch.Tensor, f: torch.Tensor, dp: torch.Tensor) -> tuple[float, float]:
    """``sum p f`` of a normalised law and its first-order error from per-node errors ``dp``."""
    q = (p * f).sum()
    return q.item(), (dp * (f - q).abs()).sum().item()


def _normalised(mass: torch.Tensor, err: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m = mass.clamp(min=0).reshape(-1)
    total = m.sum()
    e = err.abs().reshape(-1)
    return m / total, (e + m / total * e.sum()) / total


def _mixture_mean(m: GaussianMixture) -> torch.Tensor:
    return (m.weights.to(F64)[:, None] * m.means.to(F64)).sum(0)  # [d]


def _distortions(p, dp, pt, dpt, X, cond: GaussianMixture):
    """(overshoot, var_ratio, mode_tv) with errors, and the mode masses of the output and the target, from two
    normalised laws ``p``/``pt`` [N] (errors ``dp``/``dpt``) at points ``X`` [N, d]."""
    mean = [(_expect(p, X[:, i], dp), _expect(pt, X[:, i], dpt)) for i in range(X.shape[1])]
    m_out = torch.tensor([a[0] for a, _ in mean], dtype=F64)
    m_tgt = torch.tensor([b[0] for _, b in mean], dtype=F64)
    e = m_tgt - _mixture_mean(cond)
    e = e / e.norm() if e.norm() > 0 else torch.zeros_like(e)
    overshoot = ((m_out - m_tgt) @ e).item()
    overshoot_err = sum(abs(e[i].item()) * (a[1] + b[1]) for i, (a, b) in enumerate(mean))
    var_o = _expect(p, ((X - m_out) ** 2).sum(1), dp)
    var_t = _expect(pt, ((X - m_tgt) ** 2).sum(1), dpt)
    ratio = var_o[0] / var_t[0]
    ratio_err = ratio * (var_o[1] / var_o[0] + var_t[1] / var_t[0])
    resp = torch.softmax(cond.component_log_prob(X), dim=1)  # [N, K]
    modes = [_expect(p, resp[:, k], dp) for k in range(resp.shape[1])]
    modes_t = [_expect(pt, resp[:, k], dpt) for k in range(resp.shape[1])]
    mode_tv = 0.5 * sum(abs(a[0] - b[0]) for a, b in zip(modes, modes_t))
    mode_err = 0.5 * sum(a[1] + b[1] for a, b in zip(modes, modes_t))
    return ((overshoot, overshoot_err), (ratio, ratio_err), (mode_tv, mode_err),
            tuple(a[0] for a in modes), tuple(b[0] for b in modes_t))


def _field_exact(cell: BenchCell, law: Law, guided, stateful: bool) -> tuple[tuple, float, float]:
    """Per-level field errors (D units) on the conditional marginal, their mean over levels and its error."""
    sigmas = cell.levels.sigmas()[:-1].tolist()
    if stateful:
        return (math.nan,) * len(sigmas), math.nan, math.nan
    gold = Method("optimal", cell.w).build(law, cell.levels).guided
    per, per_half = [], []
    for s in sigmas:
        vals = []
        for n in (cell.field_nodes, cell.field_nodes // 2):
            x, weight = conditional_nodes(law, s, n)
            vals.append(float((weight * (guided(x, s).detach() - gold(x, s).detach()).norm(dim=1)).sum()))
        per.append(vals[0])
        per_half.append(vals[1])
    mean = float(np.mean(per))
    return tuple(per), mean, abs(mean - float(np.mean(per_half)))


def _exact(cell: BenchCell, law: Law, rule, stateful: bool) -> BenchResult:
    guided, lv = _guided(cell, law, rule)
    parts = law.build()
    d = parts.dim
    axes = (torch.linspace(-cell.half_width, cell.half_width, cell.points, dtype=F64),) * d
    od = output_density(guided, lv.sigmas(), axes, sampler=lv.sampler, start=_start(law, lv, cell.w),
                        estimate_error=True)
    target = tilted_target(parts.cond, Method("cfg", cell.w).reward(parts), axes)
    dist = distances_between(od, target)
    p, dp = _normalised(od.mass, od.error)
    pt, dpt = _normalised(target.mass, target.error)
    X = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, d)
    if d == 1:
        sw1, sw1_err = dist.w1, dist.w1_error
    else:
        sw1, sw1_err = sliced_w1(od.mass, target.mass, axes), sliced_w1_error(dp, X) + sliced_w1_error(dpt, X)
    over, ratio, mode_tv, modes, modes_t = _distortions(p, dp, pt, dpt, X, parts.cond)
    levels_, field, field_err = _field_exact(cell, law, guided, stateful)
    values = (sw1, dist.tv, dist.kl_target_out, dist.kl_out_target, over[0], ratio[0], mode_tv[0], field)
    errors = (sw1_err, dist.tv_error, dist.kl_target_out_error, dist.kl_out_target_error, over[1], ratio[1],
              mode_tv[1], field_err)
    return BenchResult("exact", values, errors, modes, modes_t, levels_, od.lost)


def _start(law: Law, lv: Levels, w: float):
    parts = law.build()
    return lv.start_density(parts, Method("cfg", w).reward(parts))


class MonteCarlo(NamedTuple):
    """Samples of a sampler projected on the reducible family's line: ``u`` [N]."""

    u: torch.Tensor


def monte_carlo(guided, law: Law, levels: Levels, n: int, seed: int) -> MonteCarlo:
    """Run ``levels``' sampler with the guided denoiser ``guided`` on ``n`` trajectories in ``d`` dimensions from
    ``N(0, I)`` (VP coordinates of the first level; ``torch.Generator().manual_seed(seed)`` for the start and the
    sampler's noise), calling ``guided.reset()`` first when it has one, and project the outputs on the line
    ``q`` of the reducible ``law``."""
    parts = law.build()
    if not isinstance(parts.cond, ReducibleMixture):
        raise ValueError(f"the Monte Carlo route is for the reducible family, got law {str(law)!r}")
    if isinstance(n, bool) or int(n) != n or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    sigmas = levels.sigmas()
    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn(int(n), parts.dim, generator=g, dtype=F64) * math.sqrt(1 + sigmas[0].item() ** 2)
    reset = getattr(guided, "reset", None)
    if reset is not None:
        reset()
    with torch.no_grad():
        out = sample(levels.sampler, guided, x, sigmas, generator=g)
    return MonteCarlo((out.to(F64) @ parts.cond.basis)[:, 0])


_BLOCKS = 8


def _block_stat(values: list[float], full: float) -> float:
    """Standard error of a statistic from its values on ``_BLOCKS`` disjoint blocks, plus the estimated bias of the
    full-sample value for statistics biased as ``n^-1/2`` (W1 of an empirical law): (block mean - full) / (sqrt(B) - 1)."""
    v = np.asarray(values)
    se = v.std(ddof=1) / math.sqrt(len(v))
    return float(se + abs(v.mean() - full) / (math.sqrt(len(v)) - 1))


def _mc(cell: BenchCell, rule, stateful: bool) -> BenchResult:
    guided, lv = _guided(cell, cell.law, rule)
    mc = monte_carlo(guided, cell.law, lv, cell.mc_samples, cell.mc_seed)
    line = line_law(cell.law)
    parts1 = line.build()
    axis = torch.linspace(-cell.half_width, cell.half_width, cell.points, dtype=F64)
    target = tilted_target(parts1.cond, Method("cfg", cell.w).reward(parts1), axis)
    pt, dpt = _normalised(target.mass, target.error)
    X = axis[:, None]
    resp = torch.softmax(parts1.cond.component_log_prob(X), 1)
    m_t = (pt * axis).sum().item()
    v_t = (pt * (axis - m_t) ** 2).sum().item()
    modes_t = tuple((pt[:, None] * resp).sum(0).tolist())
    m_c = _mixture_mean(parts1.cond).item()
    e = math.copysign(1.0, m_t - m_c) if m_t != m_c else 0.0

    def stats(u: torch.Tensor):
        from analytic.quadrature import deposit

        mass, _ = deposit(u[:, None], torch.full((u.numel(),), 1.0 / u.numel(), dtype=F64), (axis,))
        r = torch.softmax(parts1.cond.component_log_prob(u[:, None]), 1).mean(0)
        mode_tv = 0.5 * (r - torch.tensor(modes_t, dtype=F64)).abs().sum().item()
        return (wasserstein1(mass, target.mass, axis), (u.mean().item() - m_t) * e, u.var().item() / v_t, mode_tv,
                tuple(r.tolist()))

    full = stats(mc.u)
    blocks = [stats(b) for b in mc.u.chunk(_BLOCKS)]
    err = [_block_stat([b[i] for b in blocks], full[i]) for i in range(4)]
    err[0] += sliced_w1_error(dpt, X)  # the target's own quadrature error
    field_levels, field, field_err = _field_mc(cell, rule, stateful)
    nan = math.nan
    values = (full[0], nan, nan, nan, full[1], full[2], full[3], field)
    errors = (err[0], nan, nan, nan, err[1], err[2], err[3], field_err)
    return BenchResult("monte_carlo", values, errors, full[4], modes_t, field_levels,
                       float((mc.u.abs() > cell.half_width).double().mean()))


def _field_mc(cell: BenchCell, rule, stateful: bool) -> tuple[tuple, float, float]:
    """Field errors (D units) by Monte Carlo over ``x ~ p_s(x|y)`` in ``d`` dimensions against the reducible
    optimum (:func:`analytic.reducible_golden.optimal_guidance_reducible`), with the standard error of the mean."""
    sigmas = cell.levels.sigmas()[:-1].tolist()
    if stateful:
        return (math.nan,) * len(sigmas), math.nan, math.nan
    guided, _ = _guided(cell, cell.law, rule)
    parts = cell.law.build()
    reward = Method("cfg", cell.w).reward(parts)
    n = max(64, cell.mc_samples // 32)
    per, var = [], []
    for j, s in enumerate(sigmas):
        a = sigma_to_abar(s)
        x_vp = parts.cond.noised(a).sample(n, torch.Generator().manual_seed(cell.mc_seed + 1 + j))
        golden = optimal_guidance_reducible(parts.cond, reward, x_vp, a, tol=1e-7).golden
        x = x_vp / math.sqrt(a)
        d_c = parts.cond.denoise(x, s)
        gap = (guided(x, s).detach() - (d_c - s * golden)).norm(dim=1)
        per.append(gap.mean().item())
        var.append(gap.var().item() / n)
    return tuple(per), float(np.mean(per)), math.sqrt(sum(var)) / len(per)


# the providers' modules are imported by name (PROVIDERS), so their source is declared: the diffusers provider drives
# images.guiders
@cell_kind(BenchCell, modules=("evaluation.bench_providers", "images.guiders"))
def bench_cell(cell: BenchCell) -> BenchResult:
    """One rule on one setting at one weight: its route (module docstring) and every metric with its error."""
    rule = None if _is_method(cell.source) else load_rule(cell.source, cell.digest)
    stateful = _stateful(cell.source, rule)
    if cell.law.dim < getattr(rule, "min_dim", 1) or (stateful and cell.levels.sampler == "ddpm"
                                                      and not isinstance(cell.law.build().cond, ReducibleMixture)):
        nan = (math.nan,) * len(METRICS)
        return BenchResult("undefined", nan, nan, (), (), (math.nan,) * cell.levels.steps, math.nan)
    if isinstance(cell.law.build().cond, ReducibleMixture):
        line = line_law(cell.law)
        if line is not None and _carried(cell.source, rule) and not (stateful and cell.levels.sampler == "ddpm"):
            return _exact(cell, line, rule, stateful)
        return _mc(cell, rule, stateful)
    return _exact(cell, cell.law, rule, stateful)


# --- the run -----------------------------------------------------------------------------------------------
def check_rules(rules: dict[str, str]) -> tuple[list[tuple[str, str, str]], list[str]]:
    """``([(name, source, digest)], skipped messages)``: every rule checked once (errors name the rule)."""
    if not isinstance(rules, Mapping):
        raise ValueError(f"rules must map rule names to sources ({{name: source}}), got {type(rules).__name__} "
                         f"{rules!r}")
    out, skipped = [], []
    for name, source in rules.items():
        try:
            src, digest = rule_source(source)
        except ModuleNotFoundError as err:  # an optional provider's dependency is absent
            skipped.append(f"skipped {name}: {err}")
            continue
        except ValueError as err:
            raise ValueError(f"rule {name!r}: {err}") from err
        out.append((name, src, digest))
    return out, skipped


def cells(config: BenchConfig, entries) -> list[tuple[dict, BenchCell]]:
    """``[(row key, cell)]`` for every rule entry x law x levels x weight (the 2-D optimum only with
    ``config.optimal_2d``)."""
    out = []
    for name, source, digest in entries:
        for law_text in config.laws:
            law = Law.parse(law_text)
            k = 0 if law.dim == 1 or law.kind == "reducible" else 1
            if source == "optimal" and k == 1 and not config.optimal_2d:
                continue
            for lv_text in config.levels:
                for w in config.weights:
                    key = {"rule": name, "setting": f"{law_text} | {lv_text}", "law": law_text, "levels": lv_text,
                           "w": w}
                    out.append((key, BenchCell(source, digest, law, Levels.parse(lv_text), w, config.half_width[k],
                                               config.points[k], config.field_nodes[k], config.mc_samples,
                                               config.mc_seed)))
    return out


def _row(key: dict, r: BenchResult) -> dict:
    row = dict(key, route=r.route, exact=r.route == "exact")
    for m, v, e in zip(METRICS, r.values, r.errors):
        row[m], row[m + "_error"] = _plain(v), _plain(e)
    row.update(mode_mass=[_plain(v) for v in r.mode_mass], mode_mass_target=[_plain(v) for v in r.mode_mass_target],
               field_levels=[_plain(v) for v in r.field_levels], lost=_plain(r.lost))
    return row


def _plain(v: float) -> float | None:
    """A JSON number (None for nan or inf)."""
    v = float(v)
    return v if math.isfinite(v) else None


def leaderboard(rows: list[dict], reference: str = "optimal") -> list[dict]:
    """Per rule: ``score`` (median over settings of ``sw1 / sw1(reference)`` at the same setting and weight, over the
    settings where both are finite; module docstring), ``score_error`` (the median setting's first-order error),
    ``settings`` (how many entered the score), the medians of ``sw1``, ``tv`` and ``field`` over all its rows, and
    the fraction of its rows computed exactly, and ``complete`` (scored on as many settings as any rule). Sorted by
    score, the complete rules first (then the rest, then rules without a score)."""
    ref = {(r["setting"], r["w"]): r for r in rows if r["rule"] == reference}
    by_rule: dict[str, list[dict]] = {}
    for r in rows:
        by_rule.setdefault(r["rule"], []).append(r)

    def median(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    board = []
    for name, rs in by_rule.items():
        ratios = []
        for r in rs:
            o = ref.get((r["setting"], r["w"]))
            if o is None or r["sw1"] is None or not o["sw1"]:
                continue
            q = r["sw1"] / o["sw1"]
            err = q * ((r["sw1_error"] or 0.0) / max(r["sw1"], 1e-300) + (o["sw1_error"] or 0.0) / o["sw1"])
            ratios.append((q, err))
        ratios.sort()
        if ratios:
            n = len(ratios)
            mid = ratios[(n - 1) // 2: n // 2 + 1]
            score, score_err = sum(q for q, _ in mid) / len(mid), sum(e for _, e in mid) / len(mid)
        else:
            score = score_err = None
        board.append({"rule": name, "score": score, "score_error": score_err, "settings": len(ratios),
                      "median_sw1": median(r["sw1"] for r in rs), "median_tv": median(r["tv"] for r in rs),
                      "median_field": median(r["field"] for r in rs),
                      "exact_fraction": sum(r["exact"] for r in rs) / len(rs)})
    # a score over fewer settings (rows undefined where a rule needs more coordinates) is not comparable with the
    # others': such rules rank after every rule scored on all the settings
    full = max((b["settings"] for b in board), default=0)
    for b in board:
        b["complete"] = b["settings"] == full
    board.sort(key=lambda b: (b["score"] is None, not b["complete"], b["score"] if b["score"] is not None else 0.0,
                              b["rule"]))
    return board


def run(config: BenchConfig = QUICK, rules: dict[str, str] | None = None, *, workers: int = 1,
        scheduler: str | None = None, cache=None, progress: bool = True) -> dict:
    """Score ``rules`` (default :data:`REGISTRY`; name -> source) on ``config`` through
    :func:`evaluation.sweep.run_cells` (cached, resumable, ``workers`` processes or a Dask ``scheduler``). Returns
    the content of ``bench.json``: ``{"version", "config", "skipped", "rows", "leaderboard"}``."""
    if not isinstance(config, BenchConfig):
        raise ValueError(f"config must be a BenchConfig, got {config!r}")
    entries, skipped = check_rules(dict(REGISTRY if rules is None else rules))
    plan = cells(config, entries)
    result = run_cells([c for _, c in plan], cache=cache, workers=workers, scheduler=scheduler, progress=progress,
                       desc="bench cells")
    rows = [_row(key, r) for (key, _), r in zip(plan, result.results)]
    config_text = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    return {"version": BENCH_VERSION, "config": config_text, "skipped": skipped, "rows": rows,
            "leaderboard": leaderboard(rows), "seconds": round(result.seconds, 1)}


# --- outputs -----------------------------------------------------------------------------------------------
def _fmt(v, err=None) -> str:
    if v is None:
        return "n/a"
    text = f"{v:.3g}"
    return text if err is None else f"{text} ± {err:.1g}"


def markdown(bench: dict) -> str:
    """``bench.md``: the leaderboard of a ``bench.json`` content (generated; never typed by hand)."""
    c = bench["config"]
    lines = [f"# Guidance bench (version {bench['version']})", "",
             f"Settings: laws {', '.join(c['laws'])}; levels {', '.join(c['levels'])}; weights "
             f"{', '.join(f'{w:g}' for w in c['weights'])}. Score: median over settings of sw1(rule) / sw1(optimum) "
             "(1 = the exact optimum; lower is better; docs/bench.md).", "",
             "| rank | rule | score | settings | median sw1 | median TV | median field error (D units) | exact rows |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for i, b in enumerate(bench["leaderboard"], 1):
        partial = "" if b.get("complete", True) else " (partial)"
        lines.append(f"| {i} | {b['rule']}{partial} | {_fmt(b['score'], b['score_error'])} | {b['settings']} | "
                     f"{_fmt(b['median_sw1'])} | {_fmt(b['median_tv'])} | {_fmt(b['median_field'])} | "
                     f"{b['exact_fraction']:.0%} |")
    if not all(b.get("complete", True) for b in bench["leaderboard"]):
        lines += ["", "(partial): scored on fewer settings than the others (its rows are undefined where the rule needs "
                  "more coordinates than the law has), so its score is not comparable; ranked after the complete rules."]
    if bench["skipped"]:
        lines += ["", "Skipped:", ""] + [f"- {s}" for s in bench["skipped"]]
    return "\n".join(lines) + "\n"


def plot(bench: dict, path: Path) -> Path:
    """``bench.png``: each rule's sw1 relative to the optimum's per setting (points) and its score (bar)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    board = [b for b in bench["leaderboard"] if b["score"] is not None]
    ref = {(r["setting"], r["w"]): r["sw1"] for r in bench["rows"] if r["rule"] == "optimal"}
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(board) + 1.2))
    for i, b in enumerate(board):
        pts = [r["sw1"] / ref[(r["setting"], r["w"])] for r in bench["rows"] if r["rule"] == b["rule"]
               and r["sw1"] is not None and ref.get((r["setting"], r["w"]))]
        ax.barh(i, b["score"], color="0.8")
        ax.plot(pts, [i] * len(pts), "o", ms=3, color="C0", alpha=0.6)
    ax.set_yticks(range(len(board)), [b["rule"] for b in board])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("sw1 / sw1(optimum)  (bar: median = score)")
    ax.set_title(f"guidance bench v{bench['version']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None) -> None:
    """``python -m evaluation.bench``: score the registry and every ``--rule`` and write bench.json, bench.md and
    bench.png to ``--out``."""
    import argparse

    from .io import check_cli_arguments, write_atomically

    ap = argparse.ArgumentParser(prog="python -m evaluation.bench", allow_abbrev=False,
                                 description="Score guidance rules exactly against the optimum on versioned settings.")
    ap.add_argument("--rule", action="append", default=[], metavar="FILE.py:NAME",
                    help="a user rule (docs/bench.md); repeat for several")
    ap.add_argument("--quick", action="store_true", help="the QUICK settings (a few minutes on two cores)")
    ap.add_argument("--out", type=Path, default=Path("out/bench"), help="output folder (default: out/bench)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help=f"local worker processes (default: every core, {os.cpu_count()} here)")
    ap.add_argument("--update-docs", action="store_true",
                    help="copy bench.json to docs/data/ and regenerate the leaderboard headline of README.md")
    ap.add_argument("--scheduler", default=None, metavar="ADDR", help="a Dask scheduler address (tcp://HOST:PORT)")
    args = ap.parse_args(argv)
    check_cli_arguments(ap, args.workers, args.out, scheduler=args.scheduler)
    rules = dict(REGISTRY)
    for text in args.rule:
        split = _split_file_rule(text)
        if split is None:
            ap.error(f"--rule must be FILE.py:NAME, got {text!r}")
        name = f"{split[0].name}:{split[1]}"
        if name in rules:
            ap.error(f"--rule {text!r}: the name {name!r} is taken")
        rules[name] = text
    try:
        entries, skipped = check_rules(rules)  # every rule checked before any cell runs
    except ValueError as err:
        ap.error(str(err))
    for s in skipped:
        print(s, file=sys.stderr)
    try:
        bench = run(QUICK if args.quick else STANDARD, rules, workers=args.workers, scheduler=args.scheduler)
    except SchedulerUnreachable as err:
        ap.error(f"--scheduler: {err}")
    write_atomically(args.out / "bench.json", json.dumps(bench, indent=1) + "\n")
    write_atomically(args.out / "bench.md", markdown(bench))
    plot(bench, args.out / "bench.png")
    print(markdown(bench))
    print(f"wrote {args.out / 'bench.json'}, bench.md, bench.png")
    if args.update_docs:
        from .docs import publish

        print(f"docs: {publish('bench', args.out / 'bench.json')}")


if __name__ == "__main__":  # run the package module, so cells are registered under its name (not __main__)
    from evaluation.bench import main as _main

    _main()
