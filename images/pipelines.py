"""Real pretrained latent diffusion models from a local directory, through the same sampler core.

Two layouts of a diffusers pipeline folder (what ``save_pretrained`` writes; nothing is downloaded,
every load is ``local_files_only``):

- **DiT** (Peebles & Xie 2023; diffusers' ``DiTPipeline``): ``transformer/`` (a class-conditional
  ``DiTTransformer2DModel``), ``vae/`` (``AutoencoderKL``), optionally ``scheduler/``. ``cond`` is a
  class label (``int``, ``[N]`` integers, ``None`` = the null label of label dropout).
- **Stable-Diffusion style**: ``unet/`` (``UNet2DConditionModel``), ``vae/``, optionally ``scheduler/``.
  ``cond`` is a prompt embedding ``[L, D]`` or ``[N, L, D]`` (a text encoder's last hidden states),
  so no tokenizer is needed; ``None`` is the null (empty-prompt) embedding, which must be supplied
  once as ``null_embedding`` (SD's own is the text encoder's output for ``""``).

The scheduler's ``scheduler_config.json`` gives the training schedule (read by
:func:`sampler.schedule_from_diffusers_config`: ``beta_schedule`` ``linear``, ``scaled_linear`` or
``squaredcos_cap_v2``, or ``trained_betas``) and the parameterisation
(``prediction_type`` ``epsilon`` -> ``EpsModel``, ``v_prediction`` -> ``VModel``); without a scheduler
folder DiT's (linear 1e-4..0.02) or SD's (scaled linear 0.00085..0.012) defaults are used, with eps
prediction. Sampling runs in latent space; ``LatentPipeline.decode`` maps latents to images through the
VAE (``latents / scaling_factor``). A directory without what a layout needs is a ``ValueError`` naming
the missing part.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

import torch

from sampler import CFG, REG, Unguided, bind
from sampler.levels import sampling_levels, schedule_from_diffusers_config
from sampler.model import EpsModel, VModel
from sampler.samplers import sample, vp_prior
from sampler.schedules import VPSchedule

from .adapters import DiTAdapter, require_diffusers, forward_ad_compatible
from .train import resolve_device

__all__ = ["LatentPipeline", "Generated", "SDUNetAdapter", "load_dit_pipeline", "load_sd_pipeline"]

_DEFAULTS = {
    "dit": {"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02, "num_train_timesteps": 1000},
    "sd": {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "num_train_timesteps": 1000},
}


def _scheduler_config(root: Path, kind: str) -> dict:
    path = root / "scheduler" / "scheduler_config.json"
    if not path.is_file():
        return dict(_DEFAULTS[kind], prediction_type="epsilon")
    with open(path) as fh:
        try:
            return json.load(fh)
        except json.JSONDecodeError as err:
            raise ValueError(f"{str(path)!r} is not valid JSON: {err}") from err


def _check_dir(root: str | os.PathLike, parts: tuple, kind: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{str(root)!r} is not a directory; a {kind} pipeline folder needs {', '.join(p + '/' for p in parts)}")
    missing = [p for p in parts if not (root / p / "config.json").is_file()]
    if missing:
        raise ValueError(
            f"{str(root)!r} does not hold a {kind} pipeline: missing {', '.join(m + '/config.json' for m in missing)} "
            f"(needs {', '.join(p + '/' for p in parts)} as written by diffusers' save_pretrained; scheduler/ optional)"
        )
    return root


def _load(cls, root: Path, sub: str, device, dtype):
    try:
        m = cls.from_pretrained(root / sub, local_files_only=True)
    except (OSError, ValueError, EnvironmentError) as err:
        raise ValueError(f"could not load {cls.__name__} from {str(root / sub)!r}: {err}") from err
    torch.nn.Module.to(m, device=device, dtype=dtype)
    return m.eval().requires_grad_(False)


def _contract_model(net: Callable, sched: VPSchedule, config: dict):
    pred = config.get("prediction_type", "epsilon")
    if pred == "epsilon":
        return EpsModel(net, sched)
    elif pred == "v_prediction":
        return VModel(net, sched)
    else:
        raise ValueError(f"unsupported prediction_type {pred!r}; supported: epsilon, v_prediction")


class SDUNetAdapter:
    """``UNet2DConditionModel`` as ``net(x_vp, t, cond) -> unet(x, t, encoder_hidden_states).sample``.

    ``cond``: an embedding ``[L, D]``, ``[1, L, D]`` (broadcast to the batch) or ``[N, L, D]``; ``None`` is
    ``null_embedding`` (``ValueError`` when none was given)."""

    def __init__(self, unet: torch.nn.Module, null_embedding: Optional[torch.Tensor] = None):
        self.unet = unet
        self.cross_dim = int(unet.config.cross_attention_dim)
        self.null_embedding = None if null_embedding is None else self._check(null_embedding, None)

    def _check(self, emb: Any, n: Optional[int]) -> torch.Tensor:
        if not isinstance(emb, torch.Tensor) or not emb.is_floating_point():
            raise ValueError(f"a prompt embedding must be a float tensor [L, D] or [N, L, D], got {emb!r:.80}")
        if emb.ndim == 2:
            emb = emb[None]
        if emb.ndim != 3 or emb.shape[-1] != self.cross_dim:
            raise ValueError(f"prompt embeddings must be [L, {self.cross_dim}] or [N, L, {self.cross_dim}], got {tuple(emb.shape)}")
        if n is not None and emb.shape[0] not in (1, n):
            raise ValueError(f"prompt embeddings for a batch of {n} must have 1 or {n} rows, got {emb.shape[0]}")
        return emb

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        if cond is None:
            if self.null_embedding is None:
                raise ValueError("cond=None needs the null (empty-prompt) embedding: pass null_embedding when loading")
            cond = self.null_embedding
        emb = self._check(cond, x.shape[0]).to(device=x.device, dtype=x.dtype)
        emb = emb.expand(x.shape[0], -1, -1)
        return self.unet(x, t, encoder_hidden_states=emb).sample  # [N, C, h, w]


class Generated(NamedTuple):
    latents: torch.Tensor  # [N, C, h, w]
    images: torch.Tensor  # [N, 3, H, W], in [-1, 1] (VAE output clamped)


@dataclass(frozen=True)
class LatentPipeline:
    """A latent diffusion model as a contract ``model`` on latents plus its VAE."""

    kind: str  # "dit" or "sd"
    model: Any  # EpsModel / VModel on latents
    vae: torch.nn.Module
    scaling_factor: float
    latent_shape: tuple  # (C, h, w)
    num_classes: Optional[int]  # DiT only

    def guidance(self, cond: Any, w: float = 0.0, estimator: str = "none", weight=None):
        """``Unguided`` (``w == 0`` and no ``weight``), ``CFG`` against ``cond=None``, or that wrapped in
        ``REG(., estimator)``; ``weight`` (a schedule) overrides ``w``."""
        c = bind(self.model, cond)
        if weight is None and w == 0:
            if estimator != "none":
                raise ValueError(f"REG ({estimator!r}) modifies a guidance; w = 0 has none")
            return Unguided(c)
        g = CFG(c, bind(self.model, None), w if weight is None else weight)
        return g if estimator == "none" else REG(g, estimator)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images ``[N, 3, H, W]`` in [-1, 1] from latents ``[N, C, h, w]``."""
        if latents.ndim != 4 or tuple(latents.shape[1:]) != tuple(self.latent_shape):
            raise ValueError(f"latents must be [N, {', '.join(map(str, self.latent_shape))}], got {tuple(latents.shape)}")
        with torch.no_grad():
            return self.vae.decode(latents / self.scaling_factor).sample.clamp(-1, 1)

    def generate(self, denoiser: Callable, n: int, *, steps: int = 50, sampler: str = "ddpm",
                 generator: Optional[torch.Generator] = None, progress: bool = False) -> Generated:
        """Sample ``n`` latents with ``denoiser`` (from :meth:`guidance`, or any guidance on ``model``) on
        ``steps`` levels of the training schedule, then decode them."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        p = next(self.vae.parameters())
        sig = sampling_levels(self.model.schedule, sampler, steps)
        noise = torch.randn((n, *self.latent_shape), generator=generator, device=p.device, dtype=p.dtype)
        z = sample(sampler, denoiser, vp_prior(noise, float(sig[0])), sig, generator=generator, progress=progress)
        return Generated(z, self.decode(z))


def _load_parts(path: str | os.PathLike, kind: str, net_class: str, net_dir: str, device, dtype):
    """``(denoiser network, VAE, scheduler config)`` of a pipeline folder of ``kind`` ("dit" / "sd")."""
    diffusers = require_diffusers()
    root = _check_dir(path, (net_dir, "vae"), {"dit": "DiT", "sd": "Stable-Diffusion-style"}[kind])
    dev = resolve_device(device)
    net = forward_ad_compatible(_load(getattr(diffusers, net_class), root, net_dir, dev, dtype))
    vae = _load(diffusers.AutoencoderKL, root, "vae", dev, dtype)
    if int(vae.config.latent_channels) != int(net.config.in_channels):
        raise ValueError(f"{str(root)!r}: the denoiser takes {net.config.in_channels} latent channels, "
                         f"the VAE makes {vae.config.latent_channels}")
    return net, vae, _scheduler_config(root, kind)


def _pipeline(kind: str, adapter: Callable, net: torch.nn.Module, vae: torch.nn.Module, config: dict,
              num_classes: Optional[int]) -> LatentPipeline:
    size = net.config.sample_size
    size = int(size if isinstance(size, int) else size[0])
    return LatentPipeline(kind, _contract_model(adapter, schedule_from_diffusers_config(config), config), vae,
                          float(vae.config.scaling_factor), (int(net.config.in_channels), size, size), num_classes)


def load_dit_pipeline(path: str | os.PathLike, *, device: str | torch.device = "cpu",
                      dtype: torch.dtype = torch.float32) -> LatentPipeline:
    """A DiT pipeline folder (``transformer/``, ``vae/``, optional ``scheduler/``) as a ``LatentPipeline``."""
    transformer, vae, config = _load_parts(path, "dit", "DiTTransformer2DModel", "transformer", device, dtype)
    adapter = DiTAdapter(transformer)
    return _pipeline("dit", adapter, transformer, vae, config, adapter.num_classes)


def load_sd_pipeline(path: str | os.PathLike, *, null_embedding: Optional[torch.Tensor] = None,
                     device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LatentPipeline:
    """A Stable-Diffusion-style folder (``unet/``, ``vae/``, optional ``scheduler/``) as a
    ``LatentPipeline`` whose ``cond`` is a prompt embedding (``null_embedding`` for ``cond=None``)."""
    unet, vae, config = _load_parts(path, "sd", "UNet2DConditionModel", "unet", device, dtype)
    return _pipeline("sd", SDUNetAdapter(unet, null_embedding), unet, vae, config, None)
