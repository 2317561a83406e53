"""Issue 20, the sampler's part of the third adversarial round: defects 3, 6, 7, 8, 12 (sampler) and 13.

Each test failed before its fix. Exact values are checked against routes that share no code with the one under
test: flow rules against velocities solved by hand from the raw network (a 2x2 system per level, not
``sampler.paths.velocity_map``) and the closed form of a zero velocity on the VP path, ``D = x / (1 + s^2)``;
``shift_times`` against exact rational arithmetic."""
from __future__ import annotations

import math
import time
from fractions import Fraction

import numpy as np
import pytest
import torch

from analytic import MixtureVelocity, path_fields
from sampler import (APG, CFG, LINEAR, MAX_LEVELS, REG, CFGZeroStar, MixtureModel, VelocityModel, VEPath, VPPath,
                     VPSchedule, ZeroInit, bind, check_sigmas, euler, karras_sigmas, logit_normal_times, model_path,
                     resolve_device, sampling_sigmas, schedule_from_diffusers_config, shift_times, uniform_times)

from .conftest import random_mixture

F64 = torch.float64
VP = VPPath()
W = 2.0


def _mixes():
    return {"c": random_mixture(3, 2, 1), "u": random_mixture(3, 3, 2, spread=2.0)}


def _x(n=6, d=3, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64) * 2


def _by_hand(net, path, x, s, combine):
    """The guided D of a velocity rule solved by hand: x_t = alpha x, raw velocities v = net(x_t, t), the rule's
    velocity ``combine(v_c, v_u)``, and x0 from the 2x2 system x_t = alpha x0 + sigma eps,
    v = alpha' x0 + sigma' eps."""
    t = path.time_of_sigma(s)
    p = path.at(t)
    x_t = p.alpha * x
    tt = torch.full((x.shape[0],), t, dtype=F64)
    v = combine(net(x_t, tt, "c"), net(x_t, tt, "u"))
    return (p.d_sigma * x_t - p.sigma * v) / (p.d_sigma * p.alpha - p.sigma * p.d_alpha)


def _zero_star(w):
    def combine(v_c, v_u):
        s_star = (v_c * v_u).sum(1, keepdim=True) / (v_u * v_u).sum(1, keepdim=True)
        return v_c + w * (v_c - s_star * v_u)
    return combine


def _apg_velocity(w, eta):
    def combine(v_c, v_u):
        diff = v_c - v_u
        par = (diff * v_c).sum(1, keepdim=True) / (v_c * v_c).sum(1, keepdim=True) * v_c
        return v_c + w * ((diff - par) + eta * par)
    return combine


# --- defect 3: flow rules take the model's path -------------------------------------------------------------
@pytest.mark.parametrize("explicit", [False, True], ids=["from-net", "explicit"])
def test_flow_rules_on_a_vp_velocity_model_use_the_vp_path(explicit):
    """CFG-Zero*, APG(on='velocity') and ZeroInit on VelocityModel(net, VPPath()) are the VP-path rules (by hand),
    not the linear-path ones (which they silently were: the check that the two differ keeps the test honest)."""
    net = MixtureVelocity(_mixes(), VP)
    model = VelocityModel(net, VP) if explicit else VelocityModel(net)
    assert model.path == VP
    c, u = bind(model, "c"), bind(model, "u")
    assert model_path(c) == VP and model_path(u) == VP
    zs, apg = CFGZeroStar(c, u, W), APG(c, u, W, eta=0.3, on="velocity")
    assert zs.path == VP and apg.path == VP
    x = _x()
    for s in (0.3, 2.0, 7.0):
        ref = _by_hand(net, VP, x, s, _zero_star(W))
        torch.testing.assert_close(zs(x, s), ref, rtol=1e-9, atol=1e-9)
        lin = _by_hand(net, LINEAR, x, s, _zero_star(W))  # the same velocities read as a linear-path rule
        assert (ref - lin).abs().max() > 1e-2, s
        torch.testing.assert_close(apg(x, s), _by_hand(net, VP, x, s, _apg_velocity(W, 0.3)), rtol=1e-9, atol=1e-9)
    for inner in (zs, REG(zs, "vjp"), CFG(c, u, W)):
        zi = ZeroInit(inner, 1.0)
        assert zi.path == VP
        for s in (1.0, 4.0):  # a zero VP velocity: D = alpha^2 x = x / (1 + s^2) (linear path: x / (1 + s))
            torch.testing.assert_close(zi(x, s), x / (1 + s * s), rtol=1e-12, atol=1e-12)


def test_vp_rule_on_path_free_denoisers_matches_the_velocity_model():
    """The exact mixture as a plain denoiser with path=VPPath() runs the same rule as its VP velocity model."""
    mixes = _mixes()
    flow = VelocityModel(MixtureVelocity(mixes, VP))
    plain = MixtureModel(mixes)
    x = _x(seed=1)
    for s in (0.5, 3.0):
        torch.testing.assert_close(CFGZeroStar(bind(flow, "c"), bind(flow, "u"), W)(x, s),
                                   CFGZeroStar(bind(plain, "c"), bind(plain, "u"), W, VP)(x, s), rtol=1e-9, atol=1e-9)


def test_flow_rules_refuse_a_contradicting_or_missing_path():
    vp_model = VelocityModel(MixtureVelocity(_mixes(), VP))
    c, u = bind(vp_model, "c"), bind(vp_model, "u")
    for make in (lambda: CFGZeroStar(c, u, W, LINEAR), lambda: APG(c, u, W, on="velocity", path=LINEAR),
                 lambda: ZeroInit(CFGZeroStar(c, u, W), 1.0, LINEAR),
                 lambda: ZeroInit(REG(CFGZeroStar(c, u, W), "vjp"), 1.0, VEPath(5.0))):
        with pytest.raises(ValueError, match=r"(LinearPath|VEPath).*VPPath|VPPath.*(LinearPath|VEPath)"):
            make()
    lin_u = bind(VelocityModel(MixtureVelocity(_mixes(), LINEAR)), "u")
    with pytest.raises(ValueError, match="VPPath.*LinearPath"):  # the two branches disagree
        CFGZeroStar(c, lin_u, W)
    with pytest.raises(ValueError, match="contradicts the network's own path"):
        VelocityModel(MixtureVelocity(_mixes(), VP), LINEAR)
    with pytest.raises(ValueError, match="on='x0'"):
        APG(c, u, W, path=VP)  # on='x0' is path-free: a path there would be silently ignored
    plain = MixtureModel(_mixes())
    pc, pu = bind(plain, "c"), bind(plain, "u")
    for make in (lambda: CFGZeroStar(pc, pu, W), lambda: APG(pc, pu, W, on="velocity"),
                 lambda: ZeroInit(CFG(pc, pu, W), 1.0)):
        with pytest.raises(ValueError, match="carry no path.*pass path="):
            make()
    assert APG(pc, pu, W).path is None  # on='x0' needs none
    assert CFGZeroStar(pc, pu, W, VP).path == VP


# --- defect 6: shift_times ----------------------------------------------------------------------------------
def test_shift_times_extreme_shifts_against_exact_arithmetic():
    ts = [0.0, 1e-300, 1e-12, 0.25, 0.5, 1 - 2**-40, 1.0]
    for k in (1e-300, 1e-8, 0.3, 3.0, 1e8, 1e300):
        got = shift_times(torch.tensor(ts, dtype=F64), k)
        assert torch.isfinite(got).all(), k
        for t, g in zip(ts, got.tolist()):
            exact = Fraction(k) * Fraction(t) / (1 + (Fraction(k) - 1) * Fraction(t))
            assert g == pytest.approx(float(exact), rel=4e-16, abs=2e-323), (t, k)  # abs: subnormal results
            assert shift_times(t, k) == g
    assert shift_times(1.0, 1e-300) == 1.0 and shift_times(0.0, 1e300) == 0.0


@pytest.mark.parametrize("bad", [True, False, np.bool_(True), [True, False], torch.tensor([True, False]), "0.5",
                                 None, ["0.5"]], ids=repr)
def test_shift_times_refuses_booleans_and_strings(bad):
    with pytest.raises(ValueError, match=r"^t must"):
        shift_times(bad, 3.0)


# --- defect 7: MixtureVelocity's time tensor ----------------------------------------------------------------
def test_mixture_velocity_time_must_match_the_batch():
    mix = random_mixture(2, 2, 3)
    net = MixtureVelocity({0: mix}, LINEAR)
    x_t = _x(4, 2)
    for t in (torch.full((3,), 0.4, dtype=F64), torch.full((5,), 0.4, dtype=F64), torch.full((4, 1), 0.4)):
        with pytest.raises(ValueError, match=r"t must be one time or a tensor \[N\] with N = 4"):
            net(x_t, t, 0)
    ref = path_fields(mix, LINEAR, x_t, 0.4).velocity
    torch.testing.assert_close(net(x_t, torch.full((4,), 0.4, dtype=F64), 0), ref, rtol=0, atol=0)
    torch.testing.assert_close(net(x_t, torch.tensor(0.4, dtype=F64), 0), ref, rtol=0, atol=0)


# --- defect 8: logit_normal_times ---------------------------------------------------------------------------
@pytest.mark.parametrize("kw,name", [({"std": 50.0}, "std"), ({"mean": 40.0}, "mean")])
def test_logit_normal_times_refuses_saturated_quantiles(kw, name):
    with pytest.raises(ValueError, match=rf"{name}=.*coincide"):
        logit_normal_times(5, **kw)


def test_logit_normal_times_are_strictly_decreasing_or_refused():
    for n in (2, 5, 40):
        for mean in (-30.0, -3.0, 0.0, 1.0, 30.0):
            for std in (0.01, 1.0, 10.0, 30.0):
                try:
                    t = logit_normal_times(n, mean, std)
                except ValueError as err:
                    assert "coincide" in str(err)
                    continue
                assert t[0] == 1 and t[-1] == 0 and bool((t[1:] < t[:-1]).all()), (n, mean, std)


# --- defect 12: clear errors naming the argument ------------------------------------------------------------
def test_level_builders_name_their_argument():
    for bad in ("abc", None, [None, 0.0], {"a": 1}):
        with pytest.raises(ValueError, match=r"^times must"):
            sampling_sigmas(LINEAR, bad)
    with pytest.raises(ValueError, match=r"^path must"):
        sampling_sigmas("linear", [0.5, 0.0])
    for bad in (None, "3", 2.5, True, [3]):
        with pytest.raises(ValueError, match=r"^n must"):
            uniform_times(bad)
    with pytest.raises(ValueError, match=r"^sigmas must"):
        check_sigmas("abc")
    with pytest.raises(ValueError, match=r"^T must"):
        VPSchedule.linear(None)
    with pytest.raises(ValueError, match=r"^n_steps must"):
        VPSchedule.paper_1d().respace("4")


def test_reg_arguments_name_themselves():
    c = lambda x, s: 0.5 * x  # noqa: E731
    g = CFG(c, c, 1.0)
    for kw, name in (({"fd_step": "a"}, "fd_step"), ({"fd_step": True}, "fd_step"), ({"fd_step": -1.0}, "fd_step"),
                     ({"max_diag_dim": "a"}, "max_diag_dim"), ({"max_diag_dim": None}, "max_diag_dim"),
                     ({"fd_central": "yes"}, "fd_central")):
        with pytest.raises(ValueError, match=rf"^{name} must"):
            REG(g, "fd", **kw)
    assert REG(g, "fd", fd_step=np.float32(1e-4)).fd_step == pytest.approx(1e-4)


@pytest.mark.parametrize("out", [lambda x: None, lambda x: [1.0], lambda x: x[:, :1], lambda x: x[:1]],
                         ids=["None", "list", "[N, 1]", "[1, d]"])
def test_velocity_net_of_the_wrong_output(out):
    """A wrong output is named with its shape; [N, 1] and [1, d] broadcast against [N, d] and were silently used."""
    model = VelocityModel(lambda x_t, t, cond: out(x_t))
    with pytest.raises(ValueError, match=r"velocity net must return a tensor of x_t's shape \(4, 2\), got"):
        model(_x(4, 2), 1.0, None)
    with pytest.raises(ValueError, match=r"denoiser must return a tensor of x's shape \(4, 2\), got .* at step 0"):
        euler(lambda x, s: out(x), _x(4, 2), [2.0, 1.0, 0.0])


def test_device_names():
    for bad in ("bogus", "cuda:x", "cpu:-1", 3, None):
        with pytest.raises(ValueError, match="device"):
            resolve_device(bad)
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_cuda_is_refused():
    for dev in ("cuda", "cuda:0", torch.device("cuda")):
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device(dev)


def test_apg_numbers_are_any_real_number_and_never_booleans():
    model = VelocityModel(MixtureVelocity(_mixes(), LINEAR))
    c, u = bind(model, "c"), bind(model, "u")
    x = _x(seed=4)
    ref = APG(c, u, W, eta=0.5, momentum=0.0, norm_cap=2.0, on="velocity")(x, 1.0)
    for conv in (np.float32, np.float64, lambda v: torch.tensor(v), lambda v: torch.tensor(v, dtype=torch.float32)):
        got = APG(c, u, W, eta=conv(0.5), momentum=conv(0.0), norm_cap=conv(2.0), on="velocity")
        assert type(got.eta) is float and type(got.norm_cap) is float
        torch.testing.assert_close(got(x, 1.0), ref, rtol=0, atol=0)
    for name in ("eta", "momentum", "norm_cap"):
        for bad in (True, np.bool_(False), torch.tensor(True), "1", math.inf):
            with pytest.raises(ValueError, match=rf"^{name} must"):
                APG(c, u, W, **{name: bad})


# --- defect 13: one bound on the number of levels -----------------------------------------------------------
def test_every_level_builder_refuses_more_than_max_levels_before_allocating():
    assert MAX_LEVELS == 10**6
    big = 10**9
    start = time.perf_counter()
    for make in (lambda: uniform_times(big), lambda: logit_normal_times(big), lambda: karras_sigmas(big),
                 lambda: VPSchedule.linear(big), lambda: VPSchedule.cosine(big), lambda: uniform_times(MAX_LEVELS)):
        with pytest.raises(ValueError, match="MAX_LEVELS"):
            make()
    assert time.perf_counter() - start < 5  # refused, not allocated (8 GB each)
    over = torch.linspace(1.0, 0.0, MAX_LEVELS + 1, dtype=F64)  # 8 MB: what a caller already holds
    for make in (lambda: shift_times(over, 3.0), lambda: sampling_sigmas(LINEAR, over), lambda: check_sigmas(over),
                 lambda: VPSchedule.from_betas(torch.full((MAX_LEVELS,), 1e-6, dtype=F64)),
                 lambda: VPSchedule(torch.linspace(1.0, 0.5, MAX_LEVELS + 1, dtype=F64),
                                    torch.arange(MAX_LEVELS + 1))):
        with pytest.raises(ValueError, match="MAX_LEVELS"):
            make()
    assert uniform_times(MAX_LEVELS - 1).numel() == MAX_LEVELS  # the bound itself is allowed


def test_diffusers_config_is_bounded_and_names_its_keys():
    for kind in ("linear", "scaled_linear", "squaredcos_cap_v2"):
        with pytest.raises(ValueError, match="MAX_LEVELS"):
            schedule_from_diffusers_config({"beta_schedule": kind, "num_train_timesteps": 10**9})
    for key, bad in (("num_train_timesteps", "1000"), ("beta_start", None), ("beta_end", "abc")):
        with pytest.raises(ValueError, match=rf"^{key} must"):
            schedule_from_diffusers_config({"beta_schedule": "scaled_linear", key: bad})
    with pytest.raises(ValueError, match=r"^betas must"):
        schedule_from_diffusers_config({"trained_betas": ["a", "b"]})
