"""DPS and its variance-corrected successors against the exact posterior, per noise level (issue 23, item 2).

A linear-Gaussian measurement ``y = A x_0 + s n`` of a Gaussian-mixture prior has the exact posterior
``p(x_0 | y)`` (:meth:`analytic.MeasurementReward.posterior`) and the exact optimal guidance, the score of
``E_t = E[R_0 | x_t]`` with ``R_0(x_0) = N(y; A x_0, s^2 I)`` (:func:`analytic.optimal_guidance`, closed form). At
each noise level of a schedule, over ``n`` draws of the exact guided marginal (the posterior noised to that level):

- DPS's bias ``E[log E_t - log R_0(x0_hat(x_t))]`` and the RMS of its guidance term minus the exact one, eps units
  (:func:`analytic.dps_bias`, whose errors are the Monte Carlo standard error plus the exact route's);
- the same RMS field error for the guidance rules of :mod:`sampler.dps` run on the prior's exact denoiser: DPS
  (``step="likelihood"``), TMPD (:class:`sampler.MomentMatched`, ``cov="tweedie"``) and PiGDM
  (``MomentMatched`` with :func:`sampler.dps.pigdm_variance`), each with its standard error;
- the RMS of the exact term itself (the scale).

Settings: ``paper_1d``'s conditional prior observed directly (``A = [[1]]``), and ``correlated_2d``'s conditional
observed through its first coordinate (``A = [[1, 0]]``: a projection of a 2-D law to 1-D).

``python -m evaluation.inverse [--quick] [--out DIR] [--update-docs]`` (the entry point,
:mod:`evaluation.inverse.__main__`) writes ``inverse.json`` (the format of
:func:`evaluation.docs.render_inverse`) and ``dps_bias.png`` (``figures.dps_bias``) to ``--out``; ``--update-docs``
copies a full run's JSON to ``docs/data/inverse.json`` (regenerating the block of ``docs/inverse.md``) and the
figure to ``docs/img/dps_bias.png``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from analytic import MeasurementReward, dps_bias, optimal_guidance
from sampler import DPS, MomentMatched
from sampler.dps import pigdm_variance

from ..spec import Law, Schedule
from ..sweep import cell_kind, run_cells

__all__ = ["InverseCell", "InverseBias", "SETTINGS", "RULES", "cells", "compute", "to_results"]

F64 = torch.float64
RULES = ("DPS", "TMPD", "PiGDM")
# name -> (law whose conditional is the prior, A, y, s)
SETTINGS = {"paper_1d, A = [[1]]": ("paper_1d", ((1.0,),), (0.5,), 0.2),
            "correlated_2d, A = [[1, 0]]": ("correlated_2d", ((1.0, 0.0),), (0.5,), 0.2)}


@dataclass(frozen=True)
class InverseCell:
    """DPS's bias and the rules' field errors (module docstring) for the prior ``law``'s conditional under
    ``y = A x_0 + s n``, at the levels of ``schedule`` (respaced to ``levels``), ``n`` draws per level."""

    law: str
    A: tuple[tuple[float, ...], ...]
    y: tuple[float, ...]
    s: float
    schedule: str = "standard:1000"
    levels: int = 12
    n: int = 512
    seed: int = 0

    def __post_init__(self):
        Law.parse(self.law), Schedule.parse(self.schedule)
        if not (isinstance(self.s, (int, float)) and math.isfinite(self.s) and self.s > 0):
            raise ValueError(f"s must be a finite number > 0, got {self.s!r}")
        if isinstance(self.n, bool) or int(self.n) != self.n or self.n < 2:
            raise ValueError(f"n must be an integer >= 2, got {self.n!r}")
        if isinstance(self.levels, bool) or int(self.levels) != self.levels or self.levels < 1:
            raise ValueError(f"levels must be a positive integer, got {self.levels!r}")


class InverseBias(NamedTuple):
    sigma: np.ndarray  # [L] contract levels, noisiest last
    abar: np.ndarray  # [L]
    log_gap: np.ndarray  # [L] DPS's E[log E_t - log R_0(x0_hat)]
    log_gap_error: np.ndarray  # [L]
    field: np.ndarray  # [R, L] RMS |rule term - exact term| (eps units), rules in RULES order
    field_error: np.ndarray  # [R, L]
    exact: np.ndarray  # [L] RMS |exact term|
    dps_check: float  # max |DPS rule's term - dps_gap's DPS term| over draws and levels (two routes, one rule)


def _rms(v: torch.Tensor) -> tuple[float, float]:
    """RMS of the rows' norms with its first-order Monte Carlo standard error."""
    sq = (v**2).sum(-1)
    rms = sq.mean().sqrt().item()
    return rms, (sq.std() / math.sqrt(sq.numel())).item() / (2 * max(rms, 1e-300))


@cell_kind(InverseCell)
def inverse_bias(cell: InverseCell) -> InverseBias:
    prior = Law.parse(cell.law).build().cond
    A = torch.tensor(cell.A, dtype=F64)
    y = torch.tensor(cell.y, dtype=F64)
    reward = MeasurementReward(A, y, cell.s)
    sched = Schedule.parse(cell.schedule).vp
    sub = sched.respace(min(cell.levels, sched.T))
    abars = sub.abar[1:].clone()  # noisiest last
    gen = torch.Generator().manual_seed(cell.seed)
    bias = dps_bias(prior, reward, abars, n=cell.n, generator=gen)
    rules = {"DPS": DPS(prior.denoise, lambda x0: x0 @ A.T, y, cell.s),
             "TMPD": MomentMatched(prior.denoise, A, y, cell.s, cov="tweedie"),
             "PiGDM": MomentMatched(prior.denoise, A, y, cell.s, cov=pigdm_variance)}
    post = reward.posterior(prior)
    field, field_err, exact, check = [], [], [], 0.0
    for a in abars.tolist():
        s = math.sqrt((1 - a) / a)
        x_t = post.noised(a).sample(cell.n, gen)
        x = x_t / math.sqrt(a)
        og = optimal_guidance(prior, reward, x_t, a)
        t_exact = -math.sqrt(1 - a) * og.grad_log_E  # [N, d] the optimum's eps term
        d_c = prior.denoise(x, s)
        row, row_e = [], []
        for name in RULES:
            term = -(rules[name](x, s) - d_c) / s
            if name == "DPS":  # the same rule by analytic.dps_gap's autograd route
                x_g = x_t.clone().requires_grad_(True)
                with torch.enable_grad():
                    lr = reward.log_r0(prior.posterior(x_g, a).mean())
                    (g,) = torch.autograd.grad(lr.sum(), x_g)
                check = max(check, (term - (-math.sqrt(1 - a) * g)).abs().max().item())
            v, e = _rms(term - t_exact)
            row.append(v)
            row_e.append(e + math.sqrt(1 - a) * og.err_grad.norm(dim=-1).mean().item())
        field.append(row)
        field_err.append(row_e)
        exact.append(_rms(t_exact)[0])
    ab = abars.numpy()
    return InverseBias(np.sqrt((1 - ab) / ab), ab, bias.mean_gap.numpy(), bias.err_mean_gap.numpy(),
                       np.array(field).T, np.array(field_err).T, np.array(exact), check)


def cells(quick: bool = False) -> list[InverseCell]:
    levels, n = (6, 128) if quick else (12, 1024)
    return [InverseCell(law, A, y, s, levels=levels, n=n) for law, A, y, s in SETTINGS.values()]


def compute(quick: bool = False, *, cache=None, workers: int = 1, progress: bool = False) -> tuple[InverseBias, ...]:
    return tuple(run_cells(cells(quick), cache=cache, workers=workers, progress=progress, desc="inverse").results)


def to_results(results, quick: bool) -> dict:
    """The JSON of :func:`evaluation.docs.render_inverse`: per setting, per level, each number with its error."""
    figures = {}
    for (name, (law, A, y, s)), r in zip(SETTINGS.items(), results):
        numbers = {}
        for k in range(len(r.sigma) - 1, -1, -1):  # noisiest first
            row = {"DPS log-gap": {"value": float(r.log_gap[k]), "error": float(r.log_gap_error[k])}}
            for i, rule in enumerate(RULES):
                row[f"{rule} field error"] = {"value": float(r.field[i, k]), "error": float(r.field_error[i, k])}
            row["exact term"] = float(r.exact[k])
            numbers[f"sigma={r.sigma[k]:.3g}"] = row
        figures[name] = {"caption": (f"prior: the conditional of {law}; y = {list(y)}, s = {s:g}; per level of the "
                                     f"1000-step DDPM schedule respaced to {len(r.sigma)}, {cells(quick)[0].n} "
                                     f"draws of "
                                     f"the noised posterior: DPS's mean log-gap (nats) and each rule's RMS field "
                                     f"error against the exact optimum (eps units)"),
                         "numbers": numbers}
    return {"quick": quick, "figures": figures}
