"""The bench's rule providers (issue 22, items 3-4): diffusers' guiders and the practitioners' rules as rules of
the user contract of :mod:`evaluation.bench` (``rule(eps_c, eps_u, x, sigma, w) -> eps``, tensors ``[N, d]``).

``PROVIDERS["diffusers"]`` (needs the distribution ``diffusers``): :func:`diffusers_rule` ``(name)`` runs
``diffusers.guiders.<name>`` (:data:`images.guiders.GUIDER_NAMES`) on the eps predictions it is given, through
:meth:`images.guiders.DiffusersGuidance.guide` (the pipeline's call sequence; the guider sees eps, as in an
eps-prediction pipeline), with the weight mapped ``s = 1 + w`` (:func:`images.guiders.guider_scale`). The guiders
keep diffusers' defaults except ``zero_init_steps=0`` for ``ClassifierFreeZeroStarGuidance``: a rule of the
contract sees no step, and diffusers' default zeroes the first step (the built-in ``cfg_zero_star_init`` is that
variant). ``AdaptiveProjectedGuidance``'s default has no momentum, so no diffusers rule here is stateful (APG with
momentum counts steps, which a rule of the contract never sees; the built-in ``apg_momentum`` is that rule).

``PROVIDERS["practice"]``: :func:`practice_rule` ``(name)`` builds the guidance object of :mod:`sampler.practice`
on the constant denoisers ``D = x - sigma eps`` of the call and returns its eps: ``GuidanceRescale`` (``phi =
0.7`` on CFG, the paper's value), ``CFGNorm`` (cap 1 on CFG, ComfyUI's), ``DynamicThresholding`` (Imagen's ``p =
0.995``, bound 1, on CFG), ``TCFG``, ``MamboG`` (``alpha = 8``). ``Characteristic`` guidance is not a provider rule:
it evaluates the denoisers at shifted points, which two predictions at ``x`` do not give.

``min_dim = 2`` (the bench's 1-D rows ``undefined``) for ``GuidanceRescale`` and diffusers'
``TangentialClassifierFreeGuidance`` (which indexes a second singular vector: ``IndexError`` on one coordinate).

``coordinatewise`` (the bench's exact route on the reducible family) is True only for diffusers'
``ClassifierFreeGuidance`` (``u + s (c - u)`` coordinate by coordinate); every other rule here couples coordinates
(norms, standard deviations, quantiles, projections) and is scored by Monte Carlo there.
"""
from __future__ import annotations

import math
import torch

__all__ = ["DIFFUSERS_OPTIONS", "PRACTICE_RULES", "diffusers_rule", "practice_rule", "DiffusersRule",
           "PracticeRule"]

# diffusers' defaults but for what a rule of the contract cannot see (steps); see the module docstring
DIFFUSERS_OPTIONS: dict[str, dict] = {
    "ClassifierFreeGuidance": {},
    "AdaptiveProjectedGuidance": {},
    "ClassifierFreeZeroStarGuidance": {"zero_init_steps": 0},
    "TangentialClassifierFreeGuidance": {},
    "MagnitudeAwareGuidance": {},
}
_COORDINATEWISE = {"ClassifierFreeGuidance"}


def _unused_denoiser(x, sigma):
    raise RuntimeError("a provider rule drives the guider on predictions only (DiffusersGuidance.guide)")


class DiffusersRule:
    """``diffusers.guiders.<name>`` (with ``options`` for its constructor) as a rule of the bench's contract on eps.
    One guider object per weight, made on first use (diffusers logs a warning per guider made)."""

    space = "eps"

    def __init__(self, name: str, **options):
        from images.guiders import DIFFUSERS_GUIDERS, GUIDER_NAMES, skipped_guiders

        if name not in GUIDER_NAMES:
            raise ValueError(f"name must be one of diffusers' guiders {GUIDER_NAMES}, got {name!r}")
        if name not in DIFFUSERS_GUIDERS:
            raise ModuleNotFoundError(f"diffusers:{name} is unavailable: {skipped_guiders()[name]}")
        self.name, self.options = name, dict(options)
        self.coordinatewise = name in _COORDINATEWISE and not self.options.get("guidance_rescale", 0.0)
        # diffusers' TCFG zeroes the second right-singular vector (tangential_classifier_free_guidance.py:140),
        # which one coordinate does not have (IndexError); rescale's std over one number is 0 / 0
        self.min_dim = 2 if name == "TangentialClassifierFreeGuidance" or self.options.get("guidance_rescale") else 1
        self._factory = DIFFUSERS_GUIDERS[name]
        self._by_weight: dict[float, object] = {}

    def __repr__(self) -> str:
        return f"diffusers:{self.name}{self.options or ''}"

    def __call__(self, eps_c: torch.Tensor, eps_u: torch.Tensor, x: torch.Tensor, sigma: float, w: float):
        w = float(w)
        guidance = self._by_weight.get(w)
        if guidance is None:
            guidance = self._factory(w, _unused_denoiser, _unused_denoiser, space="eps", **self.options)
            self._by_weight[w] = guidance
        return guidance.guide(eps_c, eps_u, float(sigma))


def diffusers_rule(name: str) -> DiffusersRule:
    """The registered ``diffusers:<name>``: the guider with :data:`DIFFUSERS_OPTIONS` (module docstring)."""
    if name not in DIFFUSERS_OPTIONS:
        raise ValueError(f"unknown diffusers guider {name!r}; registered: {sorted(DIFFUSERS_OPTIONS)}")
    return DiffusersRule(name, **DIFFUSERS_OPTIONS[name])


def _practice(name: str):
    from sampler import CFG
    from sampler.practice import TCFG, CFGNorm, DynamicThresholding, GuidanceRescale, MamboG

    return {
        "GuidanceRescale": lambda c, u, w, phi=0.7: GuidanceRescale(CFG(c, u, w), phi),
        "CFGNorm": lambda c, u, w, cap=1.0, strength=1.0: CFGNorm(CFG(c, u, w), cap, strength),
        "DynamicThresholding": lambda c, u, w, percentile=0.995, bound=1.0:
            DynamicThresholding(CFG(c, u, w), percentile, bound),
        "TCFG": lambda c, u, w: TCFG(c, u, w),
        "MamboG": lambda c, u, w, alpha=8.0: MamboG(c, u, w, alpha),
    }[name]


PRACTICE_RULES = ("GuidanceRescale", "CFGNorm", "DynamicThresholding", "TCFG", "MamboG")


class PracticeRule:
    """A guidance class of :mod:`sampler.practice` (``name`` in :data:`PRACTICE_RULES`, ``options`` its settings) as
    a rule of the bench's contract: built per call on the constant denoisers ``D = x - sigma eps``, its eps is
    ``(x - D_guided) / sigma``.

    ``GuidanceRescale`` has ``min_dim = 2``: over one coordinate the ratio of standard deviations is 0 / 0 and
    :class:`sampler.practice.GuidanceRescale` refuses it, so the bench's 1-D rows of it are ``undefined``. The other
    rules are defined in every dimension (TCFG is CFG in 1-D)."""

    space = "eps"

    def __init__(self, name: str, **options):
        if name not in PRACTICE_RULES:
            raise ValueError(f"name must be one of {PRACTICE_RULES} (Characteristic guidance needs the denoisers at "
                             f"shifted points, not two predictions), got {name!r}")
        self.name, self.options, self._build = name, dict(options), _practice(name)
        self.min_dim = 2 if name == "GuidanceRescale" else 1
        self._build(lambda x, s: x, lambda x, s: x, 1.0, **self.options)  # the options checked once, here

    def __repr__(self) -> str:
        return f"practice:{self.name}{self.options or ''}"

    def __call__(self, eps_c: torch.Tensor, eps_u: torch.Tensor, x: torch.Tensor, sigma: float, w: float):
        s = float(sigma)
        if not s > 0 or not math.isfinite(s):
            raise ValueError(f"{self!r} needs a finite sigma > 0 (D = x - sigma eps), got sigma={sigma}")
        d_c, d_u = x - s * eps_c, x - s * eps_u
        c, u = (lambda x_, s_: d_c), (lambda x_, s_: d_u)
        guided = self._build(c, u, float(w), **self.options)
        return (x - guided(x, s)) / s


def practice_rule(name: str, **options) -> PracticeRule:
    """The registered ``practice:<name>`` (default settings, module docstring), or with ``options``."""
    return PracticeRule(name, **options)
