"""The dimension study (evaluation.dimension) on a tiny configuration, checked against independent routes: at
d = 1 and 2 every field error against the dense mixtures' grid golden and autograd REG fields (no reduction), and the
golden's stated error against the golden recomputed at a tighter tolerance; the Monte Carlo standard errors against
the spread over independent draws; the tilted target's moments against scipy quadrature, the laws' stated errors
against the laws at a tighter tolerance, the unguided law against the conditional's moments; the summary's numbers
through the docs' own check."""
import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import integrate

from analytic import CFGReward, GaussianMixture, guidance_fields, optimal_guidance
from analytic.reducible import ReducibleMixture
from evaluation.dimension import (LAW_METHODS, METHODS, ORIENTATIONS, SEPARATIONS, VARIANCES, AlongU, along_u, cells,
                                  compute, field_point, summary)

F64 = torch.float64
TINY = dict(dims=[1, 2], abars=[0.5], n_points=8, law_dims=[1, 4], law_steps=20, law_grid=301, law_tol=2e-3)
W, MU0, VAR1, DELTA, SEED = 2.0, 1.5, 2.0, 1.5, 0


@pytest.fixture(scope="module")
def study():
    return compute(**TINY, w=W, mu0=MU0, var1=VAR1, delta=DELTA, seed=SEED)


def dense_classes(mu: float, v1: float, q: torch.Tensor):
    """Class 0 and the class marginal of the study (its module docstring) as plain d-dimensional mixtures."""
    d = q.numel()
    eye = torch.eye(d, dtype=F64)
    means = torch.stack([(mu - DELTA) * q, (mu + DELTA) * q, -mu * q])
    cond = GaussianMixture([0.5, 0.5], means[:2], torch.stack([eye, eye]))
    return cond, GaussianMixture([0.25, 0.25, 0.5], means, torch.stack([eye, eye, v1 * eye]))


def reflect(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Rows of x under the Householder reflection that swaps e_1 and q."""
    h = -q.clone()
    h[0] += 1.0
    if h.norm() < 1e-12:
        return x
    return x - 2 * (x @ h)[:, None] * h / (h @ h)


def test_field_errors_at_d_1_and_2_match_the_dense_grid_golden_and_autograd_fields(study):
    a = TINY["abars"][0]
    rho = a / (a + 1 - a)  # the damped limit: abar s^2 / (abar s^2 + 1 - abar), complement variance s^2 = 1
    checked = 0
    for s, sep in enumerate(SEPARATIONS):
        for v, var in enumerate(VARIANCES):
            for k, d in enumerate(TINY["dims"]):
                mu = MU0 * (math.sqrt(d) if sep == "sqrt_d" else 1.0)
                v1 = 1.0 if var == "equal" else VAR1
                e1 = torch.zeros(d, dtype=F64)
                e1[0] = 1.0
                z = torch.randn(d, dtype=F64, generator=torch.Generator().manual_seed(SEED + 7 * d))
                q = z / z.norm()
                x = ReducibleMixture(e1[:, None], [0.5, 0.5], [[mu - DELTA], [mu + DELTA]], [[[1.0]], [[1.0]]],
                                     [1.0, 1.0]).noised(a).sample(TINY["n_points"], torch.Generator().manual_seed(SEED))
                for o, (ori, qo) in enumerate(zip(ORIENTATIONS, (e1, q))):
                    cond, uncond = dense_classes(mu, v1, qo)
                    reward = CFGReward(cond, uncond, W)
                    xo = reflect(x, qo)
                    golden = optimal_guidance(cond, reward, xo, a, tol=1e-11)
                    assert golden.method == "grid"  # the dense 1-D/2-D quadrature, not the reduction
                    f = guidance_fields(cond, reward, xo, a, tol=1e-9)
                    fields = {"cfg": f.present, "cfg,reg=paper": f.reg_paper, "cfg,reg=vjp": f.reg_vjp,
                              "cfg,reg=diag": f.reg_diag, "cfg,reg=jvp": f.reg_vjp,
                              "cfg,reg=fd": f.reg_vjp,  # J is symmetric for exact scores: J g = J^T g
                              "damped": rho * f.present}
                    for i, m in enumerate(METHODS):
                        gaps = (golden.golden - fields[m]).norm(dim=1)
                        expect = gaps.mean().item()
                        tol = 1e-5 if m == "cfg,reg=fd" else 1e-7  # fd: sampler.REG's finite difference
                        assert abs(study.err[s, v, o, k, 0, i] - expect) <= tol * (1 + expect), (sep, var, ori, d, m)
                        se = gaps.std().item() / math.sqrt(gaps.numel())
                        assert abs(study.err_se[s, v, o, k, 0, i] - se) <= 1e-5 * (1 + se) + (tol if m == "cfg,reg=fd" else 0)
                    size = golden.golden.norm(dim=1).mean().item()
                    assert study.golden_size[s, v, k, 0] == pytest.approx(size, rel=1e-7)
                    # the golden's stated error (the mean of its estimate over the points) bounds how far the means
                    # move when the golden is recomputed by the dense route at tol 1e-11 (the study's: 1e-7): CFG's
                    # field is exact, so its error moves by the golden's part alone (1e-14: rounding of a mean)
                    bound = study.golden_err[s, v, k, 0] + 1e-14
                    assert abs(study.err[s, v, o, k, 0, METHODS.index("cfg")]
                               - (golden.golden - f.present).norm(dim=1).mean().item()) <= bound, (sep, var, ori, d)
                    assert abs(study.golden_size[s, v, k, 0] - size) <= bound, (sep, var, ori, d)
                    checked += 1
    assert checked == 16
    assert 0 < study.golden_err.max() < 1e-6


def _tilted_moments(mu: float) -> tuple[float, float]:
    """Mean and variance of p(u | y) R_0(u) along U by scipy quadrature (equal variances: 1-D exactly)."""
    def log_n(u, m):
        return -0.5 * (u - m) ** 2 - 0.5 * math.log(2 * math.pi)

    def lse(vals):
        top = max(vals)
        return top + math.log(sum(math.exp(t - top) for t in vals))

    def dens(u):
        lc = lse([math.log(0.5) + log_n(u, mu - DELTA), math.log(0.5) + log_n(u, mu + DELTA)])
        lu = lse([math.log(0.25) + log_n(u, mu - DELTA), math.log(0.25) + log_n(u, mu + DELTA),
                  math.log(0.5) + log_n(u, -mu)])
        return math.exp(lc + W * (lc - lu))

    lo, hi = -mu - 20, mu + DELTA + 20
    Z = integrate.quad(dens, lo, hi, points=[mu - DELTA, mu + DELTA], epsabs=0, epsrel=1e-12, limit=200)[0]
    m1 = integrate.quad(lambda u: u * dens(u), lo, hi, points=[mu - DELTA, mu + DELTA], epsabs=0, epsrel=1e-12,
                        limit=200)[0] / Z
    m2 = integrate.quad(lambda u: (u - m1) ** 2 * dens(u), lo, hi, points=[mu - DELTA, mu + DELTA], epsabs=0,
                        epsrel=1e-12, limit=200)[0] / Z
    return m1, m2


def test_laws_match_the_tilted_target_by_scipy_and_the_conditional_moments(study):
    for s, sep in enumerate(SEPARATIONS):
        for k, d in enumerate(TINY["law_dims"]):
            mu = MU0 * (math.sqrt(d) if sep == "sqrt_d" else 1.0)
            m1, m2 = _tilted_moments(mu)
            # the target's moments lie within their stated errors of scipy's (1e-11: scipy's own precision); the
            # variance of hat masses on spacing h is h^2 / 6 above the law's, which its error (the change from
            # twice the spacing, h^2 / 2) covers, and which the tolerance keeps below law_tol
            assert abs(study.target_mean[s, k] - m1) <= study.target_mean_err[s, k] + 1e-11
            assert abs(study.target_var[s, k] - m2) <= study.target_var_err[s, k] + 1e-11
            assert study.target_var_err[s, k] <= TINY["law_tol"] and study.law_var_err[s, k].max() <= TINY["law_tol"]
            unguided = LAW_METHODS.index("unguided")
            # the 20-step DDPM chain with the exact denoiser from N(0, 1) keeps the conditional's mean mu and
            # underdisperses (variance 2.82 against 1 + DELTA^2 = 3.25 at 20 steps; 3.13 at 80, 3.21 at 320)
            assert abs(study.law_mean[s, k, unguided] - mu) < 1e-3
            assert 2.6 < study.law_var[s, k, unguided] < 1 + DELTA**2
            # guidance moves the mean up and the optimum lands near the tilted target (a 20-step chain)
            opt = LAW_METHODS.index("optimal")
            assert abs(study.law_mean[s, k, opt] - m1) < 0.05
            assert study.law_mean[s, k, LAW_METHODS.index("cfg")] > mu + 0.5


def test_law_errors_cover_the_change_at_a_tighter_tolerance():
    """The output-law moments of a cell at tol 5e-3 (its 301-node grid) lie within their stated errors of the same
    cell at tol 2e-4 (the accuracy contract refines to a grid 4x finer), for every law method and the target."""
    coarse, fine = (along_u(AlongU(MU0, DELTA, W, 20, 301, tol=t)) for t in (5e-3, 2e-4))
    assert np.all(coarse.moments_error <= 5e-3) and np.all(fine.moments_error <= 2e-4)
    gap = np.abs(coarse.moments - fine.moments)
    assert np.all(gap <= coarse.moments_error + fine.moments_error), (gap, coarse.moments_error)
    assert gap[:, 1].max() > 1e-4  # the coarse grid's variances are visibly off: the check has something to catch
    for c, f, e, e_f in zip(coarse.target, fine.target, coarse.target_error, fine.target_error):
        assert abs(c - f) <= e + e_f


def test_monte_carlo_errors_match_the_spread_over_independent_draws():
    """The standard errors a cell states (of each mean field error, of its ratio to CFG's, of the mean |golden|) are
    the spread of those numbers over 40 independent draws of the points, within the accuracy 40 draws give."""
    (cell,) = [c for c in cells(False, dims=[2], abars=[0.3], n_points=12, law_dims=[1], law_steps=5, law_grid=101)
               if not isinstance(c, AlongU) and c.law.args[3] != 1.0 and c.law.args[1] > MU0]  # sqrt_d, unequal
    runs = [field_point(dataclasses.replace(cell, seed=seed)) for seed in range(40)]
    err, se = np.array([r.err for r in runs]), np.array([r.se for r in runs])  # [R, O, M]
    ratio = err / err[..., METHODS.index("cfg")][..., None]
    rse = np.array([r.ratio_se for r in runs])
    size, size_se = np.array([r.golden_size for r in runs]), np.array([r.golden_size_se for r in runs])
    reg = [i for i, m in enumerate(METHODS) if m != "cfg"]
    for spread, stated in ((err.std(0, ddof=1), np.sqrt((se**2).mean(0))),
                           (ratio[..., reg].std(0, ddof=1), np.sqrt((rse[..., reg] ** 2).mean(0))),
                           (size.std(ddof=1), np.sqrt((size_se**2).mean()))):
        q = spread / stated
        assert np.all((0.6 < q) & (q < 1.6)), q
    assert np.all(rse[..., METHODS.index("cfg")] == 0)  # CFG against itself: 1 exactly


def test_summary_publishes_every_measured_number_with_its_error(study):
    """Every number the summary publishes is a ``{"value", "error"}`` leaf with a finite positive error, or an exact
    count or setting (integers, and the study's dims / abars); the docs render every leaf at its printed precision
    (tests/test_docs.py's check); a ratio without a level where CFG's error is resolved is left out, not None."""
    from evaluation import docs
    from tests.test_docs import check_findings

    s = summary(study)

    def walk(node, path=()):
        if isinstance(node, dict) and set(node) == {"value", "error"}:
            assert math.isfinite(node["error"]) and node["error"] > 0, path
            yield path
        elif isinstance(node, dict):
            for k, v in node.items():
                yield from walk(v, path + (k,))
        else:
            assert isinstance(node, int) or path in (("dims",), ("abars",)), (path, node)

    leaves = list(walk(s))
    cfg = study.err[0, 0, 0, 0, :, METHODS.index("cfg")]
    assert s["fields"]["fixed/equal/axes"]["cfg_err_first_d"]["value"] == pytest.approx(cfg.mean())
    n_fields = len(SEPARATIONS) * len(VARIANCES) * len(ORIENTATIONS) * (4 + 2 * (len(METHODS) - 1))
    n_laws = len(SEPARATIONS) * len(TINY["law_dims"]) * 2 * (len(LAW_METHODS) + 1)
    assert len(leaves) == n_fields + n_laws
    results = {"figures": {"dimension": {"caption": "c", "numbers": s}}}
    assert check_findings(docs.render_findings(results), results) > len(leaves)
    far = summary(study, floor=10.0)  # no level resolved: the ratios are left out
    assert all(set(row[m]) == {"closer", "further"} for row in far["fields"].values() for m in METHODS if m != "cfg")
    results = {"figures": {"dimension": {"caption": "c", "numbers": far}}}
    check_findings(docs.render_findings(results), results)


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="dims must hold integers >= 1"):
        compute(dims=[0, 2])
    with pytest.raises(ValueError, match="abars must lie in"):
        compute(abars=[0.5, 1.0])
    with pytest.raises(ValueError, match="abar must lie in"):
        compute(abars=[1.5])
    with pytest.raises(ValueError, match="n_points must hold integers >= 2"):
        compute(n_points=1)
    with pytest.raises(ValueError, match="law_dims must be a non-empty list"):
        compute(law_dims=[])
    with pytest.raises(ValueError, match="law_grid must hold integers >= 5"):
        compute(law_grid=2.5)
    with pytest.raises(ValueError, match="law_grid must be odd"):
        compute(law_grid=300)
    with pytest.raises(ValueError, match="points must be an odd integer >= 5"):
        AlongU(MU0, DELTA, W, 20, 300)
    with pytest.raises(ValueError, match="tol must be a positive number"):
        AlongU(MU0, DELTA, W, 20, 301, tol=0.0)
    with pytest.raises(ValueError, match="law_tol must be a positive number"):
        compute(law_tol=-1.0)


@pytest.mark.slow
def test_python_m_evaluation_dimension_writes_its_findings(tmp_path):
    """``python -m evaluation.dimension --quick`` runs the study's cells and writes dimension.json, whose numbers
    are the library's (recomputed here from the same cache)."""
    import json
    import os
    import subprocess
    import sys

    from evaluation.dimension import summary

    env = dict(os.environ, REG_GUIDANCE_CACHE=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-m", "evaluation.dimension", "--quick", "--out", str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    written = json.loads((tmp_path / "out" / "dimension.json").read_text())
    again = summary(compute(quick=True, cache=tmp_path / "cache"))
    assert written["fields"] == json.loads(json.dumps(again["fields"]))
    assert written["laws"] == json.loads(json.dumps(again["laws"])) and written["dims"] == [1, 64, 4096]


def test_entry_point_refuses_bad_arguments(capsys, tmp_path):
    from evaluation.dimension import main

    for argv, match in ((["--qui"], "unrecognized arguments: --qui"), (["--workers", "0"], "--workers must be >= 1")):
        with pytest.raises(SystemExit) as e:
            main(argv + ["--out", str(tmp_path)])
        assert e.value.code == 2 and match in capsys.readouterr().err


def test_the_studys_cells_are_the_ones_compute_reads(tmp_path, monkeypatch):
    """``cells`` (the figure's hook: paper_plots.py runs every figure's cells in one sweep first) lists exactly the
    cells ``compute`` asks for with the same arguments, so compute afterwards reads every one from the cache."""
    from evaluation import dimension as study
    from evaluation.sweep import run_cells

    kw = dict(dims=[1, 4], abars=[0.3], n_points=6, law_dims=[1], law_steps=5, law_grid=101)
    listed = study.cells(False, **kw)
    assert run_cells(listed, cache=tmp_path, progress=False).computed == len(set(listed))
    seen = []

    def spy(cells, **k):
        run = run_cells(cells, **k)
        seen.append((list(cells), run.computed))
        return run

    monkeypatch.setattr(study, "run_cells", spy)
    study.compute(False, cache=tmp_path, **kw)
    assert seen == [(listed, 0)]
