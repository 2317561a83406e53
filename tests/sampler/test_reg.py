"""REG estimators against mathematics: explicit Jacobians, the eps form of THEORY section 6, the exact
second-order Tweedie identity, and the cost guarantees of interval schedules."""
from __future__ import annotations

import math

import pytest
import torch

from analytic.fields import batch_jacobian, reg_correction
from sampler import CFG, ESTIMATORS, REG, EpsModel, Interval, MixtureModel, Unguided, X0Model, bind, euler, sigma_to_abar

from .conftest import SCHEDULE, SIGMAS, EDMPrecond, TinyConv, TinyMLP, random_mixture

F64 = torch.float64
W = 1.3
LEVELS = [float(s) for s in SIGMAS[:-1]]


def _mixture_pair(d: int):
    return MixtureModel({0: random_mixture(d, 2, 11), None: random_mixture(d, 3, 12, spread=2.0)})


def _points(shape, seed=0, scale=1.5):
    return scale * torch.randn(shape, dtype=F64, generator=torch.Generator().manual_seed(seed))


def _cfg(model, w=W):
    return CFG(bind(model, 0), bind(model, None), w)


def _block_jacobian(f, x):
    """Per-sample Jacobian of a batch function with independent samples. x [N, ...] -> [N, d, d]."""
    n = x.shape[0]
    jac = torch.autograd.functional.jacobian(f, x)  # [N, ..., N, ...]
    d = x[0].numel()
    jac = jac.reshape(n, d, n, d)
    return jac[torch.arange(n), :, torch.arange(n), :]


@pytest.mark.parametrize("kind", ["mixture", "mlp"])
def test_1d_all_estimators_coincide(kind):
    model = _mixture_pair(1) if kind == "mixture" else EpsModel(TinyMLP(1, seed=3), SCHEDULE)
    x = _points((40, 1))
    for sigma in LEVELS:
        ref = REG(_cfg(model), "vjp")(x, sigma)
        assert not torch.allclose(ref, _cfg(model)(x, sigma))  # REG does something here
        for est in ("paper", "diag", "jvp"):
            torch.testing.assert_close(REG(_cfg(model), est)(x, sigma), ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(REG(_cfg(model), "fd")(x, sigma), ref, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(REG(_cfg(model), "fd", fd_central=True)(x, sigma), ref, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_estimators_equal_explicit_jacobian_forms(kind):
    """vjp = J_D^T delta, paper = (J_D^T 1) delta, diag = diag(J_D) delta, jvp ~ fd = J_D delta,
    with J_D built explicitly by autograd.functional.jacobian (non-symmetric for a network)."""
    if kind == "mlp":
        model, x = EpsModel(TinyMLP(3, seed=5), SCHEDULE), _points((6, 3))
    else:
        model, x = X0Model(EDMPrecond(TinyConv(1, seed=6, dtype=F64))), _points((4, 1, 3, 3))
    n = x.shape[0]
    for sigma in LEVELS[::2]:
        cond = bind(model, 0)
        d_c = cond(x, sigma).detach()
        delta = _cfg(model).delta(x, sigma, d_c).detach().reshape(n, -1)  # [N, d]
        J = _block_jacobian(lambda z: cond(z, sigma), x)  # [N, d, d], J[n, i, j] = dD_i/dx_j
        assert (J - J.transpose(1, 2)).abs().max() > 1e-3  # a network's Jacobian is not symmetric
        flat = lambda t: t.reshape(n, -1)  # noqa: E731
        expected = {
            "vjp": torch.einsum("nij,ni->nj", J, delta),
            "paper": J.sum(1) * delta,
            "diag": torch.diagonal(J, dim1=1, dim2=2) * delta,
            "jvp": torch.einsum("nij,nj->ni", J, delta),
            "fd": torch.einsum("nij,nj->ni", J, delta),
        }
        for est, corr in expected.items():
            tol = 1e-6 if est == "fd" else 1e-10
            got = flat(REG(_cfg(model), est)(x, sigma)) - flat(d_c)
            torch.testing.assert_close(got, corr, rtol=tol, atol=tol, msg=f"{est} at sigma={sigma}")


def test_jvp_and_fd_equal_vjp_for_exact_scores_only():
    """Exact scores have a symmetric J_D = Cov(x_0 | x)/sigma^2 (second-order Tweedie): J = J^T."""
    model, x = _mixture_pair(3), _points((20, 3))
    net = EpsModel(TinyMLP(3, seed=7), SCHEDULE)
    for sigma in LEVELS:
        ref = REG(_cfg(model), "vjp")(x, sigma)
        torch.testing.assert_close(REG(_cfg(model), "jvp")(x, sigma), ref, rtol=1e-10, atol=1e-10)
        rel = (REG(_cfg(model), "fd")(x, sigma) - ref).norm() / ref.norm()
        assert rel < 1e-6
    # a network's Jacobian is not symmetric: jvp and vjp differ (so the check above can fail)
    sigma = LEVELS[0]
    d_c = bind(net, 0)(x, sigma)
    a, b = REG(_cfg(net), "jvp")(x, sigma) - d_c, REG(_cfg(net), "vjp")(x, sigma) - d_c
    assert (a - b).norm() / b.norm() > 1e-3


def test_vjp_matches_posterior_covariance():
    """For exact scores J_D = Cov(x_0 | x)/sigma^2 (THEORY section 6): D_REG = D_c + Cov delta / sigma^2,
    with the covariance from the analytic posterior, no autograd."""
    gm_c, gm_u = random_mixture(2, 2, 21), random_mixture(2, 2, 22, spread=2.0)
    model = MixtureModel({0: gm_c, None: gm_u})
    x = _points((15, 2), seed=3)
    for sigma in LEVELS:
        abar = sigma_to_abar(sigma)
        cov = gm_c.posterior(x * math.sqrt(abar), abar).cov()  # [N, 2, 2]
        d_c = gm_c.denoise(x, sigma)
        delta = W * (d_c - gm_u.denoise(x, sigma))
        expected = d_c + torch.einsum("nij,nj->ni", cov, delta) / sigma**2
        torch.testing.assert_close(REG(_cfg(model), "vjp")(x, sigma), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_eps_form_equals_d_form(estimator):
    """THEORY's eps form on the raw eps network in VP coordinates (explicit Jacobian) equals REG in D form."""
    net = TinyMLP(3, seed=9)
    model = EpsModel(net, SCHEDULE)
    x_ve = _points((8, 3), seed=4)
    for t in range(1, SCHEDULE.T + 1):
        abar, sigma = SCHEDULE.abar[t].item(), SCHEDULE.sigmas[t].item()
        t_net = torch.full((8,), int(SCHEDULE.timesteps[t]))
        eps_c = lambda z: net(z, t_net, 0)  # noqa: E731
        x_vp = math.sqrt(abar) * x_ve
        with torch.no_grad():
            g = W * (net(x_vp, t_net, 0) - net(x_vp, t_net, None))  # CFG term in eps units
        J = batch_jacobian(eps_c, x_vp)
        with torch.no_grad():
            eps_reg = eps_c(x_vp) + reg_correction(g, J, math.sqrt(1 - abar), estimator)
        d_from_eps = x_ve - sigma * eps_reg
        tol = 1e-6 if estimator == "fd" else 1e-10
        torch.testing.assert_close(REG(_cfg(model), estimator)(x_ve, sigma), d_from_eps, rtol=tol, atol=tol)


def test_paper_rule_official_form_1d():
    """The released 1-D code: eps_c + w (1 - sqrt(1 - abar) d eps_c/dx) (eps_c - eps_u), per point."""
    net = TinyMLP(1, seed=10)
    model = EpsModel(net, SCHEDULE)
    x_ve = _points((30, 1), seed=5)
    t = 3
    abar, sigma = SCHEDULE.abar[t].item(), SCHEDULE.sigmas[t].item()
    t_net = torch.full((30,), int(SCHEDULE.timesteps[t]))
    x_vp = (math.sqrt(abar) * x_ve).requires_grad_(True)
    e_c = net(x_vp, t_net, 0)
    (de,) = torch.autograd.grad(e_c.sum(), x_vp)
    with torch.no_grad():
        eps = e_c + W * (1 - math.sqrt(1 - abar) * de) * (e_c - net(x_vp, t_net, None))
    torch.testing.assert_close(REG(_cfg(model), "paper")(x_ve, sigma), x_ve - sigma * eps, rtol=1e-10, atol=1e-10)


class _Counting:
    def __init__(self, den):
        self.den, self.calls = den, []

    def __call__(self, x, sigma):
        self.calls.append((sigma, x.requires_grad, torch.is_grad_enabled(), torch.autograd.forward_ad._current_level))
        return self.den(x, sigma)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_interval_reg_costs_nothing_outside(estimator):
    model = _mixture_pair(2)
    cond, uncond = _Counting(bind(model, 0)), _Counting(bind(model, None))
    reg = REG(CFG(cond, uncond, Interval(2.0, 0.5, 1.0)), estimator)
    x = _points((5, 2))
    with torch.no_grad():  # as in every sampler
        reg(x, 2.0)  # outside
        assert len(cond.calls) == 1 and not uncond.calls
        _, req, grad_on, _ = cond.calls[0]
        assert not req and not grad_on  # no autograd graph
        reg(x, 0.7)  # inside
    assert len(uncond.calls) == 1
    inside = cond.calls[1:]
    if estimator in ("paper", "vjp", "diag"):
        assert len(inside) == 1 and inside[0][1]  # one forward, with x requiring grad
    elif estimator == "jvp":
        assert len(inside) == 2 and inside[1][3] >= 0  # value, then one forward-mode pass
    else:
        assert len(inside) == 2  # value, then one extra forward (forward difference)


def test_interval_sampler_counts():
    model = _mixture_pair(2)
    cond, uncond = _Counting(bind(model, 0)), _Counting(bind(model, None))
    sig = torch.linspace(3.0, 0.0, 13, dtype=F64)
    euler(REG(CFG(cond, uncond, Interval(1.0, 0.5, 1.5)), "vjp"), _points((4, 2)), sig)
    inside = [s for s in sig[:-1].tolist() if 0.5 <= s <= 1.5]
    assert [c[0] for c in uncond.calls] == inside
    assert [c[0] for c in cond.calls if c[1]] == inside  # graphs only inside


def test_reg_leaves_no_parameter_gradients_and_detaches():
    net = TinyMLP(2, seed=12)
    model = EpsModel(net, SCHEDULE)
    x = _points((4, 2))
    out = REG(_cfg(model), "vjp")(x, LEVELS[1])
    assert not out.requires_grad
    assert all(p.grad is None for p in net.parameters())


def test_reg_on_unguided_is_the_conditional_model():
    model = _mixture_pair(2)
    x = _points((4, 2))
    torch.testing.assert_close(REG(Unguided(bind(model, 0)), "vjp")(x, 1.0), bind(model, 0)(x, 1.0))


def _detached(x, sigma, cond):
    return (x.detach() / (1 + sigma**2)).clone()


@pytest.mark.parametrize("estimator", ["paper", "vjp", "diag", "jvp"])
def test_not_differentiable_model_raises(estimator):
    reg = REG(CFG(bind(_detached, 0), bind(_detached, None), 1.0), estimator)
    with pytest.raises(ValueError, match="differentiable"):
        reg(torch.ones(3, 2, dtype=F64), 1.0)


def test_fd_works_without_autograd():
    def numpy_model(x, sigma, cond):
        shift = 0.0 if cond is None else 0.5
        return torch.from_numpy(x.detach().numpy() / (1 + sigma**2) + shift)

    x = torch.ones(3, 2, dtype=F64)
    out = REG(CFG(bind(numpy_model, 0), bind(numpy_model, None), 1.0), "fd")(x, 1.0)
    # J_D = I/(1 + sigma^2) = I/2, delta = 0.5: D_c + delta/2
    torch.testing.assert_close(out, torch.full((3, 2), 0.5 + 0.5 + 0.25, dtype=F64))


def test_diag_refuses_large_dimension():
    model = _mixture_pair(2)
    reg = REG(_cfg(model), "diag", max_diag_dim=3)
    reg(_points((2, 2)), 1.0)  # fine
    big = MixtureModel({0: random_mixture(5, 1, 1), None: random_mixture(5, 1, 2)})
    with pytest.raises(ValueError, match="max_diag_dim=3"):
        REG(_cfg(big), "diag", max_diag_dim=3)(_points((2, 5)), 1.0)


def test_bad_estimator_and_options():
    model = _mixture_pair(2)
    with pytest.raises(ValueError, match="unknown REG estimator 'hutchinson'"):
        REG(_cfg(model), "hutchinson")
    with pytest.raises(ValueError, match="fd_step"):
        REG(_cfg(model), "fd", fd_step=-1.0)
    with pytest.raises(ValueError, match="guidance"):
        REG(bind(model, 0), "vjp")
    with pytest.raises(ValueError, match="unknown REG estimator"):
        reg_correction(torch.zeros(2, 1), torch.zeros(2, 1, 1), 0.5, "nope")


def test_jvp_on_a_model_without_forward_mode_rules_gives_a_clear_error():
    class NoForwardAD(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return 2 * x

        @staticmethod
        def backward(ctx, g):
            return 2 * g

    cond = lambda x, s: NoForwardAD.apply(x)  # noqa: E731
    uncond = lambda x, s: x  # noqa: E731
    with pytest.raises(ValueError, match="forward-mode"):
        REG(CFG(cond, uncond, 1.0), "jvp")(torch.ones(2, 3), 1.0)
