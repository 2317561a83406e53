"""Segment deposits (analytic.quadrature.deposit_segments) against the hat function's antiderivative; the separable
deposit of the sub-cell lattice (deposit_lattice) against the point deposit and the hat masses of a uniform law."""
import pytest
import torch

from analytic.quadrature import deposit, deposit_lattice, deposit_segments, sub_axes, sub_points

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


LATTICES = [  # (axes, sub): 1-D and 2-D, odd and even sub (odd: the middle sub-point sits on its node), unequal axes
    ((torch.linspace(-2.0, 3.0, 11, dtype=F64),), 1),
    ((torch.linspace(-2.0, 3.0, 11, dtype=F64),), 8),
    ((torch.linspace(-3.5, 3.5, 201, dtype=F64),), 5),
    ((torch.linspace(-3.5, 3.5, 21, dtype=F64), torch.linspace(-1.0, 0.4, 15, dtype=F64)), 4),
    ((torch.linspace(-3.5, 3.5, 41, dtype=F64), torch.linspace(-3.5, 3.5, 41, dtype=F64)), 3),
    ((torch.linspace(0.1, 0.9, 9, dtype=F64), torch.linspace(-7.0, 7.0, 33, dtype=F64)), 16),
]


@pytest.mark.parametrize("axes,sub", LATTICES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lattice_deposit_is_the_point_deposit_of_the_sub_points(axes, sub, seed):
    """Random masses (spanning 12 decades, as a peaked density's) on the lattice: the same hat masses and mass outside
    (the edge half-cells' share beyond the outer hats) as the point-by-point deposit, to rounding."""
    shape = tuple(a.numel() * sub for a in axes)
    gen = torch.Generator().manual_seed(seed)
    values = torch.exp(-28 * torch.rand(shape, generator=gen, dtype=F64))
    ref, ref_out = deposit(sub_points(axes, sub), values.flatten(), axes)
    mass, out = deposit_lattice(values, axes, sub)
    assert mass.shape == ref.shape == tuple(a.numel() for a in axes)
    assert (mass - ref).abs().max().item() <= 1e-14 * ref.max().item()
    assert out == pytest.approx(ref_out, abs=1e-14 * values.sum().item())


@pytest.mark.parametrize("axes,sub", LATTICES)
def test_lattice_deposit_of_a_uniform_law_is_its_hat_masses(axes, sub):
    """Equal masses 1: in 1-D every inner hat holds ``sub`` (a whole cell), an edge hat ``sub - e`` and ``2 e`` lies
    beyond, ``e = sum_{o_s < 0} |o_s| = (sub^2 - sub mod 2) / (8 sub)`` the sub-points' offsets past the edge node
    (by hand); in 2-D the product of the axes' masses. To the rounding of the spacing ``a[1] - a[0]`` (both deposits use
    it): its relative error, up to ~1e-14 for nodes near 3.5 spaced 0.035, moves the far nodes by ``n`` times that
    in index units."""
    e = (sub**2 - sub % 2) / (8 * sub)
    per_axis = []
    for a in axes:
        m = torch.full((a.numel(),), float(sub), dtype=F64)
        m[[0, -1]] -= e
        per_axis.append(m)
    ref = per_axis[0] if len(axes) == 1 else per_axis[0][:, None] * per_axis[1][None, :]
    values = torch.ones(tuple(a.numel() * sub for a in axes), dtype=F64)
    mass, out = deposit_lattice(values, axes, sub)
    assert (mass - ref).abs().max().item() <= 1e-11 * sub ** len(axes)
    assert out == pytest.approx(values.numel() - ref.sum().item(), abs=1e-11 * values.numel())
    assert out > 0.1 * sub ** len(axes) or sub == 1  # the edge half-cells do reach beyond the outer hats


def test_lattice_deposit_follows_sub_axes():
    """The lattice's order is sub_points' (and its axes are sub_axes): a single unit mass at each lattice point lands
    where the point deposit puts that point."""
    axes = (torch.linspace(-1.0, 1.0, 5, dtype=F64), torch.linspace(0.0, 3.0, 4, dtype=F64))
    pts, fine = sub_points(axes, 2), sub_axes(axes, 2)
    assert torch.equal(pts, torch.cartesian_prod(*fine))
    for i in torch.randperm(pts.shape[0], generator=torch.Generator().manual_seed(3))[:12].tolist():
        values = torch.zeros(pts.shape[0], dtype=F64)
        values[i] = 1.0
        ref, _ = deposit(pts[i:i + 1], values[i:i + 1], axes)
        mass, _ = deposit_lattice(values.reshape(10, 8), axes, 2)
        assert (mass - ref).abs().max().item() < 1e-15


def test_lattice_deposit_refuses_bad_input():
    axes = (torch.linspace(0.0, 1.0, 5, dtype=F64), torch.linspace(0.0, 1.0, 6, dtype=F64))
    good = torch.ones(10, 12, dtype=F64)
    assert deposit_lattice(good, axes, 2)[0].shape == (5, 6)
    for bad in (good.flatten(), good.T, good.float(), good.numpy(), torch.ones(10, 13, dtype=F64)):
        with pytest.raises(ValueError, match="values must be a float64 tensor of the lattice's shape"):
            deposit_lattice(bad, axes, 2)
    for sub in (0, -2, 1.5, True, "2", None):
        with pytest.raises(ValueError, match="sub must be a"):
            deposit_lattice(good, axes, sub)
    bent = torch.tensor([0.0, 0.2, 0.5, 0.7, 1.0], dtype=F64)
    with pytest.raises(ValueError, match="axis 0 must be uniformly spaced"):
        deposit_lattice(good, (bent, axes[1]), 2)
    with pytest.raises(ValueError, match="grids are for d = 1 or 2"):
        deposit_lattice(torch.ones(4, 4, 4, dtype=F64), (axes[0][:2],) * 3, 2)
