"""Real image networks through the one model contract (ARCHITECTURE.md, contract 1).

Three paths, each ending in a ``sampler.model`` adapter, so samplers and guidance never see which
network runs underneath:

- a class-conditional diffusers ``UNet2DModel`` predicting eps (DDPM): ``UNetAdapter`` -> ``EpsModel``;
- diffusers' ``DiTTransformer2DModel`` (Peebles & Xie 2023), whose output has ``2C`` channels
  (eps and the learned-variance interpolation ``v``); ``DiTAdapter`` keeps the first ``C`` as eps,
  exactly as DiT's own sampler does -> ``EpsModel``;
- an EDM2-style preconditioned denoiser ``EDM2Precond`` (Karras et al. 2022, Table 1; 2024)
  wrapping any raw network ``F(x, c_noise, labels)`` into ``D(x, sigma, labels)`` -> ``X0Model``.

Labels (the ``cond`` of the contract). A class-conditional network trained with label dropout
reserves one extra class index for "no label"; here that index is always ``num_classes``
(the last row of the embedding table): DiT's null class 1000 for its 1000 ImageNet classes, and
for a ``UNet2DModel`` built with ``num_class_embeds = num_classes + 1``. ``cond`` may be ``None``
(unconditional: every sample gets the null label), an ``int`` (one label for the batch) or an
integer tensor / sequence of shape ``[N]``; values lie in ``0..num_classes`` (the last is null).

diffusers is the optional ``images`` extra: this module imports without it, and only the
functions that build or modify diffusers networks (``tiny_unet``, ``tiny_dit``, ``tiny_edm2``,
``forward_ad_compatible``) raise an ``ImportError`` naming the extra. The adapters themselves
only call the module they are given.

The ``tiny_*`` factories build seeded, randomly initialised networks of about ten thousand
parameters (nothing is downloaded) for tests and benchmarks: ready contract models, in eval mode,
with frozen parameters (autograd flows to ``x`` only, as REG needs) and attention made
forward-mode differentiable (``forward_ad_compatible``, for REG's ``jvp`` estimator).
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import torch

from sampler.model import EpsModel, X0Model
from sampler.schedules import VPSchedule

__all__ = [
    "class_labels",
    "UNetAdapter",
    "DiTAdapter",
    "EDMCoefficients",
    "edm_coefficients",
    "EDM2Precond",
    "forward_ad_compatible",
    "tiny_unet",
    "tiny_dit",
    "tiny_edm2",
]

_EXTRA_HINT = "install the optional 'images' extra: pip install 'reg-guidance[images]' (or pip install diffusers)"


def require_diffusers():
    try:
        import diffusers  # noqa: PLC0415 (lazy on purpose: diffusers is an optional extra)
    except ImportError as err:
        raise ImportError(f"building a diffusers image network needs the diffusers package; {_EXTRA_HINT}") from err
    return diffusers


# --- labels -----------------------------------------------------------------------------------------
def class_labels(cond: Any, n: int, num_classes: int, device: torch.device | str) -> torch.Tensor:
    """Integer labels ``[n]`` for a batch: ``None`` -> the null label ``num_classes`` for every sample,
    an ``int`` -> that label for every sample, a tensor/sequence of ``n`` integers -> itself.
    Values must lie in ``0..num_classes`` (``num_classes`` is the null label); ``ValueError`` otherwise."""
    if cond is None:
        return torch.full((n,), num_classes, dtype=torch.long, device=device)
    if isinstance(cond, bool):
        raise ValueError(f"a class label must be an integer, got the bool {cond}")
    if isinstance(cond, int):
        y = torch.full((n,), cond, dtype=torch.long, device=device)
    else:
        y = torch.as_tensor(cond, device=device)
        if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
            raise ValueError(f"class labels must be integers, got dtype {y.dtype}")
        y = y.long()
        if y.ndim == 0:
            y = y.expand(n)
        elif y.shape != (n,):
            raise ValueError(f"class labels must have shape [{n}] (one per sample), got {tuple(y.shape)}")
    if torch.any(y < 0) or torch.any(y > num_classes):
        raise ValueError(f"class labels must lie in 0..{num_classes} ({num_classes} = null), got {y.tolist()}")
    return y


# --- discrete-time eps networks ---------------------------------------------------------------------
class UNetAdapter:
    """A class-conditional diffusers ``UNet2DModel`` as ``net(x, t, cond) -> unet(x, t, labels).sample``.

    The UNet must have a label embedding (``num_class_embeds = num_classes + 1``, ``class_embed_type``
    unset); its last index is the null label. With a DDPM-trained eps UNet this is the ``net`` of
    ``sampler.model.EpsModel``; the same call with a float ``t = c_noise`` is the raw ``F`` of
    ``EDM2Precond``.
    """

    def __init__(self, unet: torch.nn.Module):
        config = getattr(unet, "config", None)
        n_embeds = getattr(config, "num_class_embeds", None)
        if n_embeds is None or getattr(config, "class_embed_type", None) is not None:
            raise ValueError("the UNet needs a label embedding: build it with num_class_embeds = num_classes + 1")
        if n_embeds < 2:
            raise ValueError(f"num_class_embeds must be >= 2 (classes plus the null label), got {n_embeds}")
        if config.out_channels != config.in_channels:
            raise ValueError(
                f"an eps/F UNet predicts as many channels as it takes; got in={config.in_channels}, out={config.out_channels}"
            )
        self.unet = unet
        self.num_classes = int(n_embeds) - 1
        self.null_label = self.num_classes

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        y = class_labels(cond, x.shape[0], self.num_classes, x.device)
        return self.unet(x, t, class_labels=y).sample  # [N, C, H, W]


def _label_table(transformer: torch.nn.Module) -> torch.nn.Embedding | None:
    """The class-embedding table of diffusers' DiT (first block's adaLN-Zero), if it has that layout."""
    try:
        return transformer.transformer_blocks[0].norm1.emb.class_embedder.embedding_table
    except (AttributeError, IndexError, TypeError):
        return None


class DiTAdapter:
    """diffusers' ``DiTTransformer2DModel`` as an eps network ``net(x_vp, t, cond) -> eps``.

    DiT predicts ``2C`` channels (``learn_sigma``): eps, then the variance interpolation. As in DiT's
    sampler (and diffusers' ``DiTPipeline``), eps is the first ``C`` channels; the rest is dropped
    (the sampler's own DDPM variance is used). The null class is ``num_embeds_ada_norm`` (DiT: 1000),
    the extra row diffusers' ``LabelEmbedding`` adds for label dropout. The transformer must be in
    eval mode: in training mode diffusers drops labels at random.
    """

    def __init__(self, transformer: torch.nn.Module):
        config = getattr(transformer, "config", None)
        num_classes = getattr(config, "num_embeds_ada_norm", None)
        if num_classes is None or num_classes < 1:
            raise ValueError(f"the DiT needs class labels (num_embeds_ada_norm >= 1), got {num_classes}")
        c_in, c_out = config.in_channels, transformer.out_channels
        if c_out not in (c_in, 2 * c_in):
            raise ValueError(f"a DiT predicts C (eps) or 2C (eps, learned sigma) channels; got in={c_in}, out={c_out}")
        table = _label_table(transformer)
        if table is not None and table.num_embeddings != num_classes + 1:
            raise ValueError(
                f"the DiT's label table has {table.num_embeddings} rows, expected {num_classes + 1} "
                "(num_classes plus the null label of label-dropout training)"
            )
        self.transformer = transformer
        self.channels = int(c_in)
        self.learned_sigma = c_out == 2 * c_in
        self.num_classes = int(num_classes)
        self.null_label = self.num_classes

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        if self.transformer.training:
            raise ValueError("the DiT is in training mode, where diffusers drops labels at random; call .eval() first")
        y = class_labels(cond, x.shape[0], self.num_classes, x.device)
        out = self.transformer(x, timestep=t, class_labels=y).sample  # [N, 2C, H, W]
        return out[:, : self.channels]  # eps; out[:, C:] is the learned-sigma half


# --- EDM2 preconditioning ---------------------------------------------------------------------------
class EDMCoefficients(NamedTuple):
    c_skip: float
    c_out: float
    c_in: float
    c_noise: float


def edm_coefficients(sigma: float, sigma_data: float = 0.5) -> EDMCoefficients:
    """EDM preconditioning (Karras et al. 2022, Table 1; EDM2 keeps it): ``c_skip = sd^2/(s^2+sd^2)``,
    ``c_out = s sd / sqrt(s^2+sd^2)``, ``c_in = 1/sqrt(s^2+sd^2)``, ``c_noise = ln(s)/4``."""
    s, sd = float(sigma), float(sigma_data)
    if not math.isfinite(s) or s <= 0:
        raise ValueError(f"sigma must be finite and > 0, got {s}")
    if not math.isfinite(sd) or sd <= 0:
        raise ValueError(f"sigma_data must be finite and > 0, got {sd}")
    r = math.sqrt(s * s + sd * sd)
    return EDMCoefficients(c_skip=sd * sd / (r * r), c_out=s * sd / r, c_in=1 / r, c_noise=math.log(s) / 4)


class EDM2Precond:
    """``D(x, sigma, labels) = c_skip x + c_out F(c_in x, c_noise, labels)`` for a raw network
    ``F(x, c_noise [N], labels)``; the ``net`` of ``sampler.model.X0Model`` (EDM2's ``Precond``)."""

    def __init__(self, net: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor], sigma_data: float = 0.5):
        if not callable(net):
            raise ValueError("net must be callable as net(x, c_noise, labels)")
        edm_coefficients(1.0, sigma_data)  # validates sigma_data
        self.net, self.sigma_data = net, float(sigma_data)

    def __call__(self, x: torch.Tensor, sigma: float, labels: Any) -> torch.Tensor:
        c = edm_coefficients(sigma, self.sigma_data)
        c_noise = torch.full((x.shape[0],), c.c_noise, dtype=x.dtype, device=x.device)
        return c.c_skip * x + c.c_out * self.net(c.c_in * x, c_noise, labels)


# --- forward-mode autograd (REG's 'jvp' estimator) ------------------------------------------------
def _contiguous_output(module: torch.nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor:
    return out.clone(memory_format=torch.contiguous_format)  # the tangent is cloned the same way


def forward_ad_compatible(net: torch.nn.Module) -> torch.nn.Module:
    """Make a diffusers network differentiable in forward mode (``torch.autograd.forward_ad``), in place.

    Two torch limitations (2.13, CPU) break forward mode on stock diffusers networks with attention:
    the CPU flash kernel behind ``scaled_dot_product_attention`` has no forward derivative, and
    ``group_norm``'s forward derivative views its tangent, which fails on the non-contiguous tangent
    an attention block returns. So every ``Attention`` runs SDPA on its math backend (the same
    function, in the input's precision; diffusers' classic ``AttnProcessor`` would instead upcast the
    softmax to float32 and spoil float64 checks) and its output is made contiguous by a forward hook.
    Values change only by rounding; reverse mode is unaffected. Idempotent; returns ``net``.
    """
    require_diffusers()
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0  # noqa: PLC0415
    from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: PLC0415

    class MathAttnProcessor(AttnProcessor2_0):
        """diffusers' SDPA processor restricted to torch's math backend (forward-mode differentiable)."""

        def __call__(self, *args, **kwargs):
            with sdpa_kernel(SDPBackend.MATH):
                return super().__call__(*args, **kwargs)

    for module in net.modules():
        if isinstance(module, Attention) and not getattr(module, "_forward_ad_compatible", False):
            module.set_processor(MathAttnProcessor())
            module.register_forward_hook(_contiguous_output)
            module._forward_ad_compatible = True
    return net


# --- tiny seeded models shared by tests and benchmarks --------------------------------------------
def _check_tiny(num_classes: int, channels: int, size: int, width: int) -> None:
    for name, v, lo in (("num_classes", num_classes, 1), ("channels", channels, 1), ("size", size, 4), ("width", width, 2)):
        if isinstance(v, bool) or int(v) != v or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v}")
    if size % 2 or width % 2:
        raise ValueError(f"size and width must be even, got size={size}, width={width}")


def _seeded(build: Callable[[], torch.nn.Module], seed: int, device, dtype: torch.dtype) -> torch.nn.Module:
    """Build on the CPU under ``seed`` without touching the global RNG, then move (same weights on
    every device); attention made forward-mode compatible; eval mode; parameters frozen."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build()
    # nn.Module.to, not ModelMixin.to: the latter warns about dtype casts meant for from_pretrained.
    torch.nn.Module.to(net, device=device, dtype=dtype)
    forward_ad_compatible(net)
    return net.eval().requires_grad_(False)  # gradients flow w.r.t. x only


def _tiny_unet2d(num_classes: int, channels: int, size: int, width: int):
    diffusers = require_diffusers()
    return diffusers.UNet2DModel(
        sample_size=size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(width, 2 * width),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=2,
        attention_head_dim=width,
        num_class_embeds=num_classes + 1,  # the last index is the null label
    )


def tiny_unet(
    *,
    num_classes: int = 10,
    channels: int = 3,
    size: int = 8,
    width: int = 4,
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    schedule: VPSchedule | None = None,
) -> EpsModel:
    """A randomly initialised class-conditional eps ``UNet2DModel`` (about 12k parameters at the
    defaults) behind ``EpsModel`` on ``schedule`` (default ``VPSchedule.standard()``; any respacing
    of it works too, since respaced levels are levels of the full schedule)."""
    _check_tiny(num_classes, channels, size, width)
    unet = _seeded(lambda: _tiny_unet2d(num_classes, channels, size, width), seed, device, dtype)
    return EpsModel(UNetAdapter(unet), VPSchedule.standard() if schedule is None else schedule)


def tiny_dit(
    *,
    num_classes: int = 10,
    channels: int = 4,
    size: int = 8,
    width: int = 16,
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    schedule: VPSchedule | None = None,
) -> EpsModel:
    """A randomly initialised ``DiTTransformer2DModel`` (one block, 2 heads of ``width/2``, patch 2,
    ``2C`` output channels as DiT's learned sigma; about 11k parameters) behind ``EpsModel``."""
    _check_tiny(num_classes, channels, size, width)

    def build():
        diffusers = require_diffusers()
        return diffusers.DiTTransformer2DModel(
            num_attention_heads=2,
            attention_head_dim=width // 2,
            in_channels=channels,
            out_channels=2 * channels,  # learn_sigma: eps and the variance interpolation
            num_layers=1,
            sample_size=size,
            patch_size=2,
            num_embeds_ada_norm=num_classes,  # the null label is num_classes
        )

    dit = _seeded(build, seed, device, dtype)
    return EpsModel(DiTAdapter(dit), VPSchedule.standard() if schedule is None else schedule)


def tiny_edm2(
    *,
    num_classes: int = 10,
    channels: int = 4,
    size: int = 8,
    width: int = 4,
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    sigma_data: float = 0.5,
) -> X0Model:
    """An EDM2-style denoiser: ``EDM2Precond`` around a randomly initialised class-conditional
    ``UNet2DModel`` as ``F`` (``c_noise`` goes to its sinusoidal time embedding), behind ``X0Model``.
    A different ``seed`` or a smaller ``width`` gives the weak model for autoguidance."""
    _check_tiny(num_classes, channels, size, width)
    unet = _seeded(lambda: _tiny_unet2d(num_classes, channels, size, width), seed, device, dtype)
    return X0Model(EDM2Precond(UNetAdapter(unet), sigma_data))
