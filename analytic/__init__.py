"""Exact mathematics of Gaussian-mixture diffusion and guidance (no sampling loops, no training, no plotting).

The public contract: ``GaussianMixture``, ``CFGReward``, ``AutoGReward``, ``ClassifierReward`` and
``guidance_fields``; see docs/api.md for the API at a glance. Output densities, distances, field-error
tables of samplers and the report live in :mod:`evaluation` (moved there in issue 10).
"""
from .chain import ChainGolden, chain_golden, eps_from_denoiser, mixture_eps_fn
from .fields import (REG_ESTIMATORS, GuidanceFields, StepGaps, batch_jacobian, eps_jacobian, guidance_fields,
                     guidance_fields_on_grid, reg_correction, reg_corrections, step_gaps)
from .golden import OptimalGuidance, optimal_denoiser, optimal_guidance
from .grid import GridGolden, PointsGolden, TiltedPosterior, golden_at_points, golden_on_grid, support_axes, tilted_posterior
from .integrability import check_integrable
from .mixture import GaussianMixture, Posterior
from .paths import MixtureVelocity, PathFields, path_fields, path_marginal
from .quadrature import DEFAULT_TOL, QuadratureTooLarge, ToleranceNotMet
from .presets import PRESETS, Preset, get_preset
from .measurement import DPSBias, DPSGap, MeasurementReward, dps_bias, dps_gap
from .three_class import (NEGATIVE, ClassMass, NegativePromptReward, class_log_posterior, class_mass,
                          class_mass_on_grid, negative_prompt_reward)
from .rewards import (AutoGReward, CFGReward, ClassifierReward, MixtureRatioReward, Quadratic, Reward, check_reward,
                      degrade)

__all__ = [
    "GaussianMixture", "Posterior",
    "PathFields", "path_fields", "path_marginal", "MixtureVelocity",
    "Reward", "check_reward", "CFGReward", "AutoGReward", "ClassifierReward", "MixtureRatioReward", "Quadratic",
    "degrade",
    "OptimalGuidance", "optimal_guidance", "optimal_denoiser", "check_integrable",
    "DEFAULT_TOL", "QuadratureTooLarge", "ToleranceNotMet",
    "GridGolden", "golden_on_grid", "PointsGolden", "golden_at_points", "TiltedPosterior", "tilted_posterior",
    "support_axes",
    "ChainGolden", "chain_golden", "eps_from_denoiser", "mixture_eps_fn",
    "GuidanceFields", "guidance_fields", "guidance_fields_on_grid", "eps_jacobian", "batch_jacobian",
    "REG_ESTIMATORS", "reg_correction", "reg_corrections", "StepGaps", "step_gaps",
    "Preset", "PRESETS", "get_preset",
    "MeasurementReward", "DPSGap", "dps_gap", "DPSBias", "dps_bias",
    "NEGATIVE", "NegativePromptReward", "negative_prompt_reward", "ClassMass", "class_log_posterior", "class_mass",
    "class_mass_on_grid",
]
