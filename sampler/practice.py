"""The guidance rules practitioners run (issue 22, item 3), as guidance objects of the one protocol
(``cond``, ``active(sigma)``, ``delta(x, sigma, d_cond)``, ``__call__``; :mod:`sampler.guidance`), so every
sampler runs them and the bench scores them beside :class:`~sampler.guidance.CFG`.

Weights use the library's convention ``D_c + w (D_c - D_u)`` (``eps_c + w (eps_c - eps_u)``). diffusers and
ComfyUI write ``u + s (c - u)``: ``s = 1 + w`` (:func:`~sampler.weights.w_to_s`). Each class docstring gives its
source and the formula in this convention; every rule is the conditional model where ``w = 0``.

Spaces. ``x`` is in contract (VE) coordinates and ``D = x - sigma eps``, so ``r = x - D = sigma eps`` is the noise
prediction in units of ``x``. The rules acting on eps (rescale, TCFG, MAMBO-G) are positively homogeneous of degree
one in the pair ``(eps_c, eps_u)`` (norm ratios, standard-deviation ratios and projections do not see a common
positive factor), so they are computed on ``r`` and never divide by ``sigma``: the same numbers as on eps for every
``sigma > 0``. CFGNorm and dynamic thresholding act on ``x0_hat = D`` as their sources do.

Modifiers (:class:`GuidanceRescale`, :class:`CFGNorm`, :class:`DynamicThresholding`) wrap any guidance (CFG, APG,
CFG-Zero*, ...), as diffusers carries ``guidance_rescale`` on every guider; each returns ``delta = (out - D_g) +
delta_g`` with ``D_g = D_c + delta_g`` the wrapped rule's output, so where the modifier does nothing (``phi = 0``,
no clipping, a cap never reached) the result is the wrapped rule's bit for bit.

Not here: Rectified-CFG++ (arXiv 2510.07631) evaluates the guidance difference at the point a conditional Euler
step predicts, so it needs the step size and the next level, which a guidance object never sees (contract 2); it is
the sampler :func:`sampler.rectified.rectified_cfgpp`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Union

import torch

from .guidance import Guidance, check_callable, guided_output, same_shape
from .model import Denoiser
from .schedules import check_count, check_number
from .weights import WeightSchedule, as_schedule

__all__ = [
    "GuidanceRescale",
    "CFGNorm",
    "DynamicThresholding",
    "TCFG",
    "MamboG",
    "Characteristic",
    "CharacteristicSolution",
    "CharacteristicNotConverged",
    "top_singular_projection",
]

Weight = Union[float, WeightSchedule]




def _check_wrapped(rule: str, guidance) -> None:
    for attr in ("cond", "active", "delta"):
        if not hasattr(guidance, attr):
            raise ValueError(f"{rule} wraps a guidance with cond, active and delta; {guidance!r} has no {attr}")


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-sample scalar [N] shaped to broadcast against [N, ...]."""
    return v.reshape((like.shape[0],) + (1,) * (like.ndim - 1))


def _norm(a: torch.Tensor) -> torch.Tensor:
    """Per-sample Euclidean norm over all non-batch dimensions. [N, ...] -> [N]"""
    return torch.linalg.vector_norm(a.flatten(1), dim=1)


def _safe_ratio(num: torch.Tensor, den: torch.Tensor, where_zero: float) -> torch.Tensor:
    """``num / den`` where ``den > 0``, else ``where_zero``."""
    pos = den > 0
    return torch.where(pos, num / torch.where(pos, den, torch.ones_like(den)), torch.full_like(num, where_zero))


class _Modifier:
    """Shared plumbing of the rules that wrap another guidance: the conditional branch, where it is active
    (where the wrapped rule is), ``reset`` passed on to a stateful wrapped rule (APG momentum)."""

    @property
    def cond(self) -> Denoiser:
        return self.guidance.cond

    def active(self, sigma: float) -> bool:
        return self.guidance.active(sigma)

    def reset(self) -> None:
        if hasattr(self.guidance, "reset"):
            self.guidance.reset()

    def delta(self, x: torch.Tensor, sigma: float, d_cond: torch.Tensor) -> torch.Tensor:
        delta_g = self.guidance.delta(x, sigma, d_cond)
        return self._change(x, d_cond, d_cond + delta_g) + delta_g

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return guided_output(self, x, sigma)


@dataclass(frozen=True)
class GuidanceRescale(_Modifier):
    """Guidance rescale (Lin, Liu, Li & Yang 2024, "Common diffusion noise schedules and sample steps are flawed",
    arXiv 2305.08891, sec. 3.4, Algorithm 2; diffusers ``rescale_noise_cfg``) around any guidance, on eps:

        eps_r = eps_g std(eps_c) / std(eps_g),        eps = phi eps_r + (1 - phi) eps_g,

    ``eps_g`` the wrapped rule's guided noise prediction, std over one sample's coordinates (the ratio is the same
    with or without Bessel's correction). ``phi`` blends the rescaled and the plain guided prediction, so it lies in
    ``[0, 1]`` as in the paper (``ValueError`` outside: ``phi > 1`` or ``< 0`` extrapolates past either, which the
    source does not define); ``phi = 0`` is the wrapped rule exactly, ``phi = 1`` the fully rescaled prediction,
    ``phi = 0.7`` the paper's value.
    Needs at least two coordinates per sample (a ``ValueError`` otherwise: the std of one number is 0). Where
    ``std(eps_g) = 0`` (a constant guided prediction) the factor is taken as 1 (diffusers divides by zero there)."""

    guidance: Guidance
    phi: float = 0.7

    def __post_init__(self):
        _check_wrapped("GuidanceRescale", self.guidance)
        phi = check_number(self.phi, "phi")
        if not 0 <= phi <= 1:
            raise ValueError(f"phi must be in [0, 1] (the blend of the rescaled and the plain guided prediction, "
                             f"Lin et al. 2024, Algorithm 2), got {phi}")
        object.__setattr__(self, "phi", phi)

    def _change(self, x: torch.Tensor, d_cond: torch.Tensor, d_guided: torch.Tensor) -> torch.Tensor:
        if math.prod(x.shape[1:]) < 2:
            raise ValueError(f"GuidanceRescale needs at least 2 coordinates per sample (a std over one sample), got "
                             f"shape {tuple(x.shape)}")
        if self.phi == 0 or x.shape[0] == 0:
            return torch.zeros_like(d_guided)
        r_c, r_g = x - d_cond, x - d_guided  # sigma eps_c, sigma eps_g
        std_c = r_c.flatten(1).std(dim=1, unbiased=False)
        std_g = r_g.flatten(1).std(dim=1, unbiased=False)
        factor = _safe_ratio(std_c, std_g, 1.0)  # [N]
        # eps = eps_g (1 + phi (factor - 1)), so D = D_g - phi (factor - 1) r_g
        return -self.phi * _per_sample(factor - 1, r_g) * r_g


@dataclass(frozen=True)
class CFGNorm(_Modifier):
    """Norm-capped guidance (ComfyUI ``CFGNorm``, ``comfy_extras/nodes_cfg.py``; the cfg normalisation of
    Qwen-Image / Lumina-2 is the uncapped variant) around any guidance, on ``x0_hat``:

        D = strength * D_g * min(1, cap |D_c| / |D_g|),

    norms over dim 1 as ComfyUI takes them (the channels of each pixel for ``[N, C, H, W]``; the sample for
    ``[N, d]``). ComfyUI has ``cap = 1`` and adds 1e-8 to ``|D_g|``; here ``|D_g| = 0`` gives factor 1. A large
    ``cap`` (never reached) is the wrapped rule exactly. ``w = 0`` is the conditional model when ``strength = 1``
    (for other strengths it is ``strength D_c``, as in ComfyUI)."""

    guidance: Guidance
    cap: float = 1.0
    strength: float = 1.0

    def __post_init__(self):
        _check_wrapped("CFGNorm", self.guidance)
        for name in ("cap", "strength"):
            v = check_number(getattr(self, name), name)
            if v <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
            object.__setattr__(self, name, v)

    def _change(self, x: torch.Tensor, d_cond: torch.Tensor, d_guided: torch.Tensor) -> torch.Tensor:
        if d_guided.ndim < 2:
            raise ValueError(f"CFGNorm needs predictions [N, C, ...], got shape {tuple(d_guided.shape)}")
        n_c = torch.linalg.vector_norm(d_cond, dim=1, keepdim=True)
        n_g = torch.linalg.vector_norm(d_guided, dim=1, keepdim=True)
        scale = torch.clamp(_safe_ratio(self.cap * n_c, n_g, 1.0), max=1.0) * self.strength
        return (scale - 1) * d_guided  # exactly 0 where the cap is not reached and strength = 1


@dataclass(frozen=True)
class DynamicThresholding(_Modifier):
    """Dynamic thresholding (Saharia et al. 2022, Imagen, arXiv 2205.11487, sec. 2.3) around any guidance, on
    ``x0_hat``: per sample ``s = max(quantile_p(|D_g|), bound)`` over the sample's coordinates (linear
    interpolation, as numpy's percentile), then

        D = clip(D_g, -s, s) * bound / s.

    Imagen has ``bound = 1`` (data in [-1, 1]) and ``p = 0.995`` (the paper's "certain percentile"; 0.995 in
    common implementations). Where every ``|D_g| <= bound`` nothing is clipped and ``s = bound``: the wrapped rule
    exactly."""

    guidance: Guidance
    percentile: float = 0.995
    bound: float = 1.0

    def __post_init__(self):
        _check_wrapped("DynamicThresholding", self.guidance)
        p = check_number(self.percentile, "percentile")
        if not 0 < p <= 1:
            raise ValueError(f"percentile must be in (0, 1], got {self.percentile!r}")
        b = check_number(self.bound, "bound")
        if b <= 0:
            raise ValueError(f"bound must be > 0, got {self.bound!r}")
        object.__setattr__(self, "percentile", p)
        object.__setattr__(self, "bound", b)

    def _change(self, x: torch.Tensor, d_cond: torch.Tensor, d_guided: torch.Tensor) -> torch.Tensor:
        if d_guided.shape[0] == 0:
            return torch.zeros_like(d_guided)
        q = torch.quantile(d_guided.flatten(1).abs(), self.percentile, dim=1)  # [N]
        s = _per_sample(torch.clamp(q, min=self.bound), d_guided)
        out = torch.minimum(torch.maximum(d_guided, -s), s) * (self.bound / s)
        return out - d_guided


def top_singular_projection(c: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """TCFG's projection: ``u`` projected on the top right-singular vector ``v1`` of the stacked ``[c; u]``
    (a ``2 x d`` matrix per sample, ``d`` all non-batch coordinates), ``(u . v1) v1``. [N, ...] x [N, ...] -> [N, ...]

    Where the two singular values are equal (``c`` orthogonal to ``u`` with ``|c| = |u|``) ``v1`` is not unique and
    the result is whichever ``torch.linalg.svd`` returns, as in diffusers. A sample with a non-finite entry (NaN or
    inf in ``c`` or ``u``, e.g. from a NaN ``x``) projects to NaN and the others as usual: NaN in, NaN out, as CFG
    and every other rule (the samplers refuse a non-finite prediction, naming the step), where ``torch.linalg.svd``
    would stop the whole batch with a ``LinAlgError``."""
    if c.shape != u.shape or c.ndim < 1:
        raise ValueError(f"need two predictions of one shape [N, ...], got {tuple(c.shape)} and {tuple(u.shape)}")
    if c.shape[0] == 0:
        return torch.zeros_like(u)
    stacked = torch.stack([c.flatten(1), u.flatten(1)], dim=1)  # [N, 2, d]
    finite = torch.isfinite(stacked).flatten(1).all(1)  # [N]
    if not bool(finite.all()):
        out = torch.full_like(u, float("nan"))
        out[finite] = top_singular_projection(c[finite], u[finite])
        return out
    v1 = torch.linalg.svd(stacked, full_matrices=False).Vh[:, 0]  # [N, d]
    u_flat = u.flatten(1)
    return ((u_flat * v1).sum(1, keepdim=True) * v1).reshape(u.shape)


@dataclass(frozen=True)
class TCFG:
    """Tangential CFG (Kwon et al. 2025, arXiv 2503.18137; diffusers ``TangentialClassifierFreeGuidance``) on eps:
    the unconditional prediction is replaced by its projection on the top right-singular vector of the stacked
    ``[eps_c; eps_u]`` per sample (:func:`top_singular_projection`), then CFG:

        eps = eps_c + w (eps_c - P eps_u),        P eps_u = (eps_u . v1) v1.

    In ``d = 1`` the projection is the identity and TCFG is CFG. ``uncond`` is not called where ``w = 0``."""

    cond: Denoiser
    uncond: Denoiser
    weight: Weight = 1.0

    def __post_init__(self):
        check_callable("cond", self.cond)
        check_callable("uncond", self.uncond)
        object.__setattr__(self, "weight", as_schedule(self.weight))

    def active(self, sigma: float) -> bool:
        return self.weight(sigma) != 0

    def delta(self, x: torch.Tensor, sigma: float, d_cond: torch.Tensor) -> torch.Tensor:
        r_c, r_u = x - d_cond, x - same_shape("uncond", self.uncond(x, sigma), d_cond)
        # D = x - (r_c + w (r_c - P r_u)) = D_c + w (P r_u - r_c)
        return self.weight(sigma) * (top_singular_projection(r_c, r_u) - r_c)

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return guided_output(self, x, sigma)


@dataclass(frozen=True)
class MamboG:
    """MAMBO-G, magnitude-aware guidance (arXiv 2508.03442; diffusers ``MagnitudeAwareGuidance``, formula as in
    ``diffusers/guiders/magnitude_aware_guidance.py`` and ``guidance_claims.md``; the paper's equation numbers were
    not checked here) on eps: the weight shrinks where the guidance difference is large relative to ``eps_u``,

        eps = eps_c + w exp(-alpha |eps_c - eps_u| / |eps_u|) (eps_c - eps_u),

    norms per sample over all coordinates (diffusers: ``s_eff = 1 + (s - 1) exp(-alpha ratio)``, the same rule with
    ``s = 1 + w``). ``alpha = 0`` is CFG exactly; ``alpha >= 0``. Where ``eps_u = 0`` the ratio is infinite (factor 0)
    unless ``eps_c = eps_u`` too (no guidance term at all)."""

    cond: Denoiser
    uncond: Denoiser
    weight: Weight = 1.0
    alpha: float = 8.0

    def __post_init__(self):
        check_callable("cond", self.cond)
        check_callable("uncond", self.uncond)
        a = check_number(self.alpha, "alpha")
        if a < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha!r}")
        object.__setattr__(self, "alpha", a)
        object.__setattr__(self, "weight", as_schedule(self.weight))

    def active(self, sigma: float) -> bool:
        return self.weight(sigma) != 0

    def delta(self, x: torch.Tensor, sigma: float, d_cond: torch.Tensor) -> torch.Tensor:
        d_u = same_shape("uncond", self.uncond(x, sigma), d_cond)
        diff = d_cond - d_u  # = r_u - r_c: the same norm as eps_c - eps_u up to the factor sigma
        ratio = _safe_ratio(_norm(diff), _norm(x - d_u), math.inf)
        ratio = torch.where(_norm(diff) == 0, torch.zeros_like(ratio), ratio)
        factor = torch.exp(-self.alpha * ratio)  # alpha = 0: exactly 1
        return self.weight(sigma) * (_per_sample(factor, diff) * diff)

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return guided_output(self, x, sigma)


class CharacteristicNotConverged(ArithmeticError):
    """The fixed-point iteration of :class:`Characteristic` did not reach its tolerance."""


class CharacteristicSolution(NamedTuple):
    guided: torch.Tensor  # [N, ...] the guided denoiser output
    shift: torch.Tensor  # [N, ...] the fixed point Delta
    iterations: int  # iterations run (model-pair evaluations, the last one included)
    residual: float  # max over samples of the RMS of D_u(x + (1 + w) Delta) - D_c(x + w Delta) at the end


@dataclass(frozen=True)
class Characteristic:
    """Characteristic guidance (Zheng & Lan, ICML 2024, arXiv 2312.07586; the authors' code
    ``scraed/CharacteristicGuidanceWebUI``, ``scripts/CharaIte.py``): CFG evaluated at shifted points,

        D = D_c(x + w Delta) + w (D_c(x + w Delta) - D_u(x + (1 + w) Delta)),

    with ``Delta`` the fixed point of ``Delta = sigma (eps_u(x + (1 + w) Delta) - eps_c(x + w Delta))`` (eps at the
    shifted points, ``sigma`` the contract level; the code's ``dxs`` with ``h = s = 1 + w``). Since
    ``sigma eps = x - D``, the fixed point is where ``g(Delta) = D_u(x + (1 + w) Delta) - D_c(x + w Delta) = 0``
    (then ``D = D_c(x + w Delta)``). It is solved from ``Delta = 0`` by ``Delta <- Delta - step * g`` until the RMS
    of ``g`` per sample is at most ``tol`` for every sample; :meth:`solve` returns the iterations and residual; no
    convergence within ``max_iter`` raises :class:`CharacteristicNotConverged` with both. ``step`` is ``damping``
    (``damping = 1``: the plain map above, Picard) when ``accelerate=False``; with ``accelerate=True`` (default)
    each sample's step after the first is the secant (Barzilai-Borwein) ``<s, y> / <y, y>`` of its last two iterates
    (``s`` the change of ``Delta``, ``y`` of ``g``). Picard contracts with ``|1 - damping a|``, ``a = 1/(1 + sigma^2)``
    for unit-variance Gaussians, so it needs thousands of iterations at large ``sigma``, where the secant step is
    ``1/a`` after one iteration. For two Gaussians the result is the exact denoiser of the tilted law
    ``p_c^(1+w) / p_u^w`` (the paper's exactness claim; tested), where CFG is not.

    Simplifications against the authors' code, which add no rule of their own: no projection ``P`` of the
    correction onto a low-dimensional basis (``P = I``, the paper's exact form), no regularisation ``alpha_reg``,
    the secant step in place of their Anderson acceleration, no warm start from the previous step (they change how fast, not where, the
    iteration lands when it converges). ``w = 0`` is the conditional model (nothing is solved there)."""

    cond: Denoiser
    uncond: Denoiser
    weight: Weight = 1.0
    tol: float = 1e-6
    max_iter: int = 500
    damping: float = 1.0
    accelerate: bool = True

    def __post_init__(self):
        check_callable("cond", self.cond)
        check_callable("uncond", self.uncond)
        tol = check_number(self.tol, "tol")
        if tol <= 0:
            raise ValueError(f"tol must be > 0, got {self.tol!r}")
        damping = check_number(self.damping, "damping")
        if not 0 < damping <= 1:
            raise ValueError(f"damping must be in (0, 1], got {self.damping!r}")
        object.__setattr__(self, "tol", tol)
        object.__setattr__(self, "damping", damping)
        if not isinstance(self.accelerate, bool):
            raise ValueError(f"accelerate must be True or False, got {self.accelerate!r}")
        object.__setattr__(self, "max_iter", check_count(self.max_iter, "max_iter"))
        object.__setattr__(self, "weight", as_schedule(self.weight))

    def active(self, sigma: float) -> bool:
        return self.weight(sigma) != 0

    def solve(self, x: torch.Tensor, sigma: float) -> CharacteristicSolution:
        w = self.weight(sigma)
        shift = torch.zeros_like(x)
        step = torch.full((x.shape[0],), self.damping, dtype=x.dtype, device=x.device)  # [N]
        previous = None
        residual = math.inf
        for it in range(1, self.max_iter + 1):
            d_c = self.cond(x + w * shift, sigma)
            d_u = same_shape("uncond", self.uncond(x + (1 + w) * shift, sigma), d_c)
            g = d_u - d_c
            residual = g.flatten(1).pow(2).mean(1).sqrt().max().item() if x.shape[0] else 0.0
            if not math.isfinite(residual):
                break
            if residual <= self.tol:
                return CharacteristicSolution(d_c + w * (d_c - d_u), shift, it, residual)
            if self.accelerate and previous is not None:
                s_, y_ = (shift - previous[0]).flatten(1), (g - previous[1]).flatten(1)
                sy, yy = (s_ * y_).sum(1), (y_ * y_).sum(1)
                step = torch.where((sy > 0) & (yy > 0), sy / torch.where(yy > 0, yy, torch.ones_like(yy)), step)
            previous = (shift, g)
            shift = shift - _per_sample(step, g) * g
        raise CharacteristicNotConverged(
            f"characteristic guidance at sigma={float(sigma)}, w={w}: residual {residual:.3g} > tol={self.tol} after "
            f"{it} iterations (damping={self.damping}, accelerate={self.accelerate}); lower the damping, raise "
            "max_iter, or the fixed point may not exist")

    def delta(self, x: torch.Tensor, sigma: float, d_cond: torch.Tensor) -> torch.Tensor:
        return self.solve(x, sigma).guided - d_cond

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        if not self.active(sigma):
            return self.cond(x, sigma)
        return self.solve(x, sigma).guided
