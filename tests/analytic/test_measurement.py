"""analytic.measurement: the linear-Gaussian measurement reward, the exact mixture posterior and DPS's bias, each
against an independent route (quadrature, Monte Carlo, scipy, hand-derived single-Gaussian forms)."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from analytic import GaussianMixture, MeasurementReward, dps_bias, dps_gap, optimal_guidance
from tests.helpers import random_mixture

DT = torch.float64


def _grid_2d(lo, hi, n):
    ax = torch.linspace(lo, hi, n, dtype=DT)
    X, Y = torch.meshgrid(ax, ax, indexing="ij")
    return ax, torch.stack([X, Y], -1).reshape(-1, 2)


def _trap2(values, ax):
    return torch.trapezoid(torch.trapezoid(values.reshape(ax.numel(), ax.numel()), ax, dim=1), ax).item()


@pytest.fixture
def problem():
    """A 2-D mixture measured through a projection to 1-D (A = [[1, 0.5]])."""
    prior = GaussianMixture([0.3, 0.7], [[0.0, 1.0], [1.5, -0.5]],
                            [[[0.3, 0.1], [0.1, 0.2]], [[0.2, 0.0], [0.0, 0.4]]])
    return prior, MeasurementReward([[1.0, 0.5]], [0.7], 0.3)


def test_posterior_and_evidence_against_2d_quadrature(problem):
    prior, r = problem
    ax, pts = _grid_2d(-5.0, 6.0, 601)
    log_joint = prior.log_prob(pts) + r.log_r0(pts)
    Z = _trap2(log_joint.exp(), ax)
    assert r.log_evidence(prior) == pytest.approx(math.log(Z), abs=1e-9)
    post = r.posterior(prior)
    dens = (log_joint - math.log(Z)).exp()
    assert torch.allclose(post.log_prob(pts).exp(), dens, atol=1e-10)
    mean_q = torch.tensor([_trap2(dens * pts[:, i], ax) for i in range(2)], dtype=DT)
    assert torch.allclose(post.weights @ post.means, mean_q, atol=1e-9)
    second = _trap2(dens * pts[:, 0] * pts[:, 1], ax)
    mixture_second = (post.weights * (post.covs[:, 0, 1] + post.means[:, 0] * post.means[:, 1])).sum().item()
    assert mixture_second == pytest.approx(second, abs=1e-9)


def test_evidence_and_single_component_posterior_against_scipy():
    prior = random_mixture(3, 1, seed=4)
    A = torch.tensor([[1.0, -0.3, 0.2], [0.1, 0.8, 0.5]], dtype=DT)
    y = torch.tensor([0.4, -0.2], dtype=DT)
    r = MeasurementReward(A, y, 0.25)
    mu, S = prior.means[0].numpy(), prior.covs[0].numpy()
    An = A.numpy()
    # the joint of (x_0, y) is Gaussian: condition it with scipy's own linear algebra
    joint_cov = np.block([[S, S @ An.T], [An @ S, An @ S @ An.T + 0.25**2 * np.eye(2)]])
    assert r.log_evidence(prior) == pytest.approx(
        stats.multivariate_normal(An @ mu, joint_cov[3:, 3:]).logpdf(y.numpy()), abs=1e-12)
    gain = np.linalg.solve(joint_cov[3:, 3:], joint_cov[3:, :3]).T
    post = r.posterior(prior)
    np.testing.assert_allclose(post.means[0].numpy(), mu + gain @ (y.numpy() - An @ mu), atol=1e-12)
    np.testing.assert_allclose(post.covs[0].numpy(), S - gain @ joint_cov[3:, :3], atol=1e-12)


def test_posterior_mean_any_a_against_monte_carlo():
    """d = 3, m = 2: self-normalised importance sampling from the prior, with its standard error."""
    prior = random_mixture(3, 3, seed=1)
    r = MeasurementReward(torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]], dtype=DT), [0.9, 0.1], 0.6)
    x = prior.sample(400_000, torch.Generator().manual_seed(0))
    w = torch.softmax(r.log_r0(x), 0)
    mc = (w[:, None] * x).sum(0)
    se = ((w[:, None] ** 2) * (x - mc) ** 2).sum(0).sqrt()
    post = r.posterior(prior)
    assert torch.all((post.weights @ post.means - mc).abs() < 5 * se + 1e-12)


def test_tilted_law_is_the_posterior(problem):
    prior, r = problem
    x = prior.sample(50, torch.Generator().manual_seed(1))
    post = r.posterior(prior)
    assert torch.allclose(prior.log_prob(x) + r.log_r0(x) - r.log_evidence(prior), post.log_prob(x), atol=1e-12)


@pytest.mark.parametrize("method", ["closed", "gh", "grid"])
def test_optimal_guidance_is_the_posteriors_diffusion(problem, method):
    """E_t = p(y | x_t) = p_t^post(x_t) p(y) / p_t(x_t), and the tilted mean is the posterior's Tweedie mean;
    the closed form (the reward is exp-quadratic) against Gauss-Hermite and the grid."""
    prior, r = problem
    post, log_Z = r.posterior(prior), r.log_evidence(prior)
    for a in (0.05, 0.5, 0.95):
        x_t = prior.noised(a).sample(20, torch.Generator().manual_seed(2))
        og = optimal_guidance(prior, r, x_t, a, method=method)
        assert torch.allclose(og.log_E, post.noised(a).log_prob(x_t) + log_Z - prior.noised(a).log_prob(x_t),
                              atol=1e-7)
        assert torch.allclose(og.tilted_mean, post.posterior(x_t, a).mean(), atol=1e-7)
        assert torch.allclose(og.grad_log_E, post.score(x_t, a) - prior.score(x_t, a), atol=1e-6)


def test_auto_route_is_closed_form(problem):
    prior, r = problem
    assert optimal_guidance(prior, r, torch.zeros(1, 2, dtype=DT), 0.5).method == "closed"


def test_quadratic_and_tail_curvature_match_log_r0(problem):
    _, r = problem
    x = torch.randn(30, 2, dtype=DT, generator=torch.Generator().manual_seed(3))
    A, b, c = r.quadratic()
    assert torch.allclose(-0.5 * torch.einsum("ni,ij,nj->n", x, A, x) + x @ b + c, r.log_r0(x), atol=1e-12)
    u = torch.nn.functional.normalize(x, dim=1)
    rho = 1e5
    assert torch.allclose(-2 * r.log_r0(rho * u) / rho**2, r.tail_curvature(u), rtol=1e-4, atol=1e-4)  # O(1/rho) rest
    assert r.centres().shape == (1, 2) and r.log_r0(r.centres()) == pytest.approx(r.quadratic().c + 0.5 * 0.7**2 / 0.09)


def test_present_time_reward_is_the_flat_prior_likelihood_of_the_noised_signal():
    """1-D: log R_t(x_t) = log int N(y; A x0, s^2) N(x0; x_t / sqrt(a), (1 - a)/a) dx0 by quadrature, and
    present = -sqrt(1 - a) grad log R_t by autograd."""
    r = MeasurementReward([[1.3]], [0.4], 0.5)
    a, x_t = 0.7, torch.tensor([[-0.8], [0.3], [1.9]], dtype=DT)
    x0 = torch.linspace(-15, 15, 60001, dtype=DT)
    for i in range(3):
        f = (r.log_r0(x0[:, None]) + torch.distributions.Normal(x_t[i, 0] / math.sqrt(a), math.sqrt((1 - a) / a))
             .log_prob(x0)).exp()
        assert r.log_rt(x_t[i:i + 1], a).item() == pytest.approx(math.log(torch.trapezoid(f, x0).item()), abs=1e-9)
    x = x_t.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(r.log_rt(x, a).sum(), x)
    assert torch.allclose(r.present(x_t, a), -math.sqrt(1 - a) * g, atol=1e-12)
    assert torch.allclose(r.log_rt(x_t, 1.0), r.log_r0(x_t), atol=1e-12)


def _single_gaussian_dps(mu, v, s, y, a, x_t):
    """Hand-derived (A = I, prior N(mu, v), 1-D): x0_hat = mu + k (x_t - sqrt(a) mu), k = sqrt(a) v / (a v + 1 - a),
    V = v (1 - a) / (a v + 1 - a); E_t = N(y; x0_hat, V + s^2), DPS reads N(y; x0_hat, s^2)."""
    k = math.sqrt(a) * v / (a * v + 1 - a)
    V = v * (1 - a) / (a * v + 1 - a)
    m = mu + k * (x_t - math.sqrt(a) * mu)
    lnN = lambda var: -0.5 * (math.log(2 * math.pi * var) + (y - m) ** 2 / var)  # noqa: E731
    return lnN(V + s * s), lnN(s * s), k * (y - m) / (V + s * s), k * (y - m) / (s * s), V


def test_dps_is_not_exact_for_a_single_gaussian_with_identity_a():
    """Pinned: DPS's gradient is (V + s^2) / s^2 times the exact one (it ignores the posterior variance V), so it
    overshoots at every level with abar < 1; the log gap is the hand-derived difference of two Gaussian logs."""
    mu, v, s, y = 0.5, 0.8, 0.3, 1.4
    prior, r = GaussianMixture.from_1d([1.0], [mu], [math.sqrt(v)]), MeasurementReward([[1.0]], [y], s)
    x_t = torch.linspace(-2, 2, 9, dtype=DT)[:, None]
    for a in (0.1, 0.5, 0.9):
        g = dps_gap(prior, r, x_t, a)
        log_E, log_r, grad_E, grad_dps, V = _single_gaussian_dps(mu, v, s, y, a, x_t[:, 0])
        assert torch.allclose(g.log_E, log_E, atol=1e-12) and torch.allclose(g.log_r_hat, log_r, atol=1e-12)
        assert torch.allclose(g.grad_exact[:, 0], grad_E, atol=1e-12)
        assert torch.allclose(g.grad_dps[:, 0], grad_dps, atol=1e-12)
        assert torch.allclose(g.grad_dps, (V + s * s) / (s * s) * g.grad_exact, atol=1e-12)
        assert (V + s * s) / (s * s) > 1.5  # not exact: the overshoot factor at these levels is 1.9 to 7.1
        assert torch.allclose(g.field_error, -math.sqrt(1 - a) * (g.grad_dps - g.grad_exact), atol=1e-15)
    at_data = dps_gap(prior, r, x_t, 1.0)  # abar = 1: x0_hat = x_0, V = 0, DPS is exact
    assert torch.allclose(at_data.gap, torch.zeros(9, dtype=DT), atol=1e-12)


def test_dps_bias_against_its_closed_form_expectation():
    """Single Gaussian, A = I: x_t ~ p_t(x_t | y) is Gaussian, so E[gap] is closed form; the estimate lies within
    4 of its standard errors."""
    mu, v, s, y = 0.5, 0.8, 0.3, 1.4
    prior, r = GaussianMixture.from_1d([1.0], [mu], [math.sqrt(v)]), MeasurementReward([[1.0]], [y], s)
    vp = 1 / (1 / v + 1 / s**2)
    mp = vp * (mu / v + y / s**2)
    levels = [0.2, 0.6]
    bias = dps_bias(prior, r, levels, n=4000, generator=torch.Generator().manual_seed(5))
    assert bias.abar.tolist() == levels and bias.n == 4000
    for i, a in enumerate(levels):
        k = math.sqrt(a) * v / (a * v + 1 - a)
        V = v * (1 - a) / (a * v + 1 - a)
        e_res = y - mu - k * math.sqrt(a) * (mp - mu)
        e_sq = e_res**2 + k**2 * (a * vp + 1 - a)  # E[(y - x0_hat)^2]
        expected = -0.5 * math.log((V + s * s) / (s * s)) - 0.5 * e_sq * (1 / (V + s * s) - 1 / (s * s))
        assert abs(bias.mean_gap[i].item() - expected) < 4 * bias.err_mean_gap[i].item()
        assert bias.err_mean_gap[i] < 0.05 and bias.rms_field_error[i] > 0.1


def test_dps_gap_on_a_mixture_matches_quadrature_of_the_expectation(problem):
    """2-D mixture, projection to 1-D: log E[R_0 | x_t] by brute-force quadrature over x_0 of
    p(x_0) q(x_t | x_0) R_0(x_0) / p_t(x_t), independent of the posterior machinery."""
    prior, r = problem
    a = 0.4
    x_t = prior.noised(a).sample(4, torch.Generator().manual_seed(6))
    g = dps_gap(prior, r, x_t, a)
    ax, pts = _grid_2d(-5.0, 6.0, 501)
    for i in range(4):
        log_q = -0.5 * ((x_t[i] - math.sqrt(a) * pts) ** 2).sum(-1) / (1 - a) - math.log(2 * math.pi * (1 - a))
        num = _trap2((prior.log_prob(pts) + log_q + r.log_r0(pts)).exp(), ax)
        assert g.log_E[i].item() == pytest.approx(math.log(num) - prior.noised(a).log_prob(x_t[i:i + 1]).item(),
                                                  abs=1e-8)
    x = x_t.clone().requires_grad_(True)
    (fd,) = torch.autograd.grad(r.log_r0(prior.posterior(x, a).mean()).sum(), x)
    h = 1e-6
    for j in range(2):
        e = torch.zeros(2, dtype=DT)
        e[j] = h
        f = lambda z: r.log_r0(prior.posterior(z, a).mean())  # noqa: E731
        num_grad = (f(x_t + e) - f(x_t - e)) / (2 * h)
        assert torch.allclose(g.grad_dps[:, j], num_grad, atol=1e-6)


@pytest.mark.parametrize("kw, match", [
    (dict(A=[1.0, 2.0], y=[0.0], s=1.0), "A must have shape"),
    (dict(A=[[1.0, 2.0]], y=[0.0, 1.0], s=1.0), "y must have shape"),
    (dict(A=[[1.0, float("nan")]], y=[0.0], s=1.0), "A has non-finite"),
    (dict(A=[[1.0, 2.0]], y=[float("inf")], s=1.0), "y has non-finite"),
    (dict(A=[[1.0, 2.0]], y=[0.0], s=0.0), "s \\(the measurement noise std\\) must be > 0"),
    (dict(A=[[1.0, 2.0]], y=[0.0], s="1"), "s \\(the measurement noise std\\)"),
    (dict(A="abc", y=[0.0], s=1.0), "A must be an array"),
    # issue 20: s^2 underflowing (posterior blamed a covariance) and A^T A / s^2 overflowing (blamed 'weights')
    (dict(A=[[1.0, 0.0]], y=[0.5], s=1e-200), "s \\(the measurement noise std\\) = 1e-200 is too small"),
    (dict(A=[[1e200, 0.0]], y=[0.5], s=0.1), "A has entries up to 1e\\+200"),
])
def test_bad_measurements_are_value_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        MeasurementReward(**kw)


def test_bad_arguments_name_themselves(problem):
    prior, r = problem
    with pytest.raises(ValueError, match="dimension"):
        r.posterior(random_mixture(3, 2, seed=0))
    with pytest.raises(ValueError, match="prior must be"):
        r.posterior("not a mixture")
    with pytest.raises(ValueError, match="n must be"):
        dps_bias(prior, r, [0.5], n=1)
    with pytest.raises(ValueError, match="abar"):
        dps_bias(prior, r, [0.0])
    with pytest.raises(ValueError, match="MeasurementReward"):
        from analytic import CFGReward
        dps_bias(prior, CFGReward(prior, prior, 1.0), [0.5])
    with pytest.raises(ValueError, match="x_t"):
        dps_gap(prior, r, torch.zeros(3, 3, dtype=DT), 0.5)


def test_a_posterior_float64_cannot_hold_names_the_measurement():
    """Issue 20: a posterior narrower than float64 can represent was refused naming only a covariance/means."""
    prior = GaussianMixture([0.5, 0.5], [[-1.0, 0.5], [1.0, -0.5]], torch.stack([torch.eye(2, dtype=DT)] * 2))
    MeasurementReward([[1.0, 0.0]], [0.5], 1e-100).posterior(prior)  # narrow but representable: fine
    with pytest.raises(ValueError, match="posterior p\\(x_0 \\| y\\) of this measurement \\(s=1e-150"):
        MeasurementReward([[1.0, 0.0]], [0.5], 1e-150).posterior(prior)


def test_dps_bias_checks_generator_and_bounds_its_memory(problem):
    """Issue 20: generator='x' was torch's TypeError from multinomial; n=10**9 allocated without bound (a hang)."""
    import time

    from analytic.measurement import MAX_DPS_BYTES

    prior, r = problem
    with pytest.raises(ValueError, match="generator must be a torch.Generator or None, got str"):
        dps_bias(prior, r, [0.5], n=8, generator="x")
    t = time.process_time()
    with pytest.raises(ValueError, match="n=1000000000 draws per level would need about .* GiB"):
        dps_bias(prior, r, [0.5], n=10**9)
    assert time.process_time() - t < 1.0  # refused before anything is drawn
    per_draw = 64 * prior.n_components * (prior.dim**2 + prior.dim)
    dps_bias(prior, r, [0.5], n=16, generator=torch.Generator().manual_seed(0))  # within the bound: runs
    with pytest.raises(ValueError, match="n="):
        dps_bias(prior, r, [0.5], n=MAX_DPS_BYTES // per_draw + 1)
