"""Closed forms for one Gaussian conditional and one Gaussian unconditional in 1-D (sympy).

THEORY.md sections 4 to 6 for ``p(x_0|y) = N(mu_c, s_c^2)``, ``p(x_0) = N(mu_u, s_u^2)``, the CFG reward
``R_0 = (p_c / p_u)^w`` and the VP noise level ``abar = a`` in (0, 1). Everything is *derived* here, once,
from the model: the noised densities and ``E_t`` are Gaussian integrals done by sympy (with a positive
symbol for the quadratic coefficient), the guidance terms are derivatives of those. All terms are in eps
units (the term added to ``eps_c``):

    golden = -sqrt(1-a) d/dx log E_t          (the optimum, THEORY.md section 4)
    cfg    = -sqrt(1-a) d/dx log R_t = w (eps_c - eps_u)
    reg    = cfg * (1 - sqrt(1-a) d eps_c/dx)  (THEORY.md section 6; in 1-D all REG estimators coincide)
    gap_cfg = golden - cfg,  gap_reg = golden - reg

Every field is affine in ``x``. ``E_t`` is finite exactly when the tilted posterior precision
``(1+w)/s_c^2 - w/s_u^2 + a/(1-a)`` is positive (derived, not assumed: it is the quadratic coefficient
of the integrand of ``E_t``).

What the closed forms say (tested in ``tests/analytic/test_symbolic.py``). With ``v = a s^2 + 1 - a`` and
``Q = a s_c^2 s_u^2 + (1 - a)(s_u^2 + w (s_u^2 - s_c^2))`` (``Q > 0`` iff ``E_t`` is finite), all three
fields are multiples of one affine function: ``golden = kappa cfg``, ``reg = rho cfg`` with
``kappa = s_c^2 v_u / Q``, ``kappa - 1 = (1 - a)(1 + w)(s_c^2 - s_u^2) / Q`` and ``rho = a s_c^2 / v_c`` in (0, 1).
So CFG is exact for every ``a`` and ``w`` iff ``s_c = s_u`` (REG then damps an exact term by ``rho``); CFG
overshoots the optimum iff the conditional is narrower (``s_c < s_u``), undershoots iff wider, where REG,
which only shrinks, always hurts. REG is closer than CFG iff ``L(a) < 0`` with ``L`` linear in ``a``,
``L(0) = (2 + w) s_c^2 - (1 + w) s_u^2``, ``L(1) = s_c^2 (2 (1 + w) s_c^2 - (1 + 2 w) s_u^2)``; REG is exact
at the single noise level ``a* = 1 / (1 - s_c^2 + w (s_u^2 - s_c^2))`` when that lies in (0, 1).

Public API: :func:`single_gaussian_forms` (the sympy expressions, built lazily once),
:func:`fields` (fast numpy versions), :func:`coefficients` (slopes and intercepts),
:func:`tilted_precision`, :func:`gap_summary` (where CFG is exact, where REG helps or hurts).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import sympy as sp

__all__ = [
    "Affine",
    "SingleGaussianForms",
    "single_gaussian_forms",
    "GuidanceFields1D",
    "Line",
    "FieldCoefficients",
    "fields",
    "coefficients",
    "tilted_precision",
    "GapSummary",
    "gap_summary",
]

_PARAMS = ("a", "mu_c", "s_c", "mu_u", "s_u", "w")


# ------------------------------------------------------------------------------------------------
# Symbolic derivation
# ------------------------------------------------------------------------------------------------
class Affine(NamedTuple):
    """An expression ``slope * x + intercept`` (sympy)."""

    slope: sp.Expr
    intercept: sp.Expr


@dataclass(frozen=True)
class SingleGaussianForms:
    """The derived sympy symbols and expressions (see the module docstring for the definitions).

    ``tilted_precision`` is the precision of ``p(x_0 | x_t, y) R_0(x_0)`` as a density in ``x_0``; ``E_t``
    is finite iff it is positive, and ``log_E``, ``grad_log_E`` and ``golden`` are valid only there.
    ``reg_factor = 1 - sqrt(1-a) d eps_c/dx`` is the factor REG multiplies the CFG term by, and
    ``golden_over_cfg`` the one the optimum does: both are constant in ``x``, so the three fields are
    proportional and vanish at the same point. The field expressions are written as
    ``slope * x + intercept`` with the factored coefficients of the ``*_affine`` attributes.
    ``msq_gap_cfg`` and ``msq_gap_reg`` are the mean squared gaps under the conditional noised density
    ``p_t(x|y) = N(sqrt(a) mu_c, a s_c^2 + 1 - a)``; ``msq_golden`` the mean square of the optimum.
    """

    x: sp.Symbol
    a: sp.Symbol
    mu_c: sp.Symbol
    s_c: sp.Symbol
    mu_u: sp.Symbol
    s_u: sp.Symbol
    w: sp.Symbol
    log_p_c: sp.Expr  # log p_t(x | y)
    log_p_u: sp.Expr  # log p_t(x)
    eps_c: sp.Expr
    eps_u: sp.Expr
    log_E: sp.Expr  # log E_t(x)
    grad_log_E: sp.Expr  # d/dx log E_t(x)
    tilted_precision: sp.Expr
    reg_factor: sp.Expr
    golden_over_cfg: sp.Expr  # golden = golden_over_cfg * cfg for every x (where cfg is not identically 0)
    golden: sp.Expr
    cfg: sp.Expr
    reg: sp.Expr
    gap_cfg: sp.Expr
    gap_reg: sp.Expr
    golden_affine: Affine
    cfg_affine: Affine
    reg_affine: Affine
    gap_cfg_affine: Affine
    gap_reg_affine: Affine
    msq_golden: sp.Expr
    msq_gap_cfg: sp.Expr
    msq_gap_reg: sp.Expr

    @property
    def params(self) -> tuple[sp.Symbol, ...]:
        """``(a, mu_c, s_c, mu_u, s_u, w)``, the argument order of every numerical function."""
        return (self.a, self.mu_c, self.s_c, self.mu_u, self.s_u, self.w)


@functools.cache
def _standard_gaussian_integral() -> tuple[sp.Symbol, sp.Symbol, sp.Expr]:
    """``log int exp(-A t^2 / 2 + B t) dt`` done by sympy, with ``A`` a positive symbol."""
    t = sp.Symbol("t", real=True)
    A, B = sp.Symbol("A", positive=True), sp.Symbol("B", real=True)
    integral = sp.simplify(sp.integrate(sp.exp(-A * t**2 / 2 + B * t), (t, -sp.oo, sp.oo)))
    return A, B, sp.expand_log(sp.log(integral), force=True)


def _log_gaussian_integral(log_integrand: sp.Expr, t: sp.Symbol) -> tuple[sp.Expr, sp.Expr]:
    """``log int exp(log_integrand) dt`` for an integrand quadratic in ``t``, and its quadratic coefficient
    ``A`` (``log_integrand = -A t^2 / 2 + B t + C``); the integral is finite iff ``A > 0``."""
    c2, c1, c0 = sp.Poly(sp.expand(log_integrand), t).all_coeffs()
    A_, B_, log_integral = _standard_gaussian_integral()
    A = sp.factor(-2 * c2)
    return log_integral.subs({A_: A, B_: c1}) + c0, A


def _log_normal(z, mean, var) -> sp.Expr:
    return -(z - mean) ** 2 / (2 * var) - sp.log(2 * sp.pi * var) / 2


def _rational(expr: sp.Expr) -> sp.Expr:
    """Simplified form of a rational function: ``factor`` (fast and canonical, unlike ``simplify``)."""
    return sp.factor(sp.cancel(expr))


def _affine(expr: sp.Expr, x: sp.Symbol) -> Affine:
    if _rational(sp.diff(expr, x, 2)) != 0:
        raise AssertionError(f"not affine in x: {expr}")  # pragma: no cover - a derivation bug
    return Affine(_rational(sp.diff(expr, x)), _rational(expr.subs(x, 0)))


def _gaussian_mean_square(line: Affine, mean: sp.Expr, var: sp.Expr) -> sp.Expr:
    """``E[(slope X + intercept)^2]`` for ``X ~ N(mean, var)``, from the first two moments of ``X``.

    Done for generic coefficients, then the (already factored) slope and intercept are substituted:
    factoring the expanded result takes sympy minutes and reads no better."""
    X, k, b = sp.symbols("X k b", real=True)
    poly = sp.Poly(sp.expand((k * X + b) ** 2), X)
    moments = {0: sp.Integer(1), 1: mean, 2: mean**2 + var}
    generic = sp.collect(sp.expand(sum(c * moments[m[0]] for m, c in poly.terms())), [k, b])
    return generic.subs({k: line.slope, b: line.intercept}, simultaneous=True)


@functools.cache
def single_gaussian_forms() -> SingleGaussianForms:
    """Derive all closed forms (a few seconds; cached, so built at most once per process).

    The derivation runs in ``r = sqrt(a)`` and ``c = sqrt(1 - a)`` (with ``c^2 = 1 - r^2``) so that
    every field is ``c`` times a rational function, simplified by ``factor``; ``sympy.simplify`` on the
    radicals would take minutes."""
    x, mu_c, mu_u, w = sp.symbols("x mu_c mu_u w", real=True)
    a, s_c, s_u = sp.symbols("a s_c s_u", positive=True)  # a < 1 is imposed by the numerical layer
    r, c = sp.symbols("r c", positive=True)  # sqrt(a), sqrt(1 - a)
    x0 = sp.Symbol("x_0", real=True)

    log_q = _log_normal(x, r * x0, 1 - r**2)  # log q(x_t = x | x_0)
    log_p0_c = _log_normal(x0, mu_c, s_c**2)
    log_p0_u = _log_normal(x0, mu_u, s_u**2)
    log_R0 = w * (log_p0_c - log_p0_u)

    # Noised densities p_t(x) = int q(x|x_0) p(x_0) dx_0, hence eps = -c d/dx log p_t.
    log_p_c, _ = _log_gaussian_integral(log_q + log_p0_c, x0)
    log_p_u, _ = _log_gaussian_integral(log_q + log_p0_u, x0)
    score_c, score_u = _rational(sp.diff(log_p_c, x)), _rational(sp.diff(log_p_u, x))

    # E_t(x) = int p(x_0 | x, y) R_0(x_0) dx_0 with the exact posterior p(x_0|x,y) = q p_c / p_t(x|y).
    log_numerator, precision = _log_gaussian_integral(log_q + log_p0_c + log_R0, x0)
    log_E = log_numerator - log_p_c
    grad_log_E = _rational(sp.diff(log_E, x))

    # Every term is -c times a rational function ("/c" below); c^2 = 1 - r^2 closes the algebra.
    golden_c = -grad_log_E
    cfg_c = -w * (score_c - score_u)  # R_t = (p_t(x|y) / p_t(x))^w
    reg_factor = _rational(1 - (1 - r**2) * sp.diff(-score_c, x))  # 1 - c d eps_c/dx, eps_c = -c score_c
    reg_c = _rational(cfg_c * reg_factor)
    gap_cfg_c = _rational(golden_c - cfg_c)
    gap_reg_c = _rational(golden_c - reg_c)

    def in_a(e: sp.Expr) -> sp.Expr:
        """Back to ``a``: ``r^2 -> a`` on the expanded rational parts (so ``1 - a`` is not split into
        ``(1 - r)(1 + r)``), re-factor, then ``r -> sqrt(a)``, ``c -> sqrt(1 - a)``."""
        if e.is_rational_function(x, r, c, mu_c, mu_u, s_c, s_u, w):
            num, den = sp.fraction(sp.cancel(e))
            e = sp.factor(sp.expand(num).subs(r**2, a) / sp.expand(den).subs(r**2, a))
        return e.subs({r: sp.sqrt(a), c: sp.sqrt(1 - a)})

    def log_in_a(e: sp.Expr) -> sp.Expr:
        """``in_a`` term by term for a sum of rational terms and multiples of logs of rational functions."""
        terms = [in_a(t) if t.is_rational_function(x, r, c, mu_c, mu_u, s_c, s_u, w)
                 else in_a(t.replace(sp.log, lambda arg: sp.log(in_a(arg)))) for t in sp.Add.make_args(e)]
        return sp.Add(*terms)

    lines = {name: _affine(c * e, x) for name, e in
             (("golden", golden_c), ("cfg", cfg_c), ("reg", reg_c), ("gap_cfg", gap_cfg_c), ("gap_reg", gap_reg_c))}
    mean_t, var_t = r * mu_c, r**2 * s_c**2 + 1 - r**2  # p_t(x|y), derived above; checked in the tests
    lines = {k: Affine(in_a(v.slope), in_a(v.intercept)) for k, v in lines.items()}
    field = lambda name: lines[name].slope * x + lines[name].intercept  # noqa: E731
    msq = {name: _gaussian_mean_square(lines[name], in_a(mean_t), in_a(var_t)) for name in ("golden", "gap_cfg", "gap_reg")}
    return SingleGaussianForms(
        x=x, a=a, mu_c=mu_c, s_c=s_c, mu_u=mu_u, s_u=s_u, w=w,
        log_p_c=log_in_a(log_p_c), log_p_u=log_in_a(log_p_u), eps_c=in_a(-c * score_c), eps_u=in_a(-c * score_u),
        log_E=log_in_a(log_E), grad_log_E=in_a(grad_log_E), tilted_precision=in_a(precision),
        reg_factor=in_a(reg_factor), golden_over_cfg=in_a(_rational(golden_c / cfg_c)),
        golden=field("golden"), cfg=field("cfg"), reg=field("reg"), gap_cfg=field("gap_cfg"), gap_reg=field("gap_reg"),
        golden_affine=lines["golden"], cfg_affine=lines["cfg"], reg_affine=lines["reg"],
        gap_cfg_affine=lines["gap_cfg"], gap_reg_affine=lines["gap_reg"],
        msq_golden=msq["golden"], msq_gap_cfg=msq["gap_cfg"], msq_gap_reg=msq["gap_reg"],
    )


# ------------------------------------------------------------------------------------------------
# Fast numerical versions
# ------------------------------------------------------------------------------------------------
class _Compiled(NamedTuple):
    log_E: Callable  # (x, *params)
    precision: Callable  # (*params)
    reg_factor: Callable
    golden_over_cfg: Callable
    lines: tuple[tuple[Callable, Callable], ...]  # golden, cfg, reg, gap_cfg, gap_reg: (slope, intercept)
    msq: tuple[Callable, Callable, Callable]  # golden, gap_cfg, gap_reg


@functools.cache
def _compiled() -> _Compiled:
    F = single_gaussian_forms()
    p = F.params
    f = lambda e: sp.lambdify(p, e, modules="numpy")  # noqa: E731
    lines = tuple((f(l.slope), f(l.intercept)) for l in
                  (F.golden_affine, F.cfg_affine, F.reg_affine, F.gap_cfg_affine, F.gap_reg_affine))
    return _Compiled(
        log_E=sp.lambdify((F.x,) + p, F.log_E, modules="numpy"),
        precision=f(F.tilted_precision),
        reg_factor=f(F.reg_factor),
        golden_over_cfg=f(F.golden_over_cfg),
        lines=lines,
        msq=(f(F.msq_golden), f(F.msq_gap_cfg), f(F.msq_gap_reg)),
    )


def _as_array(value, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number or array, got {value!r}") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return arr


def _check_params(a, mu_c, s_c, mu_u, s_u, w) -> tuple[np.ndarray, ...]:
    vals = tuple(_as_array(v, n) for v, n in zip((a, mu_c, s_c, mu_u, s_u, w), _PARAMS))
    a_, s_c_, s_u_ = vals[0], vals[2], vals[4]
    if np.any((a_ <= 0) | (a_ >= 1)):
        raise ValueError(f"a (abar) must lie in the open interval (0, 1), got {a!r}")
    for arr, name, raw in ((s_c_, "s_c", s_c), (s_u_, "s_u", s_u)):
        if np.any(arr <= 0):
            raise ValueError(f"{name} must be positive, got {raw!r}")
    return vals


def tilted_precision(a, mu_c, s_c, mu_u, s_u, w) -> np.ndarray:
    """``(1+w)/s_c^2 - w/s_u^2 + a/(1-a)``: ``E_t`` is finite iff this is positive (broadcasts)."""
    return np.asarray(_compiled().precision(*_check_params(a, mu_c, s_c, mu_u, s_u, w)), dtype=np.float64)


def _check_integrable(params: tuple[np.ndarray, ...]) -> None:
    """``ValueError`` where the tilted precision is not positive; within rounding of 0 (relative to the size
    of its three terms) counts as not positive, since the closed forms are then inf/nan or meaningless."""
    a, _, s_c, _, s_u, w = params
    shape = np.broadcast_shapes(*(p.shape for p in params))
    prec = np.broadcast_to(np.asarray(_compiled().precision(*params), dtype=np.float64), shape)
    size = np.abs(1 + w) / s_c**2 + np.abs(w) / s_u**2 + a / (1 - a)
    bad = np.flatnonzero(~(prec > 64 * np.finfo(np.float64).eps * size))
    if bad.size:
        i = np.unravel_index(bad[0], shape)
        at = ", ".join(f"{n}={float(np.broadcast_to(p, prec.shape)[i])!r}" for n, p in zip(_PARAMS, params))
        raise ValueError(
            f"E_t diverges at {at}: the tilted posterior precision (1+w)/s_c^2 - w/s_u^2 + a/(1-a) = "
            f"{float(prec[i])!r} is not positive ({len(bad)} of {prec.size} parameter combination(s) affected)")


class GuidanceFields1D(NamedTuple):
    """The closed-form fields at ``x`` (numpy float64, broadcast shape of all inputs), eps units."""

    golden: np.ndarray
    cfg: np.ndarray
    reg: np.ndarray
    gap_cfg: np.ndarray  # golden - cfg
    gap_reg: np.ndarray  # golden - reg
    log_E: np.ndarray  # log E_t(x)


class Line(NamedTuple):
    """``slope * x + intercept`` (numpy arrays)."""

    slope: np.ndarray
    intercept: np.ndarray

    def __call__(self, x) -> np.ndarray:
        return self.slope * np.asarray(x, dtype=np.float64) + self.intercept


class FieldCoefficients(NamedTuple):
    """Slope and intercept of each field (all fields are affine in ``x``)."""

    golden: Line
    cfg: Line
    reg: Line
    gap_cfg: Line
    gap_reg: Line


def coefficients(a, mu_c, s_c, mu_u, s_u, w) -> FieldCoefficients:
    """Slopes and intercepts of golden, CFG, REG and the two gaps; broadcasts over the parameters.

    ``ValueError`` on invalid parameters or where ``E_t`` diverges."""
    params = _check_params(a, mu_c, s_c, mu_u, s_u, w)
    _check_integrable(params)
    shape = np.broadcast_shapes(*(p.shape for p in params))
    ev = lambda fn: np.broadcast_to(np.asarray(fn(*params), dtype=np.float64), shape).copy()  # noqa: E731
    return FieldCoefficients(*(Line(ev(s), ev(i)) for s, i in _compiled().lines))


def fields(x, a, mu_c, s_c, mu_u, s_u, w) -> GuidanceFields1D:
    """golden, CFG, REG, the two gaps and ``log E_t`` at ``x`` (any broadcastable numpy arrays).

    ``ValueError`` naming the parameters where ``E_t`` diverges, and on ``a`` outside (0, 1),
    non-positive ``s_c``/``s_u`` or non-finite input; never returns inf or nan."""
    x = _as_array(x, "x")
    params = _check_params(a, mu_c, s_c, mu_u, s_u, w)
    _check_integrable(params)
    shape = np.broadcast_shapes(x.shape, *(p.shape for p in params))
    C = _compiled()
    ev = lambda arr: np.broadcast_to(np.asarray(arr, dtype=np.float64), shape).copy()  # noqa: E731
    with np.errstate(over="ignore", invalid="ignore"):
        out = [ev(s(*params) * x + i(*params)) for s, i in C.lines]
        out.append(ev(C.log_E(x, *params)))
    for name, v in zip(GuidanceFields1D._fields, out):
        if not np.all(np.isfinite(v)):  # overflow for extreme inputs: refuse rather than return inf/nan
            raise ValueError(f"{name} overflows for these inputs (x up to {np.max(np.abs(x))!r})")
    return GuidanceFields1D(*out)


# ------------------------------------------------------------------------------------------------
# Where CFG is exact, where REG helps, where it hurts
# ------------------------------------------------------------------------------------------------
class GapSummary(NamedTuple):
    """How far CFG and REG are from the optimum at one parameter point, weighted by ``p_t(x|y)``.

    In this model ``golden = golden_scale * cfg`` and ``reg = reg_factor * cfg`` for every ``x``, with
    constants ``golden_scale`` (> 0 where ``E_t`` is finite) and ``reg_factor = a s_c^2/(a s_c^2 + 1 - a)``
    in (0, 1). So ``gap_cfg = (golden_scale - 1) cfg`` and ``gap_reg = (golden_scale - reg_factor) cfg``:
    which of CFG and REG is closer does not depend on ``x``, and REG helps iff
    ``|golden_scale - reg_factor| < |golden_scale - 1|``.

    ``rms_*`` are root mean squares under ``p_t(x|y) = N(sqrt(a) mu_c, a s_c^2 + 1 - a)`` (closed form);
    ``rel_gap_*`` are those of the gaps divided by ``rms_golden`` (nan when the optimum is identically 0,
    i.e. ``w = 0`` or identical conditional and unconditional, where ``golden_scale`` is nan as well).
    """

    rms_golden: float
    rms_gap_cfg: float
    rms_gap_reg: float
    rel_gap_cfg: float
    rel_gap_reg: float
    golden_scale: float
    reg_factor: float
    cfg_exact: bool  # gap_cfg is zero for every x (to rtol)
    reg_exact: bool  # gap_reg is zero for every x (to rtol)
    reg_helps: bool  # rms_gap_reg < rms_gap_cfg (strictly, beyond rtol)


def gap_summary(a: float, mu_c: float, s_c: float, mu_u: float, s_u: float, w: float,
                *, rtol: float = 1e-12) -> GapSummary:
    """Compare CFG and REG with the optimum at one parameter point (scalars), in closed form.

    Exactness is decided on the coefficients of each gap relative to the largest coefficient of
    ``golden`` and ``cfg`` (tolerance ``rtol``). ``ValueError`` on invalid parameters or where ``E_t``
    diverges."""
    params = _check_params(a, mu_c, s_c, mu_u, s_u, w)
    if any(p.ndim != 0 for p in params):
        raise ValueError(f"gap_summary takes scalar parameters, got shapes {[p.shape for p in params]}")
    _check_integrable(params)
    C = _compiled()
    coef = coefficients(*params)
    msq_golden, msq_cfg, msq_reg = (max(float(f(*params)), 0.0) for f in C.msq)
    rms_golden, rms_cfg, rms_reg = math.sqrt(msq_golden), math.sqrt(msq_cfg), math.sqrt(msq_reg)
    g, f = coef.golden, coef.cfg
    scale = max(abs(float(v)) for v in (g.slope, g.intercept, f.slope, f.intercept))
    zero = lambda l: max(abs(float(l.slope)), abs(float(l.intercept))) <= rtol * scale  # noqa: E731
    cfg_zero = scale == 0
    kappa = math.nan if cfg_zero else float(C.golden_over_cfg(*params))
    rel = lambda v: v / rms_golden if rms_golden > 0 else math.nan  # noqa: E731
    return GapSummary(
        rms_golden=rms_golden, rms_gap_cfg=rms_cfg, rms_gap_reg=rms_reg,
        rel_gap_cfg=rel(rms_cfg), rel_gap_reg=rel(rms_reg),
        golden_scale=kappa, reg_factor=float(C.reg_factor(*params)),
        cfg_exact=bool(zero(coef.gap_cfg)), reg_exact=bool(zero(coef.gap_reg)),
        reg_helps=bool(rms_reg < rms_cfg - rtol * max(rms_cfg, rms_golden)))
