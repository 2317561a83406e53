"""evaluation.flows.pushed_sw1's shared work (issue 19, item 4): the target rules shared per process, the merged
sorted projections and the start pushes kept across doublings give the numbers of the unshared computation (every
rule pushed whole, every target computed afresh, every sliced W1 sorted anew: :func:`_unshared`), and targets of
different laws or weights are not confused. Small cases, seconds each."""
import math

import pytest
import torch

from analytic import GaussianMixture
from analytic.quadrature import grid_points
from evaluation import flows
from evaluation.density import mass_outside
from evaluation.distances import target_key
from evaluation.spec import Law, Method
from sampler import sample

F64 = torch.float64


def _unshared(built, half_width: float, tol: float, directions: int = 32) -> tuple[float, float, int]:
    """pushed_sw1's documented computation with nothing shared: (value, error, start nodes per axis)."""
    d = built.law.dim
    s = built.levels.sigmas()
    scale = torch.sqrt(1 + s**2)
    start = built.start()
    target = lambda x: built.law.cond.log_prob(x) + built.reward.log_r0(x)  # noqa: E731
    box = lambda n: (torch.linspace(-half_width, half_width, n, dtype=F64),) * d  # noqa: E731

    def rule(log_f, n):  # the midpoint rule on the box, without the nodes below 1e-18 of the largest weight
        x = grid_points(box(n))
        lf = log_f(x)
        w = torch.exp(lf - lf.max())
        keep = w > 1e-18
        return x[keep], w[keep] / w[keep].sum()

    def output(n):
        u, w = rule(start, n)
        if hasattr(built.guided, "reset"):
            built.guided.reset()
        with torch.no_grad():
            return sample("ddim", built.guided, scale[0].item() * u, s) / scale[-1].item(), w

    first, largest, n_t, n_out = (401, 12801, 6001, 1201) if d == 1 else (41, 641, 601, 121)
    y, wy = rule(target, n_t)
    values, n, error = [], first, math.inf
    while n <= largest:
        used = n
        x, wx = output(n)
        values.append(flows.sliced_w1_points(x, wx, y, wy, directions))
        if len(values) >= 3:
            last, before = abs(values[-1] - values[-2]), abs(values[-2] - values[-3])
            rho = before / last if last > 0 else math.inf
            error = last * max(1.0, 1.0 / (rho - 1)) if rho > 1 else math.inf
            if error <= tol / 2:
                break
        n = 2 * n - 1
    y2, wy2 = rule(target, (n_t + 1) // 2)
    error += 2 * abs(flows.sliced_w1_points(x, wx, y2, wy2, directions) - values[-1])
    frame = box(n_out)
    outside = mass_outside(start, frame, name="start") + mass_outside(target, frame, name="target")
    lo, hi = torch.minimum(x.min(0).values, y.min(0).values), torch.maximum(x.max(0).values, y.max(0).values)
    reach = float((hi - lo).norm())
    return values[-1], error + outside * reach, used


def _agree(got, ref):
    assert got.nodes == ref[2]
    assert got.value == pytest.approx(ref[0], rel=1e-12, abs=0)
    assert got.error == pytest.approx(ref[1], rel=1e-12, abs=0)


def test_shared_2d_targets_and_start_pushes_give_the_unshared_numbers():
    """correlated_2d, w = 1, flow Euler, 10 steps, 8 directions: CFG (filling this process's target rule) and then
    APG with momentum (reading it; its momentum is per trajectory, so its pushes are kept across doublings too) on
    the experiment's box, and CFG-Zero* on a box whose coarse nodes are not the fine rule's to the last bit (pushed
    afresh): each as the unshared computation (measured: equal to the last bit)."""
    flows.clear_shared_targets()
    law = Law.preset("correlated_2d")
    for rule, half_width in (("cfg", 6.0), ("apg_momentum", 6.0), ("cfg_zero_star", 5.3)):
        b = Method(rule, 1.0).build(law, flows.levels("flow", 10))
        got = flows.pushed_sw1(b, half_width, tol=5e-3, directions=8, pointwise=True)
        _agree(got, _unshared(Method(rule, 1.0).build(law, flows.levels("flow", 10)), half_width, 5e-3, 8))


def test_targets_of_other_weights_and_laws_are_not_confused():
    """1-D: paper_1d at w = 4 fills the shared target; paper_1d at w = 1, then a law with another conditional at
    w = 1, and AutoG's reward (another reward of the same conditional and weight) must each get their own target (each
    cell as the unshared computation; a target key without the weight, or without the law's mixtures, fails this),
    while equal values built apart share one key."""
    flows.clear_shared_targets()
    paper = Law.preset("paper_1d")
    other = Law.mixture(GaussianMixture.from_1d([0.5, 0.5], [-1.0, 1.5], [0.4, 0.5]), paper.build().uncond)
    cases = [(paper, Method("cfg", 4.0)), (paper, Method("cfg", 1.0)), (other, Method("cfg", 1.0)),
             (paper, Method("autog", 4.0))]
    keys = []
    for law, m in cases:
        b = m.build(law, flows.levels("flow", 10))
        keys.append(target_key(b.law.cond, b.reward))
        _agree(flows.pushed_sw1(b, 7.0, tol=5e-4, pointwise=True), _unshared(m.build(law, flows.levels("flow", 10)),
                                                                             7.0, 5e-4))
    assert len(set(keys)) == len(keys)
    again = Method("cfg", 4.0).build(Law.preset("paper_1d"), flows.levels("vp_ddim", 10))
    assert target_key(again.law.cond, again.reward) == keys[0]  # another schedule, the same target


def test_merged_projections_are_the_sort_of_the_union_ties_included():
    """Two point sets on one integer lattice (many exactly tied projections in 1-D and on the diagonal-free 2-D
    directions): merging their sorted projections gives the stable sort of their union, to the last bit."""
    gen = torch.Generator().manual_seed(5)
    for d, directions in ((1, 1), (2, 32)):
        x = torch.randint(-3, 4, (40, d), generator=gen).to(F64)
        y = torch.randint(-3, 4, (60, d), generator=gen).to(F64)
        wx, wy = torch.rand(40, generator=gen, dtype=F64), -torch.rand(60, generator=gen, dtype=F64)
        th = flows._thetas(d, directions)
        merged = flows._merged(flows._sorted_projections(x, wx, th), flows._sorted_projections(y, wy, th))
        union = flows._sorted_projections(torch.cat([x, y]), torch.cat([wx, wy]), th)
        for (z1, w1), (z2, w2) in zip(merged.blocks, union.blocks):
            assert torch.equal(z1, z2) and torch.equal(w1, w2)
