"""The tilted target on its sub-point lattice (evaluation.distances.tilted_target): the blockwise evaluation and the
separable deposit (analytic.quadrature.deposit_lattice) give the numbers of the point-by-point route they replaced,
kept here as the reference, to rounding."""
import importlib
import math

import pytest
import torch

from analytic import CFGReward
from analytic.presets import get_preset
from analytic.quadrature import axes_spacing, deposit, sub_points
from evaluation.distances import tilted_target

from tests.helpers import paper_pair

F64 = torch.float64
dist_mod = importlib.import_module("evaluation.distances")  # the module (evaluation re-exports a function `distances`)


def _points_route(cond, reward, axes, sub):
    """The route before the lattice deposit: every sub-point evaluated at once and deposited as a point."""
    pts = sub_points(axes, sub)
    log_f = cond.log_prob(pts) + reward.log_r0(pts)
    top = log_f.max()
    f = torch.exp(log_f - top)
    cell = math.prod(axes_spacing(axes)) / sub ** len(axes)
    log_Z = (top + torch.log(f.sum() * cell)).item()
    mass, lost = deposit(pts, f / f.sum(), axes)
    return mass, log_Z, lost


def _cases():
    p = get_preset("classes_2d")
    ax2 = torch.linspace(-3.5, 3.5, 41, dtype=F64)
    cond1, uncond1 = paper_pair()
    ax1 = torch.linspace(-4.0, 4.0, 161, dtype=F64)
    return {"2d-w3": (p.cond, CFGReward(p.cond, p.uncond, 3.0), (ax2, ax2), 1e-3),
            "2d-w1-rect": (p.cond, CFGReward(p.cond, p.uncond, 1.0), (ax2, torch.linspace(-3.0, 2.0, 29, dtype=F64)),
                           None),
            "1d-w2": (cond1, CFGReward(cond1, uncond1, 2.0), (ax1,), 1e-6)}


@pytest.mark.parametrize("case,block", [("2d-w3", None), ("2d-w1-rect", None), ("2d-w1-rect", 997), ("1d-w2", None),
                                        ("1d-w2", 997)])
def test_tilted_target_equals_the_point_deposit_route(monkeypatch, case, block):
    """Masses, errors, log Z, its error, lost and outside as by the point route, through the refinements the tolerance
    asks for (2-D at tol 1e-3: sub 8 -> 32; 1-D at 1e-6: sub 8 -> 256); in blocks of the default size (2-D: a ragged
    second block) and of 997 points (2-D: blocks of one or a few rows; 1-D: a ragged last block)."""
    cond, reward, axes, tol = _cases()[case]
    if block is not None:
        monkeypatch.setattr(dist_mod, "_BLOCK", block)
    new = tilted_target(cond, reward, axes, tol=tol)
    monkeypatch.setattr(dist_mod, "_target_on_subpoints", _points_route)
    old = tilted_target(cond, reward, axes, tol=tol)
    top = old.mass.max().item()
    assert (new.mass - old.mass).abs().max().item() <= 1e-14 * top
    assert (new.error - old.error).abs().max().item() <= 1e-14 * top
    assert new.error.sum().item() == pytest.approx(old.error.sum().item(), rel=1e-6)  # the same refinements
    assert new.log_Z == pytest.approx(old.log_Z, abs=1e-13)
    assert new.log_Z_error == pytest.approx(old.log_Z_error, abs=1e-13)
    assert new.lost == pytest.approx(old.lost, abs=1e-14) and new.outside == old.outside


class _Holed(CFGReward):
    """A CFG reward with ``value`` in a strip of width 0.02 h around ``x_0[0] = at``, between the nodes the outside
    check reads (multiples of h/3 from the first node) but on a column of sub-points at sub = 8."""

    def __init__(self, cond, uncond, w, at, h, value):
        super().__init__(cond, uncond, w)
        self.at, self.h, self.value = at, h, value

    def log_r0(self, x0):
        out = super().log_r0(x0)
        return torch.where((x0[:, 0] - self.at).abs() < 0.01 * self.h, self.value, out)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nan_or_inf_in_a_later_block_is_refused(value):
    p = get_preset("classes_2d")
    ax = torch.linspace(-3.5, 3.5, 41, dtype=F64)
    h = (ax[1] - ax[0]).item()
    at = ax[35].item() - 7 * h / 16  # the first sub-point of node 35 (rows past the first block of 2^16 points)
    with pytest.raises(ValueError, match=r"log p\(x_0\|y\) R_0\(x_0\) is nan or \+inf on the grid"):
        tilted_target(p.cond, _Holed(p.cond, p.uncond, 1.0, at, h, value), (ax, ax))
    tilted_target(p.cond, _Holed(p.cond, p.uncond, 1.0, at, h, -math.inf), (ax, ax))  # -inf: no mass there, allowed
