"""The reducible family (THEORY.md section 9) against independent routes: the dense mixture, autograd Jacobians,
the 1-D/2-D grid golden (d = m and d = m + 1), importance sampling (d = 3..6), the single-Gaussian closed form
(any d), and the closed-form complement factor at large n."""
import math

import mpmath
import numpy as np
import pytest
import torch
from scipy import integrate, stats

from analytic import AutoGReward, CFGReward, ClassifierReward, GaussianMixture, batch_jacobian, eps_jacobian
from analytic import guidance_fields, optimal_guidance
from analytic.radial import bessel_ratio, log_phi, log_radial_density
from analytic.reducible import ReducibleMixture, ReducibleRatioReward, detect_reducible, reduce_problem
from analytic.reducible_golden import (guidance_fields_reducible, is_separable, optimal_guidance_reducible,
                                       reg_corrections_reducible)

F64 = torch.float64


def basis(d: int, m: int, seed: int) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(d, m, dtype=F64, generator=torch.Generator().manual_seed(seed)))[0]


def member(d: int, m: int, seed: int, comp_vars, spread: float = 1.0, Q=None) -> ReducibleMixture:
    """A random member with K = len(comp_vars) components on a random (or given) subspace."""
    g = torch.Generator().manual_seed(seed)
    K = len(comp_vars)
    R = torch.randn(K, m, m, dtype=F64, generator=g) * 0.4
    A = R @ R.transpose(1, 2) + 0.15 * torch.eye(m, dtype=F64)
    Q = basis(d, m, seed + 1000) if Q is None else Q
    return ReducibleMixture(Q, torch.rand(K, dtype=F64, generator=g) + 0.3,
                            torch.randn(K, m, dtype=F64, generator=g) * spread, A, torch.tensor(comp_vars, dtype=F64))


def union(p: ReducibleMixture, q: ReducibleMixture, prior: float = 0.5) -> ReducibleMixture:
    """``prior p + (1 - prior) q`` on p's basis (an unconditional mixture containing the conditional)."""
    return ReducibleMixture(p.basis, torch.cat([prior * p.weights, (1 - prior) * q.weights]),
                            torch.cat([p.means_u, q.means_u]), torch.cat([p.covs_u, q.covs_u]),
                            torch.cat([p.comp_vars, q.comp_vars]))


def cfg_pair(d, m, seed, s_cond, s_other, w=1.0):
    cond = member(d, m, seed, s_cond)
    other = member(d, m, seed + 1, s_other, Q=cond.basis)
    return cond, ReducibleRatioReward(cond, union(cond, other), w)


# --- the family's own formulas against the dense mixture ----------------------------------------------


@pytest.mark.parametrize("d,m", [(1, 1), (5, 1), (7, 2)])
def test_densities_scores_posterior_match_the_dense_mixture(d, m):
    R = member(d, m, 1, [0.5, 1.0, 2.0][: 3 if d > 1 else 3])
    D = R.to_dense()
    x = torch.randn(13, d, dtype=F64, generator=torch.Generator().manual_seed(2)) * 1.5
    for a in (1.0, 0.8, 0.2):
        torch.testing.assert_close(R.noised(a).log_prob(x), D.noised(a).log_prob(x), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(R.eps(x, a), D.eps(x, a), rtol=1e-11, atol=1e-12)
        if a < 1:
            P, Pd = R.posterior(x, a), D.posterior(x, a)
            torch.testing.assert_close(P.mean(), Pd.mean(), rtol=1e-11, atol=1e-12)
            torch.testing.assert_close(P.log_weights, Pd.log_weights, rtol=1e-11, atol=1e-11)
            x0 = x.flip(0)
            torch.testing.assert_close(P.log_prob(x0), Pd.log_prob(x0), rtol=1e-11, atol=1e-10)
    torch.testing.assert_close(R.denoise(x, 0.7), D.denoise(x, 0.7), rtol=1e-11, atol=1e-12)
    torch.testing.assert_close(R.score_ve(x, 0.3), D.score_ve(x, 0.3), rtol=1e-11, atol=1e-12)
    torch.testing.assert_close(R.means, D.means)


def test_samples_have_the_mixture_moments():
    R = member(40, 2, 3, [0.3, 2.0])
    x = R.sample(40000, torch.Generator().manual_seed(0))
    mean = R.weights @ R.means
    z = (x.mean(0) - mean) / (x.std(0) / math.sqrt(x.shape[0]))
    assert z.abs().max() < 5
    u, v, r2 = R.split(x)
    expected_r2 = (R.weights * R.comp_vars).sum() * R.n_perp
    assert abs(r2.mean() / expected_r2 - 1) < 0.02
    torch.testing.assert_close(x, u @ R.basis.T + v)


@pytest.mark.parametrize("d,m", [(5, 1), (9, 2), (20, 2)])
def test_structured_jacobian_equals_the_autograd_jacobian(d, m):
    R = member(d, m, 4, [0.4, 1.3, 0.8])
    x = torch.randn(9, d, dtype=F64, generator=torch.Generator().manual_seed(5))
    for a in (0.9, 0.3):
        J = R.eps_jacobian(x, a)
        ref = batch_jacobian(lambda z: R.eps(z, a), x)  # autograd through the reduced eps
        dense_ref = eps_jacobian(R.to_dense(), x, a)  # autograd through the dense mixture
        torch.testing.assert_close(ref, dense_ref, rtol=1e-10, atol=1e-11)
        torch.testing.assert_close(J.dense(), dense_ref, rtol=1e-10, atol=1e-11)
        torch.testing.assert_close(J.diagonal(), torch.diagonal(dense_ref, dim1=1, dim2=2), rtol=1e-10, atol=1e-11)
        torch.testing.assert_close(J.colsum(), dense_ref.sum(1), rtol=1e-10, atol=1e-11)
        g = torch.randn(9, d, dtype=F64, generator=torch.Generator().manual_seed(6))
        torch.testing.assert_close(J.matvec(g), torch.einsum("nij,ni->nj", dense_ref, g), rtol=1e-10, atol=1e-11)
        ga, gb = torch.randn(9, m, dtype=F64), torch.randn(9, dtype=F64)
        u, v, _ = R.split(x)
        ja, jb = J.matvec_coeffs(ga, gb)
        torch.testing.assert_close(R.lift(ja, jb, v), J.matvec(R.lift(ga, gb, v)), rtol=1e-10, atol=1e-11)


def test_reg_fields_match_the_dense_fields():
    cond, reward = cfg_pair(14, 2, 7, [0.5, 0.9], [1.4], w=1.5)
    dc = cond.to_dense()
    dr = CFGReward(dc, reward.den.to_dense(), 1.5)
    x = cond.noised(0.6).sample(12, torch.Generator().manual_seed(1))
    f = guidance_fields_reducible(cond, reward, x, 0.6, tol=1e-8)
    ref = guidance_fields(dc, dr, x, 0.6, method="is", n_samples=64, generator=torch.Generator().manual_seed(0))
    for name in ("present", "reg_paper", "reg_vjp", "reg_diag"):
        torch.testing.assert_close(getattr(f, name), getattr(ref, name), rtol=1e-10, atol=1e-11)
    paper, vjp, diag = reg_corrections_reducible(cond, f.present, x, 0.6)
    torch.testing.assert_close(vjp, f.reg_vjp, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(paper, f.reg_paper, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(diag, f.reg_diag, rtol=1e-12, atol=1e-13)


def test_sampler_reg_on_the_reduced_denoiser_matches_the_structured_corrections():
    """The study runs sampler.REG (D-form, autograd / forward mode / finite difference) on the exact reduced
    denoiser in R^d; its eps-form corrections must be the structured ones (jvp and fd: J in place of J^T,
    the same for exact scores)."""
    from sampler import CFG, REG

    cond, reward = cfg_pair(96, 1, 9, [0.5, 0.8], [1.5], w=2.0)
    a = 0.4
    sigma = math.sqrt((1 - a) / a)
    x = cond.noised(a).sample(16, torch.Generator().manual_seed(4))
    g = reward.present(x, a)
    paper, vjp, _ = reg_corrections_reducible(cond, g, x, a)
    cfg = CFG(cond.denoise, reward.den.denoise, 2.0)
    d_c = cond.denoise(x / math.sqrt(a), sigma)
    torch.testing.assert_close(-(cfg(x / math.sqrt(a), sigma) - d_c) / sigma, g, rtol=1e-10, atol=1e-12)
    for est, ref, tol in (("paper", paper, 1e-10), ("vjp", vjp, 1e-10), ("jvp", vjp, 1e-10), ("fd", vjp, 1e-6)):
        field = -(REG(cfg, est)(x / math.sqrt(a), sigma) - d_c) / sigma
        torch.testing.assert_close(field, ref, rtol=tol, atol=tol)


def test_golden_present_and_vjp_are_rotation_equivariant_but_the_paper_estimator_is_not():
    cond, reward = cfg_pair(6, 1, 8, [0.5], [1.5], w=2.0)
    x = cond.noised(0.5).sample(20, torch.Generator().manual_seed(2))
    rot = torch.linalg.qr(torch.randn(6, 6, dtype=F64, generator=torch.Generator().manual_seed(3)))[0]
    c2 = cond.with_basis(rot @ cond.basis)
    r2 = ReducibleRatioReward(c2, reward.den.with_basis(c2.basis), reward.w)
    f, f2 = (guidance_fields_reducible(cond, reward, x, 0.5, tol=1e-9),
             guidance_fields_reducible(c2, r2, x @ rot.T, 0.5, tol=1e-9))
    for name in ("golden", "present", "reg_vjp"):
        torch.testing.assert_close(getattr(f2, name), getattr(f, name) @ rot.T, rtol=1e-7, atol=1e-9)
    gap = (f2.reg_paper - f.reg_paper @ rot.T).norm(dim=1) / f.reg_paper.norm(dim=1)
    assert gap.median() > 0.05


# --- recognising plain mixtures --------------------------------------------------------------------


@pytest.mark.parametrize("d,m", [(3, 1), (4, 2), (12, 1), (64, 2)])
def test_detect_reducible_recognises_members_and_shares_the_basis(d, m):
    cond, reward = cfg_pair(d, m, 10 + d, [0.5, 0.7], [1.2, 0.7])
    dense = (cond.to_dense(), reward.num.to_dense(), reward.den.to_dense())
    found = detect_reducible(*dense)
    assert found is not None and len(found) == 3
    assert all(f.sub_dim == m and f.basis is found[0].basis for f in found)
    x = torch.randn(7, d, dtype=F64, generator=torch.Generator().manual_seed(0))
    for f, ref in zip(found, dense):
        torch.testing.assert_close(f.log_prob(x), ref.log_prob(x), rtol=1e-10, atol=1e-10)
    c, r = reduce_problem(dense[0], CFGReward(dense[0], dense[2], 1.0))
    assert isinstance(r, ReducibleRatioReward) and is_separable(c, r) is False


def test_detect_reducible_refuses_what_is_not_in_the_family():
    g = torch.Generator().manual_seed(0)
    d = 6
    Rm = torch.randn(d, d, dtype=F64, generator=g)
    generic = GaussianMixture([1.0], torch.zeros(1, d, dtype=F64), (Rm @ Rm.T + torch.eye(d, dtype=F64))[None])
    assert detect_reducible(generic) is None
    # isotropic covariances but three means spanning 3 dimensions
    means = torch.eye(d, dtype=F64)[:3]
    assert detect_reducible(GaussianMixture([1, 1, 1], means, torch.eye(d, dtype=F64).expand(3, d, d))) is None
    # each member fine alone, but on three different lines: no common subspace of dimension <= 2
    a, b, c = member(d, 1, 1, [0.5]), member(d, 1, 2, [0.5]), member(d, 1, 3, [0.5])
    assert detect_reducible(a.to_dense(), b.to_dense(), c.to_dense()) is None
    (ab, _) = detect_reducible(a.to_dense(), b.to_dense())  # two lines span a plane
    assert ab.sub_dim == 2
    # isotropic, zero means: a member with any U
    iso = GaussianMixture([1.0], torch.zeros(1, d, dtype=F64), 0.3 * torch.eye(d, dtype=F64)[None])
    (found,) = detect_reducible(iso)
    torch.testing.assert_close(found.comp_vars, torch.tensor([0.3], dtype=F64))
    with pytest.raises(ValueError, match="dimensions"):
        detect_reducible(iso, member(3, 1, 0, [1.0]).to_dense())
    with pytest.raises(ValueError, match="tol"):
        detect_reducible(iso, tol=0)


# --- the golden against independent routes -----------------------------------------------------------


@pytest.mark.parametrize("m", [1, 2])
@pytest.mark.parametrize("route", ["subspace", "radial"])
def test_golden_equals_the_grid_golden_when_d_equals_m(m, route):
    """n = 0: both routes reduce to an m-dimensional problem; the reference is the dense trapezoid grid golden."""
    cond, reward = cfg_pair(m, m, 20 + m, [1.0, 1.0], [1.0], w=1.3)
    dc, dr = cond.to_dense(), CFGReward(cond.to_dense(), reward.den.to_dense(), 1.3)
    x = torch.randn(25, m, dtype=F64, generator=torch.Generator().manual_seed(m)) * 1.2
    for a in (0.9, 0.4):
        o = optimal_guidance_reducible(cond, reward, x, a, tol=1e-9, route=route)
        ref = optimal_guidance(dc, dr, x, a, method="grid")
        assert o.method == route
        torch.testing.assert_close(o.grad_log_E, ref.grad_log_E, rtol=0, atol=1e-8)
        torch.testing.assert_close(o.log_E, ref.log_E, rtol=0, atol=1e-8)
        torch.testing.assert_close(o.tilted_mean, ref.tilted_mean, rtol=0, atol=1e-8)


@pytest.mark.parametrize("s_cond,s_other", [([0.3, 0.5], [0.6, 0.4]), ([0.5], [1.5])])
def test_radial_route_equals_the_2d_grid_golden_at_d_2(s_cond, s_other):
    """m = 1, d = 2: one complement axis with unequal variances, the (m + 1)-dimensional route against the
    dense 2-D grid golden of the plain mixture (shares only the densities)."""
    cond, reward = cfg_pair(2, 1, 30, s_cond, s_other, w=1.0)
    dc, dr = cond.to_dense(), CFGReward(cond.to_dense(), reward.den.to_dense(), 1.0)
    x = torch.randn(30, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    for a in (0.95, 0.6, 0.2):
        o = optimal_guidance_reducible(cond, reward, x, a, tol=1e-9)
        ref = optimal_guidance(dc, dr, x, a, method="grid")
        assert o.method == "radial"
        torch.testing.assert_close(o.grad_log_E, ref.grad_log_E, rtol=0, atol=1e-8)
        torch.testing.assert_close(o.log_E, ref.log_E, rtol=0, atol=1e-8)
        assert o.err_grad.max() < 1e-7


@pytest.mark.parametrize("d,m", [(3, 1), (4, 1), (5, 2), (6, 1)])
def test_golden_within_the_standard_error_of_importance_sampling(d, m):
    """A benign setting (moderate weight and noise, cond a component of the reference, so R_0 is bounded):
    the reduced route, reached by detection from plain mixtures, against the toolkit's importance sampling."""
    cond, reward = cfg_pair(d, m, 40 + d, [0.6], [1.2], w=0.7)
    dc = cond.to_dense()
    dr = CFGReward(dc, reward.den.to_dense(), 0.7)
    x = cond.noised(0.6).sample(12, torch.Generator().manual_seed(d))
    o = optimal_guidance_reducible(dc, dr, x, 0.6, tol=1e-8)  # detection -> radial route
    assert o.method == "radial"
    est = optimal_guidance(dc, dr, x, 0.6, method="is", n_samples=20000, generator=torch.Generator().manual_seed(0))
    z = ((est.grad_log_E - o.grad_log_E) / est.err_grad).flatten()
    assert z.abs().max() < 5
    assert 0.5 < z.std().item() < 1.6
    assert ((est.log_E - o.log_E) / est.err_log_E).abs().max() < 5


@pytest.mark.parametrize("d", [3, 12, 40])
@pytest.mark.parametrize("route", ["subspace", "radial"])
def test_single_gaussians_match_the_closed_form_in_any_dimension(d, route):
    cond = member(d, 1, 50, [0.4])
    ref_mix = ReducibleMixture(cond.basis, [1.0], cond.means_u + 0.8, 1.7 * cond.covs_u, [0.9])
    reward = ReducibleRatioReward(cond, ref_mix, 1.2)
    x = cond.noised(0.5).sample(10, torch.Generator().manual_seed(d))
    o = optimal_guidance_reducible(cond, reward, x, 0.5, tol=1e-10, route=route)
    dc = cond.to_dense()
    closed = optimal_guidance(dc, CFGReward(dc, ref_mix.to_dense(), 1.2), x, 0.5)
    assert closed.method == "closed"
    torch.testing.assert_close(o.grad_log_E, closed.grad_log_E, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(o.log_E, closed.log_E, rtol=1e-10, atol=1e-8)


@pytest.mark.parametrize("d,m", [(16, 1), (1000, 1), (4096, 2)])
def test_radial_route_equals_the_closed_form_complement_factor_at_large_n(d, m):
    """AutoG with a degraded (wider) reference: separable, so the subspace route uses the closed-form Gaussian
    complement factor; the general (m + 1)-dimensional route must agree at n up to 4094."""
    cond = member(d, m, 60, [0.5, 0.5])
    bad = ReducibleMixture(cond.basis, cond.weights, cond.means_u, 2 * cond.covs_u, 2 * cond.comp_vars)
    reward = ReducibleRatioReward(cond, bad, 1.5)
    for a in (0.9, 0.2):
        x = cond.noised(a).sample(8, torch.Generator().manual_seed(d))
        exact = optimal_guidance_reducible(cond, reward, x, a, tol=1e-10)
        general = optimal_guidance_reducible(cond, reward, x, a, tol=1e-9, route="radial")
        assert exact.method == "subspace" and general.method == "radial"
        scale = exact.grad_log_E.norm(dim=1, keepdim=True)
        assert ((general.grad_log_E - exact.grad_log_E).abs() / scale).max() < 1e-8
        torch.testing.assert_close(general.log_E, exact.log_E, rtol=1e-11, atol=1e-8)


def test_autog_through_detection_and_the_classifier_reward():
    d = 9
    cond = member(d, 2, 70, [0.5, 0.5]).to_dense()
    found = optimal_guidance_reducible(cond, AutoGReward(cond, cond.with_covs(2 * cond.covs), 1.0),
                                       cond.sample(5, torch.Generator().manual_seed(0)), 0.5)
    assert found.method == "subspace"
    other = member(d, 2, 71, [0.5], Q=detect_reducible(cond)[0].basis).to_dense()
    reward = ClassifierReward([cond, other], [0.3, 0.7], 0, 2.0)
    x = cond.sample(6, torch.Generator().manual_seed(1))
    o = optimal_guidance_reducible(cond, reward, x, 0.7)
    est = optimal_guidance(cond, reward, x, 0.7, method="is", n_samples=20000,
                           generator=torch.Generator().manual_seed(2))
    assert ((est.grad_log_E - o.grad_log_E) / est.err_grad).abs().max() < 5


def test_exact_at_abar_one_zero_weight_and_bad_input():
    cond, reward = cfg_pair(5, 1, 80, [0.5], [1.0], w=1.0)
    x = cond.sample(4, torch.Generator().manual_seed(0))
    o = optimal_guidance_reducible(cond, reward, x, 1.0)
    assert o.method == "exact" and torch.all(o.golden == 0)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(reward.log_r0(xg).sum(), xg)
    torch.testing.assert_close(o.grad_log_E, g)
    zero = optimal_guidance_reducible(cond, ReducibleRatioReward(cond, reward.den, 0.0), x, 0.5, route="radial")
    assert zero.golden.abs().max() < 1e-10
    with pytest.raises(ValueError, match="route"):
        optimal_guidance_reducible(cond, reward, x, 0.5, route="mc")
    with pytest.raises(ValueError, match="tol"):
        optimal_guidance_reducible(cond, reward, x, 0.5, tol=-1)
    with pytest.raises(ValueError, match="subspace"):
        optimal_guidance_reducible(cond, reward, x, 0.5, route="subspace")
    with pytest.raises(ValueError, match="shape"):
        optimal_guidance_reducible(cond, reward, x[:, :3], 0.5)
    with pytest.raises(ValueError, match="reducible family"):
        Rm = torch.randn(5, 5, dtype=F64)
        generic = GaussianMixture([1.0], torch.zeros(1, 5, dtype=F64), (Rm @ Rm.T + torch.eye(5, dtype=F64))[None])
        optimal_guidance_reducible(generic, CFGReward(generic, reward.den.to_dense(), 1.0), x, 0.5)
    with pytest.raises(ValueError, match="diverges"):  # conditional wider than the reference, large weight
        wide = ReducibleMixture(cond.basis, [1.0], cond.means_u, 3 * cond.covs_u, [3.0])
        optimal_guidance_reducible(wide, ReducibleRatioReward(wide, cond, 5.0), x, 0.3)
    with pytest.raises(ValueError, match="orthonormal"):
        ReducibleMixture(2 * cond.basis, [1.0], [[0.0]], [[[1.0]]], [1.0])
    with pytest.raises(ValueError, match="comp_vars"):
        ReducibleMixture(cond.basis, [1.0], [[0.0]], [[[1.0]]], [0.0])
    with pytest.raises(ValueError, match="share one basis"):
        ReducibleRatioReward(cond, member(5, 1, 81, [1.0]), 1.0)
    with pytest.raises(ValueError, match="to_dense"):
        member(3000, 1, 0, [1.0]).to_dense()


# --- the radial law -------------------------------------------------------------------------------


def test_log_phi_and_bessel_ratio_match_mpmath():
    mpmath.mp.dps = 30
    for nu in (-0.5, 0.0, 4.5, 99.5, 100.0, 2047.0):
        for z in (0.0, 1e-6, 0.3, 7.0, 150.0, 3000.0):
            ref = 0.0 if z == 0 else float(mpmath.log(mpmath.gamma(nu + 1) * (2 / mpmath.mpf(z)) ** nu
                                                      * mpmath.besseli(nu, z, maxterms=10**6)))
            assert abs(log_phi(nu, np.array([z]))[0] - ref) <= 1e-11 * max(1.0, abs(ref))
            if z > 0:
                A_ref = float(mpmath.besseli(nu + 1, z, maxterms=10**6) / mpmath.besseli(nu, z, maxterms=10**6))
                assert abs(bessel_ratio(nu, np.array([z]))[0][0] - A_ref) <= 1e-10 * A_ref


@pytest.mark.parametrize("n,M,kappa2", [(1, 0.7, 0.5), (2, 0.0, 1.0), (11, 1.3, 0.09), (500, 4.0, 0.2)])
def test_radial_density_is_the_noncentral_chi_law(n, M, kappa2):
    rho = np.linspace(1e-12, math.sqrt(kappa2) * (math.sqrt(n) + 12) + M, 400001)
    f = np.exp(log_radial_density(n, rho, M, kappa2))
    assert abs(integrate.trapezoid(f, rho) - 1) < 1e-8
    law = stats.ncx2(n, M**2 / kappa2) if M > 0 else stats.chi2(n)
    assert abs(integrate.trapezoid(f * rho**2, rho) / kappa2 / law.mean() - 1) < 1e-8
