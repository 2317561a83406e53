"""REG, rectified gradient guidance (arXiv 2501.18865), as a modifier of any guidance (THEORY.md section 6).

In ``D``-form the whole idea is one line: the guidance term ``delta = guided - D_c`` (``D`` units) is
pulled back through the Jacobian ``J_D = dD_c/dx`` of the conditional denoiser,

    D_REG = D_c + J_D^T delta.

With ``D = x - sigma eps`` and ``x_vp = sqrt(abar) x``: ``J_D = I - c J`` where ``J = d eps_c / d x_vp`` and
``c = sqrt(1 - abar)``; with ``delta = -sigma g`` this is exactly THEORY's eps-form ``g - c J^T g``
(the eps-form with an explicit Jacobian, for tests and figures, is ``analytic.fields.reg_correction``).

Estimators of the correction (``ESTIMATORS``):

| name  | correction of delta             | cost (beyond the guidance's own calls)              |
|-------|---------------------------------|-----------------------------------------------------|
| paper | ``delta * (J_D^T 1)``           | one backward pass (the paper's rule, ``grad_x sum D_c``) |
| vjp   | ``J_D^T delta``                 | one backward pass (the chain rule, no diagonal assumption) |
| diag  | ``diag(J_D) * delta``           | ``d`` backward passes; refused above ``max_diag_dim`` |
| jvp   | ``J_D delta``                   | one forward-mode pass (``J`` in place of ``J^T``)    |
| fd    | ``(D_c(x + h delta) - D_c(x)) / h`` | one extra forward pass, no autograd at all (``central=True``: two) |

``jvp`` and ``fd`` equal ``vjp`` when ``J_D`` is symmetric (exact scores: ``J_D = Cov(x_0|x)/sigma^2``).
The batch Jacobian is taken through ``sum`` over the batch, so samples must not interact (no BatchNorm
in train mode). Only the conditional branch is differentiated; the REG output is detached.
Where the guidance is inactive (weight 0, e.g. outside an interval) REG evaluates ``D_c`` alone, in the
caller's grad mode: no extra network call and no autograd graph.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import torch
import torch.autograd.forward_ad as fwAD

from .guidance import Guidance
from .schedules import check_count, check_number

__all__ = ["ESTIMATORS", "REG"]

ESTIMATORS = ("paper", "vjp", "diag", "jvp", "fd")


def _check_estimator(estimator: str) -> str:
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown REG estimator {estimator!r}; choose one of {ESTIMATORS}")
    return estimator


def _not_differentiable(what: str) -> ValueError:
    return ValueError(
        f"REG needs a conditional denoiser differentiable in x, but its output {what}; "
        "use estimator='fd' for a model without autograd support"
    )


_FORWARD_AD_LOADED = False


def _load_forward_ad() -> None:
    """torch loads its forward-AD decompositions on the first ``make_dual`` with a torch.jit deprecation
    warning about its own internals; load them once, quietly."""
    global _FORWARD_AD_LOADED
    if not _FORWARD_AD_LOADED:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*torch.jit.script.*")
            with fwAD.dual_level():
                fwAD.make_dual(torch.zeros(1), torch.zeros(1))
        _FORWARD_AD_LOADED = True


def _per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-sample scalar [N] shaped to broadcast against x [N, ...]."""
    return v.reshape((x.shape[0],) + (1,) * (x.ndim - 1))


@dataclass(frozen=True)
class REG:
    """``REG(guidance, estimator)(x, sigma) -> D_c + corrected delta`` for any guidance object.

    Args:
        guidance: any :class:`~sampler.guidance.Guidance` (``cond``, ``active``, ``delta``).
        estimator: one of ``ESTIMATORS`` (see the module docstring).
        max_diag_dim: ``diag`` refuses per-sample dimensions above this (it costs one backward pass per
            dimension).
        fd_step: relative finite-difference step; the perturbation of sample ``n`` is ``h_n delta_n`` with
            ``rms(h_n delta_n) = fd_step * max(rms(x_n), 1)``. Default ``sqrt(eps)`` of the dtype
            (forward difference) or ``eps^(1/3)`` (central).
        fd_central: central instead of forward difference (second order, one more forward pass).
    """

    guidance: Guidance
    estimator: str = "vjp"
    max_diag_dim: int = 64
    fd_step: Optional[float] = None
    fd_central: bool = False

    def __post_init__(self):
        for attr in ("cond", "active", "delta"):
            if not hasattr(self.guidance, attr):
                raise ValueError(f"REG needs a guidance object with cond, active and delta; {self.guidance!r} has no {attr}")
        _check_estimator(self.estimator)
        object.__setattr__(self, "max_diag_dim", check_count(self.max_diag_dim, "max_diag_dim"))
        if self.fd_step is not None:
            step = check_number(self.fd_step, "fd_step")
            if step <= 0:
                raise ValueError(f"fd_step must be a positive number, got {self.fd_step!r}")
            object.__setattr__(self, "fd_step", step)
        if not isinstance(self.fd_central, bool):
            raise ValueError(f"fd_central must be True or False, got {self.fd_central!r}")

    @property
    def cond(self):
        return self.guidance.cond

    def active(self, sigma: float) -> bool:
        return self.guidance.active(sigma)

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        g = self.guidance
        if not g.active(sigma):
            return g.cond(x, sigma)
        est = self.estimator
        if est in ("paper", "vjp", "diag"):
            return self._backward(x, sigma)
        elif est == "jvp":
            return self._jvp(x, sigma)
        elif est == "fd":
            return self._fd(x, sigma)
        else:
            raise ValueError(f"unknown REG estimator {est!r}; choose one of {ESTIMATORS}")

    # --- reverse mode: paper, vjp, diag ------------------------------------------------------------
    def _backward(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        g, est = self.guidance, self.estimator
        d = x[0].numel() if x.shape[0] else 0
        if est == "diag" and d > self.max_diag_dim:
            raise ValueError(
                f"REG estimator 'diag' is exact and costs one backward pass per dimension; dimension {d} "
                f"exceeds max_diag_dim={self.max_diag_dim} (use 'paper', 'vjp', 'jvp' or 'fd')"
            )
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            d_c = g.cond(xg, sigma)  # [N, ...], with graph
        if not d_c.requires_grad:
            raise _not_differentiable("does not require grad when x does")
        with torch.no_grad():
            d_val = d_c.detach()
            delta = g.delta(x.detach(), sigma, d_val)  # [N, ...], D units
        if est == "paper":
            (jt1,) = torch.autograd.grad(d_c, xg, torch.ones_like(d_c))  # J_D^T 1 = grad_x sum(D_c)
            corr = jt1 * delta
        elif est == "vjp":
            (corr,) = torch.autograd.grad(d_c, xg, delta)  # J_D^T delta
        elif est == "diag":
            with torch.enable_grad():
                flat = d_c.flatten(1)  # [N, d]
                diag = torch.empty_like(d_val.reshape(flat.shape))
                for i in range(d):
                    (row,) = torch.autograd.grad(flat[:, i].sum(), xg, retain_graph=i < d - 1)
                    diag[:, i] = row.flatten(1)[:, i]  # dD_i/dx_i per sample
            corr = diag.reshape(d_c.shape) * delta
        else:
            raise ValueError(f"not a reverse-mode REG estimator: {est!r}")
        return d_val + corr.detach()

    # --- forward mode ------------------------------------------------------------------------------
    def _jvp(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        g = self.guidance
        _load_forward_ad()
        with torch.no_grad():
            x0 = x.detach()
            d_c = g.cond(x0, sigma)
            delta = g.delta(x0, sigma, d_c)
            with fwAD.dual_level():
                try:
                    out = g.cond(fwAD.make_dual(x0, delta.to(x0.dtype)), sigma)
                except (NotImplementedError, RuntimeError) as err:  # an op without a forward-mode rule
                    raise ValueError(
                        f"REG estimator 'jvp' needs forward-mode autograd through the model, which failed: {err}. "
                        "Use 'vjp' or 'fd', or for diffusers networks images.forward_ad_compatible(net)"
                    ) from err
                tangent = fwAD.unpack_dual(out).tangent  # J_D delta
        if tangent is None:
            raise _not_differentiable("carries no forward-mode tangent")
        return d_c + tangent

    # --- finite difference -------------------------------------------------------------------------
    def _fd(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        g = self.guidance
        with torch.no_grad():
            x0 = x.detach()
            d_c = g.cond(x0, sigma)
            delta = g.delta(x0, sigma, d_c)
            eps = torch.finfo(x0.dtype).eps
            step = self.fd_step if self.fd_step is not None else (eps ** (1 / 3) if self.fd_central else eps**0.5)
            rms_x = x0.flatten(1).pow(2).mean(1).sqrt().clamp(min=1.0)  # [N]
            rms_d = delta.flatten(1).pow(2).mean(1).sqrt()  # [N]
            moving = rms_d > 0  # [N]; where delta = 0 the correction is 0
            h = torch.where(moving, step * rms_x / torch.where(moving, rms_d, 1.0), 0.0)  # [N]
            hb, denom = _per_sample(h, x0), _per_sample(torch.where(moving, h, 1.0), x0)
            if self.fd_central:
                diff = (g.cond(x0 + hb * delta, sigma) - g.cond(x0 - hb * delta, sigma)) / (2 * denom)
            else:
                diff = (g.cond(x0 + hb * delta, sigma) - d_c) / denom
            corr = diff * _per_sample(moving, x0)  # J_D delta
        return d_c + corr
