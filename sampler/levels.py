"""Which noise levels a sampler walks, and the VP schedule a diffusers scheduler configuration describes.

- :func:`sampling_levels`: ``K + 1`` decreasing levels (ending in 0) of a discrete VP schedule for a named
  sampler, every one a level of the schedule, so a discrete-time ``EpsModel`` / ``VModel`` accepts them.
- :func:`schedule_from_diffusers_config`: the ``VPSchedule`` of a diffusers ``scheduler_config.json``
  (``beta_schedule`` ``linear``, ``scaled_linear`` or ``squaredcos_cap_v2``, or ``trained_betas``).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch

from .samplers import SAMPLERS
from .schedules import VPSchedule, check_count, check_number, check_steps, karras_sigmas

__all__ = ["sampling_levels", "schedule_from_diffusers_config", "DIFFUSERS_BETA_SCHEDULES"]

DIFFUSERS_BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def sampling_levels(schedule: VPSchedule, sampler_name: str, n_steps: int) -> torch.Tensor:
    """Noise levels ``[K + 1]`` (decreasing, ending in 0) for ``sampler_name``, all levels of ``schedule``.

    ``ddpm`` / ``ddim`` / ``euler``: the DDPM respacing (even in ``t``, ``K = n_steps``); ``heun``: the
    levels nearest (in log sigma) to EDM's grid (Karras et al. 2022, rho = 7) between the schedule's
    smallest and largest level, which the ODE solver needs (even-in-``t`` levels leave huge steps at high
    noise); neighbours that round to the same level are merged, so ``2 <= K <= n_steps`` there.
    """
    if not isinstance(schedule, VPSchedule):
        raise ValueError(f"schedule must be a VPSchedule, got {type(schedule).__name__}")
    if check_count(n_steps, "n_steps") > schedule.T:
        raise ValueError(f"n_steps must be an integer in [1, {schedule.T}], got {n_steps!r}")
    if sampler_name == "heun":
        sig = schedule.sigmas  # [T + 1], increasing, sig[0] = 0
        target = karras_sigmas(int(n_steps), float(sig[1]), float(sig[-1]))[:-1]  # [n]
        idx = torch.argmin((sig[1:, None].log() - target[None].log()).abs(), dim=0) + 1  # [n]
        idx = torch.unique(idx).flip(0)  # decreasing step indices
        return torch.cat([sig[idx], torch.zeros(1, dtype=sig.dtype)])
    elif sampler_name in SAMPLERS:
        return schedule.respace(int(n_steps)).sampling_sigmas()
    else:
        raise ValueError(f"unknown sampler {sampler_name!r}; choose from {SAMPLERS}")


def schedule_from_diffusers_config(config: Mapping[str, Any]) -> VPSchedule:
    """The ``VPSchedule`` of a diffusers scheduler configuration (the dict of ``scheduler_config.json``).

    Keys read: ``trained_betas`` (wins when present), else ``beta_schedule`` (default ``linear``),
    ``beta_start`` (1e-4), ``beta_end`` (0.02), ``num_train_timesteps`` (1000). ``scaled_linear`` is
    Stable Diffusion's ``linspace(sqrt(beta_start), sqrt(beta_end), T) ** 2``; ``squaredcos_cap_v2`` is
    :meth:`VPSchedule.cosine`. Unknown kinds and bad values raise ``ValueError`` naming them.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be a mapping (a scheduler_config.json), got {type(config).__name__}")
    if config.get("trained_betas") is not None:
        sched = VPSchedule.from_betas(config["trained_betas"])
        T = config.get("num_train_timesteps", sched.T)
        if T != sched.T:  # the network was trained on one of the two: refuse to guess which
            raise ValueError(f"trained_betas has {sched.T} steps but num_train_timesteps is {T!r}")
        return sched
    T = check_steps(config.get("num_train_timesteps", 1000), "num_train_timesteps")
    kind = config.get("beta_schedule", "linear")
    b0 = check_number(config.get("beta_start", 1e-4), "beta_start")
    b1 = check_number(config.get("beta_end", 0.02), "beta_end")
    if kind == "linear":
        return VPSchedule.linear(T, b0, b1)
    elif kind == "scaled_linear":
        if not 0 < b0 <= b1 < 1:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {b0}, {b1}")
        return VPSchedule.from_betas(torch.linspace(math.sqrt(b0), math.sqrt(b1), T, dtype=torch.float64) ** 2)
    elif kind == "squaredcos_cap_v2":
        return VPSchedule.cosine(T)
    else:
        raise ValueError(f"unsupported beta_schedule {kind!r}; supported: {', '.join(DIFFUSERS_BETA_SCHEDULES)}")
