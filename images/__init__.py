"""The image-model path (ARCHITECTURE.md): adapters taking real image networks (diffusers UNet2DModel,
DiT, an EDM2-style preconditioned denoiser, the SD3 flow transformer) to the one model contract. diffusers is
the optional ``images`` extra; importing this package does not need it."""
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
from .flow import SD3Adapter, TextCondition, scheduler_sigmas, tiny_sd3, tiny_text_condition

# The digits path (issue 7): data, a compact class-conditional UNet, training and checkpoints, the
# download-free metrics, the guidance sweep (running: images.sweep; statistics and files:
# images.sweep_stats; its figure: figures.digits_pareto), and latent pipelines loaded from a local directory.
from .data import DigitsSplit, load_digits_split
from .metrics import DigitsEvaluator, Scores, class_accuracy, feature_stats, frechet_distance, inception_score
from .unet import DigitsUNet, UNetConfig

# images.train and images.classifier are also entry points (python -m images.train): importing them here, or a
# module that imports them (pipelines, sweep), would put them in sys.modules before runpy runs them, and Python
# warns ("found in sys.modules after import of package 'images'"). Their names are loaded on first use (PEP 562).
_LAZY = {
    "classifier": ("ClassifierConfig", "DigitsClassifier", "load_classifier", "train_classifier"),
    "pipelines": ("LatentPipeline", "SDUNetAdapter", "load_dit_pipeline", "load_sd_pipeline"),
    "sweep": ("SweepConfig", "SweepResult", "SweepRow"),
    "train": ("TrainConfig", "load_model", "load_unet", "resolve_device", "save_checkpoint", "train_unet"),
}
_LAZY_NAME = {name: module for module, names in _LAZY.items() for name in names}

__all__ = ["DiTAdapter", "EDM2Precond", "EDMCoefficients", "UNetAdapter", "class_labels", "edm_coefficients",
           "forward_ad_compatible", "tiny_dit", "tiny_edm2", "tiny_unet", "SD3Adapter", "TextCondition",
           "scheduler_sigmas", "tiny_sd3", "tiny_text_condition", "DigitsSplit", "load_digits_split", "DigitsEvaluator",
           "Scores", "class_accuracy", "feature_stats", "frechet_distance", "inception_score", "DigitsUNet",
           "UNetConfig", *_LAZY_NAME]


def __getattr__(name: str):
    module = _LAZY_NAME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_NAME))
