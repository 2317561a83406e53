"""The component-major score and log-density of :class:`analytic.GaussianMixture` against independent routes:
autograd of ``log_prob``, and a direct ``torch.linalg.solve`` on the covariances (no Cholesky, no whitening), on
random mixtures in d = 1, 2, 3, including ill-conditioned covariances and points far from the means."""
from __future__ import annotations

import math

import pytest
import torch

from analytic import GaussianMixture


def _random_mixture(g: torch.Generator, d: int, K: int, cond_decades: float) -> GaussianMixture:
    """Random rotations with eigenvalues spread over ``cond_decades`` decades (condition number 10**cond_decades)."""
    Q = torch.linalg.qr(torch.randn(K, d, d, dtype=torch.float64, generator=g))[0]
    eig = 10 ** (cond_decades * (torch.rand(K, d, dtype=torch.float64, generator=g) - 1))
    eig[:, 0] = 1.0
    if d > 1:
        eig[:, 1] = 10 ** -cond_decades
    covs = Q @ torch.diag_embed(eig) @ Q.transpose(-1, -2)
    return GaussianMixture(torch.rand(K, dtype=torch.float64, generator=g) + 0.1,
                           2 * torch.randn(K, d, dtype=torch.float64, generator=g), covs)


def _direct_score(m: GaussianMixture, x: torch.Tensor) -> torch.Tensor:
    """``-sum_k r_k S_k^{-1} (x - mu_k)`` with general solves and the log-determinant from ``slogdet``."""
    diff = x[:, None, :] - m.means  # [N, K, d]
    sol = torch.linalg.solve(m.covs, diff.unsqueeze(-1)).squeeze(-1)  # [N, K, d]
    logdet = torch.linalg.slogdet(m.covs)[1]
    logits = m.log_weights - 0.5 * (m.dim * math.log(2 * math.pi) + logdet + (diff * sol).sum(-1))
    return -(torch.softmax(logits, dim=1)[..., None] * sol).sum(1)


def _points(g: torch.Generator, m: GaussianMixture, n: int, spread: float) -> torch.Tensor:
    x = m.means[torch.randint(m.n_components, (n,), generator=g)]
    return x + spread * torch.randn(n, m.dim, dtype=torch.float64, generator=g)


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("cond_decades", [0.0, 6.0])
def test_score_against_autograd_and_direct_solve(d, cond_decades):
    g = torch.Generator().manual_seed(10 * d + int(cond_decades))
    for K in (1, 2, 4):
        base = _random_mixture(g, d, K, cond_decades)
        for abar in (1.0, 0.9, 0.1):
            m = base.noised(abar)
            x = _points(g, base.noised(abar), 300, 1.0)  # near the modes, where ill-conditioned directions matter
            x = torch.cat([x, 3.0 * torch.randn(100, d, dtype=torch.float64, generator=g)])
            score = m.grad_log_prob(x)
            assert score.shape == (x.shape[0], d) and score.is_contiguous()
            xa = x.clone().requires_grad_(True)
            auto = torch.autograd.grad(m.log_prob(xa).sum(), xa)[0]
            direct = _direct_score(m, x)
            # reference errors grow with the condition number (general solves, squared norms of large offsets)
            tol = 1e-12 * 10**cond_decades
            scale = score.norm(dim=1).clamp_min(1.0)
            assert ((score - auto).norm(dim=1) / scale).max() < tol
            assert ((score - direct).norm(dim=1) / scale).max() < tol


@pytest.mark.parametrize("d", [1, 2, 3])
def test_far_points_score_and_eps(d):
    """Points 50-500 std from every mean: the score is ``-S^{-1}(x - mu)`` of the nearest (in Mahalanobis sense)
    component to rounding, against the direct route; ``eps = -sqrt(1 - abar) score``."""
    g = torch.Generator().manual_seed(7 + d)
    m = _random_mixture(g, d, 3, 2.0)
    x = torch.randn(200, d, dtype=torch.float64, generator=g)
    x = x / x.norm(dim=1, keepdim=True) * (50 + 450 * torch.rand(200, 1, dtype=torch.float64, generator=g))
    for abar in (0.99, 0.5):
        n = m.noised(abar)
        score, direct = n.grad_log_prob(x), _direct_score(n, x)
        assert ((score - direct).norm(dim=1) / direct.norm(dim=1)).max() < 1e-9
        assert torch.allclose(m.eps(x, abar), -math.sqrt(1 - abar) * score, rtol=1e-15, atol=0)
        assert torch.equal(m.score(x, abar), score)


def test_component_log_prob_layout_and_values():
    g = torch.Generator().manual_seed(3)
    m = _random_mixture(g, 2, 3, 3.0)
    x = _points(g, m, 50, 0.5)
    comp = m.component_log_prob(x)
    assert comp.shape == (50, 3) and comp.is_contiguous()
    for k in range(3):
        ref = torch.distributions.MultivariateNormal(m.means[k], m.covs[k]).log_prob(x) + m.log_weights[k]
        assert torch.allclose(comp[:, k], ref, rtol=1e-12, atol=1e-10)
    assert torch.allclose(m.log_prob(x), torch.logsumexp(comp, dim=1), rtol=1e-14, atol=1e-13)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_points_still_rejected(bad):
    m = GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 0.0], [0.0, 1.0]]])
    x = torch.zeros(5, 2, dtype=torch.float64)
    x[3, 1] = bad
    with pytest.raises(ValueError, match="x has non-finite entries"):
        m.grad_log_prob(x)
    with pytest.raises(ValueError, match="x_t has non-finite entries"):
        m.posterior(x, 0.5)
