"""Self-normalised importance sampling of the tilted posterior components (``method="is"`` of
:func:`analytic.optimal_guidance`, any dimension).

Per point and component the proposal is a defensive mixture: Gaussians on the local modes of the tilted
component (covariance ``c V_k``, with ``c`` chosen so the weights have finite variance) and the untilted
component itself. Draws are stratified, standard errors are taken stratum by stratum over the per-draw
sums across components (the draws are shared by the components), the sample grows 4x at a time until
they meet the tolerance within a budget, and a small effective sample size is reported.
"""
from __future__ import annotations

import math
import warnings

import torch

from .integrability import tail_curvature_min
from .mixture import GaussianMixture, Posterior
from .tilted import Components, combine, distinct_modes, slices, sqrt_psd, tilted_modes

__all__ = ["importance_rule"]

_MIN_ESS = 100  # effective draws per significant tilted component below which IS warns


_IS_ENTRIES = 2_000_000  # draw x dimension entries per array in importance sampling (16 MB)


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
    L = sqrt_psd(post.covs)  # [K, d, d]
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
    for sl in slices(N, max(1, _IS_ENTRIES // (K * n * d))):
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
        log_E, diff, m_R = combine(part, Components(log_I, torch.einsum("bkn,bknd->bkd", w, off_m)))
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


def _stratified_var(v: torch.Tensor, strata) -> torch.Tensor:
    """``sum_s n_s var_s(v)`` over strata of the draw axis (dim 1): ``n^2`` times the variance of the mean of
    a stratified sample. v [b, n, ...] -> [b, ...]"""
    return sum(v[:, sl].var(dim=1, correction=1) * v[:, sl].shape[1] for sl in strata)


def importance_rule(cond, reward, post: Posterior, a: float, tol: float, n_samples: int, max_samples: int, generator):
    """IS with the sample size grown 4x at a time until the standard errors of ``log E`` and of the golden
    term are within ``tol`` (``RuntimeWarning`` with the errors reached past ``max_samples``; another
    when the effective sample size of a significant tilted component is below ``_MIN_ESS``)."""
    d = cond.dim
    coef_g = math.sqrt(a / (1 - a))
    modes, phi, _ = tilted_modes(post, reward, hessian=d <= 2, kappa=tail_curvature_min(cond, reward, a)[0])
    modes = distinct_modes(post, modes, phi)
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
