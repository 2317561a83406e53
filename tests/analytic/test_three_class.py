"""Three-class laws (condition, negative, unconditional): presets, the negative-prompt reward and its exact optimum,
and the class mass of a law, each against an independent route."""
import math

import numpy as np
import pytest
import torch

from analytic import (NEGATIVE, CFGReward, GaussianMixture, NegativePromptReward, class_log_posterior, class_mass,
                      class_mass_on_grid, get_preset, negative_prompt_reward, optimal_guidance, symbolic)
from analytic.quadrature import ToleranceNotMet

DT = torch.float64


@pytest.mark.parametrize("name", ["three_1d", "three_2d"])
def test_three_class_presets(name):
    p = get_preset(name)
    assert len(p.classes) == 3 and p.y == 0 and p.cond is p.classes[0]
    x = p.uncond.sample(20, torch.Generator().manual_seed(0))
    marginal = torch.logsumexp(torch.stack([math.log(pr / sum(p.priors)) + c.log_prob(x)
                                            for pr, c in zip(p.priors, p.classes)]), 0)
    assert torch.allclose(p.uncond.log_prob(x), marginal, atol=1e-12)
    r = negative_prompt_reward(p, 2.5)
    assert isinstance(r, NegativePromptReward) and isinstance(r, CFGReward)
    assert r.cond is p.classes[0] and r.neg is p.classes[NEGATIVE] and r.w == 2.5
    assert torch.allclose(r.log_r0(x), 2.5 * (p.classes[0].log_prob(x) - p.classes[1].log_prob(x)), atol=1e-12)


def test_negative_prompt_reward_refuses_a_two_class_preset():
    with pytest.raises(ValueError, match="not a three-class law"):
        negative_prompt_reward(get_preset("paper_1d"), 1.0)


@pytest.mark.parametrize("y", [NEGATIVE, 5, -1, True])
def test_negative_prompt_reward_refuses_a_condition_that_is_not_class_0_or_2(y):
    # issue 20: y=5 was a bare IndexError, y=-1 read the last class as the condition
    import dataclasses

    with pytest.raises(ValueError, match=f"y={y!r}"):
        negative_prompt_reward(dataclasses.replace(get_preset("three_1d"), y=y), 1.0)


@pytest.mark.parametrize("w", [0.5, 2.0])
def test_optimum_for_single_gaussians_matches_the_symbolic_closed_form(w):
    """(p_c / p_neg)^w with single Gaussians: optimal_guidance (closed) against analytic.symbolic's sympy forms,
    with the negative in the reference slot."""
    mu_c, s_c, mu_n, s_n = 1.0, 0.5, 1.6, 0.7
    r = NegativePromptReward(GaussianMixture.from_1d([1.0], [mu_c], [s_c]),
                             GaussianMixture.from_1d([1.0], [mu_n], [s_n]), w)
    x = torch.linspace(-2, 3, 11, dtype=DT)[:, None]
    for a in (0.1, 0.5, 0.9):
        og = optimal_guidance(r.cond, r, x, a)
        f = symbolic.fields(x[:, 0].numpy(), a, mu_c, s_c, mu_n, s_n, w)
        np.testing.assert_allclose(og.golden[:, 0].numpy(), f.golden, atol=1e-10)
        np.testing.assert_allclose(og.log_E.numpy(), f.log_E, atol=1e-10)
        np.testing.assert_allclose(r.present(x, a)[:, 0].numpy(), f.cfg, atol=1e-10)  # negative-prompt CFG term


def test_optimum_on_three_1d_against_direct_quadrature():
    """E_t(x_t) = int p_c(x_0) q(x_t | x_0) R_0(x_0) dx_0 / int p_c q dx_0 on a fine grid (no posterior machinery)."""
    p = get_preset("three_1d")
    r = negative_prompt_reward(p, 1.5)
    x0 = torch.linspace(-6, 8, 200001, dtype=DT)
    for a in (0.2, 0.8):
        x_t = torch.tensor([[-0.5], [0.9], [2.0]], dtype=DT)
        og = optimal_guidance(p.cond, r, x_t, a)
        for i in range(3):
            log_q = -0.5 * (x_t[i, 0] - math.sqrt(a) * x0) ** 2 / (1 - a)
            base = p.cond.log_prob(x0[:, None]) + log_q
            shift = base.max()
            num = torch.trapezoid((base - shift + r.log_r0(x0[:, None])).exp(), x0)
            den = torch.trapezoid((base - shift).exp(), x0)
            m_R = torch.trapezoid((base - shift + r.log_r0(x0[:, None])).exp() * x0, x0) / num
            assert og.log_E[i].item() == pytest.approx(math.log(num / den), abs=1e-8)
            assert og.tilted_mean[i, 0].item() == pytest.approx(m_R.item(), abs=1e-7)


def test_optimum_on_three_2d_grid_against_gauss_hermite():
    p = get_preset("three_2d")
    r = negative_prompt_reward(p, 1.0)
    x_t = p.uncond.noised(0.5).sample(8, torch.Generator().manual_seed(1))
    grid = optimal_guidance(p.cond, r, x_t, 0.5, method="grid", tol=1e-7)
    gh = optimal_guidance(p.cond, r, x_t, 0.5, method="gh", tol=1e-7)
    assert torch.allclose(grid.golden, gh.golden, atol=1e-6) and torch.allclose(grid.log_E, gh.log_E, atol=1e-6)


@pytest.mark.parametrize("name", ["three_1d", "three_2d"])
def test_class_mass_of_the_marginal_is_the_prior(name):
    """int p(x) P(j | x) dx = pi_j exactly, for every class."""
    p = get_preset(name)
    for j in range(3):
        m = class_mass(p.uncond, p.classes, p.priors, j)
        assert m.value == pytest.approx(p.priors[j] / sum(p.priors), abs=max(m.error, 1e-12))
        assert m.error < 1e-8


@pytest.mark.parametrize("name", ["three_1d", "three_2d"])
def test_class_mass_against_monte_carlo_and_the_grid_route(name):
    p = get_preset(name)
    law = p.cond  # the mass the conditional law itself puts on the negative class
    m = class_mass(law, p.classes, p.priors, NEGATIVE)
    x = law.sample(200_000, torch.Generator().manual_seed(2))
    post = class_log_posterior(p.classes, p.priors, NEGATIVE, x).exp()
    assert abs(m.value - post.mean().item()) < 4 * post.std().item() / math.sqrt(x.shape[0])
    assert 0.05 < m.value < 0.6  # the negative overlaps the condition: a real share, not 0
    d = law.dim
    axes = [torch.linspace(-8, 9, 801 if d == 1 else 401, dtype=DT) for _ in range(d)]
    mesh = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, d)
    g = class_mass_on_grid(axes, law.log_prob(mesh).exp().reshape([a.numel() for a in axes]), p.classes, p.priors,
                           NEGATIVE)
    assert abs(g.value - m.value) <= g.error + m.error + 1e-12 and g.error < 1e-4


def test_class_mass_reports_an_unmet_tolerance():
    p = get_preset("three_1d")
    with pytest.raises(ToleranceNotMet, match="max_nodes"):
        class_mass(p.cond, p.classes, p.priors, NEGATIVE, tol=1e-15, max_nodes=100)
    with pytest.raises(ToleranceNotMet, match="max_nodes"):  # one grid only: no change measured yet
        class_mass(p.cond, p.classes, p.priors, NEGATIVE, tol=1e-15, max_nodes=65)
    with pytest.raises(ValueError, match="max_nodes"):
        class_mass(p.cond, p.classes, p.priors, NEGATIVE, max_nodes=10)


def test_class_mass_bad_input():
    p = get_preset("three_1d")
    with pytest.raises(ValueError, match="index"):
        class_mass(p.cond, p.classes, p.priors, 3)
    with pytest.raises(ValueError, match="priors"):
        class_mass(p.cond, p.classes, [0.5, -0.1, 0.6], 0)
    with pytest.raises(ValueError, match="law must be"):
        class_mass("law", p.classes, p.priors, 0)
    with pytest.raises(ValueError, match="d <= 2"):
        class_mass(get_preset("three_2d").cond, p.classes, p.priors, 0)
    ax = torch.linspace(-1, 1, 5, dtype=DT)
    with pytest.raises(ValueError, match="density must have shape"):
        class_mass_on_grid([ax], torch.ones(4, dtype=DT), p.classes, p.priors, 0)
    with pytest.raises(ValueError, match="odd number"):
        class_mass_on_grid([ax[:4]], torch.ones(4, dtype=DT), p.classes, p.priors, 0)
    with pytest.raises(ValueError, match="non-negative"):
        class_mass_on_grid([ax], -torch.ones(5, dtype=DT), p.classes, p.priors, 0)


def test_class_mass_on_grid_names_a_bad_axis_and_refuses_an_unnormalised_density():
    """Issue 20: an infinite axis node was blamed on 'x'; a density times 1e6 gave a class 'mass' of 3.7e5."""
    p = get_preset("three_1d")
    ax = torch.linspace(-8, 9, 201, dtype=DT)
    dens = p.cond.log_prob(ax[:, None]).exp()
    with pytest.raises(ValueError, match=r"axes\[0\] must be finite"):
        class_mass_on_grid([torch.cat([ax[:-1], torch.tensor([math.inf], dtype=DT)])], dens, p.classes, p.priors, 0)
    with pytest.raises(ValueError, match="density integrates to 1e\\+06"):
        class_mass_on_grid([ax], dens * 1e6, p.classes, p.priors, NEGATIVE)
    # a probability density passes, also as hat masses / h (the notebook's use: they sum to at most 1)
    ok = class_mass_on_grid([ax], dens, p.classes, p.priors, NEGATIVE)
    assert abs(ok.value - class_mass(p.cond, p.classes, p.priors, NEGATIVE).value) < 1e-6
    h = (ax[1] - ax[0]).item()
    hats = dens * h
    hats[0], hats[-1] = 0.5 * hats[0], 0.5 * hats[-1]
    class_mass_on_grid([ax], hats / h, p.classes, p.priors, NEGATIVE)
