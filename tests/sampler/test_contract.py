"""Contract tests: every model x sampler x guidance (x REG estimator), shapes [N, d] and [N, C, H, W].

The models are ``conftest.MODEL_FACTORIES``: exact mixtures, small eps / v / x0 networks and the real
image networks (diffusers UNet2DModel, DiT, EDM2-style) through the adapters of ``images``.
Checked: output shape, dtype and device kept, finite, detached; same seed gives the same samples, another
seed other samples; w = 0 equals unguided for every guidance, with and without REG, and w != 0 (and REG)
change the result; REG of no guidance is the conditional model."""
from __future__ import annotations

import pytest
import torch

from sampler import ESTIMATORS, REG, SAMPLERS, sample, vp_prior

from .conftest import GUIDANCE_FACTORIES, ModelSetup, unguided

N = 3
W = 1.5


def _run(setup: ModelSetup, den, name: str, seed: int = 0, device: str = "cpu") -> torch.Tensor:
    g = torch.Generator(device=device).manual_seed(seed)
    noise = torch.randn((N,) + setup.shape, generator=g, dtype=setup.dtype, device=device)
    x = vp_prior(noise, float(setup.sigmas[0]))
    eta = 0.5 if name == "ddim" else 0.0
    return sample(name, den, x, setup.sigmas, eta=eta, generator=g)


def _check(setup: ModelSetup, out: torch.Tensor) -> None:
    assert out.shape == (N,) + setup.shape
    assert out.dtype == setup.dtype
    assert torch.all(torch.isfinite(out))
    assert not out.requires_grad


@pytest.mark.parametrize("sampler_name", SAMPLERS)
@pytest.mark.parametrize("guidance_name", ["none"] + list(GUIDANCE_FACTORIES))
def test_model_sampler_guidance(setup: ModelSetup, sampler_name: str, guidance_name: str):
    make = (lambda s, w: unguided(s)) if guidance_name == "none" else GUIDANCE_FACTORIES[guidance_name]
    guided = make(setup, W)
    out = _run(setup, guided, sampler_name, seed=1)
    _check(setup, out)
    torch.testing.assert_close(_run(setup, guided, sampler_name, seed=1), out, rtol=0, atol=0)
    if guidance_name != "none":
        # w = 0 equals the unguided conditional model
        ref = _run(setup, unguided(setup), sampler_name, seed=1)
        torch.testing.assert_close(_run(setup, make(setup, 0.0), sampler_name, seed=1), ref, rtol=1e-12, atol=1e-12)
        # and w != 0 actually guides (the test above could not fail otherwise)
        assert not torch.allclose(out, ref)


# Every estimator on CFG, and every guidance under one estimator each (cycled), to keep the grid small.
_REG_CASES = [("cfg", e) for e in ESTIMATORS] + [
    (g, ESTIMATORS[i % len(ESTIMATORS)]) for i, g in enumerate(GUIDANCE_FACTORIES) if g != "cfg"
]


@pytest.mark.parametrize("guidance_name,estimator", _REG_CASES)
def test_reg_contract(setup: ModelSetup, estimator: str, guidance_name: str):
    make = GUIDANCE_FACTORIES[guidance_name]
    reg = REG(make(setup, W), estimator)
    out = _run(setup, reg, "euler", seed=2)
    _check(setup, out)
    torch.testing.assert_close(_run(setup, reg, "euler", seed=2), out, rtol=0, atol=0)
    ref = _run(setup, unguided(setup), "euler", seed=2)
    torch.testing.assert_close(_run(setup, REG(make(setup, 0.0), estimator), "euler", seed=2), ref, rtol=1e-12, atol=1e-12)
    # REG changes the guided result (its correction is not the identity for these models)
    plain = _run(setup, make(setup, W), "euler", seed=2)
    assert not torch.allclose(out, plain)


@pytest.mark.parametrize("sampler_name", SAMPLERS)
def test_reg_every_sampler(setup: ModelSetup, sampler_name: str):
    reg = REG(GUIDANCE_FACTORIES["cfg"](setup, W), "vjp")
    out = _run(setup, reg, sampler_name, seed=3)
    _check(setup, out)
    torch.testing.assert_close(_run(setup, reg, sampler_name, seed=3), out, rtol=0, atol=0)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_reg_of_unguided_is_the_conditional_model(setup: ModelSetup, estimator: str):
    """No guidance, no delta: every estimator leaves the conditional model's samples unchanged."""
    ref = _run(setup, unguided(setup), "heun", seed=5)
    torch.testing.assert_close(_run(setup, REG(unguided(setup), estimator), "heun", seed=5), ref, rtol=0, atol=0)


def test_seeds_differ_and_ddpm_is_stochastic(setup: ModelSetup):
    den = GUIDANCE_FACTORIES["cfg"](setup, W)
    a, b = _run(setup, den, "ddpm", seed=0), _run(setup, den, "ddpm", seed=1)
    assert (a - b).abs().max() > 1e-4
    # same start, other ancestral noise: DDPM's own randomness moves the samples, the ODE's does not
    g0, g1 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(7)
    x = vp_prior(torch.randn((N,) + setup.shape, generator=g0, dtype=setup.dtype), float(setup.sigmas[0]))
    d1 = sample("ddpm", den, x, setup.sigmas, generator=torch.Generator().manual_seed(1))
    d2 = sample("ddpm", den, x, setup.sigmas, generator=g1)
    assert (d1 - d2).abs().max() > 1e-4
    h1 = sample("heun", den, x, setup.sigmas, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(sample("heun", den, x, setup.sigmas, generator=g1), h1, rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("sampler_name", SAMPLERS)
def test_cuda_matches_device(sampler_name: str):
    from .conftest import MODEL_FACTORIES

    for _, factory in MODEL_FACTORIES:
        setup = factory()
        if isinstance(setup.model, torch.nn.Module) or hasattr(getattr(setup.model, "net", None), "to"):
            net = getattr(setup.model, "net", setup.model)
            net.to("cuda")
            weak = getattr(setup.weak, "net", setup.weak)
            weak.to("cuda")
            out = _run(setup, REG(GUIDANCE_FACTORIES["cfg"](setup, W), "vjp"), sampler_name, seed=0, device="cuda")
            assert out.device.type == "cuda" and out.shape == (N,) + setup.shape


@pytest.mark.parametrize("sampler_name", SAMPLERS)
@pytest.mark.parametrize("estimator", (None,) + ESTIMATORS)
@pytest.mark.parametrize("guidance_name", list(GUIDANCE_FACTORIES))
def test_full_product_on_the_analytic_mixture(sampler_name: str, estimator, guidance_name: str):
    """Issue 3's acceptance: every guidance, with and without every REG estimator, through every sampler,
    on the exact mixture (cheap enough for the full product)."""
    from .conftest import MODEL_FACTORIES

    setup = dict(MODEL_FACTORIES)["mixture_vec"]()
    guided = GUIDANCE_FACTORIES[guidance_name](setup, W)
    den = guided if estimator is None else REG(guided, estimator)
    out = _run(setup, den, sampler_name, seed=4)
    _check(setup, out)
    torch.testing.assert_close(_run(setup, den, sampler_name, seed=4), out, rtol=0, atol=0)
