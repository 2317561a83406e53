"""diffusers conformance (issue 22, item 4): diffusers' own guiders, run through images.guiders.DiffusersGuidance,
against this toolkit's rules from their papers (sampler's CFG, APG, CFGZeroStar; sampler.practice's TCFG, MamboG,
GuidanceRescale) on random predictions. Agreement is to float32 rounding; every difference is pinned here exactly,
with the diffusers 0.42.1 source line (path inside site-packages/diffusers) it comes from."""
from __future__ import annotations

import importlib

import pytest
import torch

from sampler import (APG, CFG, LINEAR, TCFG, CFGZeroStar, GuidanceRescale, MamboG, VEPath, ZeroInit, ddim, euler,
                     optimised_scale, sampling_sigmas, uniform_times, zero_init_sigma)

F32, F64 = torch.float32, torch.float64
W = 2.0
SHAPES = [(6, 16), (3, 2, 4, 4)]
SIGMA = 0.5  # on VEPath(1.0) the velocity is eps itself: the toolkit's velocity rules act on eps there
EPS_PATH = VEPath(1.0)


@pytest.fixture
def guiders():
    pytest.importorskip("diffusers.guiders")
    return importlib.import_module("images.guiders")


def _rand(shape, seed, dtype=F32):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _const(d):
    return lambda x, s: d


def _pair(shape, dtype=F32, seed=0):
    """x and two fixed denoiser outputs: the guiders see exactly these predictions (eps = (x - D) / sigma)."""
    return _rand(shape, seed, dtype), _rand(shape, seed + 1, dtype), _rand(shape, seed + 2, dtype) + 0.3


def _ulp_close(a, b, factor=8):
    """Equal up to float32 rounding of quantities of the size of the inputs."""
    scale = max(a.abs().max().item(), b.abs().max().item(), 1.0)
    assert (a - b).abs().max().item() <= factor * torch.finfo(F32).eps * scale, (a - b).abs().max().item()


# --- agreement to float32 ----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("original", [False, True])
def test_cfg(guiders, shape, original):
    x, dc, du = _pair(shape)
    ours = CFG(_const(dc), _const(du), W)(x, SIGMA)
    theirs = guiders.DIFFUSERS_GUIDERS["ClassifierFreeGuidance"](W, _const(dc), _const(du),
                                                                 use_original_formulation=original)(x, SIGMA)
    _ulp_close(ours, theirs)


@pytest.mark.parametrize("shape", SHAPES)
def test_tcfg(guiders, shape):
    x, dc, du = _pair(shape)
    _ulp_close(TCFG(_const(dc), _const(du), W)(x, SIGMA),
               guiders.DIFFUSERS_GUIDERS["TangentialClassifierFreeGuidance"](W, _const(dc), _const(du))(x, SIGMA), 32)


@pytest.mark.parametrize("shape", [(6, 16), (3, 5, 4)])
def test_mambo_g(guiders, shape):
    x, dc, du = _pair(shape)
    for alpha in (0.0, 0.5, 8.0):
        _ulp_close(MamboG(_const(dc), _const(du), W, alpha)(x, SIGMA),
                   guiders.DIFFUSERS_GUIDERS["MagnitudeAwareGuidance"](W, _const(dc), _const(du), alpha=alpha)(x, SIGMA))


def test_mambo_g_fails_on_image_shaped_predictions(guiders):
    """magnitude_aware_guidance.py:148-150: ``torch.norm(diff, dim=list(range(1, ndim)))`` is a matrix norm for
    three-dimensional predictions ([N, L, C], packed tokens: works) and an error for [N, C, H, W] (a UNet's latents):
    ``RuntimeError: linalg.matrix_norm: dim must be a 2-tuple``. The toolkit's MamboG takes any shape."""
    x, dc, du = _pair((3, 2, 4, 4))
    with pytest.raises(RuntimeError, match="2-tuple"):
        guiders.DIFFUSERS_GUIDERS["MagnitudeAwareGuidance"](W, _const(dc), _const(du))(x, SIGMA)
    assert torch.all(torch.isfinite(MamboG(_const(dc), _const(du), W)(x, SIGMA)))


@pytest.mark.parametrize("shape", SHAPES)
def test_cfg_zero_star_on_the_velocity(guiders, shape):
    x, dc, du = _pair(shape)
    ours = CFGZeroStar(_const(dc), _const(du), W, path=LINEAR)(x, SIGMA)
    theirs = guiders.DIFFUSERS_GUIDERS["ClassifierFreeZeroStarGuidance"](W, _const(dc), _const(du), space="velocity",
                                                                         path=LINEAR, zero_init_steps=0)(x, SIGMA)
    _ulp_close(ours, theirs, 32)


@pytest.mark.parametrize("shape", SHAPES)
def test_apg_in_the_original_formulation_over_a_trajectory(guiders, shape):
    """APG on x0 with eta, norm cap and momentum over the steps of a grid: with use_original_formulation=True
    (pred_c + s * update, s = w) diffusers is the paper's rule, which is sampler.APG."""
    x, dc, du = _pair(shape)
    sig = torch.tensor([3.0, 1.5, 0.7, 0.2, 0.0], dtype=F64)
    ours = APG(_const(dc), _const(du), W, eta=0.3, momentum=-0.5, norm_cap=2.0)
    theirs = guiders.DIFFUSERS_GUIDERS["AdaptiveProjectedGuidance"](
        W, _const(dc), _const(du), space="x0", sigmas=sig, eta=0.3, adaptive_projected_guidance_momentum=-0.5,
        adaptive_projected_guidance_rescale=2.0, use_original_formulation=True)
    for run in range(2):  # the second run: diffusers resets its momentum at step 0, the toolkit on reset()
        ours.reset()
        for s in sig[:-1].tolist():
            _ulp_close(ours(x, s), theirs(x, s))


@pytest.mark.parametrize("name", ["ClassifierFreeGuidance", "AdaptiveProjectedGuidance",
                                  "ClassifierFreeZeroStarGuidance", "TangentialClassifierFreeGuidance",
                                  "MagnitudeAwareGuidance"])
def test_guidance_rescale_on_each_guider(guiders, name):
    """guidance_rescale=0.7 on every guider, on eps, against GuidanceRescale around the toolkit's rule (APG and
    CFG-Zero* act on the velocity of VEPath(1), which is eps; APG with eta = 1, no cap, original formulation)."""
    x, dc, du = _pair((4, 3, 6))  # [N, L, C]: MagnitudeAwareGuidance fails on [N, C, H, W] (pinned below)
    c, u = _const(dc), _const(du)
    inner, options = {
        "ClassifierFreeGuidance": (CFG(c, u, W), {}),
        "AdaptiveProjectedGuidance": (APG(c, u, W, eta=0.4, on="velocity", path=EPS_PATH),
                                      {"eta": 0.4, "adaptive_projected_guidance_rescale": 0.0,
                                       "use_original_formulation": True}),
        "ClassifierFreeZeroStarGuidance": (CFGZeroStar(c, u, W, path=EPS_PATH), {"zero_init_steps": 0}),
        "TangentialClassifierFreeGuidance": (TCFG(c, u, W), {}),
        "MagnitudeAwareGuidance": (MamboG(c, u, W, alpha=1.0), {"alpha": 1.0}),
    }[name]
    theirs = guiders.DIFFUSERS_GUIDERS[name](W, c, u, guidance_rescale=0.7, **options)(x, SIGMA)
    _ulp_close(GuidanceRescale(inner, 0.7)(x, SIGMA), theirs, 64)


# --- differences, each pinned with its source line ------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
def test_apg_default_formulation_is_anchored_on_the_unconditional(guiders, shape):
    """adaptive_projected_guidance.py:250-251, ``pred = pred_cond if use_original_formulation else pred_uncond;
    pred = pred + guidance_scale * normalized_update``: the default is ``u + s * update`` with ``s = 1 + w``, which
    is the paper's ``c + w * update`` plus ``update - (c - u)``, nonzero unless eta = 1 and the cap and momentum do
    nothing (then update = c - u). Defaults there are eta = 1.0 (line 69; the paper's default is 0) and a norm
    cap of 15 (line 67)."""
    x, dc, du = _pair(shape)
    ours = APG(_const(dc), _const(du), W, eta=0.3, norm_cap=2.0)(x, SIGMA)
    theirs = guiders.DIFFUSERS_GUIDERS["AdaptiveProjectedGuidance"](
        W, _const(dc), _const(du), space="x0", eta=0.3, adaptive_projected_guidance_rescale=2.0)(x, SIGMA)
    update = (ours - dc) / W
    _ulp_close(theirs, ours + update - (dc - du), 32)
    assert (theirs - ours).abs().max() > 0.1
    # eta = 1, no cap: the two formulations agree
    ours1 = APG(_const(dc), _const(du), W, eta=1.0)(x, SIGMA)
    theirs1 = guiders.DIFFUSERS_GUIDERS["AdaptiveProjectedGuidance"](
        W, _const(dc), _const(du), space="x0", eta=1.0, adaptive_projected_guidance_rescale=0.0)(x, SIGMA)
    _ulp_close(ours1, theirs1, 32)


def test_cfg_zero_star_scale_in_float32_with_an_offset(guiders):
    """classifier_free_zero_star_guidance.py:157-161 (``cfg_zero_star_scale``): s* is computed in float32 whatever
    the input dtype and with 1e-8 added to |v_u|^2. In float64 the guided output then differs from the exact rule
    at float32 level, and where |v_u|^2 is comparable to 1e-8 s* itself is wrong."""
    x, dc, du = _pair((5, 8), F64)
    rule = lambda d_u: guiders.DIFFUSERS_GUIDERS["ClassifierFreeZeroStarGuidance"](
        W, _const(dc), _const(d_u), space="velocity", path=LINEAR, zero_init_steps=0)
    diff = (rule(du)(x, SIGMA) - CFGZeroStar(_const(dc), _const(du), W, path=LINEAR)(x, SIGMA)).abs().max().item()
    assert 1e-12 < diff < 1e-5
    # v_u of norm ~1e-4.5: diffusers' s* = <v_c, v_u> / (|v_u|^2 + 1e-8), the exact s* has no 1e-8
    from sampler import velocity_from_denoised, denoised_from_velocity
    v_c = velocity_from_denoised(LINEAR, x, SIGMA, dc)
    small_vu = 1e-5 * _rand((5, 8), 9, F64)
    d_u = denoised_from_velocity(LINEAR, x, SIGMA, small_vu)
    exact = optimised_scale(v_c, small_vu)
    theirs_scale = (v_c * small_vu).sum(1) / ((small_vu**2).sum(1) + 1e-8)
    got = velocity_from_denoised(LINEAR, x, SIGMA, rule(d_u)(x, SIGMA))
    want = v_c + W * (v_c - theirs_scale[:, None] * small_vu)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert ((theirs_scale - exact).abs() / exact.abs()).min() > 0.01


def test_tcfg_svd_in_float32(guiders):
    """tangential_classifier_free_guidance.py:136: ``torch.stack([pred_cond, pred_uncond], dim=1).float()``: the
    projection runs in float32 for float64 inputs."""
    x, dc, du = _pair((5, 8), F64)
    diff = (TCFG(_const(dc), _const(du), W)(x, SIGMA)
            - guiders.DIFFUSERS_GUIDERS["TangentialClassifierFreeGuidance"](W, _const(dc), _const(du))(x, SIGMA))
    assert 1e-12 < diff.abs().max().item() < 1e-4


def test_tcfg_is_conditional_raises(guiders):
    """tangential_classifier_free_guidance.py:104: ``is_conditional`` reads ``self._num_outputs_prepared``, an
    attribute no guider sets (the others read ``_count_prepared``): the property raises AttributeError."""
    g = importlib.import_module("diffusers.guiders").TangentialClassifierFreeGuidance()
    with pytest.raises(AttributeError):
        g.is_conditional
    assert importlib.import_module("diffusers.guiders").ClassifierFreeGuidance().is_conditional is False


def test_mambo_g_zero_unconditional_is_nan(guiders):
    """magnitude_aware_guidance.py:150: ``ratio = |c - u| / |u|`` with no guard: an all-zero eps_u gives inf, and
    where eps_c is zero too, nan; the toolkit's MamboG gives the conditional model there."""
    x, dc, _ = _pair((3, 5))
    du = x.clone()  # eps_u = (x - D_u) / sigma = 0
    theirs = guiders.DIFFUSERS_GUIDERS["MagnitudeAwareGuidance"](W, _const(dc), _const(du), alpha=1.0)(x, SIGMA)
    ours = MamboG(_const(dc), _const(du), W, alpha=1.0)(x, SIGMA)
    _ulp_close(ours, dc)
    _ulp_close(theirs, dc)  # exp(-inf) = 0: the same here ...
    both_zero = guiders.DIFFUSERS_GUIDERS["MagnitudeAwareGuidance"](W, _const(x.clone()), _const(du), alpha=1.0)
    assert torch.isnan(both_zero(x, SIGMA)).all()  # ... but 0 / 0 = nan where eps_c = eps_u = 0
    assert torch.equal(MamboG(_const(x.clone()), _const(du), W, alpha=1.0)(x, SIGMA), x)


def test_rescale_of_a_constant_prediction_divides_by_zero(guiders):
    """guider_utils.py:391-393 (``rescale_noise_cfg``): ``noise_cfg * (std_text / std_cfg)`` with no guard: a guided
    prediction with zero spread (here eps_c = eps_u = a constant) gives 0/0 = nan; GuidanceRescale keeps it."""
    x = torch.zeros(2, 6)
    d = x - 0.7  # eps = 0.7 / sigma = 1.4 in every coordinate, exactly
    theirs = guiders.DIFFUSERS_GUIDERS["ClassifierFreeGuidance"](W, _const(d), _const(d.clone()),
                                                                 guidance_rescale=0.7)(x, SIGMA)
    assert torch.isnan(theirs).all()
    torch.testing.assert_close(GuidanceRescale(CFG(_const(d), _const(d.clone()), W), 0.7)(x, SIGMA), d)


# --- the adapter: weights, steps, state, errors ------------------------------------------------------------------
def test_weight_mapping(guiders):
    assert guiders.guider_scale(W, original=False) == W + 1 and guiders.guider_scale(W, original=True) == W
    x, dc, du = _pair((3, 4))
    rule = guiders.DIFFUSERS_GUIDERS["ClassifierFreeGuidance"](W, _const(dc), _const(du))
    rule(x, SIGMA)
    assert rule.guider.guidance_scale == W + 1
    for name, factory in guiders.DIFFUSERS_GUIDERS.items():
        options = {"zero_init_steps": 0} if name == "ClassifierFreeZeroStarGuidance" else {}
        assert torch.equal(factory(0.0, _const(dc), _const(du), **options)(x, SIGMA), dc)  # w = 0: the conditional model


def test_windows_and_zero_init_follow_the_grid(guiders):
    sig = sampling_sigmas(LINEAR, uniform_times(6))
    x, dc, du = _pair((3, 4), F64)
    rule = guiders.DIFFUSERS_GUIDERS["ClassifierFreeGuidance"](W, _const(dc), _const(du), sigmas=sig, start=0.5)
    levels = sig[:-1].tolist()
    for i, s in enumerate(levels):
        want = dc if i < 3 else CFG(_const(dc), _const(du), W)(x, s)  # int(0.5 * 6) = 3 steps without guidance
        _ulp_close(rule(x, s), want)
    # zero-init through the adapter = the toolkit's ZeroInit(CFGZeroStar) over a whole Euler run
    a, b = (lambda x, s: 0.8 * x / (1 + s**2) + 0.2), (lambda x, s: x / (1 + s**2) - 0.3)
    theirs = guiders.DIFFUSERS_GUIDERS["ClassifierFreeZeroStarGuidance"](W, a, b, space="velocity", path=LINEAR,
                                                                         sigmas=sig, zero_init_steps=2)
    ours = ZeroInit(CFGZeroStar(a, b, W, path=LINEAR), zero_init_sigma(sig, 2))
    x0 = _rand((5, 4), 3, F64) * sig[0].item()
    torch.testing.assert_close(euler(theirs, x0, sig), euler(ours, x0, sig), rtol=1e-6, atol=1e-6)


def test_apg_momentum_restarts_each_trajectory(guiders):
    sig = torch.tensor([4.0, 2.0, 1.0, 0.5, 0.0], dtype=F64)
    a, b = (lambda x, s: 0.8 * x / (1 + s**2) + 0.2), (lambda x, s: x / (1 + s**2) - 0.3)
    rule = guiders.DIFFUSERS_GUIDERS["AdaptiveProjectedGuidance"](W, a, b, space="x0", sigmas=sig,
                                                                  adaptive_projected_guidance_momentum=-0.5)
    x0 = _rand((5, 4), 3, F64) * 4
    first, second = ddim(rule, x0, sig), ddim(rule, x0, sig)
    assert torch.equal(first, second)
    no_momentum = guiders.DIFFUSERS_GUIDERS["AdaptiveProjectedGuidance"](W, a, b, space="x0", sigmas=sig)
    assert not torch.allclose(first, ddim(no_momentum, x0, sig))


def test_bad_arguments(guiders):
    x, dc, du = _pair((3, 4))
    cfg = guiders.DIFFUSERS_GUIDERS["ClassifierFreeGuidance"]
    with pytest.raises(ValueError, match="space"):
        cfg(W, _const(dc), _const(du), space="v")
    with pytest.raises(ValueError, match="path"):
        cfg(W, _const(dc), _const(du), path=LINEAR)
    with pytest.raises(ValueError, match="path"):
        cfg(W, _const(dc), _const(du), space="velocity")  # plain denoisers carry no path
    with pytest.raises(ValueError, match="sigmas"):
        cfg(W, _const(dc), _const(du), stop=0.5)
    with pytest.raises(ValueError, match="sigmas"):
        guiders.DIFFUSERS_GUIDERS["ClassifierFreeZeroStarGuidance"](W, _const(dc), _const(du))  # zero_init_steps=1
    with pytest.raises(ValueError, match="guidance_scale"):
        cfg(W, _const(dc), _const(du), guidance_scale=3.0)
    with pytest.raises(ValueError, match="w"):
        cfg(True, _const(dc), _const(du))(x, SIGMA)
    with pytest.raises(ValueError, match="grid"):
        cfg(W, _const(dc), _const(du), sigmas=torch.tensor([2.0, 1.0, 0.0]))(x, 0.7)
    with pytest.raises(ValueError, match="sigma > 0"):
        cfg(W, _const(dc), _const(du)).delta(x, 0.0, dc)
    with pytest.raises(ValueError, match="guider"):
        guiders.DiffusersGuidance(_const(dc), _const(du), object())


def test_registry_without_diffusers(monkeypatch):
    """Without diffusers the registry is empty and every name is reported skipped with the reason."""
    module = importlib.import_module("images.guiders")
    real = importlib.import_module

    def no_diffusers(name, *args):
        if name.startswith("diffusers"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_diffusers)
    found, skipped = module.load_guiders()
    assert found == {} and set(skipped) == set(module.GUIDER_NAMES)
    assert all("not installed" in reason for reason in skipped.values())


def test_conformance_table(guiders):
    """The generated table: every pair agrees to float32 except APG's default formulation (line 250-251) on any
    shape and MAMBO-G on [N, C, H, W] (lines 148-150), which fails."""
    flat = guiders.conformance(n=16, shape=(8,))
    assert [r.agrees for r in flat].count(False) == 1 and "adaptive_projected_guidance.py:250" in \
        next(r.source for r in flat if not r.agrees)
    assert all(r.max_rel < 1e-6 for r in flat if r.agrees)
    image = guiders.conformance(n=4, shape=(2, 4, 4))
    failed = [r for r in image if not r.agrees]
    assert len(failed) == 3 and sum("2-tuple" in r.source for r in failed) == 2


def test_apg_momentum_needs_prepare_inputs_at_step_zero(guiders):
    """adaptive_projected_guidance.py:88-90: the momentum buffer is made only by ``prepare_inputs`` at step 0. A caller
    that drives ``forward`` directly (as one may for CFG, whose state is only the step) gets APG without momentum,
    silently; the adapter follows the pipeline's sequence, so its momentum is on (test_apg_in_the_original_...)."""
    G = importlib.import_module("diffusers.guiders")
    c, u = _rand((3, 6), 1), _rand((3, 6), 2)
    with_m = G.AdaptiveProjectedGuidance(guidance_scale=3.0, adaptive_projected_guidance_momentum=-0.5)
    without = G.AdaptiveProjectedGuidance(guidance_scale=3.0)
    for step in range(3):
        for g in (with_m, without):
            g.set_state(step=step, num_inference_steps=3, timestep=torch.tensor(1.0))
        assert torch.equal(with_m.forward(c, u).pred, without.forward(c, u).pred)
    assert with_m.momentum_buffer is None
