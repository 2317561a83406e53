"""Linear CFG (Li, Wang & Qu, arXiv 2505.19210): "Towards understanding the mechanisms of classifier-free
guidance".

Claim (abstract): CFG computed on the moment-matched Gaussians of the conditional and unconditional laws (a mean
shift plus positive and negative principal-component terms: linear in x) matches the mixture's CFG over a broad
range of noise levels and parts from it at low noise.

Experiment: for each preset, the CFG direction ``eps_c - eps_u`` (CFG's term is ``w`` times it, so the relative
difference does not depend on ``w``) of the mixtures against that of their moment-matched Gaussians (same mean and
covariance; closed forms), p_t(x|c)-weighted on a grid covering the noised conditional (mean +- 6 standard
deviations of its moment-matched Gaussian per axis), at every level of the 1000-step DDPM schedule respaced to
``levels``: the relative difference ``E|g_mix - g_lin| / E|g_mix|``, the sigma where it first exceeds 10 % coming
down from high noise, and the share of the schedule's levels where it stays within 10 %.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from analytic import GaussianMixture
from analytic.quadrature import grid_points

from ..spec import Law, Schedule
from ..sweep import cell_kind
from .cfgig import coarse_nodes, contract_sigma, weighted_mean
from .ledger import Claim, Outcome

__all__ = ["CLAIM", "LinearCell", "LinearGap", "LinearCFG", "cells", "conclude", "moment_matched", "PART"]

PART = 0.1  # "part": the relative difference exceeds 10 %
F64 = torch.float64


def moment_matched(m: GaussianMixture) -> GaussianMixture:
    """The single Gaussian with the mixture's mean and covariance (law of total covariance)."""
    w = m.weights.to(F64)
    mu = (w[:, None] * m.means).sum(0)
    c = m.means - mu
    cov = (w[:, None, None] * (m.covs + c[:, :, None] * c[:, None, :])).sum(0)
    return GaussianMixture([1.0], mu[None].tolist(), cov[None].tolist())


@dataclass(frozen=True)
class LinearCell:
    law: str
    schedule: str = "standard:1000"
    points: int = 401  # grid points per axis


class LinearGap(NamedTuple):
    sigma: np.ndarray  # [L] contract levels, noisiest last
    rel: np.ndarray  # [L] p_t(x|c)-weighted E|g_mix - g_lin| / E|g_mix|, g = eps_c - eps_u
    size: np.ndarray  # [L] p_t-weighted E|g_mix|
    tail_mass: float  # max over levels of the moment-matched p_t mass outside the grid (bounds the truncation)
    # estimated errors (:func:`evaluation.claims.cfgig.weighted_mean`, the change at twice the spacing; a ratio's
    # to first order; the tail mass's: :func:`box_tail`'s, the max over the levels)
    rel_error: np.ndarray = np.zeros(0)  # [L]
    size_error: np.ndarray = np.zeros(0)  # [L]
    tail_mass_error: float = math.nan


def _trapezoid_log_weights(axes) -> torch.Tensor:
    """[N] log of the product trapezoid rule's weights over :func:`grid_points` of ``axes`` ('ij' order): each
    axis's spacing, halved at its two end nodes."""
    logs = []
    for ax in axes:
        w = torch.full_like(ax, (ax[1] - ax[0]).item())
        w[0] = w[-1] = w[0] / 2
        logs.append(w.log())
    return torch.cartesian_prod(*logs).sum(1) if len(logs) > 1 else logs[0]


def box_tail(log_p: torch.Tensor, axes, coarse: torch.Tensor) -> tuple[float, float]:
    """``1 - P(box)`` of the density ``exp(log_p)`` [N] given at :func:`grid_points` of ``axes`` (the box is their
    extent), by the product trapezoid rule, with its error: the change on the ``coarse`` nodes (twice the spacing,
    the trapezoid rule again) plus the sums' rounding (``N`` terms of at most the sum, ``(N + 8) eps`` of it: ``1 -
    sum`` cancels down to ~1e-9 here). A sum with every node weighed whole (as :func:`weighted_mean`'s) counts half a
    spacing beyond each face of the box, ``h p(face) / 2`` per face: first order, ~10 % of a 6-sd tail on 401
    nodes and ~50 % on 61, and its change to the coarse nodes is about as large (no margin), so it did not bound
    it."""
    eps = float(torch.finfo(torch.float64).eps)
    n = log_p.numel()
    inside = torch.exp(log_p + _trapezoid_log_weights(axes)).sum().item()
    c_axes = tuple(ax[::2] for ax in axes)
    inside2 = torch.exp(log_p[coarse] + _trapezoid_log_weights(c_axes)).sum().item()
    t, t2 = 1 - min(1.0, inside), 1 - min(1.0, inside2)
    return t, abs(t - t2) + (n + 8) * eps * max(inside, inside2)


@cell_kind(LinearCell)
def linear_gap(cell: LinearCell) -> LinearGap:
    law = Law.parse(cell.law).build()
    lc, lu = moment_matched(law.cond), moment_matched(law.uncond)
    sched = Schedule.parse(cell.schedule).vp
    d = law.dim
    rows, tail, tail_err = [], 0.0, 0.0
    for t in range(1, sched.T + 1):
        a = sched.abar[t].item()
        mean = math.sqrt(a) * lc.means[0]
        sd = torch.sqrt(a * torch.diagonal(lc.covs[0]) + 1 - a)
        axes = tuple(torch.linspace((mean[i] - 6 * sd[i]).item(), (mean[i] + 6 * sd[i]).item(), cell.points, dtype=F64)
                     for i in range(d))
        X = grid_points(axes)
        coarse = coarse_nodes(axes)
        log_p = law.cond.noised(a).log_prob(X)
        t_here, t_err = box_tail(log_p, axes, coarse)
        tail, tail_err = max(tail, t_here), max(tail_err, t_err)  # a max's error: the max of its terms' errors
        g = law.cond.eps(X, a) - law.uncond.eps(X, a)
        g_lin = lc.eps(X, a) - lu.eps(X, a)
        size = weighted_mean(log_p, g.norm(dim=1), coarse)
        gap = weighted_mean(log_p, (g - g_lin).norm(dim=1), coarse)
        rel = gap.value / max(size.value, 1e-300)
        rows.append((contract_sigma(a), rel, size.value, rel * (gap.error / max(gap.value, 1e-300)
                                                                 + size.error / max(size.value, 1e-300)), size.error))
    r = np.array(rows)
    return LinearGap(r[:, 0], r[:, 1], r[:, 2], tail, r[:, 3], r[:, 4], tail_err)


def _laws(quick: bool) -> tuple[str, ...]:
    return ("paper_1d", "paper_1d_script") if quick else ("paper_1d", "paper_1d_script", "correlated_2d", "classes_2d")


def _cell(law: str, quick: bool) -> LinearCell:
    d = Law.parse(law).dim
    return LinearCell(law, "standard:50" if quick else ("standard:1000" if d == 1 else "standard:200"),
                      401 if d == 1 else 61)


def cells(quick: bool) -> list:
    return [_cell(law, quick) for law in _laws(quick)]


def parting_sigma(g: LinearGap) -> float:
    """The sigma of the first level, coming down from the noisiest, where the relative difference exceeds
    :data:`PART` (nan if it never does)."""
    for s, r in zip(g.sigma[::-1], g.rel[::-1]):
        if r > PART:
            return float(s)
    return math.nan


def agreeing_share(g: LinearGap) -> float:
    """The share of the schedule's levels where the relative difference is at most :data:`PART`."""
    return float(np.mean(g.rel <= PART))


class LinearCFG(NamedTuple):
    laws: tuple[str, ...]
    gaps: tuple[LinearGap, ...]


def conclude(quick: bool, results) -> Outcome:
    laws = _laws(quick)
    data = LinearCFG(laws, tuple(results))
    numbers = []
    parts, shares, monotone = [], [], []
    for law, g in zip(laws, results):
        s_part, share = parting_sigma(g), agreeing_share(g)
        above = g.sigma > s_part if math.isfinite(s_part) else np.ones_like(g.sigma, bool)
        clean = bool(np.all(g.rel[above] <= PART))  # agrees at every level above the parting sigma
        parts.append(s_part)
        shares.append(share)
        # agrees at the noisiest level and every level above the parting one, and parts at the lowest level
        monotone.append(clean and g.rel[-1] <= PART and g.rel[0] > PART)
        # the parting sigma is a level of the schedule and the share a share of its levels: settings, no error
        numbers += [(f"{law}: parting sigma (relative difference > 10 %)", s_part),
                    (f"{law}: share of levels within 10 %", share),
                    (f"{law}: relative difference at the noisiest level", float(g.rel[-1]), float(g.rel_error[-1])),
                    (f"{law}: relative difference at the lowest level", float(g.rel[0]), float(g.rel_error[0])),
                    (f"{law}: grid tail mass (max)", g.tail_mass, g.tail_mass_error)]
    key = (f"linear CFG within 10 % of the mixture's CFG on {min(shares):.0%}-{max(shares):.0%} of the DDPM "
           f"schedule's levels; they part at sigma = {min(parts):.2g}-{max(parts):.2g} (data scale ~ 1) and differ by "
           f"{min(float(g.rel[0]) for g in results):.0%}-{max(float(g.rel[0]) for g in results):.0%} at sigma_min")
    numbers += [("min share of levels within 10 %", min(shares)), ("max parting sigma", max(parts)),
                ("min parting sigma", min(parts))]
    if all(monotone) and min(shares) >= 0.5:
        verdict = (f"holds only when sigma > {max(parts):.2g} (the parting level on these presets, above it on "
                   f"{min(shares):.0%} or more of the DDPM schedule's levels); below it the mixture's CFG departs "
                   f"from the linear one, by {min(float(g.rel[0]) for g in results):.0%} or more at sigma_min")
    elif all(monotone):
        verdict = (f"holds only when sigma > {max(parts):.2g}, which is a minority of the schedule's levels on some "
                   f"presets (share within 10 %: {min(shares):.0%}): the range is not broad")
    else:
        verdict = "fails"
    return Outcome(CLAIM.result(verdict, key, numbers), data)


CLAIM = Claim(
    id="linear-cfg", source="2505.19210", title="Linear CFG is CFG over most noise levels",
    statement=("CFG computed on the moment-matched Gaussians (mean shift plus positive and negative principal "
               "components) matches the mixture's CFG over a broad range of noise levels and parts from it at low "
               "noise (abstract)."),
    provenance="abstract",
    experiment=("eps_c - eps_u of each preset (paper_1d, paper_1d_script, correlated_2d, classes_2d) against that of "
                "its moment-matched Gaussians, p_t(x|c)-weighted on a +-6 sd grid, at every level of the DDPM "
                "1000-step schedule (2-D: respaced to 200; quick: 1-D presets, 50 levels); relative difference, the "
                "sigma where it first exceeds 10 % from high noise, share of levels within 10 %."),
    figure="claims_linear_cfg", cells=cells, conclude=conclude)
