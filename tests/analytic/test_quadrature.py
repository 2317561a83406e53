"""Segment deposits (analytic.quadrature.deposit_segments) against the hat function's antiderivative."""
import pytest
import torch

from analytic.quadrature import deposit, deposit_segments

F64 = torch.float64


def _ramp(t: torch.Tensor) -> torch.Tensor:
    """``int_{-inf}^t phi``, phi the unit hat: the direct piecewise formula (an independent route)."""
    return torch.where(t < -1, 0.0, torch.where(t < 0, 0.5 * (t + 1) ** 2, torch.where(t < 1, 1 - 0.5 * (1 - t) ** 2, 1.0)))


def _by_antiderivative(a, b, m, axis):
    """Each segment's hat masses as ``m (C(f_1 - k) - C(f_0 - k)) / (f_1 - f_0)``, node by node (long segments fine)."""
    h = (axis[1] - axis[0]).item()
    k = torch.arange(axis.numel(), dtype=F64)
    f0 = ((torch.minimum(a, b) - axis[0]) / h)[:, None]
    f1 = ((torch.maximum(a, b) - axis[0]) / h)[:, None]
    return (m[:, None] * (_ramp(f1 - k) - _ramp(f0 - k)) / (f1 - f0)).sum(0)


def test_segment_hat_masses_match_the_antiderivative_of_the_hat():
    gen = torch.Generator().manual_seed(0)
    axis = torch.linspace(-2.0, 2.0, 17, dtype=F64)
    a = torch.rand(400, generator=gen, dtype=F64) * 7 - 3.5  # some beyond the grid
    length = torch.randn(400, generator=gen, dtype=F64) * torch.rand(400, generator=gen, dtype=F64) ** 3 * 4
    b = a + length + 1e-3 * length.sign()  # both orientations, lengths from 1e-3 to many cells, some crossing an edge
    # (shorter ones: the reference's (C(f_1) - C(f_0)) / (f_1 - f_0) cancels; see the next test)
    m = torch.rand(400, generator=gen, dtype=F64)
    out, lost = deposit_segments(a, b, m, axis)
    ref = _by_antiderivative(a, b, m, axis)
    assert (out - ref).abs().max().item() < 1e-13
    assert lost == pytest.approx(m.sum().item() - ref.sum().item(), abs=1e-12) and lost > 0.1
    rev, _ = deposit_segments(b, a, m, axis)  # a reversed segment is the same segment
    assert (rev - out).abs().max().item() < 1e-15


def test_short_segments_tend_to_the_point_deposit_continuously():
    """No cut-off: a segment of length L differs from its midpoint's cloud-in-cell deposit by at most ~L/4 of its
    mass, down to L = 0 (the point deposit itself), without cancellation."""
    gen = torch.Generator().manual_seed(1)
    axis = torch.linspace(0.0, 1.0, 11, dtype=F64)
    mid = torch.rand(200, generator=gen, dtype=F64)
    mid[:20] = axis[1:5].repeat(5)  # on a node: the kink inside the segment
    m = torch.rand(200, generator=gen, dtype=F64)
    point, _ = deposit(mid[:, None], m, (axis,))
    for L in (0.0, 1e-15, 1e-12, 1e-8, 1e-4):
        out, _ = deposit_segments(mid - L / 2, mid + L / 2, m, axis)
        assert (out - point).abs().sum().item() <= m.sum().item() * L / 0.1 + 1e-13, L
        assert out.min().item() >= -1e-16


def test_a_linear_map_of_a_uniform_law_is_deposited_exactly():
    """Sub-cells tiling [lo, hi] with equal masses, sent through an affine map (reversing, stretching): the
    hat masses of the uniform law on the image, by the antiderivative of the hat on the whole interval."""
    axis = torch.linspace(-3.0, 3.0, 61, dtype=F64)
    edges = torch.linspace(-1.3, 0.9, 23, dtype=F64)
    for slope in (-2.7, 0.013, 1.0, 37.0):
        y = 0.2 + slope * edges
        m = torch.full((22,), 1 / 22, dtype=F64)
        out, lost = deposit_segments(y[:-1], y[1:], m, axis)
        ref = _by_antiderivative(y[:1], y[-1:], torch.ones(1, dtype=F64), axis)
        assert (out - ref).abs().max().item() < 1e-14
        assert lost == pytest.approx(1 - ref.sum().item(), abs=1e-13)
        cic, _ = deposit(0.5 * (y[:-1] + y[1:])[:, None], m, (axis,))  # the point deposit is not exact here
        if abs(slope) > 1:
            assert (cic - ref).abs().sum().item() > 1e-3


def test_segment_deposit_refuses_mismatched_shapes():
    axis = torch.linspace(0.0, 1.0, 5, dtype=F64)
    x = torch.zeros(3, dtype=F64)
    with pytest.raises(ValueError, match="masses"):
        deposit_segments(x, x, torch.ones(2, dtype=F64), axis)
    with pytest.raises(ValueError, match="axis"):
        deposit_segments(x, x, x, axis[:1])
