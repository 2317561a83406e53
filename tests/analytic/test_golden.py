import math

import pytest
import torch

from analytic import AutoGReward, CFGReward, ClassifierReward, GaussianMixture, check_integrable, degrade, optimal_guidance
from analytic.grid import golden_on_grid

from .conftest import paper_pair, random_mixture

ABARS = [0.999, 0.9, 0.5, 0.1]


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp(min=1e-300)).item()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("abar", ABARS)
def test_gauss_hermite_matches_dense_grid_quadrature_1d(seed, abar):
    cond, uncond = random_mixture(1, 3, 100 + seed), random_mixture(1, 2, 200 + seed, scale=0.6)
    reward = CFGReward(cond, uncond, 0.8)
    axis = torch.linspace(-1.0, 2.0, 61, dtype=torch.float64)
    grid = golden_on_grid(cond, reward, axis, abar, tol=1e-10)
    opt = optimal_guidance(cond, reward, axis[:, None], abar, method="gh", tol=1e-10)
    assert rel_err(opt.grad_log_E, grid.grad_log_E) < 1e-9
    assert (opt.log_E - grid.log_E).abs().max() < 1e-9
    # each within the other's error estimate, and both estimates within the tolerance asked for
    assert torch.all((opt.golden - grid.golden).abs() <= opt.golden_error + grid.golden_error + 1e-13)
    assert grid.golden_error.max() <= 1e-10 and opt.golden_error.max() <= 1e-10


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("abar", [0.95, 0.6])
def test_gauss_hermite_matches_dense_grid_quadrature_2d(seed, abar):
    cond, bad = random_mixture(2, 2, 300 + seed), None
    bad = degrade(cond, 1.8)
    reward = AutoGReward(cond, bad, 1.5)
    axis = torch.linspace(-0.5, 1.5, 9, dtype=torch.float64)
    grid = golden_on_grid(cond, reward, (axis, axis), abar)
    pts = torch.cartesian_prod(axis, axis)
    opt = optimal_guidance(cond, reward, pts, abar, method="gh", tol=1e-9)
    assert rel_err(opt.grad_log_E, grid.grad_log_E.reshape(-1, 2)) < 1e-7
    assert (opt.log_E - grid.log_E.reshape(-1)).abs().max() < 1e-7


@pytest.mark.parametrize("d", [1, 2, 3])
def test_closed_form_matches_quadrature_for_single_gaussians(d):
    cond, uncond = random_mixture(d, 1, 400 + d), random_mixture(d, 1, 500 + d, scale=0.7)
    reward = CFGReward(cond, uncond, 0.7)
    x = torch.randn(12, d, dtype=torch.float64, generator=torch.Generator().manual_seed(d)) * 0.5 + 0.5
    closed = optimal_guidance(cond, reward, x, 0.6)
    assert closed.method == "closed"
    if d <= 2:
        gh = optimal_guidance(cond, reward, x, 0.6, method="gh", tol=1e-11)
        assert rel_err(gh.grad_log_E, closed.grad_log_E) < 1e-9
        torch.testing.assert_close(gh.log_E, closed.log_E, rtol=0, atol=1e-9)
    else:  # no quadrature in 3-D: importance sampling, within its own standard error
        est = optimal_guidance(cond, reward, x, 0.6, method="is", n_samples=20000,
                               generator=torch.Generator().manual_seed(0))
        z = (est.grad_log_E - closed.grad_log_E) / est.err_grad
        assert z.abs().max() < 5
        assert ((est.log_E - closed.log_E) / est.err_log_E).abs().max() < 5


def test_importance_sampling_within_standard_error_of_quadrature_2d():
    cond, uncond = random_mixture(2, 2, 600), random_mixture(2, 3, 601, scale=0.6)
    reward = CFGReward(cond, uncond, 1.0)
    x = torch.randn(40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.5
    gh = optimal_guidance(cond, reward, x, 0.7, method="gh")
    est = optimal_guidance(cond, reward, x, 0.7, method="is", n_samples=8000, generator=torch.Generator().manual_seed(2))
    z = (est.grad_log_E - gh.grad_log_E) / est.err_grad
    # 80 roughly standard normal scores: none beyond 4.5, and their spread is about 1
    assert z.abs().max() < 4.5
    assert 0.6 < z.std().item() < 1.5


def test_gradient_identity_matches_finite_differences_of_log_E():
    """grad log E_t = sqrt(abar)/(1-abar) (m_R - m) is the derivative of log E_t."""
    cond, uncond = paper_pair()
    reward = CFGReward(cond, uncond, 2.0)
    x = torch.linspace(-1, 2, 13, dtype=torch.float64)[:, None]
    h = 1e-5
    for a in (0.99, 0.82):
        opt = optimal_guidance(cond, reward, x, a, method="gh", tol=1e-12)
        fd = (optimal_guidance(cond, reward, x + h, a, method="gh", tol=1e-12).log_E
              - optimal_guidance(cond, reward, x - h, a, method="gh", tol=1e-12).log_E) / (2 * h)
        torch.testing.assert_close(opt.grad_log_E[:, 0], fd, rtol=1e-6, atol=1e-6)


def test_tilted_mean_is_optimal_denoiser_output():
    """x0_hat(eps_star) = m_R: the guided eps with the golden term denoises to the tilted mean."""
    cond, uncond = random_mixture(2, 2, 700), random_mixture(2, 2, 701, scale=0.6)
    reward = CFGReward(cond, uncond, 0.5)
    x = torch.randn(10, 2, dtype=torch.float64) * 0.4 + 0.5
    a = 0.8
    opt = optimal_guidance(cond, reward, x, a)
    eps_star = cond.eps(x, a) + opt.golden
    x0_hat = (x - math.sqrt(1 - a) * eps_star) / math.sqrt(a)
    torch.testing.assert_close(x0_hat, opt.tilted_mean, rtol=1e-10, atol=1e-10)


def test_abar_one_gives_the_reward_gradient():
    cond, uncond = paper_pair()
    reward = CFGReward(cond, uncond, 1.0)
    x = torch.linspace(-1, 2, 7, dtype=torch.float64)[:, None].requires_grad_(True)
    (g,) = torch.autograd.grad(reward.log_r0(x).sum(), x)
    opt = optimal_guidance(cond, reward, x, 1.0)
    torch.testing.assert_close(opt.grad_log_E, g)
    assert torch.all(opt.golden == 0) and opt.method == "exact"


def test_zero_weight_gives_zero_guidance():
    cond, uncond = random_mixture(2, 3, 800), random_mixture(2, 2, 801)
    opt = optimal_guidance(cond, CFGReward(cond, uncond, 0.0), torch.randn(6, 2, dtype=torch.float64), 0.5)
    assert opt.golden.abs().max() < 1e-12 and opt.log_E.abs().max() < 1e-12


def test_classifier_reward_golden():
    classes = [random_mixture(2, 1, 900), random_mixture(2, 2, 901)]
    reward = ClassifierReward(classes, [0.4, 0.6], 0, 3.0)
    axis = torch.linspace(-0.5, 1.5, 6, dtype=torch.float64)
    grid = golden_on_grid(classes[0], reward, (axis, axis), 0.7)
    opt = optimal_guidance(classes[0], reward, torch.cartesian_prod(axis, axis), 0.7, method="gh", tol=1e-7)
    assert rel_err(opt.grad_log_E, grid.grad_log_E.reshape(-1, 2)) < 1e-6


@pytest.mark.parametrize("w", [0.5, 2.0, 4.0, 8.0])
@pytest.mark.parametrize("abar", [0.05, 0.3, 0.8])
def test_divergence_matches_the_1d_condition(w, abar):
    """CFG with cond wider than uncond: E_t < inf iff (1+w)/s_c^2 - w/s_u^2 + abar/(1-abar) > 0."""
    s_c, s_u = 0.5, 0.3
    cond = GaussianMixture.from_1d([0.4, 0.6], [0.0, 1.0], [s_c, 0.2])
    uncond = GaussianMixture.from_1d([1.0, 1.0], [0.5, -0.5], [s_u, 0.1])
    reward = CFGReward(cond, uncond, w)
    x = torch.zeros(3, 1, dtype=torch.float64)
    finite = (1 + w) / s_c**2 - w / s_u**2 + abar / (1 - abar) > 0
    if finite:
        check_integrable(cond, reward, abar)
        assert torch.all(torch.isfinite(optimal_guidance(cond, reward, x, abar).golden))
    else:
        with pytest.raises(ValueError, match="diverges"):
            optimal_guidance(cond, reward, x, abar)


def test_divergence_in_closed_form_and_2d():
    cond = GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 0.0], [0.0, 0.04]]])
    uncond = GaussianMixture([1.0], [[0.0, 0.0]], [[[0.25, 0.0], [0.0, 1.0]]])
    # along axis 0, (1+w) - 4w + lam < 0 for w = 3, abar = 0.5
    with pytest.raises(ValueError, match="diverges"):
        optimal_guidance(cond, CFGReward(cond, uncond, 3.0), torch.zeros(1, 2), 0.5)
    assert torch.isfinite(optimal_guidance(cond, CFGReward(cond, uncond, 0.2), torch.zeros(1, 2), 0.5).log_E).all()


def test_bad_arguments():
    cond, uncond = paper_pair()
    reward = CFGReward(cond, uncond, 1.0)
    x = torch.zeros(2, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="unknown method"):
        optimal_guidance(cond, reward, x, 0.5, method="simpson")
    with pytest.raises(ValueError, match="quadratic"):
        optimal_guidance(cond, reward, x, 0.5, method="closed")
    with pytest.raises(ValueError, match="tol"):
        optimal_guidance(cond, reward, x, 0.5, tol=0)
    with pytest.raises(ValueError, match="abar"):
        optimal_guidance(cond, reward, x, 0.0)
    with pytest.raises(ValueError, match="shape"):
        optimal_guidance(cond, reward, torch.zeros(2, 2), 0.5)
    c3 = random_mixture(3, 2, 1)
    with pytest.raises(ValueError, match="is for d <= 2"):
        optimal_guidance(c3, CFGReward(c3, random_mixture(3, 2, 2), 1.0), torch.zeros(1, 3), 0.5, method="gh")
    with pytest.raises(RuntimeError, match="did not reach"):
        optimal_guidance(cond, CFGReward(cond, uncond, 6.0), x, 0.3, method="gh", tol=1e-15, max_nodes=32)


@pytest.mark.parametrize("d", [1, 2])
def test_grid_method_at_points_matches_grid_route_and_estimates_its_error(d):
    cond, uncond = random_mixture(d, 2, 1000 + d), random_mixture(d, 2, 1100 + d, scale=0.5)
    reward = CFGReward(cond, uncond, 1.2)
    axis = torch.linspace(-0.5, 1.5, 7, dtype=torch.float64)
    grid = golden_on_grid(cond, reward, (axis,) * d, 0.75)
    pts = torch.cartesian_prod(*(axis,) * d).reshape(-1, d)
    opt = optimal_guidance(cond, reward, pts, 0.75)
    assert opt.method == "grid"
    assert rel_err(opt.grad_log_E, grid.grad_log_E.reshape(-1, d)) < 1e-10
    assert opt.err_grad.max() < 1e-8  # the coarse and fine quadratures agree
    torch.testing.assert_close(opt.tilted_mean, cond.posterior(pts, 0.75).mean() + opt.grad_log_E * 0.25 / 0.75**0.5)
