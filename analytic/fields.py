"""The facade figures, notebooks and tests share: every guidance field at one noise level.

All fields are in eps units, i.e. the term added to ``eps_c`` (THEORY.md sections 4 and 6):

- ``golden``: ``-sqrt(1-abar) grad log E_t``, the ideal-chain optimum;
- ``present``: ``-sqrt(1-abar) grad log R_t``, what CFG / AutoG / CG apply (``g``);
- ``reg_paper``: ``g * (1 - c J^T 1)``; ``reg_vjp``: ``g - c J^T g``; ``reg_diag``: ``g * (1 - c diag J)``,
  with ``c = sqrt(1-abar)`` and ``J = d eps_c / d x_t`` the exact Jacobian of the conditional eps (autograd).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .golden import optimal_guidance
from .mixture import GaussianMixture, check_abar, check_points

__all__ = ["GuidanceFields", "guidance_fields", "guidance_fields_on_grid", "eps_jacobian", "reg_corrections"]


@dataclass(frozen=True)
class GuidanceFields:
    """Guidance fields at N points, each [N, d] float64, in eps units."""

    golden: torch.Tensor
    present: torch.Tensor
    reg_paper: torch.Tensor
    reg_vjp: torch.Tensor
    reg_diag: torch.Tensor
    golden_error: torch.Tensor  # [N, d] error estimate of ``golden`` (0 for closed forms)


def eps_jacobian(model: GaussianMixture, x_t, abar) -> torch.Tensor:
    """``J[n, i, j] = d eps_i / d x_j`` at each point, by autograd (one backward pass per output
    dimension; points are independent). [N, d, d]"""
    a = check_abar(abar)
    x = check_points(x_t, model.dim, model.device, "x_t").detach().requires_grad_(True)
    eps = model.eps(x, a)
    rows = [torch.autograd.grad(eps[:, i].sum(), x, retain_graph=i + 1 < model.dim)[0] for i in range(model.dim)]
    return torch.stack(rows, dim=1)


def guidance_fields(cond: GaussianMixture, reward, x_t, abar, **golden_kwargs) -> GuidanceFields:
    """Golden, present-time and REG guidance at points ``x_t`` [N, d] and noise level ``abar``.

    ``golden_kwargs`` go to :func:`analytic.golden.optimal_guidance` (``method``, ``tol``, ...).
    """
    a = check_abar(abar)
    x_t = check_points(x_t, cond.dim, cond.device, "x_t").detach()
    opt = optimal_guidance(cond, reward, x_t, a, **golden_kwargs)
    return _with_reg(cond, reward, x_t, a, opt.golden, math.sqrt(1 - a) * opt.err_grad)


def guidance_fields_on_grid(cond: GaussianMixture, reward, axes, abar, **grid_kwargs) -> GuidanceFields:
    """:func:`guidance_fields` on a whole 1-D/2-D tensor grid (rows in 'ij' order), with the golden from
    :func:`analytic.grid.golden_on_grid` (much faster than point by point; no error estimate: 0)."""
    from .grid import _grid_points, check_axes, golden_on_grid

    a = check_abar(abar)
    axes = check_axes(axes, cond.dim)
    x_t = _grid_points(axes)
    golden = golden_on_grid(cond, reward, axes, a, **grid_kwargs).golden.reshape(-1, cond.dim)
    return _with_reg(cond, reward, x_t, a, golden, torch.zeros_like(golden))


def reg_corrections(g: torch.Tensor, J: torch.Tensor, c: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """THEORY.md section 6 with an explicit Jacobian: ``(paper, vjp, diag)`` corrections of the guidance
    term ``g`` [N, d], with ``J[n, i, j] = d eps_i / d x_j`` [N, d, d] and ``c = sqrt(1 - abar)``."""
    return (g * (1 - c * J.sum(dim=1)),  # (J^T 1)_j = sum_i J_ij
            g - c * torch.einsum("nij,ni->nj", J, g),
            g * (1 - c * torch.diagonal(J, dim1=1, dim2=2)))


def _with_reg(cond, reward, x_t, a, golden, golden_error) -> GuidanceFields:
    g = reward.present(x_t, a).detach()  # [N, d]
    paper, vjp, diag = reg_corrections(g, eps_jacobian(cond, x_t, a), math.sqrt(1 - a))
    return GuidanceFields(golden=golden, present=g, reg_paper=paper, reg_vjp=vjp, reg_diag=diag,
                          golden_error=golden_error)
