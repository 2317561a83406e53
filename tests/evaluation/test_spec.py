"""The experiment vocabulary (evaluation.spec): one spelling per value (text round trips), values as cell keys,
clear errors, and what the values build checked against independent routes."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from analytic import CFGReward, GaussianMixture, get_preset, optimal_denoiser
from evaluation.spec import (GridWeight, Law, Levels, Method, Schedule, cfgpp_weights, lin_reaching, parse,
                             reducible_line)
from evaluation.sweep import decode, encode
from sampler.paths import LINEAR, uniform_times
from sampler.schedules import VPSchedule

F64 = torch.float64
CANONICAL = {
    "law": ["paper_1d", "paper_1d_script", "correlated_2d", "classes_2d", "single:1:0.6:0:0.5", "rand1d:3",
            "blocks_1d", "reducible:64:1.5:1.5:2:7", "reducible:4:1.5:1.5:2:axes",
            "mixture:[[[1.0],[[0.5,-1.0]],[[[1.0,0.0],[0.0,2.0]]]],[[0.5,0.5],[[0.0,0.0],[1.0,1.0]],"
            "[[[1.0,0.0],[0.0,1.0]],[[2.0,0.5],[0.5,1.0]]]]]"],
    "schedule": ["paper", "lin:20:0.0001", "linear:20:0.01:0.4", "cosine:30", "standard:10", "flow:10",
                 "flow_shift:10:3"],
    "levels": ["paper", "standard:10/ddim", "flow:10", "flow:10/ddpm", "paper/ddpm/tilted", "cosine:30/ddim/tilted_n01"],
    "method": ["cfg", "cfg,w=2,reg=vjp", "cfg,w=3,weighting=interval,lo=0.1,hi=inf", "apg_momentum,w=4,momentum=-0.3",
               "autog,bad=shift:0.5", "cg,w=0.5,weighting=linear,hi=10", "optimal,w=2", "cfg_zero_star_init,w=2",
               "unguided,w=0", "cfgpp,w=0.6", "cfg,eps_error=0.1"],
}


@pytest.mark.parametrize("kind,text", [(k, t) for k, ts in CANONICAL.items() for t in ts])
def test_every_value_prints_its_own_spelling_and_is_a_cell_key(kind, text):
    v = parse(kind, text)
    assert str(v) == text and parse(kind, str(v)) == v
    assert decode(encode(v)) == v and hash(decode(encode(v))) == hash(v)


def test_other_spellings_read_to_the_canonical_value():
    assert str(Law.parse("single:1.0:0.60:0:5e-1")) == "single:1:0.6:0:0.5"
    assert str(Method.parse("cfg,w=2.0,reg=vjp,weighting=const")) == "cfg,w=2,reg=vjp"
    assert str(Levels.parse("standard:10/ddpm/n01")) == "standard:10"
    assert str(Levels.parse("flow:10/ddim")) == "flow:10"
    assert Method.parse("cfg,w=2") == Method("cfg", 2.0) == Method("cfg", 2)


@pytest.mark.parametrize("kind,text,match", [
    ("law", "nothing", "unknown law.*single:MU_C"), ("law", "single:1:2", "single:MU_C"),
    ("law", "single:1:0:0:1", "positive"), ("law", "rand1d:x", "seed"), ("law", "reducible:4:1:1:0:axes", "VAR1"),
    ("law", "mixture:[[1]", "JSON"), ("law", "reducible:4:1:1:2:up", "ORIENT"),
    ("schedule", "geometric:10", "unknown schedule.*cosine:T"), ("schedule", "lin:ten:0.1", "integer"),
    ("schedule", "lin:20:1.5", "abar_T"), ("schedule", "standard:2000", "1000 steps"), ("schedule", "flow:0", ">= 1"),
    ("schedule", "flow_shift:10:0", "shift"), ("levels", "paper/heun", "unknown sampler"),
    ("levels", "paper/ddpm/uniform", "unknown start"), ("levels", "paper/ddpm/n01/x", "SCHEDULE"),
    ("method", "magic", "unknown rule"), ("method", "cfg,reg=best", "REG estimator"), ("method", "cfg,w", "KEY=VALUE"),
    ("method", "cfg,color=red", "KEY=VALUE"), ("method", "cfg,w=nan", "finite"), ("method", "optimal,reg=vjp", "REG modifies"),
    ("method", "cfg,weighting=steps", "weighting"), ("method", "autog,bad=blur:2", "bad model"),
    ("method", "cfg,lo=2,hi=1", "lo must be below hi"), ("method", "", "RULE"), ("other", "x", "unknown kind"),
])
def test_bad_spellings_are_refused_with_the_valid_forms(kind, text, match):
    with pytest.raises(ValueError, match=match):
        parse(kind, text)


def test_laws_build_the_mixtures_they_name():
    p = get_preset("classes_2d")
    parts = Law.parse("classes_2d").build()
    for a, b in zip((parts.cond, parts.uncond) + parts.classes, (p.cond, p.uncond) + tuple(p.classes)):
        assert torch.equal(a.means, b.means) and torch.equal(a.covs, b.covs) and torch.equal(a.weights, b.weights)
    assert parts.priors == tuple(p.priors) and parts.y == p.y and len(parts.classes) == 3
    assert Law.parse("paper_1d").build() is Law.parse("paper_1d").build()  # cached per value
    single = Law.parse("single:1:0.6:0:0.5").build()
    x = torch.linspace(-3, 3, 7, dtype=F64)[:, None]
    np.testing.assert_allclose(single.cond.log_prob(x).numpy(), stats.norm(1.0, 0.6).logpdf(x[:, 0].numpy()), rtol=1e-12)
    np.testing.assert_allclose(single.uncond.log_prob(x).numpy(), stats.norm(0.0, 0.5).logpdf(x[:, 0].numpy()), rtol=1e-12)
    # the reducible family against its dense embedding, written out by hand
    d, mu, delta, v1 = 3, 1.5, 1.0, 2.0
    q = reducible_line(d, 5)
    assert q.norm().item() == pytest.approx(1.0, rel=1e-14)
    red = Law.parse(f"reducible:{d}:{mu:g}:{delta:g}:{v1:g}:5").build()
    x = torch.randn(6, d, dtype=F64, generator=torch.Generator().manual_seed(0))
    comps = [(0.25, (mu - delta) * q, torch.eye(d, dtype=F64)), (0.25, (mu + delta) * q, torch.eye(d, dtype=F64)),
             (0.5, -mu * q, v1 * torch.eye(d, dtype=F64))]
    dense = torch.logsumexp(torch.stack([math.log(w) + torch.distributions.MultivariateNormal(m, c).log_prob(x)
                                         for w, m, c in comps]), 0)
    torch.testing.assert_close(red.uncond.log_prob(x), dense, rtol=1e-12, atol=1e-12)
    # any mixture pair: the law of the pair itself
    cond = GaussianMixture([0.3, 0.7], [[0.0, 1.0], [1.0, -1.0]], [torch.eye(2).tolist(), [[2.0, 0.3], [0.3, 1.0]]])
    law = Law.mixture(cond, p.uncond)
    torch.testing.assert_close(law.build().cond.log_prob(x[:, :2]), cond.log_prob(x[:, :2]), rtol=1e-15, atol=0)
    assert Law.parse(str(law)) == law and law.dim == 2


def test_schedules_are_the_levels_they_name():
    assert Schedule.parse("paper").vp.abar[-1].item() == pytest.approx(0.8168, abs=1e-4)
    s = lin_reaching(30, 1e-3)
    assert abs(s.abar[-1].item() - 1e-3) < 1e-9 and abs(s.betas[1].item() - 1e-4) < 1e-15
    torch.testing.assert_close(Schedule.parse("lin:30:0.001").sigmas(), s.sampling_sigmas(), rtol=0, atol=0)
    std = VPSchedule.linear(1000, 1e-4, 0.02).respace(10)
    torch.testing.assert_close(Schedule.parse("standard:10").sigmas(), std.sampling_sigmas(), rtol=0, atol=0)
    flow = Schedule.parse("flow:8")
    t = uniform_times(8)
    assert flow.steps == 8 and flow.path is LINEAR and flow.is_flow
    np.testing.assert_allclose(flow.sigmas()[1:-1].numpy(), (t / (1 - t))[1:-1].numpy(), rtol=1e-12)  # s = t / (1 - t)
    with pytest.raises(ValueError, match="flow path"):
        flow.vp
    sig = Schedule.parse("paper").sigmas()
    sig[0] = -1.0  # a copy: the cached levels are not touched
    assert Schedule.parse("paper").sigmas()[0] > 0


def test_a_method_builds_its_guidance_and_its_reward_from_the_same_weight():
    law = Law.parse("correlated_2d")
    parts = law.build()
    x = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    for w in (0.5, 3.0):
        b = Method("cfg", w).build(law, Levels.parse("standard:10"))
        assert b.reward.w == w
        dc, du = parts.cond.denoise(x, 0.7), parts.uncond.denoise(x, 0.7)
        torch.testing.assert_close(b.guided(x, 0.7), dc + w * (dc - du), rtol=1e-12, atol=1e-12)
        opt = Method("optimal", w).build(law, Levels.parse("standard:10/ddpm/tilted"))
        ref = optimal_denoiser(parts.cond, CFGReward(parts.cond, parts.uncond, w))(x, 0.7)
        torch.testing.assert_close(opt.guided(x, 0.7), ref, rtol=1e-7, atol=1e-7)
        # the start is tilted by the same reward: log p_T E_T differs from log p_T by log E_T of weight w
        start = opt.start()(x)
        assert torch.isfinite(start).all() and opt.reward.w == w


def test_weight_schedules_on_the_levels():
    sig = Schedule.parse("lin:20:0.0001").sigmas()
    guided = Method("cfg", 2.0, "up").build(Law.parse("paper_1d"), Schedule.parse("lin:20:0.0001")).guided
    ws = [guided.weight(s) for s in sig[:-1].tolist()]
    assert np.mean(ws) == pytest.approx(2.0, rel=1e-12) and all(a < b for a, b in zip(ws, ws[1:]))
    lin = Method("cfg", 1.5, "linear").weight(sig)
    assert lin(sig[0].item()) == 0.0 and lin(sig[-2].item()) == pytest.approx(3.0, rel=1e-12)
    ramp = Method("cfg", 1.5, "linear", lo=0.0, hi=10.0).weight(sig)  # an explicit ramp [lo, hi]
    assert ramp(5.0) == pytest.approx(1.5, rel=1e-12) and ramp(10.0) == 0.0
    inter = Method("cfg", 1.0, "interval", lo=0.1, hi=1.0).weight(sig)
    assert [inter(s) for s in (0.05, 0.1, 0.5, 1.0, 1.5)] == [0.0, 1.0, 1.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="not a level"):
        GridWeight((1.0, 0.5), (2.0, 3.0))(0.7)
    cpp = cfgpp_weights(0.5, sig)
    assert cpp(sig[0].item()) == pytest.approx(0.5 * sig[0].item() / (sig[0] - sig[1]).item() - 1, rel=1e-14)


def test_labels_are_human_method_names():
    labels = {t: Method.parse(t).label for t in ("cfg", "cfg,reg=vjp", "cfg_zero_star_init", "apg_momentum", "optimal",
                                                  "autog,reg=paper", "cfg,weighting=linear")}
    assert labels == {"cfg": "CFG", "cfg,reg=vjp": "REG (vjp)", "cfg_zero_star_init": "CFG-Zero* + zero-init",
                      "apg_momentum": "APG + momentum", "optimal": "optimum", "autog,reg=paper": "AutoG + REG (paper)",
                      "cfg,weighting=linear": "CFG (linear)"}


def test_autoguidance_and_cg_guide_with_the_model_their_reward_names():
    """AutoG guides away from the bad model its reward tilts by (covariances x2 here, built independently), CG
    along the exact classifier of the law's classes; eps_error shifts the conditional's eps prediction."""
    from analytic import degrade

    law = Law.parse("classes_2d")
    parts = law.build()
    x = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    b = Method("autog", 1.5, bad="cov:2").build(law, Schedule.parse("paper"))
    bad = degrade(parts.cond, 2.0)
    dc, db = parts.cond.denoise(x, 0.8), bad.denoise(x, 0.8)
    torch.testing.assert_close(b.guided(x, 0.8), dc + 1.5 * (dc - db), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b.reward.bad.covs, bad.covs, rtol=0, atol=0)
    # CG: D_c + w sigma^2 grad log p(y | x_sigma), the exact classifier by autograd on the noised classes
    cg = Method("cg", 2.0).build(law, Schedule.parse("paper"))
    s, a = 0.8, 1 / (1 + 0.8**2)
    xr = x.clone().requires_grad_(True)
    logs = torch.stack([math.log(pi) + c.noised(a).log_prob(xr * math.sqrt(a)) for pi, c in zip(parts.priors, parts.classes)])
    (grad,) = torch.autograd.grad((logs[parts.y] - torch.logsumexp(logs, 0)).sum(), xr)
    torch.testing.assert_close(cg.guided(x, s), dc + 2.0 * s**2 * grad, rtol=1e-9, atol=1e-9)
    assert cg.reward.w == 2.0
    shifted = Method("unguided", 0.0, eps_error=0.1).build(law, Schedule.parse("paper")).guided
    torch.testing.assert_close(shifted(x, 0.8), dc - 0.8 * 0.1, rtol=1e-12, atol=1e-12)


def test_method_builds_on_the_sampler_method():
    """One spelling, one parser: spec's Method is sampler.method.Method plus reward/build; both read and write
    the same text, and spec's adds only the check of the exact law's weak model ``bad``."""
    from sampler.method import Method as SamplerMethod

    for text in ("cfg,w=2,reg=vjp", "autog,weighting=linear,hi=3,bad=shift:0.5", "cfgpp,w=0.4"):
        m, base = Method.parse(text), SamplerMethod.parse(text)
        assert isinstance(m, SamplerMethod) and type(m) is Method and str(m) == str(base) == text
        assert m.label == base.label and Method.guide is SamplerMethod.guide
    SamplerMethod.parse("autog,bad=foo")  # the sampler layer does not know the exact laws' weak models
    with pytest.raises(ValueError, match="bad model"):
        Method.parse("autog,bad=foo")
