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
