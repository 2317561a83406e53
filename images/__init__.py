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
from .classifier import ClassifierConfig, DigitsClassifier, load_classifier, train_classifier
from .data import DigitsSplit, load_digits_split
from .metrics import DigitsEvaluator, Scores, class_accuracy, feature_stats, frechet_distance, inception_score
from .pipelines import LatentPipeline, SDUNetAdapter, load_dit_pipeline, load_sd_pipeline
from .sweep import SweepConfig, SweepResult, SweepRow
from .train import TrainConfig, load_model, load_unet, resolve_device, save_checkpoint, train_unet
from .unet import DigitsUNet, UNetConfig
