"""Checkpoints: a float32 ``state_dict`` plus the configuration that built and trained the network.

File layout (``torch.save`` of plain types only, loaded with ``weights_only=True``)::

    {"format": "reg-guidance/toy-mlp", "version": 1, "preset": str, "role": str,
     "model_config": {MLPConfig fields}, "train_config": {TrainConfig fields but model},
     "state_dict": {name: float32 tensor}, "sha256": str, "final_loss": float, "train_seconds": float,
     "device": str}

``sha256`` is :func:`sampler.files.state_dict_sha256` of the weights, written atomically at save time and
verified at load; files written before it existed are accepted with the finiteness check only.

:func:`load_checkpoint` validates all of it and raises ``ValueError`` naming the file and the problem:
unreadable or corrupt file, wrong format, wrong preset or role, a shape mismatch with the stored config,
non-finite weights or weights that do not match their stored digest.
Shipped checkpoints live in ``toy/checkpoints/{preset}_{role}.pt`` (:func:`load_pretrained`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

import torch

from sampler.files import check_state_dict, save_torch_atomically, state_dict_sha256

from .model import MLP, MLPConfig
from .training import TrainConfig, TrainResult

__all__ = ["FORMAT", "CHECKPOINT_DIR", "Checkpoint", "save_checkpoint", "load_checkpoint", "checkpoint_path",
           "load_pretrained", "available_checkpoints"]

FORMAT = "reg-guidance/toy-mlp"
VERSION = 1
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"


class Checkpoint(NamedTuple):
    net: MLP
    config: TrainConfig
    final_loss: float
    train_seconds: float
    trained_on: str  # device the weights were trained on
    path: Path


def save_checkpoint(result: TrainResult, path: str | Path) -> Path:
    """Write ``result`` (from :func:`toy.training.train_network`) to ``path``; returns the path."""
    c = result.config
    train_cfg = {f.name: getattr(c, f.name) for f in dataclasses.fields(c) if f.name != "model"}
    state = {k: v.detach().to("cpu", torch.float32).clone() for k, v in result.net.state_dict().items()}
    payload = {
        "format": FORMAT, "version": VERSION, "preset": c.preset, "role": c.role,
        "model_config": dataclasses.asdict(c.model), "train_config": train_cfg, "state_dict": state,
        "sha256": state_dict_sha256(state), "final_loss": float(result.losses[-1]),
        "train_seconds": float(result.seconds),
        "device": str(next(result.net.parameters()).device),
    }
    return save_torch_atomically(payload, path)


_KEYS = ("format", "version", "preset", "role", "model_config", "train_config", "state_dict")


def load_checkpoint(path: str | Path, *, preset: str | None = None, role: str | None = None,
                    device: str | torch.device = "cpu") -> Checkpoint:
    """Load and validate a checkpoint; ``preset``/``role``, when given, must match the stored ones."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint file at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated / foreign files
        raise ValueError(f"{path} is not a readable checkpoint (corrupt or not a torch file): {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a toy-MLP checkpoint (format {payload.get('format') if isinstance(payload, dict) else type(payload).__name__!r}, expected {FORMAT!r})")
    missing = [k for k in _KEYS if k not in payload]
    if missing:
        raise ValueError(f"{path} lacks the entries {missing}")
    if payload["version"] != VERSION:
        raise ValueError(f"{path} has version {payload['version']}, this code reads version {VERSION}")
    if preset is not None and payload["preset"] != preset:
        raise ValueError(f"{path} was trained on preset {payload['preset']!r}, expected {preset!r}")
    if role is not None and payload["role"] != role:
        raise ValueError(f"{path} is a {payload['role']!r} network, expected {role!r}")
    try:
        model_cfg = MLPConfig(**payload["model_config"])
        config = TrainConfig(model=model_cfg, **payload["train_config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path} stores an invalid configuration: {exc}") from None
    if config.preset != payload["preset"] or config.role != payload["role"]:
        raise ValueError(f"{path}: header ({payload['preset']}, {payload['role']}) disagrees with its "
                         f"train_config ({config.preset}, {config.role})")
    from analytic import get_preset

    if get_preset(config.preset).cond.dim != model_cfg.dim:
        raise ValueError(f"{path}: model dimension {model_cfg.dim} does not match preset {config.preset!r}")
    check_state_dict(payload["state_dict"], path, payload.get("sha256"))
    net = MLP(model_cfg)
    try:
        net.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: state_dict does not fit the stored configuration {model_cfg}: {exc}") from None
    from .training import resolve_device

    net = net.to(resolve_device(device)).eval()
    return Checkpoint(net, config, float(payload.get("final_loss", float("nan"))),
                      float(payload.get("train_seconds", float("nan"))), str(payload.get("device", "?")), path)


def checkpoint_path(preset: str, role: str, directory: str | Path | None = None) -> Path:
    """Where the checkpoint of (``preset``, ``role``) lives (default: the shipped ``toy/checkpoints``)."""
    return Path(directory or CHECKPOINT_DIR) / f"{preset}_{role}.pt"


def load_pretrained(preset: str, role: str, *, device: str | torch.device = "cpu") -> Checkpoint:
    """A shipped checkpoint (``ValueError`` listing what is shipped when it does not exist)."""
    path = checkpoint_path(preset, role)
    if not path.is_file():
        raise ValueError(f"no shipped checkpoint for ({preset!r}, {role!r}); shipped: {available_checkpoints()}")
    return load_checkpoint(path, preset=preset, role=role, device=device)


def available_checkpoints() -> list[tuple[str, str]]:
    """(preset, role) of every shipped checkpoint."""
    out = []
    for p in sorted(CHECKPOINT_DIR.glob("*.pt")):
        for role in ("cond", "uncond", "weak", "joint"):
            if p.stem.endswith("_" + role):
                out.append((p.stem[: -len(role) - 1], role))
    return out
