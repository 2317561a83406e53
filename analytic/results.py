"""The result types the exact guidance routines share: :class:`OptimalGuidance` (the ideal-chain optimum at N
points) and :class:`GuidanceFields` (golden, present-time and REG fields at N points).

They sit below :mod:`analytic.golden`, :mod:`analytic.fields` and :mod:`analytic.reducible_golden`, so the dense
routes can hand a problem of the reducible family (THEORY.md section 9) to the exact reduced route and return the
same types, without an import cycle.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

__all__ = ["OptimalGuidance", "GuidanceFields"]


class OptimalGuidance(NamedTuple):
    """The exact optimum at N points. All tensors are float64 and detached."""

    log_E: torch.Tensor  # [N]      log E_t(x_t)
    grad_log_E: torch.Tensor  # [N, d]   grad_{x_t} log E_t
    tilted_mean: torch.Tensor  # [N, d]   m_R, the optimal guided x0_hat
    golden: torch.Tensor  # [N, d]   -sqrt(1 - abar) grad log E_t, the term added to eps_c
    err_log_E: torch.Tensor  # [N]      error estimate of log_E (quadrature: refinement; IS: standard error)
    err_grad: torch.Tensor  # [N, d]   the same for grad_log_E
    method: str  # "closed" | "grid" | "gh" | "is" | "subspace" | "radial" (reducible family) | "exact" (abar = 1)
    nodes: int  # nodes per dimension (gh, subspace, radial), samples per component (is), 0 otherwise
    golden_error: torch.Tensor  # [N, d]   the same for golden (eps units)
    err_tilted_mean: torch.Tensor  # [N, d]   the same for tilted_mean (x_0 units)


@dataclass(frozen=True)
class GuidanceFields:
    """Guidance fields at N points, each [N, d] float64, in eps units."""

    golden: torch.Tensor
    present: torch.Tensor
    reg_paper: torch.Tensor
    reg_vjp: torch.Tensor
    reg_diag: torch.Tensor
    golden_error: torch.Tensor  # [N, d] error estimate of ``golden`` (0 for closed forms)
    method: str  # how the golden was computed: ``OptimalGuidance.method``
