"""The practitioners' rules (sampler.practice) against formulas written again here in numpy on eps (the units their
sources use), their limits that are CFG or the wrapped rule bit for bit, the contract (w = 0 is the conditional
model, shapes [N, d] and [N, C, H, W], dtype, empty batch, a sampler run) and argument errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sampler import (APG, CFG, CFGNorm, Characteristic, CharacteristicNotConverged, DynamicThresholding,
                     GuidanceRescale, Interval, MamboG, TCFG, ddim, s_to_w, top_singular_projection, w_to_s)

F64 = torch.float64
W = 2.5
SIGMAS = (0.3, 1.0, 4.0)


def d_cond(x, s):
    return x / (1 + s**2) + 0.6 * torch.sin(x + 1.0)


def d_uncond(x, s):
    return x / (1 + s**2) - 0.4 * torch.cos(2.0 * x) + 0.1


def d_uncond_wide(x, s):
    """A wider unconditional law than d_cond's, so that characteristic guidance's iteration contracts:
    (1 + w) J_u - w J_c stays positive (with d_uncond it is not, and the iteration does not converge)."""
    return -0.3 + 1.6 / (1.6 + s**2) * (x + 0.3)


def _x(shape=(5, 7), seed=0, dtype=F64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _eps(x, s):
    """eps_c, eps_u in numpy from the raw denoisers: eps = (x - D) / sigma."""
    xn = x.double().numpy()
    return ((xn - d_cond(x, s).double().numpy()) / s, (xn - d_uncond(x, s).double().numpy()) / s, xn)


def _rows(a):
    return a.reshape(a.shape[0], -1)


def _cfg_eps(x, s, w=W):
    e_c, e_u, xn = _eps(x, s)
    return e_c + w * (e_c - e_u), e_c, e_u, xn


def _close(got, want, tol=1e-10):
    np.testing.assert_allclose(got.double().numpy(), want, rtol=tol, atol=tol)


RULES = {
    "rescale": lambda w: GuidanceRescale(CFG(d_cond, d_uncond, w), 0.7),
    "cfgnorm": lambda w: CFGNorm(CFG(d_cond, d_uncond, w)),
    "thresholding": lambda w: DynamicThresholding(CFG(d_cond, d_uncond, w), 0.9, 1.0),
    "tcfg": lambda w: TCFG(d_cond, d_uncond, w),
    "mambo": lambda w: MamboG(d_cond, d_uncond, w, alpha=2.0),
    "characteristic": lambda w: Characteristic(d_cond, d_uncond_wide, w, tol=1e-5, max_iter=5000, damping=0.5),
}


# --- formulas against numpy --------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(5, 7), (3, 2, 4, 4)])
def test_rescale_by_hand(shape):
    x = _x(shape)
    for s in SIGMAS:
        e_g, e_c, _, xn = _cfg_eps(x, s)
        std_c, std_g = _rows(e_c).std(1, ddof=1), _rows(e_g).std(1, ddof=1)  # diffusers' (Bessel) std: same ratio
        fac = (std_c / std_g).reshape((-1,) + (1,) * (len(shape) - 1))
        for phi in (0.0, 0.7, 1.0):
            e = phi * e_g * fac + (1 - phi) * e_g
            _close(GuidanceRescale(CFG(d_cond, d_uncond, W), phi)(x, s), xn - s * e)


def test_rescale_phi_zero_is_the_wrapped_rule_exactly():
    x = _x()
    for inner in (CFG(d_cond, d_uncond, W), APG(d_cond, d_uncond, W, eta=0.3)):
        for s in SIGMAS:
            assert torch.equal(GuidanceRescale(inner, 0.0)(x, s), inner(x, s))
    # phi = 1: the guided eps has exactly the conditional's std
    for s in SIGMAS:
        r = x - GuidanceRescale(CFG(d_cond, d_uncond, W), 1.0)(x, s)
        torch.testing.assert_close(r.std(1), (x - d_cond(x, s)).std(1), rtol=1e-12, atol=0)


@pytest.mark.parametrize("shape", [(5, 7), (3, 2, 4, 4)])
def test_cfgnorm_by_hand(shape):
    x = _x(shape) * 2
    for s in SIGMAS:
        e_g, e_c, _, xn = _cfg_eps(x, s)
        d_g, d_c = xn - s * e_g, xn - s * e_c
        for cap, strength in ((1.0, 1.0), (0.5, 0.8)):
            n_c = np.linalg.norm(d_c, axis=1, keepdims=True)
            n_g = np.linalg.norm(d_g, axis=1, keepdims=True)
            want = strength * d_g * np.minimum(1.0, cap * n_c / n_g)
            _close(CFGNorm(CFG(d_cond, d_uncond, W), cap, strength)(x, s), want)


def test_cfgnorm_large_cap_is_cfg_exactly():
    x = _x()
    inner = CFG(d_cond, d_uncond, W)
    for s in SIGMAS:
        assert torch.equal(CFGNorm(inner, cap=1e6)(x, s), inner(x, s))
        assert not torch.allclose(CFGNorm(inner)(x, s), inner(x, s))  # the cap of 1 is reached here


@pytest.mark.parametrize("shape", [(5, 7), (3, 2, 4, 4)])
def test_dynamic_thresholding_by_hand(shape):
    x = _x(shape) * 3
    for s in SIGMAS:
        e_g, _, _, xn = _cfg_eps(x, s)
        d_g = xn - s * e_g
        for p, b in ((0.9, 1.0), (0.995, 0.5), (1.0, 2.0)):
            q = np.maximum(np.percentile(np.abs(_rows(d_g)), 100 * p, axis=1), b).reshape((-1,) + (1,) * (len(shape) - 1))
            _close(DynamicThresholding(CFG(d_cond, d_uncond, W), p, b)(x, s), np.clip(d_g, -q, q) * b / q)


def test_dynamic_thresholding_without_clipping_is_cfg_exactly():
    x = _x()
    inner = CFG(d_cond, d_uncond, W)
    for s in SIGMAS:
        assert torch.equal(DynamicThresholding(inner, 0.995, bound=1e3)(x, s), inner(x, s))
        assert not torch.allclose(DynamicThresholding(inner, 0.995, bound=1.0)(x, s), inner(x, s))


@pytest.mark.parametrize("shape", [(5, 7), (3, 2, 4, 4)])
def test_tcfg_by_hand(shape):
    """The top right-singular vector from numpy's eigen-decomposition of the 2 x 2 Gram matrix (not an SVD)."""
    x = _x(shape)
    for s in SIGMAS:
        _, e_c, e_u, xn = _cfg_eps(x, s)
        c, u = _rows(e_c), _rows(e_u)
        pu = np.empty_like(u)
        for i in range(len(c)):
            m = np.stack([c[i], u[i]])
            vals, vecs = np.linalg.eigh(m @ m.T)
            v1 = m.T @ vecs[:, -1]
            v1 /= np.linalg.norm(v1)
            pu[i] = (u[i] @ v1) * v1
        e = c + W * (c - pu)
        _close(TCFG(d_cond, d_uncond, W)(x, s), xn - s * e.reshape(xn.shape))


def test_tcfg_is_cfg_in_one_dimension_and_for_parallel_predictions():
    x = _x((6, 1))
    for s in SIGMAS:
        torch.testing.assert_close(TCFG(d_cond, d_uncond, W)(x, s), CFG(d_cond, d_uncond, W)(x, s), rtol=1e-12,
                                   atol=1e-12)
    c = _x((4, 5), 1)
    torch.testing.assert_close(top_singular_projection(c, -0.3 * c), -0.3 * c, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(5, 7), (3, 2, 4, 4)])
def test_mambo_g_by_hand(shape):
    """In diffusers' own convention, s_eff = 1 + (s - 1) exp(-alpha |c - u| / |u|), eps = u + s_eff (c - u)."""
    x = _x(shape)
    for s in SIGMAS:
        _, e_c, e_u, xn = _cfg_eps(x, s)
        for alpha in (0.5, 2.0):
            ratio = np.linalg.norm(_rows(e_c - e_u), axis=1) / np.linalg.norm(_rows(e_u), axis=1)
            s_eff = (1 + (w_to_s(W) - 1) * np.exp(-alpha * ratio)).reshape((-1,) + (1,) * (len(shape) - 1))
            _close(MamboG(d_cond, d_uncond, W, alpha)(x, s), xn - s * (e_u + s_eff * (e_c - e_u)))


def test_mambo_g_alpha_zero_is_cfg_exactly():
    x = _x()
    for s in SIGMAS:
        assert torch.equal(MamboG(d_cond, d_uncond, W, alpha=0.0)(x, s), CFG(d_cond, d_uncond, W)(x, s))


def test_mambo_g_zero_unconditional():
    zero = lambda x, s: x  # D_u = x: eps_u = 0, the ratio is infinite, the guidance term vanishes
    x = _x()
    out = MamboG(d_cond, zero, W, alpha=1.0)(x, 0.5)
    torch.testing.assert_close(out, d_cond(x, 0.5), rtol=0, atol=0)


def test_weight_mapping():
    """diffusers / ComfyUI's scale s is 1 + w: the rules above in u + s (c - u) form are the library's c + w (c - u)."""
    assert w_to_s(W) == W + 1 and s_to_w(w_to_s(W)) == W
    x = _x()
    e_g, e_c, e_u, xn = _cfg_eps(x, 1.0)
    _close(CFG(d_cond, d_uncond, W)(x, 1.0), xn - (e_u + w_to_s(W) * (e_c - e_u)))


# --- characteristic guidance ---------------------------------------------------------------------------------
def _linear_pair(d, seed):
    """Gaussian data N(m, S): exact denoisers D(y) = m + A (y - m), A = S (S + sigma^2 I)^-1 (numpy for the check)."""
    g = np.random.default_rng(seed)
    B = g.normal(size=(d, d)) * 0.4
    S = B @ B.T + 0.5 * np.eye(d)
    # S_u = 1.3 S_c: (1 + w) A_u - w A_c is then positive definite and the damped iteration contracts (with
    # independent covariances it can have a negative eigenvalue, and the plain iteration diverges)
    out = [(g.normal(size=d), S), (g.normal(size=d), 1.3 * S)]

    def make(m, S):
        def den(y, s):
            A = S @ np.linalg.inv(S + s**2 * np.eye(d))
            return torch.as_tensor(m + (y.numpy() - m) @ A.T)
        return den

    return out, make(*out[0]), make(*out[1])


def test_characteristic_against_a_linear_solve():
    """For linear denoisers the fixed point D_c(x + w Delta) = D_u(x + (1 + w) Delta) is one linear system."""
    d = 3
    ((m_c, S_c), (m_u, S_u)), dc, du = _linear_pair(d, 4)
    x = _x((4, d), 2)
    w = 1.5
    for s in (0.5, 1.0, 2.0):
        A_c = S_c @ np.linalg.inv(S_c + s**2 * np.eye(d))
        A_u = S_u @ np.linalg.inv(S_u + s**2 * np.eye(d))
        xn = x.numpy()
        rhs = (m_u + (xn - m_u) @ A_u.T) - (m_c + (xn - m_c) @ A_c.T)  # D_u(x) - D_c(x)
        delta = np.linalg.solve(w * A_c - (1 + w) * A_u, rhs.T).T
        y_c, y_u = xn + w * delta, xn + (1 + w) * delta
        dcy, duy = m_c + (y_c - m_c) @ A_c.T, m_u + (y_u - m_u) @ A_u.T
        picard = Characteristic(dc, du, w, tol=1e-13, max_iter=5000, damping=0.5, accelerate=False).solve(x, s)
        secant = Characteristic(dc, du, w, tol=1e-13, max_iter=5000, damping=0.5).solve(x, s)
        for sol in (picard, secant):
            assert sol.residual <= 1e-13 and 1 < sol.iterations <= 5000
            _close(sol.shift, delta, 1e-9)
            _close(sol.guided, dcy + w * (dcy - duy), 1e-9)
        assert secant.iterations < picard.iterations


def test_characteristic_is_the_exact_denoiser_of_the_tilted_gaussian():
    """Gaussians N(m_c, V_c), N(m_u, V_u) (diagonal, V_u > V_c): characteristic guidance is the exact denoiser of the
    tilted law p_c^(1+w) / p_u^w = N(m, V), 1/V = (1+w)/V_c - w/V_u, m = V ((1+w) m_c/V_c - w m_u/V_u) (the paper's
    exactness claim, guidance_claims.md claim 18), where CFG is not."""
    m_c, m_u = torch.tensor([0.5, -1.0], dtype=F64), torch.tensor([-0.3, 0.4], dtype=F64)
    v_c, v_u = torch.tensor([1.0, 0.6], dtype=F64), torch.tensor([1.6, 1.0], dtype=F64)
    den = lambda m, v: (lambda y, s: m + v / (v + s**2) * (y - m))
    prec = (1 + W) / v_c - W / v_u
    m = ((1 + W) * m_c / v_c - W * m_u / v_u) / prec
    x = _x((6, 2), 3)
    for s in (0.3, 1.0, 3.0):
        got = Characteristic(den(m_c, v_c), den(m_u, v_u), W, tol=1e-13, max_iter=20000, damping=0.5)(x, s)
        exact = den(m, 1 / prec)(x, s)
        torch.testing.assert_close(got, exact, rtol=1e-10, atol=1e-10)
        cfg = CFG(den(m_c, v_c), den(m_u, v_u), W)(x, s)
        assert (cfg - exact).abs().max() > 1e-2


def test_characteristic_reports_non_convergence():
    rule = Characteristic(d_cond, d_uncond, W, tol=1e-12, max_iter=3)
    with pytest.raises(CharacteristicNotConverged, match="after 3 iterations"):
        rule(_x(), 1.0)
    with pytest.raises(CharacteristicNotConverged, match="residual"):  # (1 + w) J_u - w J_c changes sign here
        Characteristic(d_cond, d_uncond, W, max_iter=2000, accelerate=False)(_x(), 2.0)


def test_characteristic_secant_step_at_large_sigma():
    """Unit-variance Gaussians at sigma = 10: Picard contracts by 1 - 1/101 per iteration; the secant step is exact
    after one iteration."""
    m_c, m_u = torch.tensor([0.5, -1.0], dtype=F64), torch.tensor([-0.3, 0.4], dtype=F64)
    den = lambda m: (lambda y, s: m + (y - m) / (1 + s**2))
    x = _x((6, 2), 3) * 10
    fast = Characteristic(den(m_c), den(m_u), W, tol=1e-12).solve(x, 10.0)
    assert fast.iterations <= 4
    with pytest.raises(CharacteristicNotConverged):
        Characteristic(den(m_c), den(m_u), W, tol=1e-12, max_iter=500, accelerate=False).solve(x, 10.0)
    m = m_c + W * (m_c - m_u)
    torch.testing.assert_close(fast.guided, m + (x - m) / 101, rtol=1e-10, atol=1e-10)


# --- the contract ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(RULES))
@pytest.mark.parametrize("shape", [(5, 7), (3, 2, 4, 4)])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_contract(name, shape, dtype):
    x = _x(shape, dtype=dtype)
    for s in SIGMAS:
        assert torch.equal(RULES[name](0.0)(x, s), d_cond(x, s))  # w = 0 is the conditional model
        out = RULES[name](W)(x, s)
        assert out.shape == x.shape and out.dtype == dtype and torch.all(torch.isfinite(out))
        assert not torch.allclose(out, d_cond(x, s))
        empty = RULES[name](W)(x[:0], s)
        assert empty.shape == x[:0].shape and empty.dtype == dtype


@pytest.mark.parametrize("name", sorted(RULES))
def test_runs_in_a_sampler_with_a_schedule(name):
    sig = torch.tensor([4.0, 2.0, 1.0, 0.5, 0.0], dtype=F64)
    rule = RULES[name](Interval(W, 0.4, 2.5))  # w = 0 outside [0.4, 2.5]
    out = ddim(rule, _x((4, 3)) * 4.0, sig)
    assert out.shape == (4, 3) and torch.all(torch.isfinite(out))


def test_rescale_passes_reset_to_apg():
    apg = APG(d_cond, d_uncond, W, momentum=-0.5)
    rule = GuidanceRescale(apg, 0.7)
    x = _x()
    first = rule(x, 2.0)
    rule(x, 1.0)
    with pytest.raises(ValueError, match="reset"):
        rule(x, 2.0)
    rule.reset()
    assert torch.equal(rule(x, 2.0), first)


def test_bad_arguments():
    cfg = CFG(d_cond, d_uncond, W)
    for bad in (True, "0.7", float("nan"), None):
        with pytest.raises(ValueError, match="phi"):
            GuidanceRescale(cfg, bad)
    with pytest.raises(ValueError, match="guidance"):
        GuidanceRescale(d_cond, 0.7)
    with pytest.raises(ValueError, match="2 coordinates"):
        GuidanceRescale(cfg, 0.7)(_x((3, 1)), 1.0)
    for kw in ({"cap": 0.0}, {"cap": -1}, {"strength": 0}, {"cap": True}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            CFGNorm(cfg, **kw)
    for kw in ({"percentile": 0.0}, {"percentile": 1.5}, {"bound": 0.0}, {"bound": "1"}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            DynamicThresholding(cfg, **kw)
    for kw in ({"alpha": -1.0}, {"alpha": math.inf}, {"alpha": False}):
        with pytest.raises(ValueError, match="alpha"):
            MamboG(d_cond, d_uncond, W, **kw)
    for kw in ({"tol": 0.0}, {"damping": 0.0}, {"damping": 1.5}, {"max_iter": 0}, {"max_iter": 2.5}, {"accelerate": 1}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            Characteristic(d_cond, d_uncond, W, **kw)
    for cls in (TCFG, MamboG, Characteristic):
        with pytest.raises(ValueError, match="uncond"):
            cls(d_cond, 3.0, W)
        with pytest.raises(ValueError, match="weight"):
            cls(d_cond, d_uncond, True)
    with pytest.raises(ValueError, match="one shape"):
        top_singular_projection(_x((3, 2)), _x((3, 3)))


# --- Rectified-CFG++ (a sampler) ------------------------------------------------------------------------------
def test_rectified_cfgpp_against_the_authors_loop_in_flow_time():
    """The authors' loop written on the raw velocity network in flow coordinates x_t = (1 - t) x (predictor along v_c
    to the next time, corrector v_c + w (v_c - v_u) at the predicted point, Euler), against rectified_cfgpp through
    the contract."""
    from sampler import LINEAR, VelocityModel, bind, rectified_cfgpp, sampling_sigmas, shift_times, uniform_times
    from .conftest import TinyMLP

    model = VelocityModel(TinyMLP(3, seed=11), LINEAR)
    c, u = bind(model, 0), bind(model, None)
    sig = sampling_sigmas(LINEAR, shift_times(uniform_times(6), 3.0))
    t = [LINEAR.time_of_sigma(s) for s in sig[:-1].tolist()] + [0.0]
    x0 = _x((5, 3), 4)
    for weight in (W, lambda s: 0.5 * W * (1 + s) / (2 + s)):
        x_t = x0 * (1 - t[0])
        for i in range(len(t) - 1):
            dt, w = t[i + 1] - t[i], weight(sig[i].item()) if callable(weight) else weight
            tt = torch.full((x_t.shape[0],), t[i], dtype=F64)
            v_c = model.net(x_t, tt, 0)
            v = v_c
            if t[i + 1] > 0:
                x_pred = x_t + dt * v_c
                tn = torch.full((x_t.shape[0],), t[i + 1], dtype=F64)
                v = v_c + w * (model.net(x_pred, tn, 0) - model.net(x_pred, tn, None))
            x_t = x_t + dt * v
        got = rectified_cfgpp(c, u, x0, sig, weight)
        torch.testing.assert_close(got, x_t, rtol=1e-10, atol=1e-10)


def test_rectified_cfgpp_contract():
    from sampler import LINEAR, euler, rectified_cfgpp

    sig = torch.tensor([4.0, 2.0, 1.0, 0.5, 0.0], dtype=F64)
    for shape in ((5, 7), (3, 2, 4, 4)):
        for dtype in (torch.float32, F64):
            x0 = _x(shape, dtype=dtype) * 4
            # w = 0: the conditional model's Euler sampler, bit for bit
            assert torch.equal(rectified_cfgpp(d_cond, d_uncond, x0, sig, 0.0, path=LINEAR), euler(d_cond, x0, sig))
            out = rectified_cfgpp(d_cond, d_uncond, x0, sig, W, path=LINEAR)
            assert out.shape == x0.shape and out.dtype == dtype and torch.all(torch.isfinite(out))
            assert not torch.allclose(out, euler(d_cond, x0, sig))
            assert rectified_cfgpp(d_cond, d_uncond, x0[:0], sig, W, path=LINEAR).shape == x0[:0].shape
    steps = []
    rectified_cfgpp(d_cond, d_uncond, _x() * 4, sig, W, path=LINEAR, callback=steps.append)
    assert [st.i for st in steps] == [0, 1, 2, 3] and steps[-1].sigma_next == 0.0


def test_rectified_cfgpp_bad_arguments():
    from sampler import LINEAR, VPPath, VelocityModel, bind, rectified_cfgpp
    from .conftest import TinyMLP

    sig = torch.tensor([2.0, 1.0, 0.0], dtype=F64)
    x0 = _x()
    with pytest.raises(ValueError, match="path"):
        rectified_cfgpp(d_cond, d_uncond, x0, sig, W)  # plain denoisers carry no path
    model = VelocityModel(TinyMLP(7, seed=1), LINEAR)
    with pytest.raises(ValueError, match="contradicts"):
        rectified_cfgpp(bind(model, 0), bind(model, None), x0, sig, W, path=VPPath())
    with pytest.raises(ValueError, match="decreasing"):
        rectified_cfgpp(d_cond, d_uncond, x0, [1.0, 2.0, 0.0], W, path=LINEAR)
    with pytest.raises(ValueError, match="x_start"):
        rectified_cfgpp(d_cond, d_uncond, x0[0], sig, W, path=LINEAR)
    with pytest.raises(ValueError, match="uncond"):
        rectified_cfgpp(d_cond, None, x0, sig, W, path=LINEAR)
    with pytest.raises(ValueError, match="weight"):
        rectified_cfgpp(d_cond, d_uncond, x0, sig, True, path=LINEAR)


def test_rescale_phi_outside_the_unit_interval_is_refused():
    """Issue 20 round 3: phi = -0.1 and 1.5 were accepted, though Lin et al.'s phi blends two predictions
    (in [0, 1])."""
    cfg = CFG(d_cond, d_uncond, W)
    for bad in (-0.1, 1.5, -1e-12, 1 + 1e-12):
        with pytest.raises(ValueError, match=rf"phi must be in \[0, 1\] .*got {bad}"):
            GuidanceRescale(cfg, bad)
    assert GuidanceRescale(cfg, 0.0).phi == 0.0 and GuidanceRescale(cfg, 1).phi == 1.0


def test_tcfg_with_a_non_finite_sample_is_nan_in_nan_out_as_cfg():
    """Issue 20 round 3: a NaN x stopped TCFG with torch's LinAlgError from the SVD; every other rule (CFG first)
    gives NaN where the input is NaN and the samplers refuse it naming the step. Now TCFG does the same, and the
    finite samples of the batch are what TCFG gives on them alone."""
    x = _x((4, 3))
    x[1, 2] = float("nan")
    x[3, 0] = float("inf")
    out, cfg = TCFG(d_cond, d_uncond, W)(x, 1.0), CFG(d_cond, d_uncond, W)(x, 1.0)
    assert torch.isnan(out[[1, 3]]).all() and not torch.isfinite(cfg[[1, 3]]).all(1).any()
    rows = torch.cat([TCFG(d_cond, d_uncond, W)(x[i:i + 1], 1.0) for i in (0, 2)])
    assert torch.equal(out[[0, 2]], rows) and torch.isfinite(rows).all()
    assert torch.isnan(TCFG(d_cond, d_uncond, W)(torch.full((2, 2), float("nan"), dtype=F64), 1.0)).all()
    with pytest.raises(ValueError, match="non-finite"):
        ddim(TCFG(lambda x, s: x.clone().fill_(float("nan")) if s < 2 else x / (1 + s**2), d_uncond, W),
             _x((2, 3)), torch.tensor([4.0, 1.0, 0.0], dtype=F64))
