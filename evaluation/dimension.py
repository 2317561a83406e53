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

import numpy as np
import torch
from tqdm.auto import tqdm

from analytic import CFGReward, GaussianMixture, optimal_denoiser
from analytic.mixture import check_abar
from analytic.reducible import ReducibleMixture, ReducibleRatioReward
from analytic.reducible_golden import optimal_guidance_reducible, reg_corrections_reducible
from sampler import CFG, REG, TiltedMean, Unguided, VPSchedule

from .density import output_density, tilted_start
from .distances import tilted_target

__all__ = ["SEPARATIONS", "VARIANCES", "ORIENTATIONS", "METHODS", "LAW_METHODS", "DimensionStudy", "compute",
           "summary"]

SEPARATIONS = ("fixed", "sqrt_d")
VARIANCES = ("equal", "unequal")
ORIENTATIONS = ("axes", "random")
METHODS = ("cfg", "paper", "vjp", "diag", "jvp", "fd", "damped")
LAW_METHODS = ("unguided", "cfg", "reg", "damped", "optimal")
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


def _classes(separation: str, variances: str, d: int, mu0: float, var1: float, delta: float, q: torch.Tensor):
    """Class 0 and the class marginal as reducible mixtures on the line ``q`` [d]."""
    if variances not in VARIANCES:
        raise ValueError(f"unknown variances {variances!r}; choose one of {VARIANCES}")
    mu = _mu(separation, mu0, d)
    v1 = 1.0 if variances == "equal" else var1
    Q = q[:, None]
    means = [[mu - delta], [mu + delta]]
    cond = ReducibleMixture(Q, [0.5, 0.5], means, [[[1.0]], [[1.0]]], [1.0, 1.0])
    uncond = ReducibleMixture(Q, [0.25, 0.25, 0.5], means + [[-mu]], [[[1.0]], [[1.0]], [[v1]]], [1.0, 1.0, v1])
    return cond, uncond


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


def _fields(cond: ReducibleMixture, uncond: ReducibleMixture, w: float, x: torch.Tensor, a: float) -> dict:
    """Every method's term added to ``eps_c`` at points x [N, d] (VP), eps units."""
    reward = ReducibleRatioReward(cond, uncond, w)
    g = reward.present(x, a).detach()
    cfg = CFG(cond.denoise, uncond.denoise, w)
    out = {"cfg": g}
    for est in ("paper", "vjp", "jvp", "fd"):
        out[est] = _eps_field(REG(cfg, est), cond.denoise, x, a)
    out["diag"] = reg_corrections_reducible(cond, g, x, a)[2]
    s2 = cond.comp_vars[0].item()  # the conditional's complement variance
    out["damped"] = a * s2 / (a * s2 + 1 - a) * g  # the d -> inf limit of paper and diag at a random orientation
    return out


def _errors(golden: torch.Tensor, fields: dict) -> tuple[np.ndarray, np.ndarray]:
    gaps = torch.stack([(golden - fields[m]).norm(dim=1) for m in METHODS])  # [M, N]
    n = gaps.shape[1]
    return gaps.mean(1).numpy(), (gaps.std(1) / math.sqrt(n)).numpy()


def _field_cell(separation, variances, d, a, w, mu0, var1, delta, n_points, q_random, gen):
    """Errors [O, M], standard errors [O, M], mean |golden| and its largest error estimate at one cell."""
    e1 = torch.zeros(d, dtype=_F64)
    e1[0] = 1.0
    cond, uncond = _classes(separation, variances, d, mu0, var1, delta, e1)
    x = cond.noised(a).sample(n_points, gen)
    opt = optimal_guidance_reducible(cond, ReducibleRatioReward(cond, uncond, w), x, a, tol=1e-7)
    err, se = np.zeros((2, len(METHODS))), np.zeros((2, len(METHODS)))
    err[0], se[0] = _errors(opt.golden, _fields(cond, uncond, w, x, a))
    H = _reflect(q_random)
    cond_r, uncond_r = _classes(separation, variances, d, mu0, var1, delta, q_random)
    err[1], se[1] = _errors(H(opt.golden), _fields(cond_r, uncond_r, w, H(x), a))
    golden_err = (math.sqrt(1 - a) * opt.err_grad).norm(dim=1).max().item()
    return err, se, opt.golden.norm(dim=1).mean().item(), golden_err


# --- output laws along U (equal variances: exactly one-dimensional) -----------------------------------


def _moments(mass: torch.Tensor, axis: torch.Tensor) -> tuple[float, float]:
    p = mass.clamp(min=0) / mass.clamp(min=0).sum()
    mean = (p * axis).sum().item()
    return mean, (p * (axis - mean) ** 2).sum().item()


def _laws_1d(mu: float, delta: float, w: float, schedule: VPSchedule, points: int
             ) -> tuple[np.ndarray, tuple[float, float]]:
    """Output mean and variance along U of every law method, and the tilted target's (1-D, exact on a grid)."""
    cond = GaussianMixture.from_1d([0.5, 0.5], [mu - delta, mu + delta], [1.0, 1.0])  # class 0's law of u
    uncond = GaussianMixture.from_1d([0.25, 0.25, 0.5], [mu - delta, mu + delta, -mu], [1.0, 1.0, 1.0])
    reward = CFGReward(cond, uncond, w)
    c, u = cond.denoise, uncond.denoise
    cfg = CFG(c, u, w)
    damped = CFG(c, u, lambda sigma: w / (1 + sigma**2))  # rho = abar s^2 / (abar s^2 + 1 - abar), s = 1
    opt = TiltedMean(c, optimal_denoiser(cond, reward))
    sigmas = schedule.sampling_sigmas()
    lo, hi = min(-6.0, mu - delta - 8), mu + delta + 8  # holds the start N(0, 1) and the output
    axis = torch.linspace(lo, hi, points, dtype=_F64)
    starts = {"optimal": tilted_start(cond, reward, schedule.abar[-1].item(), marginal=True)}
    out = np.zeros((len(LAW_METHODS), 2))
    for i, (name, den) in enumerate(zip(LAW_METHODS, (Unguided(c), cfg, REG(cfg, "vjp"), damped, opt))):
        kw = {"start": starts[name]} if name in starts else {}
        out[i] = _moments(output_density(den, sigmas, axis, sampler="ddpm", estimate_error=False, **kw).mass, axis)
    target = tilted_target(cond, reward, torch.linspace(mu - delta - 8, mu + delta + 8, points, dtype=_F64))
    return out, _moments(target.mass, target.axes[0])


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
            law_steps: int | None = None, law_grid: int | None = None, progress: bool = False) -> DimensionStudy:
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
    S, V, D, L, M = len(SEPARATIONS), len(VARIANCES), len(dims), len(abars), len(METHODS)
    err, se = np.zeros((S, V, 2, D, L, M)), np.zeros((S, V, 2, D, L, M))
    gsize, gerr = np.zeros((S, V, D, L)), np.zeros((S, V, D, L))
    cells = [(s, v, k, j) for s in range(S) for v in range(V) for k in range(D) for j in range(L)]
    for s, v, k, j in tqdm(cells, desc="dimension study", disable=not progress):
        d = dims[k]
        gen = torch.Generator().manual_seed(seed + j)
        q = torch.randn(d, dtype=_F64, generator=torch.Generator().manual_seed(seed + 7 * d))
        q = q / q.norm()
        e, sd, gsize[s, v, k, j], gerr[s, v, k, j] = _field_cell(SEPARATIONS[s], VARIANCES[v], d, abars[j], w, mu0,
                                                                 var1, delta, n_points, q, gen)
        err[s, v, :, k, j], se[s, v, :, k, j] = e, sd
    schedule = VPSchedule.cosine(steps)
    law_mean, law_var = np.zeros((S, len(law_dims), len(LAW_METHODS))), np.zeros((S, len(law_dims), len(LAW_METHODS)))
    t_mean, t_var = np.zeros((S, len(law_dims))), np.zeros((S, len(law_dims)))
    laws: dict[float, tuple] = {}  # d enters the exact 1-D problem only through mu: one computation per mu
    for s, sep in enumerate(SEPARATIONS):
        for k, d in enumerate(tqdm(law_dims, desc=f"laws ({sep})", disable=not progress)):
            mu = _mu(sep, mu0, d)
            if mu not in laws:
                laws[mu] = _laws_1d(mu, delta, w, schedule, grid)
            mom, (t_mean[s, k], t_var[s, k]) = laws[mu]
            law_mean[s, k], law_var[s, k] = mom[:, 0], mom[:, 1]
    return DimensionStudy(np.array(dims, dtype=np.float64), np.array(abars), w, mu0, var1, delta, n_points, err, se,
                          gsize, gerr, np.array(law_dims, dtype=np.float64), steps, law_mean, law_var, t_mean, t_var,
                          time.perf_counter() - start)


def summary(result: DimensionStudy, floor: float = 1e-3) -> dict:
    """The findings as plain numbers. Per separation, variances, orientation and REG estimator (and the ``damped``
    limit): the fraction of (d, abar) cells where it is closer to the golden than CFG, and where further, beyond two
    standard errors and above ``floor``; and its error relative to CFG's at the smallest and the largest d, averaged
    over the levels where CFG's error exceeds ``floor`` (None where there is none: far from the speciation window
    both vanish).
    Plus the output-law moments along ``U``."""
    out: dict = {"dims": result.dims.tolist(), "abars": result.abars.tolist(), "seconds": round(result.seconds, 1),
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
