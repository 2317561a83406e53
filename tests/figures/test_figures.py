"""Figure compute functions: shapes, determinism, and the numbers in results.json agreeing with the
evaluation API they summarise."""
import json

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from analytic import symbolic  # noqa: E402
from evaluation import demo  # noqa: E402
from figures import FIGURES, closed_forms, curves_1d, fields_2d, outputs, sweeps, trained_1d  # noqa: E402


def test_curves_1d_against_independent_routes():
    """The table equals the arrays' gaps computed here by hand; the golden equals the Gauss-Hermite
    posterior route; REG equals the paper's 1-D rule with a finite-difference derivative of eps_c."""
    import torch

    from analytic import CFGReward, get_preset, optimal_guidance

    c = curves_1d.compute(quick=True)
    assert c.golden.shape == c.cfg.shape == c.reg.shape == c.chain.shape == (20, 301)
    np.testing.assert_allclose(c.weight.sum(1), 1.0)
    s = curves_1d.summary(c)
    np.testing.assert_allclose(s["mean_abs_gap_ideal"]["cfg"]["value"], np.abs(c.golden - c.cfg).mean(), rtol=1e-12)
    np.testing.assert_allclose(s["mean_abs_gap_ideal_weighted"]["reg"]["value"],
                               (np.abs(c.golden - c.reg) * c.weight).sum(1).mean(), rtol=1e-12)
    np.testing.assert_allclose(s["mean_abs_gap_chain"]["cfg"]["value"], np.abs(c.chain - c.cfg).mean(), rtol=1e-12)
    # the table equals evaluation.demo's (the one per-step table, analytic.step_gaps) on the same arrays
    table = demo.errors(demo.Curves(*(torch.as_tensor(getattr(c, k)) for k in demo.Curves._fields)))
    assert s["mean_abs_gap_chain"]["reg"]["value"] == pytest.approx(table.chain.of("reg").mean().item(), rel=1e-12)
    p = get_preset("paper_1d")
    reward = CFGReward(p.cond, p.uncond, 1.0)
    x = torch.as_tensor(c.x[::30, None])
    for i in (4, 14):
        a = float(c.abar[i])
        ref = optimal_guidance(p.cond, reward, x, a, method="gh", tol=1e-10).golden[:, 0].numpy()
        np.testing.assert_allclose(c.golden[i, ::30], ref, atol=1e-8)
        assert np.all(np.abs(c.golden[i, ::30] - ref) <= c.golden_error[i, ::30] + 1e-10)  # within its estimate
        h = 1e-6
        d_eps = ((p.cond.eps(x + h, a) - p.cond.eps(x - h, a)) / (2 * h))[:, 0].numpy()
        np.testing.assert_allclose(c.reg[i, ::30], c.cfg[i, ::30] * (1 - np.sqrt(1 - a) * d_eps), atol=1e-7)
    assert s["mean_abs_gap_ideal"]["reg"]["value"] < s["mean_abs_gap_ideal"]["cfg"]["value"]
    assert 0 < s["mean_abs_gap_chain"]["cfg"]["error"] < 1e-6  # the chain golden's estimate, below the digits shown


def test_closed_forms_match_symbolic_and_are_deterministic():
    """The figure's arrays (read from its cached cells) equal a fresh computation of a cell bit for bit, and the
    closed forms point by point."""
    from evaluation.sweep import compute_cell

    a = closed_forms.compute(quick=True)
    cell = closed_forms.cells(True)[closed_forms.WEIGHTS.index(1.0)]
    b = compute_cell(cell)  # computed here, not read from the cache
    np.testing.assert_array_equal(a.log_ratio[cell.w], b.log_ratio)
    np.testing.assert_array_equal(a.diverges[cell.w], b.diverges)
    i, j, w = 3, 7, 1.0
    g = symbolic.gap_summary(a.abar[j], 1.0, closed_forms.S_U * np.sqrt(a.ratio[i]), 0.0, closed_forms.S_U, w)
    np.testing.assert_allclose(a.log_ratio[w][i, j], np.log10(float(g.rel_gap_reg) / float(g.rel_gap_cfg)))
    # the derived boundary: REG better at every level below r = (1+w)/(2+w)
    below = a.ratio < (1 + w) / (2 + w)
    assert np.all(a.log_ratio[w][below][~a.diverges[w][below]] < 0)


@pytest.mark.slow
def test_fields_2d_compute_and_summary():
    f = fields_2d.compute(quick=True)
    key = ("correlated_2d", 0.82, "golden")
    assert f.fields[key].shape == (25, 25, 2)
    s = fields_2d.summary(f)["weighted_mean_error_norm"]
    assert set(s) == {f"{p}@abar={a}" for p in fields_2d.PRESETS for a in fields_2d.LEVELS}
    assert all(0 <= v["error"] < 1e-6 for case in s.values() for v in case.values())


def test_paper_plots_writes_figures_and_results(tmp_path):
    import paper_plots

    paper_plots.main(["--quick", "--only", "maps_1d", "--out", str(tmp_path), "--workers", "1"])  # no pool for 2 cells
    assert (tmp_path / "maps_1d.png").stat().st_size > 0 and (tmp_path / "maps_1d.pdf").stat().st_size > 0
    res = json.loads((tmp_path / "results.json").read_text())
    numbers = res["figures"]["maps_1d"]["numbers"]
    c = curves_1d.compute(quick=True)
    assert numbers["max_abs_gap_ideal"]["cfg"] == {"value": pytest.approx(float(np.abs(c.golden - c.cfg).max())),
                                                  "error": pytest.approx(float(np.abs(c.golden_error).max()))}
    t = trained_1d.compute(quick=True)
    assert numbers["max_abs_gap_trained"]["reg"]["value"] == pytest.approx(float(np.abs(t.grid_golden - t.reg).max()))
    assert "maps_1d" in (tmp_path / "results.md").read_text()
    assert set(FIGURES) >= {"curves_1d", "maps_1d", "fields_2d", "closed_forms"}


def test_trained_1d_uses_the_shipped_networks_and_agrees_with_the_exact_chain():
    c = trained_1d.compute(quick=True)
    s = trained_1d.summary(c)
    assert c.grid_golden.shape == c.cfg.shape == (20, 301)
    assert c.mc_golden.shape == (len(trained_1d.STEPS), c.mc_x.size)
    # the trained chain's golden is close to the exact mixture's (networks are good, not perfect)
    assert s["trained_vs_exact_chain_golden_mean_abs"]["value"] < 0.1
    # Monte Carlo with 100 rollouts scatters around the exact grid recursion of the same network
    assert s["mc_vs_grid_golden_mean_abs"]["value"] < 0.15
    # the errors are the exact goldens' quadrature estimates (the networks' terms are measurements: no error)
    assert s["trained_mean_abs_gap_chain"]["cfg"]["error"] == pytest.approx(np.abs(c.grid_error).mean())
    assert 0 < s["trained_vs_exact_chain_golden_mean_abs"]["error"] < 1e-5


@pytest.mark.slow
def test_sweeps_and_outputs_are_the_ledgers_cells_and_agree():
    """Both figures read cells of the claims ledger (OutputCell / FieldCell), so the same CFG law is one number:
    the sweep at w = 1 and the output figure agree within their errors; REG lowers the field error of constant-weight
    CFG at every weight (the paper's claim, exact here)."""
    s = sweeps.compute(quick=True)
    assert all(v.shape == (len(s.weights),) for v in s.tv.values())
    o = outputs.compute(quick=True)
    cfg = sweeps.FAMILIES[0]
    i = s.weights.index(1.0)
    for reg, m in ((False, "cfg"), (True, "reg")):
        assert abs(s.tv[cfg, reg][i] - o.tv[1.0, m]) <= s.tv_error[cfg, reg][i] + o.tv_error[1.0, m]
    assert np.all(s.field[cfg, True] < s.field[cfg, False])
    assert o.tv[1.0, "optimal"] < 0.05 < o.tv[1.0, "cfg"]


def test_sweeps_summary_publishes_every_measurement_with_its_error():
    """Per method, TV, KL and the weighted field error are ``{"value", "error"}`` leaves (an unknown error, nan, is
    published as inf, never dropped) and the weight is a setting; the docs print each at its precision."""
    from evaluation import docs
    from tests.test_docs import check_findings

    ws = sweeps.weights(True)
    keys = [(f, r) for f in sweeps.FAMILIES for r in (False, True)]
    grid = {k: np.linspace(0.1, 0.4, len(ws)) + 0.01 * i for i, k in enumerate(keys)}
    err = {k: np.full(len(ws), 1e-7) for k in keys}
    field_err = dict(err)
    field_err[keys[0]] = np.full(len(ws), np.nan)
    s = sweeps.Sweeps(ws, grid, grid, grid, err, err, field_err)
    out = sweeps.summary(s)["best_per_method"]
    assert len(out) == len(keys)
    for label, row in out.items():
        assert set(row) == {"best_w_by_tv", "tv", "kl_target_out", "field_error_weighted"}
        assert row["best_w_by_tv"] in ws
        for k in ("tv", "kl_target_out", "field_error_weighted"):
            assert set(row[k]) == {"value", "error"}
    first = next(iter(out.values()))  # the first family without REG: its field errors' errors were nan
    assert first["field_error_weighted"]["error"] == float("inf")
    assert all(row["field_error_weighted"]["error"] == 1e-7 for row in list(out.values())[1:])
    results = {"figures": {"sweeps": {"caption": sweeps.CAPTION, "numbers": sweeps.summary(s)}}}
    assert check_findings(docs.render_findings(results), results) == 4 * len(keys)


def test_dimension_figure_draws_the_study_and_its_summary_is_the_studys(tmp_path):
    """figures.dimension only draws evaluation.dimension (tested against independent routes in
    tests/evaluation/test_dimension.py): on a tiny study the plot is written, the summary is the study's, and the
    figure is registered for ``paper_plots.py --only dimension``."""
    from evaluation import dimension as study
    from figures import dimension

    r = study.compute(dims=[1, 4], abars=[0.3], n_points=6, law_dims=[1, 4], law_steps=10, law_grid=201, law_tol=5e-3)
    paths = dimension.plot(r, tmp_path)
    assert [p.name for p in paths] == ["dimension.png", "dimension.pdf"] and all(p.stat().st_size > 0 for p in paths)
    s = dimension.summary(r)
    assert s == study.summary(r)
    row = s["fields"]["sqrt_d/unequal/random"]
    i = study.METHODS.index("cfg")
    cfg = r.err[1, 1, 1, :, :, i]  # sqrt_d, unequal, random: [D, L]
    assert [row["cfg_err_first_d"]["value"], row["cfg_err_last_d"]["value"]] == pytest.approx([cfg[0].mean(),
                                                                                               cfg[-1].mean()])
    assert FIGURES["dimension"] is dimension
    # what paper_plots.py digests to keep the files: the study less its run time (which differs on every run)
    import dataclasses
    import pickle

    again = dataclasses.replace(r, seconds=r.seconds + 1.0)
    assert pickle.dumps(dimension.fingerprint(again)) == pickle.dumps(dimension.fingerprint(r))
    assert pickle.dumps(dimension.fingerprint(dataclasses.replace(r, dims=r.dims[:1]))) != \
        pickle.dumps(dimension.fingerprint(r))


@pytest.mark.slow
def test_paper_plots_only_dimension_quick(tmp_path):
    import paper_plots
    from figures import dimension

    paper_plots.main(["--quick", "--only", "dimension", "--out", str(tmp_path)])
    assert (tmp_path / "dimension.png").stat().st_size > 0
    numbers = json.loads((tmp_path / "results.json").read_text())["figures"]["dimension"]["numbers"]
    s = dimension.summary(dimension.compute(quick=True))
    assert numbers["fields"]["fixed/equal/random"]["cfg,reg=paper"]["closer"] == \
        pytest.approx(s["fields"]["fixed/equal/random"]["cfg,reg=paper"]["closer"])
