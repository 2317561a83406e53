"""Gauss-Hermite integrals of the tilted posterior components (``method="gh"`` of
:func:`analytic.optimal_guidance`, d <= 2): nodes on a reference Gaussian per point and component,
doubled until two successive counts agree to the tolerance.

Two references: the posterior component itself (widened where ``R_0`` grows in the tails), so the nodes
see ``R_0`` alone and converge spectrally where the tilt is mild; then, for points where that does not
converge or where ray probes find tilted mass beyond its outermost node, a Laplace reference on the
tilted mode of largest mass. For ratio rewards ``(p_num/p_den)^w`` convergence is only algebraic (``R_0``
has singularities at the complex zeros of the mixture densities).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .mixture import Posterior
from .quadrature import ToleranceNotMet, gauss_hermite
from .tilted import CHUNK, Components, combine, probe_phi, slices, sqrt_psd, tail_fit, tilted_modes

__all__ = ["check_max_nodes", "gauss_hermite_rule"]

_ROUND = 64 * torch.finfo(torch.float64).eps  # rounding floor of the error estimates (relative)

class _Edge(NamedTuple):
    """What a node rule's outermost nodes carry: a sign of mass beyond them."""

    rel: torch.Tensor  # [N, K] share of I_k on the outermost nodes
    dist: torch.Tensor  # [N, K] their largest distance from the tilted mean


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
    for sl, probes, phi in probe_phi(post, reward, kappa):
        lb = post.log_weights[sl, :, None]
        best = torch.maximum((lb + phi).amax((1, 2)), top[sl].amax(1))  # [b]
        heavy = lb + phi >= best[:, None, None] - (math.log(1 / tol) + 4)  # [b, K, P]
        z = torch.einsum("bkij,bkpj->bkpi", Linv[sl], probes[None, None] - centre[sl, :, None, :]).norm(dim=-1)
        out[sl] = (heavy & (z > reach)).any(2).any(1)
    return out


def _posterior_reference(post: Posterior, reward) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Hermite reference 1: each posterior component ``N(m_k, V_k)`` itself, so the nodes see
    ``R_0`` alone (smooth, spectrally accurate where ``R_0`` does not move the mass far). Where ``R_0``
    grows in the tails (``A_-``, the negative part of the fit of ``tau``) the component is widened to
    ``V'^{-1} = V^{-1} + A_- / 2``. Returns the centres [N, K, d] and covariance square roots [K, d, d]."""
    V = post.covs
    A, _ = tail_fit(reward, V.shape[-1])
    lam, U = torch.linalg.eigh(A)
    if torch.all(lam >= 0):
        return post.means, sqrt_psd(V)
    P_ref = torch.linalg.inv(V) + (U * lam.clamp(max=0)) @ U.T / 2
    P_ref = 0.5 * (P_ref + P_ref.transpose(-1, -2))
    if torch.any(torch.linalg.eigvalsh(P_ref) <= 0):
        return post.means, sqrt_psd(V)
    return post.means, sqrt_psd(torch.linalg.inv(P_ref))


def _laplace_reference(post: Posterior, reward, kappa: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Hermite reference 2, for points where the first does not converge (a tilt that moves the mass
    far from ``m_k``): a Gaussian on the tilted mode of largest Laplace mass, with the Hessian of ``-phi``
    there as precision, lowered (generalised eigenvalues clamped to [0.05, 1]) to half the tail precision
    ``V^{-1} + tau`` so that the integrand over the reference decays in the tails. Returns the centres
    [N, K, d] and covariance square roots [N, K, d, d]."""
    N, K, d = post.means.shape
    modes, phi, prec = tilted_modes(post, reward, hessian=True, kappa=kappa)
    Vinv = torch.linalg.inv(post.covs)
    prec = 0.5 * (prec + prec.transpose(-1, -2))
    concave = (torch.linalg.eigvalsh(prec) > 0).all(-1)  # [N, K, S]
    prec = torch.where(concave[..., None, None], prec, Vinv[None, :, None])
    evidence = phi - 0.5 * torch.linalg.eigvalsh(prec).log().sum(-1)  # log Laplace mass
    best = evidence.argmax(2)  # [N, K]
    pick = lambda t: torch.gather(t, 2, best.reshape(N, K, 1, *([1] * (t.ndim - 3))).expand(  # noqa: E731
        N, K, 1, *t.shape[3:])).squeeze(2)
    centre, prec = pick(modes), pick(prec)
    A, excess = tail_fit(reward, d)
    tail = 0.5 * (Vinv + A - excess * torch.eye(d, dtype=torch.float64))  # [K, d, d]
    R = torch.linalg.cholesky(prec)  # prec = R R^T
    Rinv = torch.linalg.inv(R)
    Mt = Rinv @ tail @ Rinv.transpose(-1, -2)
    mu, U = torch.linalg.eigh(0.5 * (Mt + Mt.transpose(-1, -2)))
    ref = R @ (U * mu.clamp(0.05, 1.0)[..., None, :]) @ U.transpose(-1, -2) @ R.transpose(-1, -2)
    return centre, sqrt_psd(torch.linalg.inv(0.5 * (ref + ref.transpose(-1, -2))))


def _nodes_integrals(post: Posterior, centre: torch.Tensor, L: torch.Tensor, reward, z: torch.Tensor,
                     logw: torch.Tensor) -> Components:
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
    for sl in slices(N, max(1, CHUNK // (K * M))):
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
    return Components(log_I, shift), _Edge(edge_rel, edge_dist)


def check_max_nodes(max_nodes, d: int) -> int:
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
    the share of the integral on the outermost nodes (times its distance, for the mean: the change cannot
    see mass beyond the nodes) plus a rounding floor. Returns ``(log E, m_R - m, m_R)``, the errors of ``log E`` [N] and
    ``m_R - m`` [N, d] (inf without a doubling), and the node count."""
    N, K, d = post.means.shape

    def rule(n):
        comps, edge = _nodes_integrals(post, centre, L, reward, *gauss_hermite(n, d))
        out = combine(post, comps)
        a_k = torch.softmax(post.log_weights + comps.log_I, dim=1)  # tilted component weights
        return out, (a_k * edge.rel).sum(1), (a_k * edge.rel * edge.dist).sum(1)

    n = 16 if d == 1 else 8
    cur, _, _ = rule(n)
    err_log = torch.full((N,), math.inf, dtype=torch.float64)
    err_diff = torch.full((N, d), math.inf, dtype=torch.float64)
    while 2 * n <= max_nodes:
        n *= 2
        prev, (cur, edge_log, edge_diff) = cur, rule(n)
        rounding = _ROUND * (post.means.abs().amax((1, 2)) + L.abs().amax() * _reach(n, d))  # [N], x_0 units
        err_log = torch.nan_to_num((cur[0] - prev[0]).abs() + edge_log + _ROUND * cur[0].abs(), nan=math.inf)
        err_diff = torch.nan_to_num((cur[1] - prev[1]).abs() + edge_diff[:, None] + rounding[:, None], nan=math.inf)
        if bool((err_log <= tol).all()) and bool((coef_g * err_diff <= tol).all()):
            break
    return cur, err_log, err_diff, n


def _reach(n: int, d: int) -> float:
    """The outermost node of the ``n``-point Gauss-Hermite rule."""
    return gauss_hermite(n, d)[0].abs().max().item()


def gauss_hermite_rule(post: Posterior, reward, a: float, kappa: float, tol: float, max_nodes: int):
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
