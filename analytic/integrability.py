"""When is ``E_t`` finite? The tail test of THEORY.md section 5 ("Integrability").

``log R_0(rho u) = -rho^2/2 tau(u) + O(rho)`` along unit directions ``u`` and the posterior component k
has precision ``S_k^{-1} + abar/(1-abar) I``, so ``E_t < inf`` iff
``u^T (S_k^{-1} + abar/(1-abar) I) u + tau(u) > 0`` for every k and unit u.
"""
from __future__ import annotations

import math

import torch
from scipy import optimize

from .mixture import GaussianMixture, check_abar

__all__ = ["check_integrable", "tail_margin", "directions_minimum"]


def directions_minimum(fn, d: int) -> tuple[float, torch.Tensor]:
    """Minimum of an even function ``fn(u [M, d]) -> [M]`` over unit directions, and its argmin: exact in
    1-D, a fine half circle refined by a bounded scalar search in 2-D, random directions refined by
    Nelder-Mead above."""
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
    u = torch.randn(4096 * d, d, dtype=torch.float64, generator=gen)
    u = torch.cat([u, torch.eye(d, dtype=torch.float64)])
    u = u / u.norm(dim=1, keepdim=True)
    vals = fn(u)
    best_val, best_u = float(vals.min()), u[int(vals.argmin())]

    def f(v):
        v = torch.as_tensor(v, dtype=torch.float64)
        return float(fn((v / v.norm())[None])[0])

    for i in torch.argsort(vals)[:4].tolist():
        res = optimize.minimize(f, u[i].numpy(), method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-14})
        if res.fun < best_val:
            v = torch.as_tensor(res.x, dtype=torch.float64)
            best_val, best_u = res.fun, v / v.norm()
    return best_val, best_u


def tail_margin(cond: GaussianMixture, reward, abar: float, factor: float = 1.0) -> tuple[float, torch.Tensor]:
    """``min_{k,u} [u^T (S_k^{-1} + lam I) u + factor tau(u)] / scale``: positive iff every component of
    ``N(m_k, V_k) R_0^factor`` is integrable (``V_k^{-1} = S_k^{-1} + lam I``, ``lam = abar/(1-abar)``).
    Returns the margin and the worst direction."""
    lam = abar / (1 - abar)
    P = cond.precisions

    def fn(u):
        comp = torch.einsum("mi,kij,mj->mk", u, P, u).amin(1)
        return comp + lam + factor * reward.tail_curvature(u)

    scale = float(torch.linalg.matrix_norm(P, ord=2).max()) + lam
    val, u = directions_minimum(fn, cond.dim)
    return val / scale, u


def check_integrable(cond: GaussianMixture, reward, abar) -> float:
    """``ValueError`` unless ``E_t`` is finite at noise level ``abar`` (for every ``x_t``); returns the
    relative tail margin (``inf`` at ``abar = 1``).

    In 1-D for CFG with widest components ``s_c``, ``s_u`` the condition reads
    ``(1+w)/s_c^2 - w/s_u^2 + abar/(1-abar) > 0``. Exact for d <= 2 (up to a 1e-12 relative margin);
    for d > 2 the minimum over directions is found numerically.
    """
    a = check_abar(abar)
    if a == 1:
        return math.inf
    margin, u = tail_margin(cond, reward, a)
    if margin <= 1e-12:
        raise ValueError(
            f"E_t diverges at abar={a:.6g}: the reward-tilted posterior p(x_0|x_t) R_0(x_0) is not integrable "
            f"along direction {[round(v, 4) for v in u.tolist()]} (relative tail curvature {margin:.3g} <= 0). "
            f"The reward {reward!r} grows too fast in the tails (for CFG: w too large for a conditional wider "
            f"than the reference); the optimal guidance does not exist here."
        )
    return margin
