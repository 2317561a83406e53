"""The toy denoiser MLP of the REG paper's 1-D experiment (THEORY.md section 7), for any small dimension.

``MLP(config)(x_vp [N, d], t [N] int64, cond) -> eps [N, d]``:

- each coordinate of ``x`` gets a sinusoidal embedding of size ``emb_size`` at scale ``x_scale`` (25 in
  the paper): ``[sin(s x f_k), cos(s x f_k)]`` with ``f_k = exp(-k ln(1e4) / (emb_size/2 - 1))``;
- the step index ``t`` the same embedding at scale 1, plus a learned class embedding (``nn.Embedding``);
  the null label ``-1`` (or ``cond=None``) contributes a zero vector, as in the paper's code;
- trunk: ``Linear(d * emb + emb, width) -> GELU -> n_blocks x [h + GELU(Linear(h))] -> Linear(width, d)``.

The network is queried with the step index ``t = 1..T`` of :class:`sampler.schedules.VPSchedule`
(the paper's code counts ``k = t - 1``), so the one adapter to the model contract, :func:`toy_model`, is
:class:`sampler.EpsModel` (plus the move to the network's device). Everything else derives from it: a
sampler takes ``sampler.bind(toy_model(net, schedule), cond)``, and the sampler-chain goldens take its
``eps_fn(x_vp, t)`` from :func:`analytic.eps_from_denoiser` (:func:`net_eps_fn` composes the two).
Parameters are float32; inputs of any float dtype are cast in and the output is cast back, so the float64
exact machinery (``analytic.chain_golden``) can differentiate through a network directly.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from analytic import eps_from_denoiser
from sampler.model import EpsModel, bind
from sampler.schedules import VPSchedule

__all__ = ["MLPConfig", "MLP", "SinusoidalEmbedding", "toy_model", "net_eps_fn", "net_device", "WEAK_CONFIG_1D"]

EpsFn = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True)
class MLPConfig:
    """What builds an :class:`MLP` (stored in every checkpoint). Defaults: the paper's network (1-D)."""

    dim: int = 1
    width: int = 128
    n_blocks: int = 3
    emb_size: int = 128
    x_scale: float = 25.0
    t_scale: float = 1.0
    num_classes: int = 1

    def __post_init__(self):
        for name in ("dim", "width", "emb_size", "num_classes"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"MLPConfig.{name} must be a positive integer, got {v!r}")
        if not isinstance(self.n_blocks, int) or self.n_blocks < 0:
            raise ValueError(f"MLPConfig.n_blocks must be an integer >= 0, got {self.n_blocks!r}")
        if self.emb_size % 2 or self.emb_size < 4:
            raise ValueError(f"MLPConfig.emb_size must be even and >= 4, got {self.emb_size}")
        for name in ("x_scale", "t_scale"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"MLPConfig.{name} must be a finite positive number, got {v!r}")


WEAK_CONFIG_1D = MLPConfig(width=64, n_blocks=1)


class SinusoidalEmbedding(nn.Module):
    """``[sin(scale x f_k), cos(scale x f_k)]``, ``f_k = exp(-k ln(1e4) / (size/2 - 1))``, k < size/2. [N] -> [N, size]"""

    def __init__(self, size: int, scale: float = 1.0):
        super().__init__()
        half = size // 2
        freqs = torch.exp(-math.log(1e4) * torch.arange(half, dtype=torch.float32) / (half - 1))
        self.register_buffer("freqs", freqs, persistent=False)
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arg = (self.scale * x)[:, None] * self.freqs.to(x.dtype)
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


class _Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.ff = nn.Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + nn.functional.gelu(self.ff(h))


class MLP(nn.Module):
    """The paper's toy eps-network, ``net(x_vp [N, d], t [N] int64, cond) -> eps [N, d]``.

    ``cond``: ``None`` (null label for every row), an int label, or an int64 tensor [N]; ``-1`` is null.
    """

    def __init__(self, config: MLPConfig = MLPConfig()):
        super().__init__()
        if not isinstance(config, MLPConfig):
            raise ValueError(f"config must be an MLPConfig, got {type(config).__name__}")
        self.config = c = config
        self.x_emb = SinusoidalEmbedding(c.emb_size, c.x_scale)
        self.t_emb = SinusoidalEmbedding(c.emb_size, c.t_scale)
        self.class_emb = nn.Embedding(c.num_classes, c.emb_size)
        self.inp = nn.Linear((c.dim + 1) * c.emb_size, c.width)
        self.blocks = nn.Sequential(*[_Block(c.width) for _ in range(c.n_blocks)])
        self.out = nn.Linear(c.width, c.dim)

    def labels(self, cond: Any, n: int, device) -> torch.Tensor:
        """``cond`` as int64 labels [n] on ``device`` (``ValueError`` for labels outside -1..C-1)."""
        if cond is None:
            y = torch.full((n,), -1, dtype=torch.long, device=device)
        elif isinstance(cond, int) and not isinstance(cond, bool):
            y = torch.full((n,), cond, dtype=torch.long, device=device)
        elif isinstance(cond, torch.Tensor) and not cond.is_floating_point() and cond.shape in ((n,), ()):
            y = cond.to(device=device, dtype=torch.long).expand(n)
        else:
            raise ValueError(f"cond must be None, an int or an int tensor of shape [{n}], got {cond!r}")
        if y.numel() and (int(y.min()) < -1 or int(y.max()) >= self.config.num_classes):
            raise ValueError(f"labels must lie in -1..{self.config.num_classes - 1}, got {y.unique().tolist()}")
        return y

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        c = self.config
        if x.ndim != 2 or x.shape[1] != c.dim:
            raise ValueError(f"x must have shape [N, {c.dim}], got {tuple(x.shape)}")
        n, dtype = x.shape[0], x.dtype
        t = torch.as_tensor(t, device=x.device).expand(n)
        y = self.labels(cond, n, x.device)
        p = self.inp.weight.dtype
        xe = torch.cat([self.x_emb(x[:, i].to(p)) for i in range(c.dim)], dim=-1)  # [N, d * emb]
        ce = self.class_emb(y.clamp(min=0)) * (y >= 0)[:, None].to(p)  # null label -> zeros
        te = self.t_emb(t.to(p)) + ce  # [N, emb]
        h = nn.functional.gelu(self.inp(torch.cat([xe, te], dim=-1)))
        return self.out(self.blocks(h)).to(dtype)


class _OnDevice:
    """``net(x, t, cond)`` evaluated on ``device``, the result back on ``x``'s device (differentiable in ``x``)."""

    def __init__(self, net: Callable, device: torch.device | None):
        self.net, self.device = net, device

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        if self.device is None or x.device == self.device:
            return self.net(x, t, cond)
        return self.net(x.to(self.device), t.to(self.device), cond).to(x.device)


def net_device(net: Callable) -> torch.device | None:
    """Where a network's parameters live (``None`` for a plain callable or a module without parameters)."""
    p = next(net.parameters(), None) if isinstance(net, nn.Module) else None
    return None if p is None else p.device


def toy_model(net: Callable, schedule: VPSchedule, *, device: str | torch.device | None = None) -> EpsModel:
    """The network on the model contract ``model(x_ve, sigma, cond) -> x0_hat`` (``sigma`` a level of
    ``schedule``): :class:`sampler.EpsModel`, with every call run on ``device`` (default: where the
    network's parameters are) and its result returned on the input's device, so a CUDA network works on
    CPU grids and CPU samplers. ``net(x_vp [N, d], t [N], cond) -> eps [N, d]``."""
    if not callable(net):
        raise ValueError(f"net must be callable as net(x_vp, t, cond), got {type(net).__name__}")
    if not isinstance(schedule, VPSchedule):
        raise ValueError(f"schedule must be a sampler.VPSchedule, got {type(schedule).__name__}")
    dev = net_device(net) if device is None else torch.device(device)
    return EpsModel(_OnDevice(net, dev), schedule)


def net_eps_fn(net: Callable, cond: Any, schedule: VPSchedule, *, device: str | torch.device | None = None) -> EpsFn:
    """``eps_fn(x_vp [N, d], t) -> eps`` of the network with the label ``cond`` bound, at step ``t`` (1..T) of
    ``schedule``: the form :func:`analytic.chain_golden` and :func:`toy.mc_golden` take, derived from the one
    adapter, ``analytic.eps_from_denoiser(sampler.bind(toy_model(net, schedule), cond), schedule)``."""
    return eps_from_denoiser(bind(toy_model(net, schedule, device=device), cond), schedule)
