"""Guidance objects (ARCHITECTURE.md, contract 2; THEORY.md section 2).

A guidance is a denoiser-like callable ``guided(x, sigma) -> x0_hat`` built from bound denoisers
(``denoiser(x, sigma) -> x0_hat`` in VE coordinates, any shape [N, ...]). Each one is split into

- ``cond``: the conditional denoiser ``D_c`` (the anchor, and the branch REG differentiates);
- ``active(sigma)``: whether it guides at this level at all (weight ``!= 0``); when not, nothing but
  ``D_c`` is evaluated;
- ``delta(x, sigma, d_cond)``: the guidance term in ``D`` units, ``guided - D_c``, given ``D_c``.

so that ``guided = D_c + delta`` and REG (``sampler.reg``) can modify any of them without copies.

Weights follow the one convention of ``sampler.weights``: ``D_c + w (D_c - D_u)``, which in eps units
is ``eps_c + w (eps_c - eps_u)`` because ``D = x - sigma eps``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Union, runtime_checkable

import torch

from .model import Denoiser
from .weights import WeightSchedule, as_schedule

__all__ = [
    "Guidance",
    "guided_output",
    "check_callable",
    "same_shape",
    "Unguided",
    "ClassifierGuidance",
    "CFG",
    "AutoGuidance",
    "TiltedMean",
]

Weight = Union[float, WeightSchedule]


@runtime_checkable
class Guidance(Protocol):
    cond: Denoiser

    def active(self, sigma: float) -> bool: ...

    def delta(self, x: torch.Tensor, sigma: float, d_cond: torch.Tensor) -> torch.Tensor: ...

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor: ...


def check_callable(name: str, f) -> None:
    """``ValueError`` naming ``name`` unless ``f`` is a callable (a denoiser ``(x, sigma) -> tensor``)."""
    if not callable(f):
        raise ValueError(f"{name} must be a callable (x, sigma) -> tensor, got {f!r}")


def same_shape(name: str, out, like: torch.Tensor) -> torch.Tensor:
    """A branch's prediction ``out`` when it is a tensor of the conditional prediction's shape, else ``ValueError``
    naming the branch (a broadcastable shape, [N, 1] for [N, d], would otherwise give a silently wrong result)."""
    if not isinstance(out, torch.Tensor) or out.shape != like.shape:
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{name} must return a tensor of cond's shape {tuple(like.shape)}, got {got}")
    return out


def guided_output(g, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The guided prediction of any guidance ``g`` of the contract: ``D_c + delta`` where ``g`` is active, else
    ``D_c`` (every rule's ``__call__``, written once)."""
    d_c = g.cond(x, sigma)
    if not g.active(sigma):
        return d_c
    return d_c + g.delta(x, sigma, d_c)


@dataclass(frozen=True)
class Unguided:
    """The conditional denoiser alone."""

    cond: Denoiser

    def __post_init__(self):
        check_callable("cond", self.cond)

    def active(self, sigma: float) -> bool:
        return False

    def delta(self, x: torch.Tensor, sigma: float, d_cond: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(d_cond)

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return self.cond(x, sigma)


@dataclass(frozen=True)
class _Weighted:
    def active(self, sigma: float) -> bool:
        return self.weight(sigma) != 0

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return guided_output(self, x, sigma)


@dataclass(frozen=True)
class ClassifierGuidance(_Weighted):
    """Classifier guidance (Dhariwal & Nichol 2021): ``eps_c - w sqrt(1 - abar) grad_{x_vp} log p(y | x_t)``.

    ``classifier_grad(x, sigma)`` returns ``grad_x log p(y | x)`` in VE coordinates (shape of ``x``); with
    ``grad_{x_ve} = sqrt(abar) grad_{x_vp}`` and ``sigma sqrt(abar) = sqrt(1 - abar)`` the term in ``D``
    units is ``delta = w sigma^2 grad_x log p(y | x)`` (Tweedie with a tilted score). It is called in the
    caller's grad mode (samplers run under ``torch.no_grad``): a callable that needs autograd must
    enable it itself.
    """

    cond: Denoiser
    classifier_grad: Callable[[torch.Tensor, float], torch.Tensor]
    weight: Weight = 1.0

    def __post_init__(self):
        check_callable("cond", self.cond)
        check_callable("classifier_grad", self.classifier_grad)
        object.__setattr__(self, "weight", as_schedule(self.weight))

    def delta(self, x: torch.Tensor, sigma: float, d_cond: torch.Tensor) -> torch.Tensor:
        grad = self.classifier_grad(x, sigma)
        if grad.shape != x.shape:
            raise ValueError(f"classifier_grad returned shape {tuple(grad.shape)}, expected {tuple(x.shape)}")
        return (self.weight(sigma) * float(sigma) ** 2) * grad


@dataclass(frozen=True)
class CFG(_Weighted):
    """Classifier-free guidance (Ho & Salimans 2022): ``D_c + w(sigma) (D_c - D_u)``.

    Where the weight is 0 (e.g. outside an :class:`~sampler.weights.Interval`) ``uncond`` is not called."""

    cond: Denoiser
    uncond: Denoiser
    weight: Weight = 1.0

    def __post_init__(self):
        check_callable("cond", self.cond)
        check_callable("uncond", self.uncond)
        object.__setattr__(self, "weight", as_schedule(self.weight))

    def delta(self, x: torch.Tensor, sigma: float, d_cond: torch.Tensor) -> torch.Tensor:
        return self.weight(sigma) * (d_cond - same_shape("uncond", self.uncond(x, sigma), d_cond))


@dataclass(frozen=True)
class AutoGuidance(_Weighted):
    """Autoguidance (Karras et al. 2024): ``D_c + w(sigma) (D_c - D_weak)`` with a weaker conditional model.

    ``weak`` is required (``ValueError`` when it is ``None``) and not called where the weight is 0."""

    cond: Denoiser
    weak: Denoiser
    weight: Weight = 1.0

    def __post_init__(self):
        check_callable("cond", self.cond)
        if self.weak is None:
            raise ValueError("autoguidance needs a weak model, got weak=None")
        check_callable("weak", self.weak)
        object.__setattr__(self, "weight", as_schedule(self.weight))

    def delta(self, x: torch.Tensor, sigma: float, d_cond: torch.Tensor) -> torch.Tensor:
        return self.weight(sigma) * (d_cond - same_shape("weak", self.weak(x, sigma), d_cond))


@dataclass(frozen=True)
class TiltedMean:
    """The exact optimal guidance of THEORY.md section 4: the guided denoiser outputs the reward-tilted
    posterior mean ``m_R = E_{p(x_0|x) R_0(x_0)}[x_0]``, supplied as ``tilted_mean(x, sigma)`` (for a
    Gaussian mixture the analytic core provides it; this module never imports it). ``delta = m_R - D_c``."""

    cond: Denoiser
    tilted_mean: Callable[[torch.Tensor, float], torch.Tensor]

    def __post_init__(self):
        check_callable("cond", self.cond)
        check_callable("tilted_mean", self.tilted_mean)

    def active(self, sigma: float) -> bool:
        return True

    def delta(self, x: torch.Tensor, sigma: float, d_cond: torch.Tensor) -> torch.Tensor:
        m_r = self.tilted_mean(x, sigma)
        if m_r.shape != d_cond.shape:
            raise ValueError(f"tilted_mean returned shape {tuple(m_r.shape)}, expected {tuple(d_cond.shape)}")
        return m_r.to(d_cond.dtype) - d_cond

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        # The optimum itself; computing D_c is only needed for the split into D_c + delta.
        m_r = self.tilted_mean(x, sigma)
        if m_r.shape != x.shape:
            raise ValueError(f"tilted_mean returned shape {tuple(m_r.shape)}, expected {tuple(x.shape)}")
        return m_r.to(x.dtype)
