"""Exact Gaussian-mixture quantities on any Gaussian path ``x_t = alpha_t x_0 + sigma_t eps`` (THEORY.md section 8).

At time ``t`` the path is the VE process at ``s = sigma_t / alpha_t`` seen in coordinates scaled by ``alpha_t``
(``x~ = x_t / alpha_t``), so every field follows from the one exact denoiser ``D(x~, s)``
(:meth:`GaussianMixture.denoise`): ``x0^ = D``, ``eps^ = (x~ - D) / s``, ``grad_{x_t} log p_t = -eps^ / sigma_t``
and the velocity ``v = E[dx_t/dt | x_t] = alpha_t' x0^ + sigma_t' eps^`` (linear path: ``eps^ - x0^``). The
marginal itself is the mixture ``sum_k pi_k N(alpha_t mu_k, alpha_t^2 S_k + sigma_t^2 I)`` (:func:`path_marginal`),
which the tests use as the independent route. Paths and level conversions come from :mod:`sampler.paths`.
"""
from __future__ import annotations

from typing import Hashable, Mapping, NamedTuple

import torch

from sampler.paths import Path, check_time, velocity_from_denoised

from .mixture import GaussianMixture, check_points

__all__ = ["PathFields", "path_marginal", "path_fields", "MixtureVelocity"]


class PathFields(NamedTuple):
    """The exact fields of a mixture on a path at N points ``x_t`` [N, d] (float64, differentiable in x_t)."""

    x0: torch.Tensor  # [N, d] E[x_0 | x_t]
    eps: torch.Tensor  # [N, d] E[eps | x_t]
    score: torch.Tensor  # [N, d] grad_{x_t} log p_t(x_t)
    velocity: torch.Tensor  # [N, d] E[dx_t/dt | x_t] = alpha' x0 + sigma' eps


def _check(mix: GaussianMixture, path: Path) -> None:
    if not isinstance(mix, GaussianMixture):
        raise ValueError(f"mix must be an analytic.GaussianMixture, got {type(mix).__name__}")
    if not isinstance(path, Path):
        raise ValueError(f"path must be a sampler.paths.Path, got {path!r}")


def path_marginal(mix: GaussianMixture, path: Path, t: float) -> GaussianMixture:
    """The law of ``x_t``: ``sum_k pi_k N(alpha_t mu_k, alpha_t^2 S_k + sigma_t^2 I)``, ``t`` in [0, 1]."""
    _check(mix, path)
    p = path.at(t)
    eye = torch.eye(mix.dim, dtype=mix.covs.dtype, device=mix.device)
    return GaussianMixture(mix.weights, p.alpha * mix.means, p.alpha**2 * mix.covs + p.sigma**2 * eye, device=mix.device)


def path_fields(mix: GaussianMixture, path: Path, x_t, t: float) -> PathFields:
    """``x0``, ``eps``, score and velocity of ``mix`` on ``path`` at points ``x_t`` [N, d] and time ``t`` in
    (0, 1) where the contract level is finite (``t = 0`` has no eps; ``t = 1`` on the linear path no ``x~``)."""
    _check(mix, path)
    t = check_time(t)
    if t == 0:
        raise ValueError("t must be > 0: at t = 0 the path is the data and eps and the score are undefined")
    p = path.at(t)
    s = p.contract_sigma  # ValueError at a pure-noise level
    x_t = check_points(x_t, mix.dim, mix.device, "x_t")
    x = x_t / p.alpha  # [N, d] contract coordinates
    d = mix.denoise(x, s)
    eps = (x - d) / s
    return PathFields(d, eps, -eps / p.sigma, velocity_from_denoised(path, x, s, d))


class MixtureVelocity:
    """The exact velocity of analytic mixtures as a velocity network ``net(x_t [N, ...], t [N], cond) -> v``,
    one mixture per condition, for :class:`sampler.model.VelocityModel` (which then reproduces
    :class:`sampler.model.MixtureModel`). ``t`` is one time (a number or 0-d tensor) or a tensor [N] with one
    entry per sample of ``x_t``, all equal (every sample must share one ``t``); the output keeps ``x_t``'s dtype."""

    def __init__(self, mixtures: Mapping[Hashable, GaussianMixture], path: Path):
        if not isinstance(mixtures, Mapping):  # a bare mixture or a list: one per condition, keyed by it
            raise ValueError(f"mixtures must be a mapping from condition to mixture, e.g. {{None: law}}, got "
                             f"{type(mixtures).__name__}")
        if not mixtures:
            raise ValueError("need at least one mixture")
        for key, m in mixtures.items():
            _check(m, path)
        self.mixtures, self.path = dict(mixtures), path

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: Hashable) -> torch.Tensor:
        if cond not in self.mixtures:
            raise ValueError(f"no mixture for condition {cond!r}; known: {list(self.mixtures)}")
        t = torch.as_tensor(t, dtype=torch.float64)
        if t.ndim > 1 or (t.ndim == 1 and t.numel() != x_t.shape[0]):
            raise ValueError(f"t must be one time or a tensor [N] with N = {x_t.shape[0]} (x_t's batch), "
                             f"got shape {tuple(t.shape)}")
        t = t.reshape(-1)
        flat = x_t.flatten(1).to(torch.float64)  # [N, d]
        if x_t.shape[0] == 0 and t.numel() == 0:  # an empty batch has no time to share: an empty velocity
            if flat.shape[1] != self.mixtures[cond].dim:
                raise ValueError(f"x_t has {flat.shape[1]} dimensions per sample, the mixture {self.mixtures[cond].dim}")
            return torch.zeros_like(x_t)
        if t.numel() == 0 or torch.any(t != t[0]):
            raise ValueError(f"every sample must share one time t, got {t.tolist()}")
        v = path_fields(self.mixtures[cond], self.path, flat, t[0].item()).velocity
        return v.to(x_t.dtype).reshape(x_t.shape)
