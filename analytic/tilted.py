"""The reward-tilted posterior, component by component (THEORY.md sections 4-5): ``p(x_0 | x_t) R_0`` is a
sum over posterior components ``pi_k(x_t) N(m_k, V_k) R_0``, so ``E_t = sum_k pi_k I_k`` and ``m_R`` follow
from per-component integrals ``I_k`` and shifts (:func:`combine`); exactly for a quadratic ``log R_0``
(:func:`closed_integrals`), otherwise by :mod:`analytic.hermite` or :mod:`analytic.importance`, which
need to know where each tilted component puts its mass: its modes (:func:`tilted_modes`, Newton's method
from the component mean, the reward's centres and ray probes that find modes past a valley) and the
curvature of its tails (:func:`tail_fit`).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .mixture import Posterior
from .quadrature import probe_directions, probe_points

__all__ = ["CHUNK", "Components", "combine", "closed_integrals", "sqrt_psd", "slices", "probe_phi", "tilted_modes",
           "distinct_modes", "tail_fit"]

CHUNK = 2_000_000  # points x components x nodes evaluated at once


class Components(NamedTuple):
    log_I: torch.Tensor  # [N, K] log of int N(m_k, V_k) R_0
    shift: torch.Tensor  # [N, K, d] tilted mean minus m_k


def sqrt_psd(V: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of PSD matrices [..., d, d] (exact 0 at abar = 1)."""
    lam, U = torch.linalg.eigh(V)
    return (U * lam.clamp(min=0).sqrt()[..., None, :]) @ U.transpose(-1, -2)


def slices(N: int, step: int):
    return [slice(s, s + step) for s in range(0, N, step)]


def combine(post: Posterior, comps: Components) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``log E``, ``m_R - m`` and ``m_R`` from per-component integrals."""
    log_b = post.log_weights  # [N, K] untilted component weights
    log_E = torch.logsumexp(log_b + comps.log_I, dim=1)
    a_k = torch.softmax(log_b + comps.log_I, dim=1)  # tilted component weights
    m = post.mean()
    centred = post.means - m[:, None, :]
    diff = ((a_k - log_b.exp())[..., None] * centred).sum(1) + (a_k[..., None] * comps.shift).sum(1)
    return log_E, diff, m + diff


def closed_integrals(post: Posterior, L: torch.Tensor, quad) -> Components:
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
    return Components(log_I, shift)


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


def probe_phi(post: Posterior, reward, kappa: float):
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
    for sl in slices(N, max(1, CHUNK // (K * probes.shape[0] * d))):
        off = probes[None, None] - post.means[sl, :, None, :]  # [b, K, P, d]
        yield sl, probes, -0.5 * torch.einsum("bkpi,kij,bkpj->bkp", off, Vinv, off) + log_r


def _probe_seeds(post: Posterior, reward, kappa: float, top: int) -> torch.Tensor:
    """For each tilted component, the ``top`` probes of :func:`probe_phi` that are local maxima of ``phi``
    along their ray (one per basin the probes resolve), largest ``phi`` first; the best probe fills any
    slot left over. [N, K, top, d]"""
    d = post.means.shape[2]
    out = []
    for _, probes, phi in probe_phi(post, reward, kappa):
        D = probe_directions(d).shape[0]
        b, K, P = phi.shape
        ray = phi.reshape(b, K, P // D, D)
        pad = torch.full_like(ray[:, :, :1], -math.inf)
        peak = (ray >= torch.cat([pad, ray[:, :, :-1]], 2)) & (ray >= torch.cat([ray[:, :, 1:], pad], 2))
        score = torch.where(peak.reshape(b, K, P), phi, phi - 1e6)  # peaks first, then the best of the rest
        out.append(probes[torch.topk(score, min(top, P), dim=2).indices])
    return torch.cat(out)


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


def tilted_modes(post: Posterior, reward, hessian: bool, kappa: float, iters: int = 60):
    """Local modes of each tilted component ``phi(y) = log N(y; m_k, V_k) + log R_0(y)`` (:func:`_ascend`),
    started from ``m_k``, from every reward centre (a tilt can pull the mass towards any of them) and from
    the best probes of :func:`_probe_seeds` (a mode far out, past a valley), chunk by chunk of points.
    Returns the modes [N, K, S, d], ``phi`` there [N, K, S] and ``-Hessian of phi`` [N, K, S, d, d]
    (``None`` without ``hessian``); seed 0 is ``m_k``."""
    N, K, d = post.means.shape
    centres = reward.centres().to(torch.float64).reshape(-1, d)
    probes = _probe_seeds(post, reward, kappa, 4 if d == 1 else 6)
    S = 1 + centres.shape[0] + probes.shape[2]
    Vinv = torch.linalg.inv(post.covs)
    out = []
    for sl in slices(N, max(1, CHUNK // (K * S * d * d * 8))):
        b = post.means[sl].shape[0]
        m = post.means[sl, :, None, :].expand(b, K, S, d)
        y0 = torch.cat([post.means[sl, :, None, :], centres[None, None].expand(b, K, centres.shape[0], d), probes[sl]], 2)
        V = Vinv[None, :, None].expand(b, K, S, d, d)
        y, phi, prec = _ascend(y0.reshape(-1, d), m.reshape(-1, d), V.reshape(-1, d, d), reward, hessian, iters)
        out.append((y.reshape(b, K, S, d), phi.reshape(b, K, S), None if prec is None else prec.reshape(b, K, S, d, d)))
    return (torch.cat([o[0] for o in out]), torch.cat([o[1] for o in out]),
            None if not hessian else torch.cat([o[2] for o in out]))


def distinct_modes(post: Posterior, modes: torch.Tensor, phi: torch.Tensor, top: int = 3) -> torch.Tensor:
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


def tail_fit(reward, d: int) -> tuple[torch.Tensor, float]:
    """A quadratic form ``A`` [d, d] for the tail curvature ``tau(u) ~ u^T A u`` over directions ``u`` in the span of
    the first ``d`` (1 or 2) coordinate axes of ``reward.dim`` (all of them when ``d == reward.dim``), and how far the
    fit exceeds ``tau`` at worst (so ``u^T (A - excess I) u <= tau(u)``): ``tau`` itself for d = 1, a least-squares
    fit on 64 directions of the half circle for d = 2."""
    if d == 1:
        u = torch.zeros(1, reward.dim, dtype=torch.float64)
        u[0, 0] = 1.0
        return reward.tail_curvature(u).reshape(1, 1), 0.0
    th = torch.linspace(0, math.pi, 65, dtype=torch.float64)[:-1]
    u = torch.zeros(64, reward.dim, dtype=torch.float64)
    u[:, 0], u[:, 1] = th.cos(), th.sin()
    tau = reward.tail_curvature(u)
    X = torch.stack([u[:, 0] ** 2, 2 * u[:, 0] * u[:, 1], u[:, 1] ** 2], 1)
    coef = torch.linalg.lstsq(X, tau[:, None]).solution[:, 0]
    a, b, c = coef
    return torch.stack([torch.stack([a, b]), torch.stack([b, c])]), max(((X @ coef) - tau).max().item(), 0.0)
