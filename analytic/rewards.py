"""Guidance rewards for Gaussian mixtures (THEORY.md section 2).

Every guidance studied here is a ratio of two mixture densities raised to the weight ``w``:

| reward | R_0(x_0) | R_t(x_t) | term added to eps_c |
|---|---|---|---|
| ``CFGReward(cond, uncond, w)`` | ``(p_c / p_u)^w`` | ``(p_c,t / p_u,t)^w`` | ``w (eps_c - eps_u)`` |
| ``AutoGReward(cond, bad, w)`` | ``(p_c / p_bad)^w`` | ``(p_c,t / p_bad,t)^w`` | ``w (eps_c - eps_bad)`` |
| ``ClassifierReward(classes, priors, y, w)`` | ``p(y | x_0)^w`` | ``p_t(y | x_t)^w`` | ``-w sqrt(1-abar) grad log p_t(y|x_t)`` |

The Bayes classifier ``p(y | x) = pi_y p_y(x) / sum_c pi_c p_c(x)`` is the ratio of the class-y mixture
to the class marginal, times the constant ``pi_y``, so all three share :class:`MixtureRatioReward`.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Protocol, Sequence, runtime_checkable

import torch

from sampler.schedules import check_number

from .mixture import GaussianMixture, check_abar

__all__ = [
    "Reward",
    "Quadratic",
    "MixtureRatioReward",
    "CFGReward",
    "AutoGReward",
    "ClassifierReward",
    "degrade",
    "check_weight",
]


class Quadratic(NamedTuple):
    """``log R_0(x) = -0.5 x^T A x + b^T x + c`` exactly."""

    A: torch.Tensor  # [d, d]
    b: torch.Tensor  # [d]
    c: float


@runtime_checkable
class Reward(Protocol):
    """What the exact routines need of a reward ``R_0`` on the clean sample (THEORY.md section 2).

    Every reward of this module is one; a user reward implementing these methods works everywhere."""

    @property
    def dim(self) -> int: ...

    def log_r0(self, x0: torch.Tensor) -> torch.Tensor:
        """``log R_0(x_0)``. [N, d] -> [N]"""

    def log_rt(self, x_t: torch.Tensor, abar: float) -> torch.Tensor:
        """``log R_t(x_t)``, the present-time reward guidance applies at level ``abar``. [N, d] -> [N]"""

    def present(self, x_t: torch.Tensor, abar: float) -> torch.Tensor:
        """The present-time guidance term ``-sqrt(1 - abar) grad log R_t`` (eps units). [N, d]"""

    def tail_curvature(self, u: torch.Tensor) -> torch.Tensor:
        """``tau(u)``: ``log R_0(rho u) = -rho^2/2 tau(u) + O(rho)`` along unit directions u [M, d] -> [M]."""

    def quadratic(self) -> "Quadratic | None":
        """The exact quadratic form of ``log R_0`` when it is one, else ``None``."""

    def length_scale(self) -> float:
        """The shortest length over which ``log R_0`` changes by O(1): quadrature spacings resolve it."""

    def centres(self) -> torch.Tensor:
        """Points where the reward's features sit (quadrature grids cover them). [M, d]"""


def check_reward(reward, dim: int) -> None:
    """``ValueError`` unless ``reward`` implements :class:`Reward` in dimension ``dim``."""
    if not isinstance(reward, Reward):
        missing = [m for m in ("dim", "log_r0", "log_rt", "present", "tail_curvature", "quadratic", "length_scale",
                               "centres") if not hasattr(reward, m)]
        raise ValueError(f"{type(reward).__name__} is not an analytic.Reward (missing {missing})")
    if reward.dim != dim:
        raise ValueError(f"reward has dimension {reward.dim} but the model has dimension {dim}")


def check_weight(w) -> float:
    """The guidance weight ``w`` as a finite float, or ``ValueError`` (every reward validates it here)."""
    return check_number(w, "the guidance weight w")


def _min_quadratic_form(mixture: GaussianMixture, u: torch.Tensor) -> torch.Tensor:
    """``min_k u^T S_k^{-1} u`` for unit directions u [M, d] -> [M]: the leading tail curvature of
    ``-log p``, since ``log p(rho u) = -rho^2/2 min_k u^T S_k^{-1} u + O(rho)``."""
    P = mixture.precisions.to(u.device)
    return torch.einsum("mi,kij,mj->mk", u, P, u).amin(dim=1)


class MixtureRatioReward:
    """``R_0 = exp(log_const) (p_num / p_den)^w`` and its present-time version at noise level ``abar``.

    Attributes ``num``, ``den`` (GaussianMixture), ``w`` (float), ``log_const`` (float).
    """

    def __init__(self, num: GaussianMixture, den: GaussianMixture, w: float, log_const: float = 0.0):
        if not isinstance(num, GaussianMixture) or not isinstance(den, GaussianMixture):
            raise ValueError("num and den must be analytic.GaussianMixture instances")
        if num.dim != den.dim:
            raise ValueError(f"num has dimension {num.dim} but den has dimension {den.dim}")
        self.num, self.den = num, den
        self.w = check_weight(w)
        self.log_const = float(log_const)

    @property
    def dim(self) -> int:
        return self.num.dim

    def log_r0(self, x0) -> torch.Tensor:
        """``log R_0(x_0)``. [N, d] -> [N]"""
        return self.w * (self.num.log_prob(x0) - self.den.log_prob(x0)) + self.log_const

    def log_rt(self, x_t, abar) -> torch.Tensor:
        """``log R_t(x_t)``, the same ratio of the noised mixtures. [N, d] -> [N]"""
        a = check_abar(abar)
        return self.w * (self.num.noised(a).log_prob(x_t) - self.den.noised(a).log_prob(x_t)) + self.log_const

    def grad_log_rt(self, x_t, abar) -> torch.Tensor:
        """``grad_{x_t} log R_t(x_t)`` in closed form. [N, d]"""
        return self.w * (self.num.score(x_t, abar) - self.den.score(x_t, abar))

    def present(self, x_t, abar) -> torch.Tensor:
        """The present-time guidance term ``-sqrt(1 - abar) grad log R_t`` (eps units). [N, d]"""
        return self.w * (self.num.eps(x_t, abar) - self.den.eps(x_t, abar))

    def quadratic(self) -> Quadratic | None:
        """The exact quadratic form of ``log R_0`` when ``num`` and ``den`` are single Gaussians, else None."""
        if self.num.n_components != 1 or self.den.n_components != 1:
            return None
        Pn, Pd = self.num.precisions[0], self.den.precisions[0]
        mn, md = self.num.means[0], self.den.means[0]
        half_logdet = lambda m: torch.log(torch.diagonal(m.chol[0])).sum()  # noqa: E731
        c = self.w * ((-0.5 * mn @ Pn @ mn - half_logdet(self.num)) - (-0.5 * md @ Pd @ md - half_logdet(self.den)))
        return Quadratic(A=self.w * (Pn - Pd), b=self.w * (Pn @ mn - Pd @ md), c=float(c) + self.log_const)

    def tail_curvature(self, u: torch.Tensor) -> torch.Tensor:
        """``tau(u)`` with ``log R_0(rho u) = -rho^2/2 tau(u) + O(rho)`` along unit directions u [M, d] -> [M]."""
        return self.w * (_min_quadratic_form(self.num, u) - _min_quadratic_form(self.den, u))

    def length_scale(self) -> float:
        """The narrowest component standard deviation of ``num`` and ``den``, over ``sqrt(1 + |w|)``
        (``w`` sharpens the ratio's features)."""
        min_std = min(torch.linalg.eigvalsh(m.covs).min().sqrt().item() for m in (self.num, self.den))
        return min_std / math.sqrt(1 + abs(self.w))

    def centres(self) -> torch.Tensor:
        """Every component mean of ``num`` and ``den``. [K_num + K_den, d]"""
        return torch.cat([self.num.means, self.den.means])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(w={self.w}, num={self.num!r}, den={self.den!r})"


class CFGReward(MixtureRatioReward):
    """Classifier-free guidance: ``R_0 = (p(x|y) / p(x))^w``, term ``w (eps_c - eps_u)``."""

    def __init__(self, cond: GaussianMixture, uncond: GaussianMixture, w: float):
        super().__init__(cond, uncond, w)

    @property
    def cond(self) -> GaussianMixture:
        return self.num

    @property
    def uncond(self) -> GaussianMixture:
        return self.den


class AutoGReward(MixtureRatioReward):
    """Autoguidance (Karras et al. 2024): ``R_0 = (p(x|y) / p_bad(x|y))^w``, term ``w (eps_c - eps_bad)``."""

    def __init__(self, cond: GaussianMixture, bad: GaussianMixture, w: float):
        super().__init__(cond, bad, w)

    @property
    def cond(self) -> GaussianMixture:
        return self.num

    @property
    def bad(self) -> GaussianMixture:
        return self.den


class ClassifierReward(MixtureRatioReward):
    """Classifier guidance with the exact Bayes classifier: ``R_0 = p(y | x_0)^w``,
    ``p(y | x) = priors_y p_y(x) / sum_c priors_c p_c(x)``; at noise level ``abar`` the same classifier
    of the noised class mixtures."""

    def __init__(self, classes: Sequence[GaussianMixture], priors, y: int, w: float):
        classes = list(classes)
        if len(classes) < 2:
            raise ValueError(f"need at least two classes, got {len(classes)}")
        if int(y) != y or not 0 <= y < len(classes):
            raise ValueError(f"y must be a class index in [0, {len(classes)}), got {y}")
        marginal = GaussianMixture.concat(classes, priors)  # validates priors
        priors = torch.as_tensor(priors, dtype=torch.float64)
        prior_y = (priors[int(y)] / priors.sum()).item()
        if prior_y <= 0:
            raise ValueError(f"class {y} has prior 0")
        w = check_weight(w)
        super().__init__(classes[int(y)], marginal, w, log_const=w * math.log(prior_y))
        self.classes, self.priors, self.y = classes, priors / priors.sum(), int(y)

    @property
    def cond(self) -> GaussianMixture:
        return self.num


def degrade(mixture: GaussianMixture, cov_scale: float = 2.0) -> GaussianMixture:
    """A "bad" model for autoguidance: the same mixture with every covariance multiplied by
    ``cov_scale`` (> 1 spreads it out, as an under-trained or smaller model tends to)."""
    cov_scale = float(cov_scale)
    if not math.isfinite(cov_scale) or cov_scale <= 0:
        raise ValueError(f"cov_scale must be a positive number, got {cov_scale}")
    return mixture.with_covs(cov_scale * mixture.covs)
