"""Exact optimal guidance on the ideal chain: ``log E_t`` and ``grad log E_t`` (THEORY.md section 4).

``E_t(x_t) = int p(x_0 | x_t) R_0(x_0) dx_0`` over the exact posterior of the conditional mixture, and

    grad_{x_t} log E_t = sqrt(abar) / (1 - abar) * (m_R - m),

with ``m`` the posterior mean and ``m_R`` the mean of the reward-tilted posterior. The posterior is a
K-component Gaussian mixture per point, so ``E_t = sum_k pi_k(x_t) I_k`` with
``I_k = int N(x_0; m_k, V_k) R_0(x_0) dx_0``, computed per component:

- ``closed``: exact when ``log R_0`` is quadratic (single-Gaussian ratios), any dimension;
- ``gh``: Gauss-Hermite nodes on a Gaussian fitted to each tilted component ``N(m_k, V_k) R_0`` (centred
  on its mode, found by Newton's method; precision the Hessian there, widened to the tail curvature of
  ``R_0`` where the tails are heavier), a tensor grid in 2-D, doubling the node count until two
  successive counts agree to ``tol``. Exact in one step for quadratic rewards; for ratio rewards
  ``(p_num/p_den)^w`` convergence is only algebraic (``R_0`` has singularities at the complex zeros of
  the mixture densities);
- ``grid`` (d <= 2): the dense trapezoid quadrature of :mod:`analytic.grid` at the given points, with
  spacing and extent chosen to meet ``tol`` (discretisation and truncation errors estimated);
- ``is``: self-normalised importance sampling, any dimension: per posterior component a defensive
  mixture of a Gaussian on the tilted mode (covariance ``c V_k``, ``c`` chosen so the weights have finite
  variance) and the untilted component; stratified draws, delta-method standard errors, the sample
  size grown until they meet ``tol`` and an effective-sample-size check.

``E_t`` is infinite when the tilted posterior is not integrable (for CFG: the conditional wider than
the unconditional and ``w`` large); :func:`check_integrable` detects it from the tails and raises.
"""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch

from sampler.schedules import sigma_to_abar

from .grid import golden_at_points, tilted_posterior
from .integrability import check_integrable, tail_curvature_min
from .mixture import GaussianMixture, Posterior, check_abar, check_points
from .quadrature import DEFAULT_TOL, QuadratureTooLarge, ToleranceNotMet, check_tol, gauss_hermite, probe_points
from .rewards import check_reward

__all__ = ["OptimalGuidance", "optimal_guidance", "optimal_denoiser", "METHODS", "DEFAULT_IS_TOL"]

METHODS = ("auto", "closed", "grid", "gh", "is")
DEFAULT_IS_TOL = 1e-2  # importance sampling: standard error of the golden term (eps units) and of log E
_CHUNK = 2_000_000  # points x components x nodes evaluated at once
_MIN_ESS = 100  # effective draws per significant tilted component below which IS warns
_IS_ENTRIES = 2_000_000  # draw x dimension entries per array in importance sampling (16 MB)


class OptimalGuidance(NamedTuple):
    """The exact optimum at N points. All tensors are float64 and detached."""

    log_E: torch.Tensor  # [N]      log E_t(x_t)
    grad_log_E: torch.Tensor  # [N, d]   grad_{x_t} log E_t
    tilted_mean: torch.Tensor  # [N, d]   m_R, the optimal guided x0_hat
    golden: torch.Tensor  # [N, d]   -sqrt(1 - abar) grad log E_t, the term added to eps_c
    err_log_E: torch.Tensor  # [N]      error estimate of log_E (quadrature: refinement; IS: standard error)
    err_grad: torch.Tensor  # [N, d]   the same for grad_log_E
    method: str  # "closed" | "grid" | "gh" | "is" | "exact" (abar = 1)
    nodes: int  # nodes per dimension (gh), samples per component (is), 0 otherwise
    golden_error: torch.Tensor  # [N, d]   the same for golden (eps units)
    err_tilted_mean: torch.Tensor  # [N, d]   the same for tilted_mean (x_0 units)


# --- per-component integrals ------------------------------------------------------------------


def _sqrt_psd(V: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of PSD matrices [..., d, d] (exact 0 at abar = 1)."""
    lam, U = torch.linalg.eigh(V)
    return (U * lam.clamp(min=0).sqrt()[..., None, :]) @ U.transpose(-1, -2)


class _Components(NamedTuple):
    log_I: torch.Tensor  # [N, K] log of int N(m_k, V_k) R_0
    shift: torch.Tensor  # [N, K, d] tilted mean minus m_k


class _Edge(NamedTuple):
    """What a node rule's outermost nodes carry: a sign of mass beyond them."""

    rel: torch.Tensor  # [N, K] share of I_k on the outermost nodes
    dist: torch.Tensor  # [N, K] their largest distance from the tilted mean


def _reward_derivatives(reward, y: torch.Tensor, hessian: bool):
    """``log R_0``, its gradient and (``hessian``) its Hessian at rows of y [M, d] (autograd; rows independent)."""
    y = y.detach().requires_grad_(True)
    with torch.enable_grad():
        val = reward.log_r0(y)
        (g,) = torch.autograd.grad(val.sum(), y, create_graph=hessian)
        H = None
        if hessian:
            H = torch.stack([torch.autograd.grad(g[:, i].sum(), y, retain_graph=i < y.shape[1] - 1)[0]
                             for i in range(y.shape[1])], 1)  # [M, d, d]
    return val.detach(), g.detach(), None if H is None else H.detach()


def _probe_phi(post: Posterior, reward, kappa: float):
    """``phi`` of each tilted component at the points of :func:`analytic.quadrature.probe_points` (rays from
    the middle of the centres and posterior means, out to four times their spread plus 40 tail widths
    ``1 / sqrt(kappa)``), chunk by chunk of points: yields ``(slice, probes [P, d], phi [b, K, P])``."""
    N, K, d = post.means.shape
    pts = torch.cat([reward.centres().to(torch.float64).reshape(-1, d), post.means.reshape(-1, d)])
    lo, hi = pts.min(0).values, pts.max(0).values
    r_max = 4 * (0.5 * (hi - lo).norm().item() + 1) + 40 / math.sqrt(kappa)
    probes = probe_points(0.5 * (lo + hi), min(reward.length_scale(), 1.0), r_max)  # [P, d]
    log_r = reward.log_r0(probes)
    Vinv = torch.linalg.inv(post.covs)
    for sl in _slices(N, max(1, _CHUNK // (K * probes.shape[0] * d))):
        off = probes[None, None] - post.means[sl, :, None, :]  # [b, K, P, d]
        yield sl, probes, -0.5 * torch.einsum("bkpi,kij,bkpj->bkp", off, Vinv, off) + log_r


def _probe_seeds(post: Posterior, reward, kappa: float, top: int) -> torch.Tensor:
    """For each tilted component, the ``top`` probes of :func:`_probe_phi` where ``phi`` is largest. [N, K, top, d]"""
    return torch.cat([probes[torch.topk(phi, min(top, probes.shape[0]), dim=2).indices]
                      for _, probes, phi in _probe_phi(post, reward, kappa)])


def _uncovered(post: Posterior, reward, kappa: float, centre: torch.Tensor, L: torch.Tensor, tol: float,
               reach: float) -> torch.Tensor:
    """The points [N] where a probe that carries tilted mass lies more than ``reach`` reference standard
    deviations (the outermost node of the rule used) from the reference ``N(centre, L L^T)`` of its
    component: those nodes did not see it, and their doubling converged without it. A probe carries mass when
    ``log pi_k(x_t) + phi`` is within ``log(1/tol) + 4`` nats of the best over components, probes, ``m_k``
    and the centres (mass that could move the golden term by about ``tol``)."""
    N, K, d = post.means.shape
    Vinv = torch.linalg.inv(post.covs)
    dc = centre - post.means
    phi_c = -0.5 * torch.einsum("nki,kij,nkj->nk", dc, Vinv, dc) + reward.log_r0(centre.reshape(-1, d)).reshape(N, K)
    phi_m = reward.log_r0(post.means.reshape(-1, d)).reshape(N, K)
    top = post.log_weights + torch.maximum(phi_c, phi_m)  # [N, K]
    Linv = torch.linalg.inv(L.expand(N, K, d, d))
    out = torch.zeros(N, dtype=torch.bool)
    for sl, probes, phi in _probe_phi(post, reward, kappa):
        lb = post.log_weights[sl, :, None]
        best = torch.maximum((lb + phi).amax((1, 2)), top[sl].amax(1))  # [b]
        heavy = lb + phi >= best[:, None, None] - (math.log(1 / tol) + 4)  # [b, K, P]
        z = torch.einsum("bkij,bkpj->bkpi", Linv[sl], probes[None, None] - centre[sl, :, None, :]).norm(dim=-1)
        out[sl] = (heavy & (z > reach)).any(2).any(1)
    return out


def _ascend(y: torch.Tensor, m: torch.Tensor, Vinv: torch.Tensor, reward, hessian: bool, iters: int = 60):
    """Maximise ``phi(y) = -(y - m)^T V^{-1} (y - m) / 2 + log R_0(y)`` row by row from y [R, d] (``Vinv``
    [R, d, d]): Newton steps where ``phi`` is concave (``hessian``), steps preconditioned with ``V``
    otherwise, halved until ``phi`` does not decrease; rows leave once their step is below 1e-12.
    Returns the maxima, ``phi`` there and ``-Hessian of phi`` (``None`` without ``hessian``)."""
    R, d = y.shape

    def derivs(rows, y):
        lr, g, H = _reward_derivatives(reward, y, hessian)
        dy = y - m[rows]
        phi = -0.5 * torch.einsum("ri,rij,rj->r", dy, Vinv[rows], dy) + lr
        return phi, -torch.einsum("rij,rj->ri", Vinv[rows], dy) + g, (Vinv[rows] - H if hessian else None)

    y = y.clone()
    phi, grad, prec = derivs(torch.arange(R), y)
    active = torch.arange(R)
    for _ in range(iters):
        if active.numel() == 0:
            break
        P = Vinv[active]
        if hessian:  # Newton where phi is concave, else the posterior precision
            pa = prec[active]
            ev = torch.linalg.eigvalsh(pa)
            P = torch.where((ev > 1e-12 * ev.abs().amax(-1, keepdim=True)).all(-1)[:, None, None], pa, P)
        step = torch.linalg.solve(P, grad[active].unsqueeze(-1)).squeeze(-1)
        rows, t = active, torch.ones(active.numel(), dtype=torch.float64)
        for _ in range(40):  # backtracking on the rows whose phi decreased
            new = derivs(rows, y[rows] + t[:, None] * step)
            keep = new[0] >= phi[rows] - 1e-12 * phi[rows].abs()
            y[rows[keep]] = y[rows[keep]] + t[keep, None] * step[keep]
            phi[rows[keep]], grad[rows[keep]] = new[0][keep], new[1][keep]
            if hessian:
                prec[rows[keep]] = new[2][keep]
            moved = (t[keep, None] * step[keep]).abs().amax(-1)
            done = rows[keep][moved <= 1e-12 * (1 + y[rows[keep]].abs().amax(-1))]
            active = active[~torch.isin(active, done)]
            if keep.all():
                break
            rows, t, step = rows[~keep], t[~keep] / 2, step[~keep]
        else:
            active = active[~torch.isin(active, rows)]  # no ascent along the step: a maximum up to rounding
    return y, phi, prec


def _tilted_modes(post: Posterior, reward, hessian: bool, kappa: float, iters: int = 60):
    """Local modes of each tilted component ``phi(y) = log N(y; m_k, V_k) + log R_0(y)`` (:func:`_ascend`),
    started from ``m_k``, from every reward centre (a tilt can pull the mass towards any of them) and from
    the best probes of :func:`_probe_seeds` (a mode far out, past a valley), chunk by chunk of points.
    Returns the modes [N, K, S, d], ``phi`` there [N, K, S] and ``-Hessian of phi`` [N, K, S, d, d]
    (``None`` without ``hessian``); seed 0 is ``m_k``."""
    N, K, d = post.means.shape
    centres = reward.centres().to(torch.float64).reshape(-1, d)
    probes = _probe_seeds(post, reward, kappa, 2 if d == 1 else 4)
    S = 1 + centres.shape[0] + probes.shape[2]
    Vinv = torch.linalg.inv(post.covs)
    out = []
    for sl in _slices(N, max(1, _CHUNK // (K * S * d * d * 8))):
        b = post.means[sl].shape[0]
        m = post.means[sl, :, None, :].expand(b, K, S, d)
        y0 = torch.cat([post.means[sl, :, None, :], centres[None, None].expand(b, K, centres.shape[0], d), probes[sl]], 2)
        V = Vinv[None, :, None].expand(b, K, S, d, d)
        y, phi, prec = _ascend(y0.reshape(-1, d), m.reshape(-1, d), V.reshape(-1, d, d), reward, hessian, iters)
        out.append((y.reshape(b, K, S, d), phi.reshape(b, K, S), None if prec is None else prec.reshape(b, K, S, d, d)))
    return (torch.cat([o[0] for o in out]), torch.cat([o[1] for o in out]),
            None if not hessian else torch.cat([o[2] for o in out]))


def _tail_fit(reward, d: int) -> tuple[torch.Tensor, float]:
    """A quadratic form ``A`` [d, d] for the tail curvature ``tau(u) ~ u^T A u`` (d <= 2) and how far the fit
    exceeds ``tau`` at worst (so ``u^T (A - excess I) u <= tau(u)``): ``tau`` itself in 1-D, a least-squares
    fit on 64 directions of the half circle in 2-D."""
    if d == 1:
        return reward.tail_curvature(torch.ones(1, 1, dtype=torch.float64)).reshape(1, 1), 0.0
    th = torch.linspace(0, math.pi, 65, dtype=torch.float64)[:-1]
    u = torch.stack([th.cos(), th.sin()], 1)
    tau = reward.tail_curvature(u)
    X = torch.stack([u[:, 0] ** 2, 2 * u[:, 0] * u[:, 1], u[:, 1] ** 2], 1)
    coef = torch.linalg.lstsq(X, tau[:, None]).solution[:, 0]
    a, b, c = coef
    return torch.stack([torch.stack([a, b]), torch.stack([b, c])]), max(((X @ coef) - tau).max().item(), 0.0)


def _posterior_reference(post: Posterior, reward) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Hermite reference 1: each posterior component ``N(m_k, V_k)`` itself, so the nodes see
    ``R_0`` alone (smooth, spectrally accurate where ``R_0`` does not move the mass far). Where ``R_0``
    grows in the tails (``A_-``, the negative part of the fit of ``tau``) the component is widened to
    ``V'^{-1} = V^{-1} + A_- / 2``. Returns the centres [N, K, d] and covariance square roots [K, d, d]."""
    V = post.covs
    A, _ = _tail_fit(reward, V.shape[-1])
    lam, U = torch.linalg.eigh(A)
    if torch.all(lam >= 0):
        return post.means, _sqrt_psd(V)
    P_ref = torch.linalg.inv(V) + (U * lam.clamp(max=0)) @ U.T / 2
    P_ref = 0.5 * (P_ref + P_ref.transpose(-1, -2))
    if torch.any(torch.linalg.eigvalsh(P_ref) <= 0):
        return post.means, _sqrt_psd(V)
    return post.means, _sqrt_psd(torch.linalg.inv(P_ref))


def _laplace_reference(post: Posterior, reward, kappa: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Hermite reference 2, for points where the first does not converge (a tilt that moves the mass
    far from ``m_k``): a Gaussian on the tilted mode of largest Laplace mass, with the Hessian of ``-phi``
    there as precision, lowered (generalised eigenvalues clamped to [0.05, 1]) to half the tail precision
    ``V^{-1} + tau`` so that the integrand over the reference decays in the tails. Returns the centres
    [N, K, d] and covariance square roots [N, K, d, d]."""
    N, K, d = post.means.shape
    modes, phi, prec = _tilted_modes(post, reward, hessian=True, kappa=kappa)
    S = modes.shape[2]
    Vinv = torch.linalg.inv(post.covs)
    prec = 0.5 * (prec + prec.transpose(-1, -2))
    concave = (torch.linalg.eigvalsh(prec) > 0).all(-1)  # [N, K, S]
    prec = torch.where(concave[..., None, None], prec, Vinv[None, :, None])
    evidence = phi - 0.5 * torch.linalg.eigvalsh(prec).log().sum(-1)  # log Laplace mass
    best = evidence.argmax(2)  # [N, K]
    pick = lambda t: torch.gather(t, 2, best.reshape(N, K, 1, *([1] * (t.ndim - 3))).expand(  # noqa: E731
        N, K, 1, *t.shape[3:])).squeeze(2)
    centre, prec = pick(modes), pick(prec)
    A, excess = _tail_fit(reward, d)
    tail = 0.5 * (Vinv + A - excess * torch.eye(d, dtype=torch.float64))  # [K, d, d]
    R = torch.linalg.cholesky(prec)  # prec = R R^T
    Rinv = torch.linalg.inv(R)
    Mt = Rinv @ tail @ Rinv.transpose(-1, -2)
    mu, U = torch.linalg.eigh(0.5 * (Mt + Mt.transpose(-1, -2)))
    ref = R @ (U * mu.clamp(0.05, 1.0)[..., None, :]) @ U.transpose(-1, -2) @ R.transpose(-1, -2)
    return centre, _sqrt_psd(torch.linalg.inv(0.5 * (ref + ref.transpose(-1, -2))))


def _nodes_integrals(post: Posterior, centre: torch.Tensor, L: torch.Tensor, reward, z: torch.Tensor,
                     logw: torch.Tensor) -> _Components:
    """``I_k`` and tilted shifts from a node rule ``x_0 = c_nk + L_nk z_j`` (log weights ``logw`` for N(0, I)),
    reweighted from the reference ``N(c_nk, L L^T)`` to ``N(m_nk, V_k)``. ``L`` is [K, d, d] or [N, K, d, d]."""
    N, K, d = post.means.shape
    M = z.shape[0]
    L = L.expand(N, K, d, d)
    Vinv = torch.linalg.inv(post.covs)
    log_ratio = torch.logdet(L) - 0.5 * torch.logdet(post.covs)  # [N, K] log det(L) / det(V)^(1/2)
    base = logw + 0.5 * (z**2).sum(1)  # [M]
    outer = (z.abs() >= z.abs().max() * (1 - 1e-12)).any(1)  # the outermost nodes of each axis
    log_I = torch.empty(N, K, dtype=torch.float64)
    shift = torch.empty(N, K, d, dtype=torch.float64)
    edge_rel = torch.empty(N, K, dtype=torch.float64)
    edge_dist = torch.empty(N, K, dtype=torch.float64)
    for sl in _slices(N, max(1, _CHUNK // (K * M))):
        x0 = centre[sl, :, None, :] + torch.einsum("nkij,mj->nkmi", L[sl], z)  # [n, K, M, d]
        n = x0.shape[0]
        logR = reward.log_r0(x0.reshape(-1, d)).reshape(n, K, M)
        if not torch.all(torch.isfinite(logR) | (logR == -math.inf)):
            raise ValueError("log R_0 is +inf or nan at a quadrature node")
        off = x0 - post.means[sl, :, None, :]  # [n, K, M, d]
        q = torch.einsum("nkmi,kij,nkmj->nkm", off, Vinv, off)
        lw = base + logR - 0.5 * q + log_ratio[sl, :, None]
        log_I[sl] = torch.logsumexp(lw, dim=2)
        shift[sl] = torch.einsum("nkm,nkmd->nkd", torch.softmax(lw, dim=2), off)
        edge_rel[sl] = torch.exp(torch.logsumexp(lw[:, :, outer], dim=2) - log_I[sl])
        edge_dist[sl] = (off[:, :, outer] - shift[sl, :, None, :]).norm(dim=-1).amax(-1)
    return _Components(log_I, shift), _Edge(edge_rel, edge_dist)


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


def _combine(post: Posterior, comps: _Components) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``log E``, ``m_R - m`` and ``m_R`` from per-component integrals."""
    log_b = post.log_weights  # [N, K] untilted component weights
    log_E = torch.logsumexp(log_b + comps.log_I, dim=1)
    a_k = torch.softmax(log_b + comps.log_I, dim=1)  # tilted component weights
    m = post.mean()
    centred = post.means - m[:, None, :]
    diff = ((a_k - log_b.exp())[..., None] * centred).sum(1) + (a_k[..., None] * comps.shift).sum(1)
    return log_E, diff, m + diff


# --- Gauss-Hermite --------------------------------------------------------------------------------


def _check_max_nodes(max_nodes, d: int) -> int:
    start = 16 if d == 1 else 8
    if max_nodes is None:
        return 1024 if d == 1 else 128
    if isinstance(max_nodes, bool) or not isinstance(max_nodes, (int, float)) or not math.isfinite(max_nodes) \
            or int(max_nodes) != max_nodes or max_nodes < start:
        raise ValueError(f"max_nodes must be a finite integer >= {start} (nodes per dimension), got {max_nodes!r}")
    return int(max_nodes)


def _doubling(post: Posterior, centre, L, reward, coef_g: float, tol: float, max_nodes: int):
    """Gauss-Hermite on one reference, doubling the nodes per dimension until every point's ``log E`` and
    golden term are within ``tol`` or ``max_nodes`` is reached. The error estimate is the last change plus
    the share of the integral on the outermost nodes (times its distance, for the mean): the change cannot
    see mass beyond the nodes. Returns ``(log E, m_R - m, m_R)``, the errors of ``log E`` [N] and
    ``m_R - m`` [N, d] (inf without a doubling), and the node count."""
    N, K, d = post.means.shape

    def rule(n):
        comps, edge = _nodes_integrals(post, centre, L, reward, *gauss_hermite(n, d))
        out = _combine(post, comps)
        a_k = torch.softmax(post.log_weights + comps.log_I, dim=1)  # tilted component weights
        return out, (a_k * edge.rel).sum(1), (a_k * edge.rel * edge.dist).sum(1)

    n = 16 if d == 1 else 8
    cur, _, _ = rule(n)
    err_log = torch.full((N,), math.inf, dtype=torch.float64)
    err_diff = torch.full((N, d), math.inf, dtype=torch.float64)
    while 2 * n <= max_nodes:
        n *= 2
        prev, (cur, edge_log, edge_diff) = cur, rule(n)
        err_log = torch.nan_to_num((cur[0] - prev[0]).abs() + edge_log, nan=math.inf)
        err_diff = torch.nan_to_num((cur[1] - prev[1]).abs() + edge_diff[:, None], nan=math.inf)
        if bool((err_log <= tol).all()) and bool((coef_g * err_diff <= tol).all()):
            break
    return cur, err_log, err_diff, n


def _reach(n: int, d: int) -> float:
    """The outermost node of the ``n``-point Gauss-Hermite rule."""
    return gauss_hermite(n, d)[0].abs().max().item()


def _gauss_hermite(post: Posterior, reward, a: float, kappa: float, tol: float, max_nodes: int):
    """:func:`_doubling` on the posterior reference, then on the Laplace reference for the points where that
    did not converge; ``ToleranceNotMet`` when neither reaches ``tol`` at some point. Returns
    ``(log E, m_R - m, m_R)``, the last changes and the node count."""
    coef_g = math.sqrt(a / (1 - a))  # golden = -coef_g (m_R - m)

    def excess(err_log, err_diff):  # [N], <= 1 where converged
        return torch.maximum(err_log, coef_g * err_diff.amax(-1)) / tol

    ref = _posterior_reference(post, reward)
    vals, err_log, err_diff, n = _doubling(post, *ref, reward, coef_g, tol, max_nodes)
    unseen = _uncovered(post, reward, kappa, *ref, tol, _reach(n, post.means.shape[2]))  # mass the posterior reference's nodes cannot see
    err_log, err_diff = err_log.masked_fill(unseen, math.inf), err_diff.masked_fill(unseen[:, None], math.inf)
    bad = excess(err_log, err_diff) > 1
    if bad.any():
        idx = torch.nonzero(bad).flatten()
        sub = Posterior(post.log_weights[idx], post.means[idx], post.covs)
        ref2 = _laplace_reference(sub, reward, kappa)
        vals2, err_log2, err_diff2, n2 = _doubling(sub, *ref2, reward, coef_g, tol, max_nodes)
        unseen2 = _uncovered(sub, reward, kappa, *ref2, tol, _reach(n2, post.means.shape[2]))
        err_log2, err_diff2 = err_log2.masked_fill(unseen2, math.inf), err_diff2.masked_fill(unseen2[:, None], math.inf)
        better = excess(err_log2, err_diff2) < excess(err_log[idx], err_diff[idx])
        vals = tuple(v.clone() for v in vals)
        for v, v2 in zip(vals + (err_log, err_diff), vals2 + (err_log2, err_diff2)):
            v[idx[better]] = v2[better]
        n = max(n, n2)
    if bool((excess(err_log, err_diff) > 1).any()):
        why = ("tilted mass lies beyond the reach of either Gauss-Hermite reference (several separated modes)"
               if bool(torch.isinf(err_log).any()) else f"last change {err_log.max().item():.3g} in log E, "
               f"{coef_g * err_diff.max().item():.3g} in the golden term")
        raise ToleranceNotMet(
            f"Gauss-Hermite did not reach tol={tol:g} with {max_nodes} nodes per dimension at abar={a:.6g} ({why}); "
            f"raise max_nodes, loosen tol, or use method='grid' (d <= 2) or 'is'")
    return vals, err_log, err_diff, n


# --- importance sampling ----------------------------------------------------------------------------


def _proposal_scale(cond: GaussianMixture, reward, a: float) -> float:
    """The smallest ``c`` in 1, 2, 4, ... with ``N(y, c V_k)`` a proposal of finite weight variance for every
    tilted component: ``2 (V^{-1} + tau) - V^{-1}/c > 0``, i.e. a positive tail curvature (by at least half
    the integrability margin) with ``tau`` scaled by ``2c / (2c - 1)``."""
    kappa = tail_curvature_min(cond, reward, a)[0]
    c = 1.0
    while c < 2.0**30:
        if tail_curvature_min(cond, reward, a, factor=2 * c / (2 * c - 1))[0] >= 0.5 * kappa:
            return c
        c *= 2
    return c


def _importance_sampling(post: Posterior, modes: torch.Tensor, c: float, reward, n: int, generator,
                         alpha: float = 0.75):
    """Stratified self-normalised IS with ``n`` common draws per posterior component from the defensive
    mixture ``alpha/S sum_s N(mode_nks, c V_k) + (1 - alpha) N(m_nk, V_k)`` over the S local modes of the
    tilted component (draws split in those proportions, weights by the mixture density: the balance
    heuristic), chunk by chunk of points. Returns ``log E``, ``m_R - m``, ``m_R``, delta-method standard
    errors of ``log E`` and ``m_R - m`` (stratum by stratum, of the per-draw sums over components), and
    the smallest effective sample size of a tilted component carrying more than 1e-3 of the tilted mass."""
    N, K, d = post.means.shape
    S = modes.shape[2]
    L = _sqrt_psd(post.covs)  # [K, d, d]
    Vinv = torch.linalg.inv(post.covs)
    n_wide = S * max(2, min((n - 2) // S, round(alpha * n / S)))
    alpha = n_wide / n
    z = torch.randn(n, d, dtype=torch.float64, generator=generator)
    scale = torch.cat([torch.full((n_wide,), math.sqrt(c)), torch.ones(n - n_wide)]).to(torch.float64)
    offsets = torch.einsum("kij,mj->kmi", L, z) * scale[:, None]  # [K, n, d] around each draw's centre
    owner = torch.arange(n_wide) // (n_wide // S)  # the mode each wide draw is centred on (blocks)
    strata = [slice(s * (n_wide // S), (s + 1) * (n_wide // S)) for s in range(S)] + [slice(n_wide, n)]
    log_c_det = 0.5 * d * math.log(c)
    out = []
    for sl in _slices(N, max(1, _IS_ENTRIES // (K * n * d))):
        part = Posterior(post.log_weights[sl], post.means[sl], post.covs)
        m, y = part.means, modes[sl]  # [b, K, d], [b, K, S, d]
        b = m.shape[0]
        centres = torch.cat([y[:, :, owner], m[:, :, None, :].expand(b, K, n - n_wide, d)], 2)
        x0 = centres + offsets  # [b, K, n, d]
        off_m = x0 - m[:, :, None, :]
        q_m = torch.einsum("bkni,kij,bknj->bkn", off_m, Vinv, off_m)
        q_s = []
        for s in range(S):
            off_s = x0 - y[:, :, s, None, :]  # [b, K, n, d]
            q_s.append(torch.einsum("bkni,kij,bknj->bkn", off_s, Vinv, off_s) / c)
        log_wide = torch.logsumexp(-0.5 * torch.stack(q_s, 3), 3) + math.log(alpha / S) - log_c_det
        log_q = torch.logaddexp(log_wide, math.log(1 - alpha) - 0.5 * q_m)
        logR = reward.log_r0(x0.reshape(-1, d)).reshape(b, K, n)
        if torch.any(torch.isnan(logR) | (logR == math.inf)):
            raise ValueError("log R_0 is +inf or nan at a sample")
        lw = -0.5 * q_m - log_q + logR  # log N(x0; m, V) R_0 / q (shared constants cancel), [b, K, n]
        log_I = torch.logsumexp(lw, 2) - math.log(n)
        w = torch.softmax(lw, 2)
        log_E, diff, m_R = _combine(part, _Components(log_I, torch.einsum("bkn,bknd->bkd", w, off_m)))
        bw = part.log_weights.exp()  # [b, K]
        r = torch.exp(lw - log_E[:, None, None])  # R w / E per draw
        centred = (m - part.mean()[:, None, :])[:, :, None, :] + off_m - diff[:, None, None, :]  # x0 - m_R
        # the draws z are shared by the components: the variance of the per-draw combination
        se_log = _stratified_var((bw[..., None] * r).sum(1), strata).sqrt() / n
        se_m = _stratified_var((bw[..., None, None] * r[..., None] * centred).sum(1), strata).sqrt() / n
        significant = torch.softmax(part.log_weights + log_I, 1) > 1e-3
        ess = torch.where(significant, 1 / (w**2).sum(2), torch.full_like(log_I, math.inf)).amin(1)
        out.append((log_E, diff, m_R, se_log, se_m, ess))
    cat = [torch.cat([o[i] for o in out]) for i in range(6)]
    return (*cat[:5], cat[5].min().item())


def _distinct_modes(post: Posterior, modes: torch.Tensor, phi: torch.Tensor, top: int = 3) -> torch.Tensor:
    """Up to ``top`` local modes per tilted component, highest ``phi`` first, each at least half a posterior
    standard deviation from the others; slots left over repeat the best. [N, K, top, d]"""
    N, K, S, d = modes.shape
    order = torch.argsort(phi, dim=2, descending=True)
    modes = torch.gather(modes, 2, order[..., None].expand(N, K, S, d))
    sep = 0.5 * torch.linalg.eigvalsh(post.covs).amax(-1).sqrt()[None, :]  # [1, K]
    out = modes[:, :, :1].expand(N, K, top, d).clone()
    count = torch.ones(N, K, dtype=torch.long)
    for s in range(1, S):
        cand = modes[:, :, s]
        far = ((out - cand[:, :, None]).norm(dim=-1) > sep[..., None])  # [N, K, top]
        seen = torch.arange(top)[None, None] < count[..., None]
        take = (far | ~seen).all(-1) & (count < top)
        slot = count.clamp(max=top - 1)
        out[take, slot[take]] = cand[take]
        count = count + take.long()
    return out


def _stratified_var(v: torch.Tensor, strata) -> torch.Tensor:
    """``sum_s n_s var_s(v)`` over strata of the draw axis (dim 1): ``n^2`` times the variance of the mean of
    a stratified sample. v [b, n, ...] -> [b, ...]"""
    return sum(v[:, sl].var(dim=1, correction=1) * v[:, sl].shape[1] for sl in strata)


def _slices(N: int, step: int):
    return [slice(s, s + step) for s in range(0, N, step)]


def _importance(cond, reward, post: Posterior, a: float, tol: float, n_samples: int, max_samples: int, generator):
    """IS with the sample size grown 4x at a time until the standard errors of ``log E`` and of the golden
    term are within ``tol`` (``RuntimeWarning`` with the errors reached past ``max_samples``; another
    when the effective sample size of a significant tilted component is below ``_MIN_ESS``)."""
    d = cond.dim
    coef_g = math.sqrt(a / (1 - a))
    modes, phi, _ = _tilted_modes(post, reward, hessian=d <= 2, kappa=tail_curvature_min(cond, reward, a)[0])
    modes = _distinct_modes(post, modes, phi)
    c = _proposal_scale(cond, reward, a)
    budget = min(max_samples, max(n_samples, _IS_ENTRIES // (cond.n_components * d)))  # one point's draws in memory
    n = n_samples
    while True:
        out = _importance_sampling(post, modes, c, reward, n, generator)
        se_log, se_m = out[3], out[4]
        reached = max(se_log.max().item(), coef_g * se_m.max().item()) if se_log.numel() else 0.0
        if reached <= tol or 4 * n > budget:
            break
        n *= 4
    if reached > tol:
        warnings.warn(f"importance sampling reached a standard error of {reached:.3g} (tol {tol:.3g}) with {n} draws "
                      f"per component (budget {budget}: max_samples={max_samples} and memory)", RuntimeWarning,
                      stacklevel=3)
    if out[5] < _MIN_ESS:
        warnings.warn(f"importance weights are degenerate: a tilted component has an effective sample size of "
                      f"{out[5]:.3g} of {n} draws; the standard errors are not reliable (use method='grid' or 'gh' "
                      f"in d <= 2)", RuntimeWarning, stacklevel=3)
    return out[:5], n


# --- the public entry point -------------------------------------------------------------------


def _check_count(v, name: str, least: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or int(v) != v or v < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {v!r}")
    return int(v)


def optimal_guidance(cond: GaussianMixture, reward, x_t, abar, *, method: str = "auto", tol: float | None = None,
                     max_nodes: int | None = None, n_samples: int = 4096, max_samples: int = 262_144,
                     generator: torch.Generator | None = None) -> OptimalGuidance:
    """The ideal-chain optimum ``log E_t``, ``grad log E_t`` and ``m_R`` at points ``x_t`` [N, d], each with an
    error estimate.

    Args:
        cond: the conditional model ``p(x_0 | y)`` whose posterior defines ``E_t``.
        reward: an :class:`analytic.Reward` (every reward of :mod:`analytic.rewards`).
        abar: VP noise level in (0, 1]; at 1, ``E_0 = R_0`` and the golden term is 0.
        method: ``auto`` (closed if the log-reward is quadratic; else ``grid`` for d <= 2, falling back to
            ``gh`` where the grid is over its budget; else ``is``), ``closed``, ``grid`` (d <= 2), ``gh``
            (d <= 2) or ``is``.
        tol: absolute tolerance on ``golden`` (eps units) and ``log_E`` (nats) at every point; default
            ``DEFAULT_TOL`` (1e-6), and for ``is`` ``DEFAULT_IS_TOL`` (1e-2, a standard error). ``grid``
            refines its spacing and extent to meet it; ``gh`` doubles its nodes until two successive counts
            agree to it (``ToleranceNotMet``, a ``RuntimeError``, past ``max_nodes``); ``is`` grows its sample
            from ``n_samples`` until the standard errors meet it (a ``RuntimeWarning`` with the error reached
            past ``max_samples``).
        n_samples, max_samples, generator: ``is`` only (draws per posterior component, shared by all points).

    ``err_log_E``, ``err_grad``, ``golden_error`` and ``err_tilted_mean`` estimate the error of each value
    (0 for closed forms; the last refinement for quadrature; standard errors for ``is``).
    Raises ``ValueError`` on bad input and when ``E_t`` diverges (never returns inf or nan).
    """
    a = check_abar(abar)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    tol = None if tol is None else check_tol(tol)
    x_t = check_points(x_t, cond.dim, cond.device, "x_t").detach()
    check_reward(reward, cond.dim)
    N, d = x_t.shape
    zeros_n, zeros_nd = torch.zeros(N, dtype=torch.float64), torch.zeros(N, d, dtype=torch.float64)

    if a == 1:  # E_0 = R_0: no integral, and -sqrt(1 - abar) grad log E is exactly 0.
        x = x_t.clone().requires_grad_(True)
        log_E = reward.log_r0(x)
        (grad,) = torch.autograd.grad(log_E.sum(), x) if N else (zeros_nd,)
        _finite(log_E, grad)
        return OptimalGuidance(log_E.detach(), grad, x_t, zeros_nd.clone(), zeros_n, zeros_nd, "exact", 0, zeros_nd,
                               zeros_nd)

    quad = reward.quadratic()
    if method == "closed" and quad is None:
        raise ValueError(f"method 'closed' needs a quadratic log-reward; {type(reward).__name__} is not")
    if method in ("gh", "grid") and d > 2:
        raise ValueError(f"method {method!r} is for d <= 2 (tensor grids grow as n^d); got d={d}, use 'is'")
    if method == "gh":
        max_nodes = _check_max_nodes(max_nodes, d)
    if method in ("is", "auto"):
        n_samples = _check_count(n_samples, "n_samples", 2)
        max_samples = _check_count(max_samples, "max_samples", n_samples)
    if method == "auto":
        method = "closed" if quad is not None else ("grid" if d <= 2 else "is")
        if method == "grid":
            try:
                return _grid(cond, reward, x_t, a, DEFAULT_TOL if tol is None else tol)
            except (QuadratureTooLarge, ToleranceNotMet) as grid_error:
                try:
                    return optimal_guidance(cond, reward, x_t, a, method="gh", tol=tol, max_nodes=max_nodes)
                except ToleranceNotMet as gh_error:
                    raise ToleranceNotMet(f"neither route met the tolerance here. grid: {grid_error} gh: {gh_error}") \
                        from gh_error
    if tol is None:
        tol = DEFAULT_IS_TOL if method == "is" else DEFAULT_TOL

    if method == "grid":
        return _grid(cond, reward, x_t, a, tol)
    check_integrable(cond, reward, a)
    coef = math.sqrt(a) / (1 - a)
    if N == 0:
        return OptimalGuidance(zeros_n, zeros_nd, zeros_nd, zeros_nd, zeros_n, zeros_nd, method, 0, zeros_nd, zeros_nd)
    post = cond.posterior(x_t, a)
    if method == "closed":
        log_E, diff, m_R = _combine(post, _closed_integrals(post, _sqrt_psd(post.covs), quad))
        err_log, err_diff, nodes = zeros_n, zeros_nd, 0
    elif method == "gh":
        kappa = tail_curvature_min(cond, reward, a)[0]
        (log_E, diff, m_R), err_log, err_diff, nodes = _gauss_hermite(post, reward, a, kappa, tol, max_nodes)
    elif method == "is":
        (log_E, diff, m_R, err_log, err_diff), nodes = _importance(cond, reward, post, a, tol, n_samples, max_samples,
                                                                    generator)
    else:  # pragma: no cover - METHODS is checked above
        raise ValueError(f"unknown method {method!r}")

    grad = coef * diff
    _finite(log_E, grad)
    c = math.sqrt(1 - a)
    return OptimalGuidance(log_E, grad, m_R, -c * grad, err_log, coef * err_diff, method, nodes, c * coef * err_diff,
                           err_diff)


def _grid(cond, reward, x_t, a: float, tol: float) -> OptimalGuidance:
    """``method="grid"``: :func:`analytic.grid.golden_at_points` (which validates at its own edge)."""
    g = golden_at_points(cond, reward, x_t, a, tol=tol)
    coef = math.sqrt(a) / (1 - a)
    m = cond.posterior(x_t, a).mean() if x_t.shape[0] else torch.zeros_like(x_t)
    _finite(g.log_E, g.grad_log_E)
    return OptimalGuidance(g.log_E, g.grad_log_E, m + g.grad_log_E / coef, g.golden, g.err_log_E, g.err_grad, "grid",
                           0, g.golden_error, g.err_grad / coef)


def _finite(log_E: torch.Tensor, grad: torch.Tensor) -> None:
    if not (torch.all(torch.isfinite(log_E)) and torch.all(torch.isfinite(grad))):
        raise ValueError("E_t or its gradient is not finite here (R_0 underflows or overflows at these points)")


def optimal_denoiser(cond: GaussianMixture, reward, *, tol: float = DEFAULT_TOL):
    """The optimal guided denoiser in the sampler's VE contract: ``fn(x [N, ...], sigma) -> m_R``, the
    reward-tilted posterior mean (THEORY.md section 4: ``x0_hat(eps_star) = m_R``). Plug it into
    ``sampler.TiltedMean(cond_denoiser, fn)``.

    ``tol``: absolute tolerance on ``m_R`` (x_0 units). The one implementation of the optimum as a
    denoiser: the dense quadrature of :func:`analytic.grid.tilted_posterior` (d <= 2), and where its grid
    is over budget (narrow kernels at small sigma in 2-D, where the posterior is sharp) the Gauss-Hermite
    posterior route of :func:`optimal_guidance` to the same tolerance. The contract returns values only:
    each call meets ``tol`` or raises (``ToleranceNotMet``); the error estimates are in those routines."""
    check_reward(reward, cond.dim)
    tol = check_tol(tol)

    def tilted_mean(x: torch.Tensor, sigma: float) -> torch.Tensor:
        a = sigma_to_abar(float(sigma))
        x_vp = math.sqrt(a) * x.detach().reshape(x.shape[0], -1).to(torch.float64)
        if a == 1:
            m_R = x_vp
        else:
            try:
                m_R = tilted_posterior(cond, reward, x_vp, a, tol=tol).tilted_mean
            except (QuadratureTooLarge, ToleranceNotMet):
                m_R = optimal_guidance(cond, reward, x_vp, a, method="gh", tol=tol * math.sqrt(a / (1 - a))).tilted_mean
        return m_R.to(x.dtype).reshape(x.shape)

    return tilted_mean
