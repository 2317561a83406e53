"""Three-class laws: a condition ``c``, a negative prompt ``neg`` and the unconditional law (issue 23 item 1).

Negative-prompt CFG guides with the negative in place of the unconditional branch, ``D_c + w (D_c - D_neg)``
(``sampler.CFG(cond, neg, w)``), which is the present-time rule of the reward

    R_0(x_0) = (p(x_0 | c) / p(x_0 | neg))^w,

the same mixture ratio as CFG's with ``neg`` as the reference: :class:`NegativePromptReward` is
:class:`analytic.CFGReward` under names that say so (no formula of its own), and the exact optimum for it is
:func:`analytic.optimal_guidance`. Perp-Neg (``sampler.PerpNeg``) is not the present-time rule of any reward here;
it is measured against this optimum.

:func:`class_mass` is the mass an output law puts on a class: ``int q(x) P(class | x) dx`` with the exact Bayes
posterior ``P(class | x) = pi_class p_class(x) / sum_j pi_j p_j(x)``, by trapezoid quadrature with an error estimate.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch

from .mixture import GaussianMixture, as_float64
from .presets import Preset
from .quadrature import ToleranceNotMet, check_tol
from .rewards import CFGReward

__all__ = ["NEGATIVE", "NegativePromptReward", "negative_prompt_reward", "ClassMass", "class_log_posterior",
           "class_mass", "class_mass_on_grid"]

NEGATIVE = 1  # the negative prompt's class index in the three-class presets (three_1d, three_2d)


class NegativePromptReward(CFGReward):
    """``R_0 = (p(x | c) / p(x | neg))^w``, term ``w (eps_c - eps_neg)``: CFG with the negative as the reference."""

    def __init__(self, cond: GaussianMixture, neg: GaussianMixture, w: float):
        super().__init__(cond, neg, w)

    @property
    def neg(self) -> GaussianMixture:
        return self.den


def negative_prompt_reward(preset: Preset, w: float) -> NegativePromptReward:
    """The negative-prompt reward of a three-class preset: condition ``classes[y]``, negative ``classes[NEGATIVE]``."""
    if len(preset.classes) != 3:
        raise ValueError(f"preset {preset.name!r} is not a three-class law (classes = (condition, negative, rest))")
    if isinstance(preset.y, bool) or preset.y not in (0, 2):  # bool: True == 1 would read as a class index
        raise ValueError(f"preset {preset.name!r} has y={preset.y!r}, not a three-class law's condition: y must be "
                         f"class 0 or 2 (class {NEGATIVE} is the negative)")
    return NegativePromptReward(preset.classes[preset.y], preset.classes[NEGATIVE], w)


def _check_classes(classes: Sequence[GaussianMixture], priors, index: int) -> tuple[list, torch.Tensor]:
    classes = list(classes)
    if len(classes) < 2 or not all(isinstance(c, GaussianMixture) for c in classes):
        raise ValueError(f"classes must be at least two analytic.GaussianMixture, got {len(classes)}")
    if len({c.dim for c in classes}) != 1:
        raise ValueError(f"classes have different dimensions {sorted({c.dim for c in classes})}")
    p = as_float64(priors, "priors")
    if p.shape != (len(classes),) or not torch.all(torch.isfinite(p)) or torch.any(p < 0) or not torch.any(p > 0):
        raise ValueError(f"priors must be {len(classes)} finite non-negative numbers, not all 0, got {p.tolist()}")
    if isinstance(index, bool) or int(index) != index or not 0 <= index < len(classes):
        raise ValueError(f"index must be a class index in [0, {len(classes)}), got {index!r}")
    return classes, p / p.sum()


def class_log_posterior(classes: Sequence[GaussianMixture], priors, index: int, x) -> torch.Tensor:
    """``log P(index | x) = log pi_index p_index(x) - log sum_j pi_j p_j(x)``. x [N, d] -> [N]"""
    classes, p = _check_classes(classes, priors, index)
    with torch.no_grad():
        logs = torch.stack([torch.log(p[j]) + c.log_prob(x) for j, c in enumerate(classes)], 1)  # [N, C]
    return logs[:, int(index)] - torch.logsumexp(logs, 1)


class ClassMass(NamedTuple):
    """``int q(x) P(class | x) dx`` and its error estimate."""

    value: float
    error: float
    nodes: int  # nodes per axis of the last grid


def _trapezoid(values: torch.Tensor, axes: Sequence[torch.Tensor]) -> float:
    out = values
    for ax in reversed(axes):
        out = torch.trapezoid(out, ax, dim=-1)
    return float(out)


def class_mass_on_grid(axes, density, classes: Sequence[GaussianMixture], priors, index: int) -> ClassMass:
    """The class mass of a law given by its density on a grid (d = 1 or 2): ``axes`` a list of d increasing 1-D
    arrays of odd length, ``density`` [n_1] or [n_1, n_2] (``indexing="ij"``). Trapezoid rule; the error is its
    change when every other node is dropped (an overestimate for a converged grid). Mass outside the grid is not
    seen: the caller's grid must hold the law. ``density`` must be a probability density: ``ValueError`` when its
    own trapezoid integral exceeds 1 by more than that integral's estimated error (twice its change when every
    other node is dropped, plus ``1e-6``), e.g. an unnormalised density, whose class "mass" would be scaled with it."""
    axes = [as_float64(a, "axes").reshape(-1) for a in axes]
    if len(axes) not in (1, 2):
        raise ValueError(f"axes must hold 1 or 2 arrays (d <= 2), got {len(axes)}")
    q = as_float64(density, "density")
    if q.shape != tuple(a.numel() for a in axes):
        raise ValueError(f"density must have shape {tuple(a.numel() for a in axes)}, got {tuple(q.shape)}")
    for i, a in enumerate(axes):
        if a.numel() < 3 or a.numel() % 2 == 0 or not torch.all(torch.isfinite(a)) or not torch.all(a[1:] > a[:-1]):
            raise ValueError(f"axes[{i}] must be finite and increasing with an odd number >= 3 of nodes, got "
                             f"{a.numel()} nodes from {a[0].item():.4g} to {a[-1].item():.4g}")
    if not torch.all(torch.isfinite(q)) or torch.any(q < 0):
        raise ValueError("density must be finite and non-negative")
    classes, _ = _check_classes(classes, priors, index)
    if classes[0].dim != len(axes):
        raise ValueError(f"the classes have dimension {classes[0].dim} but the grid has {len(axes)} axes")
    every_other = (slice(None, None, 2),) * len(axes)
    total = _trapezoid(q, axes)
    slack = 2 * abs(total - _trapezoid(q[every_other], [a[::2] for a in axes])) + 1e-6
    if total > 1 + slack:
        raise ValueError(f"density integrates to {total:.6g} on the grid (trapezoid rule, estimated error "
                         f"{slack:.2g}), more than 1: pass a probability density (an unnormalised one scales the class "
                         f"mass with it)")
    mesh = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))
    f = q * class_log_posterior(classes, priors, index, mesh).exp().reshape(q.shape)
    full = _trapezoid(f, axes)
    half = _trapezoid(f[every_other], [a[::2] for a in axes])
    return ClassMass(full, abs(full - half), int(axes[0].numel()))


def class_mass(law: GaussianMixture, classes: Sequence[GaussianMixture], priors, index: int, *, tol: float = 1e-8,
               max_nodes: int = 8193) -> ClassMass:
    """The mass ``law`` puts on class ``index`` (d = 1 or 2): e.g. the mass an output law puts on the negative.

    Trapezoid rule on a box that holds every component of ``law`` out to 10 standard deviations per axis (the
    law's mass outside it, at most ``sum_k pi_k d erfc(10 / sqrt(2))``, ~1.5e-23 d, is added to the error), nodes
    per axis doubled from 65 until two successive grids agree to ``tol``; ``ToleranceNotMet`` past ``max_nodes``.
    The error is the last change plus the box's tail bound and the summation's rounding."""
    if not isinstance(law, GaussianMixture):
        raise ValueError(f"law must be an analytic.GaussianMixture, got {type(law).__name__}")
    tol = check_tol(tol)
    if isinstance(max_nodes, bool) or not isinstance(max_nodes, int) or max_nodes < 65:
        raise ValueError(f"max_nodes must be an integer >= 65, got {max_nodes!r}")
    classes, _ = _check_classes(classes, priors, index)
    d = law.dim
    if d not in (1, 2) or classes[0].dim != d:
        raise ValueError(f"class_mass is for d <= 2 with classes of the law's dimension; got law d={d}, "
                         f"classes d={classes[0].dim}")
    R = 10.0
    sd = torch.diagonal(law.covs, dim1=-2, dim2=-1).sqrt()  # [K, d]
    lo, hi = (law.means - R * sd).amin(0), (law.means + R * sd).amax(0)
    tail = d * math.erfc(R / math.sqrt(2))
    n, prev = 65, None
    while True:
        axes = [torch.linspace(lo[i].item(), hi[i].item(), n, dtype=torch.float64) for i in range(d)]
        mesh = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, d)
        with torch.no_grad():
            f = (law.log_prob(mesh) + class_log_posterior(classes, priors, index, mesh)).exp()
        value = _trapezoid(f.reshape((n,) * d), axes)
        if prev is not None and abs(value - prev) <= tol:
            rounding = 1e-15 * n**d * max(abs(value), 1e-300)  # summation of n^d nodes in float64
            return ClassMass(value, abs(value - prev) + tail + rounding, n)
        if 2 * n - 1 > max_nodes:
            change = math.inf if prev is None else abs(value - prev)
            raise ToleranceNotMet(f"class_mass: {n} nodes per axis changed the value by {change:.3g} > "
                                  f"tol={tol:.3g}; raise max_nodes={max_nodes}")
        prev, n = value, 2 * n - 1
