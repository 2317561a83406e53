"""The tilted target's quadrature (evaluation.distances.tilted_target): Gauss-Legendre on the pieces where the hats
are linear (``_hat_rule``), against scipy's adaptive quadrature of the hat integrals (1-D and 2-D), its error
estimate against that reference, its blocks, and the frame on which it finds the mass outside the grid."""
import importlib
import math

import numpy as np
import pytest
import torch
from scipy import integrate

from analytic import CFGReward
from analytic.presets import get_preset
from analytic.quadrature import deposit_lattice, grid_points, sub_axes
from evaluation.distances import tilted_target

from tests.helpers import paper_pair

F64 = torch.float64
dist_mod = importlib.import_module("evaluation.distances")  # the module (evaluation re-exports a function `distances`)


def _hat(axis, k):
    a, h = axis.numpy(), (axis[1] - axis[0]).item()
    return lambda x: max(0.0, 1.0 - abs(x - a[k]) / h)


@pytest.mark.parametrize("points", [2, 3, 5])
def test_hat_rule_is_exact_on_polynomials_of_its_degree(points):
    """Hat masses and the integral over the cells of a polynomial of degree 2 points - 2 (exact for the rule on every
    linear piece of a hat), against numpy's exact polynomial integrals."""
    axis = torch.linspace(-1.0, 2.0, 7, dtype=F64)
    rule = dist_mod._hat_rule(axis, points)
    x, q = rule[:2]
    h = (axis[1] - axis[0]).item()
    poly = np.polynomial.Polynomial(np.arange(1.0, 2 * points))  # degree 2 points - 2
    f = torch.from_numpy(poly(x.numpy()))
    lo, hi = axis[0].item() - h / 2, axis[-1].item() + h / 2
    assert (q @ f).item() == pytest.approx(poly.integ()(hi) - poly.integ()(lo), rel=1e-13)
    for k in (0, 3, 6):  # a hat cut by the box's edge, an inner one, the other edge
        a = axis[k].item()
        lin = [np.polynomial.Polynomial([1 + a / h, -1 / h]), np.polynomial.Polynomial([1 - a / h, 1 / h])]
        pieces = [(max(lo, a - h), a, lin[1]), (a, min(hi, a + h), lin[0])]  # rising left of the node, falling right
        exact = sum((poly * p).integ()(b) - (poly * p).integ()(c) for c, b, p in pieces)
        assert dist_mod._hat_masses(f, rule, 0)[k].item() == pytest.approx(exact, rel=1e-12)


def test_1d_target_against_scipy_quad():
    """Every hat mass, log Z and the summed error of the paper's 1-D law tilted by CFG (w = 2), against scipy's
    adaptive quadrature of ``p(x|y) R_0 phi_k`` and of ``p(x|y) R_0`` over the cells; the estimate bounds the error (the
    change from half the nodes: it far exceeds the finer rule's error, whose masses are returned)."""
    cond, uncond = paper_pair()
    reward = CFGReward(cond, uncond, 2.0)
    axis = torch.linspace(-2.0, 4.0, 61, dtype=F64)
    tt = tilted_target(cond, reward, axis)
    f = lambda x: math.exp(cond.log_prob(torch.tensor([[x]], dtype=F64)).item()  # noqa: E731
                           + reward.log_r0(torch.tensor([[x]], dtype=F64)).item())
    h = (axis[1] - axis[0]).item()
    lo, hi = axis[0].item() - h / 2, axis[-1].item() + h / 2
    Z = integrate.quad(f, lo, hi, epsabs=0, epsrel=1e-13, limit=200, points=axis.numpy())[0]
    ref = torch.tensor([integrate.quad(lambda x: f(x) * _hat(axis, k)(x), max(lo, axis[k].item() - h),
                                       min(hi, axis[k].item() + h), points=[axis[k].item()], epsabs=0,
                                       epsrel=1e-13)[0] / Z for k in range(axis.numel())], dtype=F64)
    ref = ref * (1 - tt.outside)
    actual = (tt.mass - ref).abs().sum().item()
    assert actual <= tt.error.sum().item()
    print(f"1-D: error {actual:.3g}, estimate {tt.error.sum().item():.3g}")
    assert tt.log_Z == pytest.approx(math.log(Z), abs=tt.log_Z_error + 1e-12)


def _midpoint_masses(cond, reward, axes, sub):
    """The rule the Gauss-Legendre one replaced: ``sub^2`` midpoints per cell, deposited to the hats (second order)."""
    fine = sub_axes(axes, sub)
    pts = grid_points(fine)
    log_f = (cond.log_prob(pts) + reward.log_r0(pts)).reshape(*(a.numel() for a in fine))
    f = torch.exp(log_f - log_f.max())
    h = (axes[0][1] - axes[0][0]).item()
    return deposit_lattice(f / f.sum(), axes, sub)[0], (log_f.max() + torch.log(f.sum() * (h / sub) ** 2)).item()


def test_2d_target_against_scipy_dblquad_and_the_midpoint_rule():
    """classes_2d tilted by CFG (w = 3) on 41^2 nodes: one hat mass against scipy's dblquad, every mass and log Z
    against the midpoint rule at 32 and 64 points per cell extrapolated (Richardson, order 2); the masses within the
    summed estimate, which a tolerance brings below 1e-8."""
    p = get_preset("classes_2d")
    reward = CFGReward(p.cond, p.uncond, 3.0)
    ax = torch.linspace(-3.5, 3.5, 41, dtype=F64)
    h = (ax[1] - ax[0]).item()
    tt = tilted_target(p.cond, reward, (ax, ax))
    tight = tilted_target(p.cond, reward, (ax, ax), tol=1e-8)
    assert tight.error.sum().item() <= 1e-8
    (m32, z32), (m64, z64) = (_midpoint_masses(p.cond, reward, (ax, ax), s) for s in (32, 64))
    ref, log_Z = (m64 + (m64 - m32) / 3) * (1 - tt.outside), z64 + (z64 - z32) / 3  # errors about 1e-9
    assert (tt.mass - ref).abs().sum().item() <= tt.error.sum().item()
    assert (tight.mass - ref).abs().sum().item() <= 1e-8 + (m64 - m32).abs().sum().item() / 3
    assert tight.log_Z == pytest.approx(log_Z, abs=tight.log_Z_error + abs(z64 - z32) / 3)
    i, j = (int(v) for v in torch.nonzero(tt.mass == tt.mass.max())[0])

    def f(y, x):
        pt = torch.tensor([[x, y]], dtype=F64)
        return math.exp(p.cond.log_prob(pt).item() + reward.log_r0(pt).item() - tt.log_Z)

    hat = 0.0
    for x0, x1 in ((ax[i].item() - h, ax[i].item()), (ax[i].item(), ax[i].item() + h)):  # the hat's linear pieces
        for y0, y1 in ((ax[j].item() - h, ax[j].item()), (ax[j].item(), ax[j].item() + h)):
            hat += integrate.dblquad(lambda y, x: f(y, x) * _hat(ax, i)(x) * _hat(ax, j)(y), x0, x1, y0, y1,
                                     epsabs=0, epsrel=1e-10)[0]
    assert abs(tight.mass[i, j].item() - hat * (1 - tt.outside)) <= 1e-8


def test_blocks_give_the_same_numbers(monkeypatch):
    """Rows of the rule's grid evaluated in blocks of 997 points (one or a few rows, a ragged last block) give the
    numbers of the default blocks to rounding."""
    p = get_preset("classes_2d")
    reward = CFGReward(p.cond, p.uncond, 1.0)
    axes = (torch.linspace(-3.5, 3.5, 41, dtype=F64), torch.linspace(-3.0, 2.0, 29, dtype=F64))
    whole = tilted_target(p.cond, reward, axes, tol=1e-6)
    monkeypatch.setattr(dist_mod, "_BLOCK", 997)
    blocks = tilted_target(p.cond, reward, axes, tol=1e-6)
    assert (whole.mass - blocks.mass).abs().max().item() <= 1e-14 * whole.mass.max().item()
    assert whole.log_Z == pytest.approx(blocks.log_Z, abs=1e-13)


def test_mass_outside_on_a_coarser_frame():
    """A 2-D grid of more than _OUTSIDE_NODES nodes finds the mass outside on wider cells over the same box: a target
    near the box's edge (classes_2d tilted by w = 1 on a box cut through it) has the same outside share, within the
    estimate the masses carry, as on the grid's own cells (the coarse frame's error enters the masses' error)."""
    p = get_preset("classes_2d")
    reward = CFGReward(p.cond, p.uncond, 1.0)
    axes = (torch.linspace(-3.5, 0.5, 161, dtype=F64), torch.linspace(-3.5, 3.5, 161, dtype=F64))
    tt = tilted_target(p.cond, reward, axes, max_outside=0.9)
    own = dist_mod.mass_outside(lambda x: p.cond.log_prob(x) + reward.log_r0(x), axes)
    assert 1e-3 < tt.outside < 0.9
    assert abs(tt.outside - own) * tt.mass.sum().item() <= tt.error.sum().item()


class _Holed(CFGReward):
    """A CFG reward with ``value`` in a strip of width 0.02 h around ``x_0[0] = at``."""

    def __init__(self, cond, uncond, w, at, h, value):
        super().__init__(cond, uncond, w)
        self.at, self.h, self.value = at, h, value

    def log_r0(self, x0):
        out = super().log_r0(x0)
        return torch.where((x0[:, 0] - self.at).abs() < 0.01 * self.h, self.value, out)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nan_or_inf_in_a_later_block_is_refused(value):
    """A NaN or +inf on a column of the rule's points past the first block of rows is refused; -inf is allowed."""
    p = get_preset("classes_2d")
    ax = torch.linspace(-3.5, 3.5, 161, dtype=F64)
    h = (ax[1] - ax[0]).item()
    at = ax[140].item() + h / 2  # the middle Gauss-Legendre node of 3 (row 424, past the first 65536 // 486 rows)
    with pytest.raises(ValueError, match=r"log p\(x_0\|y\) R_0\(x_0\) is nan or \+inf on the grid"):
        tilted_target(p.cond, _Holed(p.cond, p.uncond, 1.0, at, h, value), (ax, ax))
    tilted_target(p.cond, _Holed(p.cond, p.uncond, 1.0, at, h, -math.inf), (ax, ax))  # -inf: no mass there, allowed


def test_the_finest_1d_grid_in_little_memory():
    """The accuracy contract's largest 1-D grid (2^14 + 1 nodes): the rule splits each point between its piece's two
    nodes (a dense [n, m] weight matrix there was 13 GB), and the masses sum with the edge share to one."""
    cond, uncond = paper_pair()
    axis = torch.linspace(-5.0, 5.0, 2**14 + 1, dtype=F64)
    tt = tilted_target(cond, CFGReward(cond, uncond, 1.0), axis)
    assert tt.mass.shape == (2**14 + 1,) and tt.mass.sum().item() + tt.lost == pytest.approx(1.0, abs=1e-14)
