import math

import pytest
import torch

import analytic as A
from analytic import AutoGReward, CFGReward, ClassifierReward, degrade, eps_jacobian, guidance_fields
from analytic.grid import golden_on_grid

from .conftest import paper_pair, random_mixture


@pytest.mark.parametrize("d,seed", [(1, 0), (1, 1), (2, 2), (2, 3)])
def test_golden_agrees_with_independent_quadrature(d, seed):
    """Issue 2's acceptance: guidance_fields agrees with an independent quadrature to 1e-6 relative.
    The reference is Gauss-Hermite per posterior component (method="gh"), which shares no code with the
    default trapezoid route but the mixture densities."""
    cond, uncond = random_mixture(d, 2, 50 + seed), random_mixture(d, 3, 60 + seed, scale=0.6)
    reward = CFGReward(cond, uncond, 1.0)
    x = torch.rand(30, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 2 - 0.5
    for a in (0.98, 0.7, 0.3):
        fields = guidance_fields(cond, reward, x, a)
        ref = guidance_fields(cond, reward, x, a, method="gh", tol=1e-8)
        scale = ref.golden.abs().max()
        assert ((fields.golden - ref.golden).abs().max() / scale) < 1e-6
        for name in ("present", "reg_paper", "reg_vjp", "reg_diag"):
            torch.testing.assert_close(getattr(fields, name), getattr(ref, name), rtol=0, atol=0)


def test_in_one_dimension_all_reg_estimators_coincide():
    cond, uncond = paper_pair()
    x = torch.linspace(-1, 2, 50, dtype=torch.float64)[:, None]
    f = guidance_fields(cond, CFGReward(cond, uncond, 1.0), x, 0.9)
    torch.testing.assert_close(f.reg_paper, f.reg_vjp)
    torch.testing.assert_close(f.reg_paper, f.reg_diag)


def test_reg_estimators_match_their_explicit_jacobian_forms():
    cond = random_mixture(2, 3, 70)
    reward = AutoGReward(cond, degrade(cond, 2.0), 2.0)
    x = torch.rand(20, 2, dtype=torch.float64) * 2 - 0.5
    a = 0.6
    c = math.sqrt(1 - a)
    f = guidance_fields(cond, reward, x, a)
    # explicit Jacobian by finite differences of eps (independent of autograd)
    h = 1e-6
    J = torch.stack([(cond.eps(x + h * e, a) - cond.eps(x - h * e, a)) / (2 * h) for e in torch.eye(2, dtype=torch.float64)], 2)
    torch.testing.assert_close(eps_jacobian(cond, x, a), J, rtol=1e-6, atol=1e-7)
    g = f.present
    eye = torch.eye(2, dtype=torch.float64)
    torch.testing.assert_close(f.reg_vjp, torch.einsum("nji,nj->ni", eye - c * J, g), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(f.reg_paper, g * (1 - c * J.sum(1)), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(f.reg_diag, g * (1 - c * torch.diagonal(J, dim1=1, dim2=2)), rtol=1e-6, atol=1e-7)
    # exact scores have a symmetric Jacobian, so J^T 1 = J 1 (the jvp form of the paper estimator)
    Jx = eps_jacobian(cond, x, a)
    torch.testing.assert_close(Jx, Jx.transpose(1, 2), rtol=1e-10, atol=1e-12)


def test_zero_weight_gives_zero_fields_and_gaussian_equal_variance_cfg_is_exact():
    cond, uncond = random_mixture(2, 2, 80), random_mixture(2, 2, 81)
    x = torch.rand(10, 2, dtype=torch.float64)
    f = guidance_fields(cond, CFGReward(cond, uncond, 0.0), x, 0.5)
    for name in ("golden", "present", "reg_paper", "reg_vjp", "reg_diag"):
        assert getattr(f, name).abs().max() < 1e-12
    # single Gaussians with equal covariance: log R_0 is linear and CFG is exactly optimal
    c1 = random_mixture(2, 1, 82)
    u1 = c1.with_covs(c1.covs)
    u1 = type(c1)([1.0], c1.means + 0.3, c1.covs)
    f = guidance_fields(c1, CFGReward(c1, u1, 1.7), x, 0.4)
    torch.testing.assert_close(f.golden, f.present, rtol=1e-10, atol=1e-12)


def test_classifier_guidance_fields_run():
    classes = [random_mixture(2, 2, 90), random_mixture(2, 1, 91)]
    f = guidance_fields(classes[1], ClassifierReward(classes, [0.5, 0.5], 1, 2.0), torch.rand(5, 2, dtype=torch.float64), 0.8)
    assert all(torch.isfinite(getattr(f, n)).all() for n in ("golden", "present", "reg_paper", "reg_vjp", "reg_diag"))


@pytest.mark.parametrize("d", [1, 2])
def test_fields_on_grid_match_pointwise_fields(d):
    cond, uncond = random_mixture(d, 2, 95), random_mixture(d, 2, 96, scale=0.6)
    reward = CFGReward(cond, uncond, 1.0)
    from analytic import guidance_fields_on_grid

    axis = torch.linspace(-0.5, 1.5, 9, dtype=torch.float64)
    on_grid = guidance_fields_on_grid(cond, reward, (axis,) * d, 0.8)
    pts = torch.cartesian_prod(*(axis,) * d).reshape(-1, d)
    pointwise = guidance_fields(cond, reward, pts, 0.8)
    for name in ("golden", "present", "reg_paper", "reg_vjp", "reg_diag"):
        torch.testing.assert_close(getattr(on_grid, name), getattr(pointwise, name), rtol=1e-9, atol=1e-11)


def test_batch_jacobian_matches_finite_differences_and_step_gaps_by_hand():
    p = A.get_preset("correlated_2d")
    x = torch.tensor([[0.3, 0.9], [1.4, -0.2], [2.0, 1.0]], dtype=torch.float64)
    J = A.eps_jacobian(p.cond, x, 0.6)
    h = 1e-6
    for j in range(2):
        e = torch.zeros(2, dtype=torch.float64)
        e[j] = h
        fd = (p.cond.eps(x + e, 0.6) - p.cond.eps(x - e, 0.6)) / (2 * h)
        torch.testing.assert_close(J[:, :, j], fd, rtol=1e-6, atol=1e-7)
    golden = torch.randn(3, 5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    f = golden + torch.tensor([0.3, 0.4], dtype=torch.float64)  # gap 0.5 everywhere
    w = torch.rand(5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    gaps = A.step_gaps(golden, {"a": f, "b": golden}, steps=(1, 2, 3), weights=w)
    torch.testing.assert_close(gaps.of("a"), torch.full((3,), 0.5, dtype=torch.float64))
    torch.testing.assert_close(gaps.of("b"), torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(gaps.golden_size, (golden.norm(dim=-1) * w / w.sum()).sum(1))
    with pytest.raises(ValueError, match="ascend"):
        A.step_gaps(golden, {"a": f}, steps=(3, 2, 1))
    with pytest.raises(ValueError, match="shape"):
        A.step_gaps(golden, {"a": f[:, :4]}, steps=(1, 2, 3))


@pytest.mark.parametrize("d", [1, 2])
def test_fields_carry_the_goldens_error_estimate_and_tolerance(d):
    """Issue 11: the golden of every field table comes with its error, within the tolerance asked for, and
    the error covers the distance to a tighter independent route (Gauss-Hermite)."""
    cond, uncond = random_mixture(d, 2, 97), random_mixture(d, 2, 98, scale=0.6)
    reward = CFGReward(cond, uncond, 1.5)
    axis = torch.linspace(-0.5, 1.5, 5, dtype=torch.float64)
    pts = torch.cartesian_prod(*(axis,) * d).reshape(-1, d)
    ref = guidance_fields(cond, reward, pts, 0.7, method="gh", tol=1e-9)
    for tol in (1e-4, 1e-8):
        on_grid = A.guidance_fields_on_grid(cond, reward, (axis,) * d, 0.7, tol=tol)
        pointwise = guidance_fields(cond, reward, pts, 0.7, tol=tol)
        for f in (on_grid, pointwise):
            assert f.golden_error.shape == f.golden.shape and f.golden_error.max() <= tol
            assert ((f.golden - ref.golden).abs() <= f.golden_error + ref.golden_error + 1e-12).all()
    with pytest.raises(ValueError, match="tol"):
        A.guidance_fields_on_grid(cond, reward, (axis,) * d, 0.7, tol=-1.0)
    with pytest.raises(ValueError, match="tol"):
        guidance_fields(cond, reward, pts, 0.7, tol=0.0)
