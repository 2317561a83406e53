"""diffusers' own guider classes as guidance objects of the one protocol (issue 22, item 4).

:class:`DiffusersGuidance` runs a ``diffusers.guiders`` guider that needs only the conditional and unconditional
predictions (``ClassifierFreeGuidance``, ``AdaptiveProjectedGuidance``, ``ClassifierFreeZeroStarGuidance``,
``TangentialClassifierFreeGuidance``, ``MagnitudeAwareGuidance``; ``guidance_rescale`` on each) on a pair of
denoisers, driven the way a diffusers pipeline drives it: ``set_state(step, num_inference_steps, timestep)``, then
``prepare_inputs({"noise_pred": (pred_cond, pred_uncond)})`` and ``guider(batches).pred`` (the guider recreates APG's
momentum buffer in ``prepare_inputs`` at step 0, so each trajectory starts without momentum, as in a pipeline).

Weights. The adapter takes the library's ``w`` (``D_c + w (D_c - D_u)``, a number or a schedule of ``sigma``) and
sets the guider's ``guidance_scale`` at every call: ``s = 1 + w`` for diffusers' default formulation
``u + s (c - u)``, ``s = w`` for ``use_original_formulation=True`` (``c + s (c - u)``) (:func:`guider_scale`).

Which prediction. diffusers' guiders act on whatever the network predicts, and the rules that are not affine
(APG, CFG-Zero*, TCFG, MAMBO-G, rescale) give different results on different predictions. ``space`` says which one
the guider sees: ``"eps"`` (``(x - D) / sigma``: an eps-prediction network such as Stable Diffusion's UNet),
``"x0"`` (``D`` itself) or ``"velocity"`` (the velocity of ``path``, :mod:`sampler.paths`: a flow network).

Steps. diffusers' start/stop windows and CFG-Zero*'s ``zero_init_steps`` count steps; guidance objects never hold
step counters (contract 2), so the step is the position of ``sigma`` in the sampler's grid ``sigmas`` (step ``i``
at ``sigmas[i]``, ``len(sigmas) - 1`` steps). Without a grid a guider with a step-dependent setting (a window,
zero-init steps, APG momentum) is refused with a ``ValueError``.

:data:`DIFFUSERS_GUIDERS` maps each class name to a factory ``factory(w, cond, uncond, **options)``; it is empty
when diffusers is not installed, and :func:`skipped_guiders` says which were skipped and why.
"""
from __future__ import annotations

import importlib
import math
from typing import Callable, Dict, NamedTuple, Optional, Union

import torch

from sampler.flow_guidance import resolve_path
from sampler.guidance import check_callable
from sampler.model import Denoiser
from sampler.paths import Path, denoised_from_velocity, velocity_from_denoised
from sampler.samplers import check_sigmas
from sampler.schedules import check_number
from sampler.weights import WeightSchedule, as_schedule

__all__ = ["GUIDER_NAMES", "SPACES", "DIFFUSERS_GUIDERS", "DiffusersGuidance", "ConformanceRow", "conformance",
           "guider_scale", "load_guiders", "skipped_guiders", "conformance_markdown"]

GUIDER_NAMES = ("ClassifierFreeGuidance", "AdaptiveProjectedGuidance", "ClassifierFreeZeroStarGuidance",
                "TangentialClassifierFreeGuidance", "MagnitudeAwareGuidance")
SPACES = ("eps", "x0", "velocity")


def guider_scale(w: float, original: bool) -> float:
    """diffusers' ``guidance_scale`` for the library's weight ``w``: ``1 + w`` in diffusers' default formulation
    ``u + s (c - u)``, ``w`` with ``use_original_formulation=True`` (``c + s (c - u)``)."""
    w = check_number(w, "w")
    return w if original else w + 1.0




class DiffusersGuidance:
    """A diffusers guider object (any of :data:`GUIDER_NAMES`) on the denoisers ``cond`` / ``uncond`` as a guidance
    object (``cond``, ``active``, ``delta``, ``__call__``, ``reset``). See the module docstring for ``weight``,
    ``space``, ``path`` (``space="velocity"`` only; taken from the denoisers when they carry one) and ``sigmas``.

    The guider's own ``guidance_scale`` is overwritten at every call from ``weight``; its other settings (eta,
    momentum, norm threshold, alpha, guidance_rescale, start/stop, zero-init steps) are the guider's."""

    def __init__(self, cond: Denoiser, uncond: Denoiser, guider, weight: Union[float, WeightSchedule] = 1.0, *,
                 space: str = "eps", path: Optional[Path] = None, sigmas=None):
        check_callable("cond", cond)
        check_callable("uncond", uncond)
        name = type(guider).__name__
        if name not in GUIDER_NAMES or not callable(getattr(guider, "prepare_inputs", None)):
            raise ValueError(f"guider must be one of diffusers' {GUIDER_NAMES}, got {guider!r}")
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
        if space == "velocity":
            path = resolve_path(path, {"cond": cond, "uncond": uncond}, rule=f"diffusers:{name} on the velocity")
        elif path is not None:
            raise ValueError(f"path={path!r} only applies with space='velocity', got space={space!r}")
        self.cond, self.uncond, self.guider, self.space, self.path = cond, uncond, guider, space, path
        self.weight = as_schedule(weight)
        self.sigmas = None if sigmas is None else check_sigmas(sigmas)
        if self.sigmas is None:
            config = guider.config
            stepped = [k for k, bad in (("start", config.get("start", 0.0) != 0.0),
                                        ("stop", config.get("stop", 1.0) != 1.0),
                                        ("zero_init_steps", getattr(guider, "zero_init_steps", 0) > 0),
                                        ("adaptive_projected_guidance_momentum",
                                         getattr(guider, "adaptive_projected_guidance_momentum", None) is not None))
                       if bad]
            if stepped:
                raise ValueError(f"diffusers:{name} has step-dependent settings {stepped}; pass sigmas= (the sampler's "
                                 "grid) so that each level is a step")
        self.reset()

    @property
    def name(self) -> str:
        return f"diffusers:{type(self.guider).__name__}"

    def reset(self) -> None:
        """Start a new trajectory: diffusers' step-0 preparation (a fresh APG momentum buffer)."""
        self._set_state(self.sigmas[0].item() if self.sigmas is not None else 1.0)
        self.guider.prepare_inputs({})

    def _step(self, sigma: float) -> int:
        if self.sigmas is None:
            return 0
        hit = torch.nonzero(torch.isclose(self.sigmas[:-1], torch.tensor(float(sigma), dtype=self.sigmas.dtype),
                                          rtol=1e-9, atol=0)).flatten()
        if hit.numel() == 0:
            raise ValueError(f"{self.name}: sigma={float(sigma)} is not a level of the grid sigmas (steps are levels; "
                             "samplers that evaluate between levels, like Heun, need sigmas=None)")
        return int(hit[0])

    def _set_state(self, sigma: float) -> None:
        steps = None if self.sigmas is None else self.sigmas.numel() - 1
        self.guider.set_state(step=self._step(sigma), num_inference_steps=steps,
                              timestep=torch.tensor(float(sigma)))
        self.guider.guidance_scale = guider_scale(self.weight(sigma), bool(self.guider.use_original_formulation))

    def active(self, sigma: float) -> bool:
        self._set_state(sigma)
        state = self.guider.get_state()
        zero_init = state["enabled"] and getattr(self.guider, "zero_init_steps", 0) > state["step"]
        return self.guider.num_conditions == 2 or zero_init

    def _to_pred(self, x: torch.Tensor, sigma: float, d: torch.Tensor) -> torch.Tensor:
        if self.space == "eps":
            return (x - d) / sigma
        elif self.space == "x0":
            return d
        elif self.space == "velocity":
            return velocity_from_denoised(self.path, x, sigma, d)
        raise ValueError(f"space must be one of {SPACES}, got {self.space!r}")

    def _from_pred(self, x: torch.Tensor, sigma: float, pred: torch.Tensor) -> torch.Tensor:
        if self.space == "eps":
            return x - sigma * pred
        elif self.space == "x0":
            return pred
        elif self.space == "velocity":
            return denoised_from_velocity(self.path, x, sigma, pred)
        raise ValueError(f"space must be one of {SPACES}, got {self.space!r}")

    def guide(self, pred_cond: torch.Tensor, pred_uncond: Optional[torch.Tensor], sigma: float) -> torch.Tensor:
        """The guider's output on two predictions in its own space (the pipeline's call sequence at level ``sigma``)."""
        self._set_state(sigma)
        preds = pred_cond if self.guider.num_conditions == 1 else (pred_cond, pred_uncond)
        batches = self.guider.prepare_inputs({"noise_pred": preds})
        return self.guider(batches).pred

    def delta(self, x: torch.Tensor, sigma: float, d_cond: torch.Tensor) -> torch.Tensor:
        sigma = float(sigma)
        if self.space == "eps" and not sigma > 0:
            raise ValueError(f"{self.name} on eps needs sigma > 0 (eps = (x - D) / sigma), got sigma={sigma}")
        self._set_state(sigma)
        d_u = self.uncond(x, sigma) if self.guider.num_conditions == 2 else None
        p_c = self._to_pred(x, sigma, d_cond)
        p_u = None if d_u is None else self._to_pred(x, sigma, d_u)
        out = self.guide(p_c, p_u, sigma)
        return self._from_pred(x, sigma, out).to(d_cond.dtype) - d_cond

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        d_c = self.cond(x, sigma)
        if not self.active(sigma):
            return d_c
        return d_c + self.delta(x, sigma, d_c)


def _factory(name: str) -> Callable[..., DiffusersGuidance]:
    def factory(w, cond: Denoiser, uncond: Denoiser, *, space: str = "eps", path: Optional[Path] = None,
                sigmas=None, **guider_options) -> DiffusersGuidance:
        cls = getattr(importlib.import_module("diffusers.guiders"), name)
        if "guidance_scale" in guider_options:
            raise ValueError("pass the library's weight w, not guidance_scale (the adapter sets it: s = 1 + w)")
        original = bool(guider_options.get("use_original_formulation", False))
        guider = cls(guidance_scale=guider_scale(0.0, original), **guider_options)  # set from w at every call
        return DiffusersGuidance(cond, uncond, guider, w, space=space, path=path, sigmas=sigmas)

    factory.__name__ = f"diffusers_{name}"
    factory.__doc__ = (f"``diffusers.guiders.{name}`` with the library's weight ``w`` as a "
                       ":class:`DiffusersGuidance`; ``guider_options`` go to the guider's constructor.")
    return factory


def load_guiders() -> tuple:
    """``(factories, skipped)``: the factories of the guiders this diffusers has, and the names it lacks with the
    reason (what :data:`DIFFUSERS_GUIDERS` and :func:`skipped_guiders` hold, computed at import)."""
    try:
        guiders = importlib.import_module("diffusers.guiders")
    except ImportError as e:
        return {}, {name: f"diffusers is not installed ({e}); install the [images] extra" for name in GUIDER_NAMES}
    found, skipped = {}, {}
    for name in GUIDER_NAMES:
        if hasattr(guiders, name):
            found[name] = _factory(name)
        else:
            skipped[name] = f"diffusers {getattr(importlib.import_module('diffusers'), '__version__', '?')} has no {name}"
    return found, skipped


DIFFUSERS_GUIDERS: Dict[str, Callable[..., DiffusersGuidance]]
_SKIPPED: Dict[str, str]
DIFFUSERS_GUIDERS, _SKIPPED = load_guiders()


def skipped_guiders() -> Dict[str, str]:
    """The guider names missing from :data:`DIFFUSERS_GUIDERS`, each with the reason (diffusers not installed, or
    an older diffusers without that class)."""
    return dict(_SKIPPED)


class ConformanceRow(NamedTuple):
    guider: str  # "diffusers:<ClassName>" with its options
    rule: str  # the toolkit's rule it is compared with
    space: str  # the prediction the guider sees
    max_abs: float  # max |diffusers - toolkit| over the samples' guided D
    max_rel: float  # max_abs / max |toolkit|
    agrees: bool  # max_abs <= 64 float32 epsilons of the outputs' scale
    source: str  # the diffusers line a difference comes from ("" where they agree by design)


def conformance(n: int = 64, shape: tuple = (16,), seed: int = 0, w: float = 2.0) -> list:
    """diffusers' guiders against this toolkit's rules on random float32 predictions ``[n, *shape]`` (``x``, ``D_c``,
    ``D_u`` standard normal, ``sigma = 0.5``; on ``VEPath(1)`` the velocity is eps). One :class:`ConformanceRow` per
    pair; ``ValueError`` without diffusers. The tests in ``tests/images/test_guiders.py`` pin each difference."""
    from sampler import APG, CFG, LINEAR, TCFG, CFGZeroStar, GuidanceRescale, MamboG, VEPath

    if not DIFFUSERS_GUIDERS:
        raise ValueError(f"diffusers guiders unavailable: {skipped_guiders()}")
    g = torch.Generator().manual_seed(seed)
    x, dc, du = (torch.randn((n,) + tuple(shape), generator=g) for _ in range(3))
    c, u = (lambda x_, s_: dc), (lambda x_, s_: du)
    sigma, eps_path = 0.5, VEPath(1.0)
    f = DIFFUSERS_GUIDERS
    cases = [
        ("ClassifierFreeGuidance", {}, "eps", "CFG", CFG(c, u, w), ""),
        ("ClassifierFreeGuidance", {"guidance_rescale": 0.7}, "eps", "GuidanceRescale(CFG, 0.7)",
         GuidanceRescale(CFG(c, u, w), 0.7), ""),
        ("AdaptiveProjectedGuidance", {"eta": 0.0, "adaptive_projected_guidance_rescale": 0.0,
                                       "use_original_formulation": True}, "x0", "APG(eta=0, on='x0')",
         APG(c, u, w, eta=0.0), ""),
        ("AdaptiveProjectedGuidance", {"eta": 0.0, "adaptive_projected_guidance_rescale": 2.0}, "x0",
         "APG(eta=0, norm_cap=2, on='x0')", APG(c, u, w, eta=0.0, norm_cap=2.0),
         "guiders/adaptive_projected_guidance.py:250-251 (default formulation u + s * update)"),
        ("ClassifierFreeZeroStarGuidance", {"zero_init_steps": 0}, "velocity", "CFGZeroStar(path=LINEAR)",
         CFGZeroStar(c, u, w, path=LINEAR), "guiders/classifier_free_zero_star_guidance.py:157-161 (float32, +1e-8)"),
        ("TangentialClassifierFreeGuidance", {}, "eps", "TCFG", TCFG(c, u, w),
         "guiders/tangential_classifier_free_guidance.py:136 (SVD in float32)"),
        ("MagnitudeAwareGuidance", {"alpha": 8.0}, "eps", "MamboG(alpha=8)", MamboG(c, u, w, alpha=8.0),
         "guiders/magnitude_aware_guidance.py:148-150 (fails on [N, C, H, W])"),
        ("MagnitudeAwareGuidance", {"alpha": 1.0, "guidance_rescale": 0.7}, "eps", "GuidanceRescale(MamboG, 0.7)",
         GuidanceRescale(MamboG(c, u, w, alpha=1.0), 0.7), "guiders/magnitude_aware_guidance.py:148-150 (fails on [N, C, H, W])"),
        ("ClassifierFreeZeroStarGuidance", {"zero_init_steps": 0, "guidance_rescale": 0.7}, "eps",
         "GuidanceRescale(CFGZeroStar(path=VEPath(1)), 0.7)", GuidanceRescale(CFGZeroStar(c, u, w, path=eps_path), 0.7),
         ""),
    ]
    rows = []
    for name, options, space, rule_name, rule, source in cases:
        path = LINEAR if space == "velocity" else None
        try:
            theirs = f[name](w, c, u, space=space, path=path, **options)(x, sigma)
        except RuntimeError as e:  # a failure of diffusers' own code is a finding, reported as such
            rows.append(ConformanceRow(f"diffusers:{name} {options}", rule_name, space, math.nan, math.nan, False,
                                       f"{source}: {type(e).__name__}: {e}"))
            continue
        ours = rule(x, sigma)
        scale = max(ours.abs().max().item(), theirs.abs().max().item(), 1.0)
        err = (theirs - ours).abs().max().item()
        rows.append(ConformanceRow(f"diffusers:{name} {options}", rule_name, space, err, err / scale,
                                   err <= 64 * torch.finfo(torch.float32).eps * scale, source))
    return rows


def conformance_markdown(rows=None) -> str:
    """``docs/conformance.md``: the rows of :func:`conformance` (computed when ``rows`` is None) as a table,
    generated: the max absolute and relative differences at 2 significant digits, the verdict (agreement to
    float32, or the difference) and the diffusers source line each difference comes from. Written by
    ``python -m images.guiders --conformance docs/conformance.md``."""
    rows = conformance() if rows is None else rows
    lines = ["# diffusers' guiders against this toolkit's rules", "",
             "Generated by `python -m images.guiders --conformance docs/conformance.md` from "
             "`images.guiders.conformance()`; do not edit by hand. Each diffusers guider runs through "
             "`images.guiders.DiffusersGuidance` (weight mapped `s = 1 + w`) against the toolkit's implementation of "
             "the rule from its paper, on 64 random float32 samples of shape [16] (x, D_c, D_u standard normal, "
             "seed 0), w = 2, sigma = 0.5. \"agrees to float32\": max |diffusers - toolkit| <= 64 float32 "
             "epsilons of the outputs' scale. Source lines are in `src/diffusers/` of the installed diffusers "
             "(0.42).", "",
             "| diffusers guider (options) | toolkit rule | prediction | max abs diff | max rel diff | verdict | "
             "diffusers source |", "|---|---|---|---:|---:|---|---|"]
    for r in rows:
        if math.isnan(r.max_abs):
            verdict = "fails in diffusers"
        else:
            verdict = "agrees to float32" if r.agrees else f"differs (max abs {r.max_abs:.2g})"
        lines.append(f"| `{r.guider}` | `{r.rule}` | {r.space} | {r.max_abs:.2g} | {r.max_rel:.2g} | {verdict} | "
                     f"{r.source or '-'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import argparse
    from pathlib import Path as _FilePath

    from sampler.files import write_atomically

    ap = argparse.ArgumentParser(prog="python -m images.guiders", allow_abbrev=False,
                                 description="Write the diffusers conformance table (docs/conformance.md).")
    ap.add_argument("--conformance", type=_FilePath, required=True, metavar="PATH")
    args = ap.parse_args()
    try:
        text = conformance_markdown()
    except ValueError as err:
        ap.error(str(err))
    write_atomically(args.conformance, text)
    print(f"wrote {args.conformance}")
