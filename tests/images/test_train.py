"""The digits UNet and classifier: shapes and labels, a short training run, checkpoints (round trip,
validation), the shipped checkpoints through the contract and REG."""
import math

import pytest
import torch

pytest.importorskip("sklearn")

from images.classifier import ClassifierConfig, load_classifier, save_classifier, train_classifier  # noqa: E402
from images.data import load_digits_split  # noqa: E402
from images.train import (  # noqa: E402
    DEFAULT_CHECKPOINT,
    WEAK_CHECKPOINT,
    TrainConfig,
    load_model,
    load_unet,
    resolve_device,
    save_checkpoint,
    train_unet,
)
from images.unet import DigitsUNet, UNetConfig  # noqa: E402
from sampler import CFG, REG, EpsModel, bind, vp_prior  # noqa: E402

TINY = UNetConfig(width=8, groups=4, emb_dim=16)


@pytest.fixture(scope="module")
def data():
    return load_digits_split()


def test_unet_shapes_and_labels():
    net = DigitsUNet(TINY).eval()
    torch.manual_seed(0)
    for p in net.out.parameters():  # the zero-initialised output layer would hide the label's effect
        torch.nn.init.normal_(p, std=0.1)
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([1, 10, 500, 1000])
    out = net(x, t, torch.tensor([0, 1, 2, 3]))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.allclose(net(x, t, None), net(x, t, torch.full((4,), 10)))  # None is the null label 10
    assert not torch.allclose(net(x, t, 3), net(x, t, None))
    assert torch.allclose(net(x, t, 3)[1:2], net(x[1:2], t[1:2], 3), atol=1e-6)  # samples do not interact
    assert DigitsUNet(UNetConfig(size=16, mults=(1, 2, 2)))(torch.randn(2, 1, 16, 16), t[:2], 1).shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="class labels"):
        net(x, t, 11)


@pytest.mark.parametrize("bad, match", [(dict(width=0), "width"), (dict(size=7), "divisible"),
                                        (dict(width=12, groups=8), "groups"), (dict(mults=()), "mults")])
def test_unet_config_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        UNetConfig(**bad)


def test_short_training_run_is_seeded_and_learns(data, tmp_path):
    tc = TrainConfig(steps=40, batch_size=32, seed=3, lr=3e-3)
    a = train_unet(TINY, tc, data, progress=False)
    b = train_unet(TINY, tc, data, progress=False)
    assert len(a.losses) == 40 and all(math.isfinite(v) for v in a.losses)
    assert a.losses == b.losses
    for pa, pb in zip(a.net.parameters(), b.net.parameters()):
        assert torch.equal(pa, pb)
    assert sum(a.losses[-10:]) / 10 < 0.8 * sum(a.losses[:5]) / 5  # starts near 1 (zero output)
    path = save_checkpoint(tmp_path / "m.pt", a.net, tc, {"note": "test"})
    net, sched = load_unet(path)
    assert sched.T == 1000 and not any(p.requires_grad for p in net.parameters())
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([5, 50, 900])
    assert torch.equal(net(x, t, 2), a.net(x, t, 2))
    model = load_model(path, steps=10)
    assert isinstance(model, EpsModel) and model.schedule.T == 10


def test_training_rejects_mismatched_data(data):
    with pytest.raises(ValueError, match="expects"):
        train_unet(UNetConfig(width=8, groups=4, size=16, mults=(1, 2)), TrainConfig(steps=1), data, progress=False)
    with pytest.raises(ValueError, match="p_uncond"):
        TrainConfig(p_uncond=1.0)


def test_checkpoint_validation(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable"):
        load_model(tmp_path / "junk.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a digits-UNet checkpoint"):
        load_model(tmp_path / "other.pt")
    net = DigitsUNet(TINY)
    path = save_checkpoint(tmp_path / "ok.pt", net, TrainConfig())
    ckpt = torch.load(path, weights_only=True)
    ckpt["unet"]["width"] = 16  # config no longer matches the weights
    torch.save(ckpt, tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match="does not match"):
        load_model(tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match="classifier checkpoint"):
        load_classifier(path)


def test_resolve_device_is_the_sampler_one():
    """images re-exports sampler.resolve_device (tested in tests/sampler), not a copy."""
    import sampler

    assert resolve_device is sampler.resolve_device


def test_shipped_checkpoints_through_the_contract_and_reg():
    model, weak = load_model(DEFAULT_CHECKPOINT), load_model(WEAK_CHECKPOINT)
    assert model.net.config.width > weak.net.config.width
    sig = float(model.schedule.sigmas[300])
    g = torch.Generator().manual_seed(0)
    x = vp_prior(torch.randn(4, 1, 8, 8, generator=g), sig)  # x_t ~ N(0, I) in VP units
    labels = torch.tensor([0, 3, 5, 9])
    cfg = CFG(bind(model, labels), bind(model, None), 2.0)
    d_c = bind(model, labels)(x, sig)
    outs = {e: REG(cfg, e)(x, sig) for e in ("paper", "vjp", "jvp", "fd")}
    for e, o in outs.items():
        assert o.shape == x.shape and torch.all(torch.isfinite(o)), e
        assert not torch.allclose(o, cfg(x, sig)), e
    # jvp (forward mode) and fd both compute J_D delta: they agree through this network
    corr_jvp, corr_fd = outs["jvp"] - d_c, outs["fd"] - d_c
    assert (corr_jvp - corr_fd).norm() < 1e-2 * corr_jvp.norm()


def test_short_classifier_run_and_round_trip(data, tmp_path):
    res = train_classifier(ClassifierConfig(width=8, features=16), data, steps=60, progress=False)
    assert res.test_accuracy > 0.5  # ten classes: chance is 0.1
    path = save_classifier(tmp_path / "c.pt", res.net)
    net = load_classifier(path)
    assert torch.equal(net(data.test_x[:5]), res.net(data.test_x[:5]))
    assert load_classifier().config.features == 64
    with pytest.raises(ValueError, match="no classifier"):
        load_classifier(tmp_path / "none.pt")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_shipped_model_on_cuda_matches_cpu():
    cpu, gpu = load_model(DEFAULT_CHECKPOINT, "cpu"), load_model(DEFAULT_CHECKPOINT, "cuda")
    sigma = float(cpu.schedule.sigmas[200])
    x = torch.randn(8, 1, 8, 8)
    assert torch.allclose(gpu(x.cuda(), sigma, 3).cpu(), cpu(x, sigma, 3), atol=1e-4)
