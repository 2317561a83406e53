"""The sampler-chain golden against mathematics: an independent nested Gauss-Hermite quadrature of the
chain (analytic.chain.nested_golden: no grid, no interpolation), its own refinement, finite differences,
the ideal chain, and bad input."""
import math
import warnings

import pytest
import torch

from analytic import CFGReward, GaussianMixture, optimal_guidance
from analytic.chain import chain_golden, chain_tail_curvature, mixture_eps_fn, nested_golden
from sampler.schedules import VPSchedule

from .conftest import paper_pair, random_mixture

F64 = torch.float64


@pytest.fixture(scope="module")
def paper():
    cond, uncond = paper_pair()
    return cond, CFGReward(cond, uncond, 1.0), VPSchedule.paper_1d()


def test_any_points_agree_with_nested_quadrature_to_1e6(paper):
    """The issue's reproducer and three more arbitrary points, at the first three stochastic steps."""
    cond, reward, sched = paper
    eps = mixture_eps_fn(cond, sched)
    x = torch.tensor([[1.0], [-0.83], [0.3172], [1.93]], dtype=F64)
    cg = chain_golden(eps, reward.log_r0, sched, points=x)
    assert cg.golden.shape == (20, 4, 1) and cg.axes is None and cg.tol == 1e-6
    assert cg.err_golden.max() < 1e-6
    for t in (2, 3, 4):
        log_E, golden = nested_golden(eps, reward.log_r0, sched, x, t, 40)
        log_E2, golden2 = nested_golden(eps, reward.log_r0, sched, x, t, 48)
        assert (golden - golden2).abs().max() < 1e-10  # the oracle has converged
        err = (cg.golden[t - 1] - golden).abs()
        assert err.max() < 1e-6, (t, err)
        assert torch.all(err <= cg.err_golden[t - 1] + 1e-10)  # the estimate covers the error (oracle: 1e-10)
        assert (cg.log_E[t - 1] - log_E).abs().max() < 1e-6


def test_coarse_axes_give_the_fine_values(paper):
    """Issue 11's example: a 23-point axis used to give -0.4931 at x = 1.0, t = 4 (the fine value is -0.4971)."""
    cond, reward, sched = paper
    eps = mixture_eps_fn(cond, sched)
    _, ref = nested_golden(eps, reward.log_r0, sched, torch.tensor([[1.0]], dtype=F64), 4, 40)
    for n in (23, 221):
        axis = torch.linspace(-0.5, 1.7, n, dtype=F64)
        cg = chain_golden(eps, reward.log_r0, sched, axis)
        i = int((axis - 1.0).abs().argmin())
        assert abs(axis[i].item() - 1.0) < 1e-12
        assert abs(cg.golden[3, i, 0].item() - ref.item()) < 1e-6
    assert abs(ref.item() - (-0.4971)) < 1e-4


def test_non_uniform_axes_and_points_agree(paper):
    cond, reward, sched = paper
    eps = mixture_eps_fn(cond, sched)
    axis = torch.tensor([-0.7, -0.1, 0.05, 0.9, 1.0, 1.6], dtype=F64)
    on_axis = chain_golden(eps, reward.log_r0, sched, axis)
    at_points = chain_golden(eps, reward.log_r0, sched, points=axis[:, None])
    assert on_axis.golden.shape == at_points.golden.shape == (20, 6, 1)
    assert (on_axis.golden - at_points.golden).abs().max() < 1e-6
    torch.testing.assert_close(on_axis.points, axis[:, None])


def test_nested_golden_converges_and_is_exact_at_the_last_step(paper):
    cond, reward, sched = paper
    eps = mixture_eps_fn(cond, sched)
    x = torch.tensor([[-0.4], [1.2]], dtype=F64)
    few, some, many = (nested_golden(eps, reward.log_r0, sched, x, 3, n)[1] for n in (3, 12, 40))
    assert (few - many).abs().max() > 1e-8 and (some - many).abs().max() < 1e-12  # it converges, and has
    log_E1, _ = nested_golden(eps, reward.log_r0, sched, x, 1, 2)
    torch.testing.assert_close(log_E1, reward.log_r0(sched.reverse_mean(x, eps(x, 1), 1)))
    with pytest.raises(ValueError, match="nodes"):
        nested_golden(eps, reward.log_r0, sched, x, 20, 40)


def test_last_step_is_deterministic_and_exact(paper):
    cond, reward, sched = paper
    x = torch.linspace(-1, 2, 31, dtype=F64)
    cg = chain_golden(mixture_eps_fn(cond, sched), reward.log_r0, sched, x)
    a1, b1 = sched.abar[1].item(), sched.betas[1].item()
    mu = (x[:, None] - b1 / math.sqrt(1 - a1) * cond.eps(x[:, None], a1)) / math.sqrt(1 - b1)
    torch.testing.assert_close(cg.log_E[0], reward.log_r0(mu))
    assert cg.err_golden[0].max() == 0


def test_gradient_matches_finite_differences_of_log_E(paper):
    cond, reward, sched = paper
    x = torch.linspace(-1, 2, 1201, dtype=F64)
    cg = chain_golden(mixture_eps_fn(cond, sched), reward.log_r0, sched, x)
    h = (x[1] - x[0]).item()
    L = cg.log_E
    fd = (-L[:, 4:] + 8 * L[:, 3:-1] - 8 * L[:, 1:-3] + L[:, :-4]) / (12 * h)  # fourth-order stencil
    assert ((fd - cg.grad_log_E[:, 2:-2, 0]).abs() / (1 + fd.abs())).max() < 1e-6


def test_approaches_the_ideal_chain_as_steps_grow(paper):
    """Respacing one fine schedule keeps abar_T fixed; the chain's E_T tends to the ideal E_T."""
    cond, reward, _ = paper
    base = VPSchedule.linear(400, 1e-4, 0.002)
    x = torch.linspace(-1, 2, 151, dtype=F64)
    ideal = optimal_guidance(cond, reward, x[:, None], base.abar[-1]).golden[:, 0]
    errs = []
    for n in (5, 10, 20, 40):
        s = base.respace(n)
        cg = chain_golden(mixture_eps_fn(cond, s), reward.log_r0, s, x)
        errs.append((cg.golden[-1, :, 0] - ideal).abs().max().item())
    assert errs[0] > errs[1] > errs[2] > errs[3]
    rates = [errs[i] / errs[i + 1] for i in range(3)]
    assert min(rates) > 1.6  # about first order in the step count


def test_two_dimensional_chain_agrees_with_nested_golden():
    cond, uncond = random_mixture(2, 2, 5), random_mixture(2, 2, 6, scale=0.6)
    reward = CFGReward(cond, uncond, 1.0)
    sched = VPSchedule.linear(4, 1e-3, 0.05)
    eps = mixture_eps_fn(cond, sched)
    ax = torch.linspace(0, 1, 9, dtype=F64)
    cg = chain_golden(eps, reward.log_r0, sched, (ax, ax), tol=1e-5)
    assert cg.golden.shape == (4, 9, 9, 2) and cg.err_golden.max() < 1e-5
    x = torch.tensor([[0.125, 0.875], [0.5, 0.5], [1.0, 0.0]], dtype=F64)
    at = chain_golden(eps, reward.log_r0, sched, points=x, tol=1e-5)
    for t in (2, 3):
        _, ref = nested_golden(eps, reward.log_r0, sched, x, t, 20)  # converged to 1e-12 (against 28 nodes)
        assert (at.golden[t - 1] - ref).abs().max() < 1e-5
        assert torch.all((at.golden[t - 1] - ref).abs() <= at.err_golden[t - 1])  # the estimate covers the error
    torch.testing.assert_close(at.golden[:, 0], cg.golden[:, 1, 7], atol=2e-5, rtol=0)


def test_accepts_any_eps_function():
    """A (random) network's eps: the recursion only needs eps_fn(x, t)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()

    def eps_fn(x, t):
        return net(torch.cat([x, torch.full_like(x, t / 10)], 1))

    cond, uncond = paper_pair()
    sched = VPSchedule.paper_1d().respace(5)
    cg = chain_golden(eps_fn, CFGReward(cond, uncond, 1.0).log_r0, sched, torch.linspace(-1, 2, 61, dtype=F64))
    assert torch.isfinite(cg.golden).all() and cg.err_golden.max() < 1e-6


def _single_gaussian_chain(cond, reward, sched):
    """``(P_t, l_t)`` of ``log E_t(x) = -x^T P_t x / 2 + l_t^T x + const``, t = 1..T, in closed form, for a single
    Gaussian ``cond`` and a quadratic ``log R_0``: the DDPM mean is affine, ``mu_t = A_t x + b_t`` with
    ``A_t = (I - beta_t C_t^{-1}) / sqrt(alpha_t)``, ``b_t = beta_t sqrt(abar_t) C_t^{-1} m / sqrt(alpha_t)``,
    ``C_t = abar_t S + (1 - abar_t) I``, and ``log int N(y; z, s^2 I) exp(-y^T P y / 2 + l^T y) dy`` is quadratic
    in ``z`` with ``P' = (I - M^{-1} / s^2) / s^2``, ``l' = M^{-1} l / s^2``, ``M = I / s^2 + P``."""
    S, m = cond.covs[0], cond.means[0]
    eye = torch.eye(cond.dim, dtype=F64)
    q = reward.quadratic()
    P, l, out = q.A, q.b, []
    for t in range(1, sched.T + 1):
        abar, alpha, beta = sched.abar[t].item(), sched.alphas[t].item(), sched.betas[t].item()
        C_inv = torch.linalg.inv(abar * S + (1 - abar) * eye)
        A = (eye - beta * C_inv) / math.sqrt(alpha)
        b = beta * math.sqrt(abar) * (C_inv @ m) / math.sqrt(alpha)
        s2 = sched.posterior_variance[t].item()
        if s2 > 0:
            M_inv = torch.linalg.inv(eye / s2 + P)
            P, l = (eye - M_inv / s2) / s2, M_inv @ l / s2
        P, l = A.T @ P @ A, A.T @ (l - P @ b)
        out.append((P, l))
    return out


@pytest.mark.parametrize("d", [1, 2])
def test_single_gaussian_chain_is_the_closed_form_and_the_estimate_covers_the_error(d):
    """Single Gaussians make log E_t quadratic at every step (closed form above, no grid): the golden must match
    at every step and point, within the returned error estimate, which must itself be below the tolerance."""
    if d == 1:
        cond, uncond = GaussianMixture.from_1d([1.0], [0.7], [0.4]), GaussianMixture.from_1d([1.0], [-0.3], [0.9])
        sched = VPSchedule.paper_1d()
        x = torch.tensor([[-0.9], [0.3], [1.6], [2.2]], dtype=F64)
    else:
        one = torch.ones(1, dtype=F64)
        cond = GaussianMixture(one, torch.tensor([[0.7, 0.2]], dtype=F64), torch.tensor([[[0.16, 0.06], [0.06, 0.09]]], dtype=F64))
        uncond = GaussianMixture(one, torch.tensor([[-0.3, 0.4]], dtype=F64), torch.tensor([[[0.8, -0.2], [-0.2, 0.6]]], dtype=F64))
        sched = VPSchedule.paper_1d().respace(6)
        x = torch.tensor([[-0.4, 0.3], [0.3, 0.9], [1.4, -0.4]], dtype=F64)
    reward = CFGReward(cond, uncond, 1.5)
    eps = mixture_eps_fn(cond, sched)
    cg = chain_golden(eps, reward.log_r0, sched, points=x)
    assert cg.err_golden.max() <= cg.tol
    for t, (P, l) in enumerate(_single_gaussian_chain(cond, reward, sched), 1):
        exact = -math.sqrt(1 - sched.abar[t].item()) * (l - x @ P)
        err = (cg.golden[t - 1] - exact).abs()
        assert torch.all(err <= cg.err_golden[t - 1] + 1e-13), (t, err, cg.err_golden[t - 1])
        if t in (2, 3):  # and the closed form is nested_golden's value (both are independent of the grid)
            _, ref = nested_golden(eps, reward.log_r0, sched, x, t, 12 if d == 2 else 24)
            assert (ref - exact).abs().max() < 1e-10


def test_infinite_E_t_is_refused():
    """Defect 4: c = N(0, 1), u = N(0, 0.5^2), w = 3 on the paper schedule. log R_0 = 4.5 x^2 and the DDPM mean
    is sqrt(alpha_t) x, so log E_t = q_t x^2 / 2 with q_1 = 9 alpha_1, q_t = alpha_t q / (1 - s_t^2 q): it blows
    up within the 20 steps. The chain_golden of issue 11 returned log E up to 67.7."""
    c, u = GaussianMixture.from_1d([1.0], [0.0], [1.0]), GaussianMixture.from_1d([1.0], [0.0], [0.5])
    sched = VPSchedule.paper_1d()
    eps = mixture_eps_fn(c, sched)
    log_r0 = CFGReward(c, u, 3.0).log_r0
    q, t_inf = 9.0, None  # the closed form of the recursion
    for t in range(1, 21):
        s2, alpha = sched.posterior_variance[t].item(), sched.alphas[t].item()
        if s2 * q >= 1:
            t_inf = t
            break
        q = alpha * q / (1 - s2 * q)
    assert t_inf is not None
    Q = chain_tail_curvature(eps, log_r0, sched, torch.zeros(1, dtype=F64), 30.0)
    assert Q[t_inf] is None and Q[t_inf - 1] is not None
    with pytest.raises(ValueError, match=f"diverges at step t={t_inf}"):
        chain_golden(eps, log_r0, sched, torch.linspace(-1, 2, 31, dtype=F64))
    # a finite case of the same family is accepted, and its tails are the closed form
    Q = chain_tail_curvature(eps, CFGReward(c, u, 0.2).log_r0, sched, torch.zeros(1, dtype=F64), 30.0)
    q = 0.6
    for t in range(1, 21):
        s2, alpha = sched.posterior_variance[t].item(), sched.alphas[t].item()
        q = alpha * q / (1 - s2 * q)
        assert abs(Q[t].item() - q) < 1e-6 * q
    assert torch.isfinite(chain_golden(eps, CFGReward(c, u, 0.2).log_r0, sched,
                                       torch.linspace(-1, 2, 7, dtype=F64)).golden).all()


def test_budget_raises_or_warns_with_the_error_reached(paper):
    cond, reward, sched = paper
    sched = sched.respace(5)  # five steps: the budget logic is the same, each run 4x cheaper
    eps = mixture_eps_fn(cond, sched)
    x = torch.linspace(-1, 2, 11, dtype=F64)
    with pytest.raises(ValueError, match="coarsest resolution"):
        chain_golden(eps, reward.log_r0, sched, x, max_nodes=200)
    with pytest.raises(ValueError, match="estimated error"):
        chain_golden(eps, reward.log_r0, sched, x, tol=1e-13, max_nodes=2_000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cg = chain_golden(eps, reward.log_r0, sched, x, tol=1e-13, max_nodes=2_000, on_budget="warn")
    assert any("estimated error" in str(w.message) for w in caught)
    assert cg.err_golden.max() > 1e-13 and torch.isfinite(cg.golden).all()


def test_bad_arguments(paper):
    cond, reward, sched = paper
    eps = mixture_eps_fn(cond, sched)
    x = torch.linspace(0, 1, 5, dtype=F64)
    with pytest.raises(ValueError, match="strictly increasing"):
        chain_golden(eps, reward.log_r0, sched, torch.tensor([0.0, 0.3, 0.1], dtype=F64))
    with pytest.raises(ValueError, match="VPSchedule"):
        chain_golden(eps, reward.log_r0, "linear", x)
    with pytest.raises(ValueError, match="margin"):
        chain_golden(eps, reward.log_r0, sched, x, margin=-1.0)
    with pytest.raises(ValueError, match="returned shape"):
        chain_golden(lambda x, t: x[:, :0], reward.log_r0, sched, x)
    with pytest.raises(ValueError, match="exactly one"):
        chain_golden(eps, reward.log_r0, sched, x, points=x[:, None])
    with pytest.raises(ValueError, match="exactly one"):
        chain_golden(eps, reward.log_r0, sched)
    with pytest.raises(ValueError, match="points must have shape"):
        chain_golden(eps, reward.log_r0, sched, points=torch.zeros(3, 3, dtype=F64))
    with pytest.raises(ValueError, match="non-finite"):
        chain_golden(eps, reward.log_r0, sched, points=torch.tensor([[math.nan]], dtype=F64))
    for bad in (0.0, -1e-3, math.inf, math.nan, True, "1e-6"):
        with pytest.raises(ValueError, match="tol"):
            chain_golden(eps, reward.log_r0, sched, x, tol=bad)
    with pytest.raises(ValueError, match="length_scale"):
        chain_golden(eps, reward.log_r0, sched, x, length_scale=0.0)
    with pytest.raises(ValueError, match="on_budget"):
        chain_golden(eps, reward.log_r0, sched, x, on_budget="ignore")
    with pytest.raises(ValueError, match="max_nodes"):
        chain_golden(eps, reward.log_r0, sched, x, max_nodes=10.5)
