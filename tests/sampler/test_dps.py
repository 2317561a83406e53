"""sampler.dps: DPS and the variance-corrected rule (TMPD, PiGDM) as guidance objects, against the exact analytic
answers: analytic.dps_gap for DPS's field, the exact posterior's Tweedie mean where the rule is exact (single
Gaussian prior), finite differences for the autograd gradient."""
import math

import pytest
import torch

from analytic import GaussianMixture, MeasurementReward, dps_gap, optimal_guidance
from sampler import DPS, MomentMatched, Unguided, pigdm_variance, sample
from tests.helpers import random_mixture

DT = torch.float64
A = torch.tensor([[1.0, 0.5]], dtype=DT)
Y = torch.tensor([0.7], dtype=DT)
S = 0.3


def _prior():
    return GaussianMixture([0.3, 0.7], [[0.0, 1.0], [1.5, -0.5]], [[[0.3, 0.1], [0.1, 0.2]], [[0.2, 0.0], [0.0, 0.4]]])


def _forward(x0):
    return x0.flatten(1) @ A.T


def _points(n=6, seed=0):
    return 1.5 * torch.randn(n, 2, dtype=DT, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("sigma", [0.2, 1.0, 3.0])
def test_dps_likelihood_step_is_analytic_dps_gradient(sigma):
    """delta = sigma^2 grad_{x_ve} log R_0(D(x)) = sigma^2 sqrt(abar) grad_{x_vp} (VP point x_vp = sqrt(abar) x)."""
    prior = _prior()
    x = _points()
    a = 1 / (1 + sigma**2)
    g = dps_gap(prior, MeasurementReward(A, Y, S), math.sqrt(a) * x, a)
    rule = DPS(prior.denoise, _forward, Y, S)
    with torch.no_grad():  # as samplers call it
        out = rule(x, sigma)
    assert torch.allclose(out - prior.denoise(x, sigma), sigma**2 * math.sqrt(a) * g.grad_dps, atol=1e-12)
    assert torch.allclose(rule.delta(x, sigma, prior.denoise(x, sigma)), out - prior.denoise(x, sigma), atol=1e-14)


def test_dps_gradient_against_finite_differences_and_the_normalised_step():
    prior, sigma, h = _prior(), 0.8, 1e-6
    x = _points(4, 1)
    f = lambda z: -((Y - prior.denoise(z, sigma) @ A.T) ** 2).sum(1) / (2 * S**2)  # noqa: E731
    fd = torch.stack([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in torch.eye(2, dtype=DT)], 1)
    lik = DPS(prior.denoise, _forward, Y, S, weight=0.7)
    assert torch.allclose(lik(x, sigma) - prior.denoise(x, sigma), 0.7 * sigma**2 * fd, atol=1e-8)
    res = (Y - prior.denoise(x, sigma) @ A.T).norm(dim=1, keepdim=True)
    for s in (S, 5.0):  # the paper's step does not depend on s
        norm = DPS(prior.denoise, _forward, Y, s, weight=0.7, step="normalised")
        # -zeta grad |r|^2 / |r| = zeta (2 s^2 grad log N) / |r|
        assert torch.allclose(norm(x, sigma) - prior.denoise(x, sigma), 0.7 * sigma**2 * fd * 2 * S**2 / res,
                              atol=1e-8)


def test_tmpd_is_exact_for_a_single_gaussian_prior_and_dps_is_not():
    """p(x_0 | x) is Gaussian with mean D and covariance sigma^2 dD/dx, constant in x: TMPD returns the exact
    posterior mean E[x_0 | x, y] (the optimum's tilted mean), which DPS misses."""
    prior = random_mixture(2, 1, seed=3)
    r = MeasurementReward(A, Y, S)
    post = r.posterior(prior)
    x = _points(8, 2)
    for sigma in (0.3, 1.0, 4.0):
        a = 1 / (1 + sigma**2)
        exact = post.denoise(x, sigma)
        assert torch.allclose(optimal_guidance(prior, r, math.sqrt(a) * x, a).tilted_mean, exact, atol=1e-12)
        tmpd = MomentMatched(prior.denoise, A, Y, S)(x, sigma)
        assert torch.allclose(tmpd, exact, atol=1e-10)
        dps_err = (DPS(prior.denoise, _forward, Y, S)(x, sigma) - exact).norm(dim=1).max().item()
        assert dps_err > 0.05


def test_pigdm_is_exact_for_a_standard_normal_prior():
    prior = GaussianMixture([1.0], [[0.0, 0.0]], [torch.eye(2, dtype=DT).tolist()])
    post = MeasurementReward(A, Y, S).posterior(prior)
    x = _points(5, 4)
    for sigma in (0.5, 2.0):
        out = MomentMatched(prior.denoise, A, Y, S, cov=pigdm_variance)(x, sigma)
        assert torch.allclose(out, post.denoise(x, sigma), atol=1e-12)
    assert pigdm_variance(2.0) == pytest.approx(0.8)


def test_tmpd_is_not_exact_on_a_mixture_prior():
    prior = _prior()
    post = MeasurementReward(A, Y, S).posterior(prior)
    x, sigma = _points(8, 5), 1.0
    err = (MomentMatched(prior.denoise, A, Y, S)(x, sigma) - post.denoise(x, sigma)).norm(dim=1).max().item()
    assert err > 1e-2


@pytest.mark.parametrize("make", [
    lambda cond: DPS(cond, lambda x0: x0.flatten(1)[:, :1], Y, S),
    lambda cond: DPS(cond, lambda x0: x0.flatten(1)[:, :1], Y, S, step="normalised"),
    lambda cond: MomentMatched(cond, torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=DT), Y, S),
    lambda cond: MomentMatched(cond, torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=DT), Y, S, cov=pigdm_variance),
])
def test_contract_image_shapes_dtype_seed_and_zero_weight(make):
    prior = random_mixture(4, 2, seed=6)
    cond = lambda x, s: prior.denoise(x.flatten(1), s).reshape(x.shape)  # noqa: E731
    rule = make(cond)
    x = torch.randn(3, 1, 2, 2, dtype=DT, generator=torch.Generator().manual_seed(0))
    assert rule(x, 1.0).shape == x.shape and rule(x, 1.0).dtype == DT
    sig = torch.tensor([4.0, 2.0, 1.0, 0.5, 0.0], dtype=DT)
    runs = [sample("ddim", rule, 4.0 * x, sig) for _ in range(2)]
    assert torch.equal(runs[0], runs[1]) and torch.all(torch.isfinite(runs[0]))
    off = type(rule)(**{**rule.__dict__, "weight": 0.0})
    assert not off.active(1.0) and torch.equal(off(x, 1.0), cond(x, 1.0))
    assert torch.equal(sample("ddim", off, 4.0 * x, sig), sample("ddim", Unguided(cond), 4.0 * x, sig))


def test_bad_input_names_the_argument():
    prior = _prior()
    with pytest.raises(ValueError, match="unknown step"):
        DPS(prior.denoise, _forward, Y, S, step="paper")
    with pytest.raises(ValueError, match="noise_std"):
        DPS(prior.denoise, _forward, Y, 0.0)
    with pytest.raises(ValueError, match="y must be a torch.Tensor"):
        DPS(prior.denoise, _forward, [0.7], S)
    with pytest.raises(ValueError, match="forward must be callable"):
        DPS(prior.denoise, None, Y, S)
    with pytest.raises(ValueError, match="A has 1 rows"):
        MomentMatched(prior.denoise, A, torch.zeros(2, dtype=DT), S)
    with pytest.raises(ValueError, match="cov must be"):
        MomentMatched(prior.denoise, A, Y, S, cov="diag")
    with pytest.raises(ValueError, match="A must be"):
        MomentMatched(prior.denoise, [[1.0, 0.5]], Y, S)
    with pytest.raises(ValueError, match="3 entries per sample but A has 2 columns"):
        MomentMatched(random_mixture(3, 1, seed=0).denoise, A, Y, S)(torch.zeros(2, 3, dtype=DT), 1.0)


_FWD = lambda z: z[:, :1]  # noqa: E731
_BAD = {  # name: (call on (prior, x1 [1, 2], x4 [4, 2]), the message)
    "y m=2, forward m=1": (lambda p, x1, x4: DPS(p.denoise, _FWD, torch.tensor([0.3, 0.2], dtype=DT), S)(x4, 1.0),
                           r"y has shape \(2,\), but forward \(output of shape \(4, 1\)\) gives 1 measured value"),
    "y [2, 1], batch 1": (lambda p, x1, x4: DPS(p.denoise, _FWD, torch.zeros(2, 1, dtype=DT), S)(x1, 1.0),
                          r"y has shape \(2, 1\), .* for a batch of 1: y must be \[1\] .* or \[1, 1\]"),
    "y [3, 1], batch 4": (lambda p, x1, x4: DPS(p.denoise, _FWD, torch.zeros(3, 1, dtype=DT), S)(x4, 1.0),
                          r"y has shape \(3, 1\)"),
    "forward via numpy": (lambda p, x1, x4: DPS(p.denoise, lambda z: torch.tensor(z.detach().numpy()[:, :1]), Y,
                                                S)(x4, 1.0),
                          "forward's output carries no autograd graph back to x"),
    "forward [N]": (lambda p, x1, x4: DPS(p.denoise, lambda z: z[:, 0], Y, S)(x4, 1.0),
                    r"forward must return a tensor \[N, m\] = \[4, m\] for a batch of 4, got shape \(4,\)"),
    "cond without graph": (lambda p, x1, x4: DPS(lambda z, s: torch.zeros_like(z) + 0.3, _FWD, Y, S,
                                                 step="normalised")(x4, 1.0),
                           "cond's output carries no autograd graph back to x"),
    "MM y [2, 1], batch 1": (lambda p, x1, x4: MomentMatched(p.denoise, A, torch.zeros(2, 1, dtype=DT), S)(x1, 1.0),
                             r"y has shape \(2, 1\), but A \(shape \(1, 2\)\) gives 1 measured value\(s\) per "
                             "sample for a batch of 1"),
    "MM cond without graph": (lambda p, x1, x4: MomentMatched(lambda z, s: torch.zeros_like(z), A, Y, S)(x4, 1.0),
                              "cond's output carries no autograd graph"),
}


@pytest.mark.parametrize("name", list(_BAD))
def test_measurement_shapes_and_a_broken_graph_are_clear_errors(name):
    """Issue 20 round 3: y of the wrong length or batch was broadcast silently (y [2] for m = 1; y [2, 1] for a
    batch of 1, summing both rows) or failed in torch (y [3, 1] for a batch of 4); a forward of shape [N] gave an
    IndexError; a forward through numpy or a denoiser with no graph to x gave autograd's bare RuntimeError."""
    call, match = _BAD[name]
    with pytest.raises(ValueError, match=match):
        call(_prior(), _points(1, 7), _points(4, 8))


@pytest.mark.parametrize("make", [lambda y: DPS(_prior().denoise, _forward, y, S),
                                  lambda y: DPS(_prior().denoise, _forward, y, S, step="normalised"),
                                  lambda y: MomentMatched(_prior().denoise, A, y, S)])
def test_one_measurement_per_sample_is_read_row_by_row(make):
    """y [N, m]: sample n is guided towards row n, exactly as a batch of one with y [m] = row n."""
    x, ys = _points(3, 9), torch.tensor([[0.7], [-0.4], [1.3]], dtype=DT)
    rows = torch.cat([make(ys[n])(x[n:n + 1], 0.8) for n in range(3)])
    assert torch.allclose(make(ys)(x, 0.8), rows, rtol=0, atol=1e-14)
