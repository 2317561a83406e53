"""The analytic optimum as a guidance object of the shared sampler core (issue 3, item 3)."""
import math

import pytest
import torch

from analytic import CFGReward, optimal_denoiser, optimal_guidance
from sampler import CFG, ESTIMATORS, REG, SAMPLERS, MixtureModel, TiltedMean, bind, sample, vp_prior
from sampler.schedules import VPSchedule

from tests.helpers import random_mixture


@pytest.fixture(scope="module")
def setup():
    cond, uncond = random_mixture(2, 2, 31), random_mixture(2, 2, 32, scale=0.6)
    model = MixtureModel({"c": cond, "u": uncond})
    return cond, uncond, model


def test_optimal_guidance_object_is_eps_c_plus_golden(setup):
    cond, uncond, model = setup
    reward = CFGReward(cond, uncond, 1.5)
    guided = TiltedMean(bind(model, "c"), optimal_denoiser(cond, reward))
    x = torch.rand(7, 2, dtype=torch.float64)
    sigma = 0.6
    a = 1 / (1 + sigma**2)
    opt = optimal_guidance(cond, reward, math.sqrt(a) * x, a)
    eps_star = cond.eps(math.sqrt(a) * x, a) + opt.golden
    torch.testing.assert_close(guided(x, sigma), x - sigma * eps_star, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("sampler_name", SAMPLERS)
def test_every_sampler_runs_the_optimum_and_cfg_with_every_estimator(setup, sampler_name):
    cond, uncond, model = setup
    sigmas = VPSchedule.paper_1d().respace(6).sampling_sigmas()
    reward = CFGReward(cond, uncond, 1.0)
    guidances = {"optimal": TiltedMean(bind(model, "c"), optimal_denoiser(cond, reward))}
    guidances.update({f"cfg+{e}": REG(CFG(bind(model, "c"), bind(model, "u"), 1.0), e) for e in ESTIMATORS})
    for name, g in guidances.items():
        runs = []
        for _ in range(2):
            gen = torch.Generator().manual_seed(0)
            x = vp_prior(torch.randn(4, 2, dtype=torch.float64, generator=gen), float(sigmas[0]))
            runs.append(sample(sampler_name, g, x, sigmas, generator=gen))
        assert torch.isfinite(runs[0]).all(), name
        assert torch.equal(runs[0], runs[1]), name


def test_zero_weight_optimum_is_unguided(setup):
    cond, uncond, model = setup
    guided = TiltedMean(bind(model, "c"), optimal_denoiser(cond, CFGReward(cond, uncond, 0.0)))
    x = torch.rand(5, 2, dtype=torch.float64)
    torch.testing.assert_close(guided(x, 0.4), model(x, 0.4, "c"), rtol=1e-10, atol=1e-12)
