"""Noise-level selection for the samplers and the VP schedule of a diffusers scheduler configuration."""
from __future__ import annotations

import math

import pytest
import torch

from sampler import VPSchedule, karras_sigmas, sampling_levels, schedule_from_diffusers_config


@pytest.mark.parametrize("sampler_name, n", [("ddpm", 16), ("heun", 10), ("heun", 3), ("euler", 5)])
def test_levels_are_levels_of_the_schedule(sampler_name, n):
    s = VPSchedule.standard()
    sig = sampling_levels(s, sampler_name, n)
    assert sig[-1] == 0 and torch.all(sig[1:] < sig[:-1])
    assert sig[0] == s.sigmas[-1] and sig[-2] == s.sigmas[1]
    for v in sig[:-1]:
        s.index_of_sigma(float(v))  # raises unless a level
    assert len(sig) - 1 == n if sampler_name != "heun" else 2 <= len(sig) - 1 <= n


def test_ddpm_levels_are_the_even_respacing():
    """16 DDPM levels of T = 1000: steps round(linspace(1, 1000, 16)) = 1, 68, 134, ..., 1000."""
    s = VPSchedule.standard()
    steps = [round(1 + k * 999 / 15) for k in range(16)][::-1]
    torch.testing.assert_close(sampling_levels(s, "ddpm", 16)[:-1], s.sigmas[steps], rtol=0, atol=0)


def test_heun_levels_are_nearest_to_the_karras_grid():
    """Each Heun level is the schedule level nearest (in log sigma) to EDM's rho = 7 grid point."""
    s = VPSchedule.standard()
    sig = sampling_levels(s, "heun", 10)
    target = karras_sigmas(10, s.sigmas[1].item(), s.sigmas[-1].item())[:-1]
    log_levels = s.sigmas[1:].log()
    for v, want in zip(sig[:-1], target):
        nearest = s.sigmas[1:][torch.argmin((log_levels - math.log(want)).abs())]
        assert v == nearest
    assert len(sig) == 11  # no two grid points round to one level at T = 1000


def test_levels_reject_bad_input():
    s = VPSchedule.standard()
    with pytest.raises(ValueError, match="sampler"):
        sampling_levels(s, "rk4", 4)
    with pytest.raises(ValueError, match="n_steps"):
        sampling_levels(s, "ddpm", 0)
    with pytest.raises(ValueError, match="n_steps"):
        sampling_levels(s, "ddpm", 1001)
    with pytest.raises(ValueError, match="VPSchedule"):
        sampling_levels(s.abar, "ddpm", 4)


def test_schedule_from_diffusers_config_closed_forms():
    assert torch.allclose(schedule_from_diffusers_config({"beta_schedule": "linear"}).abar, VPSchedule.standard().abar)
    assert torch.allclose(schedule_from_diffusers_config({"beta_schedule": "squaredcos_cap_v2", "num_train_timesteps": 50}).abar,
                          VPSchedule.cosine(50).abar)
    torch.testing.assert_close(schedule_from_diffusers_config({"trained_betas": [0.1, 0.2]}).abar,
                               torch.tensor([1.0, 0.9, 0.72], dtype=torch.float64))
    sl = schedule_from_diffusers_config({"beta_schedule": "scaled_linear", "beta_start": 0.01, "beta_end": 0.04,
                                         "num_train_timesteps": 3})
    torch.testing.assert_close(sl.betas[1:], torch.tensor([0.01, 0.0225, 0.04], dtype=torch.float64))  # (0.1, 0.15, 0.2)^2
    for bad, match in [({"beta_schedule": "sigmoid"}, "beta_schedule"), ({"num_train_timesteps": 0}, "num_train_timesteps"),
                       ({"num_train_timesteps": 2.5}, "num_train_timesteps"), ([("beta_schedule", "linear")], "mapping")]:
        with pytest.raises(ValueError, match=match):
            schedule_from_diffusers_config(bad)


@pytest.mark.parametrize("kind", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_schedule_from_diffusers_config_matches_diffusers(kind):
    """The same configuration through diffusers' own DDPMScheduler (float32) gives the same abar."""
    diffusers = pytest.importorskip("diffusers")
    cfg = {"beta_schedule": kind, "beta_start": 0.00085, "beta_end": 0.012, "num_train_timesteps": 1000}
    ref = diffusers.DDPMScheduler(**cfg).alphas_cumprod.to(torch.float64)  # [T], t = 1..T
    torch.testing.assert_close(schedule_from_diffusers_config(cfg).abar[1:], ref, rtol=2e-5, atol=1e-7)


def test_defect16_trained_betas_must_agree_with_num_train_timesteps():
    """Issue 11, defect 16 (a schedule whose T disagrees with its configuration was accepted): diffusers
    configurations carry both; a mismatch is refused rather than silently resolved in favour of the betas."""
    with pytest.raises(ValueError, match="trained_betas has 2 steps but num_train_timesteps is 1000"):
        schedule_from_diffusers_config({"trained_betas": [0.1, 0.2], "num_train_timesteps": 1000})
    ok = schedule_from_diffusers_config({"trained_betas": [0.1, 0.2], "num_train_timesteps": 2})
    torch.testing.assert_close(ok.abar, torch.tensor([1.0, 0.9, 0.72], dtype=torch.float64))
