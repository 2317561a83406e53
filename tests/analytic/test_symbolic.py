"""analytic.symbolic: the sympy closed forms for a single-Gaussian CFG pair in 1-D, against mathematics.

Oracles independent of the sympy derivation: scipy quadrature of E_t and of the tilted posterior mean
(THEORY.md section 4), finite differences, analytic.CFGReward.present, autograd of GaussianMixture.eps
and, when present, analytic.guidance_fields.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import sympy as sp
import torch
from scipy import integrate, stats

import analytic
from analytic import CFGReward, GaussianMixture
from analytic.symbolic import (
    SingleGaussianForms,
    coefficients,
    fields,
    gap_summary,
    single_gaussian_forms,
    tilted_precision,
)

NAMES = ("a", "mu_c", "s_c", "mu_u", "s_u", "w")


def _condition(a, mu_c, s_c, mu_u, s_u, w):
    """The integrability condition as stated in the brief / THEORY.md section 5."""
    return (1 + w) / s_c**2 - w / s_u**2 + a / (1 - a)


def _random_params(rng, n, margin=0.5):
    """``n`` parameter dicts with E_t finite (tilted precision > margin)."""
    out = []
    while len(out) < n:
        p = dict(a=rng.uniform(0.05, 0.95), mu_c=rng.uniform(-1.5, 1.5), s_c=rng.uniform(0.2, 1.5),
                 mu_u=rng.uniform(-1.5, 1.5), s_u=rng.uniform(0.2, 1.5), w=rng.uniform(0.0, 3.0))
        if _condition(**p) > margin:
            out.append(p)
    return out


def _models(p):
    cond = GaussianMixture.from_1d([1.0], [p["mu_c"]], [p["s_c"]])
    uncond = GaussianMixture.from_1d([1.0], [p["mu_u"]], [p["s_u"]])
    return cond, uncond, CFGReward(cond, uncond, p["w"])


def _posterior_and_reward(p, x):
    """Exact posterior N(m, V) of the conditional (analytic.GaussianMixture) and log R_0 (scipy)."""
    cond, _, _ = _models(p)
    post = cond.posterior(torch.tensor([[x]], dtype=torch.float64), p["a"])
    m, V = post.means[0, 0, 0].item(), post.covs[0, 0, 0].item()

    def log_r0(x0):
        return p["w"] * (stats.norm.logpdf(x0, p["mu_c"], p["s_c"]) - stats.norm.logpdf(x0, p["mu_u"], p["s_u"]))

    return m, V, log_r0


def _quad_tilted(p, x):
    """``E_t(x)`` and the tilted posterior mean ``m_R`` by scipy quadrature; also the posterior mean."""
    m, V, log_r0 = _posterior_and_reward(p, x)
    sd = math.sqrt(V)
    # scale by the value at the posterior mean to keep the integrand O(1); integrate in the posterior's units
    shift = log_r0(m)
    dens = lambda z: math.exp(stats.norm.logpdf(z) + log_r0(m + sd * z) - shift)  # noqa: E731
    kw = dict(epsabs=0, epsrel=1e-11, limit=200)
    mass = integrate.quad(dens, -np.inf, np.inf, **kw)[0]
    first = integrate.quad(lambda z: z * dens(z), -np.inf, np.inf, **kw)[0]
    return math.log(mass) + shift, m + sd * first / mass, m


# --- the symbolic object ----------------------------------------------------------------------------
def test_forms_are_built_once_and_frozen():
    F = single_gaussian_forms()
    assert single_gaussian_forms() is F
    assert isinstance(F, SingleGaussianForms)
    with pytest.raises(dataclasses.FrozenInstanceError):
        F.golden = sp.Integer(0)  # type: ignore[misc]
    assert F.params == (F.a, F.mu_c, F.s_c, F.mu_u, F.s_u, F.w)


def test_every_field_is_affine_and_equals_its_slope_intercept_form():
    F = single_gaussian_forms()
    for name in ("golden", "cfg", "reg", "gap_cfg", "gap_reg"):
        expr, line = getattr(F, name), getattr(F, name + "_affine")
        assert sp.diff(expr, F.x, 2) == 0
        assert sp.simplify(expr - (line.slope * F.x + line.intercept)) == 0
        assert F.x not in line.slope.free_symbols and F.x not in line.intercept.free_symbols


def test_derived_integrability_condition_is_the_stated_one():
    F = single_gaussian_forms()
    a, s_c, s_u, w = F.a, F.s_c, F.s_u, F.w
    stated = (1 + w) / s_c**2 - w / s_u**2 + a / (1 - a)
    assert sp.simplify(F.tilted_precision - stated) == 0


def test_noised_densities_and_eps_are_the_gaussian_ones():
    F = single_gaussian_forms()
    rng = np.random.default_rng(0)
    log_p_c = sp.lambdify((F.x,) + F.params, F.log_p_c)
    for p in _random_params(rng, 5):
        x = rng.normal(size=7)
        ref = stats.norm.logpdf(x, math.sqrt(p["a"]) * p["mu_c"], math.sqrt(p["a"] * p["s_c"] ** 2 + 1 - p["a"]))
        np.testing.assert_allclose(log_p_c(x, *p.values()), ref, rtol=1e-12, atol=1e-12)


# --- E_t and its gradient -----------------------------------------------------------------------------
def test_log_E_matches_quadrature():
    rng = np.random.default_rng(1)
    for p in _random_params(rng, 6):
        xs = rng.normal(math.sqrt(p["a"]) * p["mu_c"], 1.0, size=3)
        got = fields(xs, **p).log_E
        want = [_quad_tilted(p, x)[0] for x in xs]
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-8)


def test_grad_log_E_matches_finite_differences_and_tilted_mean_identity():
    F = single_gaussian_forms()
    log_E = sp.lambdify((F.x,) + F.params, F.log_E)
    grad = sp.lambdify((F.x,) + F.params, F.grad_log_E)
    rng = np.random.default_rng(2)
    h = 1e-5
    for p in _random_params(rng, 6):
        v = tuple(p.values())
        xs = rng.normal(math.sqrt(p["a"]) * p["mu_c"], 1.0, size=3)
        fd = (log_E(xs + h, *v) - log_E(xs - h, *v)) / (2 * h)
        np.testing.assert_allclose(grad(xs, *v), fd, rtol=1e-6, atol=1e-7)
        # THEORY.md section 4: grad log E_t = sqrt(a)/(1-a) (m_R - m), m_R by quadrature
        for x in xs:
            _, m_R, m = _quad_tilted(p, x)
            identity = math.sqrt(p["a"]) / (1 - p["a"]) * (m_R - m)
            assert grad(x, *v) == pytest.approx(identity, rel=1e-7, abs=1e-9)
        # golden is -sqrt(1-a) times it
        np.testing.assert_allclose(fields(xs, **p).golden, -math.sqrt(1 - p["a"]) * grad(xs, *v), rtol=1e-12,
                                   atol=1e-14)


# --- CFG and REG ---------------------------------------------------------------------------------------
def test_cfg_matches_CFGReward_present():
    rng = np.random.default_rng(3)
    for p in _random_params(rng, 8):
        _, _, reward = _models(p)
        x = rng.normal(size=11)
        want = reward.present(torch.as_tensor(x)[:, None], p["a"])[:, 0].numpy()
        np.testing.assert_allclose(fields(x, **p).cfg, want, rtol=1e-11, atol=1e-13)


def test_reg_matches_autograd_of_eps_c():
    rng = np.random.default_rng(4)
    for p in _random_params(rng, 8):
        cond, _, reward = _models(p)
        x = torch.as_tensor(rng.normal(size=11))[:, None].requires_grad_(True)
        eps = cond.eps(x, p["a"])
        (d_eps,) = torch.autograd.grad(eps.sum(), x)  # 1-D: d eps_c / dx pointwise
        want = (reward.present(x.detach(), p["a"]) * (1 - math.sqrt(1 - p["a"]) * d_eps))[:, 0].numpy()
        got = fields(x.detach().numpy()[:, 0], **p)
        np.testing.assert_allclose(got.reg, want, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(got.gap_cfg, got.golden - got.cfg, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got.gap_reg, got.golden - got.reg, rtol=1e-9, atol=1e-12)


def test_coefficients_reproduce_the_fields():
    rng = np.random.default_rng(5)
    p = _random_params(rng, 1)[0]
    x = rng.normal(size=9)
    coef, f = coefficients(**p), fields(x, **p)
    for name in ("golden", "cfg", "reg", "gap_cfg", "gap_reg"):
        np.testing.assert_allclose(getattr(coef, name)(x), getattr(f, name), rtol=1e-13, atol=1e-15)


def test_fields_broadcast_over_points_and_parameters():
    x = np.linspace(-2, 2, 5)[:, None]  # [5, 1]
    a = np.array([0.1, 0.5, 0.9])  # [3]
    f = fields(x, a, 1.0, 0.25, 0.0, 0.5, 1.0)
    assert all(v.shape == (5, 3) and v.dtype == np.float64 for v in f)
    for j, aj in enumerate(a):
        g = fields(x[:, 0], aj, 1.0, 0.25, 0.0, 0.5, 1.0)
        for got, want in zip(f, g):
            np.testing.assert_allclose(got[:, j], want, rtol=1e-14)


# --- integrability and invalid input ----------------------------------------------------------------------
def test_divergence_raises_exactly_when_the_condition_fails():
    # conditional wider than unconditional: the condition fails for large w at high noise
    a, mu_c, s_c, mu_u, s_u = 0.3, 0.5, 0.8, -0.2, 0.5
    w_crit = (1 / s_c**2 + a / (1 - a)) / (1 / s_u**2 - 1 / s_c**2)  # condition = 0
    ws = np.concatenate([np.linspace(0, 3 * w_crit, 26), [w_crit * (1 - 1e-9), w_crit * (1 + 1e-9)]])
    assert np.min(np.abs(ws / w_crit - 1)) > 1e-10  # the boundary itself is decided by rounding
    for w in ws:
        p = dict(a=a, mu_c=mu_c, s_c=s_c, mu_u=mu_u, s_u=s_u, w=float(w))
        ok = _condition(**p) > 0
        assert (tilted_precision(**p) > 0) == ok
        if ok:
            f = fields(np.linspace(-3, 3, 7), **p)
            assert all(np.all(np.isfinite(v)) for v in f)
        else:
            with pytest.raises(ValueError, match=r"diverges.*a=0\.3.*s_c=0\.8.*w="):
                fields(0.0, **p)
            with pytest.raises(ValueError, match="diverges"):
                coefficients(**p)
            with pytest.raises(ValueError, match="diverges"):
                gap_summary(**p)
    # E_t really blows up as the condition approaches 0 from above
    near = [fields(0.0, a, mu_c, s_c, mu_u, s_u, w_crit * (1 - d)).log_E for d in (1e-2, 1e-4, 1e-6)]
    assert near[0] < near[1] < near[2]
    # at the boundary itself (up to rounding) it refuses rather than return inf/nan
    with pytest.raises(ValueError, match="diverges"):
        fields(0.0, a, mu_c, s_c, mu_u, s_u, w_crit)
    # one failing entry of an array is reported
    with pytest.raises(ValueError, match="1 of 3"):
        fields(0.0, a, mu_c, s_c, mu_u, s_u, np.array([0.0, 0.5 * w_crit, 2 * w_crit]))


@pytest.mark.parametrize("bad, match", [
    (dict(a=0.0), "a"), (dict(a=1.0), "a"), (dict(a=1.5), "a"), (dict(a=-0.1), "a"),
    (dict(s_c=0.0), "s_c"), (dict(s_u=-1.0), "s_u"), (dict(mu_c=np.nan), "mu_c"), (dict(w=np.inf), "w"),
    (dict(mu_u="x"), "mu_u"),
])
def test_invalid_parameters_raise(bad, match):
    p = dict(a=0.5, mu_c=1.0, s_c=0.25, mu_u=0.0, s_u=0.5, w=1.0) | bad
    with pytest.raises(ValueError, match=match):
        fields(0.0, **p)
    with pytest.raises(ValueError, match=match):
        gap_summary(**p)


def test_non_finite_x_raises():
    with pytest.raises(ValueError, match="x"):
        fields(np.array([0.0, np.inf]), 0.5, 1.0, 0.25, 0.0, 0.5, 1.0)


# --- the special cases the README states ----------------------------------------------------------------
def test_golden_cfg_and_reg_are_proportional_with_the_stated_factors():
    """golden = kappa cfg, reg = rho cfg for every x, kappa = s_c^2 (a s_u^2 + 1 - a) / Q,
    Q = a s_c^2 s_u^2 + (1 - a)(s_u^2 + w (s_u^2 - s_c^2)), rho = a s_c^2 / (a s_c^2 + 1 - a)."""
    rng = np.random.default_rng(6)
    for p in _random_params(rng, 10):
        a, s_c, s_u, w = p["a"], p["s_c"], p["s_u"], p["w"]
        Q = a * s_c**2 * s_u**2 + (1 - a) * (s_u**2 + w * (s_u**2 - s_c**2))
        kappa, rho = s_c**2 * (a * s_u**2 + 1 - a) / Q, a * s_c**2 / (a * s_c**2 + 1 - a)
        f = fields(rng.normal(size=9), **p)
        np.testing.assert_allclose(f.golden, kappa * f.cfg, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(f.reg, rho * f.cfg, rtol=1e-10, atol=1e-13)
        s = gap_summary(**p)
        assert s.golden_scale == pytest.approx(kappa, rel=1e-12)
        assert s.reg_factor == pytest.approx(rho, rel=1e-12)
        # kappa - 1 = (1 - a)(1 + w)(s_c^2 - s_u^2) / Q: CFG overshoots iff the conditional is narrower
        assert kappa - 1 == pytest.approx((1 - a) * (1 + w) * (s_c**2 - s_u**2) / Q, rel=1e-9, abs=1e-14)


@pytest.mark.parametrize("a", [0.02, 0.3, 0.7, 0.98])
@pytest.mark.parametrize("w", [0.5, 1.0, 4.0])
def test_equal_variances_cfg_exact_reg_not(a, w):
    p = dict(a=a, mu_c=1.0, s_c=0.4, mu_u=-0.5, s_u=0.4, w=w)
    f = fields(np.linspace(-3, 3, 13), **p)
    assert np.all(f.gap_cfg == 0)  # exactly: the factor (s_c - s_u) is symbolic
    rho = a * 0.16 / (a * 0.16 + 1 - a)
    np.testing.assert_allclose(f.gap_reg, (1 - rho) * f.cfg, rtol=1e-12)  # REG damps an exact term
    assert np.all(np.abs(f.gap_reg) > 0)
    s = gap_summary(**p)
    assert s.cfg_exact and not s.reg_exact and not s.reg_helps
    assert s.rel_gap_reg == pytest.approx(1 - rho, rel=1e-10)


def test_conditional_wider_reg_always_hurts():
    rng = np.random.default_rng(7)
    n = 0
    while n < 20:
        p = _random_params(rng, 1, margin=1e-3)[0]
        if p["s_c"] <= p["s_u"] or p["w"] < 1e-3 or abs(p["mu_c"] - p["mu_u"]) < 1e-3:
            continue
        s = gap_summary(**p)
        assert s.golden_scale > 1 and not s.cfg_exact and not s.reg_helps
        assert s.rms_gap_reg > s.rms_gap_cfg
        n += 1


def test_reg_exact_at_one_noise_level_when_conditional_narrower():
    """REG is exact iff a s_c^2 + 1 - a + a w (s_c^2 - s_u^2) = 0, i.e. at a* = 1/(1 - s_c^2 + w (s_u^2 - s_c^2)),
    inside (0, 1) iff w > s_c^2 / (s_u^2 - s_c^2); REG helps for a < a* and beyond it while kappa < (1 + rho)/2."""
    mu_c, s_c, mu_u, s_u = 1.0, 0.25, 0.0, 0.5
    for w in (0.5, 1.0, 3.0):
        a_star = 1 / (1 - s_c**2 + w * (s_u**2 - s_c**2))
        s = gap_summary(a_star, mu_c, s_c, mu_u, s_u, w, rtol=1e-9)
        assert s.reg_exact and s.reg_helps and s.rel_gap_reg < 1e-9
        f = fields(np.linspace(-2, 2, 9), a_star, mu_c, s_c, mu_u, s_u, w)
        np.testing.assert_allclose(f.gap_reg, 0, atol=1e-12)
        for a in (0.05, 0.5, 0.5 * (1 + a_star)):
            s = gap_summary(a, mu_c, s_c, mu_u, s_u, w)
            assert s.reg_helps == (abs(s.golden_scale - s.reg_factor) < abs(s.golden_scale - 1))
            assert s.golden_scale < 1 and s.reg_helps
    # below the threshold weight there is no such noise level, and REG still helps: kappa < (1 + rho)/2
    w = 0.2  # < s_c^2 / (s_u^2 - s_c^2) = 1/3
    for a in (0.05, 0.5, 0.9, 0.99):
        s = gap_summary(a, mu_c, s_c, mu_u, s_u, w)
        assert not s.reg_exact and s.reg_helps and s.golden_scale < (1 + s.reg_factor) / 2


def test_trivial_cases():
    # w = 0 or identical conditional and unconditional: every field is 0
    for p in (dict(a=0.4, mu_c=1.0, s_c=0.3, mu_u=0.0, s_u=0.6, w=0.0),
              dict(a=0.4, mu_c=0.7, s_c=0.3, mu_u=0.7, s_u=0.3, w=2.0)):
        f = fields(np.linspace(-1, 1, 5), **p)
        for v in (f.golden, f.cfg, f.reg, f.gap_cfg, f.gap_reg):
            np.testing.assert_allclose(v, 0, atol=1e-15)
        np.testing.assert_allclose(f.log_E, 0, atol=1e-12)
        s = gap_summary(**p)
        assert s.cfg_exact and s.reg_exact and not s.reg_helps and math.isnan(s.golden_scale)


def test_weighted_mean_squares_against_quadrature():
    rng = np.random.default_rng(8)
    for p in _random_params(rng, 4):
        s, coef = gap_summary(**p), coefficients(**p)
        m, sd = math.sqrt(p["a"]) * p["mu_c"], math.sqrt(p["a"] * p["s_c"] ** 2 + 1 - p["a"])
        for line, rms in ((coef.golden, s.rms_golden), (coef.gap_cfg, s.rms_gap_cfg), (coef.gap_reg, s.rms_gap_reg)):
            msq = integrate.quad(lambda x: float(line(x)) ** 2 * stats.norm.pdf(x, m, sd), -np.inf, np.inf,
                                 epsabs=0, epsrel=1e-12)[0]
            assert rms == pytest.approx(math.sqrt(msq), rel=1e-8)


# --- against the library's guidance_fields ------------------------------------------------------------------
def test_against_analytic_guidance_fields():
    if not hasattr(analytic, "guidance_fields"):
        pytest.skip("analytic.guidance_fields not available yet")
    rng = np.random.default_rng(9)
    for p in _random_params(rng, 5):
        cond, _, reward = _models(p)
        x = rng.normal(math.sqrt(p["a"]) * p["mu_c"], 1.0, size=8)
        gf = analytic.guidance_fields(cond, reward, torch.as_tensor(x)[:, None], p["a"])
        f = fields(x, **p)
        scale = np.max(np.abs(f.cfg)) + np.max(np.abs(f.golden))
        for name, want in (("golden", f.golden), ("present", f.cfg), ("reg_paper", f.reg),
                           ("reg_vjp", f.reg), ("reg_diag", f.reg)):
            got = getattr(gf, name)
            assert got.shape == (8, 1) and got.dtype == torch.float64
            np.testing.assert_allclose(got[:, 0].numpy(), want, rtol=1e-8, atol=1e-8 * scale, err_msg=name)


def _reg_helps_line(a, s_c, s_u, w):
    """L(a): REG is closer to the optimum than CFG iff L(a) < 0 (README claim; linear in a)."""
    L0 = (2 + w) * s_c**2 - (1 + w) * s_u**2
    L1 = s_c**2 * (2 * (1 + w) * s_c**2 - (1 + 2 * w) * s_u**2)
    return L0 + a * (L1 - L0)


def test_reg_helps_iff_the_stated_linear_condition():
    F = single_gaussian_forms()
    a, s_c, s_u, w = F.a, F.s_c, F.s_u, F.w
    Q = a * s_c**2 * s_u**2 + (1 - a) * (s_u**2 + w * (s_u**2 - s_c**2))
    advantage = 1 + F.reg_factor - 2 * F.golden_over_cfg  # > 0 iff |kappa - rho| < |kappa - 1|
    assert sp.simplify(advantage - (a - 1) * _reg_helps_line(a, s_c, s_u, w) / ((a * s_c**2 + 1 - a) * Q)) == 0
    rng = np.random.default_rng(10)
    helps = []
    for p in _random_params(rng, 200, margin=1e-2):
        if p["w"] < 1e-3 or abs(p["mu_c"] - p["mu_u"]) < 1e-3:
            continue
        L = _reg_helps_line(p["a"], p["s_c"], p["s_u"], p["w"])
        if abs(L) < 1e-9:
            continue
        s = gap_summary(**p)
        assert s.reg_helps == (L < 0)
        helps.append(L < 0)
        # regimes in r = s_c^2 / s_u^2: REG helps at every a below (1+w)/(2+w), at no a above (1+2w)/(2+2w)
        r = p["s_c"] ** 2 / p["s_u"] ** 2
        if r < (1 + p["w"]) / (2 + p["w"]):
            assert s.reg_helps
        if r > (1 + 2 * p["w"]) / (2 + 2 * p["w"]):
            assert not s.reg_helps
    assert 0 < sum(helps) < len(helps)  # both outcomes were exercised
