"""Guidance fields of trained networks (CFG / AutoG and REG's estimators), beside the exact ones.

All fields are in eps units (the term added to ``eps_c``), exactly as :func:`analytic.guidance_fields`
defines them (THEORY.md section 6), at step ``t`` with ``c = sqrt(1 - abar_t)`` and
``J = d eps_c / d x_t`` of the *trained* conditional network (autograd, one pass per dimension):

- ``present``: ``g = w (eps_c - eps_ref)`` (CFG with the unconditional network or the null label; AutoG with
  the weak network);
- ``reg_paper``: ``g * (1 - c J^T 1)``; ``reg_vjp``: ``g - c J^T g``; ``reg_diag``: ``g * (1 - c diag J)``.

:func:`exact_fields` gives the same four fields of the analytic mixture on the same points and steps, and
:func:`field_errors` the per-step mean ``|golden - field|`` (optionally weighted), so the trained and exact
cases can be shown side by side against their goldens (:mod:`toy.golden`, :func:`analytic.chain_golden`).
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from analytic import GaussianMixture, guidance_fields
from analytic.fields import reg_corrections
from sampler.schedules import VPSchedule

from .model import eps_fn

__all__ = ["Fields", "FieldErrors", "trained_fields", "exact_fields", "field_errors"]


class Fields(NamedTuple):
    """Guidance fields at points [N, d] for steps ``steps``; each field [S, N, d] float64."""

    steps: tuple[int, ...]
    abar: torch.Tensor  # [S]
    present: torch.Tensor
    reg_paper: torch.Tensor
    reg_vjp: torch.Tensor
    reg_diag: torch.Tensor


class FieldErrors(NamedTuple):
    """Per-step mean ``|golden - field|`` (eps units, Euclidean norm over dimensions); each [S]."""

    present: torch.Tensor
    reg_paper: torch.Tensor
    reg_vjp: torch.Tensor
    reg_diag: torch.Tensor
    golden_size: torch.Tensor  # mean |golden|, for scale


def _steps(schedule: VPSchedule, steps) -> tuple[int, ...]:
    steps = tuple(range(1, schedule.T + 1)) if steps is None else tuple(int(s) for s in steps)
    for s in steps:
        if not 1 <= s <= schedule.T:
            raise ValueError(f"steps must lie in 1..{schedule.T}, got {s}")
    return steps


def _points(x) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.ndim != 2:
        raise ValueError(f"x must have shape [N, d], got {tuple(x.shape)}")
    return x


def trained_fields(net_c: Any, cond_c: Any, net_ref: Any, cond_ref: Any, w: float, schedule: VPSchedule, x, *,
                   steps=None) -> Fields:
    """Fields of trained networks at points ``x`` [N, d]: ``g = w (eps_c - eps_ref)`` and REG's corrections.

    CFG: ``net_ref`` the unconditional network with ``cond_ref=None`` (or the joint network with ``None``);
    AutoG: ``net_ref`` the weak network with the conditional label.
    """
    w = float(w)
    if not math.isfinite(w):
        raise ValueError(f"w must be finite, got {w}")
    x = _points(x)
    steps = _steps(schedule, steps)
    fc, fr = eps_fn(net_c, cond_c), eps_fn(net_ref, cond_ref)
    out = {k: [] for k in ("present", "reg_paper", "reg_vjp", "reg_diag")}
    d = x.shape[1]
    for t in steps:
        c = math.sqrt(1 - schedule.abar[t].item())
        xr = x.clone().requires_grad_(True)
        e_c = fc(xr, t).to(torch.float64)
        rows = [torch.autograd.grad(e_c[:, i].sum(), xr, retain_graph=i + 1 < d)[0] for i in range(d)]
        J = torch.stack(rows, dim=1).detach()  # [N, d, d], J[n, i, j] = d eps_i / d x_j
        with torch.no_grad():
            g = w * (e_c.detach() - fr(x, t).to(torch.float64))
        out["present"].append(g)
        for name, v in zip(("reg_paper", "reg_vjp", "reg_diag"), reg_corrections(g, J, c)):
            out[name].append(v)
    return Fields(steps, schedule.abar[list(steps)], *(torch.stack(out[k]) for k in out))


def exact_fields(cond: GaussianMixture, reward, schedule: VPSchedule, x, *, steps=None) -> Fields:
    """The same fields of the analytic mixture (exact eps, exact Jacobian) at the same points and steps."""
    x = _points(x)
    steps = _steps(schedule, steps)
    fs = [guidance_fields(cond, reward, x, schedule.abar[t].item()) for t in steps]
    return Fields(steps, schedule.abar[list(steps)], *(torch.stack([getattr(f, k) for f in fs])
                                                        for k in ("present", "reg_paper", "reg_vjp", "reg_diag")))


def field_errors(fields: Fields, golden: torch.Tensor, weights: torch.Tensor | None = None) -> FieldErrors:
    """Per-step mean ``||golden - field||`` with ``golden`` [S, N, d] on the same points (a grid golden
    [S, n_1, n_2, d] is flattened in 'ij' order); ``weights`` [S, N] or [N] (e.g. ``p_t(x|y)``) weight the mean."""
    S, N, d = fields.present.shape
    golden = golden.reshape(golden.shape[0], -1, golden.shape[-1]).to(torch.float64)
    if golden.shape != (S, N, d):
        raise ValueError(f"golden has shape {tuple(golden.shape)}, the fields {(S, N, d)}")
    if weights is None:
        wts = torch.full((S, N), 1.0 / N, dtype=torch.float64)
    else:
        wts = torch.as_tensor(weights, dtype=torch.float64).expand(S, N)
        if torch.any(wts < 0) or torch.any(wts.sum(1) <= 0):
            raise ValueError("weights must be non-negative with a positive sum per step")
        wts = wts / wts.sum(1, keepdim=True)

    def err(f):
        return ((golden - f).norm(dim=-1) * wts).sum(1)

    return FieldErrors(err(fields.present), err(fields.reg_paper), err(fields.reg_vjp), err(fields.reg_diag),
                       (golden.norm(dim=-1) * wts).sum(1))
