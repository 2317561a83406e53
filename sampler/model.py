"""The one model contract (ARCHITECTURE.md, contract 1) and the adapters that reach it.

Contract: a *model* is a callable ``model(x, sigma, cond) -> x0_hat`` in VE coordinates
(``x = x_0 + sigma n``), for any tensor shape ``[N, ...]``, with ``sigma`` a single float noise level
for the whole batch and ``cond`` passed through untouched (labels, embeddings, ``None`` for
unconditional). A *denoiser* is a model with its condition bound, ``denoiser(x, sigma) -> x0_hat``;
guidance and samplers only ever see denoisers. Adapters stay differentiable with respect to ``x``.

A model may carry the Gaussian path it was trained on (``model.path``, a :class:`~sampler.paths.Path`:
:class:`VelocityModel` does); :func:`bind` keeps it reachable from the denoiser, and :func:`model_path` reads it,
so rules that act on a path's velocity (:mod:`sampler.flow_guidance`) take it from the model instead of a default.

VP <-> VE (THEORY.md section 1): ``abar = 1 / (1 + sigma^2)``, ``x_vp = sqrt(abar) x_ve``,
``D = x_ve - sigma eps``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Hashable, Mapping, Optional, Protocol

import torch

from .paths import LINEAR, Path, denoised_from_velocity
from .schedules import VPSchedule

__all__ = ["Model", "Denoiser", "Bound", "bind", "model_path", "EpsModel", "X0Model", "VModel", "MixtureModel",
           "VelocityModel"]

Denoiser = Callable[[torch.Tensor, float], torch.Tensor]


class Model(Protocol):
    def __call__(self, x: torch.Tensor, sigma: float, cond: Any) -> torch.Tensor: ...


def model_path(f: Any) -> Optional[Path]:
    """The path ``f`` carries (``f.path``, a :class:`~sampler.paths.Path`): a :class:`VelocityModel`, a denoiser
    :func:`bind` made from one, a velocity network that states its path (``analytic.MixtureVelocity``), or a flow
    guidance rule; ``None`` for everything else (exact mixtures, eps / v / x0 networks, plain callables)."""
    p = getattr(f, "path", None)
    return p if isinstance(p, Path) else None


class Bound:
    """A model with its condition bound, ``denoiser(x, sigma) = model(x, sigma, condition)``; ``path`` is the
    model's path (:func:`model_path`; ``None`` for a model without one)."""

    __slots__ = ("model", "condition")

    def __init__(self, model: Model, condition: Any):
        if not callable(model):
            raise ValueError(f"model must be callable as model(x, sigma, cond), got {model!r}")
        self.model, self.condition = model, condition

    @property
    def path(self) -> Optional[Path]:
        return model_path(self.model)

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return self.model(x, sigma, self.condition)

    def __repr__(self) -> str:
        c = self.condition
        return f"bind({self.model!r}, {f'tensor{tuple(c.shape)}' if isinstance(c, torch.Tensor) else repr(c)})"


def bind(model: Model, cond: Any) -> Bound:
    """The denoiser ``x, sigma -> model(x, sigma, cond)`` (a :class:`Bound`, which keeps the model's path)."""
    return Bound(model, cond)


def _check_sigma(sigma) -> float:
    s = float(sigma)
    if not math.isfinite(s) or s <= 0:
        raise ValueError(f"a model is evaluated at a noise level sigma > 0, got {s}")
    return s


class EpsModel:
    """A discrete-time eps-prediction network ``net(x_vp, t, cond) -> eps`` (DDPM, DiT, SD UNets).

    ``sigma`` must be a level of ``schedule`` (``ValueError`` otherwise); the network is called with
    that step's original training index ``schedule.timesteps[t]`` as an int64 tensor [N], so a sampler
    that walks ``schedule.sigmas`` runs exactly the network's DDPM chain.
    """

    def __init__(self, net: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor], schedule: VPSchedule):
        if not callable(net):
            raise ValueError("net must be callable as net(x_vp, t, cond)")
        self.net, self.schedule = net, schedule

    def eps(self, x: torch.Tensor, sigma: float, cond: Any) -> torch.Tensor:
        t = self.schedule.index_of_sigma(_check_sigma(sigma))
        abar = self.schedule.abar[t].item()
        t_net = torch.full((x.shape[0],), int(self.schedule.timesteps[t]), dtype=torch.long, device=x.device)
        return self.net(x * math.sqrt(abar), t_net, cond)

    def __call__(self, x: torch.Tensor, sigma: float, cond: Any) -> torch.Tensor:
        return x - float(sigma) * self.eps(x, sigma, cond)


class VModel(EpsModel):
    """A discrete-time v-prediction network, ``v = sqrt(abar) eps - sqrt(1 - abar) x_0`` (Salimans & Ho 2022)."""

    def __call__(self, x: torch.Tensor, sigma: float, cond: Any) -> torch.Tensor:
        t = self.schedule.index_of_sigma(_check_sigma(sigma))
        abar = self.schedule.abar[t].item()
        x_vp = x * math.sqrt(abar)
        t_net = torch.full((x.shape[0],), int(self.schedule.timesteps[t]), dtype=torch.long, device=x.device)
        v = self.net(x_vp, t_net, cond)
        return math.sqrt(abar) * x_vp - math.sqrt(1 - abar) * v

    def eps(self, x: torch.Tensor, sigma: float, cond: Any) -> torch.Tensor:
        return (x - self(x, sigma, cond)) / float(sigma)


class X0Model:
    """An x0-prediction network already in the contract's form, ``net(x_ve, sigma, cond) -> D`` (EDM2)."""

    def __init__(self, net: Callable[[torch.Tensor, float, Any], torch.Tensor]):
        if not callable(net):
            raise ValueError("net must be callable as net(x, sigma, cond)")
        self.net = net

    def __call__(self, x: torch.Tensor, sigma: float, cond: Any) -> torch.Tensor:
        return self.net(x, _check_sigma(sigma), cond)


class MixtureModel:
    """Exact denoisers of analytic mixtures, one per condition: ``mixtures[cond].denoise(x, sigma)``.

    Any object with ``denoise(x [N, d], sigma) -> [N, d]`` works (``analytic.GaussianMixture`` does);
    inputs of shape [N, ...] are flattened to [N, d] and the output keeps the input's dtype.
    """

    def __init__(self, mixtures: Mapping[Hashable, Any]):
        if not isinstance(mixtures, Mapping):  # a bare mixture or a list: one per condition, keyed by it
            raise ValueError(f"mixtures must be a mapping from condition to mixture, e.g. {{None: law}}, got "
                             f"{type(mixtures).__name__}")
        if not mixtures:
            raise ValueError("need at least one mixture")
        for key, m in mixtures.items():
            if not callable(getattr(m, "denoise", None)):
                raise ValueError(f"mixture for condition {key!r} has no denoise(x, sigma) method")
        self.mixtures = dict(mixtures)

    def __call__(self, x: torch.Tensor, sigma: float, cond: Hashable) -> torch.Tensor:
        if cond not in self.mixtures:
            raise ValueError(f"no mixture for condition {cond!r}; known: {list(self.mixtures)}")
        flat = x.flatten(1).to(torch.float64)  # [N, d]; also for N = 0
        out = self.mixtures[cond].denoise(flat, _check_sigma(sigma))
        return out.to(x.dtype).reshape(x.shape)


class VelocityModel:
    """A velocity network on a Gaussian path, ``net(x_t, t, cond) -> v = dx_t/dt`` (flow matching, rectified
    flow: SD3, Flux), as a contract model (THEORY.md section 8; :mod:`sampler.paths`).

    At contract level ``sigma`` the network is called at ``t = path.time_of_sigma(sigma)`` (a tensor [N] in
    ``x``'s dtype and device) on ``x_t = alpha_t x``, and ``D = (v - a x) / b`` with ``v = a x + b D`` the path's
    velocity map; on the linear path ``D = x_t - t v``. Any ``sigma > 0`` inside the path is valid
    (continuous time), so samplers may walk any levels, e.g. ``paths.sampling_sigmas(path, times)``.

    ``path``: the path the network was trained on. ``None`` (default) takes the network's own ``net.path`` when it
    states one (``analytic.MixtureVelocity`` does), else the linear path (rectified flow, SD3 / Flux); a ``path``
    that contradicts ``net.path`` is a ``ValueError``. The network must return a tensor of ``x_t``'s shape
    (``ValueError`` naming the shape it returned otherwise: a broadcastable wrong shape would be silently wrong).
    """

    def __init__(self, net: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor], path: Optional[Path] = None):
        if not callable(net):
            raise ValueError("net must be callable as net(x_t, t, cond)")
        if path is not None and not isinstance(path, Path):
            raise ValueError(f"path must be a sampler.paths.Path, got {path!r}")
        own = model_path(net)
        if path is not None and own is not None and path != own:
            raise ValueError(f"path={path!r} contradicts the network's own path {own!r}")
        self.net, self.path = net, (path if path is not None else own if own is not None else LINEAR)

    def velocity(self, x: torch.Tensor, sigma: float, cond: Any) -> torch.Tensor:
        """The network's velocity at the contract point ``(x, sigma)``. [N, ...]"""
        t = self.path.time_of_sigma(_check_sigma(sigma))
        t_net = torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)
        v = self.net(x * self.path.at(t).alpha, t_net, cond)
        if not isinstance(v, torch.Tensor) or v.shape != x.shape:
            got = f"shape {tuple(v.shape)}" if isinstance(v, torch.Tensor) else f"{type(v).__name__} {v!r}"[:200]
            raise ValueError(f"the velocity net must return a tensor of x_t's shape {tuple(x.shape)}, got {got}")
        return v

    def __call__(self, x: torch.Tensor, sigma: float, cond: Any) -> torch.Tensor:
        return denoised_from_velocity(self.path, x, sigma, self.velocity(x, sigma, cond))
