"""The image-model path (ARCHITECTURE.md): adapters taking real image networks (diffusers UNet2DModel,
DiT, an EDM2-style preconditioned denoiser) to the one model contract. diffusers is the optional
``images`` extra; importing this package does not need it."""
from .adapters import (
    DiTAdapter,
    EDM2Precond,
    EDMCoefficients,
    UNetAdapter,
    class_labels,
    edm_coefficients,
    forward_ad_compatible,
    tiny_dit,
    tiny_edm2,
    tiny_unet,
)
