"""Training data for the toy denoisers, drawn from the analytic presets (THEORY.md section 7).

Every toy data set is a pair ``(x [N, d], y [N])`` of float32 points and int64 labels, ``y = -1`` being
the null label (unconditional). What a network of each *role* is trained on, per preset
(:func:`analytic.get_preset`):

| role | data | label |
|---|---|---|
| ``cond`` | ``preset.cond`` (8000 draws by default) | 0 (the class ``preset.y``) |
| ``uncond`` | ``preset.uncond``, an independent data set as in the paper's code | -1 |
| ``weak`` | as ``cond`` (a smaller, shorter-trained network: the autoguidance reference) | 0 |
| ``joint`` | one network with a null label, as CFG is usually trained (see below) | classes and -1 |

``joint`` data: for presets with classes (``classes_2d``) the classes in proportion to their priors,
labelled ``0..C-1``; label dropout (``TrainConfig.label_dropout``) then turns labels into -1 during
training, so the null label learns the class marginal ``preset.uncond``. For presets that are a pair
(``paper_1d``, ``paper_1d_script``, ``correlated_2d``) the unconditional law is not the marginal of
anything, so the joint set is the conditional draws labelled 0 plus the unconditional draws labelled
-1, and no dropout is applied.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from analytic import GaussianMixture, Preset, get_preset

__all__ = ["ROLES", "NULL_LABEL", "ToyData", "make_data", "num_classes", "role_mixture"]

ROLES = ("cond", "uncond", "weak", "joint")
NULL_LABEL = -1


class ToyData(NamedTuple):
    """A labelled training set: points [N, d] float32 and labels [N] int64 (-1 = null)."""

    x: torch.Tensor
    y: torch.Tensor


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {ROLES}")
    return role


def num_classes(preset: Preset) -> int:
    """Number of (non-null) labels a network of ``preset`` embeds: the classes, or 1 for a pair."""
    return len(preset.classes) if preset.classes else 1


def role_mixture(preset: Preset, role: str) -> GaussianMixture:
    """The exact law a network of ``role`` learns when given its own label (``joint``: label ``preset.y``)."""
    _check_role(role)
    return preset.uncond if role == "uncond" else preset.cond


def _labelled(m: GaussianMixture, n: int, label: int, g: torch.Generator) -> ToyData:
    x = m.sample(n, generator=g).to(torch.float32)
    return ToyData(x, torch.full((n,), label, dtype=torch.long))


def make_data(preset: Preset | str, role: str, n: int = 8000, *, seed: int = 0) -> ToyData:
    """``n`` draws per distribution for a network of ``role`` (``joint`` pairs: ``2 n`` in all).

    Deterministic given ``seed`` (a CPU ``torch.Generator``), whatever the training device.
    """
    preset = get_preset(preset) if isinstance(preset, str) else preset
    _check_role(role)
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    n = int(n)
    g = torch.Generator().manual_seed(int(seed))
    if role in ("cond", "weak"):
        return _labelled(preset.cond, n, 0 if not preset.classes else preset.y, g)
    if role == "uncond":
        return _labelled(preset.uncond, n, NULL_LABEL, g)
    if preset.classes:  # joint, with classes: class draws by prior
        priors = torch.tensor(preset.priors, dtype=torch.float64)
        y = torch.multinomial(priors, n, replacement=True, generator=g)
        x = torch.empty(n, preset.cond.dim, dtype=torch.float32)
        for c, m in enumerate(preset.classes):
            idx = (y == c).nonzero().squeeze(1)
            x[idx] = m.sample(idx.numel(), generator=g).to(torch.float32)
        return ToyData(x, y)
    a, b = _labelled(preset.cond, n, 0, g), _labelled(preset.uncond, n, NULL_LABEL, g)
    return ToyData(torch.cat([a.x, b.x]), torch.cat([a.y, b.y]))
