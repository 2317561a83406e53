"""Plain mixtures of the reducible family take the exact reduced route in analytic.optimal_guidance and
analytic.guidance_fields (issue 13): the same numbers as the reduced route, within the standard error of importance
sampling, the dense REG fields, the old routes for everything else, and detection done once per mixture."""
import math

import pytest
import torch

import analytic.reducible as reducible
from analytic import (AutoGReward, CFGReward, ClassifierReward, GaussianMixture, eps_jacobian, guidance_fields,
                      optimal_guidance, reg_corrections)
from analytic.reducible import ReducibleMixture, reducible_form
from analytic.reducible_golden import guidance_fields_reducible, optimal_guidance_reducible
from tests.analytic.test_reducible import member, union

F64 = torch.float64


def plain_problem(d: int, m: int, kind: str, seed: int):
    """A plain ``GaussianMixture`` conditional and a plain reward of the family (complement variances unequal
    across the mixtures for ``cfg`` and ``classifier``: the radial route; equal for ``autog``: the subspace route).
    The radial route with m = 2 against importance sampling is in test_reducible.py."""
    cond = member(d, m, seed, [0.6, 0.6])
    if kind == "cfg":
        other = member(d, m, seed + 1, [1.1], Q=cond.basis)
        dc = cond.to_dense()
        return dc, CFGReward(dc, union(cond, other).to_dense(), 0.8)
    if kind == "autog":
        dc = cond.to_dense()
        return dc, AutoGReward(dc, dc.with_covs(1.5 * dc.covs), 0.8)
    if kind == "classifier":
        other = member(d, m, seed + 2, [1.0], Q=cond.basis)
        dc = cond.to_dense()
        return dc, ClassifierReward([dc, other.to_dense()], [0.4, 0.6], 0, 1.2)
    raise ValueError(kind)


@pytest.mark.parametrize("d,m,kind", [(3, 1, "cfg"), (4, 2, "autog"), (5, 1, "classifier"), (6, 1, "cfg")])
def test_dispatch_equals_the_reduced_route_and_importance_sampling(d, m, kind):
    cond, reward = plain_problem(d, m, kind, 10 * d)
    a = 0.5
    x = cond.noised(a).sample(6, torch.Generator().manual_seed(d))
    auto = optimal_guidance(cond, reward, x, a)
    reduced = optimal_guidance_reducible(cond, reward, x, a)
    assert auto.method == reduced.method == ("subspace" if kind == "autog" else "radial")
    for name in ("log_E", "grad_log_E", "golden", "tilted_mean", "golden_error"):
        torch.testing.assert_close(getattr(auto, name), getattr(reduced, name), rtol=0, atol=0)
    assert auto.golden_error.max() < 1e-6
    est = optimal_guidance(cond, reward, x, a, method="is", n_samples=8000, generator=torch.Generator().manual_seed(0))
    assert est.method == "is"  # an explicit method is honoured
    z = ((est.golden - auto.golden) / est.golden_error).flatten()
    assert z.abs().max() < 5, z
    assert ((est.log_E - auto.log_E) / est.err_log_E).abs().max() < 5
    assert 0.3 < z.std().item() < 1.8  # the standard errors are the right size: the comparison can fail


def test_guidance_fields_in_d_64_are_exact_and_equal_the_dense_reg_fields():
    cond, reward = plain_problem(64, 1, "cfg", 3)
    a = 0.4
    x = cond.noised(a).sample(5, torch.Generator().manual_seed(1))
    f = guidance_fields(cond, reward, x, a)
    assert f.method == "radial" and f.golden_error.max() < 1e-6
    ref = guidance_fields_reducible(cond, reward, x, a)
    torch.testing.assert_close(f.golden, ref.golden, rtol=0, atol=0)
    torch.testing.assert_close(f.golden, optimal_guidance(cond, reward, x, a).golden, rtol=0, atol=0)
    g = reward.present(x, a)  # the dense present-time term and REG corrections, autograd Jacobian in R^64
    paper, vjp, diag = reg_corrections(g, eps_jacobian(cond, x, a), math.sqrt(1 - a))
    for name, dense in (("present", g), ("reg_paper", paper), ("reg_vjp", vjp), ("reg_diag", diag)):
        torch.testing.assert_close(getattr(f, name), dense, rtol=1e-9, atol=1e-11)


def test_everything_outside_the_family_keeps_its_route():
    gen = torch.Generator().manual_seed(5)
    d = 3
    R = torch.randn(2, d, d, dtype=F64, generator=gen)
    covs = R @ R.transpose(1, 2) + 0.5 * torch.eye(d, dtype=F64)  # full covariances: not in the family
    cond = GaussianMixture([0.5, 0.5], torch.randn(2, d, dtype=F64, generator=gen), covs)
    uncond = GaussianMixture.concat([cond, cond.with_covs(2 * cond.covs)], [0.5, 0.5])
    reward = CFGReward(cond, uncond, 0.5)
    assert reducible_form(cond, reward) is None
    x = cond.noised(0.6).sample(3, torch.Generator().manual_seed(0))
    kw = dict(n_samples=500, tol=10.0, generator=torch.Generator().manual_seed(1))  # the route, not the value
    assert optimal_guidance(cond, reward, x, 0.6, **kw).method == "is"
    assert guidance_fields(cond, reward, x, 0.6, **kw).method == "is"
    # single Gaussians of the family keep the closed form; d <= 2 keeps the grid; explicit methods are honoured
    one = member(5, 1, 9, [0.7]).to_dense()
    ref = one.with_covs(1.3 * one.covs)
    assert reducible_form(one, CFGReward(one, ref, 1.0)) is not None
    assert guidance_fields(one, CFGReward(one, ref, 1.0), one.sample(2), 0.5).method == "closed"
    flat = member(2, 1, 9, [0.7, 0.7]).to_dense()
    assert guidance_fields(flat, AutoGReward(flat, flat.with_covs(2 * flat.covs), 1.0), flat.sample(2), 0.5
                           ).method == "grid"
    cond5, reward5 = plain_problem(5, 1, "autog", 1)
    x5 = cond5.sample(2, torch.Generator().manual_seed(2))
    assert optimal_guidance(cond5, reward5, x5, 0.5, method="is", n_samples=500, tol=10.0,
                            generator=torch.Generator().manual_seed(3)).method == "is"
    assert reducible_form(cond5, object()) is None and reducible_form(object(), reward5) is None


def test_detection_runs_once_per_mixture_and_again_after_a_change(monkeypatch):
    calls = []
    detect = reducible.detect_reducible
    monkeypatch.setattr(reducible, "detect_reducible", lambda *a, **k: calls.append(1) or detect(*a, **k))
    cond, reward = plain_problem(40, 2, "autog", 7)
    x = cond.sample(3, torch.Generator().manual_seed(0))
    first = optimal_guidance(cond, reward, x, 0.5)
    guidance_fields(cond, reward, x, 0.5)
    heavier = AutoGReward(cond, reward.den, 2.0)  # a new reward on the same mixtures: no new detection
    twice = optimal_guidance(cond, heavier, x, 0.5)
    assert len(calls) == 1
    assert not torch.allclose(twice.golden, first.golden)  # and the reward's own w is used
    torch.testing.assert_close(twice.golden, optimal_guidance_reducible(cond, heavier, x, 0.5).golden, rtol=0, atol=0)
    cond.means.add_(0.0)  # an in-place change (even a null one) invalidates the cached answer
    optimal_guidance(cond, reward, x, 0.5)
    assert len(calls) == 2
    reward.den.covs = 3.0 * reward.den.covs  # so does a replaced tensor
    optimal_guidance(cond, reward, x, 0.5)
    assert len(calls) == 3


def test_a_large_d_plain_member_is_exact():
    """d = 512 through the plain API: the subspace route, equal to the reduced inputs' answer."""
    cond_r = member(512, 1, 21, [0.5, 0.5])
    bad = ReducibleMixture(cond_r.basis, cond_r.weights, cond_r.means_u, 2 * cond_r.covs_u, 2 * cond_r.comp_vars)
    cond = cond_r.to_dense()
    x = cond_r.noised(0.5).sample(4, torch.Generator().manual_seed(0))
    o = optimal_guidance(cond, AutoGReward(cond, bad.to_dense(), 1.0), x, 0.5)
    ref = optimal_guidance_reducible(cond_r, reducible.ReducibleRatioReward(cond_r, bad, 1.0), x, 0.5)
    assert o.method == "subspace"
    torch.testing.assert_close(o.golden, ref.golden, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(o.log_E, ref.log_E, rtol=1e-12, atol=1e-10)


def test_bad_input_is_refused_before_dispatch():
    cond, reward = plain_problem(4, 1, "cfg", 2)
    x = cond.sample(2, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="tol"):
        optimal_guidance(cond, reward, x, 0.5, tol=-1.0)
    with pytest.raises(ValueError, match="abar"):
        guidance_fields(cond, reward, x, 1.5)
    with pytest.raises(ValueError, match=r"x_t must have shape \[N, 4\]"):
        guidance_fields(cond, reward, x[:, :3], 0.5)
    with pytest.raises(ValueError, match="tol must be a number"):
        reducible_form(cond, reward, tol=0.5)
    with pytest.raises(ValueError, match="unknown method"):
        optimal_guidance(cond, reward, x, 0.5, method="radial")

