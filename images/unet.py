"""A compact class-conditional conv UNet for small images (the digits), in plain torch.

Measured on this project's 2-core CPU a diffusers ``UNet2DModel`` forward is far too slow to train and
sweep in minutes, so this is the same idea written compactly: one residual block (GroupNorm, SiLU, 3x3
conv, the time + label embedding added in between) per resolution and direction, average-pool down,
nearest up, skip connections, no attention and no BatchNorm (samples never interact, as REG's batch
Jacobian needs). Forward- and reverse-mode differentiable.

It is an eps network ``net(x_vp [N, C, H, W], t [N] int64, cond) -> eps [N, C, H, W]`` for
``sampler.model.EpsModel``. ``cond`` follows ``images.adapters.class_labels``: ``None`` (the null label
``num_classes`` of label-dropout training), an ``int``, or ``N`` integer labels in ``0..num_classes``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .adapters import class_labels

__all__ = ["UNetConfig", "DigitsUNet", "timestep_embedding"]


@dataclass(frozen=True)
class UNetConfig:
    """What builds a :class:`DigitsUNet` (stored in checkpoints). ``mults``: channel multipliers of
    ``width`` per resolution (``len(mults) - 1`` halvings, so ``size`` must be divisible by
    ``2 ** (len(mults) - 1)``); ``groups`` divides every channel count; ``T`` is the number of
    training steps (timesteps are scaled to ``1000 t / T`` before the sinusoidal embedding)."""

    num_classes: int = 10
    channels: int = 1
    size: int = 8
    width: int = 16
    mults: tuple = (1, 2)
    emb_dim: int = 64
    groups: int = 8
    T: int = 1000

    def __post_init__(self):
        object.__setattr__(self, "mults", tuple(int(m) for m in self.mults))
        for name in ("num_classes", "channels", "size", "width", "emb_dim", "groups", "T"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not self.mults or any(m < 1 for m in self.mults):
            raise ValueError(f"mults must be a non-empty tuple of positive integers, got {self.mults}")
        if self.size % 2 ** (len(self.mults) - 1):
            raise ValueError(f"size {self.size} is not divisible by 2^{len(self.mults) - 1} (mults={self.mults})")
        if self.emb_dim % 2:
            raise ValueError(f"emb_dim must be even, got {self.emb_dim}")
        for m in self.mults:
            if (self.width * m) % self.groups:
                raise ValueError(f"groups={self.groups} does not divide the channel count {self.width * m}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mults"] = list(self.mults)
        return d


def timestep_embedding(t: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """Transformer sinusoids of ``t`` [N]: ``[cos(t f_k), sin(t f_k)]``, ``f_k = 10000^(-k/(dim/2))``. [N, dim]"""
    half = dim // 2
    f = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    a = t.to(torch.float32)[:, None] * f[None]
    return torch.cat([torch.cos(a), torch.sin(a)], dim=1).to(dtype)


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2, self.conv2 = nn.GroupNorm(groups, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(e)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class DigitsUNet(nn.Module):
    """``net(x_vp, t, cond) -> eps``; see the module docstring. Parameters: about 96k at the defaults."""

    def __init__(self, config: UNetConfig = UNetConfig()):
        super().__init__()
        if not isinstance(config, UNetConfig):
            raise ValueError(f"config must be a UNetConfig, got {config!r}")
        self.config = c = config
        chans = [c.width * m for m in c.mults]
        self.time_mlp = nn.Sequential(nn.Linear(c.emb_dim, c.emb_dim), nn.SiLU(), nn.Linear(c.emb_dim, c.emb_dim))
        self.label = nn.Embedding(c.num_classes + 1, c.emb_dim)  # the last row is the null label
        self.inp = nn.Conv2d(c.channels, chans[0], 3, padding=1)
        self.down = nn.ModuleList()
        prev = chans[0]
        for ch in chans:
            self.down.append(_ResBlock(prev, ch, c.emb_dim, c.groups))
            prev = ch
        self.mid = _ResBlock(prev, prev, c.emb_dim, c.groups)
        self.up = nn.ModuleList()
        for ch in reversed(chans):
            self.up.append(_ResBlock(prev + ch, ch, c.emb_dim, c.groups))
            prev = ch
        self.out = nn.Sequential(nn.GroupNorm(c.groups, prev), nn.SiLU(), nn.Conv2d(prev, c.channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        c = self.config
        y = class_labels(cond, x.shape[0], c.num_classes, x.device)
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0])
        e = self.time_mlp(timestep_embedding(t * (1000.0 / c.T), c.emb_dim, x.dtype)) + self.label(y)  # [N, E]
        h = self.inp(x)
        skips = []
        for i, block in enumerate(self.down):
            if i:
                h = F.avg_pool2d(h, 2)
            h = block(h, e)
            skips.append(h)
        h = self.mid(h, e)
        for i, block in enumerate(self.up):
            if i:
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = block(torch.cat([h, skips.pop()], 1), e)
        return self.out(h)  # [N, C, H, W]
