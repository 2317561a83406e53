"""Gaussian mixtures that stay exact in any dimension: a low-dimensional subspace plus isotropic spread.

THEORY.md section 9. Every component mean lies in an ``m``-dimensional subspace ``U`` (orthonormal basis
``Q`` [d, m], ``m`` = 1 or 2) and every covariance is ``S_k = Q A_k Q^T + s_k^2 P_perp`` (``P_perp = I - Q Q^T``,
complement dimension ``n = d - m``). Write ``x = Q u + v`` with ``u = Q^T x`` and ``v = P_perp x``, ``r = |v|``.

Reduction, in THEORY.md's terms:

- Noising keeps the form (section 5 with ``S_k`` block-diagonal): ``x_t`` has components
  ``N(sqrt(abar) Q b_k, Q C_k Q^T + tau_k^2 P_perp)`` with ``C_k = abar A_k + (1 - abar) I_m`` and
  ``tau_k^2 = abar s_k^2 + 1 - abar``. Each component density factorises into
  ``N_m(u; sqrt(abar) b_k, C_k) (2 pi tau_k^2)^(-n/2) exp(-r^2 / (2 tau_k^2))``, so log-densities cost O(d m)
  per point and no ``d x d`` matrix is ever formed.
- The score is ``Q alpha + beta v`` with ``alpha = -sum_k p_k C_k^{-1} (u - sqrt(abar) b_k)`` and
  ``beta = -sum_k p_k / tau_k^2`` (``p_k`` the component responsibilities): every field is ``Q a(u, r) + b(u, r) v``.
- Posterior ``p(x_0 | x_t)`` (section 5, Kalman form): component ``k`` has weight ``p_k(x_t)``; given it,
  ``u_0 ~ N(b_k + sqrt(abar) A_k C_k^{-1} (u - sqrt(abar) b_k), (1 - abar) A_k C_k^{-1})`` and, independently,
  ``v_0 ~ N(c_k v, kappa_k^2 P_perp)`` with ``c_k = sqrt(abar) s_k^2 / tau_k^2`` and
  ``kappa_k^2 = (1 - abar) s_k^2 / tau_k^2``.
- The Hessian of ``log p_t`` is ``lam I + W G W^T`` with ``W = [Q, v]`` [d, m + 1]: the within-component
  curvatures give ``lam = -sum_k p_k / tau_k^2`` on the complement and ``-sum_k p_k C_k^{-1}`` on ``U``, and the
  responsibilities' spread adds ``sum_k p_k e_k e_k^T`` with ``e_k = (alpha_k - alpha, beta_k - beta)`` in ``W``'s
  coordinates. So the eps Jacobian ``J = -sqrt(1 - abar) Hess`` (section 6) is "scalar times identity plus rank
  m + 1", and REG's ``J^T 1``, ``J^T g`` and ``diag J`` cost O(d m^2) per point (:class:`EpsJacobian`).
- Ratio rewards ``(p_num / p_den)^w`` of two members on the same ``Q`` depend on ``x_0`` through
  ``(u_0, |v_0|^2)`` only. The exact optimal guidance of the family is in :mod:`analytic.reducible_golden`.

:func:`detect_reducible` recognises a plain :class:`~analytic.mixture.GaussianMixture` (with partners, e.g. the
two mixtures of a ratio reward) that belongs to the family with one common subspace.
"""
from __future__ import annotations

import itertools
import math
import weakref
from dataclasses import dataclass

import torch

from sampler.device import check_generator
from sampler.schedules import check_count

from .mixture import GaussianMixture, as_float64, check_abar, check_device, check_means, check_points, check_sigma
from .rewards import MixtureRatioReward, check_weight

__all__ = ["ReducibleMixture", "ReducedPosterior", "EpsJacobian", "ReducibleRatioReward", "detect_reducible",
           "reduce_problem", "reducible_form"]

_DTYPE = torch.float64
_LOG_2PI = math.log(2 * math.pi)


def _log_normal_m(u: torch.Tensor, means: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
    """``log N_m(u; means_k, L_k L_k^T)`` for u [..., m], means [K, m] (or broadcastable [..., K, m]),
    chol [K, m, m] -> [..., K]."""
    m = u.shape[-1]
    diff = u.unsqueeze(-2) - means  # [..., K, m]
    z = torch.linalg.solve_triangular(chol, diff.unsqueeze(-1), upper=False).squeeze(-1)
    logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # [K]
    return -0.5 * (m * _LOG_2PI + logdet + (z**2).sum(-1))


@dataclass(frozen=True)
class ReducedPosterior:
    """``p(x_0 | x_t)`` of a :class:`ReducibleMixture` at N points, in reduced form.

    Given component ``k`` (weight ``exp(log_weights[:, k])``), ``u_0 = Q^T x_0 ~ N(means_u[:, k], covs_u[k])`` and
    independently ``v_0 = P_perp x_0 ~ N(shrink[k] v, kappa2[k] P_perp)``.
    """

    log_weights: torch.Tensor  # [N, K], normalised
    means_u: torch.Tensor  # [N, K, m]
    covs_u: torch.Tensor  # [K, m, m]
    shrink: torch.Tensor  # [K]  c_k
    kappa2: torch.Tensor  # [K]  kappa_k^2
    v: torch.Tensor  # [N, d] the complement part of x_t
    basis: torch.Tensor  # [d, m]

    def mean_u(self) -> torch.Tensor:
        """``Q^T E[x_0 | x_t]``. [N, m]"""
        return (self.log_weights.exp()[..., None] * self.means_u).sum(1)

    def mean_shrink(self) -> torch.Tensor:
        """``E[v_0 | x_t] = mean_shrink * v``. [N]"""
        return self.log_weights.exp() @ self.shrink

    def mean(self) -> torch.Tensor:
        """``E[x_0 | x_t]`` in full coordinates. [N, d]"""
        return self.mean_u() @ self.basis.T + self.mean_shrink()[:, None] * self.v

    def log_prob(self, x0) -> torch.Tensor:
        """``log p(x0_n | x_t^n)`` for one x0 per point. x0 [N, d] -> [N]"""
        Q = self.basis
        x0 = check_points(x0, Q.shape[0], Q.device, "x0")
        n = Q.shape[0] - Q.shape[1]
        u0 = x0 @ Q
        dv = (x0 - u0 @ Q.T)[:, None, :] - self.shrink[:, None] * self.v[:, None, :]  # [N, K, d]
        chol = torch.linalg.cholesky(self.covs_u)
        diff = u0[:, None, :] - self.means_u  # [N, K, m]
        z = torch.linalg.solve_triangular(chol, diff.unsqueeze(-1), upper=False).squeeze(-1)
        logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        comp_u = -0.5 * (Q.shape[1] * _LOG_2PI + logdet + (z**2).sum(-1))
        comp_v = -0.5 * (n * torch.log(2 * math.pi * self.kappa2) + (dv**2).sum(-1) / self.kappa2)
        return torch.logsumexp(self.log_weights + comp_u + comp_v, dim=1)


@dataclass(frozen=True)
class EpsJacobian:
    """``J = d eps / d x_t = lam I + W G W^T`` at N points without forming it: ``W = [Q, v_n]`` [d, m + 1].

    ``J`` is symmetric (exact scores), so ``J^T g = J g``. Methods give what REG needs (THEORY.md section 6).
    """

    lam: torch.Tensor  # [N]
    G: torch.Tensor  # [N, m + 1, m + 1]
    basis: torch.Tensor  # [d, m]
    v: torch.Tensor  # [N, d]
    r2: torch.Tensor | None = None  # [N] |v|^2, when known

    def _coords(self, g: torch.Tensor) -> torch.Tensor:
        return torch.cat([g @ self.basis, (g * self.v).sum(1, keepdim=True)], 1)  # W^T g, [N, m + 1]

    def _lift(self, c: torch.Tensor) -> torch.Tensor:
        return c[:, :-1] @ self.basis.T + c[:, -1:] * self.v  # W c, [N, d]

    def matvec(self, g: torch.Tensor) -> torch.Tensor:
        """``J g`` (= ``J^T g``) for g [N, d]. [N, d]"""
        return self.lam[:, None] * g + self._lift(torch.einsum("nab,nb->na", self.G, self._coords(g)))

    def matvec_coeffs(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``J g`` for a structured ``g = Q a + b v`` (a [N, m], b [N]), in the same form, without d-sized work."""
        m = self.basis.shape[1]
        r2 = (self.v * self.v).sum(1) if self.r2 is None else self.r2
        t = torch.einsum("nab,nb->na", self.G, torch.cat([a, (b * r2)[:, None]], 1))
        return self.lam[:, None] * a + t[:, :m], self.lam * b + t[:, m]

    def colsum(self) -> torch.Tensor:
        """``J^T 1`` (the paper's estimator: tied to the coordinate axes). [N, d]"""
        return self.matvec(torch.ones_like(self.v))

    def diagonal(self) -> torch.Tensor:
        """``diag J``. [N, d]"""
        Q, v, G = self.basis, self.v, self.G
        m = Q.shape[1]
        out = self.lam[:, None] + torch.einsum("ia,nab,ib->ni", Q, G[:, :m, :m], Q)
        out = out + 2 * v * (Q @ G[:, :m, m].T).T + G[:, m, m][:, None] * v * v
        return out

    def dense(self) -> torch.Tensor:
        """The full ``J`` [N, d, d] (small d only: tests)."""
        N, d = self.v.shape
        W = torch.cat([self.basis.expand(N, d, -1), self.v[:, :, None]], 2)  # [N, d, m + 1]
        eye = torch.eye(d, dtype=_DTYPE, device=self.v.device)
        return self.lam[:, None, None] * eye + W @ self.G @ W.transpose(1, 2)


class ReducibleMixture:
    """``sum_k pi_k N(Q b_k, Q A_k Q^T + s_k^2 (I - Q Q^T))`` in ``d`` dimensions, never forming ``d x d`` matrices.

    Args:
        basis: ``Q`` [d, m], orthonormal columns, ``m`` in (1, 2), ``m <= d``.
        weights: [K] non-negative, not all zero (normalised; zero-weight components dropped).
        means: [K, m] the coordinates ``b_k`` of the component means in ``U``.
        covs: [K, m, m] the blocks ``A_k`` on ``U`` (symmetric positive definite).
        comp_vars: [K] the complement variances ``s_k^2`` (positive).
        device: as for :class:`~analytic.mixture.GaussianMixture` (``ValueError`` for an unknown one, or CUDA
            without it).

    The public interface matches :class:`~analytic.mixture.GaussianMixture` (VP and VE diffusion, posterior in
    reduced form); :meth:`to_dense` gives the equivalent plain mixture for small ``d``.
    """

    def __init__(self, basis, weights, means, covs, comp_vars, *, device=None):
        Q = as_float64(basis, "basis", check_device(device))
        if Q.ndim != 2 or Q.shape[1] not in (1, 2) or Q.shape[0] < Q.shape[1]:
            raise ValueError(f"basis must have shape [d, m] with m in (1, 2) and d >= m, got {tuple(Q.shape)}")
        d, m = Q.shape
        w, b = as_float64(weights, "weights", Q.device), as_float64(means, "means", Q.device)
        A, s2 = as_float64(covs, "covs", Q.device), as_float64(comp_vars, "comp_vars", Q.device)
        if w.ndim != 1 or w.numel() == 0:
            raise ValueError(f"weights must have shape [K] with K >= 1, got {tuple(w.shape)}")
        K = w.numel()
        if b.shape != (K, m):
            raise ValueError(f"means must have shape [K={K}, m={m}], got {tuple(b.shape)}")
        if A.shape != (K, m, m):
            raise ValueError(f"covs must have shape [K={K}, m={m}, m={m}], got {tuple(A.shape)}")
        if s2.shape != (K,):
            raise ValueError(f"comp_vars must have shape [K={K}], got {tuple(s2.shape)}")
        for name, t in (("basis", Q), ("weights", w), ("means", b), ("covs", A), ("comp_vars", s2)):
            if not torch.all(torch.isfinite(t)):
                raise ValueError(f"{name} has non-finite entries")
        gram = Q.T @ Q - torch.eye(m, dtype=_DTYPE, device=Q.device)
        if gram.abs().max() > 1e-10:
            raise ValueError(f"basis columns must be orthonormal (|Q^T Q - I| = {gram.abs().max().item():.3g})")
        if torch.any(w < 0) or not torch.any(w > 0):
            raise ValueError(f"weights must be non-negative and not all zero, got {w.tolist()}")
        if torch.any(s2 <= 0):
            raise ValueError(f"comp_vars must be positive, got {s2.tolist()}")
        asym = (A - A.transpose(-1, -2)).abs().amax(dim=(-1, -2))
        bad = torch.nonzero(asym > 1e-10 * A.abs().amax(dim=(-1, -2))).flatten().tolist()
        if bad:
            raise ValueError(f"covariance block of component(s) {bad} is not symmetric")
        keep = w > 0
        w, b, A, s2 = w[keep], b[keep], 0.5 * (A[keep] + A[keep].transpose(-1, -2)), s2[keep]
        L, info = torch.linalg.cholesky_ex(A)
        bad = torch.nonzero(info).flatten().tolist()
        if bad:
            raise ValueError(f"covariance block of component(s) {bad} is not positive definite")
        check_means(b, min(torch.linalg.eigvalsh(A).min().item(), s2.min().item()))
        self.basis, self.chol = Q, L
        self.log_weights = torch.log(w / w.sum())  # [K]
        self.means_u, self.covs_u, self.comp_vars = b, A, s2

    # --- properties -------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.basis.shape[0]

    @property
    def sub_dim(self) -> int:
        """``m``, the dimension of ``U``."""
        return self.basis.shape[1]

    @property
    def n_perp(self) -> int:
        """``n = d - m``, the dimension of the complement."""
        return self.dim - self.sub_dim

    @property
    def n_components(self) -> int:
        return self.means_u.shape[0]

    @property
    def device(self) -> torch.device:
        return self.basis.device

    @property
    def weights(self) -> torch.Tensor:
        return self.log_weights.exp()

    @property
    def means(self) -> torch.Tensor:
        """Component means in full coordinates. [K, d]"""
        return self.means_u @ self.basis.T

    def __repr__(self) -> str:
        return (f"ReducibleMixture(K={self.n_components}, d={self.dim}, m={self.sub_dim}, "
                f"weights={self.weights.tolist()}, comp_vars={self.comp_vars.tolist()})")

    def _replace(self, means_u, covs_u, comp_vars) -> "ReducibleMixture":
        return ReducibleMixture(self.basis, self.weights, means_u, covs_u, comp_vars)

    def with_basis(self, basis) -> "ReducibleMixture":
        """The same reduced mixture on another subspace (any orthonormal ``basis`` [d', m])."""
        return ReducibleMixture(basis, self.weights, self.means_u, self.covs_u, self.comp_vars)

    def subspace_mixture(self) -> GaussianMixture:
        """The law of ``u = Q^T x``: an m-dimensional :class:`GaussianMixture`."""
        return GaussianMixture(self.weights, self.means_u, self.covs_u, device=self.device)

    def embedded(self) -> GaussianMixture:
        """The same family member in ``m + 1`` dimensions (one complement axis; ``m`` if ``n = 0``).

        Quadratic forms ``e^T S_k^{-1} e`` over unit directions take the same values here as in ``d``
        dimensions, so tail and integrability checks run on it exactly."""
        K, m = self.n_components, self.sub_dim
        if self.n_perp == 0:
            return self.subspace_mixture()
        covs = torch.zeros(K, m + 1, m + 1, dtype=_DTYPE, device=self.device)
        covs[:, :m, :m] = self.covs_u
        covs[:, m, m] = self.comp_vars
        means = torch.cat([self.means_u, torch.zeros(K, 1, dtype=_DTYPE, device=self.device)], 1)
        return GaussianMixture(self.weights, means, covs, device=self.device)

    def to_dense(self, max_dim: int = 2048) -> GaussianMixture:
        """The equivalent plain :class:`GaussianMixture` (forms ``d x d`` covariances; ``d <= max_dim``)."""
        if self.dim > max_dim:
            raise ValueError(f"to_dense forms {self.dim} x {self.dim} covariances; d={self.dim} > max_dim={max_dim}")
        Q = self.basis
        P_perp = torch.eye(self.dim, dtype=_DTYPE, device=self.device) - Q @ Q.T
        covs = Q @ self.covs_u @ Q.T + self.comp_vars[:, None, None] * P_perp
        return GaussianMixture(self.weights, self.means, covs, device=self.device)

    # --- coordinates ------------------------------------------------------------------------------
    def split(self, x) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(u, v, r^2)``: ``u = Q^T x`` [N, m], ``v = x - Q u`` [N, d], ``r^2 = |v|^2`` [N] (differentiable)."""
        return self._split(check_points(x, self.dim, self.device))

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        u = x @ self.basis
        v = x - u @ self.basis.T
        return u, v, (v * v).sum(1)

    def lift(self, a: torch.Tensor, b: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The field ``Q a + b v`` in full coordinates from a [N, m], b [N] and the complement parts v [N, d]."""
        return a @ self.basis.T + b[:, None] * v

    # --- density, sampling ------------------------------------------------------------------------
    def _component_log_prob(self, u, r2) -> torch.Tensor:
        n = self.n_perp
        perp = -0.5 * (n * torch.log(2 * math.pi * self.comp_vars) + r2[:, None] / self.comp_vars)
        return self.log_weights + _log_normal_m(u, self.means_u, self.chol) + perp

    def subspace_terms(self, u0: torch.Tensor) -> torch.Tensor:
        """``log pi_k + log N_m(u0; b_k, A_k) - (n/2) log(2 pi s_k^2)`` for u0 [..., m] -> [..., K]: the component
        log-densities at ``x = Q u0 + v`` are these minus ``|v|^2 / (2 s_k^2)`` (the kernels of the exact routes)."""
        return (self.log_weights - 0.5 * self.n_perp * torch.log(2 * math.pi * self.comp_vars)
                + _log_normal_m(u0, self.means_u, self.chol))

    def component_log_prob(self, x) -> torch.Tensor:
        """``log pi_k + log N(x; mu_k, S_k)``. x [N, d] -> [N, K]"""
        u, _, r2 = self.split(x)
        return self._component_log_prob(u, r2)

    def log_prob(self, x) -> torch.Tensor:
        """``log p(x)``. [N, d] -> [N]"""
        return torch.logsumexp(self.component_log_prob(x), dim=1)

    def _score_parts(self, u, r2):
        """Responsibilities [N, K], per-component ``alpha_k`` [N, K, m] and ``beta_k`` [K]."""
        p = torch.softmax(self._component_log_prob(u, r2), dim=1)
        diff = (u[:, None, :] - self.means_u).unsqueeze(-1)  # [N, K, m, 1]
        alpha_k = -torch.cholesky_solve(diff, self.chol).squeeze(-1)  # -A_k^{-1} (u - b_k)
        return p, alpha_k, -1 / self.comp_vars

    def score_coeffs(self, u: torch.Tensor, r2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha [N, m], beta [N])`` with ``grad log p = Q alpha + beta v`` at split points (no d-sized work)."""
        p, alpha_k, beta_k = self._score_parts(u, r2)
        return (p[..., None] * alpha_k).sum(1), p @ beta_k

    def grad_log_prob(self, x) -> torch.Tensor:
        """``grad log p(x) = Q alpha + beta v`` in closed form. [N, d]"""
        u, v, r2 = self.split(x)
        return self.lift(*self.score_coeffs(u, r2), v)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` independent draws. [n, d]"""
        n = check_count(n, "n", least=0)
        generator = check_generator(generator, self.device)
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator) if n else \
            torch.zeros(0, dtype=torch.long, device=self.device)
        z = torch.randn(n, self.sub_dim, 1, dtype=_DTYPE, device=self.device, generator=generator)
        u0 = self.means_u[comp] + (self.chol[comp] @ z).squeeze(-1)
        g = torch.randn(n, self.dim, dtype=_DTYPE, device=self.device, generator=generator)
        v0 = g - (g @ self.basis) @ self.basis.T
        return u0 @ self.basis.T + self.comp_vars[comp].sqrt()[:, None] * v0

    # --- diffusion, VP form -----------------------------------------------------------------------
    def _affine(self, scale: float, add: float) -> "ReducibleMixture":
        eye = torch.eye(self.sub_dim, dtype=_DTYPE, device=self.device)
        return self._replace(scale * self.means_u, scale**2 * self.covs_u + add * eye, scale**2 * self.comp_vars + add)

    def noised(self, abar) -> "ReducibleMixture":
        """Law of ``x_t = sqrt(abar) x_0 + sqrt(1 - abar) n``: blocks ``abar A_k + (1 - abar) I``, ``tau_k^2``."""
        a = check_abar(abar)
        return self._affine(math.sqrt(a), 1 - a)

    def score(self, x_t, abar) -> torch.Tensor:
        """``grad log p_t(x_t)``. [N, d]"""
        return self.noised(abar).grad_log_prob(x_t)

    def eps(self, x_t, abar) -> torch.Tensor:
        """Exact noise prediction ``-sqrt(1 - abar) grad log p_t``. [N, d]"""
        a = check_abar(abar)
        return -math.sqrt(1 - a) * self.score(x_t, a)

    def posterior(self, x_t, abar) -> ReducedPosterior:
        """``p(x_0 | x_t)`` in reduced form (module docstring)."""
        a = check_abar(abar)
        noised = self.noised(a)
        u, v, r2 = noised.split(x_t)
        log_w = torch.log_softmax(noised._component_log_prob(u, r2), dim=1)
        Cinv_A = torch.cholesky_solve(self.covs_u, noised.chol)  # C^{-1} A, [K, m, m]
        gain = math.sqrt(a) * Cinv_A.transpose(-1, -2)
        innov = u[:, None, :] - noised.means_u
        means_u = self.means_u + (gain @ innov.unsqueeze(-1)).squeeze(-1)
        V = (1 - a) * Cinv_A.transpose(-1, -2)
        tau2 = noised.comp_vars
        return ReducedPosterior(log_w, means_u, 0.5 * (V + V.transpose(-1, -2)), math.sqrt(a) * self.comp_vars / tau2,
                                (1 - a) * self.comp_vars / tau2, v, self.basis)

    def eps_jacobian(self, x_t, abar) -> EpsJacobian:
        """``J = d eps / d x_t`` in structured form (module docstring), exact and O(d m^2) per point."""
        a = check_abar(abar)
        noised = self.noised(a)
        u, v, r2 = noised.split(x_t)
        p, alpha_k, beta_k = noised._score_parts(u, r2)
        m = self.sub_dim
        alpha = (p[..., None] * alpha_k).sum(1)
        beta = p @ beta_k
        lam = beta  # complement curvature -sum p_k / tau_k^2
        Cinv = torch.cholesky_inverse(noised.chol)  # [K, m, m]
        B = -torch.einsum("nk,kij->nij", p, Cinv)
        e = torch.cat([alpha_k - alpha[:, None, :], (beta_k - beta[:, None])[..., None]], 2)  # [N, K, m + 1]
        G = torch.einsum("nk,nki,nkj->nij", p, e, e)
        G[:, :m, :m] += B - lam[:, None, None] * torch.eye(m, dtype=_DTYPE, device=self.device)
        c = -math.sqrt(1 - a)
        return EpsJacobian(c * lam, c * G, self.basis, v, r2)

    # --- the same diffusion, VE form --------------------------------------------------------------
    def noised_ve(self, sigma) -> "ReducibleMixture":
        """Law of ``x = x_0 + sigma n``."""
        s = check_sigma(sigma)
        return self._affine(1.0, s**2)

    def score_ve(self, x, sigma) -> torch.Tensor:
        return self.noised_ve(sigma).grad_log_prob(x)

    def denoise(self, x, sigma) -> torch.Tensor:
        """Exact denoiser ``D(x, sigma) = x + sigma^2 grad log p_sigma(x)`` (Tweedie). [N, d]"""
        s = check_sigma(sigma)
        x = check_points(x, self.dim, self.device)
        u, v, r2 = self._split(x)
        return x + s**2 * self.lift(*self.noised_ve(s).score_coeffs(u, r2), v)


# --- rewards ----------------------------------------------------------------------------------------


class ReducibleRatioReward:
    """``R_0 = exp(log_const) (p_num / p_den)^w`` for two :class:`ReducibleMixture` on one basis: the reduced twin
    of :class:`~analytic.rewards.MixtureRatioReward` (CFG, AutoG and the Bayes-classifier reward alike)."""

    def __init__(self, num: ReducibleMixture, den: ReducibleMixture, w: float, log_const: float = 0.0):
        if not isinstance(num, ReducibleMixture) or not isinstance(den, ReducibleMixture):
            raise ValueError("num and den must be ReducibleMixture instances")
        _check_same_basis(num, den)
        self.num, self.den = num, den
        self.w = check_weight(w)
        self.log_const = float(log_const)

    @property
    def dim(self) -> int:
        return self.num.dim

    def __repr__(self) -> str:
        return f"ReducibleRatioReward(w={self.w}, num={self.num!r}, den={self.den!r})"

    def log_r0(self, x0) -> torch.Tensor:
        """``log R_0(x_0)``. [N, d] -> [N]"""
        return self.w * (self.num.log_prob(x0) - self.den.log_prob(x0)) + self.log_const

    def log_rt(self, x_t, abar) -> torch.Tensor:
        a = check_abar(abar)
        return self.w * (self.num.noised(a).log_prob(x_t) - self.den.noised(a).log_prob(x_t)) + self.log_const

    def grad_coeffs(self, u: torch.Tensor, r2: torch.Tensor, abar: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``grad log R_t = Q alpha + beta v`` at split points: ``(alpha [N, m], beta [N])``."""
        an, bn = self.num.noised(abar).score_coeffs(u, r2)
        ad, bd = self.den.noised(abar).score_coeffs(u, r2)
        return self.w * (an - ad), self.w * (bn - bd)

    def grad_log_rt(self, x_t, abar) -> torch.Tensor:
        a = check_abar(abar)
        u, v, r2 = self.num.split(x_t)
        return self.num.lift(*self.grad_coeffs(u, r2, a), v)

    def present(self, x_t, abar) -> torch.Tensor:
        """The present-time guidance term ``-sqrt(1 - abar) grad log R_t`` (eps units). [N, d]"""
        a = check_abar(abar)
        return -math.sqrt(1 - a) * self.grad_log_rt(x_t, a)

    def embedded(self) -> MixtureRatioReward:
        """The same reward on the ``m + 1``-dimensional embedded mixtures (tails and integrability)."""
        return MixtureRatioReward(self.num.embedded(), self.den.embedded(), self.w, self.log_const)


def _check_same_basis(*mixtures: ReducibleMixture) -> None:
    Q = mixtures[0].basis
    for mix in mixtures[1:]:
        if mix.basis.shape != Q.shape or not (mix.basis is Q or torch.allclose(mix.basis, Q, rtol=0, atol=1e-12)):
            raise ValueError("the mixtures must share one basis Q (build them on the same subspace, or use "
                             "detect_reducible on all of them at once)")


# --- recognising plain mixtures ---------------------------------------------------------------------


def _isotropic_levels(S: torch.Tensor, m: int, tol: float, gen: torch.Generator) -> list[float]:
    """Candidate complement variances of one covariance ``S`` [d, d]: values ``s^2`` with ``S - s^2 I`` of rank
    ``<= m``. From the eigenvalues of a random ``p``-dimensional compression ``Z^T S Z`` (``p = min(d, 2m + 4)``),
    in which ``s^2`` repeats at least ``p - m`` times (Cauchy interlacing)."""
    d = S.shape[0]
    p = min(d, 2 * m + 4)
    Z = torch.linalg.qr(torch.randn(d, p, dtype=_DTYPE, generator=gen))[0] if p < d else torch.eye(d, dtype=_DTYPE)
    lam = torch.linalg.eigvalsh(Z.T @ S @ Z)
    scale = lam.abs().max().item()
    out: list[float] = []
    for i in range(m + 1):
        window = lam[i:i + p - m]
        if (window.max() - window.min()).item() <= tol * scale:
            s2 = window.mean().item()
            if s2 > 0 and all(abs(s2 - o) > tol * scale for o in out):
                out.append(s2)
    return out


def _try_subspace(means: torch.Tensor, covs: torch.Tensor, centre: torch.Tensor, m: int, tol: float):
    """A basis ``Q`` [d, m] and complement variances [K] under which every component is in the family, or None.

    Translation-invariant: the subspace is found from the mean offsets ``mu_k - centre`` (``centre`` a point of their
    affine hull), each in units of its own component's complement std, and the covariance deviations
    ``S_k - s_k^2 I`` in units of ``s_k^2``; ``centre``'s direction is added when it is off that subspace (the
    family's ``U`` passes through the origin). The SVD only proposes ``Q``: :func:`_residuals` decides."""
    d = means.shape[1]
    gen = torch.Generator().manual_seed(0)
    cands = [_isotropic_levels(S, m, tol, gen) for S in covs]
    if any(len(c) == 0 for c in cands):
        return None
    offsets = means - centre  # [K, d]
    eye = torch.eye(d, dtype=_DTYPE)
    for combo in itertools.islice(itertools.product(*cands), 4096):
        s2 = torch.tensor(combo, dtype=_DTYPE)
        omega = torch.randn(d, m + 2, dtype=_DTYPE, generator=gen)
        cols = [offsets.T / s2.sqrt()] + [(S - v * eye) @ omega / v for S, v in zip(covs, combo)]
        U, sv, _ = torch.linalg.svd(torch.cat(cols, 1), full_matrices=False)
        cut = max(tol, 1e-14 * sv.max().item())  # below the tolerance, or lost to rounding
        Q = U[:, :int((sv > cut).sum())]
        c_perp = centre - Q @ (Q.T @ centre)
        c_perp = c_perp - Q @ (Q.T @ c_perp)  # twice: what is left is off span(Q), not rounding inside it
        bases = [Q]
        if c_perp.norm() > 0:
            bases.append(torch.cat([Q, (c_perp / c_perp.norm())[:, None]], 1))
        for B in bases:
            if B.shape[1] > m:
                continue
            B = _padded(B, m)
            if _residuals(means, covs, B, s2).max().item() <= 10 * tol:
                return B, s2
    return None


def _padded(Q: torch.Tensor, m: int) -> torch.Tensor:
    """``Q`` [d, r] completed to an orthonormal [d, m] with the coordinate axes farthest from its span."""
    eye = torch.eye(Q.shape[0], dtype=_DTYPE)
    while Q.shape[1] < m:
        resid = eye - Q @ Q.T
        j = int(resid.norm(dim=0).argmax())
        Q = torch.cat([Q, (resid[:, j] / resid[:, j].norm())[:, None]], 1)
    return torch.linalg.qr(Q)[0]  # the centre's column is orthogonal only to rounding


def _residuals(means: torch.Tensor, covs: torch.Tensor, Q: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """How far each component is from ``N(Q Q^T mu_k, Q A_k Q^T + s_k^2 P_perp)`` (``A_k = Q^T S_k Q``), in its own
    metric [K]: the larger of ``|P_perp mu_k| / sqrt(l_k)`` and ``|S_k - Q A_k Q^T - s_k^2 P_perp|_F / l_k``, ``l_k``
    the smallest variance of the reduced component. Neither is measured against another component's size or the
    largest mean (a global scale that grows with a translation), and both bound the whitened change of the component
    (``inf`` for a reduced covariance that is not positive definite)."""
    P_perp = torch.eye(Q.shape[0], dtype=_DTYPE) - Q @ Q.T
    A = Q.T @ covs @ Q  # [K, m, m]
    low = torch.minimum(torch.linalg.eigvalsh(0.5 * (A + A.transpose(-1, -2)))[:, 0], s2)  # [K]
    cov_dev = torch.linalg.matrix_norm(covs - Q @ A @ Q.T - s2[:, None, None] * P_perp)
    mean_dev = (means @ P_perp).norm(dim=1)
    out = torch.maximum(mean_dev / low.clamp(min=1e-300).sqrt(), cov_dev / low.clamp(min=1e-300))
    return torch.where(low > 0, out, torch.inf)


def detect_reducible(mixture: GaussianMixture, *others: GaussianMixture, tol: float = 1e-9
                     ) -> tuple[ReducibleMixture, ...] | None:
    """The given plain mixtures as :class:`ReducibleMixture` on one common subspace of dimension 1 or 2, or None.

    Every component of every mixture must have its mean in ``U`` and covariance ``Q A_k Q^T + s_k^2 P_perp``
    to accuracy ``10 tol`` in the component's own units (:func:`_residuals`: the mean off ``U`` in stds, the
    covariance residual in variances, of the component's smallest variance), checked on the basis found, so a
    mixture near the family is refused rather than reduced. The search is translation-invariant (means taken
    relative to their weighted centre, not to the origin); because ``U`` passes through the origin, means on a
    line not through it need ``m = 2``, and on a plane not through it are outside the family. The smallest ``m``
    is chosen; for ``d <= 2`` the answer is ``U = R^d`` (``n = 0``). Costs O(K d^2 m) (a few matrix products per
    component, no ``d x d`` eigendecomposition). Returns one reducible mixture per argument, in order.
    """
    mixtures = (mixture,) + others
    if not all(isinstance(mx, GaussianMixture) for mx in mixtures):
        raise ValueError("detect_reducible takes analytic.GaussianMixture instances")
    dims = {mx.dim for mx in mixtures}
    if len(dims) != 1:
        raise ValueError(f"mixtures have different dimensions {sorted(dims)}")
    if not (isinstance(tol, (int, float)) and 0 < tol < 1e-2):
        raise ValueError(f"tol must be a number in (0, 0.01), got {tol!r}")
    d = dims.pop()
    means = torch.cat([mx.means.cpu() for mx in mixtures])
    covs = torch.cat([mx.covs.cpu() for mx in mixtures])
    if d <= 2:
        Q, s2 = torch.eye(d, dtype=_DTYPE), torch.ones(covs.shape[0], dtype=_DTYPE)
    else:
        centre = sum(mx.weights.cpu() @ mx.means.cpu() for mx in mixtures) / len(mixtures)  # [d]
        found = None
        for m in (1, 2):
            found = _try_subspace(means, covs, centre, m, tol)
            if found is not None:
                break
        if found is None:
            return None
        Q, s2 = found
    out, start = [], 0
    for mx in mixtures:
        k = mx.n_components
        A = Q.T @ covs[start:start + k] @ Q
        out.append(ReducibleMixture(Q.to(mx.device), mx.weights, means[start:start + k] @ Q,
                                    0.5 * (A + A.transpose(-1, -2)), s2[start:start + k], device=mx.device))
        start += k
    return tuple(out)


def reduce_problem(cond, reward, tol: float = 1e-9) -> tuple[ReducibleMixture, ReducibleRatioReward] | None:
    """``(cond, reward)`` in reduced form when both belong to the family on one subspace, else None.

    Accepts reduced inputs as they are, or a plain ``GaussianMixture`` with a
    :class:`~analytic.rewards.MixtureRatioReward` (CFG, AutoG, classifier); ``ValueError`` for anything else.
    The detection is cached (:func:`reducible_form`)."""
    if isinstance(cond, ReducibleMixture) and isinstance(reward, ReducibleRatioReward):
        _check_same_basis(cond, reward.num, reward.den)
        return cond, reward
    if isinstance(cond, GaussianMixture) and isinstance(reward, MixtureRatioReward):
        return reducible_form(cond, reward, tol)
    raise ValueError(f"need (ReducibleMixture, ReducibleRatioReward) or (GaussianMixture, MixtureRatioReward), "
                     f"got ({type(cond).__name__}, {type(reward).__name__})")


# detect_reducible's answer per (cond, num, den, tol), held by the conditional mixture (weakly: the entry goes with
# it). Each entry keeps the tensors it was computed from and their in-place version counters, so a mixture whose
# tensors were replaced or modified in place is detected again rather than served a stale answer.
_DETECTED: "weakref.WeakKeyDictionary[GaussianMixture, dict]" = weakref.WeakKeyDictionary()


def _fingerprint(mixtures) -> tuple:
    return tuple((t, t._version) for mx in mixtures for t in (mx.log_weights, mx.means, mx.covs))


def _same(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(ta is tb and va == vb for (ta, va), (tb, vb) in zip(a, b))


def reducible_form(cond, reward, tol: float = 1e-9) -> tuple[ReducibleMixture, ReducibleRatioReward] | None:
    """The dispatch test of :func:`analytic.optimal_guidance` and :func:`analytic.guidance_fields`: a plain
    ``GaussianMixture`` with a ``MixtureRatioReward`` (CFG, AutoG, classifier) of plain mixtures in reduced form
    when all three belong to the family on one subspace (:func:`detect_reducible`); None for anything else
    (other types of mixture or reward, or not in the family), never an error.

    Detection costs O(K d^2) once per (cond, reward mixtures); the answer, None included, is cached weakly on
    ``cond`` (keyed by the identity of the reward's mixtures and checked against their tensors), so repeated calls
    cost O(d m) (the reduced reward is rebuilt from the current ``w`` and ``log_const``)."""
    if not (isinstance(cond, GaussianMixture) and isinstance(reward, MixtureRatioReward)
            and isinstance(reward.num, GaussianMixture) and isinstance(reward.den, GaussianMixture)):
        return None
    mixtures = (cond, reward.num, reward.den)
    per_cond = _DETECTED.setdefault(cond, {})
    key = (id(reward.num), id(reward.den), float(tol))
    entry = per_cond.get(key)
    if entry is None or not (entry[0]() is reward.num and entry[1]() is reward.den
                             and _same(entry[2], _fingerprint(mixtures))):
        found = detect_reducible(*mixtures, tol=tol)
        entry = (weakref.ref(reward.num), weakref.ref(reward.den), _fingerprint(mixtures), found)
        per_cond[key] = entry
    found = entry[3]
    if found is None:
        return None
    c, num, den = found
    return c, ReducibleRatioReward(num, den, reward.w, reward.log_const)
