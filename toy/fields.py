"""Guidance fields of trained networks (CFG / AutoG and REG's estimators), beside the exact ones.

All fields are in eps units (the term added to ``eps_c``), exactly as :func:`analytic.guidance_fields`
defines them (THEORY.md section 6), at step ``t`` with ``c = sqrt(1 - abar_t)`` and
``J = d eps_c / d x_t`` of the *trained* conditional network (:func:`analytic.batch_jacobian`, reverse mode
for all points at once):

- ``present``: ``g = w (eps_c - eps_ref)`` (CFG with the unconditional network or the null label; AutoG with
  the weak network);
- ``reg_paper``: ``g * (1 - c J^T 1)``; ``reg_vjp``: ``g - c J^T g``; ``reg_diag``: ``g * (1 - c diag J)``
  (:func:`analytic.fields.reg_corrections`, the one eps-form formula).

:func:`exact_fields` gives the same four fields of the analytic mixture on the same points and steps. The
per-step error table against a golden is :func:`analytic.step_gaps` (``step_gaps(golden, f.by_method(),
f.steps)``), so the trained and exact cases are compared by one routine (:mod:`toy.golden`,
:func:`analytic.chain_golden` give their goldens).
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from analytic import GaussianMixture, batch_jacobian, guidance_fields
from analytic.fields import reg_corrections
from sampler.schedules import VPSchedule

from .golden import check_steps
from .model import net_eps_fn

__all__ = ["Fields", "METHODS", "trained_fields", "exact_fields"]

METHODS = ("present", "reg_paper", "reg_vjp", "reg_diag")


class Fields(NamedTuple):
    """Guidance fields at points [N, d] for steps ``steps`` (ascending as given); each field [S, N, d] float64."""

    steps: tuple[int, ...]
    abar: torch.Tensor  # [S]
    present: torch.Tensor
    reg_paper: torch.Tensor
    reg_vjp: torch.Tensor
    reg_diag: torch.Tensor

    def by_method(self) -> dict[str, torch.Tensor]:
        """``{method: field [S, N, d]}`` for :func:`analytic.step_gaps`."""
        return {m: getattr(self, m) for m in METHODS}


def _points(x) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.ndim != 2:
        raise ValueError(f"x must have shape [N, d], got {tuple(x.shape)}")
    return x


def trained_fields(net_c: Any, cond_c: Any, net_ref: Any, cond_ref: Any, w: float, schedule: VPSchedule, x, *,
                   steps=None) -> Fields:
    """Fields of trained networks at points ``x`` [N, d]: ``g = w (eps_c - eps_ref)`` and REG's corrections.

    CFG: ``net_ref`` the unconditional network with ``cond_ref=None`` (or the joint network with ``None``);
    AutoG: ``net_ref`` the weak network with the conditional label. Both reach the chain's eps through
    their contract adapter (:func:`toy.net_eps_fn`).
    """
    w = float(w)
    if not math.isfinite(w):
        raise ValueError(f"w must be finite, got {w}")
    x = _points(x)
    steps = check_steps(schedule, steps)
    fc, fr = net_eps_fn(net_c, cond_c, schedule), net_eps_fn(net_ref, cond_ref, schedule)
    out = {m: [] for m in METHODS}
    for t in steps:
        c = math.sqrt(1 - schedule.abar[t].item())
        J = batch_jacobian(lambda z: fc(z, t).to(torch.float64), x).detach()  # [N, d, d], J[n, i, j] = d eps_i / d x_j
        with torch.no_grad():
            g = w * (fc(x, t).to(torch.float64) - fr(x, t).to(torch.float64))
        out["present"].append(g)
        for name, v in zip(METHODS[1:], reg_corrections(g, J, c)):
            out[name].append(v)
    return Fields(steps, schedule.abar[list(steps)], *(torch.stack(out[m]) for m in METHODS))


def exact_fields(cond: GaussianMixture, reward, schedule: VPSchedule, x, *, steps=None) -> Fields:
    """The same fields of the analytic mixture (exact eps, exact Jacobian) at the same points and steps."""
    x = _points(x)
    steps = check_steps(schedule, steps)
    fs = [guidance_fields(cond, reward, x, schedule.abar[t].item()) for t in steps]
    return Fields(steps, schedule.abar[list(steps)], *(torch.stack([getattr(f, m) for f in fs]) for m in METHODS))
