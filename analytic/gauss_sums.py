"""Gaussian sums of positive functions stored as logarithms on uniform 1-D/2-D grids, without underflow.

Two operations, both trapezoid rules on the grid's nodes, so a function is never interpolated:

- :func:`smooth_log`: ``log (N_s * f)`` at every node, ``h^d sum_j N(y_i - y_j; s^2 I) f(y_j)`` (separable:
  one banded matrix product per axis, with a scale per block of rows so that no term underflows);
- :func:`gauss_sum_at`: ``log int N(z; m, s^2 I) f(z) dz`` at arbitrary centres ``m`` [N, d], summing the
  nodes of a band around each centre (the band follows the tilted mode, and moves and widens wherever its
  outermost ring still carries mass), with the tilted mean ``E[z] - m`` and the weighted average of a
  second nodal field (an error or a tracer) beside the value.

Accuracy. For ``f`` analytic in a strip ``|Im z| < a`` the trapezoid rule of ``N(z; m, s^2) f(z)`` with
spacing ``h`` errs by about ``exp(-2 pi^2 s^2 / h^2) + exp(-2 pi a / h)`` relative, whatever the slope of
``log f`` (an exponential tilt only moves the Gaussian). Nothing here needs ``log f`` to be smooth: sums of
exponentials (``log f`` with kinks, as ``log`` of a mixture has far from its components) are integrated to
the same accuracy. :func:`aliasing_bound` is the first term.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = ["smooth_log", "gauss_sum_at", "GaussSum", "aliasing_bound", "newton_shift", "split_width"]

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_REACH = 38.0  # kernel reach in standard deviations: exp(-38^2 / 2) underflows float64


def aliasing_bound(s: float, h: float) -> float:
    """Relative error of the trapezoid rule for ``int N(z; m, s^2) dz`` per dimension, ``2 exp(-2 pi^2 s^2/h^2)``
    (Poisson summation; the same for any exponential tilt)."""
    return 2 * math.exp(-2 * math.pi**2 * (s / h) ** 2)


def split_width(s: float, w: float) -> tuple[float, float]:
    """``(s_a, s_b)`` with ``s_a^2 + s_b^2 = s^2`` and ``s_a s_b / s = w``, the smaller ``s_b``: smoothing a grid
    by ``s_a`` and then summing ``N_{s_b}`` over its nodes is then the full kernel up to the aliasing of a
    Gaussian of width ``w`` (the product of the two kernels over the intermediate nodes). ``(0, s)`` when
    ``s < 2 w`` (no split)."""
    if s < 2 * w:
        return 0.0, s
    s_b = math.sqrt(0.5 * (s * s - math.sqrt(s**4 - 4 * (w * s) ** 2)))
    return math.sqrt(s * s - s_b * s_b), s_b


def _smooth_axis(L: torch.Tensor, axis: int, h: float, s: float) -> torch.Tensor:
    """``log (h sum_j N(y_i - y_j; s^2) exp(L_j))`` along ``axis``. Rows are processed in blocks ``15 s`` wide;
    each block scales its terms by their maximum at the block's centre, which bounds every other row's factor
    by ``exp(38 * 15 / 2)`` (no overflow) and keeps the terms that matter normal (no underflow)."""
    L = L.movedim(axis, 0)
    n, rest = L.shape[0], L.shape[1:]
    L2 = L.reshape(n, -1)
    y = torch.arange(n, dtype=torch.float64) * h
    b = max(1, int(15 * s / h))
    reach = int(math.ceil(_REACH * s / h)) + b
    out = torch.empty_like(L2)
    for i0 in range(0, n, b):
        i1 = min(n, i0 + b)
        j0, j1 = max(0, i0 - reach), min(n, i1 + reach)
        yc = 0.5 * (y[i0] + y[i1 - 1])
        yj = y[j0:j1]
        A = L2[j0:j1] - ((yj - yc) ** 2 / (2 * s * s))[:, None]
        M = A.max(0).values
        M = torch.where(torch.isfinite(M), M, torch.zeros_like(M))
        yi = y[i0:i1, None]
        K = torch.exp(-((yi - yj) ** 2 - (yc - yj) ** 2) / (2 * s * s))  # [b, J], entries <= exp(285)
        out[i0:i1] = torch.log(K @ torch.exp(A - M)) + M
    out = out + (math.log(h / s) - _LOG_SQRT_2PI)
    return out.reshape(n, *rest).movedim(0, axis)


def smooth_log(L: torch.Tensor, h: float, s: float) -> torch.Tensor:
    """``log (N_s * exp(L))`` at the nodes of a uniform grid of spacing ``h`` (every axis), by the
    trapezoid rule; nodes beyond the grid count as ``f = 0``. ``L`` [n_1(, n_2)] may hold ``-inf``."""
    for ax in range(L.ndim):
        L = _smooth_axis(L, ax, h, s)
    return L


def newton_shift(L: torch.Tensor, h: float, s: float) -> torch.Tensor:
    """Per node, a Newton step towards the mode of ``N(z; y, s^2) f(z)`` from ``z = y``: ``s^2 g / (1 + s^2 k)`` per
    axis with ``g``, ``-k`` the first and second central differences of ``log f`` (``k`` floored at 0; ``-inf``
    treated as very small). It only places bands, so its accuracy is immaterial. [n_1(, n_2), d]"""
    finite = torch.isfinite(L)
    floor = L[finite].min() - 1e3 if finite.any() else torch.tensor(0.0, dtype=L.dtype)
    Lc = torch.where(finite, L, floor)
    out = []
    for i in range(L.ndim):
        x = Lc.movedim(i, 0)
        g = torch.gradient(x, spacing=h, dim=0)[0]
        k = torch.zeros_like(x)
        if x.shape[0] > 2:
            k[1:-1] = -(x[2:] - 2 * x[1:-1] + x[:-2]) / h**2
            k[0], k[-1] = k[1], k[-2]
        out.append((s * s * g / (1 + s * s * k.clamp(min=0))).movedim(0, i))
    return torch.where(finite[..., None], torch.stack(out, -1), torch.zeros((), dtype=L.dtype))


class GaussSum(NamedTuple):
    log_value: torch.Tensor  # [N] log int N(z; m, s^2 I) f(z) dz
    shift: torch.Tensor  # [N, d] E[z] - m under the tilted weights N f
    tracer: torch.Tensor  # [N] weighted average of the tracer field (0 without one)
    outside: torch.Tensor  # [N] Gaussian estimate of the tilted mass beyond the grid (missing from the sum)


def _bands(m, centre, lo, h, s, R, shape):
    """Per axis: the first band index (clamped into the padding), the offsets ``z - m`` and the log weights."""
    d = len(shape)
    B = int(math.ceil(2 * R * s / h)) + 2
    k0 = torch.floor((centre - R * s - lo) / h).long()
    ks, zs, lws = [], [], []
    for i in range(d):
        ki = k0[:, i].clamp(-B, shape[i])
        z = (lo[i] - m[:, i])[:, None] + h * (ki[:, None] + torch.arange(B)).to(torch.float64)
        ks.append(ki + B)  # index into the grid padded by B
        zs.append(z)
        lws.append(-z * z / (2 * s * s))
    return B, ks, zs, lws


def _patches(A: torch.Tensor, B: int, ks) -> torch.Tensor:
    """The ``B^d`` patches of ``A`` (padded by B) starting at ``ks`` (no index tensors of patch size)."""
    if A.ndim == 1:
        return A.as_strided((A.shape[0] - B + 1, B), (1, 1))[ks[0]]
    n2 = A.shape[1]
    return A.as_strided((A.shape[0] - B + 1, n2 - B + 1, B, B), (n2, 1, n2, 1))[ks[0], ks[1]]


def _pad(A: torch.Tensor, B: int, value: float) -> torch.Tensor:
    return torch.nn.functional.pad(A[None], [B] * (2 * A.ndim), value=value)[0].contiguous()


def _ring(w: torch.Tensor) -> torch.Tensor:
    """Weight on the outermost ring of each band. w [N, B(, B)]"""
    if w.ndim == 2:
        return w[:, 0] + w[:, -1]
    return w[:, 0].sum(1) + w[:, -1].sum(1) + w[:, 1:-1, 0].sum(1) + w[:, 1:-1, -1].sum(1)


def _sum_linear(Fp, Tp, B, ks, zs, ws):
    """Sums of ``N f`` (``f`` scaled to <= 1) over the bands: ``(S, first moments [N, d], ring, tracer sum)``."""
    P = _patches(Fp, B, ks)
    if len(ks) == 1:
        wu = ws[0] * P
        T = None if Tp is None else (ws[0] * _patches(Tp, B, ks)).sum(1)
        return wu.sum(1), torch.stack([(wu * zs[0]).sum(1)], 1), wu[:, 0] + wu[:, -1], T
    u = torch.einsum("nij,nj->ni", P, ws[1])
    v = torch.einsum("nij,ni->nj", P, ws[0])
    S = (ws[0] * u).sum(1)
    first = torch.stack([(ws[0] * zs[0] * u).sum(1), (ws[1] * zs[1] * v).sum(1)], 1)
    ring = ws[0][:, 0] * u[:, 0] + ws[0][:, -1] * u[:, -1] + ws[1][:, 0] * v[:, 0] + ws[1][:, -1] * v[:, -1]
    T = None if Tp is None else torch.einsum("ni,nij,nj->n", ws[0], _patches(Tp, B, ks), ws[1])
    return S, first, ring, T


def _sum_log(Lp, Tp, B, ks, zs, lws):
    """The same in log space, for bands whose terms underflow the linear route's scale:
    ``(log S, mean offsets [N, d], relative ring weight, tracer average)``."""
    lw = _patches(Lp, B, ks)
    lw = lw + lws[0] if len(ks) == 1 else lw + lws[0][:, :, None] + lws[1][:, None, :]
    lse = torch.logsumexp(lw.reshape(lw.shape[0], -1), 1)
    w = torch.exp(lw - lse.reshape(-1, *([1] * len(ks)))).nan_to_num(0.0)
    if len(ks) == 1:
        shift = (w * zs[0]).sum(1, keepdim=True)
    else:
        shift = torch.stack([(w.sum(2) * zs[0]).sum(1), (w.sum(1) * zs[1]).sum(1)], 1)
    tr = torch.zeros_like(lse) if Tp is None else (w * _patches(Tp, B, ks)).reshape(w.shape[0], -1).sum(1)
    return lse, shift, _ring(w), tr


def gauss_sum_at(L: torch.Tensor, lo, h: float, m: torch.Tensor, s: float, *, tracer: torch.Tensor | None = None,
                 radius: float = 6.5, ring_tol: float | None = None, chunk_elems: int = 4_000_000) -> GaussSum:
    """``log int N(z; m_n, s^2 I) f(z) dz`` for centres ``m`` [N, d] by the trapezoid rule on the nodes of
    ``L = log f`` (uniform grid with lower corner ``lo``, spacing ``h``; ``f = 0`` beyond it).

    The band of each centre is a square of half-width ``radius * s`` around a Newton estimate of the tilted
    mode (:func:`newton_shift` at the nearest node); while its outermost ring holds more than ``ring_tol`` of
    the sum (default: ten times an untilted Gaussian's ring), it moves to the tilted mean just found and widens
    by 1.6, until the band covers the grid. ``tracer`` is a non-negative nodal field averaged with the same
    weights (e.g. error bounds of ``log f``). Terms are summed in linear space under one global scale; bands
    whose terms underflow it are summed in log space.
    """
    d = L.ndim
    shape = tuple(L.shape)
    lo_t = torch.as_tensor(lo, dtype=torch.float64).reshape(d)
    ring_tol = 10 * math.exp(-0.5 * radius**2) if ring_tol is None else ring_tol
    near = torch.round((m - lo_t) / h).long()
    for i in range(d):
        near[:, i].clamp_(0, shape[i] - 1)
    flat = near[:, 0] if d == 1 else near[:, 0] * shape[1] + near[:, 1]
    centre = m + newton_shift(L, h, s).reshape(-1, d)[flat]
    N = m.shape[0]
    need_tracer = torch.zeros(N, dtype=torch.bool)
    if tracer is not None:  # only centres near a tracer worth carrying pay for it
        mask = (tracer > 1e-14).to(torch.float64)
        reach = int(math.ceil(4 * radius * s / h)) + 2
        for i in range(d):
            x = mask.movedim(i, -1)
            mask = torch.nn.functional.max_pool1d(x.reshape(-1, 1, shape[i]), 2 * reach + 1, 1, reach).reshape(
                x.shape).movedim(-1, i)
        need_tracer = mask.reshape(-1)[flat] > 0
    top = L.max()
    top = top if torch.isfinite(top) else torch.zeros((), dtype=torch.float64)
    F = torch.exp(L - top)  # <= 1
    log_val = torch.full((N,), -math.inf, dtype=torch.float64)
    shift = torch.zeros(N, d, dtype=torch.float64)
    trac = torch.zeros(N, dtype=torch.float64)
    todo, R = torch.arange(N), radius
    while todo.numel():
        B = int(math.ceil(2 * R * s / h)) + 2
        last = B >= 2 * max(shape) + 4  # the band covers the grid wherever the centre is
        Fp, Lp = _pad(F, B, 0.0), _pad(L, B, -math.inf)
        Tp = None if tracer is None else _pad(F * tracer, B, 0.0)
        Tl = None if tracer is None else _pad(tracer, B, 0.0)
        redo = []
        for sl in torch.split(todo, max(1, chunk_elems // B**d)):
            _, ks, zs, lws = _bands(m[sl], centre[sl], lo_t, h, s, R, shape)
            tr_on = need_tracer[sl].any().item()
            S, first, ring, T = _sum_linear(Fp, Tp if tr_on else None, B, ks, zs, [torch.exp(w) for w in lws])
            ok = S > 1e-250
            val = torch.log(S) + top
            sh = first / S[:, None]
            rel = ring / S
            tr = T / S if T is not None else torch.zeros_like(S)
            if not ok.all():  # underflow of the global scale: the same bands in log space
                bad = ~ok
                lv2, sh2, rel2, tr2 = _sum_log(Lp, Tl if tr_on else None, B, [k[bad] for k in ks],
                                               [z[bad] for z in zs], [w[bad] for w in lws])
                val[bad], sh[bad], rel[bad], tr[bad] = lv2, sh2, rel2, tr2
            log_val[sl], shift[sl], trac[sl] = val, sh.nan_to_num(0.0), tr.nan_to_num(0.0)
            again = ~(rel <= ring_tol) | ~torch.isfinite(val)  # or nothing in the band
            if not last and again.any():
                moved = sl[again]
                found = torch.isfinite(val[again])  # else look around m itself, ever wider
                centre[moved] = torch.where(found[:, None], m[moved] + shift[moved], m[moved])
                redo.append(moved)
        todo = torch.cat(redo) if redo else todo[:0]
        R *= 1.6
    log_val = log_val + d * (math.log(h / s) - _LOG_SQRT_2PI)
    mean = m + shift
    hi_t = lo_t + h * (torch.tensor(shape, dtype=torch.float64) - 1)
    tail = lambda u: 0.5 * torch.erfc(u / (s * math.sqrt(2)))  # noqa: E731
    outside = (tail(mean - lo_t + 0.5 * h) + tail(hi_t + 0.5 * h - mean)).sum(1).clamp(max=1.0)
    outside = torch.where(torch.isfinite(log_val), outside, torch.ones_like(outside))
    return GaussSum(log_val, shift, trac, outside)
