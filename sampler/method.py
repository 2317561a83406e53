"""A guided method by value, with one text spelling (ARCHITECTURE.md, contract 9): a rule, a weight, a weighting
(how the weight varies over the noise levels) and an optional REG estimator, spelled ``RULE[,KEY=VALUE]...`` with
the keys of its fields, e.g. ``cfg,w=2``, ``cfg,w=3,reg=vjp``, ``cfg,w=1,weighting=interval,lo=0.1,hi=1``,
``autog,reg=paper``. :meth:`Method.parse` reads the spelling, ``str(method)`` writes it back (only the fields that
differ from their defaults), :attr:`Method.label` is its human name.

This is the part of the experiment vocabulary that needs nothing but the sampler core: the weight schedule on
given levels (:meth:`Method.weight`) and the guidance object over given denoisers (:meth:`Method.guide`), for
exact mixtures, toy networks and image networks alike. :class:`evaluation.spec.Method` builds on it with what
needs the exact mathematics (the reward a method aims at, the exact optimum, ``build(law, levels)``).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import torch

from .flow_guidance import APG, CFGZeroStar, ZeroInit, zero_init_sigma
from .guidance import CFG, AutoGuidance, ClassifierGuidance, TiltedMean, Unguided
from .paths import Path
from .reg import ESTIMATORS, REG
from .weights import Constant, Cosine, Interval, LinearRamp

__all__ = ["Method", "GridWeight", "cfgpp_weights", "RULES", "WEIGHTINGS", "format_number", "parse_float",
           "parse_int"]

RULES = ("unguided", "cfg", "autog", "cg", "optimal", "cfgpp", "cfg_zero_star", "cfg_zero_star_init", "apg",
         "apg_momentum")
WEIGHTINGS = ("const", "linear", "cosine", "interval", "up", "down")
_LABELS = {"unguided": "unguided", "cfg": "CFG", "autog": "AutoG", "cg": "CG", "optimal": "optimum",
           "cfgpp": "CFG++", "cfg_zero_star": "CFG-Zero*", "cfg_zero_star_init": "CFG-Zero* + zero-init",
           "apg": "APG", "apg_momentum": "APG + momentum"}
_UNWEIGHTED = ("unguided", "optimal")  # rules without a guidance delta for REG to modify


def format_number(v: float) -> str:
    """The shortest text that reads back as the same float (``2`` for 2.0)."""
    v = float(v)
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def parse_float(text: str, what: str, spec: str) -> float:
    """``text`` as a finite float; ``ValueError`` naming ``what`` and the whole spelling ``spec`` otherwise."""
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number in {spec!r}, got {text!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{what} must be finite in {spec!r}, got {text!r}")
    return v


def parse_int(text: str, what: str, spec: str, least: int) -> int:
    """``text`` as an integer ``>= least``; ``ValueError`` naming ``what`` and the spelling ``spec`` otherwise."""
    try:
        v = int(text)
    except ValueError:
        raise ValueError(f"{what} must be an integer in {spec!r}, got {text!r}") from None
    if v < least:
        raise ValueError(f"{what} must be >= {least} in {spec!r}, got {v}")
    return v


@dataclass(frozen=True)
class GridWeight:
    """A weight given at each level of one sigma grid (a function of sigma, found by lookup; ``ValueError``
    at any other level). Mean-matched step schedules and CFG++'s step-dependent weight are of this kind."""

    sigmas: tuple[float, ...]
    weights: tuple[float, ...]

    def __post_init__(self):
        if len(self.sigmas) != len(self.weights) or not self.sigmas:
            raise ValueError(f"need one weight per level, got {len(self.sigmas)} levels and {len(self.weights)} weights")

    def __call__(self, sigma: float) -> float:
        s = float(sigma)
        for level, w in zip(self.sigmas, self.weights):
            if abs(level - s) <= 1e-9 * max(level, 1e-300):
                return w
        raise ValueError(f"sigma={s} is not a level of this weight grid ({len(self.sigmas)} levels)")


def cfgpp_weights(lam: float, sigmas: torch.Tensor) -> GridWeight:
    """CFG++ (arXiv 2406.08070) run as DDIM, ``x' = D^lam + sigma' eps_u`` with ``D^lam`` the denoiser of
    ``eps_u + lam (eps_c - eps_u)``, equals the CFG DDIM step ``x' = x - (sigma - sigma') eps_g`` with
    ``eps_g = eps_u + s (eps_c - eps_u)``, ``s = lam sigma / (sigma - sigma')`` (lerp scale), i.e. the
    library's weight ``w = s - 1`` at that level (derived in :mod:`evaluation.claims.cfgpp`)."""
    s = sigmas.tolist()
    levels = tuple(s[i] for i in range(len(s) - 1))
    return GridWeight(levels, tuple(lam * s[i] / (s[i] - s[i + 1]) - 1.0 for i in range(len(s) - 1)))


class _EpsShift:
    """``D(x, sigma) - sigma * e``: a denoiser whose eps prediction is off by the constant ``e``."""

    def __init__(self, denoiser, e: float):
        self.denoiser, self.e = denoiser, float(e)

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return self.denoiser(x, sigma) - float(sigma) * self.e


@dataclass(frozen=True)
class Method:
    """One guided sampler by value.

    rule: one of :data:`RULES`: ``unguided``; ``cfg``; ``autog`` (the weak model ``weak=`` of :meth:`guide`;
        ``bad`` spells it for the exact laws of :mod:`evaluation.spec`); ``cg`` (a classifier gradient);
        ``optimal`` (a tilted posterior mean); ``cfgpp`` (CFG++ with lambda = ``w``, run as DDIM: one step of it
        is a CFG step with the weight of :func:`cfgpp_weights`); ``cfg_zero_star`` (optimised scale on the
        levels' path velocity); ``cfg_zero_star_init`` (the same with the first ``zero_init_steps`` velocities
        zeroed); ``apg`` (on ``x0``, ``eta = 0``, no norm cap) and ``apg_momentum`` (with reverse momentum
        ``momentum``).
    w: the weight (library convention ``D_c + w (D_c - D_ref)``).
    weighting: ``const``; ``linear`` (0 at ``hi`` to 2w at ``lo``, linear in sigma); ``cosine`` (power-cosine, 0 at
        ``hi`` to 2w at sigma = 0); ``interval`` (``w`` for sigma in [``lo``, ``hi``], else 0); ``up``/``down``
        (linear in the step index, mean exactly ``w`` over the steps). ``lo``/``hi`` unset (None): the last and
        the first level.
    reg: ``""`` (no REG) or a REG estimator (``paper``, ``vjp``, ``diag``, ``jvp``, ``fd``).
    bad: the autoguidance weak model of an exact law, ``cov:S`` or ``shift:D`` (checked and built by
        :mod:`evaluation.spec`; :meth:`guide` takes the weak model itself).
    eps_error: a constant error added to the conditional eps prediction (``D_c - sigma * eps_error``).
    """

    rule: str = "cfg"
    w: float = 1.0
    weighting: str = "const"
    reg: str = ""
    lo: float | None = None
    hi: float | None = None
    bad: str = "cov:2"
    eps_error: float = 0.0
    momentum: float = -0.5
    zero_init_steps: int = 1

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"unknown rule {self.rule!r}; choose one of {RULES}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.weighting!r}; choose one of {WEIGHTINGS}")
        if self.reg and self.reg not in ESTIMATORS:
            raise ValueError(f"unknown REG estimator {self.reg!r}; choose '' or one of {ESTIMATORS}")
        if self.reg and self.rule in _UNWEIGHTED:
            raise ValueError(f"REG modifies a guidance; {self.rule!r} has none to modify")
        for name in ("w", "eps_error", "momentum"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
            object.__setattr__(self, name, float(v))
        for name in ("lo", "hi"):
            v = getattr(self, name)
            if v is not None:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v < 0:
                    raise ValueError(f"{name} must be None or a number >= 0, got {v!r}")
                object.__setattr__(self, name, float(v))
        if self.lo is not None and self.hi is not None and not self.lo < self.hi:
            raise ValueError(f"lo must be below hi, got lo={self.lo}, hi={self.hi}")
        if isinstance(self.zero_init_steps, bool) or not isinstance(self.zero_init_steps, int) or self.zero_init_steps < 0:
            raise ValueError(f"zero_init_steps must be an integer >= 0, got {self.zero_init_steps!r}")
        if not isinstance(self.bad, str):
            raise ValueError(f"bad must be a string ('cov:S' or 'shift:D'), got {self.bad!r}")

    @classmethod
    def parse(cls, text: str):
        """The method spelled ``text`` (module docstring), as this class; ``ValueError`` naming the bad item."""
        return _parse(cls, text)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    @property
    def label(self) -> str:
        """The method's human name for figures and tables, e.g. ``CFG``, ``REG (vjp)``, ``AutoG (linear) + REG (paper)``."""
        if self.rule == "cfg" and self.reg and self.weighting == "const":
            return f"REG ({self.reg})"
        name = _LABELS[self.rule] + ("" if self.weighting == "const" else f" ({self.weighting})")
        return name + (f" + REG ({self.reg})" if self.reg else "")

    def __str__(self) -> str:
        parts = [self.rule]
        for f in dataclasses.fields(self)[1:]:
            v = getattr(self, f.name)
            if v != f.default:
                parts.append(f"{f.name}={format_number(v) if isinstance(v, float) else v}")
        return ",".join(parts)

    # --- building -------------------------------------------------------------------------------------------
    def weight(self, sigmas: torch.Tensor):
        """The weight schedule (a function of sigma) on the levels ``sigmas`` (ending at 0)."""
        w = self.w
        levels = [s for s in sigmas.tolist() if s > 0]
        s_max, s_min = levels[0], levels[-1]
        lo = s_min if self.lo is None else self.lo
        hi = s_max if self.hi is None else self.hi
        if self.weighting == "const":
            return Constant(w)
        if self.weighting == "linear":
            return LinearRamp(0.0, 2 * w, lo, hi)
        if self.weighting == "cosine":
            return Cosine(2 * w, 1.0, hi)
        if self.weighting == "interval":
            return Interval(w, 0.0 if self.lo is None else lo, min(hi, 2 * s_max))
        if self.weighting in ("up", "down"):
            K = len(levels)
            ramp = [2 * w * (i + 1) / (K + 1) for i in range(K)]  # mean exactly w
            return GridWeight(tuple(levels), tuple(ramp if self.weighting == "up" else ramp[::-1]))
        raise ValueError(f"unknown weighting {self.weighting!r}")

    def guide(self, cond, uncond, sigmas: torch.Tensor, *, weak=None, grad=None, tilted_mean=None,
              path: Path | None = None):
        """The guidance object of this method over given denoisers (exact mixtures, toy or image networks):
        ``cond``/``uncond`` the conditional and unconditional denoisers, ``weak`` the weak model (``autog``),
        ``grad`` the classifier's log-likelihood gradient (``cg``), ``tilted_mean`` the golden (``optimal``),
        ``path`` the velocity path (CFG-Zero*), all for the levels ``sigmas``."""
        r = self.rule

        def need(value, what):
            if value is None:
                raise ValueError(f"rule {r!r} needs {what}")
            return value

        if self.eps_error:
            cond = _EpsShift(cond, self.eps_error)
        if r == "unguided":
            return Unguided(cond)
        if r == "optimal":
            return TiltedMean(cond, need(tilted_mean, "the tilted mean (tilted_mean=)"))
        if r == "cfgpp":
            g = CFG(cond, uncond, cfgpp_weights(self.w, sigmas))
        elif r == "cfg":
            g = CFG(cond, uncond, self.weight(sigmas))
        elif r == "autog":
            g = AutoGuidance(cond, need(weak, "a weak model (weak=)"), self.weight(sigmas))
        elif r == "cg":
            g = ClassifierGuidance(cond, need(grad, "a classifier gradient (grad=)"), self.weight(sigmas))
        elif r == "cfg_zero_star":
            g = CFGZeroStar(cond, uncond, self.weight(sigmas), need(path, "a path (path=)"))
        elif r == "cfg_zero_star_init":
            p = need(path, "a path (path=)")
            g = ZeroInit(CFGZeroStar(cond, uncond, self.weight(sigmas), p), zero_init_sigma(sigmas, self.zero_init_steps), p)
        elif r == "apg":
            g = APG(cond, uncond, self.weight(sigmas), eta=0.0)
        elif r == "apg_momentum":
            g = APG(cond, uncond, self.weight(sigmas), eta=0.0, momentum=self.momentum)
        else:
            raise ValueError(f"unknown rule {r!r}")
        return REG(g, self.reg) if self.reg else g


_TYPES = {f.name: f.type for f in dataclasses.fields(Method)}


@functools.cache
def _parse(cls, text: str):
    if not isinstance(text, str) or not text:
        raise ValueError(f"a method is spelled 'RULE[,KEY=VALUE]...' (rules {RULES}), got {text!r}")
    rule, *items = text.split(",")
    kw: dict = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or key not in _TYPES or key == "rule" or key in kw:
            raise ValueError(f"bad item {item!r} in method {text!r}: use KEY=VALUE once per key, keys "
                             f"{tuple(k for k in _TYPES if k != 'rule')}")
        kind = _TYPES[key]
        if key == "zero_init_steps":
            kw[key] = parse_int(value, key, text, 0)
        elif "float" in str(kind):
            kw[key] = float(value) if value in ("inf",) else parse_float(value, key, text)
        else:
            kw[key] = value
    return cls(rule, **kw)
