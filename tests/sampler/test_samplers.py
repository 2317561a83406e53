"""Samplers against mathematics: orders of accuracy on a Gaussian with a known probability-flow solution,
DDPM's kernel against THEORY's eps form, DDPM with the exact mixture reproducing the data law."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from analytic import GaussianMixture
from sampler import (
    EpsModel,
    MixtureModel,
    Step,
    VPSchedule,
    X0Model,
    bind,
    check_sigmas,
    ddim,
    ddpm,
    euler,
    heun,
    sample,
    ve_prior,
    vp_prior,
)

F64 = torch.float64


def gaussian_denoiser(m: float, s: float):
    """Exact ``D`` for data ``N(m, s^2)`` per coordinate: ``m + s^2/(s^2 + sigma^2) (x - m)``."""

    def den(x, sigma):
        return m + s**2 / (s**2 + sigma**2) * (x - m)

    return den


def gaussian_flow(x, m, s, sigma_from, sigma_to):
    """Probability-flow solution: ``(x - m)/sqrt(s^2 + sigma^2)`` is constant along the ODE."""
    return m + (x - m) * math.sqrt(s**2 + sigma_to**2) / math.sqrt(s**2 + sigma_from**2)


@pytest.mark.parametrize("solver,order", [(euler, 1.0), (heun, 2.0)])
def test_ode_order(solver, order):
    m, s = 0.7, 0.4
    den = gaussian_denoiser(m, s)
    x = torch.linspace(-6, 6, 7, dtype=F64)[:, None]
    lo, hi = 0.1, 3.0
    exact = gaussian_flow(x, m, s, hi, lo)
    errs = []
    for n in (8, 16, 32, 64):
        out = solver(den, x, torch.linspace(hi, lo, n + 1, dtype=F64))
        errs.append((out - exact).abs().max().item())
    rates = [math.log2(a / b) for a, b in zip(errs, errs[1:])]
    assert all(abs(r - order) < 0.15 for r in rates[1:]), (errs, rates)
    assert errs[-1] < (0.05 if order == 1 else 2e-3)


def test_heun_evaluations_and_callback():
    calls = []

    def den(x, sigma):
        calls.append(sigma)
        return torch.zeros_like(x)

    sig = torch.tensor([2.0, 1.0, 0.5, 0.0], dtype=F64)
    steps: list[Step] = []
    out = heun(den, torch.ones(2, 1, dtype=F64), sig, callback=steps.append)
    assert len(calls) == 2 * 3 - 1
    assert [(st.i, st.sigma, st.sigma_next) for st in steps] == [(0, 2.0, 1.0), (1, 1.0, 0.5), (2, 0.5, 0.0)]
    torch.testing.assert_close(steps[-1].x, out)
    # D = 0: the flow is x(sigma) = x0 sigma / sigma_0; Heun's trapezoid is exact for it, the last Euler step too
    torch.testing.assert_close(steps[0].x, torch.full((2, 1), 0.5, dtype=F64))


def _eps_of(den, x_ve, sigma):
    return (x_ve - den(x_ve, sigma)) / sigma


def test_ddpm_step_matches_theory_eps_form():
    """One ancestral step from level t to t-1 equals THEORY section 1's kernel with the same z."""
    sched = VPSchedule.linear(30, 1e-4, 0.1)
    mix = GaussianMixture.from_1d([0.3, 0.7], [-1.0, 1.5], [0.3, 0.5])
    den = bind(MixtureModel({0: mix}), 0)
    gen = torch.Generator().manual_seed(0)
    x_vp = torch.randn(6, 1, dtype=F64, generator=gen)
    for t in (30, 12, 2, 1):
        a_t, a_s = sched.abar[t].item(), sched.abar[t - 1].item()
        beta, alpha = sched.betas[t].item(), sched.alphas[t].item()
        sig_t, sig_s = sched.sigmas[t].item(), sched.sigmas[t - 1].item()
        x_ve = x_vp / math.sqrt(a_t)
        eps = mix.eps(x_vp, a_t)
        z = torch.randn(6, 1, dtype=F64, generator=torch.Generator().manual_seed(t))
        mu = (x_vp - beta / math.sqrt(1 - a_t) * eps) / math.sqrt(alpha)
        expected_vp = mu + math.sqrt(sched.posterior_variance[t].item()) * z
        out = ddpm(den, x_ve, [sig_t, sig_s], generator=torch.Generator().manual_seed(t))
        torch.testing.assert_close(out * math.sqrt(a_s), expected_vp, rtol=1e-10, atol=1e-10)
        # the same level pair through DDIM eta = 0 is THEORY's deterministic DDIM step
        x0 = (x_vp - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        ddim_vp = math.sqrt(a_s) * x0 + math.sqrt(1 - a_s) * eps
        torch.testing.assert_close(ddim(den, x_ve, [sig_t, sig_s]) * math.sqrt(a_s), ddim_vp, rtol=1e-10, atol=1e-10)


def test_ddpm_is_ddim_eta_one_and_seeded():
    den = gaussian_denoiser(0.3, 0.5)
    sig = VPSchedule.linear(50).sampling_sigmas()
    x = vp_prior(torch.randn(5, 2, 2, 2, dtype=F64, generator=torch.Generator().manual_seed(1)), sig[0].item())
    a = ddpm(den, x, sig, generator=torch.Generator().manual_seed(7))
    b = ddim(den, x, sig, eta=1.0, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    c = sample("ddpm", den, x, sig, generator=torch.Generator().manual_seed(8))
    assert not torch.allclose(a, c)


def test_ddim_eta0_is_deterministic_probability_flow():
    """DDIM with eta = 0 is the exponential-integrator of the PF ODE: exact for a Gaussian is not expected,
    but it converges to the flow solution as the grid is refined (first order)."""
    m, s = -0.2, 0.6
    den = gaussian_denoiser(m, s)
    x = torch.linspace(-3, 3, 5, dtype=F64)[:, None]
    errs = []
    for n in (16, 64):
        out = ddim(den, x, torch.linspace(2.0, 0.1, n + 1, dtype=F64), generator=None)
        errs.append((out - gaussian_flow(x, m, s, 2.0, 0.1)).abs().max().item())
    assert errs[1] < errs[0] / 3


def _mixture_cdf(weights, means, stds, x):
    return sum(w * stats.norm.cdf(x, mu, sd) for w, mu, sd in zip(weights, means, stds))


@pytest.mark.parametrize("route", ["eps", "denoise"])
def test_ddpm_with_exact_mixture_reproduces_data(route):
    """KS distance to the exact data CDF shrinks like n^-1/2 (up to the chain's small bias). Route "eps":
    the exact mixture eps as a discrete-time network through EpsModel on a respaced schedule; route
    "denoise": the exact denoiser through MixtureModel."""
    weights, means, stds = [0.3, 0.7], [-1.0, 1.5], [0.3, 0.5]
    mix = GaussianMixture.from_1d(weights, means, stds)
    full = VPSchedule.standard()
    sched = full.respace(250)
    if route == "eps":
        den = bind(EpsModel(lambda x_vp, t, cond: mix.eps(x_vp, full.abar[int(t[0])].item()), sched), 0)
    else:
        den = bind(MixtureModel({0: mix}), 0)
    sig = sched.sampling_sigmas()
    gen = torch.Generator().manual_seed(0)
    n_max = 16000
    x = vp_prior(torch.randn(n_max, 1, dtype=F64, generator=gen), sig[0].item())
    out = ddpm(den, x, sig, generator=gen)[:, 0].numpy()
    ks = {}
    for n in (250, 1000, 4000, 16000):
        ks[n] = stats.kstest(out[:n], lambda v: _mixture_cdf(weights, means, stds, v)).statistic
        assert ks[n] < 1.63 / math.sqrt(n), ks  # below the 99% KS critical value
    assert ks[16000] < ks[250] / 3, ks
    # the wrong law is rejected at this sample size (the test can fail)
    wrong = stats.kstest(out, lambda v: _mixture_cdf([0.4, 0.6], means, stds, v)).statistic
    assert wrong > 3 / math.sqrt(n_max)


def test_priors():
    noise = torch.ones(2, 3, dtype=F64)
    torch.testing.assert_close(vp_prior(noise, 3.0), noise * math.sqrt(10.0))
    torch.testing.assert_close(ve_prior(noise, 3.0), noise * 3.0)


@pytest.mark.parametrize(
    "bad",
    [[1.0, 1.0, 0.0], [1.0, 2.0, 0.0], [2.0, 1.0, -0.5], [1.0], [[2.0, 1.0]], [2.0, float("nan"), 0.0]],
)
def test_bad_sigmas(bad):
    with pytest.raises(ValueError, match="sigma|noise levels"):
        check_sigmas(bad)
    with pytest.raises(ValueError):
        euler(gaussian_denoiser(0, 1), torch.zeros(2, 1), bad)


def test_non_increasing_message_names_values():
    with pytest.raises(ValueError, match=r"strictly decreasing.*sigmas\[1\]=2.0"):
        ddpm(gaussian_denoiser(0, 1), torch.zeros(2, 1), [3.0, 2.0, 2.0, 0.0])


def test_unknown_sampler_and_bad_eta():
    den, x, sig = gaussian_denoiser(0, 1), torch.zeros(2, 1), [1.0, 0.0]
    with pytest.raises(ValueError, match="unknown sampler 'dpm'"):
        sample("dpm", den, x, sig)
    with pytest.raises(ValueError, match="eta"):
        ddim(den, x, sig, eta=1.5)
    with pytest.raises(ValueError, match="eta"):
        sample("euler", den, x, sig, eta=0.5)
    with pytest.raises(ValueError, match="x_start"):
        euler(den, torch.zeros(3), sig)


def test_progress_bar_changes_nothing_but_the_terminal(capsys):
    """With a bar, Euler on data N(0, 1) still takes its two steps by hand: x <- x + (s' - s) x s / (1 + s^2)
    (D = x / (1 + s^2)), and the bar is written to stderr."""
    x0 = torch.ones(2, 1, dtype=F64)
    out = euler(gaussian_denoiser(0, 1), x0, [1.0, 0.5, 0.0], progress=True)
    x1 = 1.0 + (0.5 - 1.0) * 1.0 * 1.0 / 2.0  # 0.75
    x2 = x1 + (0.0 - 0.5) * x1 * 0.5 / 1.25  # 0.6
    torch.testing.assert_close(out, torch.full((2, 1), x2, dtype=F64), rtol=1e-15, atol=0)
    torch.testing.assert_close(euler(gaussian_denoiser(0, 1), x0, [1.0, 0.5, 0.0]), out, rtol=0, atol=0)
    assert "2/2" in capsys.readouterr().err


def test_x0_model_keeps_float32():
    den = bind(X0Model(lambda x, s, c: x / (1 + s**2)), None)  # data N(0, 1)
    out = heun(den, torch.ones(4, 1, 2, 2), [2.0, 1.0, 0.0])
    assert out.dtype == torch.float32 and out.shape == (4, 1, 2, 2)
    ref = heun(den, torch.ones(4, 1, 2, 2, dtype=F64), [2.0, 1.0, 0.0])
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-6)


# --- issue 11, defects 13, 15 and 16 -------------------------------------------------------------------


@pytest.mark.parametrize("sampler_name", ["ddpm", "ddim", "euler", "heun"])
def test_defect15_non_finite_start_and_outputs_are_refused(sampler_name):
    """NaN/inf ``x_start`` passed straight through every sampler, and so did a network that returns NaN
    at some step; the core now refuses both, naming the step and the noise level."""
    mix = GaussianMixture.from_1d([0.5, 0.5], [-1.0, 1.0], [0.3, 0.3])
    den = bind(MixtureModel({0: mix}), 0)
    sig = torch.tensor([4.0, 2.0, 1.0, 0.5, 0.0], dtype=F64)
    eta = 0.5 if sampler_name == "ddim" else 0.0
    for bad in (float("nan"), float("inf"), -float("inf")):
        x = torch.tensor([[0.0], [bad]], dtype=F64)
        with pytest.raises(ValueError, match="x_start has 1 non-finite"):
            sample(sampler_name, lambda x, s: x, x, sig, eta=eta)

    def diverging(x, sigma):  # fine until sigma = 1, then NaN in one sample
        d = den(x, sigma)
        return d if sigma > 1 else torch.where(torch.arange(x.shape[0])[:, None] == 1, math.nan, d)

    x = torch.zeros(3, 1, dtype=F64)
    step = 1 if sampler_name == "heun" else 2  # Heun's corrector of step 1 evaluates at sigma = 1 already
    with pytest.raises(ValueError, match=rf"1 non-finite value\(s\) at step {step} \(sigma=1\)"):
        sample(sampler_name, diverging, x, sig, eta=eta, generator=torch.Generator().manual_seed(0))
    # the check is only a check: finite runs are unchanged (same samples as the bare denoiser)
    out = sample(sampler_name, den, x, sig, eta=eta, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out).all() and out.shape == x.shape


def test_defect15_heun_checks_its_second_evaluation():
    """Heun's corrector calls the denoiser at the next level: a NaN there is named with that level."""
    sig = torch.tensor([4.0, 2.0, 0.0], dtype=F64)
    with pytest.raises(ValueError, match=r"step 0 \(sigma=2\)"):
        heun(lambda x, s: x * (math.nan if s == 2.0 else 1.0), torch.zeros(2, 1, dtype=F64), sig)


@pytest.mark.parametrize("sampler_name", ["ddpm", "ddim", "euler", "heun"])
@pytest.mark.parametrize("shape", [(0, 1), (0, 3), (0, 1, 2, 2)])
def test_defect13_empty_batch_through_mixture_model(sampler_name, shape):
    """An empty batch through ``MixtureModel`` gave "cannot reshape tensor of 0 elements"; now every sampler
    returns an empty result of the input's shape and dtype, with guidance and REG too."""
    from analytic import AutoGReward, CFGReward, degrade, optimal_denoiser

    from sampler import CFG, REG, AutoGuidance, TiltedMean

    d = math.prod(shape[1:])
    g = torch.Generator().manual_seed(0)
    cond = GaussianMixture(torch.ones(2), torch.randn(2, d, generator=g, dtype=F64), torch.eye(d, dtype=F64).expand(2, d, d) * 0.3)
    uncond = GaussianMixture(torch.ones(1), torch.zeros(1, d, dtype=F64), torch.eye(d, dtype=F64)[None])
    m = MixtureModel({0: cond, None: uncond, "weak": degrade(cond)})
    c, u, weak = bind(m, 0), bind(m, None), bind(m, "weak")
    sig = torch.tensor([4.0, 1.0, 0.5, 0.0], dtype=F64)
    x = torch.zeros(shape, dtype=torch.float32)
    eta = 0.5 if sampler_name == "ddim" else 0.0
    dens = [c, CFG(c, u, 1.0), AutoGuidance(c, weak, 1.0), REG(CFG(c, u, 1.0), "diag"), REG(CFG(c, u, 1.0), "fd")]
    if d == 1:  # the optimum has a dense quadrature up to d = 2
        dens += [TiltedMean(c, optimal_denoiser(cond, CFGReward(cond, uncond, 1.0))),
                 TiltedMean(c, optimal_denoiser(cond, AutoGReward(cond, degrade(cond), 1.0)))]
    for den in dens:
        out = sample(sampler_name, den, x, sig, eta=eta, generator=torch.Generator().manual_seed(0))
        assert out.shape == shape and out.dtype == x.dtype


def test_defect13_empty_batch_through_velocity_models():
    """The flow path: ``VelocityModel`` over ``analytic.MixtureVelocity`` with an empty batch (its time tensor
    is then empty too), under CFG-Zero* and APG."""
    from analytic import MixtureVelocity

    from sampler import APG, CFGZeroStar, LINEAR, VelocityModel, sampling_sigmas, uniform_times

    mix = GaussianMixture.from_1d([0.5, 0.5], [-1.0, 1.0], [0.3, 0.3])
    vm = VelocityModel(MixtureVelocity({0: mix, None: GaussianMixture.from_1d([1.0], [0.0], [1.0])}, LINEAR))
    sig = sampling_sigmas(LINEAR, uniform_times(4))
    empty = torch.zeros(0, 1, dtype=F64)
    for den in (bind(vm, 0), CFGZeroStar(bind(vm, 0), bind(vm, None), 1.0), APG(bind(vm, 0), bind(vm, None), 1.0)):
        assert sample("euler", den, empty, sig).shape == (0, 1)
    with pytest.raises(ValueError, match="2 dimensions per sample"):
        MixtureVelocity({0: mix}, LINEAR)(torch.zeros(0, 2, dtype=F64), torch.zeros(0), 0)


@pytest.mark.parametrize("kw,match", [
    (dict(rho=math.nan), "rho must be finite"),  # returned NaN levels
    (dict(rho=math.inf), "rho must be finite"),
    (dict(rho=True), "rho must be a number"),
    (dict(rho=1e-3), "too extreme"),  # 80 ** 1000 overflows
    (dict(sigma_min=math.nan), "sigma_min must be finite"),
    (dict(sigma_max=math.inf), "sigma_max must be finite"),
    (dict(n=math.nan), "n must be finite"),
    (dict(n=2.5), "n must be a positive integer"),
])
def test_defect16_karras_sigmas_refuses_non_finite_parameters(kw, match):
    from sampler import karras_sigmas

    with pytest.raises(ValueError, match=match):
        karras_sigmas(**{"n": 8, **kw})
    # the valid grid is still EDM's eq. 5, level by level
    i = np.arange(8) / 7
    ref = (80 ** (1 / 7) + i * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    np.testing.assert_allclose(karras_sigmas(8).numpy()[:-1], ref, rtol=1e-14)
    assert karras_sigmas(np.int64(3)).shape == (4,)
