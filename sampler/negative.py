"""Guidance away from a negative prompt, as guidance objects of the one protocol (:mod:`sampler.guidance`).

Negative-prompt CFG is :class:`~sampler.guidance.CFG` with the negative denoiser as the reference branch,
``CFG(cond, neg, w)``: ``D_c + w (D_c - D_neg)`` (diffusers and Stable Diffusion pass the negative prompt's
embedding where the empty prompt would go). Its reward is ``analytic.three_class.NegativePromptReward``.

:class:`PerpNeg` (Armandpour et al. 2023, "Re-imagine the negative prompt algorithm", arXiv 2304.04968, sec. 3, the
Perp-Neg sampling rule): with ``Delta_c = D_c - D_u`` and ``Delta_neg = D_neg - D_u``, only the part of
``Delta_neg`` perpendicular to ``Delta_c`` is subtracted, and the guidance scale ``g = 1 + w`` multiplies both,

    D = D_u + (1 + w) (Delta_c - w_neg Delta_neg^perp) = D_c + w Delta_c - (1 + w) w_neg Delta_neg^perp,
    Delta_neg^perp = Delta_neg - <Delta_neg, Delta_c> / |Delta_c|^2 Delta_c,

inner products per sample over all non-batch dimensions (where ``Delta_c = 0`` nothing is projected out). Weight
convention: ``w`` is the library's (``D_c + w (D_c - D_u)``, so ``w_neg = 0`` is CFG), ``w_neg >= 0`` the strength
of the negative. This is the form of the reference implementation linked from perp-neg.github.io
(``weighted_perpendicular_aggregator``: ``eps_u + g (Delta_c + sum_i w_i Delta_i^perp)`` with negative ``w_i = -w_neg``)
and of ComfyUI's ``perp_neg`` (``uncond + cond_scale (pos - neg_scale perp)``, whose inner products run over the whole
batch; here per sample). The paper's own equation was not available here to check against, so no equation number is
quoted. The projection is homogeneous, so the same formula holds in ``eps`` and ``D`` units (``D = x - sigma eps``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch

from .guidance import same_shape
from .model import Denoiser
from .weights import WeightSchedule, as_schedule

__all__ = ["PerpNeg", "perpendicular"]

Weight = Union[float, WeightSchedule]


def perpendicular(v: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """The part of ``v`` perpendicular to ``ref``, per sample over all non-batch dimensions; ``v`` where ``ref = 0``.
    [N, ...] -> [N, ...]"""
    if v.shape != ref.shape:
        raise ValueError(f"v has shape {tuple(v.shape)} but ref has {tuple(ref.shape)}")
    vf, rf = v.flatten(1), ref.flatten(1)
    nn = (rf * rf).sum(1, keepdim=True)
    coef = torch.where(nn > 0, (vf * rf).sum(1, keepdim=True) / torch.where(nn > 0, nn, torch.ones_like(nn)),
                       torch.zeros_like(nn))
    return (vf - coef * rf).reshape(v.shape)


@dataclass(frozen=True)
class PerpNeg:
    """Perp-Neg (module docstring): ``D_c + w (D_c - D_u) - (1 + w) w_neg (D_neg - D_u)^perp``."""

    cond: Denoiser
    uncond: Denoiser
    neg: Denoiser
    weight: Weight = 1.0
    neg_weight: Weight = 1.0

    def __post_init__(self):
        for name in ("cond", "uncond", "neg"):
            if not callable(getattr(self, name)):
                raise ValueError(f"{name} must be a callable (x, sigma) -> tensor, got {getattr(self, name)!r}")
        object.__setattr__(self, "weight", as_schedule(self.weight))
        object.__setattr__(self, "neg_weight", as_schedule(self.neg_weight))

    def active(self, sigma: float) -> bool:
        return self.weight(sigma) != 0 or self.neg_weight(sigma) != 0

    def delta(self, x: torch.Tensor, sigma: float, d_cond: torch.Tensor) -> torch.Tensor:
        d_u = same_shape("uncond", self.uncond(x, sigma), d_cond)
        delta_c = d_cond - d_u
        out = self.weight(sigma) * delta_c
        w_neg = self.neg_weight(sigma)
        if w_neg != 0:
            d_neg = same_shape("neg", self.neg(x, sigma), d_cond)
            out = out - (1 + self.weight(sigma)) * w_neg * perpendicular(d_neg - d_u, delta_c)
        return out

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        d_c = self.cond(x, sigma)
        return d_c if not self.active(sigma) else d_c + self.delta(x, sigma, d_c)
