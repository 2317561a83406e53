"""Checkpoint files of every package (issue 11, defects 7, 8 and 16): one atomic writer and one weight
digest (``sampler.files``), used by the toy MLP, the digits UNet and the digits classifier.

Defect 7: a bit-flipped or non-finite checkpoint loaded without error. Now every writer stores the sha256 of
the state dict and every loader checks finiteness and the digest, naming the file. Defect 8: the image
writers wrote in place, so a failed save destroyed the previous (shipped) checkpoint; the toy writer left a
stale ``.tmp``. Defect 16: malformed image-checkpoint schedules raised AttributeError/KeyError without the
file name, and a schedule whose ``T`` disagrees with the UNet's was accepted.
"""
import hashlib
import io
import os
import struct
import zipfile

import pytest
import torch

from images.classifier import ClassifierConfig, DigitsClassifier, load_classifier, save_classifier
from images.train import TrainConfig as UNetTrainConfig
from images.train import load_model, load_unet
from images.train import save_checkpoint as save_unet
from images.unet import DigitsUNet, UNetConfig
from sampler.files import check_state_dict, save_torch_atomically, state_dict_sha256, write_atomically
from toy import MLPConfig, default_config, load_checkpoint, save_checkpoint
from toy.model import MLP
from toy.training import TrainResult

TINY_UNET = UNetConfig(width=8, groups=4, emb_dim=16)


def _toy(path):
    cfg = default_config("paper_1d", "cond", model=MLPConfig(width=16, n_blocks=1, emb_size=8), epochs=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = MLP(cfg.model)
    return save_checkpoint(TrainResult(net, cfg, torch.tensor([1.0]), 0.0), path)


def _unet(path):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = DigitsUNet(TINY_UNET)
    return save_unet(path, net, UNetTrainConfig())


def _classifier(path):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = DigitsClassifier(ClassifierConfig(width=4, features=8))
    return save_classifier(path, net)


# (writer, loader) of each of the three checkpoint kinds
KINDS = {"toy": (_toy, load_checkpoint), "unet": (_unet, load_unet), "classifier": (_classifier, load_classifier)}


def _data_offset(path, member: str) -> int:
    """Byte offset of a stored (uncompressed) zip member's data in ``path``."""
    info = zipfile.ZipFile(path).getinfo(member)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


def _largest_tensor_member(path) -> str:
    infos = [i for i in zipfile.ZipFile(path).infolist() if "/data/" in i.filename]
    return max(infos, key=lambda i: i.file_size).filename


# --- the digest itself ----------------------------------------------------------------------------------


def test_state_dict_sha256_against_hashlib_and_sensitivity():
    """An independent route: hashlib over the same framing written out by hand; then every change shows."""
    sd = {"b": torch.arange(3, dtype=torch.float32), "a": torch.ones(2, 2, dtype=torch.float64)}
    h = hashlib.sha256()
    for k in ("a", "b"):
        t = sd[k]
        h.update(f"{k}\0{t.dtype}\0{tuple(t.shape)}\0".encode() + t.numpy().tobytes())
    assert state_dict_sha256(sd) == h.hexdigest()
    assert state_dict_sha256(dict(reversed(list(sd.items())))) == h.hexdigest()  # key order does not matter
    flipped = {**sd, "b": sd["b"].clone()}
    flipped["b"].view(torch.int32)[1] ^= 1  # one bit of the mantissa
    reshaped = {**sd, "a": sd["a"].reshape(4)}
    renamed = {"c": sd["b"], "a": sd["a"]}
    for other in (flipped, reshaped, renamed):
        assert state_dict_sha256(other) != h.hexdigest()


def test_check_state_dict_names_the_file():
    sd = {"w": torch.ones(3)}
    check_state_dict(sd, "f.pt", state_dict_sha256(sd))
    check_state_dict(sd, "f.pt", None)  # written before digests: finiteness only
    for bad, match in (({"w": torch.tensor([1.0, float("nan")])}, "non-finite"),
                       ({"w": torch.tensor([float("inf")])}, "non-finite"),
                       ({"w": [1.0]}, "not a tensor"), ([torch.ones(1)], "not a dict")):
        with pytest.raises(ValueError, match=f"'f.pt'.*{match}"):
            check_state_dict(bad, "f.pt", None)
    with pytest.raises(ValueError, match="'f.pt'.*do not match their stored sha256"):
        check_state_dict(sd, "f.pt", "0" * 64)
    with pytest.raises(ValueError, match="'f.pt'.*not a hex string"):
        check_state_dict(sd, "f.pt", 12)


# --- defect 7: bit-flipped and non-finite weights ---------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_defect7_bit_flipped_file_is_refused(kind, tmp_path):
    """The issue's reproducer: flip one bit of the stored weights inside the file (torch's zip reader does
    not check CRCs, so the file loads); the loader must refuse it, naming the file."""
    write, load = KINDS[kind]
    path = write(tmp_path / "ok.pt")
    load(path)  # the intact file loads
    data = bytearray(path.read_bytes())
    data[_data_offset(path, _largest_tensor_member(path)) + 17] ^= 0x04
    flipped = tmp_path / "flipped.pt"
    flipped.write_bytes(bytes(data))
    torch.load(flipped, weights_only=True)  # torch itself does not notice
    with pytest.raises(ValueError, match="flipped.pt.*sha256"):
        load(flipped)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_defect7_non_finite_weights_are_refused(kind, value, tmp_path):
    """Non-finite weights are refused even when the file's digest is consistent with them (or absent)."""
    write, load = KINDS[kind]
    payload = torch.load(write(tmp_path / "ok.pt"), weights_only=True)
    name = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][name].view(-1)[0] = value
    payload["sha256"] = state_dict_sha256(payload["state_dict"])
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=f"bad.pt.*{name}.*non-finite"):
        load(tmp_path / "bad.pt")
    del payload["sha256"]  # an old-style file without a digest
    torch.save(payload, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="old.pt.*non-finite"):
        load(tmp_path / "old.pt")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_checkpoints_without_a_digest_still_load(kind, tmp_path):
    """Files written before the digest existed load (finiteness checked), with the same weights."""
    write, load = KINDS[kind]
    payload = torch.load(write(tmp_path / "ok.pt"), weights_only=True)
    assert payload["sha256"] == state_dict_sha256(payload["state_dict"])
    del payload["sha256"]
    torch.save(payload, tmp_path / "old.pt")
    loaded = load(tmp_path / "old.pt")
    net = loaded.net if kind == "toy" else loaded[0] if kind == "unet" else loaded
    for k, v in net.state_dict().items():
        assert torch.equal(v, payload["state_dict"][k])


# --- defect 8: atomic writes -------------------------------------------------------------------------------


_real_save = torch.save


def _save_half_then_fail(obj, f, *a, **k):
    """torch.save that dies half-way: half of the bytes reach ``f`` (a path or a buffer), then an error."""
    buf = io.BytesIO()
    _real_save(obj, buf, *a, **k)
    data = buf.getvalue()[: len(buf.getvalue()) // 2]
    if isinstance(f, (str, os.PathLike)):
        with open(f, "wb") as out:
            out.write(data)
    else:
        f.write(data)
    raise RuntimeError("serialisation failed")


def _fail_rename(*a, **k):
    raise OSError("disk full")


FAILURES = {  # where a save can fail: half-way through serialising, or at the rename after the bytes are written
    "serialise": (torch, "save", _save_half_then_fail, RuntimeError, "serialisation failed"),
    "rename": (os, "replace", _fail_rename, OSError, "disk full"),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_defect8_failed_save_keeps_the_previous_checkpoint(kind, failure, tmp_path, monkeypatch):
    """A save that fails leaves the previous checkpoint byte-identical and loadable, and no temporary file.
    Before, the image writers truncated the target in place (their default target is the shipped file) and
    the toy writer left a stale ``.tmp``."""
    write, load = KINDS[kind]
    path = write(tmp_path / "model.pt")
    before = path.read_bytes()
    owner, name, fail, err, match = FAILURES[failure]
    monkeypatch.setattr(owner, name, fail)
    with pytest.raises(err, match=match):
        write(path)
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    load(path)


def test_write_atomically_text_bytes_and_refusals(tmp_path):
    p = write_atomically(tmp_path / "a.txt", "héllo")
    assert p.read_text(encoding="utf-8") == "héllo"
    write_atomically(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    with pytest.raises(ValueError, match="str or bytes"):
        write_atomically(p, 3.0)
    assert p.read_bytes() == b"\x00\x01"
    save_torch_atomically({"x": torch.ones(2)}, tmp_path / "sub" / "t.pt")  # creates the folder
    assert torch.equal(torch.load(tmp_path / "sub" / "t.pt", weights_only=True)["x"], torch.ones(2))
    assert not list(tmp_path.rglob("*.tmp"))


def test_one_atomic_writer():
    """evaluation.io, evaluation.sweep and the checkpoint writers share sampler.files' writer."""
    import evaluation.io
    import evaluation.sweep

    assert evaluation.io.write_atomically is write_atomically is evaluation.sweep.write_atomically


# --- defect 16: malformed image-checkpoint schedules -------------------------------------------------------


@pytest.mark.parametrize("schedule,match", [
    ("linear", "unknown schedule"),  # was AttributeError: 'str' object has no attribute 'get'
    ({"kind": "linear", "T": 1000, "beta_start": 1e-4}, r"lacks \['beta_end'\]"),  # was KeyError
    ({"kind": "cosine", "T": 1000}, "unknown schedule"),
    ({"kind": "linear", "T": "1000", "beta_start": 1e-4, "beta_end": 0.02}, "T must be an integer"),
    ({"kind": "linear", "T": 1000, "beta_start": 0.5, "beta_end": 0.02}, "invalid schedule"),
    ({"kind": "linear", "T": 1000, "beta_start": float("nan"), "beta_end": 0.02}, "beta_start must be finite"),
    ({"kind": "linear", "T": 500, "beta_start": 1e-4, "beta_end": 0.02}, "T = 500 steps.*T = 1000"),  # was accepted
])
def test_defect16_malformed_unet_schedule_names_the_file(schedule, match, tmp_path):
    payload = torch.load(_unet(tmp_path / "ok.pt"), weights_only=True)
    payload["schedule"] = schedule
    torch.save(payload, tmp_path / "bad.pt")
    for load in (load_unet, load_model):
        with pytest.raises(ValueError, match=f"bad.pt.*{match}"):
            load(tmp_path / "bad.pt")


def test_shipped_checkpoints_are_sealed():
    """Every shipped checkpoint stores the sha256 of its weights (added without retraining: the weights are
    the trained ones, bit for bit) and loads through its validating loader."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    shipped = sorted((root / "toy" / "checkpoints").glob("*.pt")) + sorted((root / "images" / "checkpoints").glob("*.pt"))
    assert len(shipped) >= 15
    for path in shipped:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        assert payload.get("sha256") == state_dict_sha256(payload["state_dict"]), path
    load_unet(root / "images" / "checkpoints" / "digits_unet.pt")
    load_classifier(root / "images" / "checkpoints" / "digits_classifier.pt")


def test_defect7_released_upstream_networks_refuse_non_finite_weights(tmp_path):
    """The fourth loader, for the REG authors' released 1-D networks (no digest upstream): finiteness."""
    from evaluation.claims.paper_figure import load_released

    torch.save({"joint_mlp.0.weight": torch.tensor([[0.5, float("nan")]])}, tmp_path / "released.pth")
    with pytest.raises(ValueError, match="released.pth.*joint_mlp.0.weight.*non-finite"):
        load_released(tmp_path / "released.pth")
