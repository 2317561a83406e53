"""How good a trained toy network is, against the exact mixture it learned.

- :func:`eps_error`: per step ``t``, the ``p_t``-weighted RMS error ``sqrt(E_{x_t ~ p_t} ||eps_theta(x_t, t) -
  eps(x_t, t)||^2)`` of the learned noise prediction against the exact mixture eps (``GaussianMixture.eps``),
  by Monte Carlo over ``x_t ~ p_t`` with a fixed generator (the weighting is the sampling).
- :func:`sample_w1`: Wasserstein-1 distance between DDPM samples of the network (run through the sampler
  core and the model contract) and the exact data law: ``W1 = int |F_n(x) - F(x)| dx`` against the exact
  mixture CDF in 1-D, and the sliced W1 (mean over fixed directions of the same 1-D distance of the
  projections, each projection a 1-D mixture) in 2-D. ``floor`` is the same distance for as many exact
  draws: the Monte Carlo noise a perfect network would still show.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from analytic import GaussianMixture
from sampler import bind, ddpm, vp_prior
from sampler.schedules import VPSchedule

from .model import net_device, net_eps_fn, toy_model

__all__ = ["EpsError", "W1Result", "eps_error", "sample_w1", "w1_to_mixture"]


class EpsError(NamedTuple):
    abar: torch.Tensor  # [T] levels t = 1..T
    rms: torch.Tensor  # [T] p_t-weighted RMS of eps_theta - eps (Euclidean norm over dimensions)
    rms_exact: torch.Tensor  # [T] RMS of the exact eps itself, for scale
    mean: float  # rms averaged over the T steps


class W1Result(NamedTuple):
    w1: float  # network samples vs exact law (sliced in d > 1)
    floor: float  # the same for exact draws of the same size
    n: int
    start: str


def eps_error(net: Any, cond: Any, mixture: GaussianMixture, schedule: VPSchedule, *, n: int = 4096,
              seed: int = 0) -> EpsError:
    """Per-step ``p_t``-weighted RMS error of the network's eps (label ``cond``) against ``mixture``'s."""
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    g = torch.Generator().manual_seed(seed)
    f = net_eps_fn(net, cond, schedule)  # runs on the network's device, answers on the CPU
    rms, ref = [], []
    with torch.no_grad():
        for t in range(1, schedule.T + 1):
            a = schedule.abar[t].item()
            x0 = mixture.sample(int(n), generator=g)
            x_t = schedule.add_noise(x0, torch.randn(x0.shape, generator=g, dtype=x0.dtype), t)
            exact = mixture.eps(x_t, a)
            learned = f(x_t, t).to(torch.float64)
            rms.append(((learned - exact) ** 2).sum(1).mean().sqrt())
            ref.append((exact**2).sum(1).mean().sqrt())
    rms = torch.stack(rms)
    return EpsError(schedule.abar[1:].clone(), rms, torch.stack(ref), rms.mean().item())


def _mixture_cdf(x: torch.Tensor, w: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return (w * torch.special.ndtr((x[:, None] - m) / s)).sum(1)


def _directions(d: int, k: int) -> torch.Tensor:
    if d == 1:
        return torch.ones(1, 1, dtype=torch.float64)
    if d == 2:
        th = torch.arange(k, dtype=torch.float64) * math.pi / k
        return torch.stack([torch.cos(th), torch.sin(th)], 1)
    g = torch.Generator().manual_seed(1234)
    u = torch.randn(k, d, generator=g, dtype=torch.float64)
    return u / u.norm(dim=1, keepdim=True)


def w1_to_mixture(samples: torch.Tensor, mixture: GaussianMixture, *, n_directions: int = 32,
                  grid_points: int = 20001) -> float:
    """``W1`` (1-D) or sliced ``W1`` (d > 1, mean over ``n_directions``) of samples [n, d] to the exact law."""
    x = samples.detach().to("cpu", torch.float64)
    if x.ndim != 2 or x.shape[1] != mixture.dim or x.shape[0] < 1:
        raise ValueError(f"samples must have shape [n, {mixture.dim}] with n >= 1, got {tuple(x.shape)}")
    if not torch.all(torch.isfinite(x)):
        raise ValueError("samples contain non-finite values")
    out = []
    for u in _directions(mixture.dim, n_directions):
        p = torch.sort(x @ u).values
        m = mixture.means.cpu() @ u
        s = torch.einsum("i,kij,j->k", u, mixture.covs.cpu(), u).sqrt()
        lo = min(p[0].item(), (m - 8 * s).min().item())
        hi = max(p[-1].item(), (m + 8 * s).max().item())
        grid = torch.linspace(lo, hi, grid_points, dtype=torch.float64)
        F = _mixture_cdf(grid, mixture.weights.cpu(), m, s)
        Fn = torch.searchsorted(p, grid, right=True).to(torch.float64) / p.numel()
        out.append(torch.trapezoid((Fn - F).abs(), grid).item())
    return sum(out) / len(out)


def sample_w1(net: Any, cond: Any, mixture: GaussianMixture, schedule: VPSchedule, *, n: int = 8000, seed: int = 0,
              start: str = "exact", device: str | torch.device | None = None) -> W1Result:
    """DDPM samples of the network (its own chain, ``schedule``'s levels) against ``mixture``.

    ``start='exact'``: ``x_T`` drawn from the true noised law ``p_T`` (isolates the network's error);
    ``'prior'``: ``x_T ~ N(0, I)`` as the paper's sampler does (adds the prior mismatch of abar_T ~= 0.82).
    ``device``: where the chain runs (default: the network's device, else the CPU); the start points are
    drawn on the CPU either way.
    """
    if int(n) != n or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n}")
    g = torch.Generator().manual_seed(seed)
    sigmas = schedule.sampling_sigmas()  # sigma_T .. sigma_1, 0
    aT = schedule.abar[-1].item()
    if start == "exact":
        x0 = mixture.sample(int(n), generator=g)
        x_vp = schedule.add_noise(x0, torch.randn(x0.shape, generator=g, dtype=x0.dtype), schedule.T)
        x_start = x_vp / math.sqrt(aT)
    elif start == "prior":
        x_start = vp_prior(torch.randn(int(n), mixture.dim, generator=g, dtype=torch.float64), sigmas[0].item())
    else:
        raise ValueError(f"start must be 'exact' or 'prior', got {start!r}")
    dev = torch.device(device) if device is not None else (net_device(net) or torch.device("cpu"))
    den = bind(toy_model(net, schedule), cond)
    x = ddpm(den, x_start.to(dev), sigmas, generator=torch.Generator(device=dev).manual_seed(seed + 1))
    w1 = w1_to_mixture(x, mixture)
    floor = w1_to_mixture(mixture.sample(int(n), generator=torch.Generator().manual_seed(seed + 2)), mixture)
    return W1Result(w1, floor, int(n), start)
