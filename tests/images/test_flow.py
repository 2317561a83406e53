"""The SD3 flow transformer through the velocity adapter: against the network's own output converted by hand,
against diffusers' FlowMatchEulerDiscreteScheduler (its levels and its own Euler loop), and the contract
properties (shapes, dtype, seeds, w = 0 is unguided, REG runs). Tests that build diffusers networks skip without it."""
from __future__ import annotations

import sys

import pytest
import torch

from images import SD3Adapter, TextCondition, scheduler_sigmas, tiny_sd3, tiny_text_condition
from sampler import (APG, CFG, LINEAR, REG, T_NOISE_CAP, CFGZeroStar, Unguided, ZeroInit, bind, ddpm, euler, heun,
                     shift_times, vp_prior, zero_init_sigma)

N, SHIFT, STEPS = 3, 3.0, 8


@pytest.fixture(scope="module")
def diffusers():
    return pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def model(diffusers):
    return tiny_sd3(seed=0)


@pytest.fixture(scope="module")
def scheduler(diffusers):
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=SHIFT)
    sched.set_timesteps(STEPS)
    return sched


def _noise(seed=0, dtype=torch.float32):
    return torch.randn(N, 4, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=dtype)


COND, NULL = tiny_text_condition(seed=1), tiny_text_condition(seed=2)


def test_factory_names_the_images_extra_without_diffusers(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # makes `import diffusers` raise ImportError
    with pytest.raises(ImportError, match=r"'images' extra"):
        tiny_sd3()


def test_scheduler_levels_are_the_sd3_shift(scheduler):
    """diffusers shifts twice at the low end: its grid is shift(linspace(1, shift(1/1000), n)); the shift is
    sampler.paths.shift_times, and scheduler_sigmas is t / (1 - t) with t = 1 capped."""
    t = shift_times(torch.linspace(1.0, shift_times(1 / 1000, SHIFT), STEPS, dtype=torch.float64), SHIFT)
    torch.testing.assert_close(scheduler.sigmas[:-1].double(), t, rtol=1e-6, atol=1e-7)
    sig = scheduler_sigmas(scheduler)
    t32 = scheduler.sigmas.double()
    assert sig[0].item() == pytest.approx(T_NOISE_CAP / (1 - T_NOISE_CAP)) and sig[-1].item() == 0.0
    torch.testing.assert_close(sig[1:-1], t32[1:-1] / (1 - t32[1:-1]), rtol=1e-14, atol=0)


def test_adapter_by_hand(model):
    net = model.net.transformer
    x = _noise(1)
    for t in (0.2, 0.7, 0.95):
        s = t / (1 - t)
        x_t = (1 - t) * x
        v = net(hidden_states=x_t, encoder_hidden_states=COND.embeds.expand(N, -1, -1),
                pooled_projections=COND.pooled.expand(N, -1), timestep=torch.full((N,), 1000 * t)).sample
        torch.testing.assert_close(model(x, s, COND), x_t - t * v, rtol=1e-5, atol=1e-5)


def _scheduler_loop(diffusers, model, latents, start=0):
    """diffusers' own sampling loop (the SD3 pipeline's, without CFG) from step ``start``."""
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=SHIFT)
    sched.set_timesteps(STEPS)
    sched.set_begin_index(start)
    net = model.net
    for ts in sched.timesteps[start:]:
        v = net(latents, torch.full((N,), ts.item() / 1000), COND)
        latents = sched.step(v, ts, latents).prev_sample
    return latents


def test_euler_on_scheduler_levels_is_the_scheduler_loop(diffusers, model, scheduler):
    """After the first step the core's Euler in contract coordinates is the scheduler's loop to float32 rounding;
    the whole run differs only through the capped first level, by O(1 - T_NOISE_CAP)."""
    sig = scheduler_sigmas(scheduler)
    den = bind(model, COND)
    t1 = scheduler.sigmas[1].item()
    x_t1 = _noise(2)  # any state at the second level
    ours = euler(den, x_t1 / (1 - t1), sig[1:])
    theirs = _scheduler_loop(diffusers, model, x_t1, start=1)
    assert (ours - theirs).abs().max().item() < 2e-5
    full = euler(den, vp_prior(_noise(3), sig[0].item()), sig)
    ref = _scheduler_loop(diffusers, model, _noise(3))
    gap = (full - ref).abs().max().item()
    assert gap < 30 * (1 - T_NOISE_CAP) and gap > 0  # the cap moves the first step, by about 1e-4 x O(10)


def test_shapes_dtype_and_seeds(diffusers, model):
    x = _noise(4)
    out = model(x, 2.0, COND)
    assert out.shape == x.shape and out.dtype == torch.float32
    torch.testing.assert_close(tiny_sd3(seed=0)(x, 2.0, COND), out, rtol=0, atol=0)  # same seed, same network
    assert not torch.allclose(tiny_sd3(seed=1)(x, 2.0, COND), out)
    m64 = tiny_sd3(seed=0, dtype=torch.float64)
    assert m64(x.double(), 2.0, tiny_text_condition(seed=1, dtype=torch.float64)).dtype == torch.float64
    per_sample = TextCondition(COND.embeds.expand(N, -1, -1), COND.pooled.expand(N, -1))
    torch.testing.assert_close(model(x, 2.0, per_sample), out, rtol=0, atol=0)


def _rules(c, u, w, sig):
    return {
        "cfg": CFG(c, u, w),
        "cfg_zero_star": CFGZeroStar(c, u, w),
        "zero_init": ZeroInit(CFGZeroStar(c, u, w), zero_init_sigma(sig, 1)),
        "apg": APG(c, u, w, momentum=-0.5, norm_cap=5.0, on="velocity"),
    }


@pytest.mark.parametrize("sampler_fn", [euler, heun, ddpm], ids=["euler", "heun", "ddpm"])
def test_guidance_contract(model, scheduler, sampler_fn):
    sig = scheduler_sigmas(scheduler)
    c, u = bind(model, COND), bind(model, NULL)

    def run(den, seed=5):
        if hasattr(den, "reset"):
            den.reset()
        g = torch.Generator().manual_seed(seed)
        return sampler_fn(den, vp_prior(_noise(seed), sig[0].item()), sig, generator=g)

    plain, zero_plain = run(Unguided(c)), run(ZeroInit(Unguided(c), zero_init_sigma(sig, 1)))
    for name, rule in _rules(c, u, 2.0, sig).items():
        out = run(rule)
        assert out.shape == (N, 4, 8, 8) and torch.all(torch.isfinite(out))
        torch.testing.assert_close(run(rule), out, rtol=0, atol=0)
        ref = zero_plain if name == "zero_init" else plain
        torch.testing.assert_close(run(_rules(c, u, 0.0, sig)[name]), ref, rtol=0, atol=0)  # w = 0 is unguided
        assert not torch.allclose(out, ref, atol=1e-4)


@pytest.mark.parametrize("estimator", ["vjp", "paper", "jvp", "fd"])
def test_reg_runs_on_the_flow_transformer(model, scheduler, estimator):
    sig = scheduler_sigmas(scheduler)
    c, u = bind(model, COND), bind(model, NULL)
    x = vp_prior(_noise(6), sig[0].item())
    out = euler(REG(CFGZeroStar(c, u, 2.0), estimator), x, sig)
    assert out.shape == x.shape and torch.all(torch.isfinite(out))
    assert not torch.allclose(out, euler(CFGZeroStar(c, u, 2.0), x, sig), atol=1e-4)


def test_bad_input(diffusers, model, scheduler):
    x = _noise(7)
    for bad in (None, 3, (COND.embeds, COND.pooled)):
        with pytest.raises(ValueError, match="TextCondition"):
            model(x, 1.0, bad)
    with pytest.raises(ValueError, match="embeds"):
        model(x, 1.0, TextCondition(torch.zeros(2, 5, 16), COND.pooled))
    with pytest.raises(ValueError, match="pooled"):
        model(x, 1.0, TextCondition(COND.embeds, torch.zeros(1, 7)))
    with pytest.raises(ValueError, match="SD3Transformer2DModel"):
        SD3Adapter(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="flow-matching scheduler"):
        scheduler_sigmas(diffusers.DDPMScheduler())
    for kw in ({"size": 7}, {"width": 3}, {"channels": 0}):
        with pytest.raises(ValueError):
            tiny_sd3(**kw)
    with pytest.raises(ValueError, match="n_tokens"):
        tiny_text_condition(0)
