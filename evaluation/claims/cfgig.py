"""CFGiG (Moufad, Janati, Durmus, Ghorbel, Moulines, Olsson; arXiv 2505.21101): "Conditional diffusion models
with classifier-free Gibbs-like guidance".

Claims (abstract): CFG does not correspond to a denoising diffusion model; it does not sample the tilted
target ``p(x|c)^w' p(x)^(1-w')`` its low-noise limit points at; the missing component is the gradient of a
Rényi divergence, a repulsive force, that vanishes in the low-noise limit.

Hypothesis (derived, THEORY.md 4): the score of the tilted diffusion is ``grad log p_t^tilt = grad log p_t(x|y)
+ grad log E_t`` (ideal chain), so the missing term is ``grad log E_t - grad log R_t``: in eps units the
toolkit's golden minus CFG. Checked here: (i) that identity, by an independent quadrature of the tilted
marginal, (ii) the missing term's size per noise level (does it vanish as sigma -> 0?), (iii) whether it
opposes the CFG term (repulsive), (iv) how much of it REG's correction captures, over laws where the
conditional is narrower and wider than the unconditional.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import numpy as np
import torch

from analytic import GuidanceFields, guidance_fields_on_grid
from analytic.quadrature import grid_points

from ..accuracy import Estimate
from ..spec import Law, Method, Schedule
from ..sweep import cell_kind
from .cells import axes_of
from .ledger import Claim, Outcome
from .reg_map import single

__all__ = ["CLAIM", "RenyiCell", "RenyiTerm", "cells", "conclude", "FieldLevel", "field_levels", "contract_sigma",
           "coarse_nodes", "weighted_mean", "signed_1d"]


@dataclass(frozen=True)
class RenyiCell:
    law: str
    schedule: str = "lin:20:0.0001"
    w: float = 1.0
    grid: tuple[float, float, int] = (-1.0, 2.0, 121)
    levels: int = 20


class RenyiTerm(NamedTuple):
    sigma: np.ndarray  # [L] levels, noisiest last
    missing: np.ndarray  # [L] p_t-weighted mean |golden - CFG| (eps units)
    reg_gap: np.ndarray  # [L] p_t-weighted mean |golden - REG(paper)|
    cfg_size: np.ndarray  # [L] p_t-weighted mean |CFG term|
    opposes: np.ndarray  # [L] p_t-weighted fraction where (golden - CFG) . CFG < 0
    identity_error: float  # 1-D: max |grad log p_t^tilt (quadrature, finite differences) - (score_c + grad log E_t)|
    # estimated errors of the numbers above (:func:`weighted_mean`: the grid's spacing and the golden's own error)
    missing_error: np.ndarray = np.zeros(0)  # [L]
    reg_gap_error: np.ndarray = np.zeros(0)  # [L]
    cfg_size_error: np.ndarray = np.zeros(0)  # [L]
    opposes_error: np.ndarray = np.zeros(0)  # [L]
    identity_error_error: float = math.nan  # the check's numerical error (:func:`_identity_error`)


# --- the per-level set-up of the field claims (cfgig, characteristic, linear-cfg) -----------------------------
def contract_sigma(a: float) -> float:
    """The contract's noise level ``sigma = sqrt((1 - abar) / abar)`` of VP level ``abar``."""
    return math.sqrt((1 - a) / a)


def coarse_nodes(axes) -> torch.Tensor:
    """[N] bool over :func:`grid_points` of ``axes`` ('ij' order): the nodes of every other index on each axis,
    the grid at twice the spacing (the same extent for odd node counts)."""
    keep = [torch.arange(a.numel()) % 2 == 0 for a in axes]
    return torch.cartesian_prod(*keep).all(1) if len(keep) > 1 else keep[0]


def _kink_overcount(w: torch.Tensor, g: torch.Tensor) -> float:
    """The sum ``sum_i w_i |g_i|`` over consecutive 1-D nodes less the integral of ``w |g|`` with ``|g|``'s kinks
    resolved: between nodes where ``g`` [N] changes sign, ``g`` linear crosses zero and the sum's two half-weights
    ``w (|a| + |b|) / 2`` exceed the integral ``w (a^2 + b^2) / (2 (|a| + |b|))`` by ``w |a| |b| / (|a| + |b|)``
    (``h^2 theta (1 - theta) |g'| w`` for a crossing at ``theta`` of the interval: the trapezoid's error at a kink,
    always an over-count). ``w`` [N]: the nodes' normalised weights."""
    a, b = g[:-1], g[1:]
    cross = a * b < 0
    w_mid = (w[:-1] + w[1:]) / 2
    over = torch.where(cross, a.abs() * b.abs() / torch.where(cross, a.abs() + b.abs(), 1.0), 0.0)
    return (torch.where(cross, w_mid * over, 0.0)).sum().item()


def weighted_mean(log_p: torch.Tensor, f: torch.Tensor, coarse: torch.Tensor, extra: float = 0.0,
                  signed: torch.Tensor | None = None) -> Estimate:
    """``sum_i p_i f_i`` with ``p = softmax(log_p)`` over the grid's nodes (a quadrature of the ``p``-weighted mean
    of ``f`` over the grid's extent), with its error: twice the change when only the ``coarse`` nodes (twice the
    spacing, :func:`coarse_nodes`) are used (the sum weighs the edge nodes whole, so its error is first order where
    ``p`` does not vanish at the edges and second order inside, and the two may cancel in the change: the factor 2
    covers the mix) plus ``extra`` (the error of ``f`` itself, in the same units). ``log_p``, ``f``: [N]. No finite
    weight: ``nan`` (no mean); none on the coarse nodes: an infinite error (no estimate).

    ``signed`` [N] (1-D grids, nodes in order): a field with ``f = |signed|``. Where it changes sign ``f`` has a kink
    that the sum over-counts (:func:`_kink_overcount`, ``O(h^2)`` at each kink with a coefficient that depends on
    where the kink falls between the nodes, so the change to the coarse nodes need not bound it), and the edges'
    first- and second-order errors (``h`` and ``h^2`` terms, where ``p`` does not vanish there) may cancel in the
    change. Then the error is taken apart: the sum's difference to the trapezoid rule's (the edge nodes halved: the
    first-order part, known), plus twice the trapezoid's change to the coarse nodes with the kinks' over-counts
    taken out of both (its smooth, second-order part), plus twice its kink over-count (exact for a linear
    crossing; the 2 covers the field's curvature within the crossing interval)."""
    if not bool(torch.isfinite(log_p).any()):  # no weight on the grid (e.g. no converged point): no mean
        return Estimate(math.nan, math.nan)
    p = torch.softmax(log_p, 0)
    v = (p * f).sum().item()
    if not bool(torch.isfinite(log_p[coarse]).any()):  # the weight lies off the coarse nodes: no estimate
        return Estimate(v, math.inf)
    v2 = (torch.softmax(log_p[coarse], 0) * f[coarse]).sum().item()
    if signed is None:
        return Estimate(v, 2 * abs(v - v2) + extra)
    if signed.shape != f.shape or not torch.allclose(signed.abs(), f, rtol=1e-12, atol=1e-150):
        raise ValueError(f"weighted_mean: signed must be a field with f = |signed| (shapes {tuple(signed.shape)}, "
                         f"{tuple(f.shape)})")

    def trapezoid(lp, g):  # (mean, kink over-count) by the trapezoid rule on consecutive nodes
        half = torch.zeros_like(lp)
        half[0] = half[-1] = -math.log(2)
        w = torch.softmax(lp + half, 0)
        return (w * g.abs()).sum().item(), _kink_overcount(w, g)

    (t, k), (t2, k2) = trapezoid(log_p, signed), trapezoid(log_p[coarse], signed[coarse])
    return Estimate(v, abs(v - t) + 2 * abs((t - k) - (t2 - k2)) + 2 * k + extra)


def signed_1d(field: torch.Tensor) -> torch.Tensor | None:
    """[N] the single component of a field [N, 1] on a 1-D grid (its norm is ``|component|``: kinks where it
    changes sign, :func:`weighted_mean`'s ``signed``); ``None`` for [N, d > 1] fields, whose norm vanishes only at
    isolated points in 2-D (cones, not kinks across a line: the trapezoid's error there is ``O(h^3)``)."""
    return field[:, 0] if field.shape[1] == 1 else None


class FieldLevel(NamedTuple):
    """One level of a field claim's cell: the guidance fields on its grid and ``p_t(x|c)`` there."""

    sigma: float  # contract level
    abar: float
    fields: GuidanceFields  # golden (with golden_error), CFG (present), REG's corrections on the grid's points
    log_p: torch.Tensor  # [N] log p_t(x|c) at the grid's points


def field_levels(law, schedule: str, levels: int, w: float, axes) -> Iterator[FieldLevel]:
    """The levels of ``schedule`` respaced to ``levels`` (noisiest last), each with the guidance fields of CFG's
    reward at weight ``w`` on the grid ``axes`` (:func:`analytic.guidance_fields_on_grid`): the set-up cfgig and
    characteristic share. ``law``: a built :class:`evaluation.spec.Law`."""
    full = Schedule.parse(schedule).vp
    sched = full.respace(min(levels, full.T))
    reward = Method("cfg", w).reward(law)
    X = grid_points(axes)
    for t in range(1, sched.T + 1):
        a = sched.abar[t].item()
        yield FieldLevel(contract_sigma(a), a, guidance_fields_on_grid(law.cond, reward, axes, a),
                         law.cond.noised(a).log_prob(X))


def _identity_check(law, reward, a: float, nodes: int = 16001, h: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """grad log of the tilted marginal by direct quadrature (``nodes`` on [-8, 8]) and central differences (step
    ``h``), minus score_c + grad log E_t, at 41 points of [-0.5, 1.5]; with a bound on the check's own numerical
    error at each point besides the differences' truncation (which :func:`_identity_error` takes from a second
    step): the golden's error estimate, and the rounding of the differences, ``(delta(x + h) + delta(x - h)) /
    (2 h)`` with ``delta = 4 eps (sum_i s_i (|k_i| + |log f_i|) + |log tilt| + log nodes)`` the rounding of each
    log-sum-exp (``s``: its softmax weights; the terms ``k_i + log f_i`` are each rounded to a few ulps of their
    size). Returns (difference [41], its error bound [41])."""
    from analytic import golden_at_points

    eps = float(torch.finfo(torch.float64).eps)
    x0 = torch.linspace(-8, 8, nodes, dtype=torch.float64)[:, None]
    log_f = law.cond.log_prob(x0) + reward.log_r0(x0)
    x = torch.linspace(-0.5, 1.5, 41, dtype=torch.float64)

    def log_tilt(y):
        k = -((y[:, None] - math.sqrt(a) * x0[None, :, 0]) ** 2) / (2 * (1 - a))
        t = k + log_f[None]
        v = torch.logsumexp(t, 1)
        size = (torch.softmax(t, 1) * (k.abs() + log_f.abs()[None])).sum(1)
        return v, 4 * eps * (size + v.abs() + math.log(nodes))

    (up, d_up), (down, d_down) = log_tilt(x + h), log_tilt(x - h)
    fd = (up - down) / (2 * h)
    pts = golden_at_points(law.cond, reward, x[:, None], a)
    other = law.cond.score(x[:, None], a)[:, 0] + pts.grad_log_E[:, 0]
    return fd - other, (d_up + d_down) / (2 * h) + pts.err_grad[:, 0].abs()


def _identity_error(law, reward, a: float) -> tuple[float, float]:
    """The identity check (:func:`_identity_check`): the max over its points of ``|difference|``, and that max's
    error: the max over the points of the difference's change with twice the step and half the quadrature nodes
    (the central differences' truncation, ``O(h^2)``, and the quadrature's) plus the rounding and golden bound. The
    identity is exact (THEORY.md 4), so the value is the check's numerical error and should lie within it."""
    diff, bound = _identity_check(law, reward, a)
    diff2, bound2 = _identity_check(law, reward, a, nodes=8001, h=2e-4)
    return diff.abs().max().item(), ((diff - diff2).abs() + torch.maximum(bound, bound2)).max().item()


@cell_kind(RenyiCell)
def renyi_term(cell: RenyiCell) -> RenyiTerm:
    law = Law.parse(cell.law).build()
    axes = axes_of(cell.grid, law.cond.dim)
    coarse = coarse_nodes(axes)
    rows = []
    for lv in field_levels(law, cell.schedule, cell.levels, cell.w, axes):
        f = lv.fields
        miss = f.golden - f.present
        ge = f.golden_error.norm(dim=1)  # [N] the golden's estimated error at each point
        golden_err = (torch.softmax(lv.log_p, 0) * ge).sum().item()
        # points where the golden's error could flip the sign of (golden - CFG) . CFG
        unsure = ((miss * f.present).sum(1).abs() <= ge * f.present.norm(dim=1)).to(torch.float64)
        unsure = (torch.softmax(lv.log_p, 0) * unsure).sum().item()
        reg = f.golden - f.reg_paper
        nums = (weighted_mean(lv.log_p, miss.norm(dim=1), coarse, golden_err, signed_1d(miss)),
                weighted_mean(lv.log_p, reg.norm(dim=1), coarse, golden_err, signed_1d(reg)),
                weighted_mean(lv.log_p, f.present.norm(dim=1), coarse, signed=signed_1d(f.present)),
                weighted_mean(lv.log_p, ((miss * f.present).sum(1) < 0).to(torch.float64), coarse, unsure))
        rows.append((lv.sigma,) + tuple(e.value for e in nums) + tuple(e.error for e in nums))
    r = np.array(rows)
    if law.cond.dim == 1:
        reward = Method("cfg", cell.w).reward(law)
        ident, ident_err = _identity_error(law, reward, 0.5)
    else:
        ident, ident_err = math.nan, math.nan
    return RenyiTerm(r[:, 0], r[:, 1], r[:, 2], r[:, 3], r[:, 4], ident, r[:, 5], r[:, 6], r[:, 7], r[:, 8], ident_err)


def _laws(quick: bool) -> tuple:
    if quick:
        return (("paper_1d", 1.0), (single(0.5), 1.0), (single(1.5), 0.5))
    return (("paper_1d", 1.0), ("paper_1d", 3.0), ("paper_1d_script", 1.0), (single(0.25), 1.0), (single(0.5), 1.0),
            (single(1.5), 0.5), ("correlated_2d", 1.0), ("classes_2d", 1.0))


def _cell(law: str, w: float) -> RenyiCell:
    dim = Law.parse(law).dim
    if dim == 1:
        return RenyiCell(law, w=w)
    # 2-D goldens at abar_T = 1e-4 would need too large a quadrature grid: a schedule reaching 0.007, from
    # the same smallest level (beta_1 = 1e-4, sigma_min = 0.01)
    return RenyiCell(law, "lin:20:0.007", w, (-1.0, 2.0, 25), 10)


def cells(quick: bool) -> list:
    return [_cell(law, w) for law, w in _laws(quick)]


class Renyi(NamedTuple):
    labels: tuple[str, ...]
    terms: tuple[RenyiTerm, ...]


def conclude(quick: bool, results) -> Outcome:
    laws = _laws(quick)
    labels = tuple(f"{law} w={w:g}" for law, w in laws)
    data = Renyi(labels, tuple(results))
    numbers = []
    vanish, repulsive, captured = [], [], []
    for lab, r in zip(labels, results):
        rel_low = r.missing[0] / max(r.missing.max(), 1e-300)
        top = int(np.argmax(r.missing))
        e_rel = rel_low * (r.missing_error[0] / r.missing[0] + r.missing_error[top] / r.missing[top])  # first order
        opp = float(np.average(r.opposes, weights=r.missing))
        e_opp = float(np.sum(r.opposes_error * r.missing + np.abs(r.opposes - opp) * r.missing_error) / r.missing.sum())
        cap = 1 - r.reg_gap.sum() / r.missing.sum()
        e_cap = float((r.reg_gap_error.sum() + (1 - cap) * r.missing_error.sum()) / r.missing.sum())
        vanish.append(rel_low < 0.05)
        repulsive.append(opp > 0.5)
        captured.append(cap)
        # the max of the levels' numbers: its error is the max of theirs
        numbers += [(f"{lab}: missing term at sigma_min / its max", rel_low, e_rel),
                    (f"{lab}: max missing term", r.missing.max(), r.missing_error.max()),
                    (f"{lab}: fraction opposing CFG (weighted by size)", opp, e_opp),
                    (f"{lab}: share REG captures", cap, e_cap)]
        if not math.isnan(r.identity_error):
            numbers.append((f"{lab}: identity check, max |difference|", r.identity_error, r.identity_error_error))
    ident = max(r.identity_error for r in results if not math.isnan(r.identity_error))
    # printed as the bound its error supports (the check's value is below its own error)
    ident_bound = max(r.identity_error + r.identity_error_error for r in results if not math.isnan(r.identity_error))
    narrow = [lab for lab, rep in zip(labels, repulsive) if rep]
    wide = [lab for lab, rep in zip(labels, repulsive) if not rep]
    key = (f"missing term = golden - CFG (identity to {ident_bound:.1e}); at sigma_min it is "
           f"{max(x[1] for x in numbers if 'sigma_min' in x[0]):.3f} of its peak at most; repulsive in "
           f"{len(narrow)}/{len(labels)} laws; REG captures {np.median(captured):.0%} of it (median)")
    if all(vanish) and all(repulsive) and ident < 1e-4:
        verdict = "holds"
    elif all(vanish) and ident < 1e-4:
        verdict = (f"holds only when the conditional is narrower than the reference (repulsive for {narrow}); where it "
                   f"is wider the missing term pushes along CFG ({wide}); it vanishes as sigma -> 0 in every law")
    else:
        verdict = "fails"
    return Outcome(CLAIM.result(verdict, key, numbers), data)


CLAIM = Claim(
    id="cfgig", source="2505.21101", title="CFG's missing term is a repulsive Rényi gradient that vanishes at low noise",
    statement=("CFG does not correspond to a denoising diffusion model and does not sample its low-noise tilted "
               "target; the missing component is a Rényi-divergence gradient, a repulsive force, that vanishes in the "
               "low-noise limit (abstract). Hypothesis tested: that term is grad log E_t - grad log R_t."),
    provenance="abstract",
    experiment=("Ideal-chain golden, CFG and REG fields on grids at 20 levels (10 in 2-D) of a schedule to "
                "abar_T = 1e-4; laws paper_1d (w = 1, 3), paper_1d_script, single Gaussians r = 0.25, 0.5 (narrower) "
                "and 1.5 (wider, w = 0.5), correlated_2d, classes_2d; identity checked against a direct quadrature of "
                "the tilted marginal's score at abar = 0.5."),
    figure="claims_cfgig", cells=cells, conclude=conclude)
