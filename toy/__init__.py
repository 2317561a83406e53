"""The small trained MLP denoiser (1-D and 2-D), its data, training, checkpoints and trained goldens.

Names: ``toy.training`` is the training library (:func:`train_network`), ``python -m toy.train`` the
command that trains them (into ``out/toy/checkpoints``; it replaces the shipped checkpoints only when asked).
A network reaches samplers through its one contract adapter :func:`toy_model` (bind a label with
``sampler.bind``); the chain goldens take the ``eps_fn`` derived from it, :func:`net_eps_fn`. Per-step field
errors: :func:`analytic.step_gaps`.
"""
from .checkpoints import (CHECKPOINT_DIR, Checkpoint, available_checkpoints, checkpoint_path, load_checkpoint,
                          load_pretrained, save_checkpoint)
from .data import NULL_LABEL, ROLES, ToyData, make_data, num_classes, role_mixture
from .model import MLP, MLPConfig, SinusoidalEmbedding, net_device, net_eps_fn, toy_model
from .fields import Fields, exact_fields, trained_fields
from .golden import GoldenComparison, MCGolden, check_steps, compare_goldens, grid_golden, mc_golden
from .quality import EpsError, W1Result, eps_error, sample_w1, w1_to_mixture
from .training import TrainConfig, TrainResult, default_config, resolve_device, train_network

__all__ = [
    "ROLES", "NULL_LABEL", "ToyData", "make_data", "num_classes", "role_mixture",
    "MLP", "MLPConfig", "SinusoidalEmbedding", "toy_model", "net_eps_fn", "net_device",
    "TrainConfig", "TrainResult", "default_config", "resolve_device", "train_network",
    "CHECKPOINT_DIR", "Checkpoint", "save_checkpoint", "load_checkpoint", "checkpoint_path", "load_pretrained",
    "available_checkpoints",
    "EpsError", "W1Result", "eps_error", "sample_w1", "w1_to_mixture",
    "MCGolden", "mc_golden", "grid_golden", "GoldenComparison", "compare_goldens", "check_steps",
    "Fields", "trained_fields", "exact_fields",
]
