"""Exact mathematics of Gaussian-mixture diffusion and guidance (no training, no plotting)."""
from .mixture import GaussianMixture, Posterior
from .rewards import AutoGReward, CFGReward, ClassifierReward, MixtureRatioReward, Quadratic, degrade

__all__ = [
    "GaussianMixture",
    "Posterior",
    "CFGReward",
    "AutoGReward",
    "ClassifierReward",
    "MixtureRatioReward",
    "Quadratic",
    "degrade",
]
from .fields import GuidanceFields, eps_jacobian, guidance_fields
from .golden import OptimalGuidance, check_integrable, optimal_guidance

__all__ += ["GuidanceFields", "guidance_fields", "eps_jacobian", "OptimalGuidance", "optimal_guidance",
            "check_integrable"]
