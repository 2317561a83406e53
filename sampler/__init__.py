"""The shared sampler core: schedules, the model contract, guidance, REG and samplers.

It imports none of the model packages (analytic, toy, images)."""
from .model import Denoiser, EpsModel, MixtureModel, Model, VModel, X0Model, bind
from .schedules import PriorMismatch, VPSchedule, abar_to_sigma, karras_sigmas, prior_mismatch, sigma_to_abar
