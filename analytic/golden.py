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

import torch

from sampler.schedules import sigma_to_abar

from .grid import golden_at_points, tilted_posterior
from .hermite import check_max_nodes, gauss_hermite_rule
from .importance import importance_rule
from .integrability import check_integrable, tail_curvature_min
from .mixture import GaussianMixture, check_abar, check_points
from .quadrature import DEFAULT_TOL, QuadratureTooLarge, ToleranceNotMet, check_tol
from .reducible import reducible_form
from .reducible_golden import optimal_guidance_reducible
from .results import OptimalGuidance
from .rewards import check_reward
from .tilted import closed_integrals, combine, sqrt_psd

__all__ = ["OptimalGuidance", "optimal_guidance", "optimal_denoiser", "METHODS", "DEFAULT_IS_TOL"]

METHODS = ("auto", "closed", "grid", "gh", "is")
DEFAULT_IS_TOL = 1e-2  # importance sampling: standard error of the golden term (eps units) and of log E


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
            ``gh`` where the grid is over its budget; else, for d > 2, the exact reduced route of
            :func:`analytic.reducible_golden.optimal_guidance_reducible` when ``cond`` and a ratio reward (CFG,
            AutoG, classifier) belong to the reducible family (THEORY.md section 9; ``method`` of the result
            ``subspace`` or ``radial``, ``tol`` its per-entry tolerance ``tol * (1 + |value|)``, default 1e-8; the
            ``subspace`` route's m-dimensional golden falls back from the grid to ``gh`` as for d <= 2, and where the
            reduced route still cannot meet ``tol`` within its budget, ``is``), and ``is`` otherwise), ``closed``,
            ``grid`` (d <= 2), ``gh`` (d <= 2) or ``is``.
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
        max_nodes = check_max_nodes(max_nodes, d)
    if method in ("is", "auto"):
        n_samples = _check_count(n_samples, "n_samples", 2)
        max_samples = _check_count(max_samples, "max_samples", n_samples)
    if method == "auto" and quad is None and d > 2:  # the reducible family is exact in any d (THEORY.md section 9)
        reduced = reducible_form(cond, reward)  # cached per (cond, reward): O(K d^2) once, then O(1)
        if reduced is not None:
            def dense_golden(cond_u, reward_u, u, abar, *, tol):  # the d <= 2 route: grid, then Gauss-Hermite
                return optimal_guidance(cond_u, reward_u, u, abar, tol=tol, max_nodes=max_nodes)

            try:
                return optimal_guidance_reducible(*reduced, x_t, a, subspace_golden=dense_golden,
                                                  **({} if tol is None else {"tol": tol}))
            except (QuadratureTooLarge, ToleranceNotMet):
                method = "is"  # past every quadrature's budget: importance sampling, as for d > 2 outside the family
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
        log_E, diff, m_R = combine(post, closed_integrals(post, sqrt_psd(post.covs), quad))
        err_log, err_diff, nodes = zeros_n, zeros_nd, 0
    elif method == "gh":
        kappa = tail_curvature_min(cond, reward, a)[0]
        (log_E, diff, m_R), err_log, err_diff, nodes = gauss_hermite_rule(post, reward, a, kappa, tol, max_nodes)
    elif method == "is":
        (log_E, diff, m_R, err_log, err_diff), nodes = importance_rule(cond, reward, post, a, tol, n_samples, max_samples,
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
        x_vp = math.sqrt(a) * x.detach().flatten(1).to(torch.float64)  # [N, d]; also for N = 0
        if a == 1:
            m_R = x_vp
        else:
            try:
                m_R = tilted_posterior(cond, reward, x_vp, a, tol=tol).tilted_mean
            except (QuadratureTooLarge, ToleranceNotMet):
                m_R = optimal_guidance(cond, reward, x_vp, a, method="gh", tol=tol * math.sqrt(a / (1 - a))).tilted_mean
        return m_R.to(x.dtype).reshape(x.shape)

    return tilted_mean
