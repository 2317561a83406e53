"""Quality metrics, trained goldens and trained fields, tested against the exact mixture machinery:
an exact-eps stand-in for a network must reproduce the analytic answers."""
import math

import pytest
import torch

import analytic as A
from sampler.schedules import VPSchedule
from toy import (MLP, compare_goldens, eps_error, exact_fields, grid_golden, mc_golden, net_eps_fn, sample_w1,
                 trained_fields, w1_to_mixture)

from .conftest import MixtureNet

S = VPSchedule.paper_1d()


class _Wrapped(torch.nn.Module):
    """MixtureNet with a (dummy) parameter, so device lookups work in the sampler-based metrics."""

    def __init__(self, mixture):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.f = MixtureNet(mixture, S)

    def forward(self, x, t, cond=None):
        return self.f(x.to(torch.float64), t, cond).to(x.dtype)


def test_eps_error_is_zero_for_the_exact_eps_and_positive_for_a_network(tiny):
    p = A.get_preset("paper_1d")
    e = eps_error(_Wrapped(p.cond), 0, p.cond, S, n=256)
    assert e.rms.shape == (20,) and e.mean < 1e-12 and torch.all(e.rms_exact > 0)
    assert eps_error(MLP(tiny), 0, p.cond, S, n=256).mean > 0.01


def test_w1_metric_against_mathematics():
    p = A.get_preset("paper_1d")
    g = torch.Generator().manual_seed(0)
    x = p.cond.sample(20000, generator=g)
    floor = w1_to_mixture(x, p.cond)
    assert floor < 0.01
    assert abs(w1_to_mixture(x + 0.3, p.cond) - 0.3) < 2 * floor + 1e-3  # W1 of a shift is the shift (1-D)
    q = A.get_preset("correlated_2d")
    y = q.cond.sample(20000, generator=g)
    # sliced W1 of a shift by v is mean_u |u . v| = 2|v|/pi over directions on the half circle
    v = torch.tensor([0.2, -0.1], dtype=torch.float64)
    assert abs(w1_to_mixture(y + v, q.cond, n_directions=64) - 2 * v.norm().item() / math.pi) < 0.01
    with pytest.raises(ValueError, match="shape"):
        w1_to_mixture(x[:, 0], p.cond)


def test_sample_w1_of_the_exact_chain_is_at_the_floor():
    p = A.get_preset("paper_1d")
    r = sample_w1(_Wrapped(p.cond), 0, p.cond, S, n=4000)
    assert r.w1 < 3 * r.floor + 0.005  # the exact eps + DDPM chain from the exact x_T reproduces the data
    with pytest.raises(ValueError, match="start"):
        sample_w1(_Wrapped(p.cond), 0, p.cond, S, n=10, start="middle")


def test_mc_golden_converges_to_the_grid_recursion_with_w_inside_the_mean():
    """With the exact eps, the paper's Monte Carlo golden (R_0 = ratio^w inside the expectation) must
    agree with the exact sampler-chain recursion within its sampling error; w = 2 tells the correct
    log E[r^w] from the paper code's w log E[r]."""
    p = A.get_preset("paper_1d")
    reward = A.CFGReward(p.cond, p.uncond, 2.0)
    net = MixtureNet(p.cond, S)
    axis = torch.linspace(0.0, 1.5, 31, dtype=torch.float64)
    exact = A.chain_golden(A.mixture_eps_fn(p.cond, S), reward.log_r0, S, axis)
    pts = axis[[5, 15, 25], None]
    mc = mc_golden(net_eps_fn(net, 0, S), reward.log_r0, S, pts, steps=(1, 10), n_rollouts=4000, seed=1)
    ref = exact.golden[[0, 9]][:, [5, 15, 25]]  # golden terms of size 0.1 .. 2.9
    assert torch.allclose(mc.golden[0], ref[0], atol=1e-6)  # t = 1 is deterministic: exact
    assert (mc.golden[1] - ref[1]).abs().max() < 0.1
    assert (mc.log_E[1] - exact.log_E[9, [5, 15, 25]]).abs().max() < 0.4  # log-mean-exp is biased low
    # the paper code's estimator, w * log mean ratio, is off by far more than that at w = 2
    wrong = mc_golden(net_eps_fn(net, 0, S), A.CFGReward(p.cond, p.uncond, 1.0).log_r0, S, pts, steps=(10,),
                      n_rollouts=4000, seed=1)
    assert (2 * wrong.golden[0] - ref[1]).abs().max() > 1.0


def test_mc_golden_is_seeded_and_deterministic_rollout_is_one_path(tiny):
    p = A.get_preset("paper_1d")
    reward = A.CFGReward(p.cond, p.uncond, 1.0)
    f = net_eps_fn(MLP(tiny), 0, S)
    x = torch.linspace(-1, 2, 5, dtype=torch.float64)[:, None]
    a = mc_golden(f, reward.log_r0, S, x, steps=(3,), n_rollouts=8, seed=4)
    b = mc_golden(f, reward.log_r0, S, x, steps=(3,), n_rollouts=8, seed=4, chunk=8)
    assert torch.allclose(a.golden, b.golden, atol=1e-12)
    d = mc_golden(f, reward.log_r0, S, x, steps=(3,), deterministic=True)
    assert d.n_rollouts == 1 and d.golden.shape == (1, 5, 1)
    with pytest.raises(ValueError, match="steps"):
        mc_golden(f, reward.log_r0, S, x, steps=(0,))


def test_grid_golden_of_an_exact_net_is_the_analytic_chain_golden():
    p = A.get_preset("paper_1d")
    reward = A.CFGReward(p.cond, p.uncond, 1.0)
    axis = torch.linspace(-1, 2, 61, dtype=torch.float64)
    a = grid_golden(MixtureNet(p.cond, S), 0, reward.log_r0, S, axis)
    b = A.chain_golden(A.mixture_eps_fn(p.cond, S), reward.log_r0, S, axis)
    assert torch.allclose(a.golden, b.golden, atol=1e-10)


@pytest.mark.slow
def test_compare_goldens_of_a_trained_net_runs_and_agrees():
    from toy import load_pretrained

    p = A.get_preset("paper_1d")
    reward = A.CFGReward(p.cond, p.uncond, 1.0)
    net = load_pretrained("paper_1d", "cond").net
    c = compare_goldens(net, 0, p.cond, reward, S, torch.linspace(-1, 2, 40, dtype=torch.float64), n_rollouts=50)
    assert c.mc_vs_grid.shape == (20,) and c.mc_vs_grid[0] < 1e-6
    assert c.mc_vs_grid.mean() < 0.25 * c.golden_size.mean() + 0.05
    assert c.grid_vs_exact_chain.mean() < 0.5 * c.golden_size.mean()


@pytest.mark.parametrize("name", ["paper_1d", "correlated_2d"])
def test_trained_fields_of_exact_nets_are_the_analytic_fields(name):
    p = A.get_preset(name)
    reward = A.CFGReward(p.cond, p.uncond, 1.5)
    g = torch.Generator().manual_seed(0)
    x = p.cond.sample(30, generator=g) + 0.3 * torch.randn(30, p.cond.dim, generator=g, dtype=torch.float64)
    tr = trained_fields(MixtureNet(p.cond, S), 0, MixtureNet(p.uncond, S), None, 1.5, S, x, steps=(2, 11, 20))
    ex = exact_fields(p.cond, reward, S, x, steps=(2, 11, 20))
    for k in ("present", "reg_paper", "reg_vjp", "reg_diag"):
        assert torch.allclose(getattr(tr, k), getattr(ex, k), atol=1e-9), k
    # the one per-step error table: a field against itself is 0, against another the mean norm of the gap
    err = A.step_gaps(ex.reg_vjp, ex.by_method(), ex.steps)
    assert err.steps == (2, 11, 20) and torch.all(err.of("reg_vjp") == 0)
    want = (ex.reg_vjp - ex.present).norm(dim=-1).mean(dim=1)
    torch.testing.assert_close(err.of("present"), want, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="field"):
        A.step_gaps(ex.present[:2], ex.by_method(), ex.steps[:2])


def test_fields_of_a_trained_network_against_finite_differences(tiny):
    """trained_fields of a (float64) MLP against an independent route: the network called directly for
    g = w (eps_c - eps_u), and its Jacobian by central differences for REG's three corrections."""
    import dataclasses

    torch.manual_seed(0)
    cfg2 = dataclasses.replace(tiny, dim=2)
    nc, nu = MLP(cfg2).double(), MLP(cfg2).double()
    x = torch.randn(9, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t, w = 5, 1.5
    f = trained_fields(nc, 0, nu, None, w, S, x, steps=(t,))

    def eps(net, cond, z):
        return net(z, torch.full((z.shape[0],), t), cond)

    g = w * (eps(nc, 0, x) - eps(nu, None, x))
    torch.testing.assert_close(f.present[0], g, rtol=0, atol=1e-12)
    h = 1e-6
    J = torch.stack([(eps(nc, 0, x + h * e) - eps(nc, 0, x - h * e)) / (2 * h)
                     for e in torch.eye(2, dtype=torch.float64)], dim=2)  # J[n, i, j] = d eps_i / d x_j
    c = math.sqrt(1 - S.abar[t].item())
    torch.testing.assert_close(f.reg_vjp[0], g - c * torch.einsum("nij,ni->nj", J, g), rtol=0, atol=1e-6)
    torch.testing.assert_close(f.reg_paper[0], g * (1 - c * J.sum(dim=1)), rtol=0, atol=1e-6)
    torch.testing.assert_close(f.reg_diag[0], g * (1 - c * torch.diagonal(J, dim1=1, dim2=2)), rtol=0, atol=1e-6)
    assert (f.reg_vjp - f.present).abs().max() > 1e-3  # the correction is not negligible here


def test_shipped_paper_networks_are_good():
    """The shipped paper_1d networks learned their mixtures: eps error far below the eps scale, and
    DDPM samples from the exact x_T within a few noise floors of the data law (deterministic: fixed seeds)."""
    from toy import load_pretrained

    p = A.get_preset("paper_1d")
    for role, label, m in [("cond", 0, p.cond), ("uncond", None, p.uncond)]:
        net = load_pretrained("paper_1d", role).net
        e = eps_error(net, label, m, S, n=1024)
        assert e.mean < 0.1 and e.mean < 0.25 * e.rms_exact.mean()
        assert eps_error(net, label, m, S, n=1024).mean == e.mean  # reproducible
        w = sample_w1(net, label, m, S, n=2000)
        assert w.w1 < 3 * w.floor + 0.01


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_network_on_cpu_grids(tiny):
    p = A.get_preset("paper_1d")
    reward = A.CFGReward(p.cond, p.uncond, 1.0)
    net = MLP(tiny)
    axis = torch.linspace(-1, 2, 21, dtype=torch.float64)
    a = grid_golden(net, 0, reward.log_r0, S, axis).golden
    x = axis[:, None]
    cpu_fields = trained_fields(net, 0, net, None, 1.0, S, x, steps=(3,))
    b = grid_golden(net.cuda(), 0, reward.log_r0, S, axis).golden
    assert torch.allclose(a, b, atol=1e-4)
    assert net_eps_fn(net, 0, S)(x, 3).device.type == "cpu"  # the adapter answers on the input's device
    assert torch.allclose(trained_fields(net, 0, net, None, 1.0, S, x, steps=(3,)).reg_vjp, cpu_fields.reg_vjp,
                          atol=1e-4)
    assert eps_error(net, 0, p.cond, S, n=64).rms.shape == (20,)
    assert sample_w1(net, 0, p.cond, S, n=64).n == 64


@pytest.mark.parametrize("estimator", ["paper", "vjp", "diag"])
def test_trained_fields_equal_the_sampler_core_reg(tiny, estimator):
    """The toy networks reach sampler.REG(CFG) through the model contract, and its D-form correction is
    exactly the eps-form field of trained_fields: eps_bar - eps_c = -(D_bar - D_c) / sigma."""
    import dataclasses

    from sampler import CFG, REG, bind, ddpm, vp_prior
    from toy import toy_model

    cfg2 = dataclasses.replace(tiny, dim=2)
    torch.manual_seed(0)
    nc, nu = MLP(cfg2).double(), MLP(cfg2).double()
    mc, mu = toy_model(nc, S), toy_model(nu, S)
    guided = REG(CFG(bind(mc, 0), bind(mu, None), 1.5), estimator)
    x_vp = torch.randn(7, 2, dtype=torch.float64)
    t = 12
    sig, a = S.sigmas[t].item(), S.abar[t].item()
    x_ve = x_vp / math.sqrt(a)
    corr = -(guided(x_ve, sig) - mc(x_ve, sig, 0)) / sig
    f = trained_fields(nc, 0, nu, None, 1.5, S, x_vp, steps=(t,))
    assert torch.allclose(corr, getattr(f, f"reg_{estimator}")[0], atol=1e-8)
    sig_all = S.sampling_sigmas()
    start = vp_prior(torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)), sig_all[0])
    a1 = ddpm(guided, start, sig_all, generator=torch.Generator().manual_seed(2))
    a2 = ddpm(guided, start, sig_all, generator=torch.Generator().manual_seed(2))
    assert a1.shape == (5, 2) and torch.equal(a1, a2)
