"""The differential entropy (and expectations) of a deterministic sampler's 1-D output law, from its map alone.

A deterministic sampler (DDIM with ``eta = 0``, Euler, Heun) started from ``u ~ N(0, 1)`` (the VP prior) outputs
``Y = Phi(u)``. Cut the start's span into sub-cells ``[a, b]`` and spread each sub-cell's mass ``m`` uniformly over
the segment between ``Phi(a)`` and ``Phi(b)`` (the segment law of :mod:`evaluation.density`'s deterministic tail):
that law converges to ``Y``'s at second order in the sub-spacing where ``Phi`` is smooth, and its differential
entropy is exact in closed form: ``sum m log(L / m)`` over the sub-cells (``L`` the segment's length) when ``Phi``
is monotone, else ``-sum q log(q) dx`` over the pieces of the union of the segments, ``q`` the summed densities of
the segments covering a piece (a folding map, whose output density has an integrable ``1 / sqrt`` edge).

No output grid enters. The entropy of hat masses on a grid converges slowly where the output is concentrated
(issue 23, ``wu-gmm``: rand1d:3 w = 1 DDIM gave 0.5926, 0.6019, 0.6046 with 8, 32, 128 sub-points per cell, still
refused by the accuracy contract at 128), while here the map is sampled where it needs it:

- adaptively: every sub-cell is bisected, and its children are bisected again while the bisection changed the
  sub-cell's own entropy term (or an expectation's term) by more than its share of ``tol`` (half of ``tol`` by
  mass plus half by width) and the sub-cell is wider than ``_FINEST`` of the span (a steep or folding stretch of
  ``Phi``, the input that separates two output modes, is resolved where a uniform sub-spacing would need ``10^6``
  points); the accepted changes are summed;
- with an error estimate: the larger of the accepted changes' sum and the change of the whole number when every
  other edge of the final chain is dropped (pairs of neighbouring sub-cells merged: the change of a halving, an
  upper estimate for a method of order >= 1; it sees the overlaps of a folding map, which the local terms do
  not), plus the start's mass outside the span (weighted by the size of its possible entropy term); when it
  exceeds ``tol``, the whole run is repeated with the shares a quarter, then a sixteenth of ``tol``
  (``_LOCAL_TOLS``) before it is refused.

The images are known to their rounding only: a sub-cell whose two ends map to the same double has an image below
about one ulp (the spacing of doubles there), not necessarily a point. At a fold's turning point that happens by
rounding: the map is flat to within an ulp over ~``sqrt(ulp / curvature)`` of the start (rand1d_iso:4 CFG w = 0.5
DDIM: ends 1.3e-8 apart map to one double, their midpoint one ulp away; ``1 + u^2`` maps every ``|u| < 1e-8`` to
1.0). Such a sub-cell is taken as a segment of one ulp (its term ``m log(ulp / m)``, kept apart from the other
segments), and the size of that term plus its mass, ``m (|log(ulp / m)| + 1)``, is added to the entropy's error (an
estimate: the mass's term on any width near an ulp, and its overlap with the other segments, fall within it). A map
constant on a stretch with mass (an atom: entropy ``-inf``) is refused when these sizes sum to more than ``tol`` (in
a bisection's halves or in the final chain): its mass does not shrink with the sub-cells, a turning point's does.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

from sampler.samplers import check_sigmas, sample
from sampler.schedules import check_count, check_number

__all__ = ["FlowNumbers", "flow_numbers", "DETERMINISTIC", "MAX_FLOW_POINTS"]

F64 = torch.float64
DETERMINISTIC = ("ddim", "euler", "heun")  # samplers whose output is a map of the start (ddim: eta = 0)
MAX_FLOW_POINTS = 2**22  # the most start points whose images a run may compute (the adaptive chain's budget)
_MAX_DEPTH = 40  # bisections of one sub-cell
_LOCAL_TOLS = (1.0, 0.25, 0.0625)  # the bisection's shares, in units of tol, tried in turn (flow_numbers)
_MAX_RUNS = 4096  # monotone runs (branches of the inverse) of a folding map (a flat tail whose images wiggle by
# ~1e-13 from the steps' rounding turns ~600 times on the chain: rand1d:43 CFG w = 4 DDIM, u < -4, mass 3e-5)
_FINEST = 1e-9  # sub-cells narrower than this share of the span are not bisected: the images' rounding (~1e-16 of
# them, amplified by the steps) is then comparable with a segment's length (at a fold of the map the turning sub-cell
# changes its term by ~ m log 2 at every bisection; its mass is negligible by then, and its change is counted)


class FlowNumbers(NamedTuple):
    entropy: float  # differential entropy of the output law (nats; VP coordinates of the last level)
    entropy_error: float
    expectations: tuple[float, ...]  # E f(Y) for each of the caller's functions
    expectation_errors: tuple[float, ...]
    points: int  # start points whose images were computed
    lost: float  # the start's mass outside the span
    monotone: bool  # Phi monotone on the final chain (no fold)


def _ulp(y: torch.Tensor) -> torch.Tensor:
    """The spacing of doubles at ``y``: the finest length an image's rounding resolves."""
    a = y.abs()
    return torch.nextafter(a, torch.full_like(a, math.inf)) - a


def _flat(ya: torch.Tensor, yb: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The sub-cells (ends' images ``ya``, ``yb``, masses ``m`` [J]) with mass whose ends map to one double [J]
    (bool), and each one's term size ``m (|log(ulp / m)| + 1)`` (module docstring; 0 elsewhere) [J]."""
    flat = (ya == yb) & (m > 0)
    mf = torch.where(flat, m, torch.ones_like(m))
    size = torch.where(flat, mf * ((torch.log(_ulp(yb) / mf)).abs() + 1), torch.zeros_like(m))
    return flat, size


def _entropy(y: torch.Tensor, m: torch.Tensor) -> tuple[float, float]:
    """Differential entropy of the segment law: the mass ``m[j]`` uniform between ``y[j]`` and ``y[j + 1]``; a
    sub-cell whose ends map to one double as a segment of one ulp, apart from the others (module docstring); and the
    summed sizes of those sub-cells' terms (an error)."""
    flat, size = _flat(y[:-1], y[1:], m)
    mf = m[flat]
    h_flat = (mf * torch.log(_ulp(y[1:][flat]) / mf)).sum().item()
    lo, hi = torch.minimum(y[:-1], y[1:]), torch.maximum(y[:-1], y[1:])
    length = hi - lo
    pos = (m > 0) & ~flat
    step = torch.sign(y[1:] - y[:-1])[pos]
    if not bool(flat.any()) and (bool((step > 0).all()) or bool((step < 0).all())):  # monotone: no overlaps
        return (m[pos] * torch.log(length[pos] / m[pos])).sum().item(), 0.0
    # a folding map: the density on each piece between consecutive segment ends is the sum, over the monotone runs
    # of the chain (the branches of the inverse), of the density of the one segment of the run that covers it
    # (no running sum of +-densities, whose rounding would leave ~1e-16 of the largest in the law's far tails); a
    # flat sub-cell is a run of its own, of no density here (its term is h_flat)
    c = torch.where(pos, m / length.clamp(min=1e-300), torch.zeros_like(m))  # each segment's density
    turn = torch.nonzero(torch.sign(y[2:] - y[1:-1]) != torch.sign(y[1:-1] - y[:-2])).flatten() + 1
    bounds = [0] + turn.tolist() + [m.numel()]
    if len(bounds) > _MAX_RUNS + 1:
        raise ValueError(f"flow_numbers: the map turns {len(bounds) - 2} times on the chain (more than {_MAX_RUNS}): not "
                         f"a map with a few folds")
    at = torch.unique(torch.cat([lo[pos], hi[pos]]))  # sorted
    mid = 0.5 * (at[1:] + at[:-1])
    q = torch.zeros_like(mid)
    for i, j in zip(bounds[:-1], bounds[1:]):  # run i .. j - 1: segments between the edges y[i] .. y[j]
        ends, dens = y[i:j + 1], c[i:j]
        if ends[-1] < ends[0]:
            ends, dens = ends.flip(0), dens.flip(0)
        r0, r1 = torch.searchsorted(mid, ends[[0, -1]]).tolist()  # the pieces the run can cover
        k = torch.searchsorted(ends, mid[r0:r1], right=True) - 1
        inside = (k >= 0) & (k < dens.numel())
        q[r0:r1] += torch.where(inside, dens[k.clamp(0, dens.numel() - 1)], torch.zeros_like(k, dtype=q.dtype))
    dx = at[1:] - at[:-1]
    on = q > 0
    return -(q[on] * torch.log(q[on]) * dx[on]).sum().item() + h_flat, size.sum().item()


def _atom(ya: torch.Tensor, yb: torch.Tensor, m: torch.Tensor, tol: float) -> None:
    """Refuse the sub-cells (ends' images ``ya``, ``yb``, masses ``m`` [J]) that map to one double when their terms'
    sizes exceed ``tol``: a stretch of the start with mass that the map sends to a point (module docstring)."""
    flat, size = _flat(ya, yb, m)
    if size.sum().item() > tol:
        raise ValueError(f"flow_numbers: the map sends a sub-cell with mass {m[flat].max().item():.3g} to a point "
                         f"{yb[flat][m[flat].argmax()].item():.6g} (an atom in the output law: its differential "
                         f"entropy is -inf; the flat sub-cells' term sizes sum to {size.sum().item():.3g} > tol "
                         f"{tol:g}, so not a fold's turning point below the images' rounding)")


def _expect(fy: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``E f`` under the segment law, each segment by the trapezoid rule on its ends. [F]"""
    return (m[:, None] * 0.5 * (fy[:-1] + fy[1:])).sum(0)


def flow_numbers(denoiser, sigmas, span: tuple[float, float] = (-7.0, 7.0), *, sampler: str = "ddim",
                 functions: tuple[Callable[[torch.Tensor], torch.Tensor], ...] = (), tol: float = 1e-4,
                 cells: int = 1024) -> FlowNumbers:
    """Entropy of the output law of ``sample(sampler, denoiser, x_T, sigmas)`` with ``x_T = sqrt(1 + sigma_0^2) u``,
    ``u ~ N(0, 1)`` (1-D), and the expectations ``E f(Y)`` of ``functions`` (``f``: points [N, 1] -> values [N]),
    each within ``tol`` by its estimate (module docstring), ``Y`` in the VP coordinates of the last level (the data
    coordinates when it is 0), as :func:`evaluation.density.output_density`'s masses.

    Args:
        denoiser: ``denoiser(x [N, 1], sigma) -> x0_hat`` (VE coordinates), deterministic.
        sigmas: the sampler's strictly decreasing noise levels.
        span: ``(lo, hi)`` of the start ``u`` that is mapped; the start's mass outside it enters the errors.
        sampler: one of :data:`DETERMINISTIC` (``ddim`` with ``eta = 0``).
        functions: ``f(points [N, 1]) -> [N]``, e.g. a Bayes classifier's ``p(y | x)`` (its mean: a confidence).
        tol: the largest error estimate accepted; ``ValueError`` when the estimate stays above it within
            :data:`MAX_FLOW_POINTS` start points or ``_MAX_DEPTH`` bisections (it names what it reached).
        cells: the first, uniform, sub-cells of ``span`` (each is then bisected at least once).
    """
    if sampler not in DETERMINISTIC:
        raise ValueError(f"sampler must be one of {DETERMINISTIC} (a deterministic map of the start), got {sampler!r}")
    if not callable(denoiser):
        raise ValueError(f"denoiser must be callable as denoiser(x, sigma), got {denoiser!r}")
    s = check_sigmas(sigmas)
    if not (isinstance(span, (tuple, list)) and len(span) == 2):
        raise ValueError(f"span must be (lo, hi), got {span!r}")
    lo, hi = (check_number(v, "span") for v in span)
    if not lo < hi:
        raise ValueError(f"span must be (lo, hi) with lo < hi, got {span!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    cells = check_count(cells, "cells", least=4)
    if 2 * cells + 1 > MAX_FLOW_POINTS:
        raise ValueError(f"cells={cells} needs {2 * cells + 1} points, more than MAX_FLOW_POINTS = {MAX_FLOW_POINTS}")
    if not all(callable(f) for f in functions):
        raise ValueError(f"functions must be callables points [N, 1] -> values [N], got {functions!r}")
    scale_in, scale_out = math.sqrt(1 + s[0].item() ** 2), math.sqrt(1 + s[-1].item() ** 2)
    cdf = torch.special.ndtr
    lost = cdf(torch.tensor(lo, dtype=F64)).item() + cdf(torch.tensor(-hi, dtype=F64)).item()
    if lost > tol:
        raise ValueError(f"span {span!r} leaves {lost:.3g} of the start N(0, 1) outside it, more than tol={tol:g}")

    def push(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # start points [M] -> (images [M], f values [M, F])
        reset = getattr(denoiser, "reset", None)  # a stateful guidance (APG with momentum): one run each
        if reset is not None:
            reset()
        with torch.no_grad():
            x = sample(sampler, denoiser, scale_in * u[:, None], s)
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != (u.numel(), 1):
            raise ValueError(f"the sampler returned {getattr(x, 'shape', x)!r} for {u.numel()} start points")
        y = x.to(F64)[:, 0] / scale_out
        if not bool(torch.isfinite(y).all()):
            raise ValueError("the sampler's output is not finite for some start points")
        if not functions:
            return y, torch.zeros(u.numel(), 0, dtype=F64)
        return y, torch.stack([torch.as_tensor(f(y[:, None]), dtype=F64).reshape(-1) for f in functions], 1)

    def term(m, ya, yb):  # one sub-cell's entropy term m log(L / m) (0 without mass; L at least one ulp: _entropy)
        length = torch.where(ya == yb, _ulp(ya), (yb - ya).abs())
        return torch.where(m > 0, m * torch.log(length.clamp(min=1e-300) / m.clamp(min=1e-300)), torch.zeros_like(m))

    total = 0  # start points over the runs
    for local in _LOCAL_TOLS:  # the bisection's shares of tol * local: tighter when the
        # whole number's estimate (a halving sees the overlaps of a fold, which the local terms do not) exceeds tol
        # (rand1d:103 CFG w = 4 DDIM: 1.25e-5 with shares of tol 1e-5)
        e = torch.linspace(lo, hi, cells + 1, dtype=F64)
        y, fy = push(e)
        points = e.numel()
        open_ = torch.ones(cells, dtype=torch.bool)
        accepted = 0.0  # the accepted changes, summed (entropy), and per function
        accepted_f = torch.zeros(len(functions), dtype=F64)
        width = hi - lo
        for _ in range(_MAX_DEPTH):
            idx = open_.nonzero().flatten()
            if idx.numel() == 0:
                break
            if total + points + idx.numel() > MAX_FLOW_POINTS:
                raise ValueError(f"flow_numbers: not within tol {tol:g} after {total + points} start points (the next "
                                 f"bisection needs {idx.numel()} more, past MAX_FLOW_POINTS = {MAX_FLOW_POINTS})")
            a, b = e[idx], e[idx + 1]
            mid = 0.5 * (a + b)
            ym, fm = push(mid)
            points += idx.numel()
            m, ma, mb = cdf(b) - cdf(a), cdf(mid) - cdf(a), cdf(b) - cdf(mid)
            ya, yb = y[idx], y[idx + 1]
            _atom(torch.cat([ya, ym]), torch.cat([ym, yb]), torch.cat([ma, mb]), tol)  # the halves
            change = (term(ma, ya, ym) + term(mb, ym, yb) - term(m, ya, yb)).abs()
            fa, fb = fy[idx], fy[idx + 1]
            change_f = (0.5 * (ma[:, None] * (fa + fm) + mb[:, None] * (fm + fb))
                        - 0.5 * m[:, None] * (fa + fb)).abs()
            share = 0.5 * local * tol * (m + (b - a) / width)  # this sub-cell's share of tol
            again = ((change > share) | (change_f > share[:, None]).any(1)) & (b - a > _FINEST * width)
            accepted += change[~again].sum().item()
            accepted_f += change_f[~again].sum(0)
            # insert the midpoints: sub-cell idx becomes two, both open when it moved by more than its share
            count = torch.ones(e.numel() - 1, dtype=torch.long)
            count[idx] = 2
            pos = torch.cumsum(count, 0) - count  # where each old sub-cell starts in the new chain
            n_new = e.numel() + idx.numel()
            e2, y2 = torch.empty(n_new, dtype=F64), torch.empty(n_new, dtype=F64)
            f2 = torch.empty(n_new, fy.shape[1], dtype=F64)
            e2[pos], y2[pos], f2[pos] = e[:-1], y[:-1], fy[:-1]
            e2[-1], y2[-1], f2[-1] = e[-1], y[-1], fy[-1]
            e2[pos[idx] + 1], y2[pos[idx] + 1], f2[pos[idx] + 1] = mid, ym, fm
            o2 = torch.zeros(n_new - 1, dtype=torch.bool)
            o2[pos[idx]], o2[pos[idx] + 1] = again, again
            e, y, fy, open_ = e2, y2, f2, o2
        if bool(open_.any()):
            raise ValueError(f"flow_numbers: not within tol {tol:g} after {_MAX_DEPTH} bisections of a sub-cell "
                             f"({int(open_.sum())} sub-cells still change by more than their share)")
        m = cdf(e[1:]) - cdf(e[:-1])
        _atom(y[:-1], y[1:], m, tol)
        (H, flat_err), ex = _entropy(y, m), _expect(fy, m)
        keep = torch.zeros(e.numel(), dtype=torch.bool)  # every other edge and both ends: neighbours merged
        keep[0::2] = True
        keep[-1] = True
        mc = cdf(e[keep][1:]) - cdf(e[keep][:-1])
        (H2, _), ex2 = _entropy(y[keep], mc), _expect(fy[keep], mc)
        tail = lost * (1.0 + abs(math.log(lost)) + abs(H)) if lost > 0 else 0.0  # the missing mass's largest term
        h_err = max(accepted, abs(H - H2)) + flat_err + tail
        f_err = torch.maximum(accepted_f, (ex - ex2).abs()) + lost * fy.abs().max(0).values  # [F]
        step = torch.sign(y[1:] - y[:-1])[m > 0]
        mono = bool((step > 0).all()) or bool((step < 0).all())
        worst = max([h_err] + f_err.tolist())
        total += points
        if worst <= tol:
            return FlowNumbers(H, h_err, tuple(ex.tolist()), tuple(f_err.tolist()), total, lost, mono)
    raise ValueError(f"flow_numbers: the estimate {worst:.3g} exceeds tol {tol:g} (entropy {H:.6g} +- {h_err:.2g}) "
                     f"with {total} start points over {len(_LOCAL_TOLS)} runs, the last with shares of "
                     f"{_LOCAL_TOLS[-1]:g} tol")
