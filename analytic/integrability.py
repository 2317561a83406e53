"""When is ``E_t`` finite? The tail test of THEORY.md section 5 ("Integrability").

``log R_0(rho u) = -rho^2/2 tau(u) + O(rho)`` along unit directions ``u`` and the posterior component k
has precision ``S_k^{-1} + abar/(1-abar) I``, so ``E_t < inf`` iff the tail curvature

    kappa = min_{k, |u| = 1} u^T (S_k^{-1} + abar/(1-abar) I) u + tau(u)

is positive (``kappa`` is also the precision of the widest tail of any tilted posterior component).

How the minimum over directions is found:

- d = 1: exact; d = 2: a fine half circle refined by a bounded scalar search;
- any d, ratio rewards ``(p_num / p_den)^w`` of Gaussian mixtures: ``tau(u)`` is a difference of minima of
  quadratic forms, so ``kappa = min_{a} min_u max_b u^T M_{ab} u`` over finitely many matrices. With one
  distinct ``M_{ab}`` per ``a`` that is an eigenvalue; with several, ``max_t lambda_min(sum_b t_b M_{ab})``
  over the simplex is a lower bound (exact for two: Yuan's lemma) and the eigenvector at the optimum an
  upper bound. No search in d dimensions, O(d^2) memory per matrix;
- any other reward in d > 2: random directions refined by L-BFGS, in bounded memory.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import optimize

from .mixture import GaussianMixture, check_abar

__all__ = ["check_integrable", "tail_margin", "tail_curvature_min", "directions_minimum"]

_DIRECTIONS_CHUNK = 2_000_000  # direction x dimension entries evaluated at once


def directions_minimum(fn, d: int) -> tuple[float, torch.Tensor]:
    """Minimum of an even function ``fn(u [M, d]) -> [M]`` over unit directions, and its argmin: exact in
    1-D, a fine half circle refined by a bounded scalar search in 2-D, random directions refined by
    L-BFGS above (memory bounded: directions are evaluated in chunks)."""
    if d == 1:
        u = torch.ones(1, 1, dtype=torch.float64)
        return float(fn(u)[0]), u[0]
    if d == 2:
        theta = torch.linspace(0, math.pi, 4097, dtype=torch.float64)
        vals = fn(torch.stack([theta.cos(), theta.sin()], 1))
        i = int(torch.argmin(vals))
        h = math.pi / 4096

        def f(th):
            return float(fn(torch.tensor([[math.cos(th), math.sin(th)]], dtype=torch.float64))[0])

        res = optimize.minimize_scalar(f, bounds=(theta[i].item() - h, theta[i].item() + h), method="bounded",
                                       options={"xatol": 1e-12})
        best = min((float(vals[i]), theta[i].item()), (res.fun, res.x))
        return best[0], torch.tensor([math.cos(best[1]), math.sin(best[1])], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    n_dir = min(4096 * d, 20_000)
    step = max(1, _DIRECTIONS_CHUNK // d)
    best_vals, best_us = [], []
    for s in range(0, n_dir + d, step):
        m = min(step, n_dir + d - s)
        u = torch.randn(m, d, dtype=torch.float64, generator=gen)
        if s == 0:  # the coordinate axes are always among the candidates
            u[:d] = torch.eye(d, dtype=torch.float64)
        u = u / u.norm(dim=1, keepdim=True)
        vals = fn(u)
        k = min(4, m)
        idx = torch.topk(vals, k, largest=False).indices
        best_vals.append(vals[idx])
        best_us.append(u[idx])
    vals, us = torch.cat(best_vals), torch.cat(best_us)
    order = torch.argsort(vals)[:4]
    best_val, best_u = float(vals[order[0]]), us[order[0]]

    def f(v):
        v = torch.as_tensor(v, dtype=torch.float64).requires_grad_(True)
        out = fn((v / v.norm())[None])[0]
        (g,) = torch.autograd.grad(out, v)
        return out.item(), g.numpy()

    for i in order.tolist():
        res = optimize.minimize(f, us[i].numpy(), jac=True, method="L-BFGS-B", options={"maxiter": 200})
        if res.fun < best_val:
            v = torch.as_tensor(res.x, dtype=torch.float64)
            best_val, best_u = float(res.fun), v / v.norm()
    return best_val, best_u


# --- ratio rewards: eigenvalues instead of a search -------------------------------------------------


def _ratio_parts(reward):
    """``(w, num, den)`` when ``log R_0 = w (log p_num - log p_den) + c`` for Gaussian mixtures, else None."""
    num, den, w = getattr(reward, "num", None), getattr(reward, "den", None), getattr(reward, "w", None)
    if isinstance(num, GaussianMixture) and isinstance(den, GaussianMixture) and isinstance(w, float):
        return w, num, den
    return None


def _distinct(mats: torch.Tensor) -> torch.Tensor:
    """The distinct matrices of a stack [K, d, d] (exact duplicates removed)."""
    keep = []
    for m in mats:
        if not any(torch.equal(m, k) for k in keep):
            keep.append(m)
    return torch.stack(keep)


def _min_max_form(A: torch.Tensor, Bs: torch.Tensor) -> tuple[float, float, torch.Tensor]:
    """Bounds on ``min_{|u|=1} max_b u^T (A - B_b) u``: ``(lower, upper, u at the upper bound)``.

    One ``B``: the smallest eigenvalue (lower = upper). Several: ``max_t lambda_min(A - sum_b t_b B_b)``
    over the simplex is a lower bound (the dual; exact for two, Yuan's lemma), found by a bounded scalar
    search for two and Nelder-Mead on softmax weights above; its eigenvector gives the upper bound."""
    M = A - Bs  # [J, d, d]

    def lam_min(t: np.ndarray) -> tuple[float, torch.Tensor]:
        S = torch.einsum("j,jab->ab", torch.as_tensor(t, dtype=torch.float64), M)
        ev, U = torch.linalg.eigh(0.5 * (S + S.T))
        return float(ev[0]), U[:, 0]

    J = M.shape[0]
    if J == 1:
        lo, u = lam_min(np.ones(1))
        return lo, lo, u
    if J == 2:
        res = optimize.minimize_scalar(lambda t: -lam_min(np.array([t, 1 - t]))[0], bounds=(0.0, 1.0),
                                       method="bounded", options={"xatol": 1e-12})
        t = np.array([res.x, 1 - res.x])
    else:
        res = optimize.minimize(lambda z: -lam_min(np.exp(z - z.max()) / np.exp(z - z.max()).sum())[0],
                                np.zeros(J), method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-14})
        t = np.exp(res.x - res.x.max()) / np.exp(res.x - res.x.max()).sum()
    lo, u = lam_min(t)
    for vertex in np.eye(J):  # the dual is concave: a vertex may beat an inexact interior optimum
        lo = max(lo, lam_min(vertex)[0])
    up = float(torch.einsum("i,jik,k->j", u, M, u).max())
    return lo, max(up, lo), u


def _ratio_curvature(cond: GaussianMixture, parts, lam: float, factor: float) -> tuple[float, float, torch.Tensor]:
    """``(lower, upper, direction)`` bounds on ``kappa`` for a ratio reward, by :func:`_min_max_form`.

    ``tau(u) = w (min_i u^T N_i u - min_j u^T D_j u)``, so for ``w >= 0``
    ``kappa = min_{k,i} min_u max_j u^T (P_k + lam I + f w N_i - f w D_j) u`` (roles of num and den swap for
    ``w < 0``), with ``f`` the ``factor`` on ``tau``."""
    w, num, den = parts
    plus, minus = (num, den) if w >= 0 else (den, num)
    c = factor * abs(w)
    eye = torch.eye(cond.dim, dtype=torch.float64)
    Bs = c * _distinct(minus.precisions) if c > 0 else torch.zeros(1, cond.dim, cond.dim, dtype=torch.float64)
    bounds = [_min_max_form(Pk + lam * eye + c * Ni, Bs)
              for Pk in _distinct(cond.precisions) for Ni in _distinct(plus.precisions)]
    worst = min(bounds, key=lambda b: b[1])
    return min(b[0] for b in bounds), worst[1], worst[2]


def tail_curvature_min(cond: GaussianMixture, reward, abar: float, factor: float = 1.0) -> tuple[float, float, torch.Tensor]:
    """``kappa = min_{k,u} [u^T (S_k^{-1} + lam I) u + factor tau(u)]`` (``lam = abar/(1-abar)``): bounds
    ``(lower, upper)`` and the worst direction. ``lower == upper`` in d <= 2 (up to the search) and for
    ratio rewards with one distinct reference precision; otherwise ``lower`` is a certified lower bound."""
    lam = abar / (1 - abar)
    parts = _ratio_parts(reward)
    if cond.dim > 2 and parts is not None:
        return _ratio_curvature(cond, parts, lam, factor)
    P = cond.precisions

    def fn(u):
        comp = torch.einsum("mi,kij,mj->mk", u, P, u).amin(1)
        return comp + lam + factor * reward.tail_curvature(u)

    val, u = directions_minimum(fn, cond.dim)
    return val, val, u


def _scale(cond: GaussianMixture, abar: float) -> float:
    return float(torch.linalg.matrix_norm(cond.precisions, ord=2).max()) + abar / (1 - abar)


def tail_margin(cond: GaussianMixture, reward, abar: float, factor: float = 1.0) -> tuple[float, torch.Tensor]:
    """``min_{k,u} [u^T (S_k^{-1} + lam I) u + factor tau(u)] / scale``: positive iff every component of
    ``N(m_k, V_k) R_0^factor`` is integrable (``V_k^{-1} = S_k^{-1} + lam I``, ``lam = abar/(1-abar)``).
    Returns the margin (a certified lower bound where only bounds are known) and the worst direction."""
    lo, _, u = tail_curvature_min(cond, reward, abar, factor)
    return lo / _scale(cond, abar), u


def check_integrable(cond: GaussianMixture, reward, abar) -> float:
    """``ValueError`` unless ``E_t`` is finite at noise level ``abar`` (for every ``x_t``); returns the
    relative tail margin (``inf`` at ``abar = 1``).

    In 1-D for CFG with widest components ``s_c``, ``s_u`` the condition reads
    ``(1+w)/s_c^2 - w/s_u^2 + abar/(1-abar) > 0``. Exact for d <= 2 (up to a 1e-12 relative margin) and,
    in any d, for ratio rewards whose reference mixture has one distinct precision; with several, a
    certified lower bound decides, and a case it cannot decide is refused with that said.
    """
    a = check_abar(abar)
    if a == 1:
        return math.inf
    lo, up, u = tail_curvature_min(cond, reward, a)
    scale = _scale(cond, a)
    if lo / scale <= 1e-12:
        where = f"along direction {[round(v, 4) for v in u.tolist()[:8]]}{' ...' if cond.dim > 8 else ''}"
        if up / scale > 1e-12:
            raise ValueError(
                f"E_t may diverge at abar={a:.6g}: the tail curvature of the reward-tilted posterior lies in "
                f"[{lo / scale:.3g}, {up / scale:.3g}] (relative) and could not be certified positive; refusing "
                f"rather than risking an infinite E_t.")
        raise ValueError(
            f"E_t diverges at abar={a:.6g}: the reward-tilted posterior p(x_0|x_t) R_0(x_0) is not integrable "
            f"{where} (relative tail curvature {up / scale:.3g} <= 0). "
            f"The reward {reward!r} grows too fast in the tails (for CFG: w too large for a conditional wider "
            f"than the reference); the optimal guidance does not exist here."
        )
    return lo / scale
