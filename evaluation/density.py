"""Exact output density of a guided sampler on a 1-D or 2-D grid (no Monte Carlo).

Coordinates. The samplers of :mod:`sampler.samplers` work in VE coordinates, where the state at
``sigma`` has scale ``sqrt(1 + sigma^2)``. The density is propagated in the VP coordinates of the same
state, ``u = x_ve / sqrt(1 + sigma^2)`` (= ``sqrt(abar) x_ve``), on one fixed grid for every level: the
start ``vp_prior`` is ``u ~ N(0, I)``, the tilted start ``N(0, I) E_T`` is a density of ``u`` too, and at
``sigma = 0`` ``u`` is the sample ``x_0`` itself.

Per step ``i`` (``sigma -> sigma'``, the formulas of :mod:`sampler.samplers`, ``D = denoiser(x, sigma)``):

- stochastic (``ddpm``, ``ddim`` with ``eta > 0``, while ``sigma' > 0``): the kernel is Gaussian given ``D``,
  ``x' ~ N(D + sqrt(sigma'^2 - c^2)/sigma (x - D), c^2 I)``, ``c^2 = eta^2 sigma'^2 (sigma^2 - sigma'^2)/sigma^2``.
  The density is kept as values at the grid nodes and each step is the trapezoid rule on the nodes,
  ``p'(u_k) = h^d sum_j N(u_k; m(u_j), c_u^2 I) p(u_j)``, with each source's kernel normalised over its
  (virtually unbounded) band so that mass is conserved exactly and mass leaving the grid is counted as
  ``lost``. For smooth densities the trapezoid rule is spectrally accurate once ``c_u`` is about the
  spacing (error ``~exp(-2 pi^2 c_u^2 / h^2)``); kernels narrower than ``min_kernel_width * h`` are
  counted in ``narrow_steps`` (their error is then first order).
- deterministic (``ddim`` with ``eta = 0``, ``euler``, ``heun``, and the last ``ddpm``/``ddim`` step to
  ``sigma = 0``): the whole deterministic tail is one map ``Phi``, computed by running the sampler itself
  on ``sub^d`` sub-points per grid cell; its push-forward is the mass of every sub-point deposited on the
  output grid with linear ("cloud-in-cell") weights. This is mass transport between cells, valid for
  non-monotone and folding maps, and smooths once (not per step).

The result is a discrete distribution of *hat masses*: ``mass[k] = int phi_k(u) p(u) du`` with ``phi_k`` the
piecewise-(bi)linear hat function of node ``k``. :func:`evaluation.distances.tilted_target` discretises the
target the same way, so distances compare like with like and converge to the continuous ones as the
grid is refined.

This module moved here from ``analytic.density`` (issue 10): it runs samplers, so it belongs to the
evaluation layer; the exact mathematics it relies on stays in :mod:`analytic`.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from analytic.gauss_sums import split_width
from analytic.grid import tilted_posterior
from analytic.mixture import GaussianMixture
from analytic.quadrature import as_axes, axes_spacing, check_axes, deposit, grid_points, spline_at, sub_points
from sampler.samplers import SAMPLERS, check_sigmas, ddim_coefficients, sample

__all__ = ["OutputDensity", "output_density", "gaussian_step", "vp_start", "tilted_start", "grid_log_prob_start"]

LogProb = Callable[[torch.Tensor], torch.Tensor]  # u [N, d] -> [N], possibly unnormalised
_BAND = 7.5  # kernel truncation in standard deviations (relative mass beyond: < 1e-13)


class OutputDensity(NamedTuple):
    """The sampler's output law as hat masses on the grid ``axes`` ('ij' order), in the VP coordinates
    of the last level (the data coordinates when it is 0)."""

    axes: tuple[torch.Tensor, ...]
    mass: torch.Tensor  # [n_1(, n_2)], sums to 1 - lost
    lost: float  # mass that left the grid during the steps (the start is normalised on the grid)
    narrow_steps: int  # stochastic steps whose kernel was narrower than min_kernel_width * h
    error: torch.Tensor | None  # [n_1(, n_2)] estimated |mass - exact hat masses| per node (see output_density);
    # None when the caller asked for no estimate (estimate_error=False)

    @property
    def spacing(self) -> tuple[float, ...]:
        return axes_spacing(self.axes)

    @property
    def density(self) -> torch.Tensor:
        """``mass / h^d``: the density smoothed by the hat function. [n_1(, n_2)]"""
        return self.mass / math.prod(self.spacing)


# --- starts ----------------------------------------------------------------------------------------
def vp_start(d: int) -> LogProb:
    """``log N(u; 0, I)``: the start of :func:`sampler.samplers.vp_prior` in VP coordinates."""

    def log_prob(u: torch.Tensor) -> torch.Tensor:
        return -0.5 * (u**2).sum(1) - 0.5 * d * math.log(2 * math.pi)

    return log_prob


def tilted_start(cond: GaussianMixture, reward, abar_T: float, *, marginal: bool = False) -> LogProb:
    """``log N(u; 0, I) + log E_T(u)`` (unnormalised), THEORY.md section 4: the start the optimal guided
    chain needs, with ``E_T`` of the ideal chain at the first level ``abar_T`` (``u`` = VP state).

    ``marginal=True`` tilts the true noised conditional instead, ``p_T(u | y) E_T(u)``: the exact
    marginal of the tilted ideal chain. The two agree when ``p_T(u | y) = N(0, I)`` (``abar_T -> 0``);
    with the paper's ``abar_T = 0.82`` only the second makes the chain's output ``p(x_0|y) R_0 / Z``."""
    base = cond.noised(abar_T).log_prob if marginal else vp_start(cond.dim)

    def log_prob(u: torch.Tensor) -> torch.Tensor:
        return base(u) + tilted_posterior(cond, reward, u, abar_T).log_E

    return log_prob


def grid_log_prob_start(values: torch.Tensor, axes) -> LogProb:
    """A start given by log-density values on a uniform grid (cubic-spline interpolated)."""
    axes = check_axes(axes, values.ndim, uniform=True)

    def log_prob(u: torch.Tensor) -> torch.Tensor:
        return spline_at(values, axes, u)

    return log_prob


# --- the two kinds of step -------------------------------------------------------------------------
_SPLIT = 1.2  # the narrow part of a split kernel, in grid spacings (trapezoid aliasing 9e-13 relative)
_ROUNDING = 1e-15  # absolute rounding of a hat mass, relative to the largest


def _narrow_scatter(src_mass, mean, c, lo, h, shape, pads) -> torch.Tensor:
    """Each source's mass spread over the nodes within ``+-_BAND c_i`` of its mean with normalised Gaussian
    weights (width ``c[i]`` on axis ``i``), accumulated on the grid padded by ``pads``. [padded shape]"""
    d = len(shape)
    weights, idx, padded = [], [], []
    for i in range(d):
        B = int(math.ceil(2 * _BAND * c[i] / h[i])) + 2
        k0 = torch.floor((mean[:, i] - _BAND * c[i] - lo[i]) / h[i]).long()  # [M]
        k0 = k0.clamp(-pads[i], shape[i] + pads[i] - B)  # sources far outside land in the padding (lost)
        offs = torch.arange(B)
        z = ((lo[i] + h[i] * k0.to(torch.float64) - mean[:, i]) / c[i])[:, None] + (h[i] / c[i]) * offs.to(torch.float64)
        w = z.square_().mul_(-0.5).exp_()  # in place: this loop is the density's inner loop
        weights.append(w.div_(w.sum(1, keepdim=True)))  # each source's mass is conserved over its band
        idx.append(k0[:, None] + (pads[i] + offs))  # index in the padded axis
        padded.append(shape[i] + 2 * pads[i])
    out = torch.zeros(math.prod(padded), dtype=torch.float64)
    if d == 1:
        out.index_add_(0, idx[0].flatten(), weights[0].mul_(src_mass[:, None]).flatten())
    else:
        B0, B1 = weights[0].shape[1], weights[1].shape[1]
        for sl in torch.split(torch.arange(src_mass.numel()), max(1, 2_000_000 // (B0 * B1))):
            vals = src_mass[sl, None, None] * weights[0][sl][:, :, None] * weights[1][sl][:, None, :]
            flat = idx[0][sl][:, :, None] * padded[1] + idx[1][sl][:, None, :]
            out.index_add_(0, flat.flatten(), vals.flatten())
    return out.reshape(padded)


def _blur(out: torch.Tensor, c_a, h) -> torch.Tensor:
    """Convolve every axis ``i`` with ``c_a[i] > 0`` with the normalised discrete Gaussian of width ``c_a[i]``
    reaching ``+-_BAND c_a[i]``, by direct sums of positive terms (no FFT: tail masses keep their relative
    accuracy). Mass beyond the array is dropped (it is beyond the padding, so lost anyway)."""
    for i, (ca, hi) in enumerate(zip(c_a, h)):
        if ca == 0:
            continue
        W = int(math.ceil(_BAND * ca / hi))
        k = torch.arange(-W, W + 1, dtype=torch.float64) * (hi / ca)
        g = torch.exp(-0.5 * k * k)
        g = g / g.sum()
        x = out.movedim(i, -1)
        n = x.shape[-1]
        if x.ndim == 1:
            y = torch.from_numpy(np.convolve(x.numpy(), g.numpy(), mode="full")[W:W + n].copy())
        else:
            j = torch.arange(n)
            diff = j[:, None] - j[None, :]
            T = torch.where(diff.abs() <= W, g[(diff + W).clamp(0, 2 * W)], torch.zeros((), dtype=torch.float64))
            y = x @ T  # y[..., j] = sum_k x[..., k] g(j - k)
        out = y.movedim(-1, i)
    return out


def gaussian_step(p: torch.Tensor, mean: torch.Tensor, c: float, axes, lo, h) -> tuple[torch.Tensor, float]:
    """Nodal values ``p`` [N] -> ``h^d sum_j N(u_k; mean_j, c^2 I) p_j`` on the grid; returns it and the
    mass that left the grid. Each source's Gaussian is normalised on the nodes (mass is conserved exactly)
    and reaches ``+-_BAND c``; the output is accumulated on a padded grid (the padding is the lost mass).

    Wide kernels (``c >= 2.4 h``) are split, ``N_c = N_{c_a} * N_{c_b}`` with ``c_a c_b / c = 1.2 h``
    (:func:`analytic.gauss_sums.split_width`): a narrow scatter from every source, then one convolution of the
    whole grid. Both parts are resolved, so the result differs from the direct sum by the aliasing of the
    trapezoid rule only (about 1e-12), at a cost independent of ``c / h``.

    ``p`` [N] nodal values ('ij' order), ``mean`` [N, d] every source's kernel mean, ``lo``/``h`` per axis."""
    d = len(axes)
    shape = tuple(a.numel() for a in axes)
    cell = math.prod(h)
    c_a, c_b = zip(*[split_width(c, _SPLIT * hi) for hi in h])
    pads = [int(math.ceil(2 * _BAND * cb / hi)) + 2 + int(math.ceil(_BAND * ca / hi))
            for cb, ca, hi in zip(c_b, c_a, h)]
    src_mass = p * cell  # [N]
    keep = src_mass > 1e-300
    mean, src_mass = mean[keep], src_mass[keep]
    out = _blur(_narrow_scatter(src_mass, mean, c_b, lo, h, shape, pads), c_a, h)
    inner = out[tuple(slice(pads[i], pads[i] + shape[i]) for i in range(d))].reshape(-1)
    lost = (src_mass.sum() - inner.sum()).item()
    return inner / cell, lost


# --- nested grids ---------------------------------------------------------------------------------
def _refine(axes, k: int) -> tuple[torch.Tensor, ...]:
    """The grid with ``2^k`` times as many cells, containing ``axes``' nodes."""
    return tuple(torch.linspace(a[0].item(), a[-1].item(), (a.numel() - 1) * 2**k + 1, dtype=torch.float64)
                 for a in axes)


def _restrict(mass: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Hat masses on a grid ``2^k`` times coarser (every ``2^k``-th node): hats of nested grids refine exactly,
    ``phi^H_K = phi^h_{2K} + (phi^h_{2K-1} + phi^h_{2K+1}) / 2``, so hat masses restrict exactly."""
    for _ in range(k):
        for i in range(mass.ndim):
            x = mass.movedim(i, 0)
            out, odd = x[0::2].clone(), x[1::2]
            out[: odd.shape[0]] += 0.5 * odd  # node 2K + 1 -> K
            out[1:] += 0.5 * odd[: out.shape[0] - 1]  # node 2K - 1 -> K
            mass = out.movedim(0, i)
    return mass


def _prolong(err: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Spread per-node errors of the every-other-node grid over the nodes of ``shape`` (each fine hat holds
    about half of a coarse hat's mass per dimension)."""
    for i, n in enumerate(shape):
        x = err.movedim(i, 0)
        out = torch.zeros((n,) + tuple(x.shape[1:]), dtype=torch.float64)
        out[0::2] = 0.5 * x[: (n + 1) // 2]
        nxt = torch.cat([x[1:], torch.zeros_like(x[:1])])
        out[1::2] = 0.25 * (x + nxt)[: n // 2]
        err = out.movedim(0, i)
    return err


# --- one resolution --------------------------------------------------------------------------------
class _Pair(NamedTuple):
    mass: torch.Tensor  # hat masses on the working grid
    coarse: torch.Tensor | None  # the same computation on the working grid's even nodes (twice the spacing)
    sub_change: torch.Tensor | None  # 2 |change of mass| with twice the sub-points per cell, on the working grid
    lost: float
    narrow: int


def _tail_mass(p, axes, sub: int, log_start, denoiser, sampler, eta, tail, scale_in, scale_out, with_double: bool):
    """Hat masses after the deterministic tail from a nodal density ``p`` (or, with ``p=None``, from the start
    density ``log_start`` itself); with ``with_double`` also the masses from twice the sub-points."""
    d = len(axes)
    h = axes_spacing(axes)
    outs = []
    for k in ((sub, 2 * sub) if with_double else (sub,)):
        pts = sub_points(axes, k)
        if p is not None:
            m = spline_at(p, axes, pts, outside="zero").clamp(min=0) * (math.prod(h) / k**d)
            m = m * (p.sum() * math.prod(h)) / m.sum()  # the nodal mass, exactly
        else:
            log_p = log_start(pts).to(torch.float64)
            m = torch.exp(log_p - log_p.max())
            m = m / m.sum()
        if len(tail) > 1:
            reset = getattr(denoiser, "reset", None)  # a stateful guidance (APG with momentum): one run each
            if reset is not None:
                reset()
            with torch.no_grad():
                x_end = sample(sampler, denoiser, scale_in * pts, tail, eta=eta)
            pts = x_end.to(torch.float64) / scale_out
        outs.append(deposit(pts, m, axes))
    return outs


def _density(denoiser, s: torch.Tensor, axes, sampler: str, eta: float, start: LogProb, sub: int,
             min_kernel_width: float, progress: bool, estimate: bool = True) -> _Pair:
    """The law on ``axes`` and (with ``estimate``), reusing every denoiser value at the even nodes, on the grid of
    even nodes and with twice the sub-points."""
    d = len(axes)
    h = list(axes_spacing(axes))
    lo = [a[0].item() for a in axes]
    shape = tuple(a.numel() for a in axes)
    c_axes = tuple(a[0::2] for a in axes)
    c_h = [2 * hi for hi in h]
    c_shape = tuple(a.numel() for a in c_axes)
    even = torch.zeros(shape, dtype=torch.bool)
    even[tuple(slice(0, None, 2) for _ in range(d))] = True
    even = even.flatten()
    scale = torch.sqrt(1 + s**2)  # VE state = scale * u
    eta_eff = 1.0 if sampler == "ddpm" else (eta if sampler == "ddim" else 0.0)
    n_stoch = len(s) - 1 - (1 if s[-1] == 0 else 0) if eta_eff > 0 else 0  # leading stochastic steps
    tail_eta = eta if sampler == "ddim" else 0.0
    lost, narrow = 0.0, 0
    if n_stoch > 0:
        X = grid_points(axes)  # [N, d]
        log_p = start(X).to(torch.float64)
        p = torch.exp(log_p - log_p.max())
        q = p[even]
        p = p / (p.sum() * math.prod(h))  # nodal density, h^d sum = 1
        q = q / (q.sum() * math.prod(c_h))
        for i in tqdm(range(n_stoch), desc=f"{sampler} density", disable=not progress):
            sig, nxt = s[i].item(), s[i + 1].item()
            with torch.no_grad():
                x = scale[i].item() * X
                D = denoiser(x, sig).to(torch.float64)
                keep, c_ve = ddim_coefficients(sig, nxt, eta_eff)  # the sampler's own step
                mean = (D + keep * (x - D)) / scale[i + 1].item()
            c = c_ve / scale[i + 1].item()
            narrow += int(c < min_kernel_width * min(h))
            p, l = gaussian_step(p, mean, c, axes, lo, h)
            if estimate:
                q, _ = gaussian_step(q, mean[even], c, c_axes, lo, c_h)
            lost += l
        tail = s[n_stoch:]
        args = (denoiser, sampler, tail_eta, tail, scale[n_stoch].item(), scale[-1].item())
        p_fine, p_coarse = p.reshape(shape), q.reshape(c_shape)
    else:
        args = (denoiser, sampler, tail_eta, s, scale[0].item(), scale[-1].item())
        p_fine = p_coarse = None
    (mass, l), *double = _tail_mass(p_fine, axes, sub, start, *args, with_double=estimate)
    if not estimate:
        return _Pair(mass, None, None, lost + l, narrow)
    ((coarse, _),) = _tail_mass(p_coarse, c_axes, sub, start, *args, with_double=False)
    return _Pair(mass, coarse, 2 * (double[0][0] - mass).abs(), lost + l, narrow)  # x2: change -> error (order >= 1)


# --- the entry point -------------------------------------------------------------------------------
def output_density(denoiser, sigmas, axes, *, sampler: str = "ddpm", eta: float = 0.0, start: LogProb | None = None,
                   sub: int | None = None, min_kernel_width: float = 0.5, tol: float | None = None,
                   max_nodes: int = 4_000_000, on_budget: str = "raise", estimate_error: bool = True,
                   progress: bool = False) -> OutputDensity:
    """Exact law of ``sample(sampler, denoiser, x_start, sigmas, eta=eta)`` on a uniform 1-D or 2-D grid, as
    hat masses, with an error estimate per node.

    Resolution and error. The law is computed on a working grid (the given one, or ``2^k`` times finer,
    restricted exactly to the given hats) and, at no extra denoiser cost, on the working grid's even nodes;
    the error estimate (``error``) is the change between the two (at ``k = 0`` spread over the given nodes),
    plus twice the change from twice the sub-points per cell in the deterministic push-forward, plus ``1e-15`` of
    the largest mass for rounding (hat masses come from a spline of the nodal law, so masses far below the
    largest are not relatively accurate: a KL that divides by them sees it in its error). It estimates the
    error of the coarser computation, so it is an upper estimate for the returned one.

    Args:
        denoiser: ``denoiser(x [N, d], sigma) -> x0_hat`` in VE coordinates (a bound model, a guidance
            object or ``REG(...)``), float64, deterministic.
        sigmas: the sampler's strictly decreasing noise levels [K + 1].
        axes: one uniform axis per dimension with at least 3 nodes (a single tensor in 1-D): the grid of the VP
            state ``u``, used at every level; it must hold the start's and the output's mass.
        sampler, eta: as :func:`sampler.samplers.sample`.
        start: log-density of the start state ``u`` (unnormalised; normalised on the grid); default
            :func:`vp_start` (the ``vp_prior``). :func:`tilted_start` gives ``N(0, I) E_T``.
        sub: sub-points per cell and dimension for the deterministic push-forward (default 8 in 1-D,
            3 in 2-D).
        min_kernel_width: stochastic kernels narrower than this many grid spacings are counted in
            ``narrow_steps`` (still computed, to first order).
        tol: largest summed error of the masses (``error.sum()``, which bounds twice the TV error). ``None``:
            compute on the given grid and report its error (the default); otherwise working grids are refined
            until the estimate is below ``tol``.
        max_nodes, on_budget: the largest working grid; when ``tol`` is not met within it, ``"raise"``
            (``ValueError`` with the error reached) or ``"warn"`` (``RuntimeWarning``, and the result).
        estimate_error: ``False`` skips the runs behind the estimate (the even-node grid and the doubled
            sub-points: up to 5x the work in 2-D with an expensive denoiser such as the exact optimum) and
            returns ``error=None``; the masses are the same. Only with ``tol=None``.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
    if sampler != "ddim" and eta != 0:
        raise ValueError(f"eta={eta} is only meaningful for 'ddim', got sampler {sampler!r}")
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    if sub is not None and (int(sub) != sub or sub < 1):
        raise ValueError(f"sub must be a positive integer, got {sub}")
    if not callable(denoiser):
        raise ValueError(f"denoiser must be callable as denoiser(x, sigma), got {denoiser!r}")
    if tol is not None and (isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (math.isfinite(tol) and tol > 0)):
        raise ValueError(f"tol must be a positive number or None, got {tol!r}")
    if isinstance(max_nodes, bool) or int(max_nodes) != max_nodes or max_nodes < 9:
        raise ValueError(f"max_nodes must be an integer >= 9, got {max_nodes!r}")
    if on_budget not in ("raise", "warn"):
        raise ValueError(f"on_budget must be 'raise' or 'warn', got {on_budget!r}")
    if not isinstance(estimate_error, bool) or (not estimate_error and tol is not None):
        raise ValueError(f"estimate_error must be a bool, and True when tol is given; got {estimate_error!r}, tol={tol!r}")
    s = check_sigmas(sigmas)
    axes = as_axes(axes)
    axes = check_axes(axes, len(axes), uniform=True)
    if min(a.numel() for a in axes) < 3:
        raise ValueError(f"need at least 3 nodes per axis (the error estimate compares with every other node), "
                         f"got {[a.numel() for a in axes]}")
    d = len(axes)
    sub = int(sub) if sub is not None else (8 if d == 1 else 3)
    start = start if start is not None else vp_start(d)
    shape = tuple(a.numel() for a in axes)

    level = 0
    while True:
        work = _refine(axes, level)
        size = math.prod(a.numel() for a in work)
        if size > max_nodes:
            if level == 0:
                raise ValueError(f"the grid has {size} nodes, more than max_nodes={max_nodes}")
            msg = (f"output_density reached an estimated error of {error.sum().item():.3g} (tol {tol:g}) within "
                   f"max_nodes={max_nodes}")
            if on_budget == "raise":
                raise ValueError(msg + "; raise max_nodes or tol, or pass on_budget='warn' to get the result")
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
            break
        pair = _density(denoiser, s, work, sampler, eta, start, sub, min_kernel_width, progress, estimate_error)
        mass = _restrict(pair.mass, level)
        if not estimate_error:
            return OutputDensity(axes, mass, pair.lost, pair.narrow, None)
        change = (_restrict(pair.mass) - pair.coarse).abs()
        error = _prolong(change, shape) if level == 0 else _restrict(change, level - 1)
        # + the rounding of a mass: hat masses come from a cubic spline of the nodal law, whose values carry
        # absolute errors of a few ulps of the largest (so tiny tail masses are not relatively accurate)
        error = error + _restrict(pair.sub_change, level) + _ROUNDING * mass.max()
        result = OutputDensity(axes, mass, pair.lost, pair.narrow, error)
        if tol is None or error.sum().item() <= tol:
            break
        level += 1
    return result
