"""Gaussian mixtures and their exact diffusion: noised marginals, score, eps, denoiser, posterior.

THEORY.md sections 1 and 5. Everything is float64 torch and differentiable in ``x``, so Jacobians
of ``eps`` and ``D`` come from autograd. Each covariance is factorised once (Cholesky).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from sampler.device import check_generator, resolve_device
from sampler.schedules import check_count, check_number

__all__ = ["GaussianMixture", "Posterior", "as_float64", "check_abar", "check_device", "check_means", "check_points"]

_DTYPE = torch.float64


def check_abar(abar) -> float:
    """``abar`` as a float, or ``ValueError`` unless it is a finite number in (0, 1]."""
    a = check_number(abar, "abar")
    if not 0 < a <= 1:
        raise ValueError(f"abar must lie in (0, 1], got {a}")
    return a


_MAX_SIGMA = 1e150  # sigma^2 must stay far inside float64
_MAX_Z = 1e150  # whitened distances |L^{-1} (x - mu)| must stay far inside float64 when squared


def check_sigma(sigma) -> float:
    """``sigma`` as a float, or ``ValueError`` unless it is a finite number >= 0."""
    s = check_number(sigma, "sigma")
    if s < 0:
        raise ValueError(f"sigma must be finite and >= 0, got {s}")
    if s > _MAX_SIGMA:
        raise ValueError(f"sigma = {s:.3g} is too large: sigma^2 overflows float64 (the limit is {_MAX_SIGMA:.0e})")
    return s


def check_device(device) -> torch.device | None:
    """``None`` (keep the inputs' device), or the device :func:`sampler.device.resolve_device` gives: ``ValueError``
    naming ``device`` for an unknown one, or CUDA on a machine without it."""
    return None if device is None else resolve_device(device)


def as_float64(value, name: str, device=None) -> torch.Tensor:
    """``value`` as a float64 tensor, or ``ValueError`` naming ``name`` when it is not an array of real numbers
    (torch's own ``TypeError`` names neither the argument nor the value)."""
    try:
        return torch.as_tensor(value, dtype=_DTYPE, device=device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be an array of real numbers, got {type(value).__name__} {value!r:.80}") from err


def check_means(means: torch.Tensor, min_var: float, name: str = "means") -> None:
    """``ValueError`` naming ``name`` when the means are so large against the smallest component std that squared
    whitened distances overflow float64 near them (every density, score and posterior would be 0/0): the limit
    leaves at least half of the float64 range to the points, at every noise level."""
    limit = 0.5 * _MAX_Z * math.sqrt(max(min_var, 0.0)) / math.sqrt(means.shape[-1])
    top = means.abs().max().item() if means.numel() else 0.0
    if top > limit:
        raise ValueError(f"{name} has entries up to {top:.3g}; against the smallest component std "
                         f"{math.sqrt(max(min_var, 0.0)):.3g} the limit is {limit:.3g}: beyond it squared whitened "
                         f"distances overflow float64")


def check_points(x, d: int, device=None, name: str = "x") -> torch.Tensor:
    """``x`` as a float64 tensor of shape [N, d]; ``ValueError`` on a wrong shape or non-finite entries.

    Autograd history is kept (no copy when ``x`` is already float64 on ``device``)."""
    x = as_float64(x, name, device)
    if x.ndim != 2 or x.shape[1] != d:
        raise ValueError(f"{name} must have shape [N, {d}], got {tuple(x.shape)}")
    if x.numel() and not torch.isfinite(x.detach().abs().amax()):  # one pass: NaN and inf propagate through amax
        raise ValueError(f"{name} has non-finite entries")
    return x


def _whiten(x: torch.Tensor, means: torch.Tensor, chol: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z, L^{-1})``: whitened offsets ``z = L_k^{-1} (x - means_k)`` [K, d, N] and the inverse factors [K, d, d]
    for x [N, d], means [K, d], chol [K, d, d]. Component- and coordinate-major, so that for large N, small d and K
    every step (the batched triangular products, the squared norms over d, the softmax over K) runs along N."""
    d = x.shape[-1]
    diff = x.T - means[:, :, None]  # [K, d, N]
    eye = torch.eye(d, dtype=chol.dtype, device=chol.device)
    chol_inv = torch.linalg.solve_triangular(chol, eye, upper=False)  # [K, d, d], small
    return chol_inv @ diff, chol_inv


def _log_normal_whitened(z: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
    """``log N`` from whitened offsets z [K, d, N] and the factors chol [K, d, d] -> [K, N]."""
    logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # [K]
    return -0.5 * ((z.shape[1] * math.log(2 * math.pi) + logdet)[:, None] + (z * z).sum(1))


def _log_normal(x: torch.Tensor, means: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
    """``log N(x; means_k, L_k L_k^T)`` for x [N, d], means [K, d], chol [K, d, d] -> [K, N]."""
    return _log_normal_whitened(_whiten(x, means, chol)[0], chol)


def _cholesky_checked(covs: torch.Tensor, what: str) -> torch.Tensor:
    L, info = torch.linalg.cholesky_ex(covs)
    bad = torch.nonzero(info).flatten().tolist()
    if bad:
        raise ValueError(f"{what} {bad} is not positive definite")
    return L


@dataclass(frozen=True)
class Posterior:
    """``p(x_0 | x_t)`` for each of N points: a K-component Gaussian mixture per point.

    Components share their covariances across points (``covs`` [K, d, d]); weights and means
    depend on the point (``log_weights`` [N, K], ``means`` [N, K, d]).
    """

    log_weights: torch.Tensor  # [N, K], normalised: logsumexp over K is 0
    means: torch.Tensor  # [N, K, d]
    covs: torch.Tensor  # [K, d, d]

    def mean(self) -> torch.Tensor:
        """``E[x_0 | x_t]``. [N, d]"""
        return (self.log_weights.exp()[..., None] * self.means).sum(1)

    def cov(self) -> torch.Tensor:
        """``Cov[x_0 | x_t]`` by the law of total covariance. [N, d, d]"""
        p = self.log_weights.exp()  # [N, K]
        centred = self.means - self.mean()[:, None, :]  # [N, K, d]
        between = torch.einsum("nk,nki,nkj->nij", p, centred, centred)
        within = torch.einsum("nk,kij->nij", p, self.covs)
        return between + within

    def log_prob(self, x0: torch.Tensor) -> torch.Tensor:
        """``log p(x0_n | x_t^n)`` for one x0 per point. x0 [N, d] -> [N]"""
        d = self.covs.shape[-1]
        x0 = check_points(x0, d, self.means.device, "x0")
        # Covariances may be singular at abar = 1; a jitter-free Cholesky is required here.
        chol = _cholesky_checked(self.covs, "posterior covariance")
        diff = x0[:, None, :] - self.means
        z = torch.linalg.solve_triangular(chol, diff.unsqueeze(-1), upper=False).squeeze(-1)
        logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        comp = -0.5 * (d * math.log(2 * math.pi) + logdet + (z**2).sum(-1))
        return torch.logsumexp(self.log_weights + comp, dim=1)


class GaussianMixture:
    """``p(x) = sum_k pi_k N(x; mu_k, S_k)`` in any dimension ``d >= 1``.

    Args:
        weights: [K] non-negative, not all zero; normalised here. Zero-weight components are dropped.
        means: [K, d]; finite, and not so large against the smallest component std that squared whitened
            distances overflow float64 (:func:`check_means`).
        covs: [K, d, d] symmetric positive definite, entries at most 1e300 (noise variance is added to them).
        device: where the tensors live (``None``: torch's default; ``"cpu"``, ``"cuda[:i]"``, ``"auto"`` or a
            ``torch.device``; ``ValueError`` for anything else, or for CUDA on a machine without it).

    The diffusion of the data ``x_0 ~ p`` is available in both coordinate systems of THEORY.md
    section 1: VP (``x_t = sqrt(abar) x_0 + sqrt(1 - abar) n``; methods taking ``abar``) and VE
    (``x = x_0 + sigma n``; methods taking ``sigma``).
    """

    def __init__(self, weights, means, covs, *, device=None):
        device = check_device(device)
        w, mu, S = as_float64(weights, "weights", device), as_float64(means, "means", device), \
            as_float64(covs, "covs", device)
        if w.ndim != 1 or w.numel() == 0:
            raise ValueError(f"weights must have shape [K] with K >= 1, got {tuple(w.shape)}")
        K = w.numel()
        if mu.ndim != 2 or mu.shape[0] != K or mu.shape[1] < 1:
            raise ValueError(f"means must have shape [K={K}, d] with d >= 1, got {tuple(mu.shape)}")
        d = mu.shape[1]
        if S.shape != (K, d, d):
            raise ValueError(f"covs must have shape [K={K}, d={d}, d={d}], got {tuple(S.shape)}")
        for name, t in (("weights", w), ("means", mu), ("covs", S)):
            if not torch.all(torch.isfinite(t)):
                raise ValueError(f"{name} has non-finite entries")
        if S.numel() and S.abs().max() > _MAX_SIGMA**2:
            raise ValueError(f"covs has entries up to {S.abs().max().item():.3g}; beyond {_MAX_SIGMA**2:.0e} adding "
                             f"noise variance overflows float64")
        if torch.any(w < 0):
            raise ValueError(f"weights must be non-negative, got {w.tolist()}")
        if not torch.any(w > 0):
            raise ValueError("weights are all zero")
        asym = (S - S.transpose(-1, -2)).abs().amax(dim=(-1, -2))
        scale = S.abs().amax(dim=(-1, -2))
        bad = torch.nonzero(asym > 1e-10 * scale).flatten().tolist()
        if bad:
            raise ValueError(f"covariance of component(s) {bad} is not symmetric")
        keep = w > 0
        w, mu, S = w[keep], mu[keep], 0.5 * (S[keep] + S[keep].transpose(-1, -2))
        min_var = torch.linalg.eigvalsh(S).min().item()
        if min_var > 0:  # (otherwise the Cholesky factorisation in _set names the component)
            check_means(mu, min_var)
        self._set(torch.log(w / w.sum()), mu, S, min_var)

    def _set(self, log_weights: torch.Tensor, means: torch.Tensor, covs: torch.Tensor, min_var: float) -> None:
        """Store validated parts; ``min_var`` is the smallest eigenvalue of ``covs``."""
        self.chol = _cholesky_checked(covs, "covariance of component(s)")  # [K, d, d]
        self.log_weights = log_weights  # [K]
        self.means = means  # [K, d]
        self.covs = covs  # [K, d, d]
        self._min_var = min_var
        # coordinates beyond this make squared whitened distances overflow (every density would be 0)
        self.max_abs = _MAX_Z * math.sqrt(max(min_var, 0.0)) / math.sqrt(means.shape[1]) - means.abs().max().item()

    def _noised_parts(self, mean_scale: float, cov_scale: float, add: float) -> "GaussianMixture":
        """``sum pi_k N(mean_scale mu_k, cov_scale S_k + add I)`` without re-validating what noising keeps valid
        (the samplers build one per step): its smallest variance is ``cov_scale min_var + add``."""
        out = object.__new__(GaussianMixture)
        eye = torch.eye(self.dim, dtype=_DTYPE, device=self.device)
        out._set(self.log_weights, mean_scale * self.means, cov_scale * self.covs + add * eye,
                 cov_scale * self._min_var + add)
        return out

    # --- construction helpers -------------------------------------------------------------------
    @classmethod
    def from_1d(cls, weights: Sequence[float], means: Sequence[float], stds: Sequence[float], **kw):
        """A 1-D mixture from component means and standard deviations."""
        stds = as_float64(stds, "stds")
        if stds.ndim != 1:
            raise ValueError(f"stds must be 1-D, got shape {tuple(stds.shape)}")
        if torch.any(stds <= 0):
            raise ValueError(f"stds must be positive, got {stds.tolist()}")
        means = as_float64(means, "means")
        if means.ndim != 1:
            raise ValueError(f"means must be 1-D, got shape {tuple(means.shape)}")
        return cls(weights, means[:, None], (stds**2)[:, None, None], **kw)

    @classmethod
    def concat(cls, mixtures: Sequence["GaussianMixture"], priors) -> "GaussianMixture":
        """The mixture ``sum_c priors_c p_c``: all components of all ``mixtures``, reweighted."""
        if len(mixtures) == 0:
            raise ValueError("need at least one mixture")
        priors = as_float64(priors, "priors")
        if priors.shape != (len(mixtures),):
            raise ValueError(f"priors must have shape [{len(mixtures)}], got {tuple(priors.shape)}")
        if not torch.all(torch.isfinite(priors)) or torch.any(priors < 0) or not torch.any(priors > 0):
            raise ValueError(f"priors must be finite, non-negative and not all zero, got {priors.tolist()}")
        dims = {m.dim for m in mixtures}
        if len(dims) != 1:
            raise ValueError(f"mixtures have different dimensions {sorted(dims)}")
        dev = mixtures[0].device
        w = torch.cat([p.to(dev) * m.log_weights.exp() for p, m in zip(priors, mixtures)])
        return cls(w, torch.cat([m.means for m in mixtures]), torch.cat([m.covs for m in mixtures]), device=dev)

    def to(self, device) -> "GaussianMixture":
        return GaussianMixture(self.weights, self.means, self.covs, device=device)

    def with_covs(self, covs) -> "GaussianMixture":
        """The same weights and means with other covariances."""
        return GaussianMixture(self.weights, self.means, covs, device=self.device)

    # --- basic properties -----------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def weights(self) -> torch.Tensor:
        return self.log_weights.exp()

    @property
    def precisions(self) -> torch.Tensor:
        """``S_k^{-1}``. [K, d, d]"""
        return torch.cholesky_inverse(self.chol)

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.n_components}, d={self.dim}, weights={self.weights.tolist()})"

    def _points(self, x, name="x") -> torch.Tensor:
        x = check_points(x, self.dim, self.device, name)
        if x.numel() and x.detach().abs().max() > self.max_abs:
            raise ValueError(f"{name} has entries up to {x.detach().abs().max().item():.3g}; beyond "
                             f"{self.max_abs:.3g} the mixture's squared distances overflow float64, so every "
                             f"density, score and posterior would be 0/0")
        return x

    # --- density, sampling ----------------------------------------------------------------------
    def _component_log_prob(self, x) -> torch.Tensor:
        """``log pi_k + log N(x; mu_k, S_k)``, component-major. x [N, d] -> [K, N]"""
        x = self._points(x)
        return self.log_weights[:, None] + _log_normal(x, self.means, self.chol)

    def component_log_prob(self, x) -> torch.Tensor:
        """``log pi_k + log N(x; mu_k, S_k)``. x [N, d] -> [N, K]"""
        return self._component_log_prob(x).T.contiguous()

    def log_prob(self, x) -> torch.Tensor:
        """``log p(x)``. x [N, d] -> [N]"""
        return torch.logsumexp(self._component_log_prob(x), dim=0)

    def grad_log_prob(self, x) -> torch.Tensor:
        """``grad_x log p(x) = -sum_k r_k(x) S_k^{-1} (x - mu_k)`` in closed form. [N, d]"""
        x = self._points(x)
        z, chol_inv = _whiten(x, self.means, self.chol)  # one whitening for the weights and the solves, [K, d, N]
        r = torch.log_softmax(self.log_weights[:, None] + _log_normal_whitened(z, self.chol), dim=0).exp()  # [K, N]
        K, d, n = z.shape
        # sum_k r_k L_k^{-T} z_k as one product over (k, j): [N, K d] @ [K d, d], row (k, j) of the right = L_k^{-1}[j]
        return -((r[:, None, :] * z).reshape(K * d, n).T @ chol_inv.reshape(K * d, d))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` independent draws. [n, d]"""
        n = check_count(n, "n", least=0)
        generator = check_generator(generator, self.device)
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator) if n else \
            torch.zeros(0, dtype=torch.long, device=self.device)
        z = torch.randn(n, self.dim, 1, dtype=_DTYPE, device=self.device, generator=generator)
        return self.means[comp] + (self.chol[comp] @ z).squeeze(-1)

    # --- the diffusion, VP form -----------------------------------------------------------------
    def noised(self, abar) -> "GaussianMixture":
        """Law of ``x_t = sqrt(abar) x_0 + sqrt(1 - abar) n``: ``sum pi_k N(sqrt(abar) mu_k, abar S_k + (1 - abar) I)``."""
        a = check_abar(abar)
        return self._noised_parts(math.sqrt(a), a, 1 - a)

    def score(self, x_t, abar) -> torch.Tensor:
        """``grad log p_t(x_t)`` of the VP-noised mixture. [N, d]"""
        return self.noised(abar).grad_log_prob(x_t)

    def eps(self, x_t, abar) -> torch.Tensor:
        """Exact noise prediction ``eps = -sqrt(1 - abar) grad log p_t(x_t)``. [N, d]"""
        a = check_abar(abar)
        return -math.sqrt(1 - a) * self.score(x_t, a)

    def posterior(self, x_t, abar) -> Posterior:
        """``p(x_0 | x_t)`` at each point (THEORY.md section 5), in the Kalman form that stays exact at
        ``abar = 1``: with ``C_k = abar S_k + (1 - abar) I``,
        ``V_k = (1 - abar) S_k C_k^{-1}``, ``m_k = mu_k + sqrt(abar) S_k C_k^{-1} (x_t - sqrt(abar) mu_k)``."""
        a = check_abar(abar)
        x_t = self._points(x_t, "x_t")
        noised = self.noised(a)
        log_w = torch.log_softmax(noised.component_log_prob(x_t), dim=1)  # [N, K]
        Cinv_S = torch.cholesky_solve(self.covs, noised.chol)  # C^{-1} S, [K, d, d]
        gain = math.sqrt(a) * Cinv_S.transpose(-1, -2)  # sqrt(a) S C^{-1}
        innov = x_t[:, None, :] - noised.means  # [N, K, d]
        means = self.means + (gain @ innov.unsqueeze(-1)).squeeze(-1)
        V = (1 - a) * Cinv_S.transpose(-1, -2)
        return Posterior(log_w, means, 0.5 * (V + V.transpose(-1, -2)))

    # --- the same diffusion, VE form ------------------------------------------------------------
    def noised_ve(self, sigma) -> "GaussianMixture":
        """Law of ``x = x_0 + sigma n``: ``sum pi_k N(mu_k, S_k + sigma^2 I)``."""
        s = check_sigma(sigma)
        return self._noised_parts(1.0, 1.0, s**2)

    def score_ve(self, x, sigma) -> torch.Tensor:
        """``grad log p_sigma(x)`` of the VE-noised mixture. [N, d]"""
        return self.noised_ve(sigma).grad_log_prob(x)

    def denoise(self, x, sigma) -> torch.Tensor:
        """Exact denoiser ``D(x, sigma) = E[x_0 | x] = x + sigma^2 grad log p_sigma(x)`` (Tweedie). [N, d]"""
        s = check_sigma(sigma)
        x = self._points(x)
        return x + s**2 * self.score_ve(x, s)
