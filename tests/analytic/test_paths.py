"""Exact mixture fields on any path (analytic.paths) against independent routes: the marginal's own closed-form
gradient, finite differences, the VP and VE forms of GaussianMixture, a single Gaussian by hand, the continuity
equation (which pins the velocity down without Tweedie), and the optimum derived for flows."""
from __future__ import annotations

import math

import pytest
import torch

from analytic import CFGReward, GaussianMixture, MixtureVelocity, optimal_guidance, path_fields, path_marginal
from sampler import LINEAR, MixtureModel, VelocityModel, VEPath, VPPath

from .conftest import paper_pair, random_mixture

F64 = torch.float64
PATHS = [LINEAR, VPPath(), VEPath(3.0)]
TIMES = [0.05, 0.3, 0.6, 0.9]


def _x(n: int, d: int, seed: int = 0, scale: float = 1.5) -> torch.Tensor:
    return scale * torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("path", PATHS, ids=repr)
@pytest.mark.parametrize("d", [1, 2])
def test_score_matches_the_marginal_gradient_and_finite_differences(path, d):
    mix = random_mixture(d, 3, seed=d)
    x = _x(7, d, seed=1)
    for t in TIMES:
        f = path_fields(mix, path, x, t)
        marg = path_marginal(mix, path, t)
        torch.testing.assert_close(f.score, marg.grad_log_prob(x), rtol=1e-10, atol=1e-10)  # closed form
        h = 1e-5
        fd = torch.stack([(marg.log_prob(x + h * e) - marg.log_prob(x - h * e)) / (2 * h)
                          for e in torch.eye(d, dtype=F64)], 1)
        torch.testing.assert_close(f.score, fd, rtol=1e-6, atol=1e-7)


def test_vp_and_ve_paths_match_the_vp_and_ve_forms():
    mix = random_mixture(2, 3, seed=4)
    x = _x(6, 2, seed=2)
    for t in TIMES:
        p = VPPath().at(t)
        abar = p.alpha**2
        marg, vp = path_marginal(mix, VPPath(), t), mix.noised(abar)
        torch.testing.assert_close(marg.means, vp.means, rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(marg.covs, vp.covs, rtol=1e-13, atol=1e-13)
        f = path_fields(mix, VPPath(), x, t)
        torch.testing.assert_close(f.eps, mix.eps(x, abar), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(f.score, mix.score(x, abar), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(f.x0, mix.posterior(x, abar).mean(), rtol=1e-10, atol=1e-10)
        sig = VEPath(3.0).at(t).sigma
        g = path_fields(mix, VEPath(3.0), x, t)
        torch.testing.assert_close(g.score, mix.score_ve(x, sig), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(g.x0, mix.denoise(x, sig), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(g.velocity, 3.0 * g.eps, rtol=1e-12, atol=1e-12)  # VE: v = sigma_max eps


def test_single_gaussian_on_the_linear_path_by_hand():
    """x_0 ~ N(mu, S^2): x_t ~ N((1-t) mu, (1-t)^2 S^2 + t^2), E[x_0|x_t] = mu + (1-t) S^2 (x_t - (1-t) mu) / var,
    E[eps|x_t] = t (x_t - (1-t) mu) / var, v = eps - x0 = (x_t - x0) / t."""
    mu, S = 0.7, 0.4
    mix = GaussianMixture.from_1d([1.0], [mu], [S])
    x = _x(9, 1, seed=3)
    for t in TIMES:
        var = (1 - t) ** 2 * S**2 + t**2
        innov = x - (1 - t) * mu
        x0 = mu + (1 - t) * S**2 * innov / var
        eps = t * innov / var
        f = path_fields(mix, LINEAR, x, t)
        torch.testing.assert_close(f.x0, x0, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(f.eps, eps, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(f.score, -innov / var, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(f.velocity, eps - x0, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(f.velocity, (x - x0) / t, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("path", PATHS, ids=repr)
@pytest.mark.parametrize("d", [1, 2])
def test_velocity_solves_the_continuity_equation(path, d):
    """d/dt log p_t = -div v - v . grad log p_t: the left side by a finite difference in t of the marginal's
    closed-form density, the divergence by autograd; no Tweedie and no velocity formula on the left."""
    mix = random_mixture(d, 2, seed=10 + d)
    x = _x(5, d, seed=4, scale=1.0)
    h = 1e-5
    for t in TIMES:
        dlogp = (path_marginal(mix, path, t + h).log_prob(x) - path_marginal(mix, path, t - h).log_prob(x)) / (2 * h)
        xg = x.clone().requires_grad_(True)
        v = path_fields(mix, path, xg, t).velocity
        div = sum(torch.autograd.grad(v[:, i].sum(), xg, retain_graph=True)[0][:, i] for i in range(d))
        rhs = -div - (v * path_marginal(mix, path, t).grad_log_prob(x)).sum(1)
        torch.testing.assert_close(dlogp, rhs.detach(), rtol=1e-7, atol=1e-8)  # FD error O(h^2): about 1e-8 relative


def test_optimal_velocity_is_the_tilted_mean_in_velocity_units():
    """flow_guidance's derivation: v* = v_c - t/(1-t) grad_{x_t} log E_t = (x_t - m_R) / t on the linear path, with
    grad log E_t and m_R from analytic.golden (posterior quadrature in VP coordinates, an independent route)."""
    cond, uncond = paper_pair()
    reward = CFGReward(cond, uncond, 1.0)
    x_t = torch.linspace(-1.0, 2.0, 7, dtype=F64)[:, None]
    for t in (0.1, 0.4, 0.7):
        s = t / (1 - t)
        abar = 1 / (1 + s**2)
        og = optimal_guidance(cond, reward, math.sqrt(abar) * x_t / (1 - t), abar, tol=1e-11)
        grad_t = og.grad_log_E * math.sqrt(abar) / (1 - t)  # x_vp = sqrt(abar) x_t / (1 - t)
        v_c = path_fields(cond, LINEAR, x_t, t).velocity
        torch.testing.assert_close(v_c - t / (1 - t) * grad_t, (x_t - og.tilted_mean) / t, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_mixture_velocity_through_the_adapter_is_the_exact_denoiser(path):
    mixes = {0: random_mixture(4, 2, seed=5), None: random_mixture(4, 3, seed=6)}
    model, exact = VelocityModel(MixtureVelocity(mixes, path), path), MixtureModel(mixes)
    x = _x(3, 4, seed=7).reshape(3, 1, 2, 2)
    for t in TIMES:
        s = path.at(t).contract_sigma
        for c in (0, None):
            torch.testing.assert_close(model(x, s, c), exact(x, s, c), rtol=1e-11, atol=1e-11)
    x32 = x.float()
    assert model(x32, 0.5, 0).dtype == torch.float32


def test_bad_input():
    mix = random_mixture(2, 2, seed=8)
    x = _x(3, 2)
    for bad_t in (-0.1, 1.2, math.nan):
        with pytest.raises(ValueError, match="t must"):
            path_fields(mix, LINEAR, x, bad_t)
        with pytest.raises(ValueError, match="t must"):
            path_marginal(mix, LINEAR, bad_t)
    with pytest.raises(ValueError, match="t must be > 0"):
        path_fields(mix, LINEAR, x, 0.0)
    with pytest.raises(ValueError, match="pure noise"):
        path_fields(mix, LINEAR, x, 1.0)
    with pytest.raises(ValueError, match="shape"):
        path_fields(mix, LINEAR, _x(3, 3), 0.5)
    with pytest.raises(ValueError, match="Path"):
        path_fields(mix, "linear", x, 0.5)
    with pytest.raises(ValueError, match="GaussianMixture"):
        path_marginal("mix", LINEAR, 0.5)
    net = MixtureVelocity({0: mix}, LINEAR)
    with pytest.raises(ValueError, match="one time"):
        net(x, torch.tensor([0.1, 0.2, 0.3]), 0)
    with pytest.raises(ValueError, match="no mixture"):
        net(x, torch.full((3,), 0.5), 1)
    with pytest.raises(ValueError, match="at least one"):
        MixtureVelocity({}, LINEAR)
    # the marginal at the path's ends is the data (t = 0) and pure noise (t = 1)
    torch.testing.assert_close(path_marginal(mix, LINEAR, 0.0).covs, mix.covs)
    torch.testing.assert_close(path_marginal(mix, LINEAR, 1.0).covs, torch.eye(2, dtype=F64).expand(2, 2, 2))
