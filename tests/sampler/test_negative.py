"""sampler.negative: Perp-Neg against hand-computed vectors and its degenerate cases, and negative-prompt CFG
(sampler.CFG with the negative as reference) against the present-time term of analytic.NegativePromptReward."""
import math

import pytest
import torch

from analytic import NEGATIVE, get_preset, negative_prompt_reward
from sampler import CFG, PerpNeg, perpendicular, sample

DT = torch.float64


def _const(v):
    v = torch.tensor(v, dtype=DT)
    return lambda x, s: v.expand(x.shape[0], -1).clone()


def test_perpendicular_splits_v():
    g = torch.Generator().manual_seed(0)
    v, ref = torch.randn(5, 2, 3, dtype=DT, generator=g), torch.randn(5, 2, 3, dtype=DT, generator=g)
    perp = perpendicular(v, ref)
    assert torch.allclose((perp * ref).flatten(1).sum(1), torch.zeros(5, dtype=DT), atol=1e-12)
    par = (v - perp).flatten(1)
    cross = par[:, :, None] * ref.flatten(1)[:, None, :] - ref.flatten(1)[:, :, None] * par[:, None, :]
    assert torch.allclose(cross, torch.zeros_like(cross), atol=1e-12)  # v - perp is parallel to ref
    ref[1] = 0
    assert torch.equal(perpendicular(v, ref)[1], v[1])
    with pytest.raises(ValueError, match="shape"):
        perpendicular(v, ref[:, 0])


def test_perp_neg_by_hand():
    """D_c = (1, 0), D_u = 0, D_neg = (1, 1): Delta_neg^perp = (0, 1), so D = (1 + w) ((1, 0) - w_neg (0, 1))."""
    rule = PerpNeg(_const([1.0, 0.0]), _const([0.0, 0.0]), _const([1.0, 1.0]), weight=2.0, neg_weight=0.5)
    x = torch.zeros(3, 2, dtype=DT)
    assert torch.allclose(rule(x, 1.0), torch.tensor([[3.0, -1.5]], dtype=DT).expand(3, 2))
    assert torch.allclose(rule.delta(x, 1.0, _const([1.0, 0.0])(x, 1.0)), torch.tensor([[2.0, -1.5]], dtype=DT))


@pytest.mark.parametrize("name", ["three_1d", "three_2d"])
def test_perp_neg_reduces_to_cfg(name):
    """neg = uncond: nothing to subtract; and in 1-D every Delta_neg is parallel to Delta_c."""
    p = get_preset(name)
    c, u, n = p.cond.denoise, p.uncond.denoise, p.classes[NEGATIVE].denoise
    x = p.uncond.sample(16, torch.Generator().manual_seed(1))
    assert torch.allclose(PerpNeg(c, u, u, 1.5, 2.0)(x, 0.7), CFG(c, u, 1.5)(x, 0.7), atol=1e-12)
    same = torch.allclose(PerpNeg(c, u, n, 1.5, 2.0)(x, 0.7), CFG(c, u, 1.5)(x, 0.7), atol=1e-12)
    assert same == (p.cond.dim == 1)


def test_negative_prompt_cfg_is_the_present_time_rule_of_the_reward():
    """CFG(cond, neg, w) in eps units, -(guided - D_c) / sigma, equals NegativePromptReward.present at the VP point."""
    p = get_preset("three_2d")
    r = negative_prompt_reward(p, 2.0)
    x = p.uncond.sample(10, torch.Generator().manual_seed(2))
    for sigma in (0.3, 1.5):
        a = 1 / (1 + sigma**2)
        delta = CFG(r.cond.denoise, r.neg.denoise, 2.0)(x, sigma) - r.cond.denoise(x, sigma)
        assert torch.allclose(-delta / sigma, r.present(math.sqrt(a) * x, a), atol=1e-12)


def test_zero_weights_call_only_the_conditional_and_sampling_is_seeded():
    def boom(x, s):
        raise AssertionError("called")

    p = get_preset("three_2d")
    off = PerpNeg(p.cond.denoise, boom, boom, 0.0, 0.0)
    x = torch.randn(4, 2, dtype=DT, generator=torch.Generator().manual_seed(3))
    assert not off.active(1.0) and torch.equal(off(x, 1.0), p.cond.denoise(x, 1.0))
    rule = PerpNeg(p.cond.denoise, p.uncond.denoise, p.classes[NEGATIVE].denoise, 1.0, 1.0)
    sig = torch.tensor([5.0, 2.0, 1.0, 0.3, 0.0], dtype=DT)
    a = sample("ddpm", rule, 5 * x, sig, generator=torch.Generator().manual_seed(4))
    b = sample("ddpm", rule, 5 * x, sig, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and a.shape == x.shape


def test_bad_input():
    with pytest.raises(ValueError, match="neg must be a callable"):
        PerpNeg(_const([0.0]), _const([0.0]), None)
    with pytest.raises(ValueError, match="weight"):
        PerpNeg(_const([0.0]), _const([0.0]), _const([0.0]), neg_weight=True)


def test_perp_neg_in_eps_units_is_the_same_rule():
    """The reference form on noise predictions, eps_u + g (Delta_c - w_neg Delta_neg^perp) with g = 1 + w and
    eps = (x - D) / sigma, written out here with its own projection, gives the same guided D."""
    p = get_preset("three_2d")
    c, u, n = p.cond.denoise, p.uncond.denoise, p.classes[NEGATIVE].denoise
    x, sigma, w, w_neg = p.uncond.sample(12, torch.Generator().manual_seed(5)), 0.8, 1.5, 0.7
    e_c, e_u, e_n = ((x - f(x, sigma)) / sigma for f in (c, u, n))
    pos, neg = e_c - e_u, e_n - e_u
    perp = neg - (neg * pos).sum(1, keepdim=True) / (pos * pos).sum(1, keepdim=True) * pos
    eps = e_u + (1 + w) * (pos - w_neg * perp)
    assert torch.allclose(PerpNeg(c, u, n, w, w_neg)(x, sigma), x - sigma * eps, atol=1e-12)


def test_a_branch_of_another_shape_is_refused():
    """Issue 20 round 3: a neg denoiser returning [N, 1] for d = 2 was broadcast and gave a wrong result silently."""
    x = torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=torch.float64)
    cond, uncond, neg = (lambda x, s: 0.5 * x), (lambda x, s: 0.4 * x), (lambda x, s: 0.3 * x)
    with pytest.raises(ValueError, match=r"neg must return a tensor of cond's shape \(2, 2\), got shape \(2, 1\)"):
        PerpNeg(cond, uncond, lambda x, s: x[:, :1], 2.0)(x, 1.0)
    with pytest.raises(ValueError, match=r"uncond must return a tensor of cond's shape \(2, 2\), got shape \(2, 1\)"):
        PerpNeg(cond, lambda x, s: x[:, :1], neg, 2.0)(x, 1.0)
    with pytest.raises(ValueError, match="neg must return a tensor of cond's shape .*, got NoneType"):
        PerpNeg(cond, uncond, lambda x, s: None, 2.0)(x, 1.0)
