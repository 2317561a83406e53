"""Exact optimal guidance and guidance fields for the reducible family, in any dimension.

THEORY.md sections 4 and 9, with the notation of :mod:`analytic.reducible`. For a ratio reward
``R_0 = exp(log_const) (p_num / p_den)^w`` of members on one basis ``Q``, ``log R_0`` depends on ``x_0`` through
``(u_0, y = |v_0|^2)`` only:

    log R_0 = w [LSE_j (a_j(u_0) - y / (2 s_j^2)) - LSE_l (a'_l(u_0) - y / (2 s'_l^2))] + log_const,
    a_j(u_0) = log pi_j + log N_m(u_0; b_j, A_j) - (n/2) log(2 pi s_j^2).

The posterior component ``k`` of the conditional (weight ``p_k(x_t)``) makes ``u_0 ~ N(m_k, V_k)`` and, independently,
``v_0 ~ N(c_k v, kappa_k^2 P_perp)``; so ``E_t = sum_k p_k I_k`` with ``m + 1``-dimensional integrals

    I_k = int N(u_0; m_k, V_k) f_k(rho) R_0(u_0, rho^2) du_0 d rho,

``f_k`` the noncentral chi density of ``rho = |v_0|`` (:mod:`analytic.radial`). By rotation symmetry about ``v``,
``E[v_0 | rho, k] = rho A_nu(rho c_k r / kappa_k^2) v / r``, so the tilted mean ``m_R`` and (section 4)
``grad log E_t = sqrt(abar) / (1 - abar) (m_R - m)`` are ``Q (.) + (.) v / r``: vectors of length d out.

Two routes (``OptimalGuidance.method``):

- ``subspace`` (exact in ``m`` dimensions): when every ``s_k`` is equal within the conditional, within ``p_num``
  and within ``p_den``, ``R_0 = R_U(u_0) exp(c_0 - gamma y / 2)`` with ``gamma = w (1/s_num^2 - 1/s_den^2)``, and
  the complement integral is Gaussian: ``E_t = E_U(u) (1 + gamma kappa^2)^(-n/2) exp(c_0 - gamma c^2 r^2 / (2 (1 + gamma
  kappa^2)))``. ``E_U`` is the m-dimensional golden of the subspace mixtures (the dense trapezoid quadrature of
  :func:`analytic.grid.golden_at_points` to the tolerance ``tol``, with its error estimate; through
  :func:`analytic.optimal_guidance`, its dense route: the grid, then Gauss-Hermite where the grid is over budget).
  When all ``s_k`` are equal across the three mixtures, ``gamma = c_0 = 0``: the problem is exactly m-dimensional.
- ``radial`` (the general case, ``m + 1`` dimensions), per point and posterior component:
  ``u_0`` by the trapezoid rule on ``N(m_k, V'_k)`` (``V'`` widened where ``R_0`` grows in the tails, as in
  :mod:`analytic.golden`), and from the second evaluation on, on a Gaussian that also covers the tilted mass the
  previous one found; ``rho`` for ``n >= 12`` by the trapezoid rule in ``rho`` on the Laplace approximation of the
  radial marginal of the tilted integrand (mode by Newton's method in ``log rho``: at large ``n`` that marginal
  sits ``O(sqrt(n))`` widths from the untilted one), and for ``n < 12`` in Cartesian form,
  ``|v_0|^2 = (c_k r + kappa_k t)^2 + kappa_k^2 q`` with ``t`` Gaussian (trapezoid) and ``q ~ chi^2_{n-1}``
  (generalized Gauss-Laguerre). The radial resolution is refined first, then the ``u_0`` one (node spacings
  shrink by ``sqrt(2)`` per level), each point until two levels agree to ``tol``; the two last changes add up
  to the error estimate. ``ToleranceNotMet`` if ``max_level`` is reached first.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable, NamedTuple

import numpy as np
import torch
from scipy import special
from tqdm.auto import tqdm

from .grid import golden_at_points
from .integrability import check_integrable
from .mixture import check_abar, check_points
from .quadrature import ToleranceNotMet
from .radial import bessel_ratio, log_radial_density, radial_slopes
from .reducible import ReducedPosterior, ReducibleMixture, ReducibleRatioReward, reduce_problem
from .results import GuidanceFields, OptimalGuidance
from .rewards import MixtureRatioReward
from .tilted import tail_fit

__all__ = ["ROUTES", "optimal_guidance_reducible", "guidance_fields_reducible", "reg_corrections_reducible",
           "is_separable"]

ROUTES = ("auto", "subspace", "radial")
_DTYPE = torch.float64
_Z_MAX = 8.0  # trapezoid nodes cover [-8, 8] standard deviations of their reference Gaussian
_CARTESIAN_BELOW = 12  # complement dimensions n < 12: Cartesian radial nodes; else Laplace nodes in rho
_BUDGET = 4_000_000  # points x components x nodes x reward components evaluated at once


# --- the public entry points ----------------------------------------------------------------------


def is_separable(cond: ReducibleMixture, reward: ReducibleRatioReward) -> bool:
    """True when the ``subspace`` route applies: one complement variance within each of the three mixtures."""
    return all(_common_var(mx) is not None for mx in (cond, reward.num, reward.den))


def optimal_guidance_reducible(cond, reward, x_t, abar, *, tol: float = 1e-8, route: str = "auto",
                               max_level: int = 8, detect_tol: float = 1e-9, progress: bool = False,
                               subspace_golden: Callable | None = None) -> OptimalGuidance:
    """The ideal-chain optimum ``log E_t``, ``grad log E_t`` and ``m_R`` at points ``x_t`` [N, d], reducible problems.

    Args:
        cond, reward: a :class:`ReducibleMixture` with a :class:`ReducibleRatioReward`, or a plain
            ``GaussianMixture`` with a ``MixtureRatioReward`` (CFG, AutoG, classifier) that belong to the family
            (recognised with :func:`analytic.reducible.reduce_problem` at ``detect_tol``; ``ValueError`` if not).
        abar: VP noise level in (0, 1].
        tol: each point's quadrature is refined until two levels agree to ``tol * (1 + |value|)`` in
            ``log E`` and every entry of ``grad log E``; ``ToleranceNotMet`` (a ``RuntimeError``) if ``max_level``
            is reached first.
        route: ``auto`` (``subspace`` when separable, else ``radial``), ``subspace`` or ``radial``.
        subspace_golden: the ``subspace`` route's m-dimensional golden, ``f(cond_u, reward_u, u, abar, *, tol)`` ->
            a result with ``log_E``, ``grad_log_E``, ``err_log_E`` and ``err_grad`` (default
            :func:`analytic.grid.golden_at_points`, which raises ``QuadratureTooLarge`` or ``ToleranceNotMet`` past
            its budget; :func:`analytic.optimal_guidance` passes its dense route, which falls back to Gauss-Hermite).

    Returns :class:`analytic.golden.OptimalGuidance` in full d coordinates, ``method`` ``"subspace"``,
    ``"radial"`` or ``"exact"`` (``abar = 1``), ``nodes`` the finest trapezoid nodes per dimension used.
    Raises ``ValueError`` when ``E_t`` diverges (never returns inf or nan).
    """
    a = check_abar(abar)
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; choose one of {ROUTES}")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    if int(max_level) != max_level or max_level < 1:
        raise ValueError(f"max_level must be a positive integer, got {max_level!r}")
    found = reduce_problem(cond, reward, detect_tol)
    if found is None:
        raise ValueError("cond and reward do not belong to the reducible family on a common subspace of "
                         "dimension <= 2 (THEORY.md section 9); use analytic.optimal_guidance")
    cond, reward = found
    x_t = check_points(x_t, cond.dim, cond.device, "x_t").detach()
    N, d = x_t.shape
    if a == 1:  # E_0 = R_0: no integral, and the golden term is exactly 0.
        x = x_t.clone().requires_grad_(True)
        log_E = reward.log_r0(x)
        (grad,) = torch.autograd.grad(log_E.sum(), x)
        _finite(log_E, grad)
        zn, znd = torch.zeros(N, dtype=_DTYPE), torch.zeros(N, d, dtype=_DTYPE)
        return OptimalGuidance(log_E.detach(), grad, x_t, znd.clone(), zn, znd, "exact", 0, znd, znd)
    separable = is_separable(cond, reward)
    if route == "auto":
        route = "subspace" if separable else "radial"
    if route == "subspace" and not separable:
        raise ValueError("route 'subspace' needs one complement variance within each mixture; use 'radial'")
    check_integrable(cond.embedded(), reward.embedded(), a)
    post = cond.posterior(x_t, a)
    u = x_t @ cond.basis
    if route == "subspace":
        res = _subspace_route(cond, reward, post, u, a, tol, subspace_golden or golden_at_points)
    else:
        res = _radial_route(cond, reward, post, a, tol, max_level, progress)
    diff_u, diff_v, log_E, err_log, err_u, err_v, nodes = res
    coef = math.sqrt(a) / (1 - a)
    Q = cond.basis
    diff = diff_u @ Q.T + diff_v[:, None] * post.v  # m_R - m, [N, d]
    grad = coef * diff
    err_grad = coef * (err_u @ Q.abs().T + err_v[:, None] * post.v.abs())
    _finite(log_E, grad)
    return OptimalGuidance(log_E, grad, post.mean() + diff, -math.sqrt(1 - a) * grad, err_log, err_grad, route, nodes,
                           math.sqrt(1 - a) * err_grad, err_grad / coef)


def reg_corrections_reducible(cond: ReducibleMixture, g: torch.Tensor, x_t, abar
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """THEORY.md section 6 in any d, from the structured Jacobian (:meth:`ReducibleMixture.eps_jacobian`):
    ``(paper, vjp, diag)`` corrections ``g (1 - c J^T 1)``, ``g - c J^T g``, ``g (1 - c diag J)`` of ``g`` [N, d].
    The twin of :func:`analytic.fields.reg_corrections`, never forming ``J``."""
    a = check_abar(abar)
    x_t = check_points(x_t, cond.dim, cond.device, "x_t")
    g = check_points(g, cond.dim, cond.device, "g")
    if g.shape != x_t.shape:
        raise ValueError(f"g has shape {tuple(g.shape)} but x_t has {tuple(x_t.shape)}")
    J = cond.eps_jacobian(x_t, a)
    c = math.sqrt(1 - a)
    return g * (1 - c * J.colsum()), g - c * J.matvec(g), g * (1 - c * J.diagonal())


def guidance_fields_reducible(cond, reward, x_t, abar, *, golden: OptimalGuidance | None = None,
                              **golden_kwargs) -> GuidanceFields:
    """:func:`analytic.guidance_fields` for a reducible problem in any d: the exact golden
    (:func:`optimal_guidance_reducible`, ``golden_kwargs`` go there; or ``golden``, one already computed at these
    points, e.g. by :func:`analytic.optimal_guidance` with its fallbacks), the present-time term and REG's paper,
    vjp and diag corrections from the structured Jacobian. Every field [N, d] float64, eps units."""
    a = check_abar(abar)
    found = reduce_problem(cond, reward, golden_kwargs.get("detect_tol", 1e-9))
    if found is None:
        raise ValueError("cond and reward do not belong to the reducible family; use analytic.guidance_fields")
    cond_r, reward_r = found
    x_t = check_points(x_t, cond_r.dim, cond_r.device, "x_t").detach()
    if golden is not None and golden.golden.shape != x_t.shape:
        raise ValueError(f"golden has shape {tuple(golden.golden.shape)} but x_t has {tuple(x_t.shape)}")
    opt = golden if golden is not None else optimal_guidance_reducible(cond_r, reward_r, x_t, a, **golden_kwargs)
    u, v, r2 = cond_r.split(x_t)
    c = math.sqrt(1 - a)
    ga, gb = reward_r.grad_coeffs(u, r2, a)
    ga, gb = -c * ga, -c * gb  # g = -sqrt(1 - abar) grad log R_t = Q ga + gb v
    J = cond_r.eps_jacobian(x_t, a)
    ja, jb = J.matvec_coeffs(ga, gb)
    g = cond_r.lift(ga, gb, v)
    vjp = cond_r.lift(ga - c * ja, gb - c * jb, v)
    return GuidanceFields(golden=opt.golden, present=g, reg_paper=g * (1 - c * J.colsum()), reg_vjp=vjp,
                          reg_diag=g * (1 - c * J.diagonal()), golden_error=c * opt.err_grad,
                          method=opt.method)


def _finite(log_E: torch.Tensor, grad: torch.Tensor) -> None:
    if not (torch.all(torch.isfinite(log_E)) and torch.all(torch.isfinite(grad))):
        raise ValueError("E_t or its gradient is not finite here (R_0 underflows or overflows at these points)")


def _common_var(mx: ReducibleMixture) -> float | None:
    s2 = mx.comp_vars
    return s2[0].item() if (s2.max() - s2.min()).item() <= 1e-12 * s2.max().item() else None


# --- subspace route ---------------------------------------------------------------------------------


class _Result(NamedTuple):
    diff_u: torch.Tensor  # [N, m]  Q^T (m_R - m)
    diff_v: torch.Tensor  # [N]     (m_R - m) along v, per unit of v
    log_E: torch.Tensor  # [N]
    err_log: torch.Tensor  # [N]
    err_u: torch.Tensor  # [N, m]
    err_v: torch.Tensor  # [N]
    nodes: int


def _converged(new: torch.Tensor, old: torch.Tensor, tol: float) -> torch.Tensor:
    """Per point: every entry changed by at most ``tol * (1 + |new|)``. new, old [N, ...] -> [N] bool"""
    ok = (new - old).abs() <= tol * (1 + new.abs())
    return ok.reshape(ok.shape[0], -1).all(1)


def _subspace_route(cond, reward, post: ReducedPosterior, u: torch.Tensor, a: float, tol: float,
                    golden_u: Callable) -> _Result:
    n, w = cond.n_perp, reward.w
    s_num, s_den, s_c = _common_var(reward.num), _common_var(reward.den), _common_var(cond)
    reward_u = MixtureRatioReward(reward.num.subspace_mixture(), reward.den.subspace_mixture(), w, reward.log_const)
    cond_u = cond.subspace_mixture()
    g = golden_u(cond_u, reward_u, u, a, tol=tol)  # tolerance-driven, with its own error estimate
    log_E_u, grad_u, err_log, err_g = g.log_E, g.grad_log_E, g.err_log_E, g.err_grad
    coef = math.sqrt(a) / (1 - a)
    # the complement: v_0 ~ N(c v, kappa^2 P_perp) against exp(c_0 - gamma |v_0|^2 / 2), a Gaussian integral
    gamma = w * (1 / s_num - 1 / s_den)
    c0 = -0.5 * w * n * math.log(s_num / s_den)
    tau2 = a * s_c + 1 - a
    c, kappa2 = math.sqrt(a) * s_c / tau2, (1 - a) * s_c / tau2
    one = 1 + gamma * kappa2  # > 0: checked by check_integrable
    r2 = (post.v**2).sum(1)
    log_E = log_E_u + c0 - 0.5 * n * math.log(one) - gamma * c**2 * r2 / (2 * one)
    diff_v = torch.full_like(log_E, c / one - c)
    return _Result(grad_u / coef, diff_v, log_E, err_log, err_g / coef, torch.zeros_like(log_E), 0)


# --- radial route -----------------------------------------------------------------------------------


def _half_nodes(level: int) -> int:
    return int(round(_Z_MAX * 2 ** (level / 2)))


@lru_cache(maxsize=32)
def _trapezoid(level: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Trapezoid rule for ``N(0, I_m)`` on ``[-Z, Z]^m`` with ``2k + 1`` nodes per dimension, ``k = 8 * 2^(level/2)``
    (spacing about ``2^(-level/2)``): nodes [M, m], log weights [M] (normalised: they sum to 1)."""
    k = _half_nodes(level)
    z1 = torch.linspace(-_Z_MAX, _Z_MAX, 2 * k + 1, dtype=_DTYPE)
    grids = torch.meshgrid(*([z1] * m), indexing="ij")
    nodes = torch.stack([g.reshape(-1) for g in grids], 1)
    lw = -0.5 * (nodes**2).sum(1)
    return nodes, lw - torch.logsumexp(lw, 0)


@lru_cache(maxsize=32)
def _laguerre(n_nodes: int, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized Gauss-Laguerre rule for the Gamma(alpha + 1, 1) law: nodes, log weights (summing to 1)."""
    x, wts = special.roots_genlaguerre(n_nodes, alpha)
    with np.errstate(divide="ignore"):
        lw = np.log(wts) - special.gammaln(alpha + 1)
    return torch.as_tensor(x), torch.as_tensor(lw)


class _Terms(NamedTuple):
    """One mixture's reward kernel: ``a_j(u_0)`` (:meth:`ReducibleMixture.subspace_terms`), ``beta_j = 1/(2 s_j^2)``."""

    mixture: ReducibleMixture
    beta: torch.Tensor  # [J]

    def at(self, u0: torch.Tensor) -> torch.Tensor:
        return self.mixture.subspace_terms(u0)


def _terms(mx: ReducibleMixture) -> _Terms:
    return _Terms(mx, 0.5 / mx.comp_vars)


def _log_r0(num: _Terms, den: _Terms, w: float, log_const: float, a_num, a_den, y):
    """``log R_0`` at u-terms a [..., U, J] and ``y`` [..., S] -> [..., U, S]."""
    ln = a_num[..., :, None, :] - num.beta * y[..., None, :, None]
    ld = a_den[..., :, None, :] - den.beta * y[..., None, :, None]
    return w * (torch.logsumexp(ln, -1) - torch.logsumexp(ld, -1)) + log_const


def _tail_matrix(reward: ReducibleRatioReward, m: int, n: int) -> tuple[torch.Tensor, float]:
    """The negative part ``A_-`` [m, m] of the quadratic fit :func:`analytic.tilted.tail_fit` of the reward's tail
    curvature over directions in ``U`` (as :mod:`analytic.golden` widens its nodes), and the tail curvature along
    the complement; both on the ``m + 1``-dimensional embedded reward (``U`` its first ``m`` axes)."""
    emb = reward.embedded()
    A, _ = tail_fit(emb, m)
    lam, U = torch.linalg.eigh(A)
    A_neg = (U * lam.clamp(max=0)) @ U.T
    tau_perp = emb.tail_curvature(torch.eye(m + 1, dtype=_DTYPE)[-1:]).item() if n > 0 else 0.0
    return A_neg, tau_perp


class _Reference(NamedTuple):
    """Per point and component, where the next level's ``u_0`` nodes go: the tilted mean (relative to ``m_k``)
    and covariance of ``u_0`` found at the previous level."""

    shift: torch.Tensor  # [N, K, m]
    cov: torch.Tensor  # [N, K, m, m]


def _u_reference(V: torch.Tensor, A_neg: torch.Tensor, z: torch.Tensor, lw: torch.Tensor,
                 ref: _Reference | None, sl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Offsets from ``m_k`` [Nc, K, U, m] and log weights [Nc, K, U] of trapezoid nodes for ``N(0, V_k)``.

    Without ``ref`` the nodes are laid on ``N(0, V'_k)``, ``V'^{-1} = V^{-1} + A_- / 2`` (widened where ``R_0``
    grows in the tails); with it, on the Gaussian with the mean and covariance of the equal mixture of
    ``N(0, V'_k)`` and ``N(shift, cov)``: it covers both the posterior component and the tilted mass however far the
    reward moved it, and is ``N(0, V'_k)`` again where the reward moved nothing. Either way the nodes are
    reweighted to ``N(0, V_k)``."""
    P = torch.linalg.inv(V) + 0.5 * A_neg
    P = 0.5 * (P + P.transpose(-1, -2))
    if torch.any(torch.linalg.eigvalsh(P) <= 0):
        P = torch.linalg.inv(V)
    Vref = torch.linalg.inv(P)[None]  # [1, K, m, m]
    centre = torch.zeros_like(Vref[..., 0])  # [1, K, m]
    if ref is not None:
        shift = ref.shift[sl]
        centre = shift / 2
        Vref = (Vref + ref.cov[sl]) / 2 + shift[..., :, None] * shift[..., None, :] / 4
    L = torch.linalg.cholesky(0.5 * (Vref + Vref.transpose(-1, -2)))  # [Nc, K, m, m]
    off = centre[:, :, None, :] + torch.einsum("nkij,uj->nkui", L, z)
    quad = torch.einsum("nkui,kij,nkuj->nku", off, torch.linalg.inv(V), off)
    logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1) - torch.logdet(V)  # [Nc, K]
    return off, lw - 0.5 * quad + 0.5 * (z**2).sum(1) + 0.5 * logdet[..., None]


class _RadialNodes(NamedTuple):
    y: torch.Tensor  # [Nc, K, S]  |v_0|^2
    e: torch.Tensor  # [Nc, K, S]  E[v_0 . v / r | node] - c_k r
    logw: torch.Tensor  # [Nc, K, S]


def _cartesian_nodes(n: int, M: torch.Tensor, kappa2: torch.Tensor, level: int, tau_perp: float) -> _RadialNodes:
    """``|v_0|^2 = (M + kappa t)^2 + kappa^2 q``: ``t ~ N(0, 1)`` by the trapezoid rule, ``q ~ chi^2_{n-1}`` by
    generalized Gauss-Laguerre, both widened by ``omega^2 = 1 / (1 + kappa^2 tau_-/2)`` where ``R_0`` grows radially."""
    kappa = kappa2.sqrt()  # [K]
    omega2 = 1 / (1 + kappa2 * min(tau_perp, 0.0) / 2)  # [K], >= 1
    zeta, lz = _trapezoid(level, 1)
    zeta = zeta[:, 0]
    t = omega2.sqrt()[:, None] * zeta  # [K, T]
    lw_t = lz - 0.5 * (omega2[:, None] - 1) * zeta**2 + 0.5 * torch.log(omega2)[:, None]
    if n == 1:
        q, lw_q = torch.zeros(1, 1, dtype=_DTYPE), torch.zeros(1, 1, dtype=_DTYPE)
    else:
        alpha = (n - 1) / 2 - 1
        x, lx = _laguerre(_half_nodes(level), alpha)
        q = 2 * omega2[:, None] * x  # [K, Qn]
        lw_q = lx + (alpha + 1) * torch.log(omega2)[:, None] - (omega2[:, None] - 1) * x
    K = kappa.shape[0]
    along = M[:, :, None, None] + (kappa[:, None] * t)[None, :, :, None]  # [Nc, K, T, 1]
    y = along**2 + (kappa2[:, None] * q)[None, :, None, :]
    e = (kappa[:, None] * t)[None, :, :, None].expand_as(y)
    logw = (lw_t[:, :, None] + lw_q[:, None, :]).expand(K, t.shape[1], q.shape[1])[None].expand_as(y)
    Nc = M.shape[0]
    return _RadialNodes(y.reshape(Nc, K, -1), e.reshape(Nc, K, -1), logw.reshape(Nc, K, -1))


def _laplace_nodes(n: int, M: torch.Tensor, kappa2: torch.Tensor, level: int, num: _Terms, den: _Terms,
                   w: float, a_num, a_den, lw_u) -> _RadialNodes:
    """Trapezoid nodes in ``rho`` on the Laplace approximation of the tilted radial marginal
    ``f_k(rho) int N(u_0; m_k, V_k) R_0(u_0, rho^2) du_0``: its mode by Newton's method in ``s = log rho`` (no
    boundary), its width from the curvature there. Nodes at ``rho <= 0`` are dropped (``f ~ rho^(n-1)``)."""
    Mn, k2 = M.numpy(), kappa2.numpy()[None, :]

    def slopes(s):
        rho = np.exp(s)
        y = torch.as_tensor(rho * rho)
        p1, p2 = radial_slopes(n, rho, Mn, k2)
        ln = a_num - num.beta * y[..., None, None]  # [Nc, K, U, J]
        ld = a_den - den.beta * y[..., None, None]
        pn, pd = torch.softmax(ln, -1), torch.softmax(ld, -1)
        En, Ed = (pn * num.beta).sum(-1), (pd * den.beta).sum(-1)
        Ly = w * (Ed - En)
        Lyy = w * ((pn * num.beta**2).sum(-1) - En**2 - (pd * den.beta**2).sum(-1) + Ed**2)
        L = w * (torch.logsumexp(ln, -1) - torch.logsumexp(ld, -1))
        q = torch.softmax(lw_u + L, -1)
        gy = (q * Ly).sum(-1)
        gyy = (q * (Lyy + Ly**2)).sum(-1) - gy**2
        y = y.numpy()
        return p1 + 2 * y * gy.numpy(), p2 + 4 * y * gy.numpy() + 4 * y * y * gyy.numpy()

    s = 0.5 * np.log(n * k2 + Mn * Mn)
    for _ in range(100):
        f1, f2 = slopes(s)
        step = np.clip(np.where(f2 < 0, -f1 / np.where(f2 < 0, f2, -1.0), np.sign(f1) * 0.5), -0.5, 0.5)
        s = s + step
        if np.abs(step).max() < 1e-8:  # the centre of the nodes, not a result: 1e-8 in log rho is ample
            break
    _, f2 = slopes(s)
    mode = np.exp(s)
    h = mode / np.sqrt(np.where(f2 < 0, -f2, 2 * n))  # width in rho: phi_rho'' = phi_s'' / rho^2 at the mode
    xi, lxi = _trapezoid(level, 1)
    xi, lxi = xi[:, 0].numpy(), lxi.numpy()
    rho = mode[..., None] + h[..., None] * xi  # [Nc, K, S]
    inside = rho > 0  # f vanishes like rho^(n-1) at 0: nodes below are dropped
    rho = np.where(inside, rho, mode[..., None])
    Mx, kx = Mn[..., None], k2[..., None]
    with np.errstate(divide="ignore"):
        logw = (lxi + 0.5 * xi**2 + 0.5 * math.log(2 * math.pi) + np.log(h)[..., None]
                + log_radial_density(n, rho, Mx, kx) + np.log(inside))
    A, _ = bessel_ratio(n / 2 - 1, rho * Mx / kx)
    return _RadialNodes(torch.as_tensor(rho * rho), torch.as_tensor(rho * A - Mx), torch.as_tensor(logw))


class _Level(NamedTuple):
    log_E: torch.Tensor  # [n]
    diff_u: torch.Tensor  # [n, m]
    diff_v: torch.Tensor  # [n]
    ref: _Reference  # tilted moments of u_0 per component, for the next level's nodes
    nodes: int  # u_0 nodes per dimension


def _radial_level(cond, reward, post: ReducedPosterior, idx: torch.Tensor, level_u: int, level_r: int,
                  A_neg: torch.Tensor, tau_perp: float, ref: _Reference | None, progress: bool) -> _Level:
    """The radial route at the points ``idx`` with ``u_0`` resolution ``level_u`` and radial resolution ``level_r``."""
    n, m, K = cond.n_perp, cond.sub_dim, cond.n_components
    num, den = _terms(reward.num), _terms(reward.den)
    w, log_const = reward.w, reward.log_const
    z, lz = _trapezoid(level_u, m)
    r = post.v[idx].norm(dim=1)  # [N]
    M = post.shrink * r[:, None]  # [N, K]
    U = z.shape[0]
    n_r = 2 * _half_nodes(level_r) + 1
    S = 1 if n == 0 else n_r * (_half_nodes(level_r) if 2 <= n < _CARTESIAN_BELOW else 1)
    chunk = max(1, int(_BUDGET // (K * U * S * max(num.beta.numel(), den.beta.numel()))))
    out: list[tuple[torch.Tensor, ...]] = []
    for s0 in tqdm(range(0, idx.numel(), chunk), desc="radial golden", disable=not progress):
        sl = idx[s0:s0 + chunk]
        Nc, Mc = sl.numel(), M[s0:s0 + chunk]
        off, lw_u = _u_reference(post.covs_u, A_neg, z, lz, ref, sl)  # [Nc, K, U, m], [Nc, K, U]
        u0 = post.means_u[sl][:, :, None, :] + off
        a_num, a_den = num.at(u0), den.at(u0)  # [Nc, K, U, J]
        if n == 0:
            zero = torch.zeros(Nc, K, 1, dtype=_DTYPE)
            nodes = _RadialNodes(zero, zero, zero)
        elif n < _CARTESIAN_BELOW:
            nodes = _cartesian_nodes(n, Mc, post.kappa2, level_r, tau_perp)
        else:
            nodes = _laplace_nodes(n, Mc, post.kappa2, level_r, num, den, w, a_num, a_den, lw_u)
        logR = _log_r0(num, den, w, log_const, a_num, a_den, nodes.y)  # [Nc, K, U, S]
        tot = (lw_u[..., None] + nodes.logw[:, :, None, :] + logR).reshape(Nc, K, -1)
        if torch.any(torch.isnan(tot)) or torch.any(tot == math.inf):
            raise ValueError("log R_0 is +inf or nan at a quadrature node")
        log_I = torch.logsumexp(tot, -1)  # [Nc, K]
        P = torch.softmax(tot, -1).reshape(Nc, K, U, -1)
        Pu = P.sum(-1)  # [Nc, K, U]
        shift_u = torch.einsum("nku,nkui->nki", Pu, off)
        dev = off - shift_u[:, :, None, :]
        cov_u = torch.einsum("nku,nkui,nkuj->nkij", Pu, dev, dev)
        shift_v = (P.sum(2) * nodes.e).sum(-1)  # [Nc, K]
        log_b = post.log_weights[sl]
        log_E = torch.logsumexp(log_b + log_I, 1)
        tilt = torch.softmax(log_b + log_I, 1)
        b = log_b.exp()
        mu = post.means_u[sl]
        centred = mu - (b[..., None] * mu).sum(1, keepdim=True)
        diff_u = ((tilt - b)[..., None] * centred).sum(1) + (tilt[..., None] * shift_u).sum(1)
        rc = r[s0:s0 + chunk]
        along = (tilt * shift_v).sum(1) / torch.where(rc > 0, rc, 1.0)
        diff_v = ((tilt - b) * post.shrink).sum(1) + torch.where(rc > 0, along, 0.0)
        out.append((log_E, diff_u, diff_v, shift_u, cov_u))
    log_E, diff_u, diff_v, shift_u, cov_u = (torch.cat(t) for t in zip(*out))
    return _Level(log_E, diff_u, diff_v, _Reference(shift_u, cov_u), 2 * _half_nodes(level_u) + 1)


def _radial_route(cond, reward, post: ReducedPosterior, a: float, tol: float, max_level: int,
                  progress: bool) -> _Result:
    """Refines the radial nodes first (on the coarsest ``u_0`` nodes), then the ``u_0`` nodes at that radial
    resolution, each point until its change is within ``tol``; the error estimate adds the two last changes.
    From the second evaluation on, each point's ``u_0`` nodes follow the tilted mass the previous one found."""
    N, m, n = post.means_u.shape[0], cond.sub_dim, cond.n_perp
    A_neg, tau_perp = _tail_matrix(reward, m, n)
    coef = math.sqrt(a) / (1 - a)
    first = _radial_level(cond, reward, post, torch.arange(N), 0, 0, A_neg, tau_perp, None, progress)
    vals = [first.log_E, first.diff_u, first.diff_v]
    ref = first.ref
    errs = {phase: [torch.zeros_like(v) for v in vals] for phase in ("radial", "u")}
    level_r, nodes = 0, first.nodes
    for phase in (("radial", "u") if n > 0 else ("u",)):
        idx = torch.arange(N)
        # the radial phase keeps its u_0 nodes fixed, so its changes are radial only
        ref_phase = _Reference(ref.shift.clone(), ref.cov.clone()) if phase == "radial" else ref
        for level in range(1, max_level + 1):
            lu, lr = (0, level) if phase == "radial" else (level, level_r)
            new = _radial_level(cond, reward, post, idx, lu, lr, A_neg, tau_perp, ref_phase, progress)
            nodes = max(nodes, new.nodes)
            ok = torch.ones(idx.numel(), dtype=torch.bool)
            for i, (v, nv) in enumerate(zip(vals, new[:3])):
                scale = 1.0 if i == 0 else coef
                ok &= _converged(scale * nv, scale * v[idx], tol)
                errs[phase][i][idx] = (nv - v[idx]).abs()
                v[idx] = nv
            ref.shift[idx], ref.cov[idx] = new.ref.shift, new.ref.cov
            level_r = level if phase == "radial" else level_r
            idx = idx[~ok]
            if idx.numel() == 0:
                break
        else:
            raise ToleranceNotMet(
                f"the {phase} quadrature did not reach tol={tol:g} at {idx.numel()} of {N} points within "
                f"max_level={max_level} (last change {errs[phase][0][idx].max().item():.3g} in log E); loosen tol "
                f"or raise max_level")
    log_E, diff_u, diff_v = vals
    err_log, err_u, err_v = (er + eu for er, eu in zip(errs["radial"], errs["u"]))
    return _Result(diff_u, diff_v, log_E, err_log, err_u, err_v, nodes)
