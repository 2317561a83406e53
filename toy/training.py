"""Training the toy denoisers (THEORY.md section 7; the paper's hyperparameters are the defaults).

The library behind ``python -m toy.train`` (the command, :mod:`toy.train`): :func:`train_network`.

Loss ``E ||eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) n, t, y) - n||^2`` with ``t ~ U{1..T}`` on the paper's
schedule (T = 20, betas 1e-4..0.02), AdamW (lr 1e-3, weight decay 0.01), gradient-norm clip 1, 200 epochs of
batch 64 over 8000 draws with the last partial batch dropped (125 steps/epoch, 25k steps), no EMA.

Determinism: the weights are initialised under ``seed`` and every random number of the loop (shuffles,
steps, noise, label dropout) comes from one CPU ``torch.Generator`` seeded with ``seed``, then moves to the
device, so the same seed gives the same weights on CPU (and the same random stream on CUDA).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from analytic import get_preset
from sampler.device import resolve_device
from sampler.schedules import VPSchedule

from .data import ROLES, ToyData, make_data, num_classes
from .model import MLP, WEAK_CONFIG_1D, MLPConfig

__all__ = ["TrainConfig", "TrainResult", "default_config", "train_network", "init_net", "resolve_device"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained network (stored in its checkpoint)."""

    preset: str
    role: str
    model: MLPConfig = field(default_factory=MLPConfig)
    epochs: int = 200
    batch_size: int = 64
    n_samples: int = 8000
    lr: float = 1e-3
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    label_dropout: float = 0.0
    seed: int = 0
    T: int = 20
    beta_start: float = 1e-4
    beta_end: float = 0.02

    def __post_init__(self):
        get_preset(self.preset)  # ValueError for an unknown preset
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; choose one of {ROLES}")
        if not isinstance(self.model, MLPConfig):
            raise ValueError(f"model must be an MLPConfig, got {type(self.model).__name__}")
        for name in ("epochs", "batch_size", "n_samples", "T"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {v!r}")
        if self.batch_size > self.n_samples:
            raise ValueError(f"batch_size {self.batch_size} exceeds n_samples {self.n_samples}")
        for name in ("lr", "grad_clip"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"TrainConfig.{name} must be finite and > 0, got {v}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be finite and >= 0, got {self.weight_decay}")
        if not 0 <= self.label_dropout < 1:
            raise ValueError(f"label_dropout must lie in [0, 1), got {self.label_dropout}")

    @property
    def schedule(self) -> VPSchedule:
        return VPSchedule.linear(self.T, self.beta_start, self.beta_end)


def default_config(preset: str, role: str, **overrides) -> TrainConfig:
    """The configuration ``python -m toy.train`` uses for (``preset``, ``role``).

    ``cond``/``uncond``: the paper's MLP and hyperparameters. ``weak``: a smaller network (width 64, one
    block) trained for 20 epochs, the autoguidance reference. ``joint``: the paper's MLP with a null label;
    label dropout 0.1 when the preset has classes. ``overrides`` replace any field (``model`` included).
    """
    p = get_preset(preset)
    base = MLPConfig(dim=p.cond.dim, num_classes=num_classes(p))
    if role == "weak":
        cfg = TrainConfig(preset, role, replace(WEAK_CONFIG_1D, dim=base.dim, num_classes=base.num_classes),
                          epochs=20)
    elif role == "joint":
        cfg = TrainConfig(preset, role, base, label_dropout=0.1 if p.classes else 0.0)
    else:
        cfg = TrainConfig(preset, role, base)
    return replace(cfg, **overrides) if overrides else cfg


class TrainResult(NamedTuple):
    net: MLP
    config: TrainConfig
    losses: torch.Tensor  # [epochs] mean training loss of each epoch
    seconds: float


def init_net(config: TrainConfig) -> MLP:
    """The network of ``config`` with its seeded initial weights (global RNG state untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return MLP(config.model)


def train_network(config: TrainConfig, *, device: str | torch.device = "cpu", data: ToyData | None = None,
          progress: bool = True, threads: int | None = 1) -> TrainResult:
    """Train the network of ``config`` on ``device``; returns it on ``device`` with the per-epoch losses.

    ``threads``: torch CPU threads during training (restored afterwards; ``None`` keeps the current
    setting). The default 1 is the fastest for these batch-64 MLPs: on a shared 2-core machine two threads
    made a 200-epoch run 2-4x slower (thread synchronisation dominates such small matrix products).
    """
    if threads is None:
        return _train(config, device, data, progress)
    if int(threads) != threads or threads < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads}")
    old = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        return _train(config, device, data, progress)
    finally:
        torch.set_num_threads(old)


def _train(config: TrainConfig, device, data: ToyData | None, progress: bool) -> TrainResult:
    dev = resolve_device(device)
    c = config
    data = data if data is not None else make_data(c.preset, c.role, c.n_samples, seed=c.seed)
    if data.x.ndim != 2 or data.x.shape[1] != c.model.dim:
        raise ValueError(f"data has shape {tuple(data.x.shape)}, the model expects [N, {c.model.dim}]")
    net = init_net(c).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    sched = c.schedule
    g = torch.Generator().manual_seed(c.seed + 1)
    N, d, B = data.x.shape[0], c.model.dim, c.batch_size
    n_batches = N // B  # drop_last, as the paper's DataLoader
    x_all, y_all = data.x.to(dev), data.y.to(dev)
    losses = []
    start = time.perf_counter()
    bar = tqdm(range(c.epochs), desc=f"train {c.preset}/{c.role}", disable=not progress)
    for _ in bar:
        perm = torch.randperm(N, generator=g)[: n_batches * B]
        t = torch.randint(1, c.T + 1, (n_batches * B,), generator=g)
        noise = torch.randn(n_batches * B, d, generator=g)
        drop = torch.rand(n_batches * B, generator=g) < c.label_dropout
        perm, t, noise, drop = perm.to(dev), t.to(dev), noise.to(dev), drop.to(dev)
        total = torch.zeros((), device=dev)
        for b in range(n_batches):
            sl = slice(b * B, (b + 1) * B)
            idx = perm[sl]
            y = torch.where(drop[sl], torch.full_like(y_all[idx], -1), y_all[idx])
            x_t = sched.add_noise(x_all[idx], noise[sl], t[sl])
            loss = torch.mean((net(x_t, t[sl], y) - noise[sl]) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), c.grad_clip)
            opt.step()
            total += loss.detach()
        losses.append(total.item() / n_batches)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return TrainResult(net.eval(), c, torch.tensor(losses), time.perf_counter() - start)
