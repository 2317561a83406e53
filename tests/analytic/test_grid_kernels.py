"""The dense quadrature's fast kernels (issue 19, item 4) against the routes they replace.

- the edge-line sums as one matrix product (``_line_sums``) against ``torch.logsumexp`` term by term, including
  lines whose scaled sums underflow (redone in log space) and lines that are ``-inf`` everywhere;
- ``tilted_posterior`` (2 points per width) against the 4-points-per-width rule of ``golden_at_points`` on the
  same points: both tolerance-controlled, they agree within the error the fast route reports, and both within
  the Gauss-Hermite route of ``optimal_guidance`` to its own estimate.
"""
import math

import pytest
import torch

import analytic as A
from analytic.grid import _line_sums, _log_kernel, _scaled

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
