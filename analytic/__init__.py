"""Exact mathematics of Gaussian-mixture diffusion and guidance (no training, no plotting).

The public contract: ``GaussianMixture``, ``CFGReward``, ``AutoGReward``, ``ClassifierReward`` and
``guidance_fields``; see README.md for the API at a glance.
"""
from .chain import ChainGolden, chain_golden, eps_from_denoiser, mixture_eps_fn
from .density import OutputDensity, output_density, tilted_start, vp_start
from .fields import (GuidanceFields, StepGaps, batch_jacobian, eps_jacobian, guidance_fields, guidance_fields_on_grid,
                     step_gaps)
from .golden import OptimalGuidance, check_integrable, optimal_denoiser, optimal_guidance
from .grid import GridGolden, golden_at_points, golden_on_grid
from .metrics import Distances, distances, energy_distance, field_errors, tilted_target
from .mixture import GaussianMixture, Posterior
from .paths import MixtureVelocity, PathFields, path_fields, path_marginal
from .presets import PRESETS, Preset, get_preset
from .rewards import AutoGReward, CFGReward, ClassifierReward, MixtureRatioReward, Quadratic, degrade

__all__ = [
    "GaussianMixture", "Posterior",
    "PathFields", "path_fields", "path_marginal", "MixtureVelocity",
    "CFGReward", "AutoGReward", "ClassifierReward", "MixtureRatioReward", "Quadratic", "degrade",
    "OptimalGuidance", "optimal_guidance", "optimal_denoiser", "check_integrable",
    "GridGolden", "golden_on_grid", "golden_at_points",
    "ChainGolden", "chain_golden", "eps_from_denoiser", "mixture_eps_fn",
    "GuidanceFields", "guidance_fields", "guidance_fields_on_grid", "eps_jacobian", "batch_jacobian",
    "StepGaps", "step_gaps",
    "Preset", "PRESETS", "get_preset",
    "OutputDensity", "output_density", "tilted_start", "vp_start",
    "Distances", "distances", "energy_distance", "field_errors", "tilted_target",
]
