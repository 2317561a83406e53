"""Linear-Gaussian inverse problems on a Gaussian-mixture prior: the measurement reward, the exact posterior and
DPS's per-level bias (issue 23 item 2; THEORY.md sections 4-5).

The measurement ``y = A x_0 + s n`` (``A`` [m, d], ``n ~ N(0, I_m)``, ``s > 0``) is the reward

    R_0(x_0) = N(y; A x_0, s^2 I),   log R_0 = -|y - A x_0|^2 / (2 s^2) - m/2 log(2 pi s^2),

the exponential of a quadratic, so the optimum of :func:`analytic.optimal_guidance` is closed form in any d, and
the tilted law ``p(x_0) R_0 / Z`` is the posterior ``p(x_0 | y)``, itself a mixture (per component Gaussian
conditioning, the Kalman update):

    S_y,k = A S_k A^T + s^2 I,   G_k = S_k A^T S_y,k^{-1},
    mu_k' = mu_k + G_k (y - A mu_k),   S_k' = (I - G_k A) S_k (I - G_k A)^T + s^2 G_k G_k^T (Joseph form),
    pi_k' ∝ pi_k N(y; A mu_k, S_y,k),   Z = p(y) = sum_k pi_k N(y; A mu_k, S_y,k).

DPS (Chung et al. 2023, arXiv 2209.14687, Algorithm 1) replaces ``log E_t = log E[R_0(x_0) | x_t]`` by
``log R_0(x0_hat(x_t))``, the reward at the posterior mean; :func:`dps_gap` gives both and their gradients at points,
exactly, and :func:`dps_bias` their gap per noise level averaged over the exact guided marginal.
"""
from __future__ import annotations

import math
import sys
from typing import NamedTuple

import torch

from sampler.device import check_generator
from sampler.schedules import check_number

from .golden import optimal_guidance
from .mixture import GaussianMixture, as_float64, check_abar, check_points
from .rewards import Quadratic, check_reward

__all__ = ["MeasurementReward", "DPSGap", "dps_gap", "DPSBias", "dps_bias", "MAX_DPS_BYTES"]


class MeasurementReward:
    """``R_0(x_0) = N(y; A x_0, s^2 I)``: a linear-Gaussian measurement as an :class:`analytic.Reward`.

    Args:
        A: [m, d] the forward operator (any m >= 1: a projection of a 2-D law to 1-D is ``[[1, 0]]``).
        y: [m] the measurement.
        s: the measurement noise standard deviation, > 0.

    ``log_rt`` / ``present`` (the present-time reward every reward of this package offers) is the same measurement
    read on the noised signal: with ``x = x_t / sqrt(abar) = x_0 + sigma n``, ``sigma^2 = (1 - abar) / abar``, and a
    flat prior on ``x_0``, ``R_t(x_t) = N(y; A x, s^2 I + sigma^2 A A^T)``; it equals ``R_0`` at ``abar = 1``. DPS,
    which reads ``R_0`` at the denoised estimate instead, is :func:`dps_gap`.
    """

    def __init__(self, A, y, s):
        A = as_float64(A, "A")
        if A.ndim != 2 or A.shape[0] < 1 or A.shape[1] < 1:
            raise ValueError(f"A must have shape [m, d] with m, d >= 1, got {tuple(A.shape)}")
        y = as_float64(y, "y")
        y = y.reshape(-1) if y.ndim == 0 else y
        if y.shape != (A.shape[0],):
            raise ValueError(f"y must have shape [m={A.shape[0]}], got {tuple(y.shape)}")
        for name, t in (("A", A), ("y", y)):
            if not torch.all(torch.isfinite(t)):
                raise ValueError(f"{name} has non-finite entries")
        s = check_number(s, "s (the measurement noise std)")
        if s <= 0:
            raise ValueError(f"s (the measurement noise std) must be > 0, got {s}")
        if s * s < sys.float_info.min:
            raise ValueError(f"s (the measurement noise std) = {s:.3g} is too small: s^2 underflows float64")
        curvature = A.T @ A / (s * s)  # the reward's curvature (log R_0 = -x^T (A^T A / s^2) x / 2 + ...)
        if not torch.all(torch.isfinite(curvature)):
            raise ValueError(f"A has entries up to {A.abs().max().item():.3g} against s={s:.3g}: the reward's "
                             f"curvature A^T A / s^2 overflows float64")
        self.A, self.y, self.s = A, y, s

    @property
    def dim(self) -> int:
        return self.A.shape[1]

    @property
    def m(self) -> int:
        return self.A.shape[0]

    def _log_normal(self, x: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
        """``log N(y; A x, cov)`` for x [N, d], cov [m, m] -> [N]."""
        L = torch.linalg.cholesky(cov)
        r = self.y - x @ self.A.T  # [N, m]
        z = torch.linalg.solve_triangular(L, r.T, upper=False)  # [m, N]
        logdet = 2 * torch.log(torch.diagonal(L)).sum()
        return -0.5 * ((z**2).sum(0) + logdet + self.m * math.log(2 * math.pi))

    def log_r0(self, x0) -> torch.Tensor:
        """``log N(y; A x_0, s^2 I)``. [N, d] -> [N]"""
        x0 = check_points(x0, self.dim, None, "x0")
        r = self.y - x0 @ self.A.T
        return -0.5 * (r**2).sum(-1) / self.s**2 - 0.5 * self.m * math.log(2 * math.pi * self.s**2)

    def _present_cov(self, a: float) -> torch.Tensor:
        eye = torch.eye(self.m, dtype=torch.float64)
        return self.s**2 * eye + (1 - a) / a * self.A @ self.A.T

    def log_rt(self, x_t, abar) -> torch.Tensor:
        """``log N(y; A x_t / sqrt(abar), s^2 I + (1 - abar)/abar A A^T)``. [N, d] -> [N]"""
        a = check_abar(abar)
        x_t = check_points(x_t, self.dim, None, "x_t")
        return self._log_normal(x_t / math.sqrt(a), self._present_cov(a))

    def present(self, x_t, abar) -> torch.Tensor:
        """``-sqrt(1 - abar) grad_{x_t} log R_t`` in closed form (eps units). [N, d]"""
        a = check_abar(abar)
        x_t = check_points(x_t, self.dim, None, "x_t")
        r = self.y - (x_t / math.sqrt(a)) @ self.A.T  # [N, m]
        sol = torch.linalg.solve(self._present_cov(a), r.T).T  # [N, m]
        return -math.sqrt(1 - a) / math.sqrt(a) * sol @ self.A

    def quadratic(self) -> Quadratic:
        """``log R_0 = -x^T (A^T A / s^2) x / 2 + (A^T y / s^2)^T x - |y|^2 / (2 s^2) - m/2 log(2 pi s^2)``."""
        s2 = self.s**2
        c = -0.5 * float(self.y @ self.y) / s2 - 0.5 * self.m * math.log(2 * math.pi * s2)
        return Quadratic(A=self.A.T @ self.A / s2, b=self.A.T @ self.y / s2, c=c)

    def tail_curvature(self, u: torch.Tensor) -> torch.Tensor:
        """``tau(u) = |A u|^2 / s^2`` (0 along the null space of A). [M, d] -> [M]"""
        return ((u @ self.A.T) ** 2).sum(-1) / self.s**2

    def length_scale(self) -> float:
        """``s`` over the largest singular value of ``A``: the narrowest width of ``R_0`` along any direction."""
        top = torch.linalg.matrix_norm(self.A, ord=2).item()
        return self.s / top if top > 0 else math.inf

    def centres(self) -> torch.Tensor:
        """The minimum-norm least-squares solution ``A^+ y``, where ``R_0`` peaks. [1, d]"""
        return (torch.linalg.pinv(self.A) @ self.y)[None]

    # --- the exact posterior ------------------------------------------------------------------------------
    def _conditioned(self, prior: GaussianMixture):
        if not isinstance(prior, GaussianMixture):
            raise ValueError(f"prior must be an analytic.GaussianMixture, got {type(prior).__name__}")
        check_reward(self, prior.dim)
        A, S, mu = self.A.to(prior.device), prior.covs, prior.means
        S_y = A @ S @ A.T + self.s**2 * torch.eye(self.m, dtype=torch.float64, device=prior.device)  # [K, m, m]
        S_y = 0.5 * (S_y + S_y.transpose(-1, -2))
        if not torch.all(torch.isfinite(S_y)):
            raise ValueError(f"A S_k A^T + s^2 I overflows float64 (A has entries up to {A.abs().max().item():.3g}, "
                             f"the prior's covariances up to {S.abs().max().item():.3g}): rescale A and y together")
        L = torch.linalg.cholesky(S_y)
        G = torch.cholesky_solve(A @ S, L).transpose(-1, -2)  # S A^T S_y^{-1}, [K, d, m]
        innov = self.y.to(prior.device) - mu @ A.T  # [K, m]
        z = torch.linalg.solve_triangular(L, innov.unsqueeze(-1), upper=False).squeeze(-1)
        log_lik = -0.5 * ((z**2).sum(-1) + 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
                          + self.m * math.log(2 * math.pi))  # log N(y; A mu_k, S_y,k), [K]
        return G, innov, log_lik

    def posterior(self, prior: GaussianMixture) -> GaussianMixture:
        """The exact posterior ``p(x_0 | y) ∝ prior(x_0) R_0(x_0)`` (module docstring), a mixture of as many
        components as the prior."""
        G, innov, log_lik = self._conditioned(prior)
        eye = torch.eye(prior.dim, dtype=torch.float64, device=prior.device)
        IGA = eye - G @ self.A.to(prior.device)  # [K, d, d]
        covs = IGA @ prior.covs @ IGA.transpose(-1, -2) + self.s**2 * G @ G.transpose(-1, -2)
        means = prior.means + (G @ innov.unsqueeze(-1)).squeeze(-1)
        log_w = torch.log_softmax(prior.log_weights + log_lik, 0)
        try:
            return GaussianMixture(log_w.exp(), means, 0.5 * (covs + covs.transpose(-1, -2)), device=prior.device)
        except ValueError as e:  # e.g. a posterior narrower than float64 can hold along A: name the measurement
            raise ValueError(f"the posterior p(x_0 | y) of this measurement (s={self.s:.3g}, A with entries up to "
                             f"{self.A.abs().max().item():.3g}) is not a valid mixture in float64: {e}") from e

    def log_evidence(self, prior: GaussianMixture) -> float:
        """``log p(y) = log sum_k pi_k N(y; A mu_k, A S_k A^T + s^2 I)``: the normaliser ``Z`` of the tilted law."""
        _, _, log_lik = self._conditioned(prior)
        return torch.logsumexp(prior.log_weights + log_lik, 0).item()

    def __repr__(self) -> str:
        return f"MeasurementReward(m={self.m}, d={self.dim}, s={self.s})"


class DPSGap(NamedTuple):
    """Exact optimum against DPS's surrogate at N points of one level. Tensors float64, detached."""

    log_E: torch.Tensor  # [N] log E[R_0(x_0) | x_t] (exact)
    log_r_hat: torch.Tensor  # [N] log R_0(x0_hat(x_t)), DPS's surrogate
    gap: torch.Tensor  # [N] log_E - log_r_hat
    grad_exact: torch.Tensor  # [N, d] grad_{x_t} log E_t
    grad_dps: torch.Tensor  # [N, d] grad_{x_t} log R_0(x0_hat(x_t)) (autograd through the posterior mean)
    field_error: torch.Tensor  # [N, d] DPS's term minus the optimal one, eps units: -sqrt(1-abar) (dps - exact)
    err_log_E: torch.Tensor  # [N] error estimate of log_E (and of gap): 0 on the closed-form route
    err_grad: torch.Tensor  # [N, d] error estimate of grad_exact (and of field_error / sqrt(1-abar))


def dps_gap(prior: GaussianMixture, reward, x_t, abar, **optimal_kw) -> DPSGap:
    """DPS's bias at points ``x_t`` [N, d] (VP) of level ``abar``: ``log E_t`` and its gradient from
    :func:`analytic.optimal_guidance` (closed form for a :class:`MeasurementReward`; ``optimal_kw`` are passed on for
    other rewards) against ``log R_0(x0_hat)`` with ``x0_hat = E[x_0 | x_t]`` of ``prior`` and its gradient through
    ``x0_hat`` (DPS, arXiv 2209.14687, Algorithm 1 with the plain likelihood step)."""
    a = check_abar(abar)
    check_reward(reward, prior.dim)
    x_t = check_points(x_t, prior.dim, prior.device, "x_t").detach()
    og = optimal_guidance(prior, reward, x_t, a, **optimal_kw)
    x = x_t.clone().requires_grad_(True)
    with torch.enable_grad():
        log_r_hat = reward.log_r0(prior.posterior(x, a).mean())
        (grad_dps,) = torch.autograd.grad(log_r_hat.sum(), x) if x.shape[0] else (torch.zeros_like(x),)
    log_r_hat = log_r_hat.detach()
    return DPSGap(og.log_E, log_r_hat, og.log_E - log_r_hat, og.grad_log_E, grad_dps,
                  -math.sqrt(1 - a) * (grad_dps - og.grad_log_E), og.err_log_E, og.err_grad)


class DPSBias(NamedTuple):
    """DPS's bias per noise level, averaged over ``x_t`` drawn from the exact guided marginal ``p_t(x_t | y)``.
    Each value [L] carries its error: the Monte Carlo standard error plus the mean exact-route error."""

    abar: torch.Tensor  # [L]
    mean_gap: torch.Tensor  # [L] E[log E_t - log R_0(x0_hat)]
    err_mean_gap: torch.Tensor  # [L]
    rms_field_error: torch.Tensor  # [L] sqrt(E |DPS term - optimal term|^2), eps units
    err_rms_field_error: torch.Tensor  # [L]
    n: int  # draws per level


_BYTES_PER_DRAW = 64  # memory of one draw per unit of K (d^2 + d): the exact route's [n, K, d, d] intermediates
MAX_DPS_BYTES = 2**31  # the most memory dps_bias may take for the draws of one level (2 GiB)


def dps_bias(prior: GaussianMixture, reward: MeasurementReward, abars, *, n: int = 2048,
             generator: torch.Generator | None = None) -> DPSBias:
    """:func:`dps_gap` per level ``abar`` in ``abars`` [L], at ``n`` draws of the guided marginal, which for a
    measurement is the exact posterior ``reward.posterior(prior)`` noised to that level.

    The draws of a level are evaluated at once, about ``64 K (d^2 + d)`` bytes each (K components in d
    dimensions; measured 58): ``ValueError`` naming ``n`` when that exceeds ``MAX_DPS_BYTES`` (2 GiB; 2.8 million
    draws for K = 2, d = 2), before anything is allocated. Not chunked: the standard error falls as
    ``1 / sqrt(n)``, so more draws than that buy almost nothing."""
    if not isinstance(reward, MeasurementReward):
        raise ValueError(f"reward must be an analytic.MeasurementReward (its guided marginal is the posterior), got "
                         f"{type(reward).__name__}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    if not isinstance(prior, GaussianMixture):
        raise ValueError(f"prior must be an analytic.GaussianMixture, got {type(prior).__name__}")
    generator = check_generator(generator, prior.device)
    per_draw = _BYTES_PER_DRAW * prior.n_components * (prior.dim**2 + prior.dim)
    if n * per_draw > MAX_DPS_BYTES:
        raise ValueError(f"n={n} draws per level would need about {n * per_draw / 2**30:.3g} GiB ({per_draw} bytes per "
                         f"draw for K={prior.n_components} components in d={prior.dim}), more than MAX_DPS_BYTES = "
                         f"{MAX_DPS_BYTES / 2**30:g} GiB: use at most {MAX_DPS_BYTES // per_draw} draws")
    levels = [check_abar(a) for a in as_float64(abars, "abars").reshape(-1).tolist()]
    if not levels:
        raise ValueError("abars is empty")
    post = reward.posterior(prior)
    rows = []
    for a in levels:
        x_t = post.noised(a).sample(n, generator)
        g = dps_gap(prior, reward, x_t, a)
        gap, sq = g.gap, (g.field_error**2).sum(-1)
        rms = sq.mean().sqrt()
        se_sq = sq.std() / math.sqrt(n)
        err_exact_field = math.sqrt(1 - a) * g.err_grad.norm(dim=-1).mean()
        rows.append((gap.mean(), gap.std() / math.sqrt(n) + g.err_log_E.mean(), rms,
                     se_sq / (2 * rms.clamp(min=1e-300)) + err_exact_field))
    cols = [torch.stack([r[i] for r in rows]).detach() for i in range(4)]
    return DPSBias(torch.tensor(levels, dtype=torch.float64), *cols, n)
