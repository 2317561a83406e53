"""The dense quadrature's fast kernels (issue 19, item 4) against the routes they replace.

- the edge-line sums as one matrix product (``_line_sums``) against ``torch.logsumexp`` term by term, including
  lines whose scaled sums underflow (redone in log space) and lines that are ``-inf`` everywhere;
- ``tilted_posterior`` on a tensor grid (``x_t`` a tuple of axes: the separable kernels) against the same
  function at the grid's points, including far points redone in log space and tilted mass only the probes find;
- ``tilted_posterior`` (2 points per width) against the 4-points-per-width rule of ``golden_at_points`` on the
  same points: both tolerance-controlled, they agree within the error the fast route reports, and both within
  the Gauss-Hermite route of ``optimal_guidance`` to its own estimate.
"""
import math

import pytest
import torch

import analytic as A
from analytic.grid import _line_sums, _log_kernel, _scaled
from analytic.quadrature import grid_points
from tests.helpers import FarBump

F64 = torch.float64


def test_line_sums_equal_logsumexp_to_rounding():
    g = torch.Generator().manual_seed(0)
    x = torch.linspace(-30, 30, 41, dtype=F64)  # far points: their sums underflow and go to log space
    y = torch.linspace(-4, 4, 97, dtype=F64)
    logK = _log_kernel(x, y, 0.97)
    E, mx = _scaled(logK)
    lines = torch.randn(5, 97, generator=g, dtype=F64) * 30 - 0.05 * y[None] ** 2 * 100
    lines[3] = -math.inf  # a line outside the support
    lines[4, :50] = -math.inf
    got = _line_sums(E, mx, logK, lines)
    ref = torch.logsumexp(lines[None] + logK[:, None, :], 2)  # [n, L]
    assert torch.equal(torch.isinf(got), torch.isinf(ref))
    fin = torch.isfinite(ref)
    assert ((got[fin] - ref[fin]).abs() <= 1e-12 * (1 + ref[fin].abs())).all()
    assert (ref < -700).any(), "the case must include underflowing sums"


@pytest.mark.parametrize("name,a", [("classes_2d", 0.3), ("classes_2d", 0.97), ("correlated_2d", 0.6),
                                    ("paper_1d", 0.5)])
def test_tilted_posterior_matches_finer_rule_within_its_error(name, a):
    p = A.get_preset(name)
    r = A.CFGReward(p.cond, p.uncond, 4.0)
    g = torch.Generator().manual_seed(1)
    x = 2 * torch.randn(6, p.cond.dim, generator=g, dtype=F64)
    fast = A.tilted_posterior(p.cond, r, x, a)
    fine = A.golden_at_points(p.cond, r, x, a)  # 4 points per width, the former rule
    m = p.cond.posterior(x, a).mean()
    m_fine = m + fine.grad_log_E * (1 - a) / math.sqrt(a)
    assert (fast.err_tilted_mean <= 1e-6).all()  # DEFAULT_TOL
    assert ((fast.tilted_mean - m_fine).abs() <= fast.err_tilted_mean + 1e-12).all()
    gh = A.optimal_guidance(p.cond, r, x, a, method="gh", tol=1e-6, max_nodes=256)
    assert ((fast.tilted_mean - gh.tilted_mean).abs() <= fast.err_tilted_mean + gh.err_tilted_mean + 1e-12).all()


# --- tilted_posterior on a tensor grid (x_t as a tuple of axes) ---------------------------------------------


def _same_posterior(grid: A.TiltedPosterior, pts: A.TiltedPosterior) -> None:
    """The grid route equals the points route to rounding: ``log_E`` and ``m_R`` to 1e-12 of their scale; the
    error estimates (differences of near-equal sums, at their rounding floor where the rule has converged) to
    1e-12 of the same scale."""
    scale = 1 + pts.log_E.abs().max().item()
    assert grid.log_E.shape == pts.log_E.shape and grid.tilted_mean.shape == pts.tilted_mean.shape
    assert ((grid.log_E - pts.log_E).abs() <= 1e-12 * (1 + pts.log_E.abs())).all()
    assert ((grid.tilted_mean - pts.tilted_mean).abs() <= 1e-12 * (1 + pts.tilted_mean.abs())).all()
    assert ((grid.err_log_E - pts.err_log_E).abs() <= 1e-12 * scale).all()
    assert ((grid.err_tilted_mean - pts.err_tilted_mean).abs() <= 1e-12 * scale).all()


@pytest.mark.parametrize("name,a,w,span", [("classes_2d", 0.82, 1.0, 4.0), ("classes_2d", 0.82, 1.0, 14.0),
                                            ("correlated_2d", 0.5, 1.0, 6.0), ("paper_1d", 0.82, 1.0, 30.0)])
def test_tilted_posterior_on_axes_equals_the_points_of_their_grid(name, a, w, span, monkeypatch):
    """``x_t`` as a tuple of axes goes through the separable kernels and gives, in 'ij' order, what the points of
    the grid give (the wide cases reach points whose sums underflow and are redone in log space)."""
    from analytic import grid as G

    p = A.get_preset(name)
    r = A.CFGReward(p.cond, p.uncond, w)
    d = p.cond.dim
    axes = tuple(torch.linspace(-span, span + 0.3 * i, 23 + 8 * i, dtype=F64) for i in range(d))
    redone = []
    log_sums = G._log_sums
    monkeypatch.setattr(G, "_log_sums", lambda x, *args: redone.append(x.shape[0]) or log_sums(x, *args))
    on_grid = A.tilted_posterior(p.cond, r, axes, a)
    at_points = A.tilted_posterior(p.cond, r, grid_points(axes), a)
    _same_posterior(on_grid, at_points)
    assert on_grid.log_E.shape == (math.prod(ax.numel() for ax in axes),)
    if span > 10:
        assert redone, "the case must include points whose sums underflow"


def test_tilted_posterior_on_axes_finds_far_mass_as_the_points_do(monkeypatch):
    from analytic import grid as G

    c = A.GaussianMixture([1.0], [[0.0, 0.0]], [torch.eye(2, dtype=F64).tolist()])
    r = FarBump(466.0, dim=2)
    axes = (torch.linspace(-2, 2, 9, dtype=F64), torch.linspace(-1.5, 1.5, 7, dtype=F64))
    hits = []
    far_mass = G._far_mass
    monkeypatch.setattr(G, "_far_mass", lambda *args: (lambda h: hits.append(h.shape[0]) or h)(far_mass(*args)))
    on_grid = A.tilted_posterior(c, r, axes, 0.3)
    found_on_grid = list(hits)
    at_points = A.tilted_posterior(c, r, grid_points(axes), 0.3)
    assert max(found_on_grid) > 0 and found_on_grid == hits[len(found_on_grid):], "the same probes must be found"
    assert (on_grid.tilted_mean[:, 0] > 15).any()  # the bump holds most of the tilted mass of some points
    _same_posterior(on_grid, at_points)


@pytest.mark.parametrize("axes,match", [
    ((torch.linspace(-1, 1, 5, dtype=F64),), "need 2 axes"),
    ((torch.linspace(-1, 1, 5, dtype=F64), torch.tensor([0.0, 1.0, 0.5], dtype=F64)), "strictly increasing"),
    ((torch.linspace(-1, 1, 5, dtype=F64), torch.tensor([0.0, math.nan], dtype=F64)), "finite"),
    ((torch.linspace(-1, 1, 5, dtype=F64), torch.zeros(2, 2, dtype=F64)), "1-D"),
    ((torch.linspace(-1, 1, 5, dtype=F64), torch.tensor([1.0], dtype=F64)), "at least 2"),
    ((torch.linspace(-1, 1, 5, dtype=F64), "ab"), "x_t"),
])
def test_tilted_posterior_refuses_bad_axes_naming_x_t(axes, match):
    p = A.get_preset("classes_2d")
    r = A.CFGReward(p.cond, p.uncond, 1.0)
    with pytest.raises(ValueError, match=match) as e:
        A.tilted_posterior(p.cond, r, axes, 0.5)
    assert "x_t" in str(e.value)
