"""The facade figures, notebooks and tests share: every guidance field at one noise level.

All fields are in eps units, i.e. the term added to ``eps_c`` (THEORY.md sections 4 and 6):

- ``golden``: ``-sqrt(1-abar) grad log E_t``, the ideal-chain optimum;
- ``present``: ``-sqrt(1-abar) grad log R_t``, what CFG / AutoG / CG apply (``g``);
- ``reg_paper``: ``g * (1 - c J^T 1)``; ``reg_vjp``: ``g - c J^T g``; ``reg_diag``: ``g * (1 - c diag J)``,
  with ``c = sqrt(1-abar)`` and ``J = d eps_c / d x_t`` the exact Jacobian of the conditional eps (autograd).
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, NamedTuple

import torch

from .golden import optimal_guidance
from .grid import golden_on_grid
from .mixture import GaussianMixture, check_abar, check_points
from .quadrature import DEFAULT_TOL, check_axes, grid_points
from .reducible import reducible_form
from .reducible_golden import guidance_fields_reducible
from .results import GuidanceFields

__all__ = ["GuidanceFields", "guidance_fields", "guidance_fields_on_grid", "eps_jacobian", "batch_jacobian",
           "REG_ESTIMATORS", "reg_correction", "reg_corrections", "StepGaps", "step_gaps"]


def batch_jacobian(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``J[n, i, j] = d f(x)_{n, i} / d x_{n, j}`` for a map ``f`` [N, d] -> [N, d] whose rows are independent
    (every point a sample of its own), by reverse mode: the Jacobian of ``sum_n f(x)_n`` with respect
    to ``x`` (``torch.func.jacrev``), d backward passes for all points at once. [N, d, d]"""
    J = torch.func.jacrev(lambda z: f(z).sum(0))(x)  # [d, N, d]
    return J.permute(1, 0, 2)


def eps_jacobian(model: GaussianMixture, x_t, abar) -> torch.Tensor:
    """``J[n, i, j] = d eps_i / d x_j`` of the mixture's exact eps at each point (autograd). [N, d, d]"""
    a = check_abar(abar)
    x = check_points(x_t, model.dim, model.device, "x_t").detach()
    return batch_jacobian(lambda z: model.eps(z, a), x)


def guidance_fields(cond: GaussianMixture, reward, x_t, abar, *, tol: float | None = None,
                    **golden_kwargs) -> GuidanceFields:
    """Golden, present-time and REG guidance at points ``x_t`` [N, d] and noise level ``abar``.

    ``tol`` and ``golden_kwargs`` go to :func:`analytic.golden.optimal_guidance` (``method``, ``max_nodes``,
    ...): ``tol`` is the absolute tolerance on ``golden`` in eps units (default 1e-6; for ``method="is"``
    a standard error, default 1e-2), and ``golden_error`` its estimate. The other fields are closed forms.
    With ``method`` auto, a problem of the reducible family in d > 2 (THEORY.md section 9) takes the exact
    route of :func:`analytic.reducible_golden.guidance_fields_reducible` (REG fields from the structured
    Jacobian, never forming ``d x d``); ``method`` of the result says which route made the golden.
    """
    a = check_abar(abar)
    x_t = check_points(x_t, cond.dim, cond.device, "x_t").detach()
    if golden_kwargs.get("method", "auto") == "auto" and cond.dim > 2:
        reduced = reducible_form(cond, reward)  # the reducible family: exact in any d, O(d m^2) REG fields
        if reduced is not None and reward.quadratic() is None:  # single Gaussians keep the closed form
            opt = optimal_guidance(cond, reward, x_t, a, tol=tol, **golden_kwargs)  # the reduced route, or its fallback
            return guidance_fields_reducible(*reduced, x_t, a, golden=opt)
    opt = optimal_guidance(cond, reward, x_t, a, tol=tol, **golden_kwargs)
    return _with_reg(cond, reward, x_t, a, opt.golden, opt.golden_error, opt.method)


def guidance_fields_on_grid(cond: GaussianMixture, reward, axes, abar, *, tol: float = DEFAULT_TOL,
                            **grid_kwargs) -> GuidanceFields:
    """:func:`guidance_fields` on a whole 1-D/2-D tensor grid (rows in 'ij' order), with the golden from
    :func:`analytic.grid.golden_on_grid` to the absolute tolerance ``tol`` (eps units) and its error
    estimate (much faster than point by point)."""
    a = check_abar(abar)
    axes = check_axes(axes, cond.dim)
    x_t = grid_points(axes)
    g = golden_on_grid(cond, reward, axes, a, tol=tol, **grid_kwargs)
    return _with_reg(cond, reward, x_t, a, g.golden.reshape(-1, cond.dim), g.golden_error.reshape(-1, cond.dim),
                     "grid")


REG_ESTIMATORS = ("paper", "vjp", "diag", "jvp", "fd")


def reg_correction(g: torch.Tensor, J: torch.Tensor, c: float, estimator: str) -> torch.Tensor:
    """THEORY.md section 6 in eps form with an explicit Jacobian, the one place it is written: the REG
    correction of the guidance term ``g`` [N, d] (``eps_REG = eps_c + correction``), with
    ``J[n, i, j] = d eps_i / d x_j`` [N, d, d] of the conditional branch and ``c = sqrt(1 - abar)``.
    ``jvp`` and ``fd`` both mean ``J`` in place of ``J^T`` (what ``sampler.REG`` estimates without a
    backward pass). [N, d]"""
    if estimator == "paper":
        return g * (1 - c * J.sum(dim=1))  # (J^T 1)_j = sum_i J_ij
    elif estimator == "vjp":
        return g - c * torch.einsum("nij,ni->nj", J, g)
    elif estimator == "diag":
        return g * (1 - c * torch.diagonal(J, dim1=1, dim2=2))
    elif estimator in ("jvp", "fd"):
        return g - c * torch.einsum("nij,nj->ni", J, g)
    else:
        raise ValueError(f"unknown REG estimator {estimator!r}; choose one of {REG_ESTIMATORS}")


def reg_corrections(g: torch.Tensor, J: torch.Tensor, c: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``(paper, vjp, diag)`` corrections of :func:`reg_correction` (the fields :class:`GuidanceFields` holds)."""
    return tuple(reg_correction(g, J, c, e) for e in ("paper", "vjp", "diag"))


def _with_reg(cond, reward, x_t, a, golden, golden_error, method: str) -> GuidanceFields:
    g = reward.present(x_t, a).detach()  # [N, d]
    if x_t.shape[0] == 0:  # an empty batch: empty fields (autograd has no rows to differentiate)
        return GuidanceFields(golden=golden, present=g, reg_paper=g, reg_vjp=g, reg_diag=g, golden_error=golden_error,
                              method=method)
    paper, vjp, diag = reg_corrections(g, eps_jacobian(cond, x_t, a), math.sqrt(1 - a))
    return GuidanceFields(golden=golden, present=g, reg_paper=paper, reg_vjp=vjp, reg_diag=diag,
                          golden_error=golden_error, method=method)


class StepGaps(NamedTuple):
    """Per-step mean ``||golden - field||`` (eps units, Euclidean norm per point) of named fields.

    ``gaps[m, s]`` belongs to ``methods[m]`` at ``steps[s]``; steps ascend (``t = 1..T`` order)."""

    steps: tuple[int, ...]
    methods: tuple[str, ...]
    gaps: torch.Tensor  # [M, S]
    golden_size: torch.Tensor  # [S] mean ||golden||, for scale

    def of(self, method: str) -> torch.Tensor:
        """The row of ``method``. [S]"""
        return self.gaps[self.methods.index(method)]


def step_gaps(golden: torch.Tensor, fields: Mapping[str, torch.Tensor], steps, weights: torch.Tensor | None = None
              ) -> StepGaps:
    """The one per-step field-error table: ``golden`` [S, N, d] and each field [S, N, d] on the same points
    (grid fields [S, n_1(, n_2), d] are flattened in 'ij' order); ``weights`` [S, N] or [N] (e.g.
    ``p_t(x | y)``, normalised per step here) or ``None`` for the plain mean over points."""
    steps = tuple(int(t) for t in steps)
    golden = golden.reshape(golden.shape[0], -1, golden.shape[-1]).to(torch.float64)
    S, N, d = golden.shape
    if len(steps) != S:
        raise ValueError(f"golden has {S} steps but {len(steps)} step indices were given")
    if list(steps) != sorted(steps):
        raise ValueError(f"steps must ascend (t = 1..T order), got {steps}")
    if not fields:
        raise ValueError("need at least one field to compare")
    if weights is None:
        wts = torch.full((S, N), 1.0 / N, dtype=torch.float64)
    else:
        wts = torch.as_tensor(weights, dtype=torch.float64).expand(S, N)
        if torch.any(wts < 0) or torch.any(wts.sum(1) <= 0) or not torch.all(torch.isfinite(wts)):
            raise ValueError("weights must be finite and non-negative with a positive sum per step")
        wts = wts / wts.sum(1, keepdim=True)
    rows = []
    for name, f in fields.items():
        f = f.reshape(f.shape[0], -1, f.shape[-1]).to(torch.float64)
        if f.shape != golden.shape:
            raise ValueError(f"field {name!r} has shape {tuple(f.shape)}, the golden {tuple(golden.shape)}")
        rows.append(((golden - f).norm(dim=-1) * wts).sum(1))
    return StepGaps(steps, tuple(fields), torch.stack(rows), (golden.norm(dim=-1) * wts).sum(1))
