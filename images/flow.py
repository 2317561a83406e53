"""Flow-matching image networks through the one model contract (ARCHITECTURE.md contract 1; THEORY.md section 8).

diffusers' ``SD3Transformer2DModel`` (the MM-DiT of Stable Diffusion 3, Esser et al. 2024) predicts the velocity
``v = eps - x_0`` of the linear path ``x_t = (1 - t) x_0 + t eps`` at ``timestep = 1000 t``, conditioned on
text-encoder states. :class:`SD3Adapter` makes it a velocity network ``net(x_t, t, cond)`` and
``sampler.model.VelocityModel`` turns that into ``D(x, sigma, cond)``, so every sampler, guidance rule and REG
estimator runs on it unchanged. :func:`scheduler_sigmas` reads the levels of diffusers'
``FlowMatchEulerDiscreteScheduler`` (its ``sigmas`` are path times ``t``) as contract levels: the sampler core's
``euler`` on them is the scheduler's own Euler loop, except that the pure-noise level ``t = 1`` starts at
``sampler.paths.T_NOISE_CAP`` (an ``O(1e-4)`` change of the first step; see :mod:`sampler.paths`).

``cond`` is a :class:`TextCondition` (prompt embeddings and pooled embeddings, batch 1 or N); there is no
built-in null label: the unconditional branch is the encoding of the empty prompt, as in SD3's pipeline.

diffusers is the optional ``images`` extra; this module imports without it and only :func:`tiny_sd3` needs it.
:func:`tiny_sd3` builds a seeded random transformer of about twelve thousand parameters (nothing is downloaded)
whose attention runs on torch's math backend, so REG's ``jvp`` estimator (forward-mode autograd) works too.
"""
from __future__ import annotations

import contextlib
from typing import Any, NamedTuple

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from sampler.model import VelocityModel
from sampler.paths import LINEAR, T_NOISE_CAP, sampling_sigmas

__all__ = ["TextCondition", "SD3Adapter", "scheduler_sigmas", "tiny_sd3", "tiny_text_condition"]


class TextCondition(NamedTuple):
    """SD3's conditioning: ``embeds`` [1 or N, L, joint_attention_dim], ``pooled`` [1 or N, pooled_projection_dim]."""

    embeds: torch.Tensor
    pooled: torch.Tensor


class SD3Adapter:
    """diffusers' ``SD3Transformer2DModel`` as a linear-path velocity network ``net(x_t, t [N], cond) -> v``.

    The transformer is called with ``timestep = timestep_scale * t`` (diffusers: ``num_train_timesteps = 1000``).
    ``math_attention=True`` runs attention on torch's math backend (needed for forward-mode autograd on the CPU;
    slower on GPUs)."""

    def __init__(self, transformer: torch.nn.Module, *, timestep_scale: float = 1000.0, math_attention: bool = False):
        config = getattr(transformer, "config", None)
        dims = [getattr(config, k, None) for k in ("joint_attention_dim", "pooled_projection_dim", "in_channels")]
        if None in dims:
            raise ValueError("need an SD3Transformer2DModel-like network (joint_attention_dim, pooled_projection_dim, in_channels)")
        if getattr(transformer, "out_channels", None) != config.in_channels:
            raise ValueError(f"a velocity network predicts as many channels as it takes; got in={config.in_channels}, "
                             f"out={getattr(transformer, 'out_channels', None)}")
        if not timestep_scale > 0:
            raise ValueError(f"timestep_scale must be > 0, got {timestep_scale}")
        self.transformer, self.timestep_scale, self.math_attention = transformer, float(timestep_scale), bool(math_attention)
        self.text_dim, self.pooled_dim = int(config.joint_attention_dim), int(config.pooled_projection_dim)

    def _condition(self, cond: Any, x: torch.Tensor) -> TextCondition:
        if not isinstance(cond, TextCondition):
            raise ValueError(f"cond must be a TextCondition (embeds, pooled), got {type(cond).__name__}")
        n = x.shape[0]
        emb, pooled = cond.embeds, cond.pooled
        if emb.ndim != 3 or emb.shape[0] not in (1, n) or emb.shape[2] != self.text_dim:
            raise ValueError(f"embeds must have shape [1 or {n}, L, {self.text_dim}], got {tuple(emb.shape)}")
        if pooled.ndim != 2 or pooled.shape[0] not in (1, n) or pooled.shape[1] != self.pooled_dim:
            raise ValueError(f"pooled must have shape [1 or {n}, {self.pooled_dim}], got {tuple(pooled.shape)}")
        return TextCondition(emb.to(x).expand(n, -1, -1), pooled.to(x).expand(n, -1))

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: TextCondition) -> torch.Tensor:
        c = self._condition(cond, x_t)
        backend = sdpa_kernel(SDPBackend.MATH) if self.math_attention else contextlib.nullcontext()
        with backend:
            return self.transformer(hidden_states=x_t, encoder_hidden_states=c.embeds, pooled_projections=c.pooled,
                                    timestep=self.timestep_scale * t).sample  # [N, C, H, W]


def scheduler_sigmas(scheduler: Any, *, cap: float = T_NOISE_CAP) -> torch.Tensor:
    """The contract levels of a ``FlowMatchEulerDiscreteScheduler`` after ``set_timesteps``: its ``sigmas`` are
    linear-path times (decreasing, ending at 0); ``t = 1`` becomes ``cap``. [K + 1] float64"""
    t = getattr(scheduler, "sigmas", None)
    if not isinstance(t, torch.Tensor) or getattr(getattr(scheduler, "config", None), "invert_sigmas", False):
        raise ValueError(f"need a flow-matching scheduler whose sigmas are path times t (decreasing), got {type(scheduler).__name__}")
    return sampling_sigmas(LINEAR, t.detach().cpu().to(torch.float64), cap=cap)


def _diffusers():
    try:
        import diffusers  # noqa: PLC0415 (lazy on purpose: diffusers is an optional extra)
    except ImportError as err:
        raise ImportError("building an SD3 transformer needs diffusers; install the optional 'images' extra: "
                          "pip install 'reg-guidance[images]'") from err
    return diffusers


def tiny_sd3(*, channels: int = 4, size: int = 8, width: int = 16, text_dim: int = 16, pooled_dim: int = 8,
             seed: int = 0, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> VelocityModel:
    """A randomly initialised ``SD3Transformer2DModel`` (one joint block, 2 heads of ``width/2``, patch 2) behind
    ``SD3Adapter`` and ``VelocityModel`` on the linear path: eval mode, frozen parameters (autograd flows to ``x``
    only), math-backend attention; built on the CPU under ``seed`` without touching the global RNG."""
    for name, v, lo in (("channels", channels, 1), ("size", size, 2), ("width", width, 2), ("text_dim", text_dim, 1),
                        ("pooled_dim", pooled_dim, 1)):
        if isinstance(v, bool) or int(v) != v or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    if size % 2 or width % 2:
        raise ValueError(f"size and width must be even, got size={size}, width={width}")
    diffusers = _diffusers()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = diffusers.SD3Transformer2DModel(
            sample_size=size, patch_size=2, in_channels=channels, out_channels=channels, num_layers=1,
            attention_head_dim=width // 2, num_attention_heads=2, joint_attention_dim=text_dim,
            caption_projection_dim=width, pooled_projection_dim=pooled_dim, pos_embed_max_size=size // 2,
        )
    torch.nn.Module.to(net, device=device, dtype=dtype)  # not ModelMixin.to, which warns about dtype casts
    net.eval().requires_grad_(False)
    return VelocityModel(SD3Adapter(net, math_attention=True), LINEAR)


def tiny_text_condition(n_tokens: int = 5, *, text_dim: int = 16, pooled_dim: int = 8, seed: int = 0,
                        device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> TextCondition:
    """A random stand-in for encoded prompts (batch 1), reproducible from ``seed``."""
    if isinstance(n_tokens, bool) or int(n_tokens) != n_tokens or n_tokens < 1:
        raise ValueError(f"n_tokens must be a positive integer, got {n_tokens!r}")
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(1, int(n_tokens), text_dim, generator=g, dtype=dtype)
    return TextCondition(emb.to(device), torch.randn(1, pooled_dim, generator=g, dtype=dtype).to(device))
