"""Shared fixtures for the sampler tests: model factories and guidance factories.

``MODEL_FACTORIES`` is the list every contract test runs over: exact mixtures, small eps / v / x0 networks
in [N, d] and [N, C, H, W], and the real image networks through :mod:`images`' adapters (diffusers'
UNet2DModel and DiT, an EDM2-style preconditioned UNet; present when diffusers is installed). To add a
model, append ``(name, factory)`` where ``factory()`` returns a :class:`ModelSetup`; keep it small and fast.
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import torch

from tests.helpers import random_mixture  # noqa: F401  (shared; test modules import it from here)
from sampler import (
    CFG,
    AutoGuidance,
    ClassifierGuidance,
    Constant,
    Cosine,
    EpsModel,
    Interval,
    LinearRamp,
    MixtureModel,
    TiltedMean,
    Unguided,
    VModel,
    VPSchedule,
    X0Model,
    bind,
)

F64 = torch.float64


@dataclass(frozen=True)
class ModelSetup:
    """One model under test. ``model(x, sigma, cond)``; ``weak`` is a weaker model for autoguidance
    (called with ``cond_label``); ``sigmas`` are levels the model accepts, decreasing to 0."""

    name: str
    model: Callable
    weak: Callable
    cond_label: Any
    null_label: Any
    shape: tuple  # per-sample shape
    sigmas: torch.Tensor  # [K + 1]
    dtype: torch.dtype

    @property
    def cond(self):
        return bind(self.model, self.cond_label)

    @property
    def uncond(self):
        return bind(self.model, self.null_label)

    @property
    def weak_cond(self):
        return bind(self.weak, self.cond_label)


# A short VP schedule (abar_T ~= 0.08): 4 levels above 0, shared by every factory.
SCHEDULE = VPSchedule.linear(100, 1e-4, 0.05).respace(4)
SIGMAS = SCHEDULE.sampling_sigmas()  # [5], decreasing to 0


def _mixture_setup(shape: tuple, name: str) -> ModelSetup:
    d = math.prod(shape)
    cond, uncond = random_mixture(d, 2, 1), random_mixture(d, 3, 2, spread=2.0)
    weak = cond.with_covs(cond.covs * 2.0)
    return ModelSetup(name, MixtureModel({0: cond, None: uncond}), MixtureModel({0: weak}), 0, None, shape, SIGMAS, F64)


def _time_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of a scalar per sample [N] -> [N, dim]."""
    freqs = torch.exp(-math.log(100.0) * torch.arange(dim // 2, dtype=t.dtype, device=t.device) / max(dim // 2 - 1, 1))
    arg = t[:, None] * freqs
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)


class TinyMLP(torch.nn.Module):
    """``net(x [N, ...], t [N], cond) -> [N, ...]``: flattened x, time features, a class vector (zeros for None)."""

    def __init__(self, d: int, width: int = 32, seed: int = 0, dtype=F64):
        super().__init__()
        torch.manual_seed(seed)
        self.d = d
        self.inp = torch.nn.Linear(d + 8, width, dtype=dtype)
        self.hid = torch.nn.Linear(width, width, dtype=dtype)
        self.out = torch.nn.Linear(width, d, dtype=dtype)
        self.label = torch.nn.Parameter(torch.randn(8, dtype=dtype))

    def forward(self, x, t, cond):
        n = x.shape[0]
        h = torch.cat([x.reshape(n, -1), _time_features(t.to(x.dtype), 8) + (0 if cond is None else self.label)], 1)
        h = torch.nn.functional.gelu(self.inp(h))
        h = h + torch.nn.functional.gelu(self.hid(h))
        return self.out(h).reshape(x.shape)


class TinyConv(torch.nn.Module):
    """A two-layer conv net on [N, C, H, W] with time/class features added as channel biases."""

    def __init__(self, c: int, width: int = 8, seed: int = 0, dtype=torch.float32):
        super().__init__()
        torch.manual_seed(seed)
        self.c1 = torch.nn.Conv2d(c, width, 3, padding=1, dtype=dtype)
        self.c2 = torch.nn.Conv2d(width, c, 3, padding=1, dtype=dtype)
        self.emb = torch.nn.Linear(8, width, dtype=dtype)
        self.label = torch.nn.Parameter(torch.randn(8, dtype=dtype))

    def forward(self, x, t, cond):
        f = _time_features(t.to(x.dtype), 8) + (0 if cond is None else self.label)
        h = torch.nn.functional.silu(self.c1(x) + self.emb(f)[:, :, None, None])
        return self.c2(h)


def _eps_mlp() -> ModelSetup:
    d = 3
    return ModelSetup("eps_mlp", EpsModel(TinyMLP(d, seed=0), SCHEDULE), EpsModel(TinyMLP(d, seed=1), SCHEDULE),
                      0, None, (d,), SIGMAS, F64)


def _v_mlp() -> ModelSetup:
    d = 3
    return ModelSetup("v_mlp", VModel(TinyMLP(d, seed=2), SCHEDULE), VModel(TinyMLP(d, seed=3), SCHEDULE),
                      0, None, (d,), SIGMAS, F64)


class EDMPrecond(torch.nn.Module):
    """``D(x, sigma, cond) = c_skip x + c_out F(c_in x, log(sigma)/4, cond)`` (Karras et al. 2022, sigma_data 0.5)."""

    def __init__(self, net: torch.nn.Module, sigma_data: float = 0.5):
        super().__init__()
        self.net, self.sd = net, sigma_data

    def forward(self, x, sigma, cond):
        sd = self.sd
        c_skip, c_out = sd**2 / (sigma**2 + sd**2), sigma * sd / math.sqrt(sigma**2 + sd**2)
        c_in = 1 / math.sqrt(sigma**2 + sd**2)
        t = torch.full((x.shape[0],), math.log(sigma) / 4, dtype=x.dtype, device=x.device)
        return c_skip * x + c_out * self.net(c_in * x, t, cond)


def _x0_mlp() -> ModelSetup:
    d = 3
    return ModelSetup("x0_mlp", X0Model(EDMPrecond(TinyMLP(d, seed=4))), X0Model(EDMPrecond(TinyMLP(d, seed=5))),
                      0, None, (d,), SIGMAS, F64)


def _eps_conv() -> ModelSetup:
    shape = (2, 4, 4)
    return ModelSetup("eps_conv_f32", EpsModel(TinyConv(2, seed=6), SCHEDULE), EpsModel(TinyConv(2, seed=7), SCHEDULE),
                      0, None, shape, SIGMAS, torch.float32)


def _x0_conv() -> ModelSetup:
    shape = (1, 4, 4)
    return ModelSetup("x0_conv", X0Model(EDMPrecond(TinyConv(1, seed=8, dtype=F64))),
                      X0Model(EDMPrecond(TinyConv(1, seed=9, dtype=F64))), 0, None, shape, SIGMAS, F64)


def _image_setup(name: str) -> ModelSetup:
    """A tiny real image network (2 x 4 x 4, float32, class label 3, None = the null label) and a weaker
    one (smaller width, other seed) for autoguidance, through the adapters of :mod:`images`."""
    from images import tiny_dit, tiny_edm2, tiny_unet  # noqa: PLC0415

    common = dict(channels=2, size=4)
    if name == "unet_diffusers":
        model, weak = tiny_unet(seed=0, schedule=SCHEDULE, **common), tiny_unet(seed=1, width=2, schedule=SCHEDULE, **common)
    elif name == "dit_diffusers":
        model, weak = tiny_dit(seed=0, schedule=SCHEDULE, **common), tiny_dit(seed=1, width=8, schedule=SCHEDULE, **common)
    elif name == "edm2_diffusers":
        model, weak = tiny_edm2(seed=0, **common), tiny_edm2(seed=1, width=2, **common)
    else:
        raise ValueError(f"unknown image model {name!r}")
    return ModelSetup(name, model, weak, 3, None, (2, 4, 4), SIGMAS, torch.float32)


MODEL_FACTORIES: list[tuple[str, Callable[[], ModelSetup]]] = [
    ("mixture_vec", lambda: _mixture_setup((2,), "mixture_vec")),
    ("mixture_img", lambda: _mixture_setup((1, 2, 2), "mixture_img")),
    ("eps_mlp", _eps_mlp),
    ("v_mlp", _v_mlp),
    ("x0_mlp", _x0_mlp),
    ("eps_conv_f32", _eps_conv),
    ("x0_conv", _x0_conv),
]
if importlib.util.find_spec("diffusers") is not None:  # the optional [images] extra
    MODEL_FACTORIES += [(n, lambda n=n: _image_setup(n)) for n in ("unet_diffusers", "dit_diffusers", "edm2_diffusers")]


# The diffusers networks are the slow third of the harness: the fast loop (-m "not slow") leaves them to CI.
@pytest.fixture(params=[pytest.param(f, marks=pytest.mark.slow) if n.endswith("_diffusers") else f for n, f in MODEL_FACTORIES],
                ids=[n for n, _ in MODEL_FACTORIES], scope="module")
def setup(request) -> ModelSetup:
    return request.param()


# --- guidance factories: (setup, w) -> guidance; w = 0 must give the unguided conditional model -------
def gaussian_classifier_grad(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``grad_x log N(x; 1, (1 + sigma^2) I)``: a shape-generic stand-in classifier gradient."""
    return -(x - 1.0) / (1.0 + sigma**2)


def _toy_tilted(setup: ModelSetup, w: float):
    cond = setup.cond

    def tilted(x, sigma):  # a stand-in "tilted mean": D_c moved towards 1 by a w-proportional amount
        d = cond(x, sigma)
        return d + (w * sigma**2 / (1.0 + sigma**2)) * (1.0 - d)

    return tilted


GUIDANCE_FACTORIES: dict[str, Callable[[ModelSetup, float], Any]] = {
    "cg": lambda s, w: ClassifierGuidance(s.cond, gaussian_classifier_grad, w),
    "cfg": lambda s, w: CFG(s.cond, s.uncond, w),
    "cfg_linear": lambda s, w: CFG(s.cond, s.uncond, LinearRamp(w, 0.5 * w, 0.01, 3.0)),
    "cfg_cosine": lambda s, w: CFG(s.cond, s.uncond, Cosine(w, 2.0, float(s.sigmas[0]))),
    "cfg_interval": lambda s, w: CFG(s.cond, s.uncond, Interval(w, 0.3, 1.5)),
    "autog": lambda s, w: AutoGuidance(s.cond, s.weak_cond, Constant(w)),
    "tilted": lambda s, w: TiltedMean(s.cond, _toy_tilted(s, w)),
}


def unguided(setup: ModelSetup):
    return Unguided(setup.cond)
