import math

import pytest
import torch

from analytic import AutoGReward, CFGReward, ClassifierReward, GaussianMixture, degrade

from .conftest import paper_pair, random_mixture


@pytest.mark.parametrize("d", [1, 2])
def test_present_term_is_minus_sqrt_one_minus_abar_grad_log_rt(d):
    c, u = random_mixture(d, 2, 1), random_mixture(d, 3, 2)
    r = CFGReward(c, u, 1.7)
    x = torch.randn(15, d, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    a = 0.4
    (grad,) = torch.autograd.grad(r.log_rt(x, a).sum(), x)
    torch.testing.assert_close(r.present(x, a), -math.sqrt(1 - a) * grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(r.present(x, a), 1.7 * (c.eps(x, a) - u.eps(x, a)))
    torch.testing.assert_close(r.log_rt(x, 1.0), r.log_r0(x))


@pytest.mark.parametrize("d", [1, 2, 3])
def test_quadratic_form_reproduces_log_r0(d):
    c, u = random_mixture(d, 1, 3), random_mixture(d, 1, 4)
    r = AutoGReward(c, u, -0.6)
    A, b, const = r.quadratic()
    x = torch.randn(40, d, dtype=torch.float64)
    torch.testing.assert_close(-0.5 * torch.einsum("ni,ij,nj->n", x, A, x) + x @ b + const, r.log_r0(x))
    assert CFGReward(random_mixture(d, 2, 5), u, 1.0).quadratic() is None


def test_classifier_reward_is_the_bayes_classifier():
    classes = [random_mixture(2, 2, s) for s in (6, 7, 8)]
    priors = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    x = torch.randn(30, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for y in range(3):
        r = ClassifierReward(classes, priors, y, w=2.5)
        for a in (1.0, 0.3):
            logits = torch.stack([torch.log(p) + m.noised(a).log_prob(x) for p, m in zip(priors, classes)], 1)
            log_post = torch.log_softmax(logits, dim=1)[:, y]
            torch.testing.assert_close(r.log_rt(x, a), 2.5 * log_post, rtol=1e-10, atol=1e-10)
        xr = x.clone().requires_grad_(True)
        logits = torch.stack([torch.log(p) + m.noised(0.3).log_prob(xr) for p, m in zip(priors, classes)], 1)
        (g,) = torch.autograd.grad(torch.log_softmax(logits, 1)[:, y].sum(), xr)
        torch.testing.assert_close(r.present(x, 0.3), -2.5 * math.sqrt(0.7) * g, rtol=1e-9, atol=1e-10)


def test_tail_curvature_is_the_leading_term_of_log_r0():
    c, u = random_mixture(2, 2, 9), random_mixture(2, 3, 10)
    r = CFGReward(c, u, 1.3)
    u_dir = torch.nn.functional.normalize(torch.randn(8, 2, dtype=torch.float64), dim=1)
    rho = 1e4
    # log R_0(rho u) = -tau rho^2 / 2 + beta rho + gamma: the combination below cancels beta exactly.
    numeric = -(r.log_r0(2 * rho * u_dir) - 2 * r.log_r0(rho * u_dir)) / rho**2
    torch.testing.assert_close(numeric, r.tail_curvature(u_dir), rtol=1e-6, atol=1e-6)


def test_paper_reward_and_degrade():
    cond, uncond = paper_pair()
    r = CFGReward(cond, uncond, 1.0)
    assert r.cond is cond and r.uncond is uncond
    bad = degrade(cond, 2.0)
    torch.testing.assert_close(bad.covs, 2 * cond.covs)
    torch.testing.assert_close(bad.means, cond.means)
    assert AutoGReward(cond, bad, 1.0).bad is bad


def test_bad_rewards_are_rejected():
    c1, c2 = random_mixture(1, 1, 0), random_mixture(2, 1, 0)
    with pytest.raises(ValueError, match="dimension"):
        CFGReward(c1, c2, 1.0)
    with pytest.raises(ValueError, match="finite"):
        CFGReward(c1, c1, math.nan)
    with pytest.raises(ValueError, match="must be a number"):
        CFGReward(c1, c1, "big")
    with pytest.raises(ValueError, match="class index"):
        ClassifierReward([c1, c1], [0.5, 0.5], 2, 1.0)
    with pytest.raises(ValueError, match="priors"):
        ClassifierReward([c1, c1], [0.5, -0.5], 0, 1.0)
    with pytest.raises(ValueError, match="cov_scale"):
        degrade(c1, 0.0)
    with pytest.raises(ValueError, match="GaussianMixture"):
        CFGReward(c1, "not a mixture", 1.0)
    assert isinstance(c1, GaussianMixture)
