"""The reduced exact golden at d = 4096 against importance sampling at equal accuracy:
``python benchmarks/dimension_speed.py``.

The problem: CFG on a two-class reducible mixture in d = 4096 (``U`` a random line; the classes differ in mean
and slightly in complement variance, so the golden needs the (m + 1)-dimensional radial route, not just the
one-dimensional one). The exact route (:func:`analytic.reducible_golden.optimal_guidance_reducible`) reports its
own error estimate. Importance sampling is the toolkit's estimator (self-normalised, ``n`` draws from each
posterior component, delta-method standard errors, as ``analytic.optimal_guidance(method="is")``) but run on
the reduced arithmetic, the cheapest it can be: draws ``x_0 = Q u_0 + v_0`` in R^d, ``log R_0`` in O(d) per draw.
The dense route itself cannot run here: its integrability check draws ``4096 d`` directions of length ``d``
(550 GB), and its posterior needs three 4096 x 4096 eigendecompositions.

Its cost at equal accuracy is extrapolated from a measured run: the standard error falls as ``n^(-1/2)``, so
reaching the exact route's error needs ``n (se / err)^2`` draws. Printed as a ratio; not a test.
"""
from __future__ import annotations

import math
import time

import torch

from analytic.reducible import ReducibleMixture, ReducibleRatioReward
from analytic.reducible_golden import optimal_guidance_reducible

D, N_POINTS, ABAR, W = 4096, 16, 0.3, 2.0


def problem() -> tuple[ReducibleMixture, ReducibleRatioReward]:
    q = torch.randn(D, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    Q = q / q.norm()
    cond = ReducibleMixture(Q, [0.5, 0.5], [[0.0], [3.0]], [[[1.0]], [[1.0]]], [1.0, 1.0])
    uncond = ReducibleMixture(Q, [0.25, 0.25, 0.5], [[0.0], [3.0], [-1.5]], [[[1.0]], [[1.0]], [[1.0]]],
                              [1.0, 1.0, 1.02])
    return cond, ReducibleRatioReward(cond, uncond, W)


def importance_sampling(cond, reward, x, a, n, gen):
    """``grad log E_t`` and its standard error [N, d] by self-normalised importance sampling (``n`` draws per
    posterior component), with the delta-method errors of ``analytic.golden``."""
    post = cond.posterior(x, a)
    Q = cond.basis
    coef = math.sqrt(a) / (1 - a)
    grads, ses = [], []
    for i in range(x.shape[0]):
        b = post.log_weights[i].exp()  # [K]
        draws, logR = [], []
        for k in range(cond.n_components):
            u0 = post.means_u[i, k] + torch.linalg.cholesky(post.covs_u[k]) @ torch.randn(1, n, dtype=torch.float64,
                                                                                             generator=gen)
            z = torch.randn(n, D, dtype=torch.float64, generator=gen)
            z = z - (z @ Q) @ Q.T
            x0 = u0.T @ Q.T + post.shrink[k] * post.v[i] + post.kappa2[k].sqrt() * z  # [n, d]
            draws.append(x0)
            logR.append(reward.log_r0(x0))
        logR = torch.stack(logR)  # [K, n]
        log_I = torch.logsumexp(logR, 1) - math.log(n)
        log_E = torch.logsumexp(b.log() + log_I, 0)
        r = torch.exp(logR - log_E)  # R / E
        m_R = sum(b[k] * (r[k][:, None] * draws[k]).mean(0) for k in range(len(draws)))
        m = post.mean()[i]
        grads.append(coef * (m_R - m))
        ses.append(coef * torch.sqrt(sum(b[k] ** 2 * (r[k][:, None] * (draws[k] - m_R)).var(0) for k in
                                         range(len(draws))) / n))
    return torch.stack(grads), torch.stack(ses)


def main() -> None:
    torch.set_num_threads(1)
    cond, reward = problem()
    x = cond.noised(ABAR).sample(N_POINTS, torch.Generator().manual_seed(1))
    optimal_guidance_reducible(cond, reward, x[:2], ABAR)  # warm-up
    t0 = time.perf_counter()
    exact = optimal_guidance_reducible(cond, reward, x, ABAR, tol=1e-8)
    t_exact = time.perf_counter() - t0
    err_exact = exact.err_grad.norm(dim=1).max().item()

    n = 2048
    t0 = time.perf_counter()
    g_is, se = importance_sampling(cond, reward, x, ABAR, n, torch.Generator().manual_seed(2))
    t_is = time.perf_counter() - t0
    se_norm = se.norm(dim=1)
    actual = (g_is - exact.grad_log_E).norm(dim=1)
    print(f"d = {D}, {N_POINTS} points, abar = {ABAR}, CFG w = {W}; route {exact.method}, {exact.nodes} nodes per dim")
    print(f"exact reduced golden: {t_exact:8.2f} s   error estimate |grad log E| <= {err_exact:.1e}")
    print(f"importance sampling:  {t_is:8.2f} s   n = {n} draws per component: standard error {se_norm.max():.2e} "
          f"(actual error vs exact {actual.max():.2e}; per coordinate at most {se.max():.2e})")
    print("accuracy = the largest Euclidean norm (over R^d) of the error of grad log E_t over the points")
    for target in (err_exact, 1e-4, 1e-2):
        n_req = n * (se_norm.max().item() / target) ** 2
        t_req = t_is * n_req / n
        t_ex = t_exact
        if target > err_exact:  # the exact route at the looser tolerance
            t0 = time.perf_counter()
            optimal_guidance_reducible(cond, reward, x, ABAR, tol=target / 10)
            t_ex = time.perf_counter() - t0
        print(f"  equal accuracy {target:.0e}: importance sampling needs {n_req:.2e} draws per component, "
              f"{t_req:.2e} s; exact {t_ex:.2f} s; ratio {t_req / t_ex:.2e}")


if __name__ == "__main__":
    main()
