"""How CFG and REG's estimators stand against the exact optimum as the dimension grows (issue 13, item 3).

Two classes on one line ``U`` (``m = 1``, unit vector ``q``) of ``R^d``, ``d = 1, 2, 4, ..., 4096``: class 0 (the
condition) is bimodal along ``U``, ``1/2 N((mu - delta) q, I) + 1/2 N((mu + delta) q, I)``, class 1 is
``N(-mu q, v_1 I)``, priors 1/2; CFG guides class 0 against their mixture with weight ``w``
(``eps_c + w (eps_c - eps_u)``). A single isotropic Gaussian class (Pavasovic et al.'s model) would make the
conditional eps Jacobian a multiple of the identity, and every REG estimator the same damping of CFG; the
bimodal class gives it the rank-one structure along ``U`` that separates them. The axes of the study:

- separation: ``fixed`` (``mu = mu_0``) or ``sqrt_d`` (``mu = mu_0 sqrt(d)``, the high-dimensional regime of
  Pavasovic et al., arXiv 2502.07849);
- variances: ``equal`` (every block and complement variance 1: Pavasovic et al.'s isotropic classes; the exact
  problem is then one-dimensional, THEORY.md section 9) or ``unequal`` (class 1 has variance ``var_1`` on ``U``
  and on the complement: the radius carries class information that grows with ``d``; the golden needs the
  two-dimensional radial route);
- orientation of ``U``: ``axes`` (``q = e_1``) or ``random`` (a uniformly random unit vector). The points are
  the same up to the rotation (a Householder reflection ``e_1 <-> q``), so every rotation-equivariant field
  (golden, CFG, vjp, jvp, fd) has identical errors in both; only the paper's ``J^T 1`` (the all-ones vector is
  tied to the axes) and ``diag J`` differ. The golden of the random orientation is the reflected golden of the
  axes (equivariance is tested in ``tests/analytic/test_reducible.py``).

The field error at noise level ``abar`` is ``E_{x ~ p_t(x | y)} |golden(x) - field(x)|`` (eps units, Euclidean norm in
``R^d``): Monte Carlo over ``n_points`` exact draws of the noised conditional, with its standard error and the
golden's own quadrature error (the mean over the points of its error estimate, which bounds how far any mean of
``|golden - field|`` or ``|golden|`` over those points moves); fields are the terms added to ``eps_c``. CFG's term is
exact; REG's paper, vjp, jvp and fd are ``sampler.REG`` itself on the exact denoisers (autograd, forward mode and a
finite difference in ``R^d``); ``diag`` comes from the structured Jacobian (``sampler.REG`` refuses it above d = 64:
it costs d passes). ``damped`` is not an estimator but the limit both orientation-bound estimators reach at a random
orientation as ``d -> inf``: with ``J = lam I + (rank one along U)`` and ``q^T 1 = O(1)``, ``J^T 1`` and ``diag J``
tend to ``lam 1`` entrywise on ``U``, so ``paper`` and ``diag`` tend to
``(1 - c lam) g = abar s^2 / (abar s^2 + 1 - abar) g`` (the complement curvature ``lam`` of the conditional, ``s^2``
its complement variance): CFG uniformly damped.

Output laws (equal variances only, where ``u = q^T x`` alone is a Markov state for every method that keeps
the symmetry): the exact law of the DDPM sampler's ``u`` on a grid (:func:`evaluation.density.output_density`,
no Monte Carlo) for unguided, CFG, REG (vjp = the one-dimensional REG, also the ``axes`` paper and diag),
the ``d -> inf`` limit of the ``random``-orientation paper and diag estimators (CFG damped by
``rho = abar s^2 / (abar s^2 + 1 - abar)``, see :func:`summary`), and the optimum, against the tilted target
``p(x|y) R_0 / Z`` and the conditional ``N(mu, 1)``: their mean and variance along ``U``, each with its error under
the accuracy contract of :mod:`evaluation.accuracy` (:func:`evaluation.accuracy.converged_laws`,
:func:`evaluation.accuracy.grid_moments`: within ``tol``, else the cell raises).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from analytic import GaussianMixture
from analytic.mixture import check_abar
from analytic.reducible_golden import optimal_guidance_reducible, reg_corrections_reducible
from sampler import CFG

from .accuracy import (GridLaw, axes_of, converged_laws, default_tol, density_engine, grid_moments,
                       narrowest_kernel)
from .distances import tilted_target
from .spec import Law, Levels, Method, Schedule, reducible_line
from .sweep import cell_kind, run_cells

__all__ = ["SEPARATIONS", "VARIANCES", "ORIENTATIONS", "METHODS", "LAW_METHODS", "DimensionStudy", "FieldPoint",
           "FieldPointResult", "field_point", "AlongU", "AlongUResult", "along_u", "compute", "summary", "main"]

SEPARATIONS = ("fixed", "sqrt_d")
VARIANCES = ("equal", "unequal")
ORIENTATIONS = ("axes", "random")
# evaluation.spec method spellings (w from the study), and ``damped``: not a method but the d -> inf limit of the
# orientation-bound estimators (module docstring)
METHODS = ("cfg", "cfg,reg=paper", "cfg,reg=vjp", "cfg,reg=diag", "cfg,reg=jvp", "cfg,reg=fd", "damped")
LAW_METHODS = ("unguided", "cfg", "cfg,reg=vjp", "damped", "optimal")
_F64 = torch.float64


@dataclass(frozen=True)
class DimensionStudy:
    """Arrays of the study (numpy float64). Axes: separation S, variances V, orientation O, dimension D,
    noise level L, method M (``METHODS``); laws: separation S, dimension D, law method (``LAW_METHODS``)."""

    dims: np.ndarray  # [D]
    abars: np.ndarray  # [L]
    w: float
    mu0: float
    var1: float
    delta: float
    n_points: int
    err: np.ndarray  # [S, V, O, D, L, M]  mean |golden - field| over x ~ p_t(x | y)
    err_se: np.ndarray  # [S, V, O, D, L, M]  its Monte Carlo standard error
    ratio_se: np.ndarray  # [S, V, O, D, L, M]  Monte Carlo standard error of err / err of CFG (same points)
    golden_size: np.ndarray  # [S, V, D, L]  mean |golden|
    golden_size_se: np.ndarray  # [S, V, D, L]  its Monte Carlo standard error
    golden_err: np.ndarray  # [S, V, D, L]  mean over the points of the golden's quadrature error estimate (norm, eps
    # units): every mean of |golden - field| and of |golden| over the points is within it of the exact golden's
    law_dims: np.ndarray  # [D2]
    law_steps: int  # DDPM steps of the cosine schedule the laws are for
    law_mean: np.ndarray  # [S, D2, 5]  output mean along U (equal variances)
    law_var: np.ndarray  # [S, D2, 5]  output variance along U
    target_mean: np.ndarray  # [S, D2]  tilted target p(x|y) R_0 / Z along U
    target_var: np.ndarray  # [S, D2]
    seconds: float
    # the accuracy contract's error of each law number above (evaluation.accuracy.grid_moments)
    law_mean_err: np.ndarray  # [S, D2, 5]
    law_var_err: np.ndarray  # [S, D2, 5]
    target_mean_err: np.ndarray  # [S, D2]
    target_var_err: np.ndarray  # [S, D2]


def _mu(separation: str, mu0: float, d: int) -> float:
    if separation == "fixed":
        return mu0
    if separation == "sqrt_d":
        return mu0 * math.sqrt(d)
    raise ValueError(f"unknown separation {separation!r}; choose one of {SEPARATIONS}")


def _law(separation: str, variances: str, d: int, mu0: float, var1: float, delta: float, orient) -> Law:
    """Class 0 and the class marginal on the line ``q`` (``axes``: ``e_1``; an integer: a seeded random line) as the
    reducible law of :mod:`evaluation.spec`."""
    if variances not in VARIANCES:
        raise ValueError(f"unknown variances {variances!r}; choose one of {VARIANCES}")
    return Law("reducible", (d, float(_mu(separation, mu0, d)), float(delta),
                             1.0 if variances == "equal" else float(var1), orient))


def _reflect(q: torch.Tensor):
    """The Householder reflection ``H`` with ``H e_1 = q`` (and ``H q = e_1``), applied to rows: x [N, d] -> x H."""
    e1 = torch.zeros_like(q)
    e1[0] = 1.0
    h = e1 - q
    nrm2 = (h * h).sum()
    if nrm2 < 1e-24:
        return lambda x: x
    return lambda x: x - 2 * (x @ h)[:, None] * h / nrm2


def _eps_field(guided, cond_den, x_vp: torch.Tensor, a: float) -> torch.Tensor:
    """The term a guided denoiser adds to ``eps_c`` at VP points: ``-(D_guided - D_c) / sigma`` in VE coordinates."""
    sigma = math.sqrt((1 - a) / a)
    x = x_vp / math.sqrt(a)
    return -(guided(x, sigma) - cond_den(x, sigma)).detach() / sigma


def _fields(law: Law, w: float, x: torch.Tensor, a: float) -> dict:
    """Every method's term added to ``eps_c`` at points x [N, d] (VP), eps units."""
    parts = law.build()
    cond, uncond = parts.cond, parts.uncond
    g = Method("cfg", w).reward(parts).present(x, a).detach()
    sigma = math.sqrt((1 - a) / a)
    levels = torch.tensor([sigma, 0.0], dtype=_F64)
    out = {"cfg": g}
    for m in METHODS:
        if m.startswith("cfg,reg=") and m != "cfg,reg=diag":
            out[m] = _eps_field(Method.parse(m).replace(w=w).guide(cond.denoise, uncond.denoise, levels),
                                cond.denoise, x, a)
    out["cfg,reg=diag"] = reg_corrections_reducible(cond, g, x, a)[2]  # the structured Jacobian (REG refuses d > 64)
    s2 = cond.comp_vars[0].item()  # the conditional's complement variance
    out["damped"] = a * s2 / (a * s2 + 1 - a) * g  # the d -> inf limit of paper and diag at a random orientation
    return out


def _errors(golden: torch.Tensor, fields: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per method: the mean of ``|golden - field|`` over the points, its standard error, and the standard error of
    its ratio to CFG's mean on the same points (the ratio estimator's, ``std(a - r b) / (sqrt(n) mean(b))`` with
    ``r = mean(a) / mean(b)``: the shared points make the two means move together). [M] each"""
    gaps = torch.stack([(golden - fields[m]).norm(dim=1) for m in METHODS])  # [M, N]
    n = gaps.shape[1]
    mean = gaps.mean(1)
    cfg = gaps[METHODS.index("cfg")]
    r = mean / mean[METHODS.index("cfg")]
    ratio_se = (gaps - r[:, None] * cfg).std(1) / (math.sqrt(n) * cfg.mean())  # inf / nan where CFG's mean is 0
    ratio_se = torch.nan_to_num(ratio_se, nan=math.inf)
    return mean.numpy(), (gaps.std(1) / math.sqrt(n)).numpy(), ratio_se.numpy()


@dataclass(frozen=True)
class FieldPoint:
    """A sweep cell: every method's field error at one noise level ``abar`` on ``law`` (the reducible family on
    ``e_1``) and on ``rotated`` (the same on a random line), over ``n_points`` draws (seed ``seed``)."""

    law: Law
    rotated: Law
    abar: float
    w: float
    n_points: int
    seed: int

    @property
    def cost(self) -> float:
        return float(self.n_points * self.law.dim)


class FieldPointResult(NamedTuple):
    err: np.ndarray  # [O, M] mean |golden - field| over the points
    se: np.ndarray  # [O, M] its Monte Carlo standard error
    ratio_se: np.ndarray  # [O, M] the standard error of err / err of CFG
    golden_size: float  # mean |golden| over the points
    golden_size_se: float
    golden_err: float  # mean over the points of the golden's error estimate: bounds how far each mean above moves


@cell_kind(FieldPoint)
def field_point(cell: FieldPoint) -> FieldPointResult:
    """Errors [O, M], their standard errors and those of their ratios to CFG's [O, M], mean |golden| with its
    standard error, and the mean of the golden's error estimate over the points, at one cell. The reflection onto
    the random line keeps every norm, so the golden's error is the same in both orientations."""
    a, parts = cell.abar, cell.law.build()
    x = parts.cond.noised(a).sample(cell.n_points, torch.Generator().manual_seed(cell.seed))
    opt = optimal_guidance_reducible(parts.cond, Method("cfg", cell.w).reward(parts), x, a, tol=1e-7)
    err, se, ratio_se = (np.zeros((2, len(METHODS))) for _ in range(3))
    err[0], se[0], ratio_se[0] = _errors(opt.golden, _fields(cell.law, cell.w, x, a))
    H = _reflect(reducible_line(cell.law.dim, cell.rotated.args[4]))
    err[1], se[1], ratio_se[1] = _errors(H(opt.golden), _fields(cell.rotated, cell.w, H(x), a))
    size = opt.golden.norm(dim=1)
    golden_err = (math.sqrt(1 - a) * opt.err_grad).norm(dim=1).mean().item()  # golden = -sqrt(1 - a) grad log E
    return FieldPointResult(err, se, ratio_se, size.mean().item(), size.std().item() / math.sqrt(size.numel()),
                            golden_err)


# --- output laws along U (equal variances: exactly one-dimensional) -----------------------------------


@dataclass(frozen=True)
class AlongU:
    """A sweep cell: the output laws along ``U`` (equal variances: exactly one-dimensional) of every law method at
    separation ``mu``, with a ``steps``-step cosine DDPM sampler, and the tilted target's; each law under the
    accuracy contract (:func:`evaluation.accuracy.converged_laws`) from the grid of ``points`` nodes (odd) that holds
    the N(0, 1) start and the output, its mean and variance within ``tol`` (None:
    :func:`evaluation.accuracy.default_tol` of 1-D)."""

    mu: float
    delta: float
    w: float
    steps: int
    points: int
    tol: float | None = None

    def __post_init__(self):
        if isinstance(self.points, bool) or not isinstance(self.points, int) or self.points < 5 or self.points % 2 == 0:
            raise ValueError(f"points must be an odd integer >= 5 (the accuracy contract's grids), got {self.points!r}")
        if self.tol is not None and (isinstance(self.tol, bool) or not isinstance(self.tol, (int, float))
                                     or not (math.isfinite(self.tol) and self.tol > 0)):
            raise ValueError(f"tol must be a positive number or None, got {self.tol!r}")

    @property
    def cost(self) -> float:
        return self.steps * self.points * (1.0 + self.mu)


class AlongUResult(NamedTuple):
    moments: np.ndarray  # [len(LAW_METHODS), 2] output mean and variance along U
    target: tuple  # (mean, variance) of the tilted target
    moments_error: np.ndarray  # [len(LAW_METHODS), 2] their errors (evaluation.accuracy.grid_moments)
    target_error: tuple  # (mean error, variance error)


def _moments_of(name: str, engine, grid: tuple, tol: float, narrowest: float = math.inf):
    """Mean and variance along U of the law ``engine`` computes, within ``tol`` (the accuracy contract), as
    ``((mean, var), (mean error, var error))``."""
    _, nums = converged_laws([engine], grid, 1, name=name, tol=tol, numbers=lambda laws: grid_moments(laws[0]),
                             narrowest=narrowest, whole_law=False)
    return (nums["mean"].value, nums["var"].value), (nums["mean"].error, nums["var"].error)


@cell_kind(AlongU)
def along_u(cell: AlongU) -> AlongUResult:
    """Output mean and variance along U of every law method, and the tilted target's, each with its error (1-D,
    exact on a grid under the accuracy contract)."""
    mu, delta, w = cell.mu, cell.delta, cell.w
    tol = default_tol(1) if cell.tol is None else cell.tol
    law = Law.mixture(GaussianMixture.from_1d([0.5, 0.5], [mu - delta, mu + delta], [1.0, 1.0]),  # class 0 along U
                      GaussianMixture.from_1d([0.25, 0.25, 0.5], [mu - delta, mu + delta, -mu], [1.0, 1.0, 1.0]))
    schedule = Schedule("cosine", (cell.steps,))
    sigmas = schedule.sigmas()
    grid = (min(-6.0, mu - delta - 8), mu + delta + 8, cell.points)  # holds the start N(0, 1) and the output
    out, err = np.zeros((len(LAW_METHODS), 2)), np.zeros((len(LAW_METHODS), 2))
    for i, name in enumerate(LAW_METHODS):
        if name == "damped":  # CFG damped by rho = abar s^2 / (abar s^2 + 1 - abar), s = 1: w / (1 + sigma^2)
            b = Method("cfg", w).build(law, Levels(schedule))
            den, start = CFG(b.guided.cond, b.guided.uncond, lambda sigma: w / (1 + sigma**2)), b.start()
        else:
            m = Method.parse(name).replace(w=w)
            b = m.build(law, Levels(schedule, "ddpm", "tilted" if m.rule == "optimal" else "n01"))
            den, start = b.guided, b.start()
        out[i], err[i] = _moments_of(f"{cell!r}: {name}", density_engine(den, sigmas, sampler="ddpm", start=start),
                                     grid, tol, narrowest_kernel(sigmas, "ddpm"))
    parts = law.build()
    reward = Method("cfg", w).reward(parts)

    def target(g, d, effort=0) -> GridLaw:  # the tilted target's hat masses on g, within tol
        t = tilted_target(parts.cond, reward, axes_of(g, d), tol=tol)
        return GridLaw(tuple(g), t.mass, t.error, t.lost, 0)

    target.efforts = lambda d, grid: 0  # no effort knob (accuracy.Engine)
    t_val, t_err = _moments_of(f"{cell!r}: tilted target", target, grid, tol)
    return AlongUResult(out, t_val, err, t_err)


# --- the entry points -------------------------------------------------------------------------------


def _nonempty(values, name: str) -> list:
    values = list(values) if isinstance(values, (list, tuple, np.ndarray)) else None
    if not values:
        raise ValueError(f"{name} must be a non-empty list")
    return values


def _check_ints(values, name: str, least: int) -> list[int]:
    out = []
    for v in _nonempty(values, name):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < least:
            raise ValueError(f"{name} must hold integers >= {least}, got {v!r}")
        out.append(int(v))
    return out


def compute(quick: bool = False, *, w: float = 2.0, mu0: float = 1.5, var1: float = 2.0, delta: float = 1.5,
            seed: int = 0, dims=None, abars=None, n_points: int | None = None, law_dims=None,
            law_steps: int | None = None, law_grid: int | None = None, law_tol: float | None = None,
            progress: bool = False, workers: int = 1, cache=None) -> DimensionStudy:
    """The dimension study (module docstring). ``quick``: d = 1, 64, 4096, two noise levels, 32 points, laws at
    d = 1 and 256 with a 30-step sampler from 401 nodes, their moments to 5e-3 (about 30 s of one core); otherwise
    d = 1, 2, 4, ..., 4096, six levels, 192 points, laws at d = 1, 4, ..., 256 with a 100-step sampler from 1601
    nodes, their moments to :func:`evaluation.accuracy.default_tol` of 1-D (laws beyond: the optimum's law costs
    minutes per separation at mu = 24 and grows with it; CFG's law to d = 4096 is the ledger claim
    ``pavasovic-highdim``). ``dims``, ``abars``, ``n_points``, ``law_dims``, ``law_steps`` (DDPM steps of the
    cosine schedule), ``law_grid`` (nodes of the 1-D law grid the accuracy contract starts from: odd, at least 5)
    and ``law_tol`` (the tolerance of the laws' moments) override those choices (small configurations for tests).

    The points of noise level ``abars[j]`` are ``n_points`` draws of class 0 on ``U = span(e_1)``, noised:
    ``ReducibleMixture.noised(abar).sample(n_points, torch.Generator().manual_seed(seed + j))``; the ``random``
    orientation uses ``q = z / |z|``, ``z = torch.randn(d, generator=torch.Generator().manual_seed(seed + 7 d))``,
    and the same points reflected onto it. The points share their random numbers across d (the components and
    ``u`` are drawn first), so with equal variances every rotation-equivariant error is the same number at every
    d for fixed separation."""
    start = time.perf_counter()
    p = _plan(quick, w, mu0, var1, delta, seed, dims, abars, n_points, law_dims, law_steps, law_grid, law_tol)
    run = run_cells(p.cells, workers=workers, progress=progress, cache=cache, desc="dimension cells")
    return _assemble(p, run.results, time.perf_counter() - start)


class _Plan(NamedTuple):
    dims: list
    abars: list
    law_dims: list
    w: float
    mu0: float
    var1: float
    delta: float
    n_points: int
    steps: int
    where: list  # (separation, variances, dimension, level) index of each FieldPoint cell
    mus: list  # (separation, law dimension, mu) of each AlongU cell
    cells: list  # the FieldPoint cells, then the AlongU cells


def cells(quick: bool = False, **kw) -> list:
    """The study's cells (:func:`compute`'s arguments): a caller that runs them first (``paper_plots.py``, with
    every figure's cells in one sweep) finds them cached when it calls :func:`compute`."""
    args = {k: kw.get(k, v) for k, v in _DEFAULTS.items()}
    return _plan(quick, **args).cells


_DEFAULTS = dict(w=2.0, mu0=1.5, var1=2.0, delta=1.5, seed=0, dims=None, abars=None, n_points=None, law_dims=None,
                 law_steps=None, law_grid=None, law_tol=None)


def _plan(quick, w, mu0, var1, delta, seed, dims, abars, n_points, law_dims, law_steps, law_grid, law_tol) -> _Plan:
    if quick:
        dims_, abars_, n_points_ = [1, 64, 4096], [0.5, 0.05], 32
        law_dims_, steps, grid, tol = [1, 256], 30, 401, 5e-3
    else:
        dims_, abars_, n_points_ = [2**k for k in range(13)], [0.9, 0.5, 0.1, 1e-2, 1e-3, 1e-4], 192
        law_dims_, steps, grid, tol = [1, 4, 16, 64, 256], 100, 1601, None
    dims = dims_ if dims is None else _check_ints(dims, "dims", 1)
    law_dims = law_dims_ if law_dims is None else _check_ints(law_dims, "law_dims", 1)
    abars = abars_ if abars is None else [check_abar(a) for a in _nonempty(abars, "abars")]
    if any(a == 1 for a in abars):
        raise ValueError(f"abars must lie in (0, 1): at abar = 1 every field is 0, got {abars}")
    n_points = n_points_ if n_points is None else _check_ints([n_points], "n_points", 2)[0]
    steps = steps if law_steps is None else _check_ints([law_steps], "law_steps", 1)[0]
    grid = grid if law_grid is None else _check_ints([law_grid], "law_grid", 5)[0]
    if grid % 2 == 0:
        raise ValueError(f"law_grid must be odd (the accuracy contract halves the spacing of a grid), got {grid}")
    if law_tol is not None and (isinstance(law_tol, bool) or not isinstance(law_tol, (int, float))
                                or not (math.isfinite(law_tol) and law_tol > 0)):
        raise ValueError(f"law_tol must be a positive number or None, got {law_tol!r}")
    law_tol = tol if law_tol is None else float(law_tol)
    S, V, D, L = len(SEPARATIONS), len(VARIANCES), len(dims), len(abars)
    where = [(s, v, k, j) for s in range(S) for v in range(V) for k in range(D) for j in range(L)]
    cells = [FieldPoint(_law(SEPARATIONS[s], VARIANCES[v], dims[k], mu0, var1, delta, "axes"),
                        _law(SEPARATIONS[s], VARIANCES[v], dims[k], mu0, var1, delta, seed + 7 * dims[k]),
                        float(abars[j]), float(w), n_points, seed + j) for s, v, k, j in where]
    # d enters the exact 1-D law problem only through mu: one cell per mu (identical cells are computed once)
    mus = [(s, k, float(_mu(sep, mu0, d))) for s, sep in enumerate(SEPARATIONS) for k, d in enumerate(law_dims)]
    cells += [AlongU(mu, float(delta), float(w), steps, grid, law_tol) for _, _, mu in mus]
    return _Plan(dims, abars, law_dims, w, mu0, var1, delta, n_points, steps, where, mus, cells)


def _assemble(p: _Plan, results, seconds: float) -> DimensionStudy:
    dims, abars, law_dims, w, mu0, var1, delta = p.dims, p.abars, p.law_dims, p.w, p.mu0, p.var1, p.delta
    n_points, steps, where, mus = p.n_points, p.steps, p.where, p.mus
    S, V, D, L, M, D2, K = len(SEPARATIONS), len(VARIANCES), len(dims), len(abars), len(METHODS), len(law_dims), \
        len(LAW_METHODS)
    err, se, rse = (np.zeros((S, V, 2, D, L, M)) for _ in range(3))
    gsize, gsize_se, gerr = (np.zeros((S, V, D, L)) for _ in range(3))
    for (s, v, k, j), r in zip(where, results):
        err[s, v, :, k, j], se[s, v, :, k, j], rse[s, v, :, k, j] = r.err, r.se, r.ratio_se
        gsize[s, v, k, j], gsize_se[s, v, k, j], gerr[s, v, k, j] = r.golden_size, r.golden_size_se, r.golden_err
    law_m, law_v, law_me, law_ve = (np.zeros((S, D2, K)) for _ in range(4))
    t_m, t_v, t_me, t_ve = (np.zeros((S, D2)) for _ in range(4))
    for (s, k, _), r in zip(mus, results[len(where):]):
        law_m[s, k], law_v[s, k] = r.moments[:, 0], r.moments[:, 1]
        law_me[s, k], law_ve[s, k] = r.moments_error[:, 0], r.moments_error[:, 1]
        (t_m[s, k], t_v[s, k]), (t_me[s, k], t_ve[s, k]) = r.target, r.target_error
    return DimensionStudy(np.array(dims, dtype=np.float64), np.array(abars), w, mu0, var1, delta, n_points, err, se,
                          rse, gsize, gsize_se, gerr, np.array(law_dims, dtype=np.float64), steps, law_m, law_v, t_m,
                          t_v, seconds, law_me, law_ve, t_me, t_ve)


def _estimate(value: float, error: float) -> dict:
    return {"value": float(value), "error": float(error)}


def _level_mean(values: np.ndarray, se: np.ndarray, bound: np.ndarray) -> dict:
    """The mean over noise levels of per-level Monte Carlo means, with its error: the standard error of the mean
    (the levels' points are independent draws) plus the mean of the per-level bounds (the golden's error)."""
    return _estimate(values.mean(), np.sqrt((se**2).sum()) / se.size + bound.mean())


def summary(result: DimensionStudy, floor: float = 1e-3) -> dict:
    """The findings as plain numbers, each measured number as ``{"value", "error"}`` (:mod:`evaluation.docs`).

    Per separation, variances and orientation: CFG's mean field error and the golden's mean size at the smallest and
    the largest d, averaged over the noise levels; error: the Monte Carlo standard error of that average plus the
    golden's quadrature error (the mean over the points of its estimate, which bounds how far a mean over the points
    moves). Per REG estimator (and the ``damped`` limit): how many of the ``cells`` (d, abar) cells it is closer to the
    golden than CFG, and how many further, by more than two standard errors of the difference plus twice the golden's
    error and above ``floor`` (counts of a decision rule: exact integers); and its error relative to CFG's at the
    smallest and the largest d, averaged over the levels where CFG's error exceeds ``floor`` (left out where there is
    none: far from the speciation window both vanish), with the ratio estimator's standard error plus the golden's
    part (``g (1 + r) / (e_cfg - g)`` per level: both errors moved by ``g`` against each other; infinite where
    ``e_cfg <= g``).
    Plus the output-law mean and variance along ``U`` per law dimension, each with its error under the accuracy
    contract."""
    S, V, O, D, L, M = result.err.shape
    out: dict = {"dims": [int(d) for d in result.dims], "abars": result.abars.tolist(), "n_points": result.n_points,
                 "cells": D * L, "fields": {}, "laws": {}}
    i_cfg = METHODS.index("cfg")

    def ratio(e_m, e_cfg, r_se, g) -> dict | None:  # [L] each
        keep = e_cfg > floor
        if not keep.any():
            return None
        r = e_m[keep] / e_cfg[keep]
        with np.errstate(divide="ignore"):
            part = np.where(e_cfg[keep] > g[keep], g[keep] * (1 + r) / (e_cfg[keep] - g[keep]), np.inf)
        return _level_mean(r, r_se[keep], part)

    for s, sep in enumerate(SEPARATIONS):
        for v, var in enumerate(VARIANCES):
            g = result.golden_err[s, v]  # [D, L]
            size, size_se = result.golden_size[s, v], result.golden_size_se[s, v]
            for o, ori in enumerate(ORIENTATIONS):
                e, se, rse = result.err[s, v, o], result.err_se[s, v, o], result.ratio_se[s, v, o]  # [D, L, M]
                cfg, cfg_se = e[..., i_cfg], se[..., i_cfg]
                row = {"cfg_err_first_d": _level_mean(cfg[0], cfg_se[0], g[0]),
                       "cfg_err_last_d": _level_mean(cfg[-1], cfg_se[-1], g[-1]),
                       "golden_size_first_d": _level_mean(size[0], size_se[0], g[0]),
                       "golden_size_last_d": _level_mean(size[-1], size_se[-1], g[-1])}
                for i, m in enumerate(METHODS):
                    if m == "cfg":
                        continue
                    margin = 2 * np.hypot(se[..., i], cfg_se) + 2 * g
                    resolved = np.maximum(e[..., i], cfg) > floor  # below it both are rounding-level zeros
                    row[m] = {"closer": int(((e[..., i] < cfg - margin) & resolved).sum()),
                              "further": int(((e[..., i] > cfg + margin) & resolved).sum())}
                    for key, k in (("ratio_first_d", 0), ("ratio_last_d", -1)):
                        r = ratio(e[k, :, i], cfg[k], rse[k, :, i], g[k])
                        if r is not None:
                            row[m][key] = r
                out["fields"][f"{sep}/{var}/{ori}"] = row
    for s, sep in enumerate(SEPARATIONS):
        laws: dict = {"steps": result.law_steps}
        for k, d in enumerate(result.law_dims):
            row = {"target": {"mean": _estimate(result.target_mean[s, k], result.target_mean_err[s, k]),
                              "var": _estimate(result.target_var[s, k], result.target_var_err[s, k])}}
            for i, m in enumerate(LAW_METHODS):
                row[m] = {"mean": _estimate(result.law_mean[s, k, i], result.law_mean_err[s, k, i]),
                          "var": _estimate(result.law_var[s, k, i], result.law_var_err[s, k, i])}
            laws[f"d={int(d)}"] = row
        out["laws"][sep] = laws
    return out


def main(argv=None) -> None:
    """``python -m evaluation.dimension``: run the study (``--quick``: the quick configuration) through the cell
    cache and write its findings (:func:`summary`) to ``OUT/dimension.json``."""
    import argparse
    import json
    from pathlib import Path

    from .io import check_cli_arguments, write_atomically

    ap = argparse.ArgumentParser(prog="python -m evaluation.dimension", allow_abbrev=False,
                                 description="CFG and REG's estimators against the exact optimum as d grows.")
    ap.add_argument("--quick", action="store_true", help="d = 1, 64, 4096, two noise levels, small laws")
    ap.add_argument("--out", type=Path, default=Path("out"), help="folder for dimension.json (default: out)")
    ap.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    args = ap.parse_args(argv)
    check_cli_arguments(ap, args.workers, args.out)
    r = compute(quick=args.quick, workers=args.workers, progress=True)
    path = write_atomically(args.out / "dimension.json", json.dumps(summary(r), indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":  # run the package module, so cells are registered under its name (not __main__)
    from evaluation.dimension import main as _main

    _main()
