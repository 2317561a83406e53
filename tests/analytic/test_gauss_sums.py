"""Gaussian sums on grids against brute-force log-space sums, closed forms and the trapezoid rule's error."""
import math

import pytest
import torch

from analytic.gauss_sums import aliasing_bound, gauss_sum_at, smooth_log, split_width

F64 = torch.float64


def _grid(d, n, h, lo=-1.0):
    axes = [lo + h * torch.arange(n, dtype=F64) for _ in range(d)]
    return axes, (torch.cartesian_prod(*axes) if d == 2 else axes[0][:, None])


def _brute(L, Y, m, s, tracer=None):
    """log sum_j h^d N(y_j; m, s^2 I) exp(L_j), the tilted mean offset and the weighted tracer, in log space."""
    h = (Y[1, -1] - Y[0, -1]).item() if Y.shape[1] == 2 else (Y[1, 0] - Y[0, 0]).item()
    d = Y.shape[1]
    lw = -((m[:, None, :] - Y[None]) ** 2).sum(-1) / (2 * s * s) + L.reshape(-1)[None]
    out = torch.logsumexp(lw, 1) + d * (math.log(h / s) - 0.5 * math.log(2 * math.pi))
    w = torch.softmax(lw, 1)
    tr = None if tracer is None else w @ tracer.reshape(-1)
    return out, w @ Y - m, tr


@pytest.mark.parametrize("d", [1, 2])
def test_gauss_sum_at_equals_the_brute_force_sum_whatever_the_range_of_log_f(d):
    gen = torch.Generator().manual_seed(d)
    n, h = (400 if d == 1 else 60), 0.05
    axes, Y = _grid(d, n, h)
    # log f: steep (slope 40), kinked (a max of two planes), with a hole of -inf and a range of ~2000
    L = torch.maximum(40 * Y.sum(1), -30 * Y[:, 0] + 5) - 300 * (Y**2).sum(1)
    L[torch.rand(L.shape, generator=gen) < 0.02] = -math.inf
    L = L.reshape([n] * d)
    tracer = torch.rand(L.shape, generator=gen, dtype=F64)
    m = torch.rand(300, d, generator=gen, dtype=F64) * (n - 1) * h - 1.0
    for s in (1.3 * h, 4 * h):
        got = gauss_sum_at(L, [-1.0] * d, h, m, s, tracer=tracer, radius=7.0)
        ref, shift, tr = _brute(L, Y, m, s, tracer)
        assert (got.log_value - ref).abs().max() < 1e-9
        assert (got.shift - shift).abs().max() < 1e-9 * s
        assert (got.tracer - tr).abs().max() < 1e-9


def test_smooth_log_equals_the_brute_force_convolution():
    gen = torch.Generator().manual_seed(0)
    n, h, s = 60, 0.04, 0.17
    axes, Y = _grid(2, n, h)
    L = (60 * torch.sin(3 * Y[:, 0]) - 500 * Y[:, 1] ** 2 + torch.randn(n * n, generator=gen, dtype=F64)).reshape(n, n)
    got = smooth_log(L, h, s)
    ref, _, _ = _brute(L, Y, Y, s)
    assert (got.reshape(-1) - ref).abs().max() < 1e-9


def test_the_trapezoid_rule_error_is_the_aliasing_bound_for_any_tilt():
    """int N(z; m, s^2) exp(g z) dz = exp(g m + g^2 s^2 / 2) exactly; on the grid the relative error is
    below 2 exp(-2 pi^2 s^2 / h^2) for every slope g (the tilt only moves the Gaussian)."""
    h = 0.05
    axes, Y = _grid(1, 2000, h, lo=-50.0)
    m = torch.linspace(-0.3, 0.3, 37, dtype=F64)[:, None]
    for ratio in (0.7, 1.0, 1.2):
        s = ratio * h
        for g in (0.0, 30.0, 300.0):
            got = gauss_sum_at(g * Y[:, 0], [-50.0], h, m, s).log_value
            exact = g * m[:, 0] + 0.5 * g * g * s * s
            err = (got - exact).abs().max().item()
            assert err <= 1.05 * aliasing_bound(s, h) + 1e-12, (ratio, g)
            if ratio < 1.1:
                assert err > 0.1 * aliasing_bound(s, h)  # and the bound is the error, not a loose bound


def test_split_width_keeps_the_variance_and_resolves_the_product():
    assert split_width(1.0, 0.6) == (0.0, 1.0)  # too narrow to split
    for s, w in ((1.3, 0.5), (10.0, 1.2), (2.4, 1.2)):
        sa, sb = split_width(s, w)
        assert abs(sa**2 + sb**2 - s**2) < 1e-12 * s**2
        assert abs(sa * sb / s - w) < 1e-9 * w and sb <= sa
