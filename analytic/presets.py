"""Named mixture settings shared by the demo, figures, toy data and tests.

- ``paper_1d``: the REG paper's 1-D toy (THEORY.md section 7) with the unconditional law stored with the
  released checkpoints, ``0.5 N(-2, 0.5^2) + 0.5 N(0, 0.5^2)``; this is what made the paper's figures.
- ``paper_1d_script``: the same conditional with the unconditional law of the released training
  script, ``0.5 N(-1, 0.5^2) + 0.5 N(1, 0.5^2)``.
- ``correlated_2d``: anisotropic, correlated components, so ``J`` is far from diagonal and the REG
  estimators (paper ``J^T 1``, vjp, diag) differ.
- ``classes_2d``: three classes with priors; the conditional is class 0 and the unconditional the
  class marginal, so CFG and classifier guidance (CG) act on the same pair.
- ``three_1d``, ``three_2d``: three classes ``(condition, negative, rest)`` with priors; the conditional is class 0,
  the negative prompt class 1 (:data:`analytic.three_class.NEGATIVE`) and the unconditional the class marginal.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .mixture import GaussianMixture

__all__ = ["Preset", "PRESETS", "get_preset"]


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    cond: GaussianMixture
    uncond: GaussianMixture
    classes: tuple[GaussianMixture, ...] = field(default=())
    priors: tuple[float, ...] = field(default=())
    y: int = 0  # the class the conditional is, when classes are given


def _paper_1d() -> Preset:
    cond = GaussianMixture.from_1d([0.5, 0.5], [0.5, 1.5], [0.25, 0.25])
    uncond = GaussianMixture.from_1d([0.5, 0.5], [-2.0, 0.0], [0.5, 0.5])
    return Preset("paper_1d", "REG paper 1-D toy, unconditional as stored with the released checkpoints "
                  "(means -2, 0)", cond, uncond)


def _paper_1d_script() -> Preset:
    cond = GaussianMixture.from_1d([0.5, 0.5], [0.5, 1.5], [0.25, 0.25])
    uncond = GaussianMixture.from_1d([0.5, 0.5], [-1.0, 1.0], [0.5, 0.5])
    return Preset("paper_1d_script", "REG paper 1-D toy, unconditional as in the released training script "
                  "(means -1, 1)", cond, uncond)


def _rot(theta: float, sx: float, sy: float) -> list[list[float]]:
    c, s = torch.cos(torch.tensor(theta)), torch.sin(torch.tensor(theta))
    R = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    return (R @ torch.diag(torch.tensor([sx**2, sy**2], dtype=torch.float64)) @ R.T).tolist()


def _correlated_2d() -> Preset:
    cond = GaussianMixture([0.5, 0.5], [[0.5, 0.5], [1.5, 1.0]],
                           [_rot(0.6, 0.35, 0.15), _rot(-0.9, 0.3, 0.15)])
    uncond = GaussianMixture([0.4, 0.3, 0.3], [[-0.5, 0.0], [0.5, 1.5], [1.5, -0.5]],
                             [_rot(0.3, 0.6, 0.4), _rot(1.2, 0.5, 0.3), _rot(0.0, 0.5, 0.5)])
    return Preset("correlated_2d", "2-D, anisotropic correlated conditional components against a broad "
                  "unconditional mixture", cond, uncond)


def _classes_2d() -> Preset:
    classes = (
        GaussianMixture([0.5, 0.5], [[0.0, 1.0], [0.8, 1.2]], [_rot(0.3, 0.3, 0.15), _rot(-0.4, 0.25, 0.15)]),
        GaussianMixture([1.0], [[1.2, -0.2]], [_rot(0.8, 0.4, 0.2)]),
        GaussianMixture([0.6, 0.4], [[-0.8, -0.4], [-0.2, -1.0]], [_rot(0.0, 0.3, 0.3), _rot(1.0, 0.35, 0.12)]),
    )
    priors = (0.3, 0.4, 0.3)
    marginal = GaussianMixture.concat(classes, priors)
    return Preset("classes_2d", "2-D, three classes; conditional = class 0, unconditional = class marginal",
                  classes[0], marginal, classes, priors, 0)


PRESETS = {
    "paper_1d": _paper_1d,
    "paper_1d_script": _paper_1d_script,
    "correlated_2d": _correlated_2d,
    "classes_2d": _classes_2d,
}


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (one of ``PRESETS``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()


# --- three-class laws (issue 23 item 1): classes = (condition, negative, rest), y = 0, uncond = class marginal -----
def _three_1d() -> Preset:
    classes = (
        GaussianMixture.from_1d([0.5, 0.5], [1.0, 2.2], [0.4, 0.3]),  # the condition c
        GaussianMixture.from_1d([1.0], [1.6], [0.5]),  # the negative: overlaps the condition's right mode
        GaussianMixture.from_1d([0.6, 0.4], [-1.5, -0.3], [0.6, 0.4]),  # the rest of the data
    )
    priors = (0.4, 0.3, 0.3)
    return Preset("three_1d", "1-D, three classes (condition, negative, rest); the negative overlaps the condition; "
                  "unconditional = class marginal", classes[0], GaussianMixture.concat(classes, priors), classes,
                  priors, 0)


def _three_2d() -> Preset:
    classes = (
        GaussianMixture([0.5, 0.5], [[0.0, 1.0], [1.0, 1.2]], [_rot(0.3, 0.35, 0.2), _rot(-0.4, 0.3, 0.15)]),
        GaussianMixture([1.0], [[0.8, 0.8]], [_rot(0.8, 0.45, 0.25)]),  # the negative, near the second mode
        GaussianMixture([0.6, 0.4], [[-0.8, -0.6], [0.6, -1.0]], [_rot(0.0, 0.35, 0.3), _rot(1.0, 0.4, 0.15)]),
    )
    priors = (0.35, 0.3, 0.35)
    return Preset("three_2d", "2-D, three classes (condition, negative, rest); the negative overlaps the "
                  "condition's second mode; unconditional = class marginal", classes[0],
                  GaussianMixture.concat(classes, priors), classes, priors, 0)


PRESETS["three_1d"] = _three_1d
PRESETS["three_2d"] = _three_2d
