import math

import pytest
import torch

import analytic as A
from sampler.schedules import VPSchedule
from toy import MLP, MLPConfig, SinusoidalEmbedding, default_config, make_data, net_device, net_eps_fn, toy_model


@pytest.mark.parametrize("name", ["paper_1d", "paper_1d_script", "correlated_2d", "classes_2d"])
def test_data_matches_its_mixture(name):
    p = A.get_preset(name)
    for role, m, label in [("cond", p.cond, 0), ("uncond", p.uncond, -1)]:
        d = make_data(name, role, 20000, seed=3)
        assert d.x.shape == (20000, p.cond.dim) and d.x.dtype == torch.float32
        assert torch.all(d.y == label)
        mean = (m.weights[:, None] * m.means).sum(0)
        # sample mean within 5 standard errors of the exact mixture mean
        cov = (m.weights[:, None, None] * (m.covs + m.means[:, :, None] * m.means[:, None, :])).sum(0) \
            - mean[:, None] * mean[None]
        se = torch.sqrt(torch.diagonal(cov) / 20000)
        assert torch.all((d.x.double().mean(0) - mean).abs() < 5 * se)


def test_data_is_deterministic_and_seeded():
    a, b, c = make_data("paper_1d", "cond", 100, seed=1), make_data("paper_1d", "cond", 100, seed=1), \
        make_data("paper_1d", "cond", 100, seed=2)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)


def test_joint_data():
    pair = make_data("paper_1d", "joint", 500)
    assert pair.x.shape == (1000, 1) and (pair.y == 0).sum() == 500 and (pair.y == -1).sum() == 500
    cl = make_data("classes_2d", "joint", 30000)
    freq = torch.bincount(cl.y, minlength=3).double() / 30000
    assert torch.allclose(freq, torch.tensor(A.get_preset("classes_2d").priors, dtype=torch.float64), atol=0.015)


def test_data_rejects_bad_input():
    with pytest.raises(ValueError, match="role"):
        make_data("paper_1d", "teacher")
    with pytest.raises(ValueError, match="preset"):
        make_data("paper_2d", "cond")
    with pytest.raises(ValueError, match="n must"):
        make_data("paper_1d", "cond", 0)


def test_paper_mlp_size_and_shapes():
    net = MLP(MLPConfig())
    assert sum(p.numel() for p in net.parameters()) == 82689  # the paper's MLP (about 82.7k parameters)
    x, t = torch.randn(7, 1), torch.randint(1, 21, (7,))
    assert net(x, t, 0).shape == (7, 1)
    net2 = MLP(MLPConfig(dim=2, num_classes=3))
    out = net2(torch.randn(5, 2, dtype=torch.float64), t[:5], torch.tensor([0, 1, 2, -1, 0]))
    assert out.shape == (5, 2) and out.dtype == torch.float64


def test_sinusoidal_embedding_formula():
    e = SinusoidalEmbedding(8, scale=25.0)
    x = torch.tensor([0.3, -1.1])
    f = torch.tensor([math.exp(-k * math.log(1e4) / 3) for k in range(4)])
    expect = torch.cat([torch.sin(25 * x[:, None] * f), torch.cos(25 * x[:, None] * f)], 1)
    assert torch.allclose(e(x), expect, atol=1e-5)


def test_null_label_is_a_zero_class_embedding(tiny):
    net = MLP(MLPConfig(width=16, n_blocks=1, emb_size=8, num_classes=2))
    x, t = torch.randn(4, 1), torch.full((4,), 3)
    null = net(x, t, None)
    assert torch.equal(null, net(x, t, -1))
    with torch.no_grad():
        net.class_emb.weight.zero_()
    assert torch.allclose(net(x, t, 1), null)
    assert not torch.allclose(net(x, torch.full((4,), 4), None), null)  # time is embedded


def test_mlp_rejects_bad_input(tiny):
    net = MLP(tiny)
    with pytest.raises(ValueError, match="labels"):
        net(torch.zeros(2, 1), torch.ones(2, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="shape"):
        net(torch.zeros(2, 2), torch.ones(2, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="cond"):
        net(torch.zeros(2, 1), torch.ones(2, dtype=torch.long), 0.5)
    with pytest.raises(ValueError, match="emb_size"):
        MLPConfig(emb_size=7)
    with pytest.raises(ValueError, match="width"):
        MLPConfig(width=0)


def test_model_contract_is_the_ddpm_eps_network(tiny):
    """toy_model(net)(x_ve, sigma_t, cond) = x_ve - sigma_t eps(sqrt(abar_t) x_ve, t): Tweedie in VE form."""
    s = VPSchedule.paper_1d()
    net = MLP(tiny)
    model = toy_model(net, s)
    x = torch.randn(6, 1, dtype=torch.float64)
    for t in (1, 7, 20):
        sig = s.sigmas[t].item()
        expect = x - sig * net(x * math.sqrt(s.abar[t].item()), torch.full((6,), t), 0)
        assert torch.allclose(model(x, sig, 0), expect, atol=1e-12)
    torch.testing.assert_close(toy_model(net, s, device="cpu")(x, sig, 0), model(x, sig, 0), rtol=0, atol=0)
    with pytest.raises(ValueError, match="not a level"):
        model(x, 0.123, 0)
    with pytest.raises(ValueError, match="VPSchedule"):
        toy_model(net, s.abar)
    with pytest.raises(ValueError, match="callable"):
        toy_model("net", s)


def test_the_chain_eps_is_the_network_through_its_one_adapter(tiny):
    """net_eps_fn = eps_from_denoiser(bind(toy_model(net), cond)): the VP -> VE -> VP round trip gives the
    network's own eps at step t (to rounding), keeps float64 and stays differentiable."""
    s = VPSchedule.paper_1d()
    net = MLP(tiny)
    x = torch.linspace(-1, 2, 11, dtype=torch.float64)[:, None].requires_grad_(True)
    for t in (1, 7, 20):
        got = net_eps_fn(net, 0, s)(x, t)
        want = net(x, torch.full((11,), t), 0)
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
        (g1,) = torch.autograd.grad(got.sum(), x)
        (g2,) = torch.autograd.grad(want.sum(), x)
        torch.testing.assert_close(g1, g2, rtol=1e-9, atol=1e-9)
    assert net_device(net) == torch.device("cpu") and net_device(lambda x, t, c: x) is None


def test_default_configs_are_the_papers():
    c = default_config("paper_1d", "cond")
    assert (c.epochs, c.batch_size, c.n_samples, c.lr, c.grad_clip, c.weight_decay, c.T) == \
        (200, 64, 8000, 1e-3, 1.0, 0.01, 20)
    assert (c.model.width, c.model.n_blocks, c.model.emb_size, c.model.x_scale) == (128, 3, 128, 25.0)
    assert default_config("classes_2d", "joint").label_dropout > 0 and default_config("classes_2d", "joint").model.num_classes == 3
    w = default_config("correlated_2d", "weak")
    assert w.model.dim == 2 and w.model.width < c.model.width and w.epochs < c.epochs
    assert torch.allclose(c.schedule.abar, VPSchedule.paper_1d().abar)
