"""The small trained MLP denoiser (1-D and 2-D), its data, training, checkpoints and trained goldens."""
from .checkpoints import (CHECKPOINT_DIR, Checkpoint, available_checkpoints, checkpoint_path, load_checkpoint,
                          load_pretrained, save_checkpoint)
from .data import NULL_LABEL, ROLES, ToyData, make_data, num_classes, role_mixture
from .model import MLP, MLPConfig, SinusoidalEmbedding, eps_fn, toy_model
from .fields import FieldErrors, Fields, exact_fields, field_errors, trained_fields
from .golden import GoldenComparison, MCGolden, compare_goldens, grid_golden, mc_golden
from .quality import EpsError, W1Result, eps_error, sample_w1, w1_to_mixture
from .training import TrainConfig, TrainResult, default_config, resolve_device, train

__all__ = [
    "ROLES", "NULL_LABEL", "ToyData", "make_data", "num_classes", "role_mixture",
    "MLP", "MLPConfig", "SinusoidalEmbedding", "eps_fn", "toy_model",
    "TrainConfig", "TrainResult", "default_config", "resolve_device", "train",
    "CHECKPOINT_DIR", "Checkpoint", "save_checkpoint", "load_checkpoint", "checkpoint_path", "load_pretrained",
    "available_checkpoints",
    "EpsError", "W1Result", "eps_error", "sample_w1", "w1_to_mixture",
    "MCGolden", "mc_golden", "grid_golden", "GoldenComparison", "compare_goldens",
    "Fields", "FieldErrors", "trained_fields", "exact_fields", "field_errors",
]
