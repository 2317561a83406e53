"""The shared sampler core: schedules and paths (VP, VE, linear/flow), the model contract, guidance, REG and samplers,
and the file primitives every package uses (atomic writes, checkpoint-weight digests: ``sampler.files``).

It imports none of the model packages (analytic, toy, images)."""
from .device import resolve_device
from .files import check_state_dict, save_torch_atomically, state_dict_sha256, write_atomically
from .flow_guidance import APG, CFGZeroStar, ZeroInit, optimised_scale, resolve_path, zero_init_sigma
from .guidance import CFG, AutoGuidance, ClassifierGuidance, Guidance, TiltedMean, Unguided
from .levels import sampling_levels, schedule_from_diffusers_config
from .model import Bound, Denoiser, EpsModel, MixtureModel, Model, VelocityModel, VModel, X0Model, bind, model_path
from .paths import (LINEAR, T_NOISE_CAP, LinearPath, Path, PathPoint, VEPath, VPPath, denoised_from_velocity, get_path,
                    logit_normal_times, sampling_sigmas, shift_times, uniform_times, velocity_from_denoised)
from .reg import ESTIMATORS, REG
from .samplers import SAMPLERS, Step, check_sigmas, ddim, ddim_coefficients, ddpm, euler, heun, sample, ve_prior, vp_prior
from .schedules import (MAX_LEVELS, PriorMismatch, VPSchedule, abar_to_sigma, karras_sigmas, prior_mismatch,
                        sigma_to_abar)
from .weights import Constant, Cosine, Interval, LinearRamp, WeightSchedule, as_schedule, s_to_w, w_to_s
from .practice import (CFGNorm, Characteristic, CharacteristicNotConverged, CharacteristicSolution, DynamicThresholding,
                       GuidanceRescale, MamboG, TCFG, top_singular_projection)
from .rectified import rectified_cfgpp
