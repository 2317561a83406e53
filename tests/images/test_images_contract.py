"""Contract tests for the real image networks: every guidance (none, CFG with a constant and an
interval weight, autoguidance with a weak model), without and with every REG estimator, through every
sampler, for the tiny UNet (eps), DiT (eps, learned sigma) and EDM2-style (x0) models.

Checked: shape [N, C, H, W], dtype float32 kept, finite, detached; the same torch.Generator seed gives
the same samples; w = 0 equals the unguided conditional model; w != 0 (and REG) actually change the
result. A representative subset runs by default; the full cross product is marked slow."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import torch

pytest.importorskip("diffusers")

from images import tiny_dit, tiny_edm2, tiny_unet  # noqa: E402
from sampler import (  # noqa: E402
    CFG,
    ESTIMATORS,
    REG,
    SAMPLERS,
    AutoGuidance,
    Constant,
    Interval,
    Unguided,
    VPSchedule,
    bind,
    karras_sigmas,
    sample,
    ve_prior,
    vp_prior,
)

N = 2  # batch
W = 1.5  # guidance weight (cond-anchored: D_c + w (D_c - D_u))
C, SIZE = 2, 4  # 2 x 4 x 4 images: d = 32 keeps REG's exact 'diag' estimator (d backward passes) affordable
SCHEDULE = VPSchedule.standard().respace(3)  # training indices 1, 500, 1000
COND, NULL = 3, None


@dataclass(frozen=True)
class ImageSetup:
    name: str
    model: Callable
    weak: Callable  # a weaker conditional model (smaller width, other seed) for autoguidance
    sigmas: torch.Tensor  # [K + 1], decreasing to 0, levels the model accepts
    prior: Callable[[torch.Tensor, float], torch.Tensor]

    @property
    def interval(self) -> tuple[float, float]:
        """A guidance interval holding the middle level only (so it both guides and skips)."""
        s = float(self.sigmas[1])
        return 0.5 * s, 1.5 * s


@functools.lru_cache(maxsize=None)
def get_setup(name: str) -> ImageSetup:
    common = dict(channels=C, size=SIZE)
    vp = SCHEDULE.sigmas.flip(0)
    if name == "unet":
        return ImageSetup(name, tiny_unet(seed=0, schedule=SCHEDULE, **common),
                          tiny_unet(seed=1, width=2, schedule=SCHEDULE, **common), vp, vp_prior)
    if name == "dit":
        return ImageSetup(name, tiny_dit(seed=0, schedule=SCHEDULE, **common),
                          tiny_dit(seed=1, width=8, schedule=SCHEDULE, **common), vp, vp_prior)
    if name == "edm2":
        return ImageSetup(name, tiny_edm2(seed=0, **common), tiny_edm2(seed=1, width=2, **common),
                          karras_sigmas(3, sigma_min=0.05, sigma_max=10.0), ve_prior)
    raise ValueError(f"unknown image model {name!r}")


def make_guidance(s: ImageSetup, guidance: str, w: float) -> Any:
    cond, uncond, weak = bind(s.model, COND), bind(s.model, NULL), bind(s.weak, COND)
    if guidance == "none":
        return Unguided(cond)
    elif guidance == "cfg":
        return CFG(cond, uncond, Constant(w))
    elif guidance == "cfg_interval":
        return CFG(cond, uncond, Interval(w, *s.interval))
    elif guidance == "autog":
        return AutoGuidance(cond, weak, Constant(w))
    else:
        raise ValueError(f"unknown guidance {guidance!r}")


MODELS = ("unet", "dit", "edm2")
GUIDANCES = ("none", "cfg", "cfg_interval", "autog")


def _run(s: ImageSetup, den, sampler: str, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((N, C, SIZE, SIZE), generator=g)
    return sample(sampler, den, s.prior(noise, float(s.sigmas[0])), s.sigmas, eta=0.5 if sampler == "ddim" else 0.0, generator=g)


@functools.lru_cache(maxsize=None)
def run(model: str, sampler: str, guidance: str, w: float, estimator: str | None, seed: int = 0) -> torch.Tensor:
    s = get_setup(model)
    den = make_guidance(s, guidance, w)
    return _run(s, den if estimator is None else REG(den, estimator), sampler, seed)


def check_combo(model: str, sampler: str, guidance: str, estimator: str | None) -> None:
    out = run(model, sampler, guidance, W, estimator)
    assert out.shape == (N, C, SIZE, SIZE) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and not out.requires_grad
    # the same generator seed gives the same samples (a fresh run, not the cache)
    s = get_setup(model)
    den = make_guidance(s, guidance, W)
    again = _run(s, den if estimator is None else REG(den, estimator), sampler, 0)
    torch.testing.assert_close(again, out, rtol=0, atol=0)
    if guidance == "none":
        return
    ref = run(model, sampler, "none", W, None)
    torch.testing.assert_close(run(model, sampler, guidance, 0.0, estimator), ref, rtol=0, atol=0)  # w = 0: unguided
    assert (out - ref).abs().max() > 1e-5  # w != 0 guides, so the check above can fail
    if estimator is not None:
        assert (out - run(model, sampler, guidance, W, None)).abs().max() > 1e-6  # REG corrects the guidance


def _fast(model: str, sampler: str, guidance: str, estimator: str | None) -> bool:
    """Default subset: every model x sampler with CFG; every guidance on Heun; every estimator with CFG on
    Euler (the DiT, cheapest, also on Heun and with the interval weight)."""
    if estimator is None:
        return guidance == "cfg" or sampler == "heun"
    if guidance == "cfg" and sampler == "euler":
        return True
    return model == "dit" and sampler == "heun" and guidance in ("cfg", "cfg_interval")


COMBOS = [
    pytest.param(m, smp, g, e, marks=() if _fast(m, smp, g, e) else pytest.mark.slow, id=f"{m}-{smp}-{g}-{e or 'plain'}")
    for m in MODELS
    for smp in SAMPLERS
    for g in GUIDANCES
    for e in (None, *ESTIMATORS)
    if not (g == "none" and e is not None)  # REG of no guidance is the conditional model: see the test below
]


@pytest.mark.parametrize("model, sampler, guidance, estimator", COMBOS)
def test_image_contract(model: str, sampler: str, guidance: str, estimator: str | None):
    check_combo(model, sampler, guidance, estimator)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("model", MODELS)
def test_reg_of_unguided_is_the_conditional_model(model: str, estimator: str):
    torch.testing.assert_close(run(model, "heun", "none", W, estimator), run(model, "heun", "none", W, None), rtol=0, atol=0)


@pytest.mark.parametrize("model", MODELS)
def test_different_seeds_differ_and_ddpm_is_stochastic(model: str):
    a, b = run(model, "ddpm", "cfg", W, None, seed=0), run(model, "ddpm", "cfg", W, None, seed=1)
    assert (a - b).abs().max() > 1e-4
