"""The shared sampler core: schedules, the model contract, guidance, REG and samplers.

It imports none of the model packages (analytic, toy, images)."""
from .device import resolve_device
from .guidance import CFG, AutoGuidance, ClassifierGuidance, Guidance, TiltedMean, Unguided
from .levels import sampling_levels, schedule_from_diffusers_config
from .model import Denoiser, EpsModel, MixtureModel, Model, VModel, X0Model, bind
from .reg import ESTIMATORS, REG, reg_eps_explicit
from .samplers import SAMPLERS, Step, check_sigmas, ddim, ddpm, euler, heun, sample, ve_prior, vp_prior
from .schedules import PriorMismatch, VPSchedule, abar_to_sigma, karras_sigmas, prior_mismatch, sigma_to_abar
from .weights import Constant, Cosine, Interval, LinearRamp, WeightSchedule, as_schedule, s_to_w, w_to_s
