"""Starts evaluated on tensor grids (issue 19: ``mass_outside`` of the tilted start was most of a 2-D cell).

A start log-density may carry ``on_grid(axes)``; :func:`evaluation.starts.tilted_start` has it (the separable
quadrature of ``analytic.grid.tilted_posterior``), and so has ``vp_start``. Every use of a start on a tensor grid
(the nodes, ``mass_outside``'s frame, the 2-D sub-points of the deterministic push-forward) must give what the
same start gives at the grid's points: the reference is the same law wrapped in a plain function (no ``on_grid``),
which goes through the points route.
"""
import math

import pytest
import torch

from analytic import CFGReward, get_preset
from analytic.quadrature import grid_points
from evaluation.density import mass_outside, output_density
from evaluation.starts import tilted_start, vp_start
from sampler import CFG, MixtureModel, VPSchedule, bind

F64 = torch.float64


def _axes(lo, hi, n, d=2):
    return tuple(torch.linspace(lo, hi + 0.25 * i, n + 4 * i, dtype=F64) for i in range(d))


def _points_only(log_prob):
    """The same law without ``on_grid``: the route at the grid's points."""
    return lambda u: log_prob(u)


@pytest.fixture(scope="module")
def classes():
    p = get_preset("classes_2d")
    m = MixtureModel({"c": p.cond, None: p.uncond})
    return p, CFGReward(p.cond, p.uncond, 1.0), CFG(bind(m, "c"), bind(m, None), 1.0)


def test_vp_start_on_grid_is_its_values_at_the_points():
    for d in (1, 2):
        axes = _axes(-3, 2, 7, d)
        assert torch.equal(vp_start(d).on_grid(axes), vp_start(d)(grid_points(axes)))


@pytest.mark.parametrize("marginal", [False, True])
def test_tilted_start_on_grid_equals_its_values_at_the_points(classes, marginal):
    p, reward, _ = classes
    start = tilted_start(p.cond, reward, 0.82, marginal=marginal)
    axes = _axes(-5, 5, 17)
    got, ref = start.on_grid(axes), start(grid_points(axes))
    assert got.shape == ref.shape == (17 * 21,)
    assert ((got - ref).abs() <= 1e-12 * (1 + ref.abs())).all()
    one = get_preset("paper_1d")
    start_1d = tilted_start(one.cond, CFGReward(one.cond, one.uncond, 2.0), 0.5, marginal=marginal)
    ax = torch.linspace(-8, 8, 41, dtype=F64)
    assert torch.equal(start_1d.on_grid(ax), start_1d(ax[:, None]))  # one 1-D route for both


@pytest.mark.parametrize("lo,hi,n", [(-2.5, 2.5, 9), (-0.5, 0.5, 9)])  # the second widens its frame twice
def test_mass_outside_on_grid_equals_the_points_route(classes, lo, hi, n):
    p, reward, _ = classes
    start = tilted_start(p.cond, reward, 0.82, marginal=True)
    axes = _axes(lo, hi, n)
    fast, ref = mass_outside(start, axes), mass_outside(_points_only(start), axes)
    assert ref > 1e-6  # a share that the frame's values decide
    assert fast == pytest.approx(ref, rel=1e-13, abs=0)


@pytest.mark.parametrize("sampler,marginal", [("ddpm", True), ("ddim", False)])
def test_output_density_with_the_tilted_start_is_unchanged_by_the_grid_route(classes, sampler, marginal):
    """DDPM reads the start at the nodes and its frame; DDIM (eta = 0) also at the 2-D sub-points of the push-forward."""
    p, reward, cfg = classes
    sigmas = VPSchedule.linear(4, 0.02, 0.3).sampling_sigmas()
    a_T = 1 / (1 + sigmas[0].item() ** 2)
    start = tilted_start(p.cond, reward, a_T, marginal=marginal)
    axes = _axes(-3.5, 3.5, 13)
    fast = output_density(cfg, sigmas, axes, sampler=sampler, start=start)
    ref = output_density(cfg, sigmas, axes, sampler=sampler, start=_points_only(start))
    top = ref.mass.max().item()
    assert (fast.mass - ref.mass).abs().max().item() <= 1e-13 * top
    assert (fast.error - ref.error).abs().max().item() <= 1e-13 * top
    assert fast.lost == pytest.approx(ref.lost, rel=1e-12, abs=1e-15)
    assert fast.start_lost == pytest.approx(ref.start_lost, rel=1e-12, abs=0) and ref.start_lost > 0


class _Law:
    """``log N(u; 0, I)`` with an ``on_grid`` that returns ``values(axes)``."""

    def __init__(self, values):
        self.values = values

    def __call__(self, u):
        return vp_start(u.shape[1])(u)

    def on_grid(self, axes):
        return self.values(axes)


@pytest.mark.parametrize("values,match", [
    (lambda axes: torch.zeros(3, dtype=F64), r"start\.on_grid must return log-densities \[N\].*shape \(3,\)"),
    (lambda axes: "nope", r"start\.on_grid must return log-densities"),
    (lambda axes: torch.full((math.prod(a.numel() for a in axes),), math.nan, dtype=F64),
     r"start\.on_grid is not a finite log-density"),
])
def test_a_bad_on_grid_is_refused_naming_it(classes, values, match):
    *_, cfg = classes
    sigmas = VPSchedule.linear(3, 0.02, 0.3).sampling_sigmas()
    with pytest.raises(ValueError, match=match):
        output_density(cfg, sigmas, _axes(-3, 3, 9), start=_Law(values))
    with pytest.raises(ValueError, match=match.replace("start", "law")):
        mass_outside(_Law(values), _axes(-3, 3, 9), name="law")


def test_a_start_nan_between_the_nodes_is_refused_at_the_sub_points(classes):
    """The deterministic push-forward reads the start at sub-points between the nodes; a start that is NaN there
    (finite at the nodes and on mass_outside's frame, which lie on the lattice of the nodes) gave NaN masses."""
    *_, cfg = classes
    axes = _axes(-3, 3, 13, d=2)
    axes = (axes[0], axes[0])
    h = (axes[0][1] - axes[0][0]).item()

    def start(u):
        k = (u - axes[0][0]) / h
        on_lattice = ((k - k.round()).abs() < 1e-6).all(1)
        return vp_start(2)(u).masked_fill(~on_lattice, math.nan)

    sigmas = VPSchedule.linear(3, 0.02, 0.3).sampling_sigmas()
    with pytest.raises(ValueError, match="start is not a finite log-density"):
        output_density(cfg, sigmas, axes, sampler="ddim", start=start)
