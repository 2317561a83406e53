"""The sampler-chain golden: ``E_t`` of the discrete DDPM chain actually run, at any 1-D or 2-D points.

THEORY.md section 4 ("sampler chain"): the unguided conditional DDPM chain has Gaussian kernels
``N(x_{t-1}; mu_t(x_t), s_t^2 I)`` with ``mu_t = (x_t - beta_t / sqrt(1 - abar_t) eps(x_t, t)) / sqrt(alpha_t)``
and ``s_t^2`` the posterior variance (0 at ``t = 1``: the last step is deterministic). Then

    E_0 = R_0,    E_1(x_1) = R_0(mu_1(x_1)),    E_t(x_t) = int N(x; mu_t(x_t), s_t^2 I) E_{t-1}(x) dx.

Method. ``E_{t-1}`` is stored as ``log E_{t-1}`` at the nodes of a working grid of its own (uniform, chosen per
step, independent of the points asked for), and every integral is the trapezoid rule of ``N(.) E_{t-1}`` on
those nodes (:mod:`analytic.gauss_sums`): the kernel is split, ``N_s = N_{s_a} * N_{s_b}``, into a separable
smoothing of the whole grid and a narrow sum (``s_b = 1.2 h``) around each centre ``mu_t(x)``, so ``E_t`` is
exact at any point for ``O(1)`` work. No function is interpolated: ``E_{t-1}`` itself is a sum of
exponentials and is integrated to spectral accuracy, even where ``log E_{t-1}`` has kinks or near-jumps
(far from the data the exact mixture's DDPM mean map tears along the boundaries between components, so
``log E_t`` changes by O(10) within 0.01; cubic splines of ``log E`` converge only to first order there,
which is why the former spline + Gauss-Hermite recursion did not converge in 2-D). Where such a tear is
narrower than the spacing, ``E_{t-1}`` is not smooth on the grid's scale either and the sum converges
more slowly than the aliasing bound (``correlated_2d``, t = 2, far corner: 4e-6 at the kernel-limited
spacing); the change between refinement levels, which refine every grid, sees it.

Resolution, error and budget. Step ``t``'s grid has spacing ``h_t = min(s_{t+1} / c, l_t / rho) / 1.25^k``
at refinement level ``k`` (every grid, so the change between levels sees what any spacing misses), with
``l_t = sqrt(l_0^2 + 1 - abar_t)`` (``l_0``: the reward's length scale), and ``c >= 1`` and ``rho`` set by the
tolerance; it covers the hull of the chain's mean paths from the requested points plus
``kappa`` accumulated kernel widths. Two levels are run; the error estimate of every value is their
difference, plus the weight the final values put on the working grids' outer layers (propagated through
all steps like an error bound, so a grid that is too small shows). Levels are added until the estimate is
below ``tol``; a level whose grid would exceed ``max_nodes`` raises (or warns) with the error reached.

Gradient: ``grad log E_t = J_mu^T E[z - mu_t] / s_b^2`` (the narrow sum's tilted mean), one autograd VJP of
``eps`` at the requested points.

``eps_fn(x [N, d], t) -> [N, d]`` is any differentiable noise prediction at step ``t`` (1..T) of the
schedule, in VP coordinates. Build it from a denoiser on the sampler's one model contract with
:func:`eps_from_denoiser` (a trained network through ``sampler.bind(model, cond)``), so no network is
wrapped twice; the exact mixture's closed-form eps is :func:`mixture_eps_fn`.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, NamedTuple

import torch
from scipy import ndimage
from tqdm.auto import tqdm

from sampler.schedules import VPSchedule

from .gauss_sums import gauss_sum_at, smooth_log, split_width
from .mixture import GaussianMixture, check_points
from .quadrature import as_axes, check_axes, gauss_hermite, grid_points

__all__ = ["ChainGolden", "chain_golden", "nested_golden", "eps_from_denoiser", "mixture_eps_fn", "chain_tail_curvature"]

EpsFn = Callable[[torch.Tensor, int], torch.Tensor]
LogR0 = Callable[[torch.Tensor], torch.Tensor]

_RATIO = 1.25  # spacing ratio between refinement levels
_KAPPA = 2.0  # working-grid margin in accumulated kernel widths beyond the next band (grown when the edge shows)
_RHO = (1.75, 1.0)  # points per feature width at the coarsest level: RHO[0] log10(1/tol) + RHO[1]


_CHUNK = 262_144  # points per eps_fn / log_r0 call
_RING = 10.0  # a band is widened while its outer ring holds more than _RING times an untilted Gaussian's


class _Resolution(NamedTuple):
    tol: float
    rho: float  # feature widths l_t per spacing at the coarsest level
    c0: float  # kernel widths s_{t+1} per spacing at the coarsest level (>= the narrow width)
    s_b: float  # the narrow kernel of every sum, in spacings
    radius: float  # the widest band (and the margin beyond the hull), in kernel widths


def _resolution(tol: float) -> _Resolution:
    """Constants for a tolerance: the trapezoid rule's aliasing ``2 exp(-2 pi^2 c^2)`` (relative, per dimension)
    stays below ``1e-4 tol`` at every level; bands (:func:`_band_radius`) and margins end where the Gaussian's
    tail is below ``1e-6 tol``."""
    c = max(1.0, math.sqrt(math.log(2e4 / tol) / (2 * math.pi**2)))
    return _Resolution(tol, _RHO[0] * math.log10(1.0 / tol) + _RHO[1], c, c, math.sqrt(2 * math.log(1e6 / tol)))


def _truncation(R: float, s_b: float, scale: float, d: int) -> float:
    """Bound of the golden's error from ending the narrow sums at ``R s_b``: the mass beyond, at most
    ``_RING 2 d Phi(-R)`` of the sum, shifts the tilted mean by up to ``(R + 1) s_b`` times it, and the golden
    by ``scale (R + 1) / s_b`` times it."""
    return scale * (R + 1) / s_b * _RING * d * math.erfc(R / math.sqrt(2))


def _band_radius(res: _Resolution, s_b: float, scale: float, d: int) -> float:
    """The narrowest band whose truncation (:func:`_truncation`) stays below ``tol / 100``."""
    R = 4.0
    while R < res.radius and _truncation(R, s_b, scale, d) > 1e-2 * res.tol:
        R += 0.25
    return R


class ChainGolden(NamedTuple):
    """``E_t`` of the sampler chain at every step ``t = 1..T`` at the requested points, with error estimates.

    Shapes: ``P`` is the grid's shape ``(n_1(, n_2))`` ('ij' order) when ``axes`` were given, else ``(N,)``."""

    axes: tuple[torch.Tensor, ...] | None  # the requested grid; None when points were given
    abar: torch.Tensor  # [T]       abar_t of the rows below
    log_E: torch.Tensor  # [T, *P]
    grad_log_E: torch.Tensor  # [T, *P, d]
    golden: torch.Tensor  # [T, *P, d]   -sqrt(1 - abar_t) grad log E_t (eps units)
    margin: float  # widest extent of a working grid beyond the requested points
    err_log_E: torch.Tensor  # [T, *P]     error estimate of log_E
    err_golden: torch.Tensor  # [T, *P, d]  error estimate of golden (eps units)
    points: torch.Tensor  # [prod P, d] the requested points
    spacing: torch.Tensor  # [T - 1]     working-grid spacing of E_1 .. E_{T-1} in the returned run
    tol: float  # the tolerance asked for (eps units)


def eps_from_denoiser(denoiser: Callable[[torch.Tensor, float], torch.Tensor], schedule: VPSchedule) -> EpsFn:
    """The chain's ``eps_fn(x_vp, t)`` of a denoiser ``D(x_ve, sigma)`` on the sampler's model contract
    (THEORY.md section 1): ``x_ve = x_vp / sqrt(abar_t)``, ``eps = (x_ve - D(x_ve, sigma_t)) / sigma_t``."""

    def eps_fn(x: torch.Tensor, t: int) -> torch.Tensor:
        a, sigma = schedule.abar[t].item(), schedule.sigmas[t].item()
        x_ve = x / math.sqrt(a)
        return (x_ve - denoiser(x_ve, sigma)) / sigma

    return eps_fn


def mixture_eps_fn(mixture: GaussianMixture, schedule: VPSchedule) -> EpsFn:
    """The exact eps of a mixture at the levels of ``schedule``, in closed form (``GaussianMixture.eps``;
    going through ``denoise`` would lose digits to the cancellation ``x - D`` at small sigma)."""

    def eps_fn(x: torch.Tensor, t: int) -> torch.Tensor:
        return mixture.eps(x, schedule.abar[t].item())

    return eps_fn


# --- evaluations ------------------------------------------------------------------------------------
def _mean(eps_fn: EpsFn, schedule: VPSchedule, x: torch.Tensor, t: int) -> torch.Tensor:
    """``mu_t(x)`` in chunks, without autograd. [N, d]"""
    out = []
    with torch.no_grad():
        for c in torch.split(x, _CHUNK):
            e = eps_fn(c, t)
            if e.shape != c.shape:
                raise ValueError(f"eps_fn returned shape {tuple(e.shape)} for input shape {tuple(c.shape)}")
            out.append(schedule.reverse_mean(c, e.to(torch.float64), t))
    return torch.cat(out) if out else x.clone()


def _log_r0(log_r0: LogR0, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = torch.cat([log_r0(c).to(torch.float64).reshape(-1) for c in torch.split(x, _CHUNK)])
    if torch.any(torch.isnan(out)) or torch.any(out == math.inf):
        raise ValueError("log_r0 returned nan or +inf on the working grid")
    return out


# --- the tail test (E_t infinite) ---------------------------------------------------------------------
def _directions(d: int) -> torch.Tensor:
    if d == 1:
        return torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    th = torch.arange(24, dtype=torch.float64) * (2 * math.pi / 24)
    return torch.stack([th.cos(), th.sin()], 1)


def chain_tail_curvature(eps_fn: EpsFn, log_r0: LogR0, schedule: VPSchedule, centre: torch.Tensor,
                         radius: float) -> list[torch.Tensor | None]:
    """The quadratic growth ``Q_t`` of ``log E_t(x) ~ x^T Q_t x / 2`` far from ``centre`` (at ``radius`` to
    ``3 radius``), for ``t = 0..T``; ``None`` from the step where ``E_t`` diverges on.

    ``Q_0`` is a least-squares quadratic fit of ``log R_0`` along directions, ``mu_t(x) ~ A_t x`` far out, and
    ``int N(y; A x, s^2 I) exp(y^T Q y / 2) dy`` is finite iff ``I - s^2 Q > 0``, when it grows with
    ``Q' = A^T Q (I - s^2 Q)^{-1} A``. Exact for single Gaussians; for mixtures the widest components rule the
    tails. Returns ``[]`` when ``log R_0`` or ``eps`` is not finite that far out (no verdict)."""
    d = centre.numel()
    u = _directions(d)
    rho = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64) * radius
    pts = (centre + rho[:, None, None] * u[None]).reshape(-1, d)  # [3 M, d]
    with torch.no_grad():
        f = log_r0(pts).to(torch.float64).reshape(3, -1)
    if not torch.all(torch.isfinite(f)):
        return []
    curv = (f[0] - 2 * f[1] + f[2]) / radius**2  # u^T Q_0 u
    if d == 1:
        Q = curv.mean().reshape(1, 1)
    else:
        X = torch.stack([u[:, 0] ** 2, 2 * u[:, 0] * u[:, 1], u[:, 1] ** 2], 1)
        a, b, c = torch.linalg.lstsq(X, curv[:, None]).solution[:, 0]
        Q = torch.stack([torch.stack([a, b]), torch.stack([b, c])])
    eye = torch.eye(d, dtype=torch.float64)
    probe = centre + torch.cat([radius * eye, 2 * radius * eye, -radius * eye, -2 * radius * eye])  # [4 d, d]
    out: list[torch.Tensor | None] = [Q]
    s2 = schedule.posterior_variance
    for t in range(1, schedule.T + 1):
        m = _mean(eps_fn, schedule, probe, t)
        if not torch.all(torch.isfinite(m)):
            return []
        A = 0.5 * ((m[d:2 * d] - m[:d]) + (m[2 * d:3 * d] - m[3 * d:])).T / radius  # columns: A e_i
        if s2[t] > 0:
            M = eye - s2[t].item() * Q
            if torch.linalg.eigvalsh(0.5 * (M + M.T)).min() <= 1e-9:
                return out + [None] * (schedule.T + 1 - t)
            Q = Q @ torch.linalg.inv(M)
        Q = A.T @ Q @ A
        Q = 0.5 * (Q + Q.T)
        out.append(Q)
    return out


def _check_tails(eps_fn, log_r0, schedule, X) -> None:
    lo, hi = X.min(0).values, X.max(0).values
    radius = 30.0 * max(1.0, (hi - lo).max().item())
    Q = chain_tail_curvature(eps_fn, log_r0, schedule, 0.5 * (lo + hi), radius)
    if Q and Q[-1] is None:
        t = next(i for i, q in enumerate(Q) if q is None)
        q = Q[t - 1]
        s2 = schedule.posterior_variance[t].item()
        raise ValueError(
            f"E_t of the sampler chain diverges at step t={t} (abar={schedule.abar[t].item():.6g}): far from the "
            f"data log E_{t - 1} grows like x^T Q x / 2 with largest curvature {torch.linalg.eigvalsh(q).max().item():.4g} "
            f">= 1 / s_t^2 = {1 / s2:.4g}, so the kernel integral int N(x'; mu_t, s_t^2) E_{t - 1}(x') dx' is infinite. "
            f"The reward grows too fast in the tails (for CFG: w too large for a conditional wider than the "
            f"reference); the sampler chain's optimal guidance does not exist here.")


# --- working grids ------------------------------------------------------------------------------------
def _probes(X: torch.Tensor, axes) -> torch.Tensor:
    """At most ~1000 of the requested points, including their extremes (for the mean-path hull)."""
    if X.shape[0] <= 1024:
        return X
    if axes is not None:
        sub = [a[torch.unique(torch.linspace(0, a.numel() - 1, 33 if len(axes) == 2 else 1025).round().long())]
               for a in axes]
        return grid_points(tuple(sub))
    idx = torch.unique(torch.cat([torch.linspace(0, X.shape[0] - 1, 1000).round().long(),
                                  X.argmin(0), X.argmax(0)]))
    return X[idx]


def _mean_path_hulls(eps_fn, schedule, probes) -> tuple[torch.Tensor, torch.Tensor]:
    """``lo, hi`` [T, d]: row ``t - 1`` bounds the centres ``mu_{t+1}(...)`` of step ``t + 1``'s kernels along the
    mean paths of the chain started from the probes at every step (``t = 1..T-1``; the last row is unused)."""
    T = schedule.T
    lo = probes.min(0).values.repeat(T, 1)
    hi = probes.max(0).values.repeat(T, 1)
    p = probes[:0]
    for t in range(T, 1, -1):  # the paths of every start at once: a new start joins at each step
        p = _mean(eps_fn, schedule, torch.cat([probes, p]), t)
        lo[t - 2] = torch.minimum(lo[t - 2], p.min(0).values)
        hi[t - 2] = torch.maximum(hi[t - 2], p.max(0).values)
    return lo, hi


def _probe_length_scale(log_r0: LogR0, X: torch.Tensor) -> float:
    """A length over which ``log R_0`` changes by O(1) near the points: the 10th percentile of
    ``|d^2 log R_0|^{-1/2}`` over a probe grid (kinks of ``log R_0`` cover little area and are ignored)."""
    d = X.shape[1]
    lo, hi = X.min(0).values, X.max(0).values
    ext = max((hi - lo).max().item(), 1e-3)
    n = 401 if d == 1 else 81
    axes = tuple(torch.linspace(lo[i].item() - 0.5 * ext, hi[i].item() + 0.5 * ext, n, dtype=torch.float64)
                 for i in range(d))
    hp = (axes[0][1] - axes[0][0]).item()
    f = _log_r0(log_r0, grid_points(axes)).reshape([n] * d)
    if d == 1:
        curv = (f[2:] - 2 * f[1:-1] + f[:-2]).abs() / hp**2
    else:
        c1 = (f[2:, 1:-1] - 2 * f[1:-1, 1:-1] + f[:-2, 1:-1]).abs()
        c2 = (f[1:-1, 2:] - 2 * f[1:-1, 1:-1] + f[1:-1, :-2]).abs()
        c3 = (f[2:, 2:] - 2 * f[1:-1, 1:-1] + f[:-2, :-2]).abs() / 2
        c4 = (f[2:, :-2] - 2 * f[1:-1, 1:-1] + f[:-2, 2:]).abs() / 2
        curv = torch.maximum(torch.maximum(c1, c2), torch.maximum(c3, c4)) / hp**2
    curv = curv[torch.isfinite(curv)].flatten()
    if curv.numel() == 0:
        return ext
    lengths = curv.clamp(min=1e-300).rsqrt()
    return float(min(max(torch.quantile(lengths, 0.1).item(), 4 * hp), 2 * ext))


class _Grid(NamedTuple):
    lo: torch.Tensor  # [d]
    n: tuple[int, ...]
    h: float

    def axes(self) -> tuple[torch.Tensor, ...]:
        return tuple(self.lo[i].item() + self.h * torch.arange(k, dtype=torch.float64) for i, k in enumerate(self.n))

    @property
    def size(self) -> int:
        return math.prod(self.n)


def _plan(schedule, hull_lo, hull_hi, ell0: float, res: _Resolution, level: int, kappa: float,
          margin: float | None) -> list[_Grid]:
    """Working grids of ``E_1 .. E_{T-1}`` at one refinement level."""
    T = schedule.T
    s = schedule.posterior_variance.sqrt()
    grids = []
    for t in range(1, T):
        ell = math.sqrt(ell0**2 + 1 - schedule.abar[t].item())
        # levels refine both limits: a grid limited by the kernel alone would be the same at every level, and the
        # estimate (the change between levels) blind to what that spacing misses (tears of E_{t-1} far from the data)
        h = min(s[t + 1].item() / res.c0, ell / res.rho) / _RATIO**level
        later = s[t + 2:].pow(2).sum().sqrt().item()  # accumulated width of the steps after the next
        m = res.radius * s[t + 1].item() + kappa * later if margin is None else margin
        lo, hi = hull_lo[t - 1] - m, hull_hi[t - 1] + m
        n = tuple(int(math.ceil((hi[i] - lo[i]).item() / h)) + 1 for i in range(lo.numel()))
        grids.append(_Grid(lo, n, h))
    return grids


def _fill_unknown(L: torch.Tensor) -> torch.Tensor:
    """Nodes whose sums found nothing on the previous grid (``-inf``, tracer 1) take the nearest known value,
    so that a later sum leaning on them carries their tracer into the error estimate instead of counting 0."""
    lost = ~torch.isfinite(L)
    if not lost.any():
        return L
    known = torch.isfinite(L)
    if not known.any():
        raise ValueError("log E_t is -inf on a whole working grid (R_0 vanishes wherever the chain goes)")
    idx = ndimage.distance_transform_edt(~known.numpy(), return_distances=False, return_indices=True)
    nearest = L[tuple(torch.as_tensor(i) for i in idx)]
    return torch.where(lost, nearest, L)


class _Run(NamedTuple):
    log_E: torch.Tensor  # [T, N]
    v: torch.Tensor  # [T, N, d]  grad of log E_t w.r.t. mu_t, at mu_t(x)
    edge: torch.Tensor  # [T, N]    weight on working-grid edges (relative truncation bound)
    apriori: torch.Tensor  # [T]    bound of the golden's aliasing and band-truncation errors (no level sees them)


def _run(eps_fn, log_r0, schedule, mu_out, grids: list[_Grid], res: _Resolution, progress: bool) -> _Run:
    """The recursion at one resolution: ``E_t`` at the requested points (their means ``mu_out[t]``) and at
    the nodes of every working grid."""
    T = schedule.T
    N, d = mu_out[1].shape
    s = schedule.posterior_variance.sqrt()
    logs, vs, edges = [], [], []
    apriori = torch.zeros(T, dtype=torch.float64)
    alias = 2 * math.exp(-2 * math.pi**2 * res.s_b**2)  # relative, per dimension (also the split's product)
    prev = None  # (log E, edge tracer, grid) of step t - 1
    for t in tqdm(range(1, T + 1), desc="sampler-chain golden", disable=not progress, leave=False):
        grid = grids[t - 1] if t < T else None
        nodes = grid_points(grid.axes()) if grid is not None else mu_out[1][:0]
        centres = torch.cat([mu_out[t], _mean(eps_fn, schedule, nodes, t)])
        if t == 1:
            log_E = _log_r0(log_r0, centres)
            m0 = mu_out[1].clone().requires_grad_(True)
            (v,) = torch.autograd.grad(log_r0(m0).sum(), m0)
            edge = torch.zeros_like(log_E)
        else:
            L, tr, g = prev
            sa, sb = split_width(s[t].item(), res.s_b * g.h)
            if sa > 0:
                LG = smooth_log(L, g.h, sa)
                TG = torch.exp(smooth_log(L + torch.log(tr), g.h, sa) - LG).nan_to_num(0.0)
            else:
                LG, TG = L, tr
            scale = math.sqrt(1 - schedule.abar[t].item())
            R = _band_radius(res, sb, scale, d)
            out = gauss_sum_at(LG, g.lo, g.h, centres, sb, tracer=TG, radius=R,
                               ring_tol=_RING * math.exp(-0.5 * R * R))
            log_E, edge = out.log_value, (out.tracer + out.outside).clamp(max=1.0)
            v = out.shift[:N] / sb**2
            # aliasing oscillates with period h in the centre: (2 pi / h) times it in grad log E; doubled for
            # the smoothing part and the Jacobian of the mean
            apriori[t - 1] = scale * (2 * math.pi / g.h) * 4 * d * alias + _truncation(R, sb, scale, d)
        if not torch.all(torch.isfinite(log_E[:N])):
            raise ValueError(f"log E_t is not finite at step t={t} at some requested points (R_0 vanishes "
                             f"everywhere the chain reaches from them)")
        logs.append(log_E[:N])
        vs.append(v.detach())
        edges.append(edge[:N])
        if grid is not None:
            L = _fill_unknown(log_E[N:].reshape(grid.n))
            prev = (L, edge[N:].reshape(grid.n), grid)
    return _Run(torch.stack(logs), torch.stack(vs), torch.stack(edges), apriori)


def _pull_back(eps_fn, schedule, X: torch.Tensor, vs: list[torch.Tensor]) -> list[torch.Tensor]:
    """``J_mu^T v`` at the points for each ``v`` in ``vs`` ([T, N, d] each): one VJP of eps per step."""
    T = schedule.T
    outs = [torch.empty_like(v) for v in vs]
    for t in range(1, T + 1):
        for sl in torch.split(torch.arange(X.shape[0]), 16_384):
            x = X[sl].clone().requires_grad_(True)
            e = eps_fn(x, t)
            mu = schedule.reverse_mean(x, e.to(torch.float64), t)
            for k, v in enumerate(vs):
                (g,) = torch.autograd.grad(mu, x, grad_outputs=v[t - 1, sl], retain_graph=k + 1 < len(vs))
                outs[k][t - 1, sl] = g
    return outs


# --- an independent reference ----------------------------------------------------------------------------
def nested_golden(eps_fn: EpsFn, log_r0: LogR0, schedule: VPSchedule, points, t: int,
                  nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log E_t [P], golden [P, d])`` at points [P, d] by nesting a ``nodes``-point Gauss-Hermite rule over each
    stochastic step below ``t``: no grid and no interpolation, ``nodes^(d (t - 1))`` evaluations of ``R_0`` per
    point, so only for the first few steps. The reference :func:`chain_golden` is tested against."""
    if not isinstance(schedule, VPSchedule) or int(t) != t or not 1 <= t <= schedule.T:
        raise ValueError(f"t must be a step 1..T of a VPSchedule, got t={t!r}")
    x = check_points(torch.as_tensor(points), torch.as_tensor(points).shape[-1], name="points").detach()
    d = x.shape[1]
    if int(nodes) != nodes or nodes < 2 or float(nodes) ** (d * (t - 1)) * x.shape[0] > 5e8:
        raise ValueError(f"nodes must be an integer >= 2 with nodes^(d (t-1)) P <= 5e8, got nodes={nodes}, t={t}")
    z, logw = gauss_hermite(int(nodes), d)

    def log_E(p: torch.Tensor, tau: int) -> torch.Tensor:
        mu = _mean(eps_fn, schedule, p, tau)
        if tau == 1:
            return _log_r0(log_r0, mu)
        s = schedule.posterior_variance[tau].sqrt().item()
        vals = log_E((mu[:, None] + s * z).reshape(-1, d), tau - 1).reshape(p.shape[0], -1)
        return torch.logsumexp(logw + vals, 1)

    xg = x.clone().requires_grad_(True)
    mu = schedule.reverse_mean(xg, eps_fn(xg, t).to(torch.float64), t)
    if t == 1:
        m0 = mu.detach().requires_grad_(True)
        (v,) = torch.autograd.grad(log_r0(m0).sum(), m0)
        out = _log_r0(log_r0, mu.detach())
    else:
        s = schedule.posterior_variance[t].sqrt().item()
        vals = log_E((mu.detach()[:, None] + s * z).reshape(-1, d), t - 1).reshape(x.shape[0], -1)
        v = torch.softmax(logw + vals, 1) @ z / s  # (m_R - mu) / s^2
        out = torch.logsumexp(logw + vals, 1)
    (grad,) = torch.autograd.grad(mu, xg, grad_outputs=v)
    return out, -math.sqrt(1 - schedule.abar[t].item()) * grad


# --- the entry point -----------------------------------------------------------------------------------
def _check_budget_args(tol, length_scale, margin, max_nodes, on_budget, d):
    tol = (1e-6 if d == 1 else 1e-4) if tol is None else tol
    if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number (eps units), got {tol!r}")
    if length_scale is not None and (isinstance(length_scale, bool) or not isinstance(length_scale, (int, float))
                                     or not (math.isfinite(length_scale) and length_scale > 0)):
        raise ValueError(f"length_scale must be a positive number, got {length_scale!r}")
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, float))
                               or not (math.isfinite(margin) and margin >= 0)):
        raise ValueError(f"margin must be finite and >= 0, got {margin!r}")
    if isinstance(max_nodes, bool) or int(max_nodes) != max_nodes or max_nodes < 100:
        raise ValueError(f"max_nodes must be an integer >= 100, got {max_nodes!r}")
    if on_budget not in ("raise", "warn"):
        raise ValueError(f"on_budget must be 'raise' or 'warn', got {on_budget!r}")
    return float(tol)


def chain_golden(eps_fn: EpsFn, log_r0: LogR0, schedule: VPSchedule, axes=None, *, points=None,
                 tol: float | None = None, length_scale: float | None = None, margin: float | None = None,
                 max_nodes: int = 8_000_000, on_budget: str = "raise", progress: bool = False) -> ChainGolden:
    """``log E_t``, ``grad log E_t`` and the golden term of the DDPM chain of ``eps_fn``, with error estimates.

    Args:
        eps_fn: ``eps_fn(x [N, d], t) -> [N, d]``, differentiable in ``x``; ``t`` indexes ``schedule``.
        log_r0: ``log R_0(x_0)`` for x_0 [N, d] -> [N] (e.g. ``reward.log_r0``), differentiable.
        axes: one 1-D increasing tensor per dimension (a single tensor in 1-D), uniform or not: the values
            are returned on their tensor grid. Give either ``axes`` or ``points``.
        points: any points [N, d] (d = 1 or 2).
        tol: largest error of the golden term (eps units) at any point and step; default 1e-6 in 1-D and
            1e-4 in 2-D. Met when the difference of two resolutions (the returned error estimate) is below it.
        length_scale: the reward's length scale (``reward.length_scale()``); default: probed from ``log_r0``.
            It only sets the first resolution tried.
        margin: a fixed width around the chain's mean paths for every working grid (default: the next
            kernel's band plus two accumulated widths of the later kernels, widened while the weight on the
            grids' edges shows in the error estimate).
        max_nodes: budget: the largest working grid allowed.
        on_budget: when ``tol`` is not met within the budget: ``"raise"`` (``ValueError`` with the error
            reached) or ``"warn"`` (``RuntimeWarning``, and the result with its error estimate).
    """
    if not isinstance(schedule, VPSchedule):
        raise ValueError(f"schedule must be a sampler.schedules.VPSchedule, got {type(schedule).__name__}")
    if not callable(eps_fn) or not callable(log_r0):
        raise ValueError("eps_fn and log_r0 must be callables")
    if (axes is None) == (points is None):
        raise ValueError("give exactly one of axes (a grid) or points [N, d]")
    if axes is not None:
        axes = as_axes(axes)
        axes = check_axes(axes, len(axes))
        X, shape = grid_points(axes), tuple(a.numel() for a in axes)
    else:
        pts = torch.as_tensor(points)
        if pts.ndim != 2 or pts.shape[1] not in (1, 2) or pts.shape[0] < 1:
            raise ValueError(f"points must have shape [N, 1] or [N, 2] with N >= 1, got {tuple(pts.shape)}")
        X = check_points(pts, pts.shape[1], name="points").detach()
        shape = (X.shape[0],)
    d = X.shape[1]
    tol = _check_budget_args(tol, length_scale, margin, max_nodes, on_budget, d)
    T = schedule.T
    abar = schedule.abar[1:]
    s = schedule.posterior_variance.sqrt()

    mu_out = [None] + [_mean(eps_fn, schedule, X, t) for t in range(1, T + 1)]
    _check_tails(eps_fn, log_r0, schedule, X)
    ell0 = float(length_scale) if length_scale is not None else _probe_length_scale(log_r0, X)
    res = _resolution(tol)
    hull_lo, hull_hi = _mean_path_hulls(eps_fn, schedule, _probes(X, axes))

    kappa, widened = _KAPPA, 0
    level, runs, grids = 0, {}, {}
    while True:
        plan = _plan(schedule, hull_lo, hull_hi, ell0, res, level, kappa, margin)
        biggest = max((g.size for g in plan), default=0)
        if biggest > max_nodes:
            if level < 2:
                raise ValueError(f"the sampler-chain golden needs a working grid of {biggest} nodes even at its "
                                 f"coarsest resolution (max_nodes={max_nodes}); ask for fewer or closer points, "
                                 f"or raise max_nodes")
            break  # the last pair (level - 2, level - 1) stands
        runs[level], grids[level] = _run(eps_fn, log_r0, schedule, mu_out, plan, res, progress), plan
        if level == 0:
            level = 1
            continue
        fine, coarse = runs[level], runs[level - 1]
        grad, grad_c = _pull_back(eps_fn, schedule, X, [fine.v, coarse.v])
        scale = torch.sqrt(1 - abar).reshape(-1, 1, 1)
        edge = fine.edge + coarse.edge  # relative mass resting on working-grid edges
        # missing mass ~ edge at ~7 kernel widths moves the tilted mean by ~7 s edge: grad by ~8 edge / s
        edge_golden = scale * 8 * (edge / s[1:].clamp(min=1e-300).reshape(-1, 1))[..., None] * (grad.abs() + 1)
        err_golden = scale * (grad - grad_c).abs() + edge_golden
        err_golden += torch.maximum(fine.apriori, coarse.apriori)[:, None, None]
        err_log_E = (fine.log_E - coarse.log_E).abs() + edge
        if err_golden.max() <= tol:
            break
        if margin is None and edge_golden.max() > 0.1 * tol:
            if widened >= 3:
                raise ValueError("E_t of the sampler chain appears to be infinite: the tilted chain keeps reaching "
                                 f"the edge of working grids widened three times (edge weight {edge.max().item():.3g}); "
                                 "check the reward's tails")
            kappa, widened, runs, level = kappa * 1.5, widened + 1, {}, 0  # the grids were too small
            continue
        level += 1
    if err_golden.max() > tol:
        msg = (f"the sampler-chain golden reached an estimated error of {err_golden.max().item():.3g} eps units "
               f"(tol {tol:g}) within max_nodes={max_nodes}")
        if on_budget == "raise":
            raise ValueError(msg + "; raise max_nodes or tol, or pass on_budget='warn' to get the result")
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    final = max(runs)
    fine, plan = runs[final], grids[final]
    golden = -torch.sqrt(1 - abar).reshape(-1, 1, 1) * grad
    lo, hi = X.min(0).values, X.max(0).values
    width = max((torch.cat([lo - g.lo, g.lo + g.h * (torch.tensor(g.n, dtype=torch.float64) - 1) - hi]).max().item()
                 for g in plan), default=0.0)
    P = shape
    return ChainGolden(tuple(axes) if axes is not None else None, abar, fine.log_E.reshape(T, *P),
                       grad.reshape(T, *P, d), golden.reshape(T, *P, d), float(width), err_log_E.reshape(T, *P),
                       err_golden.reshape(T, *P, d), X, torch.tensor([g.h for g in plan], dtype=torch.float64), tol)
