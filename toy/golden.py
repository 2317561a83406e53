"""The golden (optimal guidance ``-sqrt(1 - abar_t) grad log E_t``) for a *trained* network, two ways.

``E_t(x_t) = E[R_0(x_0) | x_t]`` over the network's own unguided DDPM chain from ``x_t`` (THEORY.md
section 4, "sampler chain"; the reward ``R_0`` is exact, e.g. ``analytic.CFGReward(cond, uncond, w)``, so
``log R_0 = w log(p(x|y) / p(x))``):

- :func:`mc_golden`: the paper's method (official_code_notes.md section 1.6): ``K`` stochastic rollouts
  from each point with reparameterised noise from a fixed generator, differentiated through the chain:
  ``log E_t ~= log mean_k exp(log R_0(x_0^k))``. Here ``R_0 = ratio^w`` sits *inside* the mean (the
  paper's code computes ``w log mean_k ratio_k``, right only at ``w = 1``). ``deterministic=True``: the
  paper's "(d)" curve, one noise-free rollout (the DDPM means), ``log R_0(x_0)`` of its end point.
- :func:`grid_golden`: the exact recursion on a grid with the network's eps,
  :func:`analytic.chain_golden` (no sampling noise; interpolation error only).

Both walk the chain with the schedule's own DDPM kernel (``VPSchedule.reverse_mean`` and
``posterior_variance``), and a network reaches them through its one contract adapter
(:func:`toy.net_eps_fn`).

:func:`compare_goldens` puts both beside the exact goldens of the analytic mixture (its sampler chain,
and the ideal chain of :func:`analytic.golden_on_grid`).
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import torch
from tqdm.auto import tqdm

from analytic import ChainGolden, GaussianMixture, chain_golden, golden_on_grid, mixture_eps_fn, step_gaps
from sampler.schedules import VPSchedule

from .model import EpsFn, net_eps_fn

__all__ = ["MCGolden", "mc_golden", "grid_golden", "GoldenComparison", "compare_goldens", "check_steps"]


def check_steps(schedule: VPSchedule, steps) -> tuple[int, ...]:
    """``steps`` as a tuple of step indices in 1..T (``None``: every step, ascending); ``ValueError`` otherwise."""
    steps = tuple(range(1, schedule.T + 1)) if steps is None else tuple(int(s) for s in steps)
    for s in steps:
        if not 1 <= s <= schedule.T:
            raise ValueError(f"steps must lie in 1..{schedule.T}, got {s}")
    return steps


class MCGolden(NamedTuple):
    """Monte Carlo golden at points x [N, d] for steps ``steps`` (default every t = 1..T)."""

    steps: tuple[int, ...]
    abar: torch.Tensor  # [S]
    log_E: torch.Tensor  # [S, N]
    grad_log_E: torch.Tensor  # [S, N, d]
    golden: torch.Tensor  # [S, N, d]
    n_rollouts: int


def _rollout_log_E(f: EpsFn, log_r0, schedule: VPSchedule, x: torch.Tensor, t: int, K: int,
                   noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``log mean_k R_0(x_0^k)`` [n] and its gradient [n, d] for points x [n, d] started at step t;
    ``noise`` [t, n, K, d] the reparameterised draws of each step (``None``: deterministic rollout)."""
    n, d = x.shape
    x = x.detach().clone().requires_grad_(True)
    X = x.repeat_interleave(K, dim=0)  # [n K, d]
    variance = schedule.posterior_variance  # [T + 1]
    for s in range(t, 0, -1):
        X = schedule.reverse_mean(X, f(X, s).to(torch.float64), s)
        v = variance[s].item()
        if v > 0 and noise is not None:
            X = X + math.sqrt(v) * noise[s - 1].reshape(X.shape).to(X.device)
    lr = log_r0(X).to(torch.float64).reshape(n, K)
    log_E = torch.logsumexp(lr, dim=1) - math.log(K)  # log mean_k R_0(x_0^k), R_0 = ratio^w
    (grad,) = torch.autograd.grad(log_E.sum(), x)
    return log_E.detach(), grad.detach()


def mc_golden(eps_fn: EpsFn, log_r0: Callable[[torch.Tensor], torch.Tensor], schedule: VPSchedule, x, *,
              steps=None, n_rollouts: int = 100, deterministic: bool = False, seed: int = 0, chunk: int = 20000,
              progress: bool = False) -> MCGolden:
    """The paper's Monte Carlo golden at points ``x`` [N, d] (float64) for each step in ``steps``.

    ``eps_fn(x, t)``: the network's eps at step index t (:func:`toy.net_eps_fn`). ``log_r0``: ``log R_0`` [M, d] -> [M]
    (``reward.log_r0``, which includes ``w``). ``chunk``: rollouts evaluated at once (memory bound).
    """
    if int(n_rollouts) != n_rollouts or n_rollouts < 1:
        raise ValueError(f"n_rollouts must be a positive integer, got {n_rollouts}")
    K = 1 if deterministic else int(n_rollouts)
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.ndim != 2:
        raise ValueError(f"x must have shape [N, d], got {tuple(x.shape)}")
    steps = check_steps(schedule, steps)
    g = torch.Generator().manual_seed(int(seed))
    per = max(1, int(chunk) // K)
    logs, grads = [], []
    for t in tqdm(steps, desc="Monte Carlo golden", disable=not progress):
        # all draws of this step at once, so the result does not depend on ``chunk``
        noise = None if deterministic else torch.randn(t, x.shape[0], K, x.shape[1], generator=g, dtype=torch.float64)
        out = [_rollout_log_E(eps_fn, log_r0, schedule, x[i:i + per], t, K,
                              None if noise is None else noise[:, i:i + per]) for i in range(0, x.shape[0], per)]
        logs.append(torch.cat([o[0] for o in out]))
        grads.append(torch.cat([o[1] for o in out]))
    abar = schedule.abar[list(steps)]
    grad = torch.stack(grads).cpu()
    golden = -torch.sqrt(1 - abar).reshape(-1, 1, 1) * grad
    return MCGolden(steps, abar, torch.stack(logs).cpu(), grad, golden, K)


def grid_golden(net: Any, cond: Any, log_r0, schedule: VPSchedule, axes, **kwargs) -> ChainGolden:
    """The exact sampler-chain golden of the network ``net`` (label ``cond``) on a 1-D/2-D grid:
    :func:`analytic.chain_golden` with the network's eps, :func:`toy.net_eps_fn` (``kwargs``: ``margin``,
    ``nodes``, ``progress``)."""
    return chain_golden(net_eps_fn(net, cond, schedule), log_r0, schedule, axes, **kwargs)


class GoldenComparison(NamedTuple):
    """Per-step mean absolute differences (eps units) on a 1-D grid; every entry [T] (t = 1..T)."""

    abar: torch.Tensor
    mc_vs_grid: torch.Tensor  # trained: Monte Carlo (K rollouts) vs exact grid recursion
    det_vs_grid: torch.Tensor  # trained: one deterministic rollout vs grid recursion
    grid_vs_exact_chain: torch.Tensor  # trained grid golden vs the exact mixture's sampler-chain golden
    grid_vs_ideal: torch.Tensor  # trained grid golden vs the ideal-chain analytic golden
    exact_chain_vs_ideal: torch.Tensor  # analytic: sampler chain vs ideal chain
    golden_size: torch.Tensor  # mean |exact sampler-chain golden|, for scale
    mc: MCGolden
    grid: ChainGolden
    exact_chain: ChainGolden
    ideal: torch.Tensor  # [T, N, d]


def compare_goldens(net: Any, cond: Any, mixture: GaussianMixture, reward, schedule: VPSchedule, x_axis, *,
                    n_rollouts: int = 100, seed: int = 0, progress: bool = False) -> GoldenComparison:
    """The trained network's golden by Monte Carlo and by the grid recursion, beside the analytic goldens.

    ``mixture``: the exact conditional law the network learned; ``reward``: the exact reward (``log_r0``,
    and, for the ideal chain, what :func:`analytic.golden_on_grid` accepts). 1-D grids only (``x_axis`` [N]).
    """
    x_axis = torch.as_tensor(x_axis, dtype=torch.float64)
    if x_axis.ndim != 1 or mixture.dim != 1:
        raise ValueError(f"compare_goldens is for 1-D models on a 1-D axis, got axis shape {tuple(x_axis.shape)}, "
                         f"dimension {mixture.dim}")
    f = net_eps_fn(net, cond, schedule)
    x = x_axis[:, None]
    grid = chain_golden(f, reward.log_r0, schedule, x_axis, progress=progress)
    mc = mc_golden(f, reward.log_r0, schedule, x, n_rollouts=n_rollouts, seed=seed, progress=progress)
    det = mc_golden(f, reward.log_r0, schedule, x, deterministic=True, progress=progress)
    exact = chain_golden(mixture_eps_fn(mixture, schedule), reward.log_r0, schedule, x_axis)
    ideal = torch.stack([golden_on_grid(mixture, reward, x_axis, schedule.abar[t].item()).golden
                         for t in range(1, schedule.T + 1)])

    steps = check_steps(schedule, None)
    vs_grid = step_gaps(grid.golden, {"mc": mc.golden, "det": det.golden, "ideal": ideal}, steps)
    vs_exact = step_gaps(exact.golden, {"grid": grid.golden, "ideal": ideal}, steps)
    return GoldenComparison(schedule.abar[1:].clone(), vs_grid.of("mc"), vs_grid.of("det"), vs_exact.of("grid"),
                            vs_grid.of("ideal"), vs_exact.of("ideal"), vs_exact.golden_size, mc, grid, exact, ideal)
