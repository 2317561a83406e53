"""Exact optimal guidance on the ideal chain: ``log E_t`` and ``grad log E_t`` (THEORY.md section 4).

``E_t(x_t) = int p(x_0 | x_t) R_0(x_0) dx_0`` over the exact posterior of the conditional mixture, and

    grad_{x_t} log E_t = sqrt(abar) / (1 - abar) * (m_R - m),

with ``m`` the posterior mean and ``m_R`` the mean of the reward-tilted posterior. The posterior is a
K-component Gaussian mixture per point, so ``E_t = sum_k pi_k(x_t) I_k`` with
``I_k = int N(x_0; m_k, V_k) R_0(x_0) dx_0``, computed per component:

- ``closed``: exact when ``log R_0`` is quadratic (single-Gaussian ratios), any dimension;
- ``gh``: Gauss-Hermite nodes ``m_k + V_k^{1/2} z`` (a tensor grid in 2-D), doubling the node count
  until two successive counts agree to ``tol``. For ratio rewards ``(p_num/p_den)^w`` convergence is
  only algebraic (about 10-100x per doubling): ``R_0`` has singularities at the complex zeros of the
  mixture densities, close to the real axis. For whole 1-D/2-D grids :func:`analytic.grid.golden_on_grid`
  (a spectrally accurate trapezoid rule) is much faster;
- ``grid`` (d <= 2): the dense trapezoid quadrature of :mod:`analytic.grid` at the given points,
  spectrally accurate and robust near the integrability boundary; its error estimate is the change
  from a 30% coarser quadrature grid;
- ``is``: self-normalised importance sampling from each posterior component (any dimension),
  with delta-method standard errors.

``E_t`` is infinite when the tilted posterior is not integrable (for CFG: the conditional wider than
the unconditional and ``w`` large); :func:`check_integrable` detects it from the tails and raises.
"""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch

from sampler.schedules import sigma_to_abar

from .grid import QuadratureTooLarge, golden_at_points, tilted_posterior
from .integrability import check_integrable, tail_margin
from .mixture import GaussianMixture, Posterior, check_abar, check_points
from .quadrature import gauss_hermite
from .rewards import check_reward

__all__ = ["OptimalGuidance", "optimal_guidance", "optimal_denoiser", "METHODS"]

METHODS = ("auto", "closed", "grid", "gh", "is")
_CHUNK = 2_000_000  # points x components x nodes evaluated at once


class OptimalGuidance(NamedTuple):
    """The exact optimum at N points. All tensors are float64 and detached."""

    log_E: torch.Tensor  # [N]      log E_t(x_t)
    grad_log_E: torch.Tensor  # [N, d]   grad_{x_t} log E_t
    tilted_mean: torch.Tensor  # [N, d]   m_R, the optimal guided x0_hat
    golden: torch.Tensor  # [N, d]   -sqrt(1 - abar) grad log E_t, the term added to eps_c
    err_log_E: torch.Tensor  # [N]      error estimate of log_E (quadrature: last refinement; IS: standard error)
    err_grad: torch.Tensor  # [N, d]   the same for grad_log_E
    method: str  # "closed" | "grid" | "gh" | "is" | "exact" (abar = 1)
    nodes: int  # nodes per dimension (gh), samples per component (is), 0 otherwise


# --- per-component integrals ------------------------------------------------------------------


def _sqrt_psd(V: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of PSD matrices [K, d, d] (exact 0 at abar = 1)."""
    lam, U = torch.linalg.eigh(V)
    return (U * lam.clamp(min=0).sqrt()[..., None, :]) @ U.transpose(-1, -2)


class _Components(NamedTuple):
    log_I: torch.Tensor  # [N, K] log of int N(m_k, V_k) R_0
    shift: torch.Tensor  # [N, K, d] tilted mean minus m_k


def _widened_reference(V: torch.Tensor, reward) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Square roots ``L'_k`` of the Gaussians the Gauss-Hermite nodes are laid on, and ``A_-`` [d, d].

    Where ``R_0`` grows in the tails (negative tail curvature ``tau(u)``, e.g. CFG with a wide
    conditional), ``N(m_k, V_k) R_0`` is wider than ``N(m_k, V_k)`` and nodes on ``V_k`` miss its mass.
    The nodes are then laid on ``V'^{-1} = V^{-1} + A_- / 2``, with ``A_-`` the negative part of a
    quadratic fit of ``tau``, and reweighted by ``N(V) / N(V')``. Returns ``(sqrt(V), None)`` otherwise."""
    d = V.shape[-1]
    if d == 1:
        A = reward.tail_curvature(torch.ones(1, 1, dtype=torch.float64)).reshape(1, 1)
    else:  # least-squares fit of tau(u) = u^T A u on the half circle
        th = torch.linspace(0, math.pi, 65, dtype=torch.float64)[:-1]
        u = torch.stack([th.cos(), th.sin()], 1)
        tau = reward.tail_curvature(u)
        X = torch.stack([u[:, 0] ** 2, 2 * u[:, 0] * u[:, 1], u[:, 1] ** 2], 1)
        a, b, c = torch.linalg.lstsq(X, tau[:, None]).solution[:, 0]
        A = torch.stack([torch.stack([a, b]), torch.stack([b, c])])
    lam, U = torch.linalg.eigh(A)
    A_neg = (U * lam.clamp(max=0)) @ U.T
    if torch.all(lam >= 0):
        return _sqrt_psd(V), None
    P_ref = torch.linalg.inv(V) + A_neg / 2
    P_ref = 0.5 * (P_ref + P_ref.transpose(-1, -2))
    if torch.any(torch.linalg.eigvalsh(P_ref) <= 0):
        return _sqrt_psd(V), None
    return _sqrt_psd(torch.linalg.inv(P_ref)), A_neg


def _nodes_integrals(post: Posterior, L: torch.Tensor, reward, z: torch.Tensor, logw: torch.Tensor,
                     A_neg: torch.Tensor | None = None) -> _Components:
    """``I_k`` and tilted shifts from a node rule ``x_0 = m_k + L_k z_j`` with log weights ``logw``
    (for ``N(m_k, L_k L_k^T)``), reweighted to ``N(m_k, V_k)`` when ``A_neg`` is given (see
    :func:`_widened_reference`: ``log N(V)/N(V') = z^T L' A_- L' z / 4 + log det(V' V^{-1}) / 2``)."""
    N, K, d = post.means.shape
    offsets = torch.einsum("kij,mj->kmi", L, z)  # [K, M, d]
    if A_neg is not None:
        logdet_ratio = 2 * torch.logdet(L) - torch.logdet(post.covs)  # [K]
        logw = logw + 0.25 * torch.einsum("kmi,ij,kmj->km", offsets, A_neg, offsets) + 0.5 * logdet_ratio[:, None]
    M = z.shape[0]
    log_I = torch.empty(N, K, dtype=torch.float64)
    shift = torch.empty(N, K, d, dtype=torch.float64)
    step = max(1, _CHUNK // (K * M))
    for s in range(0, N, step):
        x0 = post.means[s:s + step, :, None, :] + offsets  # [n, K, M, d]
        n = x0.shape[0]
        logR = reward.log_r0(x0.reshape(-1, d)).reshape(n, K, M)
        if not torch.all(torch.isfinite(logR) | (logR == -math.inf)):
            raise ValueError("log R_0 is +inf or nan at a quadrature node")
        lw = logw + logR  # [n, K, M]
        log_I[s:s + step] = torch.logsumexp(lw, dim=2)
        shift[s:s + step] = torch.einsum("nkm,kmd->nkd", torch.softmax(lw, dim=2), offsets)
    return _Components(log_I, shift)


def _closed_integrals(post: Posterior, L: torch.Tensor, quad) -> _Components:
    """Exact ``I_k`` for ``log R_0 = -x^T A x / 2 + b^T x + c``: with ``g = b - A m``, ``M = I + L A L``,
    ``log I = log R_0(m) - log det(M)/2 + g^T L M^{-1} L g / 2`` and tilted shift ``L M^{-1} L g``."""
    A, b, c = quad
    N, K, d = post.means.shape
    m = post.means
    Mmat = torch.eye(d, dtype=torch.float64) + L @ A @ L  # [K, d, d]
    Mmat = 0.5 * (Mmat + Mmat.transpose(-1, -2))
    eig = torch.linalg.eigvalsh(Mmat)
    if torch.any(eig <= 1e-12):
        raise ValueError("E_t diverges: the reward-tilted posterior precision V^{-1} + A is not positive definite")
    logR_m = -0.5 * torch.einsum("nki,ij,nkj->nk", m, A, m) + m @ b + c
    g = b - m @ A  # [N, K, d] (A symmetric)
    Lg = torch.einsum("kij,nkj->nki", L, g)
    sol = torch.linalg.solve(Mmat, Lg.unsqueeze(-1)).squeeze(-1)  # M^{-1} L g
    shift = torch.einsum("kij,nkj->nki", L, sol)
    log_I = logR_m - 0.5 * torch.logdet(Mmat) + 0.5 * (Lg * sol).sum(-1)
    return _Components(log_I, shift)


def _importance_sampling(post: Posterior, L: torch.Tensor, reward, n: int, generator):
    """Stratified self-normalised IS with ``n`` common draws ``z ~ N(0, I)`` per posterior component;
    returns ``log E``, ``m_R - m``, ``m_R`` and delta-method standard errors of ``log E`` and ``m_R``."""
    N, K, d = post.means.shape
    z = torch.randn(n, d, dtype=torch.float64, generator=generator)
    offsets = torch.einsum("kij,mj->kmi", L, z)  # [K, n, d]
    x0 = post.means[:, :, None, :] + offsets  # [N, K, n, d]
    logR = reward.log_r0(x0.reshape(-1, d)).reshape(N, K, n)
    if torch.any(torch.isnan(logR) | (logR == math.inf)):
        raise ValueError("log R_0 is +inf or nan at a sample")
    comps = _Components(torch.logsumexp(logR, dim=2) - math.log(n),
                        torch.einsum("nkm,kmd->nkd", torch.softmax(logR, dim=2), offsets))
    log_E, diff, m_R = _combine(post, comps)
    b = post.log_weights.exp()  # [N, K]
    r = torch.exp(logR - log_E[:, None, None])  # R / E, [N, K, n]
    se_log_E = ((b**2 * r.var(dim=2, correction=1)).sum(1) / n).sqrt()  # sd(E_hat) / E
    centred = (post.means - post.mean()[:, None, :])[:, :, None, :] + offsets - diff[:, None, None, :]
    se_m = ((b[..., None] ** 2 * (r[..., None] * centred).var(dim=2, correction=1)).sum(1) / n).sqrt()
    return log_E, diff, m_R, se_log_E, se_m


def _combine(post: Posterior, comps: _Components) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``log E``, ``m_R - m`` and ``m_R`` from per-component integrals."""
    log_b = post.log_weights  # [N, K] untilted component weights
    log_E = torch.logsumexp(log_b + comps.log_I, dim=1)
    a_k = torch.softmax(log_b + comps.log_I, dim=1)  # tilted component weights
    m = post.mean()
    centred = post.means - m[:, None, :]
    diff = ((a_k - log_b.exp())[..., None] * centred).sum(1) + (a_k[..., None] * comps.shift).sum(1)
    return log_E, diff, m + diff


# --- the public entry point -------------------------------------------------------------------


def optimal_guidance(cond: GaussianMixture, reward, x_t, abar, *, method: str = "auto", tol: float = 1e-9,
                     max_nodes: int | None = None, n_samples: int = 4096,
                     generator: torch.Generator | None = None) -> OptimalGuidance:
    """The ideal-chain optimum ``log E_t``, ``grad log E_t`` and ``m_R`` at points ``x_t`` [N, d].

    Args:
        cond: the conditional model ``p(x_0 | y)`` whose posterior defines ``E_t``.
        reward: an object with ``log_r0(x0 [N, d]) -> [N]``, ``tail_curvature(u)`` and ``quadratic()``
            (every reward of :mod:`analytic.rewards`).
        abar: VP noise level in (0, 1]; at 1, ``E_0 = R_0`` and the golden term is 0.
        method: ``auto`` (closed if the log-reward is quadratic, else ``grid`` for d <= 2, else ``is``),
            ``closed``, ``grid`` (d <= 2), ``gh`` (d <= 2) or ``is``.
        tol: ``gh`` stops when doubling the nodes changes ``log E`` and ``grad log E`` by at most
            ``tol * (1 + |value|)`` at every point; ``RuntimeError`` if ``max_nodes`` is reached first.
        n_samples, generator: ``is`` only (draws per posterior component, shared by all points).

    Raises ``ValueError`` on bad input and when ``E_t`` diverges (never returns inf or nan).
    """
    a = check_abar(abar)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    x_t = check_points(x_t, cond.dim, cond.device, "x_t").detach()
    check_reward(reward, cond.dim)
    N, d = x_t.shape
    zeros_n, zeros_nd = torch.zeros(N, dtype=torch.float64), torch.zeros(N, d, dtype=torch.float64)

    if a == 1:  # E_0 = R_0: no integral, and -sqrt(1 - abar) grad log E is exactly 0.
        x = x_t.clone().requires_grad_(True)
        log_E = reward.log_r0(x)
        (grad,) = torch.autograd.grad(log_E.sum(), x)
        _finite(log_E, grad)
        return OptimalGuidance(log_E.detach(), grad, x_t, zeros_nd.clone(), zeros_n, zeros_nd, "exact", 0)

    quad = reward.quadratic()
    if method == "auto":
        method = "closed" if quad is not None else ("grid" if d <= 2 else "is")
    if method == "closed" and quad is None:
        raise ValueError(f"method 'closed' needs a quadratic log-reward; {type(reward).__name__} is not")
    if method in ("gh", "grid") and d > 2:
        raise ValueError(f"method {method!r} is for d <= 2 (tensor grids grow as n^d); got d={d}, use 'is'")

    coef = math.sqrt(a) / (1 - a)
    if method == "grid":  # golden_at_points validates (integrability included) at its own edge
        g = golden_at_points(cond, reward, x_t, a)
        m_R = cond.posterior(x_t, a).mean() + g.grad_log_E / coef
        _finite(g.log_E, g.grad_log_E)
        return OptimalGuidance(g.log_E, g.grad_log_E, m_R, -math.sqrt(1 - a) * g.grad_log_E, g.err_log_E,
                               g.err_grad, "grid", 0)
    check_integrable(cond, reward, a)
    post = cond.posterior(x_t, a)
    L = _sqrt_psd(post.covs)
    if method == "closed":
        log_E, diff, m_R = _combine(post, _closed_integrals(post, L, quad))
        err_log, err_grad, nodes = zeros_n, zeros_nd, 0
    elif method == "gh":
        if max_nodes is None:
            max_nodes = 1024 if d == 1 else 128
        n = 16 if d == 1 else 8
        L_ref, A_neg = _widened_reference(post.covs, reward)
        err_log, err_grad = torch.full_like(zeros_n, math.inf), torch.full_like(zeros_nd, math.inf)
        z, lw = gauss_hermite(n, d)
        prev = _combine(post, _nodes_integrals(post, L_ref, reward, z, lw, A_neg))
        while True:
            n *= 2
            if n > max_nodes:
                raise RuntimeError(
                    f"Gauss-Hermite did not reach tol={tol:g} with {max_nodes} nodes per dimension at abar={a:.6g} "
                    f"(last change {err_log.max().item():.3g} in log E, {err_grad.max().item():.3g} in grad log E); "
                    f"raise max_nodes, loosen tol, or use method='is'")
            z, lw = gauss_hermite(n, d)
            log_E, diff, m_R = _combine(post, _nodes_integrals(post, L_ref, reward, z, lw, A_neg))
            err_log = (log_E - prev[0]).abs()
            err_grad = coef * (diff - prev[1]).abs()
            ok_log = torch.all(err_log <= tol * (1 + log_E.abs()))
            ok_grad = torch.all(err_grad <= tol * (1 + coef * diff.abs()))
            if ok_log and ok_grad:
                break
            prev = (log_E, diff, m_R)
        nodes = n
    elif method == "is":
        if int(n_samples) != n_samples or n_samples < 2:
            raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
        log_E, diff, m_R, err_log, err_m = _importance_sampling(post, L, reward, int(n_samples), generator)
        err_grad = coef * err_m
        nodes = int(n_samples)
        if tail_margin(cond, reward, a, factor=2.0)[0] <= 1e-12:
            warnings.warn("R_0 has infinite variance under the posterior here: importance-sampling standard "
                          "errors are not reliable", RuntimeWarning, stacklevel=2)
    else:  # pragma: no cover - METHODS is checked above
        raise ValueError(f"unknown method {method!r}")

    grad = coef * diff
    _finite(log_E, grad)
    return OptimalGuidance(log_E, grad, m_R, -math.sqrt(1 - a) * grad, err_log, err_grad, method, nodes)


def _finite(log_E: torch.Tensor, grad: torch.Tensor) -> None:
    if not (torch.all(torch.isfinite(log_E)) and torch.all(torch.isfinite(grad))):
        raise ValueError("E_t or its gradient is not finite here (R_0 underflows or overflows at these points)")


def optimal_denoiser(cond: GaussianMixture, reward):
    """The optimal guided denoiser in the sampler's VE contract: ``fn(x [N, ...], sigma) -> m_R``, the
    reward-tilted posterior mean (THEORY.md section 4: ``x0_hat(eps_star) = m_R``). Plug it into
    ``sampler.TiltedMean(cond_denoiser, fn)``.

    The one implementation of the optimum as a denoiser: the dense quadrature of
    :func:`analytic.grid.tilted_posterior` (d <= 2), and where its grid would be too large (narrow
    kernels at small sigma in 2-D, where the posterior is sharp) the Gauss-Hermite posterior route of
    :func:`optimal_guidance` to a 1e-8 tolerance (it raises if it cannot meet it)."""
    check_reward(reward, cond.dim)

    def tilted_mean(x: torch.Tensor, sigma: float) -> torch.Tensor:
        a = sigma_to_abar(float(sigma))
        x_vp = math.sqrt(a) * x.detach().reshape(x.shape[0], -1).to(torch.float64)
        if a == 1:
            m_R = x_vp
        else:
            try:
                m_R = tilted_posterior(cond, reward, x_vp, a).tilted_mean
            except QuadratureTooLarge:
                m_R = optimal_guidance(cond, reward, x_vp, a, method="gh", tol=1e-8).tilted_mean
        return m_R.to(x.dtype).reshape(x.shape)

    return tilted_mean
