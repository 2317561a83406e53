"""Guidance towards a measurement ``y = A x_0 + s n`` through the denoiser: DPS and a variance-corrected successor, as
guidance objects of the one protocol (``cond``, ``active(sigma)``, ``delta(x, sigma, d_cond)``, ``__call__``;
:mod:`sampler.guidance`).

The exact rule adds the score of ``p(y | x_t)`` (THEORY.md section 4: the optimum for ``R_0 = N(y; A x_0, s^2 I)``,
:func:`analytic.optimal_guidance`, whose guided output is the posterior mean ``E[x_0 | x_t, y]``). In contract
coordinates (``x`` VE, level ``sigma``) a score term ``g = grad_x log p(y | x)`` enters the denoiser as
``delta = sigma^2 g`` (Tweedie with a tilted score, as :class:`~sampler.guidance.ClassifierGuidance`); the rules
differ in how they approximate ``p(y | x)``:

- :class:`DPS` (Chung et al. 2023, "Diffusion posterior sampling for general noisy inverse problems", arXiv 2209.14687,
  Algorithm 1; equation numbers not quoted, the paper's text was not available here): ``p(y | x) ~ p(y | x_0 = D(x))``,
  the measurement read at the denoised estimate, its gradient through the denoiser by autograd. Two step conventions:

  * ``step="likelihood"``: ``g = zeta grad_x log N(y; A D(x), s^2 I) = -zeta grad_x |y - A D(x)|^2 / (2 s^2)``;
    ``zeta = 1`` is the plain DPS approximation of the posterior score.
  * ``step="normalised"``: the paper's step-size rule ``zeta_i = zeta' / |y - A D(x)|`` (Algorithm 1 and its
    appendix), ``g = -zeta grad_x |y - A D(x)|^2 / |y - A D(x)|`` per sample (= ``-2 zeta grad_x |y - A D(x)|``),
    independent of ``s``. The paper adds ``-zeta_i grad_{x_i} |y - A D|^2`` to ``x_{i-1}`` after each DDPM step;
    a score term ``g`` moves a DDPM step's mean by ``beta_i / sqrt(alpha_i) g`` (VP), so the paper's ``zeta'``
    equals ``zeta beta_i / sqrt(alpha_i)`` on that chain (the same ``zeta`` in VP and VE coordinates). The authors'
    code (``PosteriorSampling``, copied into many later code bases) subtracts ``scale grad_{x_i} |y - A D|``, the
    gradient of the norm itself, which is this form with ``zeta' = scale / 2``; it takes the norm over the whole
    batch, here it is per sample.

- :class:`MomentMatched` (variance-corrected): ``p(y | x) ~ N(y; A D(x), A C A^T + s^2 I)`` with ``C`` an estimate of
  ``Cov[x_0 | x]`` held fixed in the gradient, ``g = zeta J^T A^T (A C A^T + s^2 I)^{-1} (y - A D)``,
  ``J = dD/dx`` (a vector-Jacobian product):

  * ``cov="tweedie"``: ``C = sigma^2 J`` (second-order Tweedie), TMPD (Boys et al. 2023, "Tweedie moment projected
    diffusions for inverse problems", arXiv 2310.06721). Exact for a single Gaussian prior (``p(x_0 | x)`` is
    Gaussian with that mean and covariance, constant in ``x``). Builds the full Jacobian: ``d`` backward passes, for
    small ``d`` only.
  * ``cov=r2`` a callable ``sigma -> r^2``: ``C = r^2 I``, PiGDM (Song et al., "Pseudoinverse-guided diffusion models
    for inverse problems", ICLR 2023, OpenReview 9_gsMA8MRKQ; no arXiv id verified here), whose choice for data of
    unit variance is :func:`pigdm_variance`, ``r^2 = sigma^2 / (1 + sigma^2)``.

Samplers run under ``torch.no_grad``; these rules enable autograd themselves and call ``cond`` once more with a
graph in ``delta`` (``__call__`` calls it once).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

import torch

from .model import Denoiser
from .schedules import check_number
from .weights import WeightSchedule, as_schedule

__all__ = ["DPS", "DPS_STEPS", "MomentMatched", "pigdm_variance"]

Weight = Union[float, WeightSchedule]
DPS_STEPS = ("likelihood", "normalised")


def _check_callable(name: str, f) -> None:
    if not callable(f):
        raise ValueError(f"{name} must be callable, got {f!r}")


def _check_noise_std(s) -> float:
    s = check_number(s, "noise_std")
    if s <= 0:
        raise ValueError(f"noise_std must be > 0, got {s}")
    return s


def _as_measurement(y) -> torch.Tensor:
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"y must be a torch.Tensor [m] or [N, m], got {type(y).__name__}")
    if y.ndim not in (1, 2) or not torch.all(torch.isfinite(y)):
        raise ValueError(f"y must be a finite tensor of shape [m] or [N, m], got shape {tuple(y.shape)}")
    return y


def _check_y_batch(y: torch.Tensor, n: int, m: int, source: str) -> None:
    """``y`` [m] (one measurement for every sample) or [n, m] for a batch of ``n`` samples with ``m`` measured values
    each (``source`` says where ``m`` comes from); ``ValueError`` otherwise: broadcasting would silently mix rows."""
    if y.shape[-1] != m or (y.ndim == 2 and y.shape[0] != n):
        raise ValueError(f"y has shape {tuple(y.shape)}, but {source} gives {m} measured value(s) per sample for a "
                         f"batch of {n}: y must be [{m}] (one measurement for every sample) or [{n}, {m}]")


def _with_graph(t, name: str) -> torch.Tensor:
    """``t`` when it is a tensor carrying an autograd graph back to ``x``, else ``ValueError`` naming ``name`` (autograd
    would say only "element 0 of tensors does not require grad")."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must return a tensor, got {type(t).__name__}")
    if not t.requires_grad:
        raise ValueError(f"{name}'s output carries no autograd graph back to x (computed under torch.no_grad, "
                         "detached, through numpy, or not depending on x): the rule differentiates the measurement "
                         f"through {name} with torch.autograd")
    return t


def pigdm_variance(sigma: float) -> float:
    """PiGDM's ``r^2 = sigma^2 / (1 + sigma^2)``: ``Cov[x_0 | x]`` for a standard normal prior, in VE ``sigma``."""
    s = check_number(sigma, "sigma")
    return s * s / (1 + s * s)


class _Rule:
    """The shared protocol plumbing: ``guided = D_c + delta``; the delta is built with a graph through ``cond``."""

    def active(self, sigma: float) -> bool:
        return self.weight(sigma) != 0

    def delta(self, x: torch.Tensor, sigma: float, d_cond: torch.Tensor) -> torch.Tensor:
        return self._guided(x, sigma)[1].to(d_cond.dtype)

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        if not self.active(sigma):
            return self.cond(x, sigma)
        d_c, delta = self._guided(x, sigma)
        return (d_c + delta).to(x.dtype)

    def _guided(self, x, sigma):  # pragma: no cover - every rule defines it
        raise NotImplementedError


@dataclass(frozen=True)
class DPS(_Rule):
    """Diffusion posterior sampling (module docstring): ``delta = sigma^2 g`` with ``g`` the gradient of the
    measurement read at ``D(x)``.

    Args:
        cond: the (unconditional prior) denoiser ``D(x, sigma)``.
        forward: ``x0 [N, ...] -> A x0 [N, m]`` (any operator differentiable by torch autograd; DPS is defined for
            non-linear ones too). ``ValueError`` at the call when it returns another shape or breaks the graph.
        y: the measurement, [m] (the same for every sample) or [N, m] (one per sample of the batch); checked against
            ``forward``'s ``m`` and the batch at the call.
        noise_std: ``s > 0`` (used by ``step="likelihood"``).
        weight: ``zeta``, a number or a schedule ``sigma -> zeta``.
        step: ``"likelihood"`` or ``"normalised"`` (:data:`DPS_STEPS`).
    """

    cond: Denoiser
    forward: Callable[[torch.Tensor], torch.Tensor]
    y: torch.Tensor
    noise_std: float
    weight: Weight = 1.0
    step: str = "likelihood"

    def __post_init__(self):
        _check_callable("cond", self.cond)
        _check_callable("forward", self.forward)
        _as_measurement(self.y)
        object.__setattr__(self, "noise_std", _check_noise_std(self.noise_std))
        object.__setattr__(self, "weight", as_schedule(self.weight))
        if self.step not in DPS_STEPS:
            raise ValueError(f"unknown step {self.step!r}; choose one of {DPS_STEPS}")

    def _guided(self, x: torch.Tensor, sigma: float):
        s = float(sigma)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            d = _with_graph(self.cond(xg, s), "cond")
            f = self.forward(d)
            if not isinstance(f, torch.Tensor) or f.ndim != 2 or f.shape[0] != x.shape[0]:
                got = f"shape {tuple(f.shape)}" if isinstance(f, torch.Tensor) else type(f).__name__
                raise ValueError(f"forward must return a tensor [N, m] = [{x.shape[0]}, m] for a batch of "
                                 f"{x.shape[0]}, got {got}")
            _with_graph(f, "forward")
            _check_y_batch(self.y, x.shape[0], f.shape[1], f"forward (output of shape {tuple(f.shape)})")
            r = self.y.to(d.dtype) - f  # [N, m]
            sq = (r**2).sum(1)  # [N]
            (grad,) = torch.autograd.grad(sq.sum(), xg)
        if self.step == "likelihood":
            g = -grad / (2 * self.noise_std**2)
        elif self.step == "normalised":
            norm = sq.detach().sqrt().clamp(min=torch.finfo(sq.dtype).tiny)
            g = -grad / norm.reshape((-1,) + (1,) * (x.ndim - 1))
        else:  # pragma: no cover - checked in __post_init__
            raise ValueError(f"unknown step {self.step!r}")
        return d.detach(), (self.weight(s) * s * s) * g


@dataclass(frozen=True)
class MomentMatched(_Rule):
    """Variance-corrected measurement guidance (module docstring): ``p(y | x) ~ N(y; A D, A C A^T + s^2 I)``.

    Args:
        cond: the prior denoiser ``D(x, sigma)``; inputs [N, ...] are flattened to [N, d].
        A: [m, d] the linear forward operator.
        y: [m] (the same for every sample) or [N, m] (one per sample; the batch is checked at the call).
        noise_std: ``s > 0``.
        weight: ``zeta`` (1: the approximation as published), number or schedule.
        cov: ``"tweedie"`` (TMPD, ``C = sigma^2 dD/dx``) or a callable ``sigma -> r^2`` (``C = r^2 I``; PiGDM with
            :func:`pigdm_variance`).
    """

    cond: Denoiser
    A: torch.Tensor
    y: torch.Tensor
    noise_std: float
    weight: Weight = 1.0
    cov: Union[str, Callable[[float], float]] = "tweedie"

    def __post_init__(self):
        _check_callable("cond", self.cond)
        if not isinstance(self.A, torch.Tensor) or self.A.ndim != 2 or not torch.all(torch.isfinite(self.A)):
            raise ValueError(f"A must be a finite torch.Tensor [m, d], got {self.A!r:.80}")
        y = _as_measurement(self.y)
        if y.shape[-1] != self.A.shape[0]:
            raise ValueError(f"y has {y.shape[-1]} entries per sample but A has {self.A.shape[0]} rows")
        object.__setattr__(self, "noise_std", _check_noise_std(self.noise_std))
        object.__setattr__(self, "weight", as_schedule(self.weight))
        if not (self.cov == "tweedie" or (callable(self.cov) and not isinstance(self.cov, str))):
            raise ValueError(f"cov must be 'tweedie' or a callable sigma -> r^2, got {self.cov!r}")

    def _guided(self, x: torch.Tensor, sigma: float):
        s = float(sigma)
        N = x.shape[0]
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            d = _with_graph(self.cond(xg, s), "cond")
            D = d.flatten(1)  # [N, d]
            if D.shape[1] != self.A.shape[1]:
                raise ValueError(f"the denoiser output has {D.shape[1]} entries per sample but A has "
                                 f"{self.A.shape[1]} columns")
            _check_y_batch(self.y, N, self.A.shape[0], f"A (shape {tuple(self.A.shape)})")
            A = self.A.to(D.dtype)
            eye = torch.eye(A.shape[0], dtype=D.dtype, device=D.device)
            if self.cov == "tweedie":
                J = torch.stack([torch.autograd.grad(D[:, i].sum(), xg, retain_graph=True)[0].reshape(N, -1)
                                 for i in range(D.shape[1])], 1)  # [N, d, d], J[n, i, j] = dD_i / dx_j
                C = s * s * 0.5 * (J + J.transpose(1, 2))
                Cy = A @ C @ A.T + self.noise_std**2 * eye  # [N, m, m]
            else:
                r2 = check_number(self.cov(s), "cov(sigma)")
                if r2 < 0:
                    raise ValueError(f"cov(sigma) must be >= 0, got {r2} at sigma={s}")
                Cy = (r2 * A @ A.T + self.noise_std**2 * eye).expand(N, -1, -1)
            r = self.y.to(D.dtype) - D @ A.T  # [N, m]
            u = torch.linalg.solve(Cy.detach(), r.detach().unsqueeze(-1)).squeeze(-1) @ A  # [N, d]
            (g,) = torch.autograd.grad((D * u).sum(), xg)  # J^T u
        return d.detach(), (self.weight(s) * s * s) * g
