"""Flow guidance rules (sampler.flow_guidance) against velocity-space formulas computed by hand from the raw
networks, diffusers' own implementations of CFG-Zero* and APG (when installed), REG's velocity form with an
explicit Jacobian, and the contract: every sampler, shapes [N, d] and [N, C, H, W], seeds, w = 0 is unguided."""
from __future__ import annotations

import math

import pytest
import torch

from sampler import (APG, CFG, ESTIMATORS, LINEAR, REG, SAMPLERS, CFGZeroStar, MixtureModel, Unguided, VelocityModel,
                     VEPath, VPPath, ZeroInit, bind, denoised_from_velocity, euler, optimised_scale, sample,
                     sampling_sigmas, shift_times, uniform_times, velocity_from_denoised, vp_prior, zero_init_sigma)
from sampler.paths import velocity_map

from .conftest import TinyConv, TinyMLP, random_mixture

F64 = torch.float64
PATHS = [LINEAR, VPPath(), VEPath(5.0)]
SIGMAS = sampling_sigmas(LINEAR, shift_times(uniform_times(5), 3.0))  # [6], a flow grid in contract levels
W = 1.5


def _x(shape=(6, 3), seed=0, dtype=F64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _mlp_pair(path=LINEAR):
    """Velocity MLPs for the conditional (label 0) and unconditional (None) branch, one network."""
    model = VelocityModel(TinyMLP(3, seed=11), path)
    return model, bind(model, 0), bind(model, None)


def _raw_v(model, x, sigma, cond):
    """The network's own velocity at the contract point, computed without the adapter's conversion."""
    t = model.path.time_of_sigma(sigma)
    return model.net(model.path.at(t).alpha * x, torch.full((x.shape[0],), t, dtype=x.dtype), cond), t


# --- CFG on the velocity is CFG ----------------------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_cfg_on_the_velocity_is_cfg(path):
    mix = MixtureModel({0: random_mixture(3, 2, 1), None: random_mixture(3, 3, 2, spread=2.0)})
    c, u = bind(mix, 0), bind(mix, None)
    x = _x()
    for s in (0.05, 0.7, 3.0):
        v_c, v_u = (velocity_from_denoised(path, x, s, f(x, s)) for f in (c, u))
        d = denoised_from_velocity(path, x, s, v_c + W * (v_c - v_u))
        torch.testing.assert_close(CFG(c, u, W)(x, s), d, rtol=1e-11, atol=1e-11)


def test_cfg_on_raw_network_velocities_is_cfg():
    model, c, u = _mlp_pair()
    x = _x()
    for s in SIGMAS[:-1].tolist():
        (v_c, t), (v_u, _) = _raw_v(model, x, s, 0), _raw_v(model, x, s, None)
        x_t = (1 - t) * x
        torch.testing.assert_close(CFG(c, u, W)(x, s), x_t - t * (v_c + W * (v_c - v_u)), rtol=1e-11, atol=1e-11)


# --- CFG-Zero* ---------------------------------------------------------------------------------------------
def test_cfg_zero_star_by_hand():
    """The authors' form v = s* v_u + g (v_c - s* v_u), g = w + 1, from the raw network velocities, and the D-form
    derived in the module docstring, D_c + w (D_c - s* D_u) + w (1 - s*) (a/b) x."""
    model, c, u = _mlp_pair()
    x = _x()
    rule = CFGZeroStar(c, u, W)
    for s in SIGMAS[:-1].tolist():
        (v_c, t), (v_u, _) = _raw_v(model, x, s, 0), _raw_v(model, x, s, None)
        s_star = (v_c * v_u).sum(1, keepdim=True) / (v_u * v_u).sum(1, keepdim=True)
        v = s_star * v_u + (W + 1) * (v_c - s_star * v_u)
        got = rule(x, s)
        torch.testing.assert_close(got, (1 - t) * x - t * v, rtol=1e-10, atol=1e-10)
        m = velocity_map(LINEAR, s)
        d_c, d_u = c(x, s), u(x, s)
        torch.testing.assert_close(got, d_c + W * (d_c - s_star * d_u) + W * (1 - s_star) * (m.a / m.b) * x,
                                   rtol=1e-10, atol=1e-10)
        assert not torch.allclose(got, CFG(c, u, W)(x, s))  # s* != 1 here: it is not CFG


def test_optimised_scale():
    a, b = _x((4, 2, 3), 1), _x((4, 2, 3), 2)
    ref = (a * b).flatten(1).sum(1) / (b * b).flatten(1).sum(1)
    torch.testing.assert_close(optimised_scale(a, b), ref)
    b[1] = 0  # no unconditional velocity: s* = 0 (it multiplies zero), never nan
    assert optimised_scale(a, b)[1].item() == 0.0 and torch.all(torch.isfinite(optimised_scale(a, b)))
    with pytest.raises(ValueError, match="one shape"):
        optimised_scale(a, b[:, :1])


def test_cfg_zero_star_and_zero_init_match_diffusers_guider():
    """A whole flow Euler run in flow coordinates with diffusers' ClassifierFreeZeroStarGuidance on the raw
    velocities (one zero-init step) against ZeroInit(CFGZeroStar) through the contract and sampler.euler."""
    guiders = pytest.importorskip("diffusers.guiders")
    model, c, u = _mlp_pair()
    n_steps = len(SIGMAS) - 1
    t_lev = [LINEAR.time_of_sigma(s) for s in SIGMAS[:-1].tolist()] + [0.0]
    for original in (False, True):
        guider = guiders.ClassifierFreeZeroStarGuidance(guidance_scale=W if original else W + 1, zero_init_steps=1,
                                                        use_original_formulation=original)
        x_t = _x(seed=3)
        ours = euler(ZeroInit(CFGZeroStar(c, u, W), zero_init_sigma(SIGMAS, 1)), x_t / (1 - t_lev[0]), SIGMAS)
        for i in range(n_steps):
            guider.set_state(step=i, num_inference_steps=n_steps, timestep=torch.tensor(t_lev[i] * 1000))
            tt = torch.full((x_t.shape[0],), t_lev[i], dtype=F64)
            v = guider.forward(model.net(x_t, tt, 0), model.net(x_t, tt, None)).pred
            x_t = x_t + (t_lev[i + 1] - t_lev[i]) * v
        torch.testing.assert_close(ours, x_t, rtol=1e-6, atol=1e-6)  # diffusers computes s* in float32


def test_zero_init():
    model, c, u = _mlp_pair()
    calls = []

    def counting(x, s):
        calls.append(s)
        return c(x, s)

    k = 2
    thr = zero_init_sigma(SIGMAS, k)
    rule = ZeroInit(CFGZeroStar(counting, u, W), thr)
    x_t = _x(seed=4)
    t0 = LINEAR.time_of_sigma(SIGMAS[0].item())
    states = []
    euler(rule, x_t / (1 - t0), SIGMAS, callback=lambda st: states.append(st))
    for st in states[:k]:  # the zeroed steps leave x_t where it is, and no model is called there
        t_next = LINEAR.time_of_sigma(st.sigma_next) if st.sigma_next > 0 else 0.0
        torch.testing.assert_close((1 - t_next) * st.x, x_t, rtol=1e-13, atol=1e-13)
    assert sorted(set(calls), reverse=True) == SIGMAS[k:-1].tolist()
    assert zero_init_sigma(SIGMAS, 0) == math.inf
    assert ZeroInit(CFGZeroStar(c, u, W), math.inf)(x_t, 1.0).equal(CFGZeroStar(c, u, W)(x_t, 1.0))


def test_zero_init_protocol_and_reg():
    """cond + delta equals the call in each branch, so REG can wrap ZeroInit and ZeroInit can wrap REG."""
    model, c, u = _mlp_pair()
    x = _x(seed=5)
    inner = CFGZeroStar(c, u, W)
    thr = zero_init_sigma(SIGMAS, 1)
    for g in (ZeroInit(inner, thr), ZeroInit(REG(inner, "vjp"), thr)):
        for s in (SIGMAS[0].item(), SIGMAS[2].item()):
            torch.testing.assert_close(g.cond(x, s) + g.delta(x, s, g.cond(x, s)), g(x, s), rtol=1e-12, atol=1e-12)
            assert g.active(s)
    outside = ZeroInit(REG(inner, "vjp"), thr)
    torch.testing.assert_close(outside(x, 0.5), REG(inner, "vjp")(x, 0.5))
    assert not ZeroInit(CFGZeroStar(c, u, 0.0), thr).active(0.5)


# --- APG ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("on,path", [("x0", None)] + [("velocity", p) for p in PATHS])
def test_apg_with_full_parallel_part_is_cfg(on, path):
    mix = MixtureModel({0: random_mixture(3, 2, 1), None: random_mixture(3, 3, 2, spread=2.0)})
    c, u = bind(mix, 0), bind(mix, None)
    x = _x()
    for s in (0.1, 1.0, 5.0):
        torch.testing.assert_close(APG(c, u, W, eta=1.0, on=on, path=path)(x, s), CFG(c, u, W)(x, s), rtol=1e-11,
                                   atol=1e-11)


def test_apg_projection_and_cap_properties():
    model, c, u = _mlp_pair()
    x = _x()
    r = 0.02
    for s in SIGMAS[1:-1].tolist():
        d_c = c(x, s)
        delta = APG(c, u, W, eta=0.0)(x, s) - d_c  # eta = 0: no component along D_c
        assert (delta * d_c).sum(1).abs().max().item() < 1e-12 * (delta.norm() * d_c.norm()).item() + 1e-15
        capped = APG(c, u, W, eta=1.0, norm_cap=r)(x, s) - d_c  # the capped diff has norm <= r
        assert torch.all(capped.norm(dim=1) <= W * r * (1 + 1e-12))
        assert torch.all((d_c - u(x, s)).norm(dim=1) > r)  # so the cap is active here


@pytest.mark.parametrize("on", ["x0", "velocity"])
def test_apg_matches_diffusers_normalized_guidance(on):
    """Along a sequence of levels with momentum, norm cap and eta: diffusers' normalized_guidance (the paper's
    listing) on D (on='x0') or on the raw network velocities (on='velocity', linear path)."""
    apg_mod = pytest.importorskip("diffusers.guiders.adaptive_projected_guidance")
    model, c, u = _mlp_pair()
    beta, r, eta = -0.5, 0.3, 0.2
    ours = APG(c, u, W, eta=eta, momentum=beta, norm_cap=r, on=on)
    buffer = apg_mod.MomentumBuffer(beta)
    x = _x(seed=6)
    for s in SIGMAS[:-1].tolist():
        if on == "x0":
            pc, pu = c(x, s), u(x, s)
        else:
            pc, pu = _raw_v(model, x, s, 0)[0], _raw_v(model, x, s, None)[0]
        ref = apg_mod.normalized_guidance(pc, pu, W, buffer, eta=eta, norm_threshold=r, use_original_formulation=True)
        if on == "velocity":
            ref = denoised_from_velocity(LINEAR, x, s, ref)
        torch.testing.assert_close(ours(x, s), ref, rtol=1e-10, atol=1e-10)


def test_apg_momentum_state():
    model, c, u = _mlp_pair()
    x = _x(seed=7)
    apg = APG(c, u, W, momentum=-0.5)
    first = apg(x, 1.0)
    second = apg(x, 0.5)
    fresh = APG(c, u, W, momentum=-0.5)
    assert not torch.allclose(second, fresh(x, 0.5))  # momentum carries the first delta
    with pytest.raises(ValueError, match="reset"):
        apg(x, 2.0)  # the level rose: a new run without reset()
    with pytest.raises(ValueError, match="reset"):
        apg(x[:2], 0.4)  # another batch
    apg.reset()
    torch.testing.assert_close(apg(x, 1.0), first, rtol=0, atol=0)
    # momentum by hand: running = Delta_2 + beta Delta_1 (eta = 0, no cap) at the second level
    d1, d2 = c(x, 1.0) - u(x, 1.0), c(x, 0.5) - u(x, 0.5)
    run = d2 - 0.5 * d1
    d_c = c(x, 0.5)
    par = (run * d_c).sum(1, keepdim=True) / (d_c * d_c).sum(1, keepdim=True) * d_c
    torch.testing.assert_close(apg(x, 0.5), d_c + W * (run - par), rtol=1e-12, atol=1e-12)
    stateless = APG(c, u, W)  # momentum 0: a pure function, levels in any order
    before = stateless(x, 0.5)
    stateless(x, 2.0)
    torch.testing.assert_close(stateless(x, 0.5), before, rtol=0, atol=0)


def test_flow_guidance_bad_input():
    _, c, u = _mlp_pair()
    with pytest.raises(ValueError, match="acts on"):
        APG(c, u, on="eps")
    for kw in ({"norm_cap": 0.0}, {"norm_cap": -1.0}, {"eta": math.nan}, {"momentum": "x"}):
        with pytest.raises(ValueError):
            APG(c, u, **kw)
    with pytest.raises(ValueError, match="callable"):
        CFGZeroStar(c, None)
    with pytest.raises(ValueError, match="Path"):
        CFGZeroStar(c, u, path="linear")
    with pytest.raises(ValueError, match="sigma_zero"):
        ZeroInit(CFGZeroStar(c, u), 0.0)
    with pytest.raises(ValueError, match="no cond"):
        ZeroInit(c, 1.0)
    with pytest.raises(ValueError, match="steps"):
        zero_init_sigma(SIGMAS, len(SIGMAS))
    with pytest.raises(ValueError, match="decreasing"):
        zero_init_sigma([1.0, 2.0, 0.0], 1)


# --- REG in velocity form ----------------------------------------------------------------------------------
def _explicit_velocity_reg(model, x, s, g_v, estimator):
    """flow_guidance's docstring: v_REG = v_c + (1 - t)(g_v - t K^T g_v) ('vjp') or v_c + g_v (1 - t)(1 - t K^T 1)
    ('paper'), K = dv_c/dx_t per sample from an explicit autograd Jacobian of the raw network."""
    v_c, t = _raw_v(model, x, s, 0)
    x_t = (1 - t) * x
    tt = torch.full((x.shape[0],), t, dtype=F64)
    jac = torch.autograd.functional.jacobian(lambda z: model.net(z, tt, 0), x_t)  # [N, d, N, d]
    n = x.shape[0]
    K = jac[torch.arange(n), :, torch.arange(n), :]  # [N, d, d]
    if estimator == "vjp":
        corr = (1 - t) * (g_v - t * torch.einsum("nij,ni->nj", K, g_v))
    else:
        corr = g_v * (1 - t) * (1 - t * K.sum(1))
    return v_c + corr, t


@pytest.mark.parametrize("estimator", ["vjp", "paper"])
@pytest.mark.parametrize("rule", ["cfg", "cfg_zero_star"])
def test_reg_in_velocity_form(estimator, rule):
    model, c, u = _mlp_pair()
    guidance = CFG(c, u, W) if rule == "cfg" else CFGZeroStar(c, u, W)
    x = _x(seed=8)
    for s in SIGMAS[1:-1].tolist():
        v_c, t = _raw_v(model, x, s, 0)
        g_v = ((1 - t) * x - guidance(x, s)) / t - v_c  # the guided velocity (x_t - D) / t minus v_c
        v_reg, _ = _explicit_velocity_reg(model, x, s, g_v, estimator)
        got = REG(guidance, estimator)(x, s)
        torch.testing.assert_close(((1 - t) * x - got) / t, v_reg, rtol=1e-9, atol=1e-9)


# --- contract: every sampler, shapes, dtypes, seeds, w = 0 ---------------------------------------------------
def _mixture_vel(shape):
    d = math.prod(shape)
    from analytic import MixtureVelocity  # noqa: PLC0415 (the analytic floor only for this model factory)

    mixes = {0: random_mixture(d, 2, 1), None: random_mixture(d, 3, 2, spread=2.0)}
    return VelocityModel(MixtureVelocity(mixes, LINEAR)), shape, F64


MODELS = {
    "mixture_vec": lambda: _mixture_vel((2,)),
    "mixture_img": lambda: _mixture_vel((1, 2, 2)),
    "mlp_f64": lambda: (VelocityModel(TinyMLP(3, seed=12)), (3,), F64),
    "conv_f32": lambda: (VelocityModel(TinyConv(2, seed=13)), (2, 4, 4), torch.float32),
}
RULES = {
    "cfg_zero_star": lambda c, u, w: CFGZeroStar(c, u, w),
    "zero_init": lambda c, u, w: ZeroInit(CFGZeroStar(c, u, w), zero_init_sigma(SIGMAS, 1)),
    "apg_x0": lambda c, u, w: APG(c, u, w, momentum=-0.5, norm_cap=2.0),
    "apg_velocity": lambda c, u, w: APG(c, u, w, eta=0.3, on="velocity"),
}


def _sample(den, shape, dtype, name, seed=0):
    if hasattr(den, "reset"):
        den.reset()
    g = torch.Generator().manual_seed(seed)
    x = vp_prior(torch.randn((3,) + shape, generator=g, dtype=dtype), SIGMAS[0].item())
    return sample(name, den, x, SIGMAS, eta=0.5 if name == "ddim" else 0.0, generator=g)


@pytest.fixture(params=list(MODELS), scope="module")
def flow_model(request):
    return MODELS[request.param]()


@pytest.mark.parametrize("sampler_name", SAMPLERS)
@pytest.mark.parametrize("rule", list(RULES))
def test_flow_contract(flow_model, rule, sampler_name):
    model, shape, dtype = flow_model
    c, u = bind(model, 0), bind(model, None)
    guided = RULES[rule](c, u, W)
    out = _sample(guided, shape, dtype, sampler_name, seed=1)
    assert out.shape == (3,) + shape and out.dtype == dtype and torch.all(torch.isfinite(out))
    torch.testing.assert_close(_sample(guided, shape, dtype, sampler_name, seed=1), out, rtol=0, atol=0)
    plain = Unguided(c) if rule != "zero_init" else ZeroInit(Unguided(c), zero_init_sigma(SIGMAS, 1))
    ref = _sample(plain, shape, dtype, sampler_name, seed=1)
    torch.testing.assert_close(_sample(RULES[rule](c, u, 0.0), shape, dtype, sampler_name, seed=1), ref, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(out, ref)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("rule", list(RULES))
def test_flow_reg_contract(flow_model, rule, estimator):
    model, shape, dtype = flow_model
    c, u = bind(model, 0), bind(model, None)
    reg = REG(RULES[rule](c, u, W), estimator)
    out = _sample(reg, shape, dtype, "euler", seed=2)
    assert out.shape == (3,) + shape and out.dtype == dtype and torch.all(torch.isfinite(out))
    torch.testing.assert_close(_sample(REG(RULES[rule](c, u, W), estimator), shape, dtype, "euler", seed=2), out, rtol=0, atol=0)
    assert not torch.allclose(out, _sample(RULES[rule](c, u, W), shape, dtype, "euler", seed=2))


def test_one_dimensional_degeneracy():
    """Per-sample projections have nothing to project in d = 1: s* v_u = v_c, so CFG-Zero* is the conditional
    model; Delta is parallel to D_c, so APG is CFG with weight w * eta (0: unguided). What the 1-D presets can show."""
    mix = MixtureModel({0: random_mixture(1, 2, 1), None: random_mixture(1, 3, 2, spread=2.0)})
    c, u = bind(mix, 0), bind(mix, None)
    x = _x((9, 1), seed=9)
    for s in (0.1, 1.0, 5.0):
        torch.testing.assert_close(CFGZeroStar(c, u, W, LINEAR)(x, s), c(x, s), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(APG(c, u, W, eta=0.0)(x, s), c(x, s), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(APG(c, u, W, eta=0.4)(x, s), CFG(c, u, 0.4 * W)(x, s), rtol=1e-12, atol=1e-12)
    mix2 = MixtureModel({0: random_mixture(2, 2, 1), None: random_mixture(2, 3, 2, spread=2.0)})
    c2, u2 = bind(mix2, 0), bind(mix2, None)
    x2 = _x((9, 2), seed=9)
    assert not torch.allclose(CFGZeroStar(c2, u2, W, LINEAR)(x2, 1.0), c2(x2, 1.0))  # in d = 2 it guides
