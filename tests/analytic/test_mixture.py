import math

import numpy as np
import pytest
import torch
from scipy import stats

from analytic import GaussianMixture, eps_jacobian

from .conftest import random_mixture


def scipy_log_prob(m: GaussianMixture, x: torch.Tensor) -> np.ndarray:
    comps = [
        math.log(w) + stats.multivariate_normal(mu.numpy(), S.numpy()).logpdf(x.numpy())
        for w, mu, S in zip(m.weights.tolist(), m.means, m.covs)
    ]
    comps = np.stack([np.atleast_1d(c) for c in comps], 1)
    return np.logaddexp.reduce(comps, axis=1)


@pytest.mark.parametrize("d,K", [(1, 1), (1, 3), (2, 2), (3, 4)])
def test_log_prob_matches_scipy(d, K):
    m = random_mixture(d, K, seed=10 * d + K)
    x = torch.randn(50, d, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2
    np.testing.assert_allclose(m.log_prob(x).numpy(), scipy_log_prob(m, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_score_matches_autograd_and_finite_differences(d):
    m = random_mixture(d, 3, seed=d)
    x = torch.randn(20, d, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    a = 0.6
    xr = x.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(m.noised(a).log_prob(xr).sum(), xr)
    torch.testing.assert_close(m.score(x, a), auto, rtol=1e-12, atol=1e-12)
    h = 1e-5
    fd = torch.stack([(m.noised(a).log_prob(x + h * e) - m.noised(a).log_prob(x - h * e)) / (2 * h)
                      for e in torch.eye(d, dtype=torch.float64)], 1)
    torch.testing.assert_close(m.score(x, a), fd, rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(m.eps(x, a), -math.sqrt(1 - a) * m.score(x, a))


def test_posterior_matches_brute_force_bayes_on_a_grid():
    m = random_mixture(1, 3, seed=5)
    a = 0.7
    x_t = torch.tensor([[-0.3], [0.4], [1.7]], dtype=torch.float64)
    grid = torch.linspace(-6, 7, 20001, dtype=torch.float64)[:, None]
    h = (grid[1] - grid[0]).item()
    post = m.posterior(x_t, a)
    for i in range(3):
        log_joint = m.log_prob(grid) - (x_t[i, 0] - math.sqrt(a) * grid[:, 0]) ** 2 / (2 * (1 - a))
        dens = torch.softmax(log_joint, 0) / h
        # posterior of point i, evaluated on the grid
        single = type(post)(post.log_weights[i:i + 1].expand(grid.shape[0], -1),
                            post.means[i:i + 1].expand(grid.shape[0], -1, -1), post.covs)
        torch.testing.assert_close(single.log_prob(grid).exp(), dens, rtol=1e-6, atol=1e-9)
        mean = (dens * grid[:, 0]).sum() * h
        var = (dens * (grid[:, 0] - mean) ** 2).sum() * h
        torch.testing.assert_close(post.mean()[i, 0], mean, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(post.cov()[i, 0, 0], var, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("d", [1, 2])
def test_denoiser_is_posterior_mean_tweedie(d):
    m = random_mixture(d, 2, seed=7 + d)
    x = torch.randn(30, d, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    for sigma in [0.05, 0.5, 3.0]:
        a = 1 / (1 + sigma**2)
        torch.testing.assert_close(m.denoise(x, sigma), m.posterior(math.sqrt(a) * x, a).mean(),
                                   rtol=1e-10, atol=1e-10)


def test_second_order_tweedie_jacobian_is_posterior_covariance():
    """THEORY section 6: I - sqrt(1-abar) J = abar/(1-abar) Cov(x_0 | x_t) for the exact eps."""
    m = random_mixture(2, 3, seed=11)
    x = torch.randn(25, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    a = 0.55
    J = eps_jacobian(m, x, a)
    lhs = torch.eye(2, dtype=torch.float64) - math.sqrt(1 - a) * J
    torch.testing.assert_close(lhs, a / (1 - a) * m.posterior(x, a).cov(), rtol=1e-9, atol=1e-10)


def test_ve_and_vp_forms_are_one_process():
    m = random_mixture(2, 2, seed=12)
    x = torch.randn(10, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    sigma = 0.8
    a = 1 / (1 + sigma**2)
    # change of variables x_vp = sqrt(a) x_ve
    lhs = m.noised_ve(sigma).log_prob(x)
    rhs = m.noised(a).log_prob(math.sqrt(a) * x) + m.dim * 0.5 * math.log(a)
    torch.testing.assert_close(lhs, rhs)
    torch.testing.assert_close(m.score_ve(x, sigma), math.sqrt(a) * m.score(math.sqrt(a) * x, a))


def test_sampling_moments_and_determinism():
    m = random_mixture(2, 3, seed=13)
    s1 = m.sample(200_000, generator=torch.Generator().manual_seed(0))
    s2 = m.sample(200_000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s1, s2)
    mean = m.weights @ m.means
    second = torch.einsum("k,kij->ij", m.weights, m.covs + torch.einsum("ki,kj->kij", m.means, m.means))
    cov = second - torch.outer(mean, mean)
    torch.testing.assert_close(s1.mean(0), mean, atol=0.01, rtol=0)
    torch.testing.assert_close(torch.cov(s1.T), cov, atol=0.02, rtol=0)


def test_abar_one_is_the_data():
    m = random_mixture(2, 2, seed=14)
    x = torch.randn(5, 2, dtype=torch.float64)
    torch.testing.assert_close(m.noised(1.0).log_prob(x), m.log_prob(x))
    post = m.posterior(x, 1.0)
    torch.testing.assert_close(post.mean(), x)
    assert torch.all(post.covs == 0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(weights=[1.0], means=[[0.0]], covs=[[[-1.0]]]), "not positive definite"),
    (dict(weights=[1.0], means=[[0.0, 0.0]], covs=[[[1.0, 0.5], [0.4, 1.0]]]), "not symmetric"),
    (dict(weights=[-0.5, 1.5], means=[[0.0], [1.0]], covs=[[[1.0]], [[1.0]]]), "non-negative"),
    (dict(weights=[0.0, 0.0], means=[[0.0], [1.0]], covs=[[[1.0]], [[1.0]]]), "all zero"),
    (dict(weights=[1.0, 1.0], means=[[0.0]], covs=[[[1.0]]]), "means must have shape"),
    (dict(weights=[1.0], means=[[0.0]], covs=[[[1.0, 0.0]]]), "covs must have shape"),
    (dict(weights=[1.0], means=[[math.nan]], covs=[[[1.0]]]), "non-finite"),
])
def test_bad_mixtures_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**kwargs)


def test_bad_points_and_levels_are_rejected():
    m = random_mixture(2, 2, seed=15)
    with pytest.raises(ValueError, match=r"shape \[N, 2\]"):
        m.log_prob(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="non-finite"):
        m.log_prob(torch.tensor([[0.0, math.inf]]))
    for bad in [0.0, -0.1, 1.5, math.nan]:
        with pytest.raises(ValueError, match="abar"):
            m.eps(torch.zeros(1, 2), bad)
    with pytest.raises(ValueError, match="sigma"):
        m.denoise(torch.zeros(1, 2), -1.0)
