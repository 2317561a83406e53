import math

import pytest
import torch

from sampler.schedules import VPSchedule, abar_to_sigma, karras_sigmas, prior_mismatch, sigma_to_abar


def test_paper_preset():
    s = VPSchedule.paper_1d()
    assert s.T == 20 and s.abar[0] == 1
    betas = torch.linspace(1e-4, 0.02, 20, dtype=torch.float64)
    torch.testing.assert_close(s.betas[1:], betas)
    torch.testing.assert_close(s.abar[1:], torch.cumprod(1 - betas, 0))
    assert abs(s.abar[-1].item() - 0.817) < 1e-3  # THEORY section 7
    # sqrt(1 - abar) runs from 0.010 to 0.428 (official code notes, section 1.2)
    assert abs(math.sqrt(1 - s.abar[1].item()) - 0.010) < 1e-3
    assert abs(math.sqrt(1 - s.abar[-1].item()) - 0.428) < 1e-3


def test_posterior_variance_and_conversions():
    s = VPSchedule.standard()
    t = torch.arange(2, s.T + 1)
    expect = s.betas[t] * (1 - s.abar[t - 1]) / (1 - s.abar[t])
    torch.testing.assert_close(s.posterior_variance[t], expect)
    assert s.posterior_variance[1] == 0 and s.posterior_variance[0] == 0  # deterministic last step
    torch.testing.assert_close(sigma_to_abar(abar_to_sigma(s.abar[1:])), s.abar[1:])
    torch.testing.assert_close(s.sigmas, torch.sqrt((1 - s.abar) / s.abar))
    assert s.index_of_sigma(s.sigmas[137].item()) == 137
    with pytest.raises(ValueError, match="not a level"):
        s.index_of_sigma(s.sigmas[137].item() * 1.001)


def test_respacing_keeps_levels_and_indices():
    s = VPSchedule.standard()
    r = s.respace(50)
    assert r.T == 50 and r.timesteps[1] == 1 and r.timesteps[-1] == 1000
    torch.testing.assert_close(r.abar, s.abar[r.timesteps])
    assert s.respace(1000).abar.equal(s.abar)


def test_cosine_schedule():
    s = VPSchedule.cosine(1000)
    u = torch.arange(1001, dtype=torch.float64) / 1000
    f = torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
    torch.testing.assert_close(s.abar[1:500], (f / f[0])[1:500])


def test_karras_grid():
    sig = karras_sigmas(32)
    assert sig.numel() == 33 and sig[-1] == 0
    assert abs(sig[0].item() - 80) < 1e-9 and abs(sig[-2].item() - 0.002) < 1e-12
    assert torch.all(sig[1:] < sig[:-1])


def test_prior_mismatch_against_monte_carlo():
    s = VPSchedule.paper_1d()
    pm = prior_mismatch(s, data_std=0.5, data_mean=1.0)
    g = torch.Generator().manual_seed(0)
    x0 = 1.0 + 0.5 * torch.randn(400_000, generator=g, dtype=torch.float64)
    xT = math.sqrt(pm.abar_T) * x0 + math.sqrt(1 - pm.abar_T) * torch.randn(400_000, generator=g, dtype=torch.float64)
    assert abs(xT.mean().item() - pm.mean) < 5e-3 and abs(xT.std().item() - pm.std) < 5e-3
    assert pm.kl > 0.3  # far from N(0, 1)
    assert prior_mismatch(VPSchedule.standard(), 1.0).kl < 1e-6


@pytest.mark.parametrize("call,match", [
    (lambda: VPSchedule.linear(0), "positive integer"),
    (lambda: VPSchedule.linear(10, 0.02, 0.01), "beta_start <= beta_end"),
    (lambda: VPSchedule.from_betas([0.1, 1.0]), r"\(0, 1\)"),
    (lambda: VPSchedule(torch.tensor([1.0, 0.5, 0.6]), torch.arange(3)), "strictly decreasing"),
    (lambda: VPSchedule(torch.tensor([0.9, 0.5]), torch.arange(2)), "abar\\[0\\] must be 1"),
    (lambda: VPSchedule.paper_1d().respace(30), "n_steps"),
    (lambda: karras_sigmas(10, sigma_min=5, sigma_max=1), "sigma_min < sigma_max"),
    (lambda: abar_to_sigma(1.5), r"\(0, 1\]"),
    (lambda: sigma_to_abar(-1.0), ">= 0"),
    (lambda: prior_mismatch(VPSchedule.paper_1d(), data_std=0), "data_std"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_resolve_device():
    import torch

    from sampler import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")).type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_scalar_conversions_return_floats_and_agree_with_tensors():
    s = VPSchedule.paper_1d()
    for t in (1, 7, 20):
        a = s.abar[t].item()
        sig = abar_to_sigma(a)
        assert isinstance(sig, float) and isinstance(sigma_to_abar(sig), float)
        assert sig == pytest.approx(s.sigmas[t].item(), rel=1e-15)
        assert sigma_to_abar(sig) == pytest.approx(a, rel=1e-15)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        abar_to_sigma(0.0)
    with pytest.raises(ValueError, match=">= 0"):
        sigma_to_abar(float("nan"))


def test_sampling_sigmas_and_reverse_mean():
    """sampling_sigmas runs the chain T -> 0; reverse_mean equals the DDPM posterior mean
    q(x_{t-1} | x_t, x0_hat) with Tweedie's x0_hat (an independent route, Ho et al. eq. 7)."""
    from sampler.samplers import check_sigmas

    s = VPSchedule.cosine(12)
    sig = s.sampling_sigmas()
    check_sigmas(sig)
    assert sig[0] == s.sigmas[-1] and sig[-1] == 0
    x = torch.linspace(-2, 2, 5, dtype=torch.float64)
    eps = torch.linspace(1, -1, 5, dtype=torch.float64)
    for t in (2, 6, 12):
        ab, ab_prev, beta = s.abar[t], s.abar[t - 1], s.betas[t]
        x0 = (x - torch.sqrt(1 - ab) * eps) / torch.sqrt(ab)
        mean = (torch.sqrt(ab_prev) * beta / (1 - ab)) * x0 + (torch.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab)) * x
        torch.testing.assert_close(s.reverse_mean(x, eps, t), mean, rtol=1e-12, atol=1e-12)


def test_ddim_coefficients_are_ddpm_at_eta_one():
    """eta = 1: the noise variance is the DDPM posterior variance (in VE units, abar_{t-1} times the VP one)."""
    from sampler.samplers import ddim_coefficients

    s = VPSchedule.paper_1d()
    for t in (2, 10, 20):
        a, c = ddim_coefficients(s.sigmas[t].item(), s.sigmas[t - 1].item(), 1.0)
        assert c**2 == pytest.approx(s.posterior_variance[t].item() / s.abar[t - 1].item(), rel=1e-10)
        a0, c0 = ddim_coefficients(s.sigmas[t].item(), s.sigmas[t - 1].item(), 0.0)
        assert c0 == 0 and a0 == pytest.approx(s.sigmas[t - 1].item() / s.sigmas[t].item(), rel=1e-14)


def test_add_noise_is_the_forward_process():
    """Per-sample steps broadcast over trailing dimensions; float32 inputs keep their dtype; the
    empirical law of x_t matches N(sqrt(abar) x0, 1 - abar) (an independent check of the formula)."""
    s = VPSchedule.paper_1d()
    x0 = torch.full((4, 1, 2, 2), 2.0)
    n = torch.ones(4, 1, 2, 2)
    t = torch.tensor([1, 5, 10, 20])
    out = s.add_noise(x0, n, t)
    assert out.dtype == torch.float32 and out.shape == x0.shape
    for i, ti in enumerate(t.tolist()):
        a = s.abar[ti].item()
        assert out[i].flatten()[0].item() == pytest.approx(2 * math.sqrt(a) + math.sqrt(1 - a), rel=1e-6)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(200_000, 1, generator=g, dtype=torch.float64)
    xt = s.add_noise(torch.full((200_000, 1), 1.5, dtype=torch.float64), z, 20)
    a = s.abar[20].item()
    assert abs(xt.mean().item() - 1.5 * math.sqrt(a)) < 5 * math.sqrt((1 - a) / 200_000)
    assert abs(xt.var().item() - (1 - a)) < 0.01
    with pytest.raises(ValueError, match="steps must lie"):
        s.add_noise(x0, n, torch.tensor([0, 21, 1, 2]))
    with pytest.raises(ValueError, match="step index"):
        s.add_noise(x0, n, 1.5)
