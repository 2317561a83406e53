"""Bradley & Nakkiran, "Classifier-free guidance is a predictor-corrector" (arXiv 2408.09000).

Claims (abstract): CFG with DDPM and with DDIM give different laws; neither is the gamma-powered law
``p(x|c)^gamma p(x)^(1-gamma)``; in the SDE limit CFG-DDPM equals a DDIM predictor for the conditional plus a
Langevin corrector for the gamma'-powered law, ``gamma' = 2 gamma - 1`` (the value of gamma' from the paper's
summary, read with the abstract).

In this library's weights ``gamma = 1 + w`` (``D_c + w (D_c - D_u)``), so the gamma-powered law is the tilted
target of ``CFGReward(w)`` and ``gamma' = 2 gamma - 1`` is ``w' = 2 w``. The derivation in VE coordinates: one
DDPM step of size ``d = sigma^2 - sigma'^2`` moves ``x`` by ``d s_gamma + sqrt(d) z``; splitting
``d s_gamma = d/2 s_c + d/2 (2 s_gamma - s_c)`` gives the probability-flow (DDIM) step of the conditional
plus a Langevin step of size ``eps = d/2`` on the score ``2 s_gamma - s_c = s_{2 gamma - 1}``.

The predictor-corrector chain ``pcg`` is propagated exactly on a 1-D grid here (:func:`propagate`: Gaussian
kernels given the state, trapezoid rule on the nodes, each source's kernel normalised on the grid; the last,
deterministic step deposits with linear weights; each kernel is summed over the nodes within ``BAND`` standard
deviations of its mean, in blocks of ``BLOCK`` sources, so memory and time grow with the nodes times the band, not
their square: the dense form needed over 6 GB on 19201 nodes); ``ddpm_grid`` is CFG-DDPM through the same
propagator, to compare like with like and as a check of it against :func:`evaluation.density.output_density`. The
propagator has no error estimate of its own: the accuracy contract (:func:`evaluation.accuracy.refined_engine`)
reruns it at half the spacing and refines the grid until the change is below the cell's tolerance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import torch

from analytic.quadrature import deposit
from sampler.samplers import ddim_coefficients

from ..accuracy import (GridLaw, converged_laws, density_engine, from_arrays, grid_tv, narrowest_kernel,
                        refined_engine, to_grid, tv_between)
from ..docs import format_number
from ..spec import Law, Method, Schedule
from ..sweep import cell_kind
from .cells import shared_target
from .ledger import Claim, Outcome

__all__ = ["CLAIM", "PCCell", "PCLaw", "propagate", "KINDS"]

KINDS = ("ddpm", "ddim", "pcg", "ddpm_grid")
GRID = (-5.0, 5.0, 601)
F64 = torch.float64

# (mean map, kernel std) of one step in VE coordinates, given the state x [N, 1] at (sigma, sigma')
StepFn = Callable[[torch.Tensor, float, float], tuple[torch.Tensor, float]]

TOL = 1e-3  # the verdict compares TVs of 0.05 and more, and the key prints 3 decimals; the propagator's cost grows
# with the nodes times the kernels' band, and at 5e-4 its quick cells refine to 2401 nodes
BAND = 7.5  # kernel truncation in standard deviations (relative mass beyond: < 1e-13), as evaluation.density's
BLOCK = 1024  # sources per block of the kernel sum

def propagate(step: StepFn, sigmas: torch.Tensor, axis: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Hat masses on ``axis`` of a 1-D chain from N(0, 1) (VP state ``u = x / sqrt(1 + sigma^2)``) whose step
    ``sigma -> sigma'`` is ``x' ~ N(mean(x), std^2)`` (``step`` returns both; std 0 on the last step), and the
    mass that left the grid (each source's kernel keeps the share of its Gaussian that lies on the grid). The
    kernel of source ``j`` is summed over the nodes within ``BAND`` standard deviations of its mean (the share
    beyond is below 1e-13 of it), ``BLOCK`` sources at a time."""
    h, x0, n = (axis[1] - axis[0]).item(), axis[0].item(), axis.numel()
    p = torch.exp(-0.5 * axis**2)
    p = p / (p.sum() * h)
    s = sigmas.tolist()
    lost = 0.0
    for i in range(len(s) - 1):
        r, r2 = math.sqrt(1 + s[i] ** 2), math.sqrt(1 + s[i + 1] ** 2)
        with torch.no_grad():
            mean, std = step(r * axis[:, None], s[i], s[i + 1])
        m, c = mean[:, 0] / r2, std / r2
        if c > 0:
            on = 0.5 * (torch.special.erf((axis[-1] + h / 2 - m) / (c * math.sqrt(2)))
                        - torch.special.erf((axis[0] - h / 2 - m) / (c * math.sqrt(2))))  # [j] share on the grid
            lost += (p * h * (1 - on)).clamp(min=0).sum().item()
            nxt = torch.zeros_like(p)
            for j in range(0, n, BLOCK):
                mj = m[j:j + BLOCK]
                a = max(0, math.floor((mj.min().item() - BAND * c - x0) / h))  # the nodes the block's kernels reach
                b = min(n, math.ceil((mj.max().item() + BAND * c - x0) / h) + 1)
                if a < b:
                    K = torch.exp(-0.5 * ((axis[a:b, None] - mj[None, :]) / c) ** 2)  # [k, j]
                    nxt[a:b] += K @ (on[j:j + BLOCK] * p[j:j + BLOCK] / K.sum(0).clamp(min=1e-300))
            p = nxt
        else:  # the deterministic last step: nodal masses to the image points, linear weights
            mass, out = deposit(m[:, None], p * h, (axis,))
            return mass, lost + out
    return p * h, lost


@dataclass(frozen=True)
class PCCell:
    law: str
    schedule: str
    w: float
    kind: str
    grid: tuple[float, float, int] = GRID
    tol: float = TOL  # the accuracy contract (evaluation.accuracy): masses and TV to the target within tol

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def cost(self) -> float:
        return Schedule.parse(self.schedule).vp.T * (3.0 if self.kind in ("pcg", "ddpm_grid") else 1.0)


class PCLaw(NamedTuple):
    mass: np.ndarray  # [n] hat masses of the output on ``grid``
    target: np.ndarray  # [n] the gamma-powered law p_c^(1+w) p_u^(-w), normalised
    grid: tuple = ()  # the final grid (lo, hi, n), refined / widened from the cell's by the contract
    mass_error: np.ndarray = np.zeros(0)  # [n] estimated per-node error of mass
    target_error: np.ndarray = np.zeros(0)
    lost: float = math.nan  # output mass missing from the (final) grid (density's lost; the propagator's: what left it)
    tv_target: float = math.nan  # TV to the gamma-powered law
    tv_target_error: float = math.nan

    def law_of(self) -> GridLaw:
        return from_arrays(self.grid, self.mass, self.mass_error, self.lost)

    def target_law(self) -> GridLaw:
        return from_arrays(self.grid, self.target, self.target_error, 0.0)


@cell_kind(PCCell)
def pc_law(cell: PCCell) -> PCLaw:
    law = Law.parse(cell.law).build()
    sched = Schedule.parse(cell.schedule).vp
    sig = sched.sampling_sigmas()
    built = Method("cfg", cell.w).build(law, Schedule.parse(cell.schedule))
    cfg, cfg2 = built.guided, Method("cfg", 2 * cell.w).build(law, Schedule.parse(cell.schedule)).guided
    c, reward = cfg.cond, built.reward
    if cell.kind in ("ddpm", "ddim"):
        engine = density_engine(cfg, sig, sampler=cell.kind)
    elif cell.kind == "ddpm_grid":
        def step(x, s, s2):
            D = cfg(x, s)
            keep, std = ddim_coefficients(s, s2, 1.0)
            return D + keep * (x - D), std
        engine = refined_engine(lambda axes: propagate(step, sig, axes[0]))
    else:  # pcg: DDIM predictor on the conditional, one Langevin step on the gamma' = 2 gamma - 1 law
        def step(x, s, s2):
            if s2 == 0:
                return c(x, s), 0.0
            D = c(x, s)
            x1 = D + (s2 / s) * (x - D)
            eps = 0.5 * (s**2 - s2**2)
            score = (cfg2(x1, s2) - x1) / s2**2
            return x1 + eps * score, math.sqrt(2 * eps)
        engine = refined_engine(lambda axes: propagate(step, sig, axes[0]))

    def target_on(g) -> GridLaw:
        return shared_target(law.cond, reward, g, cell.tol)

    (out,), n = converged_laws([engine], cell.grid, 1, name=repr(cell), tol=cell.tol,
                               numbers=lambda laws: {"tv_target": grid_tv(laws[0], target_on(laws[0].grid))},
                               narrowest=narrowest_kernel(sig, "ddpm" if cell.kind != "ddim" else "ddim"))
    tgt = target_on(out.grid)
    return PCLaw(out.mass.numpy().copy(), tgt.mass.numpy().copy(), tuple(out.grid), out.error.numpy().copy(),
                 tgt.error.numpy().copy(), out.lost, n["tv_target"].value, n["tv_target"].error)


def _Ts(quick: bool) -> tuple[int, ...]:
    return (25, 50) if quick else (25, 50, 100, 200, 400)


def _ws(quick: bool) -> tuple[float, ...]:
    return (1.0,) if quick else (1.0, 3.0)


def cells(quick: bool) -> list:
    return [PCCell("paper_1d", f"lin:{T}:0.0001", w, k) for w in _ws(quick) for T in _Ts(quick) for k in KINDS]


class PredictorCorrector(NamedTuple):
    T: np.ndarray  # [K]
    ws: tuple[float, ...]
    tv_pcg_ddpm: np.ndarray  # [W, K] TV(PCG, CFG-DDPM), both on the propagator
    tv_ddim_ddpm: np.ndarray  # [W, K]
    tv_ddpm_target: np.ndarray  # [W, K] TV(CFG-DDPM, gamma-powered law)
    tv_ddim_target: np.ndarray  # [W, K]
    tv_grid_check: np.ndarray  # [W, K] TV(propagator DDPM, output_density DDPM)
    x: np.ndarray
    laws: tuple  # (ddpm, ddim, pcg, target) masses at the largest T, first w


def conclude(quick: bool, results) -> Outcome:
    Ts, ws = _Ts(quick), _ws(quick)
    res = dict(zip(cells(quick), results))
    get = lambda w, T, k: res[PCCell("paper_1d", f"lin:{T}:0.0001", w, k)].law_of()  # noqa: E731
    tgt = lambda w, T: res[PCCell("paper_1d", f"lin:{T}:0.0001", w, "ddpm")].target_law()  # noqa: E731
    def arr(a, b):  # TV of two laws over (w, T): values and their estimated errors (evaluation.accuracy)
        e = [[tv_between(a(w, T), b(w, T)) for T in Ts] for w in ws]
        return np.array([[x.value for x in row] for row in e]), np.array([[x.error for x in row] for row in e])

    law = lambda k: lambda w, T: get(w, T, k)  # noqa: E731
    (pc, pc_e), (dd, dd_e) = arr(law("pcg"), law("ddpm_grid")), arr(law("ddim"), law("ddpm"))
    (pt, pt_e), (it, it_e) = arr(law("ddpm"), tgt), arr(law("ddim"), tgt)
    chk, _ = arr(law("ddpm_grid"), law("ddpm"))
    Tm = Ts[-1]
    on = lambda law: to_grid(law, GRID).mass.numpy()  # noqa: E731  (the figure's grid)
    data = PredictorCorrector(np.array(Ts), ws, pc, dd, pt, it, chk, np.linspace(*GRID[:2], GRID[2]),
                              tuple(on(get(ws[0], Tm, k)) for k in ("ddpm", "ddim", "pcg")) + (on(tgt(ws[0], Tm)),))
    order = np.log2(pc[:, -2] / pc[:, -1])
    numbers = [(f"w={w:g} T={T}: TV(PCG, CFG-DDPM)", pc[i, k], pc_e[i, k]) for i, w in enumerate(ws)
               for k, T in enumerate(Ts)]
    numbers += [(f"w={w:g} T={Tm}: TV(CFG-DDIM, CFG-DDPM)", dd[i, -1], dd_e[i, -1]) for i, w in enumerate(ws)]
    numbers += [(f"w={w:g} T={Tm}: TV(CFG-DDPM, gamma-law)", pt[i, -1], pt_e[i, -1]) for i, w in enumerate(ws)]
    numbers += [(f"w={w:g} T={Tm}: TV(CFG-DDIM, gamma-law)", it[i, -1], it_e[i, -1]) for i, w in enumerate(ws)]
    numbers += [("observed order of TV(PCG, DDPM) in 1/T", float(order.min())),
                ("propagator vs output_density (max TV)", float(chk.max()))]
    differ = bool(np.all(dd[:, -1] > 0.1) and np.all(dd[:, -1] > 2 * pc[:, -1]))
    not_gamma = bool(np.all(pt[:, -1] > 0.05) and np.all(it[:, -1] > 0.05))
    converges = bool(np.all(np.diff(pc, axis=1) < 0) and np.all(order > 0.5))
    verdict = "holds" if differ and not_gamma and converges else "fails"
    fmt = lambda a, a_e, k: format_number(float(a[0, k]), float(a_e[0, k]))  # noqa: E731  (w = 1, with its error)
    key = (f"TV(PCG, CFG-DDPM) {fmt(pc, pc_e, 0)} -> {fmt(pc, pc_e, -1)} (T {Ts[0]} -> {Tm}, order {order[0]:.2f}); "
           f"at T = {Tm}: TV(DDIM, DDPM) {fmt(dd, dd_e, -1)}, TV to the gamma-law DDPM {fmt(pt, pt_e, -1)} / DDIM "
           f"{fmt(it, it_e, -1)}")
    return Outcome(CLAIM.result(verdict, key, numbers), data)


CLAIM = Claim(
    id="bn-pc", source="2408.09000", title="CFG is a predictor-corrector",
    statement=("CFG-DDPM and CFG-DDIM sample different laws, neither the gamma-powered p(x|c)^gamma p(x)^(1-gamma); "
               "in the SDE limit CFG-DDPM equals a DDIM predictor for the conditional plus a Langevin corrector for "
               "the gamma' = 2 gamma - 1 powered law."),
    provenance="abstract",
    experiment=("paper_1d, w = 1 and 3 (gamma = 2, 4), linear schedules to abar_T = 1e-4 with T = 25..400, from "
                "N(0,1): exact output laws of CFG-DDPM and CFG-DDIM, and of the predictor-corrector chain (DDIM step "
                "of the conditional, then one Langevin step of size (sigma^2 - sigma'^2)/2 on the 2w CFG score) "
                "propagated exactly on a grid (601 points, refined until converged to 1e-4)."),
    figure="claims_bn_pc", cells=cells, conclude=conclude)
