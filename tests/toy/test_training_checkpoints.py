import dataclasses

import pytest
import torch

from toy import (TrainConfig, available_checkpoints, checkpoint_path, default_config, load_checkpoint,
                 resolve_device, save_checkpoint, train_network)
from toy.train import main


def _cfg(tiny, **kw):
    kw = {"epochs": 2, "n_samples": 256, "batch_size": 32, **kw}
    return default_config("paper_1d", "cond", model=tiny, **kw)


def _same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_same_seed_same_weights_on_cpu(tiny):
    a = train_network(_cfg(tiny, seed=5), progress=False)
    b = train_network(_cfg(tiny, seed=5), progress=False)
    c = train_network(_cfg(tiny, seed=6), progress=False)
    assert _same_weights(a.net, b.net) and torch.equal(a.losses, b.losses)
    assert not _same_weights(a.net, c.net)
    assert a.losses.shape == (2,) and torch.all(torch.isfinite(a.losses))


def test_training_reduces_the_loss(tiny):
    r = train_network(_cfg(tiny, epochs=15, lr=3e-3), progress=False)
    assert r.losses[-3:].mean() < r.losses[0]


def test_label_dropout_and_2d_joint_training(tiny):
    cfg = default_config("classes_2d", "joint", model=dataclasses.replace(tiny, dim=2, num_classes=3),
                         epochs=1, n_samples=128, batch_size=32)
    assert cfg.label_dropout == 0.1
    r = train_network(cfg, progress=False)
    assert r.net(torch.zeros(3, 2), torch.ones(3, dtype=torch.long), torch.tensor([0, 2, -1])).shape == (3, 2)
    # dropout is applied: the same seed without it trains other weights, with it the same ones again
    assert not _same_weights(r.net, train_network(dataclasses.replace(cfg, label_dropout=0.0), progress=False).net)
    assert _same_weights(r.net, train_network(cfg, progress=False).net)


def test_the_command_and_the_library_have_distinct_names():
    """``toy.train`` is the command's module, ``toy.train_network`` the library function: importing the
    command does not replace the function (the old ``toy.train`` function was overwritten that way)."""
    import importlib

    import toy
    import toy.training

    cli = importlib.import_module("toy.train")
    assert toy.train is cli and callable(cli.main)
    assert toy.train_network is toy.training.train_network and callable(toy.train_network)


def test_config_validation(tiny):
    with pytest.raises(ValueError, match="role"):
        TrainConfig("paper_1d", "teacher")
    with pytest.raises(ValueError, match="preset"):
        TrainConfig("nope", "cond")
    with pytest.raises(ValueError, match="label_dropout"):
        _cfg(tiny, label_dropout=1.0)
    with pytest.raises(ValueError, match="batch_size"):
        _cfg(tiny, batch_size=1000)
    with pytest.raises(ValueError, match="epochs"):
        _cfg(tiny, epochs=0)
    with pytest.raises(ValueError, match="threads"):
        train_network(_cfg(tiny), threads=0, progress=False)


def test_resolve_device_is_the_sampler_one():
    """toy re-exports sampler.resolve_device (tested in tests/sampler), not a copy."""
    import sampler

    assert resolve_device is sampler.resolve_device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_and_loading(tiny, tmp_path):
    r = train_network(_cfg(tiny), device="cuda", progress=False)
    assert next(r.net.parameters()).is_cuda
    path = save_checkpoint(r, tmp_path / "c.pt")
    ck = load_checkpoint(path, device="cpu")
    x, t = torch.randn(4, 1), torch.full((4,), 3)
    assert torch.allclose(ck.net(x, t, 0), r.net(x.cuda(), t.cuda(), 0).cpu(), atol=1e-5)


def test_checkpoint_round_trip(tiny, tmp_path):
    r = train_network(_cfg(tiny), progress=False)
    path = save_checkpoint(r, tmp_path / "x.pt")
    ck = load_checkpoint(path, preset="paper_1d", role="cond")
    assert ck.config == r.config and _same_weights(ck.net, r.net)
    assert all(v.dtype == torch.float32 for v in torch.load(path, weights_only=True)["state_dict"].values())


def test_checkpoint_loading_validates(tiny, tmp_path):
    r = train_network(_cfg(tiny, epochs=1), progress=False)
    path = save_checkpoint(r, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="preset 'paper_1d', expected 'classes_2d'"):
        load_checkpoint(path, preset="classes_2d")
    with pytest.raises(ValueError, match="expected 'uncond'"):
        load_checkpoint(path, role="uncond")
    with pytest.raises(ValueError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    bad.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    payload = torch.load(path, weights_only=True)
    payload["model_config"]["width"] = 32  # the stored weights are width 16
    torch.save(payload, bad)
    with pytest.raises(ValueError, match="does not fit"):
        load_checkpoint(bad)
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(ValueError, match="not a toy-MLP checkpoint"):
        load_checkpoint(bad)


def test_cli_retrains_a_short_run(tmp_path, capsys):
    """The whole pipeline, end to end: python -m toy.train -> checkpoint -> validated load."""
    assert main(["--preset", "correlated_2d", "--role", "weak", "--epochs", "1", "--n-samples", "256",
                 "--device", "cpu", "--out", str(tmp_path), "--no-progress"]) == 0
    assert "correlated_2d/weak: 1 epochs" in capsys.readouterr().out
    ck = load_checkpoint(checkpoint_path("correlated_2d", "weak", tmp_path), preset="correlated_2d", role="weak")
    assert ck.config.epochs == 1 and ck.net.config.dim == 2


def test_shipped_checkpoints_load():
    shipped = available_checkpoints()
    assert ("paper_1d", "cond") in shipped and ("paper_1d", "uncond") in shipped
    for preset, role in shipped:
        ck = load_checkpoint(checkpoint_path(preset, role), preset=preset, role=role)
        assert ck.config == default_config(preset, role, epochs=ck.config.epochs)
        assert checkpoint_path(preset, role).stat().st_size < 600_000
