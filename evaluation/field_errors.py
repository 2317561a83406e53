"""Guidance-field errors of guided samplers against the exact golden, per step.

:func:`field_errors`: mean ``|golden - method|`` (eps units, Euclidean norm per point) over a grid, at
every step of a schedule (ascending ``t = 1..T``), unweighted and weighted by ``p_t(x | y)``, against the
ideal-chain golden (:func:`analytic.golden_on_grid`) and the sampler-chain golden
(:func:`analytic.chain_golden`), for any guided denoisers of :mod:`sampler` (so weight schedules and every
REG estimator are covered). Against the ideal-chain golden each mean carries its error: the same mean of the
golden's own error estimate (a mean of ``|golden - method|`` moves by at most the mean of ``|golden error|``).
The table itself is :func:`analytic.step_gaps`, shared with the trained
networks (:mod:`toy`).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from analytic.chain import chain_golden, mixture_eps_fn
from analytic.fields import step_gaps
from analytic.grid import golden_on_grid
from analytic.mixture import GaussianMixture
from analytic.quadrature import as_axes, check_axes, grid_points
from sampler.schedules import VPSchedule, abar_to_sigma

__all__ = ["FieldErrors", "field_errors", "guidance_term"]


class FieldErrors(NamedTuple):
    """Mean ``|golden - method|`` per step for ``methods``, each ``[len(methods), T]`` with columns
    ``t = 1..T``. ``chain*`` are nan when the sampler-chain golden was not computed. ``golden_error*``: the
    (weighted) mean over the grid of the ideal-chain golden's error estimate (norm, eps units), the error of every
    row of ``ideal`` (``ideal_weighted``) and of ``golden_size`` at that step."""

    methods: tuple[str, ...]
    t: torch.Tensor  # [T] steps 1..T
    abar: torch.Tensor  # [T]
    golden_size: torch.Tensor  # [T] p_t-weighted mean |golden| (ideal chain)
    ideal: torch.Tensor  # unweighted, ideal-chain golden
    ideal_weighted: torch.Tensor  # weighted by p_t(x | y), ideal-chain golden
    chain: torch.Tensor  # unweighted, sampler-chain golden
    chain_weighted: torch.Tensor  # weighted, sampler-chain golden
    golden_error: torch.Tensor  # [T] mean of the ideal-chain golden's error estimate over the grid
    golden_error_weighted: torch.Tensor  # [T] the same, weighted by p_t(x | y)

    def aggregate(self) -> dict:
        """Mean over steps: ``{kind: {method: value}}`` (plain floats, for tables and JSON)."""
        out = {}
        for kind in ("ideal", "ideal_weighted", "chain", "chain_weighted"):
            arr = getattr(self, kind).mean(1)
            out[kind] = {m: float(v) for m, v in zip(self.methods, arr)}
        return out


def guidance_term(guided, cond_denoiser, x_vp: torch.Tensor, abar: float) -> torch.Tensor:
    """The guidance term of a guided denoiser in eps units, ``eps_guided - eps_c = (D_c - D_guided)/sigma``
    (``D = x - sigma eps``), at VP points ``x_vp`` [N, d] of level ``abar``. [N, d]"""
    sigma = abar_to_sigma(float(abar))
    x = x_vp / math.sqrt(abar)
    return ((cond_denoiser(x, sigma) - guided(x, sigma)) / sigma).detach().to(torch.float64)


def field_errors(cond: GaussianMixture, schedule: VPSchedule, axes, guidances: dict, reward, *,
                 sampler_chain: bool = True, progress: bool = False) -> FieldErrors:
    """Field errors of guided denoisers (``{name: guided(x, sigma)}``, e.g. ``sampler.CFG`` or ``REG(...)``
    over ``MixtureModel``) on a uniform grid of ``x_t`` (VP), at every step of ``schedule``, in eps units,
    against the ideal-chain golden of ``reward`` and (``sampler_chain``) the golden of the DDPM chain
    actually run."""
    if not isinstance(schedule, VPSchedule):
        raise ValueError(f"schedule must be a VPSchedule, got {type(schedule).__name__}")
    if not guidances:
        raise ValueError("need at least one guidance to compare")
    axes = check_axes(as_axes(axes), cond.dim, uniform=True)
    X = grid_points(axes)
    steps = tuple(range(1, schedule.T + 1))
    golden, golden_err, weight, fields = [], [], [], {name: [] for name in guidances}
    for t in tqdm(steps, desc="field errors", disable=not progress):
        a = schedule.abar[t].item()
        g = golden_on_grid(cond, reward, axes, a)
        golden.append(g.golden.reshape(-1, cond.dim))  # [N, d]
        golden_err.append(g.golden_error.reshape(-1, cond.dim).norm(dim=1))  # [N]
        weight.append(torch.softmax(cond.noised(a).log_prob(X), 0))  # p_t(x|y) normalised on the grid
        for name, guided in guidances.items():
            fields[name].append(guidance_term(guided, cond.denoise, X, a))
    golden, weight, golden_err = torch.stack(golden), torch.stack(weight), torch.stack(golden_err)  # [T, N, (d)]
    fields = {k: torch.stack(v) for k, v in fields.items()}
    ideal, ideal_w = step_gaps(golden, fields, steps), step_gaps(golden, fields, steps, weight)
    if sampler_chain:
        chain = chain_golden(mixture_eps_fn(cond, schedule), reward.log_r0, schedule, axes, progress=progress)
        g_chain = chain.golden.reshape(schedule.T, -1, cond.dim)
        ch, ch_w = step_gaps(g_chain, fields, steps).gaps, step_gaps(g_chain, fields, steps, weight).gaps
    else:
        ch = ch_w = torch.full_like(ideal.gaps, math.nan)
    t = torch.tensor(steps)
    return FieldErrors(tuple(guidances), t, schedule.abar[t], ideal_w.golden_size, ideal.gaps, ideal_w.gaps, ch, ch_w,
                       golden_err.mean(1), (golden_err * weight).sum(1))  # weight: normalised per step
