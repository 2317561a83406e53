"""Hypothesis search (issue 20): the 2-D sampler-chain golden (:func:`analytic.chain_golden`) against nested
Gauss-Hermite quadrature over the stochastic steps (:func:`analytic.chain.nested_golden`: no grid, no
interpolation) on random 2-D mixtures, rewards and schedules; every value within its stated error.

(The single-level 2-D goldens -- grid, Gauss-Hermite, importance sampling -- are searched in
``tests/analytic/test_accuracy.py``.)"""
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from analytic import CFGReward
from analytic.chain import chain_golden, mixture_eps_fn, nested_golden
from sampler import VPSchedule
from tests.helpers import mixtures_2d

F64 = torch.float64


@st.composite
def chains_2d(draw):
    x = torch.tensor([[draw(st.floats(-1.0, 1.0)) for _ in range(2)] for _ in range(2)], dtype=F64)
    return draw(mixtures_2d(s=(0.3, 0.8))), draw(mixtures_2d(s=(0.3, 0.8))), draw(st.floats(0.0, 1.5)), draw(st.floats(0.02, 0.2)), x


@pytest.mark.slow
@settings(max_examples=3, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(chains_2d())
def test_hypothesis_2d_chain_golden_agrees_with_nested_quadrature(case):
    cond, uncond, w, beta_end, x = case
    reward = CFGReward(cond, uncond, w)
    sched = VPSchedule.linear(3, 1e-3, beta_end)
    eps = mixture_eps_fn(cond, sched)
    try:
        at = chain_golden(eps, reward.log_r0, sched, points=x, tol=1e-5)
    except ValueError:  # E_t infinite for this reward: refused, not a wrong number
        assume(False)
    for t in (2, 3):
        _, ref = nested_golden(eps, reward.log_r0, sched, x, t, 16)
        _, ref2 = nested_golden(eps, reward.log_r0, sched, x, t, 24)
        ref_err = (ref - ref2).abs()  # the nested rule converges spectrally: the change bounds the coarser one
        assert ref_err.max() < 1e-7
        assert torch.all((at.golden[t - 1] - ref2).abs() <= at.err_golden[t - 1] + ref_err), t
