import math

import pytest
import torch

from analytic import CFGReward, optimal_guidance
from analytic.chain import chain_golden, mixture_eps_fn
from sampler.schedules import VPSchedule

from .conftest import paper_pair, random_mixture


@pytest.fixture(scope="module")
def paper():
    cond, uncond = paper_pair()
    return cond, CFGReward(cond, uncond, 1.0), VPSchedule.paper_1d()


def test_converges_as_the_grid_is_refined(paper):
    cond, reward, sched = paper
    eps = mixture_eps_fn(cond, sched)
    coarse_to_fine = []
    for n in (76, 151, 301, 601):  # each grid contains the previous one's points
        cg = chain_golden(eps, reward.log_r0, sched, torch.linspace(-1, 2, n, dtype=torch.float64), margin=3.0)
        stride = (n - 1) // 75
        coarse_to_fine.append(cg.golden[:, ::stride, 0])
    diffs = [(a - b).abs().max().item() for a, b in zip(coarse_to_fine, coarse_to_fine[1:])]
    assert diffs[0] > diffs[1] > diffs[2]
    assert diffs[2] < 1e-5  # spacing 0.005


def test_insensitive_to_margin_and_nodes(paper):
    cond, reward, sched = paper
    eps = mixture_eps_fn(cond, sched)
    x = torch.linspace(-1, 2, 301, dtype=torch.float64)
    base = chain_golden(eps, reward.log_r0, sched, x)
    wider = chain_golden(eps, reward.log_r0, sched, x, margin=base.margin + 2)
    assert (base.golden - wider.golden).abs().max() < 1e-12  # the default margin is ample
    more_nodes = chain_golden(eps, reward.log_r0, sched, x, nodes=64)
    # at spacing 0.01 the remaining error is the spline's, which the node count samples differently
    assert (base.golden - more_nodes.golden).abs().max() < 1e-6
    assert (base.log_E - more_nodes.log_E).abs().max() < 1e-6


def test_last_step_is_deterministic_and_exact(paper):
    cond, reward, sched = paper
    x = torch.linspace(-1, 2, 31, dtype=torch.float64)
    cg = chain_golden(mixture_eps_fn(cond, sched), reward.log_r0, sched, x)
    a1, b1 = sched.abar[1].item(), sched.betas[1].item()
    mu = (x[:, None] - b1 / math.sqrt(1 - a1) * cond.eps(x[:, None], a1)) / math.sqrt(1 - b1)
    torch.testing.assert_close(cg.log_E[0], reward.log_r0(mu))


def test_gradient_matches_finite_differences_of_log_E(paper):
    cond, reward, sched = paper
    x = torch.linspace(-1, 2, 1201, dtype=torch.float64)
    cg = chain_golden(mixture_eps_fn(cond, sched), reward.log_r0, sched, x)
    h = (x[1] - x[0]).item()
    L = cg.log_E
    fd = (-L[:, 4:] + 8 * L[:, 3:-1] - 8 * L[:, 1:-3] + L[:, :-4]) / (12 * h)  # fourth-order stencil
    assert ((fd - cg.grad_log_E[:, 2:-2, 0]).abs() / (1 + fd.abs())).max() < 2e-5


def test_approaches_the_ideal_chain_as_steps_grow(paper):
    """Respacing one fine schedule keeps abar_T fixed; the chain's E_T tends to the ideal E_T."""
    cond, reward, _ = paper
    base = VPSchedule.linear(400, 1e-4, 0.002)
    x = torch.linspace(-1, 2, 151, dtype=torch.float64)
    ideal = optimal_guidance(cond, reward, x[:, None], base.abar[-1]).golden[:, 0]
    errs = []
    for n in (5, 10, 20, 40):
        s = base.respace(n)
        cg = chain_golden(mixture_eps_fn(cond, s), reward.log_r0, s, x)
        errs.append((cg.golden[-1, :, 0] - ideal).abs().max().item())
    assert errs[0] > errs[1] > errs[2] > errs[3]
    rates = [errs[i] / errs[i + 1] for i in range(3)]
    assert min(rates) > 1.6  # about first order in the step count


def test_two_dimensional_chain_runs_and_converges():
    cond, uncond = random_mixture(2, 2, 5), random_mixture(2, 2, 6, scale=0.6)
    reward = CFGReward(cond, uncond, 1.0)
    sched = VPSchedule.linear(4, 1e-3, 0.05)
    out = []
    for n in (16, 31):
        ax = torch.linspace(0, 1, n, dtype=torch.float64)
        cg = chain_golden(mixture_eps_fn(cond, sched), reward.log_r0, sched, (ax, ax), margin=1.5)
        out.append(cg.golden[:, :: (n - 1) // 15, :: (n - 1) // 15])
        assert cg.golden.shape == (4, n, n, 2)
    assert (out[0] - out[1]).abs().max() < 1e-3


def test_accepts_any_eps_function():
    """A (random) network's eps: the recursion only needs eps_fn(x, t)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()

    def eps_fn(x, t):
        return net(torch.cat([x, torch.full_like(x, t / 10)], 1))

    cond, uncond = paper_pair()
    sched = VPSchedule.paper_1d().respace(5)
    cg = chain_golden(eps_fn, CFGReward(cond, uncond, 1.0).log_r0, sched, torch.linspace(-1, 2, 61, dtype=torch.float64))
    assert torch.isfinite(cg.golden).all()


def test_bad_arguments(paper):
    cond, reward, sched = paper
    eps = mixture_eps_fn(cond, sched)
    with pytest.raises(ValueError, match="uniformly spaced"):
        chain_golden(eps, reward.log_r0, sched, torch.tensor([0.0, 0.1, 0.3], dtype=torch.float64))
    with pytest.raises(ValueError, match="VPSchedule"):
        chain_golden(eps, reward.log_r0, "linear", torch.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="margin"):
        chain_golden(eps, reward.log_r0, sched, torch.linspace(0, 1, 5), margin=-1.0)
    with pytest.raises(ValueError, match="returned shape"):
        chain_golden(lambda x, t: x[:, :0], reward.log_r0, sched, torch.linspace(0, 1, 5))
