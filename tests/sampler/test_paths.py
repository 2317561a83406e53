"""Paths and levels (sampler.paths) against their definitions, finite differences, the VP forms of
sampler.schedules, scipy's normal quantiles, and the velocity adapter against a hand-computed flow Euler step."""
from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from sampler import (LINEAR, T_NOISE_CAP, LinearPath, VelocityModel, VEPath, VModel, VPPath, VPSchedule, abar_to_sigma,
                     bind, ddim, denoised_from_velocity, euler, get_path, logit_normal_times, sampling_sigmas,
                     shift_times, uniform_times, velocity_from_denoised)
from sampler.paths import check_time, velocity_map

from .conftest import TinyMLP

F64 = torch.float64
PATHS = [LINEAR, VPPath(), VPPath(0.5, 4.0), VEPath(), VEPath(2.0)]
TIMES = [0.013, 0.2, 0.5, 0.77, 0.95]


def _ids(p):
    return repr(p)


# --- the paths themselves -------------------------------------------------------------------------------
def test_coefficients_match_their_definitions():
    for t in TIMES:
        p = LINEAR.at(t)
        assert (p.alpha, p.sigma, p.d_alpha, p.d_sigma) == (1 - t, t, -1.0, 1.0)
        assert p.contract_sigma == pytest.approx(t / (1 - t), rel=1e-15)
        vp = VPPath(0.1, 20.0).at(t)
        abar = math.exp(-(0.1 * t + 9.95 * t * t))
        assert vp.alpha == pytest.approx(math.sqrt(abar), rel=1e-14)
        assert vp.sigma == pytest.approx(math.sqrt(1 - abar), rel=1e-14)
        assert vp.contract_sigma == pytest.approx(abar_to_sigma(abar), rel=1e-12)  # the VP form of schedules
        ve = VEPath(80.0).at(t)
        assert (ve.alpha, ve.contract_sigma) == (1.0, pytest.approx(80.0 * t, rel=1e-15))


@pytest.mark.parametrize("path", PATHS, ids=_ids)
def test_derivatives_match_finite_differences(path):
    h = 1e-6
    for t in TIMES:
        p, hi, lo = path.at(t), path.at(t + h), path.at(t - h)
        assert p.d_alpha == pytest.approx((hi.alpha - lo.alpha) / (2 * h), rel=1e-7, abs=1e-9)
        assert p.d_sigma == pytest.approx((hi.sigma - lo.sigma) / (2 * h), rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("path", PATHS, ids=_ids)
def test_time_of_sigma_inverts_the_level(path):
    for t in TIMES + [1.0 if not isinstance(path, LinearPath) else 0.999]:
        assert path.time_of_sigma(path.at(t).contract_sigma) == pytest.approx(t, rel=1e-12)


def test_vp_path_is_ddpm_continuous_limit():
    """VPPath(0.1, 20) is the T -> inf limit of DDPM's linear betas 1e-4..0.02 over T = 1000 steps:
    ``-log abar_k = sum -log(1 - beta_i)`` differs from ``B(k/T)`` by at most ``sum beta_i^2`` (the log) plus
    ``k (beta_max - beta_min) / T^2`` (each beta_i against the integral of beta(t) over its step)."""
    sched, path = VPSchedule.standard(), VPPath(0.1, 20.0)
    betas = sched.betas
    for k in (1, 10, 100, 500, 900, 1000):
        gap = abs(math.log(sched.abar[k].item()) - math.log(path.at(k / 1000).alpha ** 2))
        assert gap <= (betas[1:k + 1] ** 2).sum().item() + k * 19.9 / 1000**2


# --- velocity <-> D ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS, ids=_ids)
def test_velocity_map_is_the_path_derivative(path):
    """For x_t = alpha x0 + sigma eps, v = alpha' x0 + sigma' eps: the map must return it from (x~, D = x0)."""
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(5, 3, generator=g, dtype=F64), torch.randn(5, 3, generator=g, dtype=F64)
    for t in TIMES:
        p = path.at(t)
        s = p.contract_sigma
        x = x0 + s * eps  # contract coordinates of x_t
        v = velocity_from_denoised(path, x, s, x0)
        torch.testing.assert_close(v, p.d_alpha * x0 + p.d_sigma * eps, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(denoised_from_velocity(path, x, s, v), x0, rtol=1e-12, atol=1e-12)
        # x_t moves with v: a finite difference of the path at fixed (x0, eps)
        h = 1e-6
        fd = ((path.at(t + h).alpha - path.at(t - h).alpha) * x0 + (path.at(t + h).sigma - path.at(t - h).sigma) * eps) / (2 * h)
        torch.testing.assert_close(v, fd, rtol=1e-6, atol=1e-7)


def test_linear_velocity_is_eps_minus_x0_and_vp_velocity_is_v_prediction():
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(4, 2, generator=g, dtype=F64), torch.randn(4, 2, generator=g, dtype=F64)
    t = 0.4
    s = LINEAR.at(t).contract_sigma
    torch.testing.assert_close(velocity_from_denoised(LINEAR, x0 + s * eps, s, x0), eps - x0, rtol=1e-14, atol=1e-14)
    m = velocity_map(LINEAR, s)
    assert (m.a, m.b) == (pytest.approx(1 / s), pytest.approx(-(1 + s) / s))
    # VP: v is Salimans & Ho's v-prediction sqrt(abar) eps - sqrt(1 - abar) x0 times B'(t) sqrt(abar) / (2 sqrt(1 - abar))
    vp = VPPath(0.1, 20.0)
    p = vp.at(t)
    s = p.contract_sigma
    v_pred = p.alpha * eps - p.sigma * x0
    beta = 0.1 + 19.9 * t
    torch.testing.assert_close(velocity_from_denoised(vp, x0 + s * eps, s, x0), beta * p.alpha / (2 * p.sigma) * v_pred,
                               rtol=1e-12, atol=1e-12)


# --- levels -----------------------------------------------------------------------------------------------
def test_shift_times():
    t = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=F64)
    torch.testing.assert_close(shift_times(t, 3.0), 3 * t / (1 + 2 * t))
    torch.testing.assert_close(shift_times(t, 1.0), t)
    assert shift_times(0.5, 3.0) == pytest.approx(0.75)
    # on the linear path the shift multiplies the contract level: s' = shift * s
    for tt in TIMES:
        assert LINEAR.at(shift_times(tt, 3.0)).contract_sigma == pytest.approx(3 * LINEAR.at(tt).contract_sigma, rel=1e-12)


def test_uniform_and_logit_normal_times():
    u = uniform_times(4)
    torch.testing.assert_close(u, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=F64))
    n, m, sd = 8, 0.3, 1.2
    ln = logit_normal_times(n, m, sd)
    assert ln[0].item() == 1.0 and ln[-1].item() == 0.0 and torch.all(ln[1:] < ln[:-1])
    # equal mass per step: the logit-normal CDF at the levels is 1 - i/n (scipy's normal CDF, independent route)
    inner = ln[1:-1].numpy()
    cdf = stats.norm.cdf((torch.logit(torch.from_numpy(inner)).numpy() - m) / sd)
    torch.testing.assert_close(torch.from_numpy(cdf), 1 - torch.arange(1, n, dtype=F64) / n, rtol=1e-12, atol=1e-12)


def test_sampling_sigmas():
    t = shift_times(uniform_times(4), 3.0)
    s = sampling_sigmas(LINEAR, t)
    assert s.dtype == F64 and s[-1].item() == 0.0 and torch.all(s[1:] < s[:-1])
    assert s[0].item() == pytest.approx(T_NOISE_CAP / (1 - T_NOISE_CAP))  # t = 1 is capped
    torch.testing.assert_close(s[1:-1], t[1:-1] / (1 - t[1:-1]), rtol=1e-14, atol=0)  # the rest is exact
    s_vp = sampling_sigmas(VPPath(), t)  # t = 1 is a finite level there: nothing is capped
    assert s_vp[0].item() == pytest.approx(VPPath().at(1.0).contract_sigma)
    assert sampling_sigmas(LINEAR, t, cap=0.99)[0].item() == pytest.approx(99.0)


# --- bad input --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan, math.inf, "x", None])
def test_time_outside_unit_interval(bad):
    with pytest.raises(ValueError, match="t must"):
        check_time(bad)
    with pytest.raises(ValueError):
        LINEAR.at(bad)
    if isinstance(bad, float) and math.isfinite(bad):
        with pytest.raises(ValueError, match=rf"t must lie in \[0, 1\], got .*{bad}"):
            shift_times(bad, 3.0)
        with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
            shift_times(torch.tensor([0.5, bad]), 3.0)
        with pytest.raises(ValueError, match=r"times must lie in \[0, 1\]"):
            sampling_sigmas(LINEAR, [bad, 0.0] if bad > 1 else [0.5, bad])


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_shift_must_be_positive(bad):
    with pytest.raises(ValueError, match="shift"):
        shift_times(0.5, bad)


def test_unknown_path_and_bad_parameters():
    with pytest.raises(ValueError, match="unknown path 'cosine'"):
        get_path("cosine")
    assert get_path("rectified_flow") == LINEAR and get_path("vp", beta_max=10.0) == VPPath(0.1, 10.0)
    assert get_path("ve", sigma_max=5.0) == VEPath(5.0)
    for bad in (lambda: VPPath(0.0, 20.0), lambda: VPPath(2.0, 1.0), lambda: VEPath(-1.0), lambda: VEPath(math.inf)):
        with pytest.raises(ValueError):
            bad()


def test_bad_levels():
    with pytest.raises(ValueError, match="pure noise"):
        LINEAR.at(1.0).contract_sigma
    with pytest.raises(ValueError, match="beyond"):
        VEPath(80.0).time_of_sigma(81.0)
    for s in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="sigma"):
            LINEAR.time_of_sigma(s)
    with pytest.raises(ValueError, match="strictly decreasing"):
        sampling_sigmas(LINEAR, [0.5, 0.5, 0.0])
    with pytest.raises(ValueError, match="cap"):
        sampling_sigmas(LINEAR, [1.0, 0.99995, 0.0])  # the cap would not lie above the next level
    with pytest.raises(ValueError, match="at least 2"):
        sampling_sigmas(LINEAR, [0.5])
    for n in (0, 1.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            uniform_times(n)
    with pytest.raises(ValueError, match="std"):
        logit_normal_times(4, 0.0, 0.0)


# --- the velocity adapter and the flow Euler step ---------------------------------------------------------
def _net(seed=0):
    return TinyMLP(3, seed=seed)


def test_velocity_model_by_hand():
    net = _net()
    model = VelocityModel(net)
    x = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    for t in TIMES:
        s = t / (1 - t)
        x_t = (1 - t) * x
        v = net(x_t, torch.full((4,), t, dtype=F64), None)
        torch.testing.assert_close(model(x, s, None), x_t - t * v, rtol=1e-12, atol=1e-12)  # D = x_t - t v
        torch.testing.assert_close(model.velocity(x, s, None), v, rtol=1e-14, atol=1e-15)  # t from sigma: rounding only


def test_velocity_model_on_vp_path_is_a_v_prediction_model():
    """On a VP path a velocity net is a (rescaled) v-prediction net: VelocityModel(net, VPPath) equals VModel on
    a schedule whose levels are the path's, with the net's output divided by the map's scale."""
    path, net = VPPath(0.1, 20.0), _net(3)
    sched = VPSchedule.standard().respace(5)

    def v_pred(x_vp, k, cond):  # discrete step index -> path time, then v = velocity / (B' sqrt(abar) / (2 sqrt(1-abar)))
        abar = sched.abar[torch.searchsorted(sched.timesteps, k)].to(F64)
        s = torch.sqrt((1 - abar) / abar)
        t = torch.tensor([path.time_of_sigma(v.item()) for v in s], dtype=F64)
        p = [path.at(v.item()) for v in t]
        scale = torch.tensor([(0.1 + 19.9 * q.t) * q.alpha / (2 * q.sigma) for q in p], dtype=F64)
        return net(x_vp, t, cond) / scale[:, None]

    x = torch.randn(3, 3, dtype=F64, generator=torch.Generator().manual_seed(4))
    for s in sched.sigmas[1:-1].tolist():  # the top level of the discrete schedule lies beyond the path (157 > 152)
        torch.testing.assert_close(VelocityModel(net, path)(x, s, None), VModel(v_pred, sched)(x, s, None), rtol=1e-10, atol=1e-10)


def test_flow_euler_step_is_the_contract_euler_and_ddim_step():
    """x_t' = x_t + (t' - t) v, run by hand in flow coordinates with the raw network, equals the sampler core's
    Euler step and its DDIM(eta = 0) step in contract coordinates (THEORY.md section 8), step by step and over
    a whole shifted grid: no flow sampler is needed."""
    model = VelocityModel(_net())
    den = bind(model, None)
    sig = sampling_sigmas(LINEAR, shift_times(uniform_times(6), 3.0))
    t_lev = [LINEAR.time_of_sigma(s) for s in sig[:-1].tolist()] + [0.0]
    x_t0 = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(5))
    x_t, x = x_t0, x_t0 / (1 - t_lev[0])
    for i in range(len(sig) - 1):
        t, t_next = t_lev[i], t_lev[i + 1]
        x_t = x_t + (t_next - t) * model.net(x_t, torch.full((5,), t, dtype=F64), None)
        x_euler, x_ddim = euler(den, x, sig[i:i + 2]), ddim(den, x, sig[i:i + 2], eta=0.0)
        torch.testing.assert_close(x_euler, x_ddim, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close((1 - t_next) * x_euler, x_t, rtol=1e-12, atol=1e-12)
        x = x_euler
    torch.testing.assert_close(euler(den, x_t0 / (1 - t_lev[0]), sig), x_t, rtol=1e-12, atol=1e-12)


def test_velocity_model_input_errors():
    with pytest.raises(ValueError, match="callable"):
        VelocityModel(3)
    with pytest.raises(ValueError, match="Path"):
        VelocityModel(_net(), "linear")
    model = VelocityModel(_net(), VEPath(2.0))
    x = torch.zeros(2, 3, dtype=F64)
    for s in (0.0, -1.0, 3.0):  # 3.0 is beyond VEPath(2.0)
        with pytest.raises(ValueError):
            model(x, s, None)
