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

The field error at noise level ``abar`` is ``E_{x ~ p_t(x | y)} |golden(x) - field(x)|`` (eps units, Euclidean norm
in ``R^d``): Monte Carlo over ``n_points`` exact draws of the noised conditional, with its standard error;
fields are the terms added to ``eps_c``. CFG's term is exact; REG's paper, vjp, jvp and fd are
``sampler.REG`` itself on the exact denoisers (autograd, forward mode and a finite difference in ``R^d``);
``diag`` comes from the structured Jacobian (``sampler.REG`` refuses it above d = 64: it costs d passes).
``damped`` is not an estimator but the limit both orientation-bound estimators reach at a random orientation
as ``d -> inf``: with ``J = lam I + (rank one along U)`` and ``q^T 1 = O(1)``, ``J^T 1`` and ``diag J`` tend to
``lam 1`` entrywise on ``U``, so ``paper`` and ``diag`` tend to ``(1 - c lam) g = abar s^2 / (abar s^2 + 1 - abar) g``
(the complement curvature ``lam`` of the conditional, ``s^2`` its complement variance): CFG uniformly damped.

Output laws (equal variances only, where ``u = q^T x`` alone is a Markov state for every method that keeps
the symmetry): the exact law of the DDPM sampler's ``u`` on a grid (:func:`evaluation.density.output_density`,
no Monte Carlo) for unguided, CFG, REG (vjp = the one-dimensional REG, also the ``axes`` paper and diag),
the ``d -> inf`` limit of the ``random``-orientation paper and diag estimators (CFG damped by
``rho = abar s^2 / (abar s^2 + 1 - abar)``, see :func:`summary`), and the optimum, against the tilted target
``p(x|y) R_0 / Z`` and the conditional ``N(mu, 1)``: their mean and variance along ``U``.
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

from .density import output_density
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
    golden_size: np.ndarray  # [S, V, D, L]  mean |golden|
    golden_err: np.ndarray  # [S, V, D, L]  largest quadrature error estimate of the golden (norm, eps units)
    law_dims: np.ndarray  # [D2]
    law_steps: int  # DDPM steps of the cosine schedule the laws are for
    law_mean: np.ndarray  # [S, D2, 5]  output mean along U (equal variances)
    law_var: np.ndarray  # [S, D2, 5]  output variance along U
    target_mean: np.ndarray  # [S, D2]  tilted target p(x|y) R_0 / Z along U
    target_var: np.ndarray  # [S, D2]
    seconds: float


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


def _errors(golden: torch.Tensor, fields: dict) -> tuple[np.ndarray, np.ndarray]:
    gaps = torch.stack([(golden - fields[m]).norm(dim=1) for m in METHODS])  # [M, N]
    n = gaps.shape[1]
    return gaps.mean(1).numpy(), (gaps.std(1) / math.sqrt(n)).numpy()


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
    err: np.ndarray  # [O, M]
    se: np.ndarray  # [O, M]
    golden_size: float
    golden_err: float


@cell_kind(FieldPoint, modules=("evaluation.spec",))
def field_point(cell: FieldPoint) -> FieldPointResult:
    """Errors [O, M], standard errors [O, M], mean |golden| and its largest error estimate at one cell."""
    a, parts = cell.abar, cell.law.build()
    x = parts.cond.noised(a).sample(cell.n_points, torch.Generator().manual_seed(cell.seed))
    opt = optimal_guidance_reducible(parts.cond, Method("cfg", cell.w).reward(parts), x, a, tol=1e-7)
    err, se = np.zeros((2, len(METHODS))), np.zeros((2, len(METHODS)))
    err[0], se[0] = _errors(opt.golden, _fields(cell.law, cell.w, x, a))
    H = _reflect(reducible_line(cell.law.dim, cell.rotated.args[4]))
    err[1], se[1] = _errors(H(opt.golden), _fields(cell.rotated, cell.w, H(x), a))
    golden_err = (math.sqrt(1 - a) * opt.err_grad).norm(dim=1).max().item()
    return FieldPointResult(err, se, opt.golden.norm(dim=1).mean().item(), golden_err)


# --- output laws along U (equal variances: exactly one-dimensional) -----------------------------------


def _moments(mass: torch.Tensor, axis: torch.Tensor) -> tuple[float, float]:
    p = mass.clamp(min=0) / mass.clamp(min=0).sum()
    mean = (p * axis).sum().item()
    return mean, (p * (axis - mean) ** 2).sum().item()


@dataclass(frozen=True)
class AlongU:
    """A sweep cell: the output laws along ``U`` (equal variances: exactly one-dimensional) of every law method at
    separation ``mu``, with a ``steps``-step cosine DDPM sampler on ``points`` nodes, and the tilted target's."""

    mu: float
    delta: float
    w: float
    steps: int
    points: int

    @property
    def cost(self) -> float:
        return self.steps * self.points * (1.0 + self.mu)


class AlongUResult(NamedTuple):
    moments: np.ndarray  # [len(LAW_METHODS), 2] output mean and variance along U
    target: tuple  # (mean, variance) of the tilted target


@cell_kind(AlongU, modules=("evaluation.spec", "evaluation.density", "evaluation.distances"))
def along_u(cell: AlongU) -> AlongUResult:
    """Output mean and variance along U of every law method, and the tilted target's (1-D, exact on a grid)."""
    mu, delta, w = cell.mu, cell.delta, cell.w
    law = Law.mixture(GaussianMixture.from_1d([0.5, 0.5], [mu - delta, mu + delta], [1.0, 1.0]),  # class 0 along U
                      GaussianMixture.from_1d([0.25, 0.25, 0.5], [mu - delta, mu + delta, -mu], [1.0, 1.0, 1.0]))
    schedule = Schedule("cosine", (cell.steps,))
    lo, hi = min(-6.0, mu - delta - 8), mu + delta + 8  # holds the start N(0, 1) and the output
    axis = torch.linspace(lo, hi, cell.points, dtype=_F64)
    out = np.zeros((len(LAW_METHODS), 2))
    for i, name in enumerate(LAW_METHODS):
        if name == "damped":  # CFG damped by rho = abar s^2 / (abar s^2 + 1 - abar), s = 1: w / (1 + sigma^2)
            b = Method("cfg", w).build(law, Levels(schedule))
            den, start = CFG(b.guided.cond, b.guided.uncond, lambda sigma: w / (1 + sigma**2)), b.start()
        else:
            m = Method.parse(name).replace(w=w)
            b = m.build(law, Levels(schedule, "ddpm", "tilted" if m.rule == "optimal" else "n01"))
            den, start = b.guided, b.start()
        od = output_density(den, schedule.sigmas(), axis, sampler="ddpm", start=start, estimate_error=False)
        out[i] = _moments(od.mass, axis)
    parts = law.build()
    target = tilted_target(parts.cond, Method("cfg", w).reward(parts),
                           torch.linspace(mu - delta - 8, mu + delta + 8, cell.points, dtype=_F64))
    return AlongUResult(out, _moments(target.mass, target.axes[0]))


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
            law_steps: int | None = None, law_grid: int | None = None, progress: bool = False, workers: int = 1,
            cache=None) -> DimensionStudy:
    """The dimension study (module docstring). ``quick``: d = 1, 64, 4096, two noise levels, 32 points, laws at
    d = 1 and 256 with a 30-step sampler on 401 nodes (about 30 s of one core); otherwise d = 1, 2, 4, ..., 4096, six
    levels, 192 points, laws at d = 1, 4, ..., 256 with a 100-step sampler (laws beyond: the optimum's law costs
    minutes per separation at mu = 24 and grows with it; CFG's law to d = 4096 is the ledger claim
    ``pavasovic-highdim``). ``dims``, ``abars``,
    ``n_points``, ``law_dims``, ``law_steps`` (DDPM steps of the cosine schedule) and ``law_grid`` (nodes of the
    1-D law grid) override those choices (small configurations for tests).

    The points of noise level ``abars[j]`` are ``n_points`` draws of class 0 on ``U = span(e_1)``, noised:
    ``ReducibleMixture.noised(abar).sample(n_points, torch.Generator().manual_seed(seed + j))``; the ``random``
    orientation uses ``q = z / |z|``, ``z = torch.randn(d, generator=torch.Generator().manual_seed(seed + 7 d))``,
    and the same points reflected onto it. The points share their random numbers across d (the components and
    ``u`` are drawn first), so with equal variances every rotation-equivariant error is the same number at every
    d for fixed separation."""
    start = time.perf_counter()
    p = _plan(quick, w, mu0, var1, delta, seed, dims, abars, n_points, law_dims, law_steps, law_grid)
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
                 law_steps=None, law_grid=None)


def _plan(quick, w, mu0, var1, delta, seed, dims, abars, n_points, law_dims, law_steps, law_grid) -> _Plan:
    if quick:
        dims_, abars_, n_points_ = [1, 64, 4096], [0.5, 0.05], 32
        law_dims_, steps, grid = [1, 256], 30, 401
    else:
        dims_, abars_, n_points_ = [2**k for k in range(13)], [0.9, 0.5, 0.1, 1e-2, 1e-3, 1e-4], 192
        law_dims_, steps, grid = [1, 4, 16, 64, 256], 100, 1201
    dims = dims_ if dims is None else _check_ints(dims, "dims", 1)
    law_dims = law_dims_ if law_dims is None else _check_ints(law_dims, "law_dims", 1)
    abars = abars_ if abars is None else [check_abar(a) for a in _nonempty(abars, "abars")]
    if any(a == 1 for a in abars):
        raise ValueError(f"abars must lie in (0, 1): at abar = 1 every field is 0, got {abars}")
    n_points = n_points_ if n_points is None else _check_ints([n_points], "n_points", 2)[0]
    steps = steps if law_steps is None else _check_ints([law_steps], "law_steps", 1)[0]
    grid = grid if law_grid is None else _check_ints([law_grid], "law_grid", 3)[0]
    S, V, D, L = len(SEPARATIONS), len(VARIANCES), len(dims), len(abars)
    where = [(s, v, k, j) for s in range(S) for v in range(V) for k in range(D) for j in range(L)]
    cells = [FieldPoint(_law(SEPARATIONS[s], VARIANCES[v], dims[k], mu0, var1, delta, "axes"),
                        _law(SEPARATIONS[s], VARIANCES[v], dims[k], mu0, var1, delta, seed + 7 * dims[k]),
                        float(abars[j]), float(w), n_points, seed + j) for s, v, k, j in where]
    # d enters the exact 1-D law problem only through mu: one cell per mu (identical cells are computed once)
    mus = [(s, k, float(_mu(sep, mu0, d))) for s, sep in enumerate(SEPARATIONS) for k, d in enumerate(law_dims)]
    cells += [AlongU(mu, float(delta), float(w), steps, grid) for _, _, mu in mus]
    return _Plan(dims, abars, law_dims, w, mu0, var1, delta, n_points, steps, where, mus, cells)


def _assemble(p: _Plan, results, seconds: float) -> DimensionStudy:
    dims, abars, law_dims, w, mu0, var1, delta = p.dims, p.abars, p.law_dims, p.w, p.mu0, p.var1, p.delta
    n_points, steps, where, mus = p.n_points, p.steps, p.where, p.mus
    S, V, D, L, M = len(SEPARATIONS), len(VARIANCES), len(dims), len(abars), len(METHODS)
    err, se = np.zeros((S, V, 2, D, L, M)), np.zeros((S, V, 2, D, L, M))
    gsize, gerr = np.zeros((S, V, D, L)), np.zeros((S, V, D, L))
    for (s, v, k, j), r in zip(where, results):
        err[s, v, :, k, j], se[s, v, :, k, j], gsize[s, v, k, j], gerr[s, v, k, j] = r
    law_mean, law_var = np.zeros((S, len(law_dims), len(LAW_METHODS))), np.zeros((S, len(law_dims), len(LAW_METHODS)))
    t_mean, t_var = np.zeros((S, len(law_dims))), np.zeros((S, len(law_dims)))
    for (s, k, _), r in zip(mus, results[len(where):]):
        law_mean[s, k], law_var[s, k] = r.moments[:, 0], r.moments[:, 1]
        t_mean[s, k], t_var[s, k] = r.target
    return DimensionStudy(np.array(dims, dtype=np.float64), np.array(abars), w, mu0, var1, delta, n_points, err, se,
                          gsize, gerr, np.array(law_dims, dtype=np.float64), steps, law_mean, law_var, t_mean, t_var,
                          seconds)


def summary(result: DimensionStudy, floor: float = 1e-3) -> dict:
    """The findings as plain numbers. Per separation, variances, orientation and REG estimator (and the ``damped``
    limit): the fraction of (d, abar) cells where it is closer to the golden than CFG, and where further, beyond two
    standard errors and above ``floor``; and its error relative to CFG's at the smallest and the largest d, averaged
    over the levels where CFG's error exceeds ``floor`` (None where there is none: far from the speciation window
    both vanish).
    Plus the output-law moments along ``U``."""
    out: dict = {"dims": result.dims.tolist(), "abars": result.abars.tolist(),
                 "max_golden_error": float(result.golden_err.max()), "fields": {}, "laws": {}}
    i_cfg = METHODS.index("cfg")

    def ratio(e_m: np.ndarray, e_cfg: np.ndarray) -> float | None:
        keep = e_cfg > floor
        return float((e_m[keep] / e_cfg[keep]).mean()) if keep.any() else None

    for s, sep in enumerate(SEPARATIONS):
        for v, var in enumerate(VARIANCES):
            for o, ori in enumerate(ORIENTATIONS):
                e, se = result.err[s, v, o], result.err_se[s, v, o]  # [D, L, M]
                cfg, cfg_se = e[..., i_cfg], se[..., i_cfg]
                row = {"cfg_err_first_last_d": [float(cfg[0].mean()), float(cfg[-1].mean())],
                       "golden_size_first_last_d": [float(result.golden_size[s, v, 0].mean()),
                                                    float(result.golden_size[s, v, -1].mean())]}
                for i, m in enumerate(METHODS):
                    if m == "cfg":
                        continue
                    margin = 2 * np.hypot(se[..., i], cfg_se)
                    resolved = np.maximum(e[..., i], cfg) > floor  # below it both are rounding-level zeros
                    row[m] = {"closer": float(np.mean((e[..., i] < cfg - margin) & resolved)),
                              "further": float(np.mean((e[..., i] > cfg + margin) & resolved)),
                              "ratio_first_d": ratio(e[0, :, i], cfg[0]), "ratio_last_d": ratio(e[-1, :, i], cfg[-1])}
                out["fields"][f"{sep}/{var}/{ori}"] = row
    for s, sep in enumerate(SEPARATIONS):
        out["laws"][sep] = {"dims": result.law_dims.tolist(), "steps": result.law_steps,
                            "target_mean": result.target_mean[s].tolist(), "target_var": result.target_var[s].tolist(),
                            **{f"{m}_mean": result.law_mean[s, :, i].tolist() for i, m in enumerate(LAW_METHODS)},
                            **{f"{m}_var": result.law_var[s, :, i].tolist() for i, m in enumerate(LAW_METHODS)}}
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
