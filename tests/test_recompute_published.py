"""benchmarks/recompute_published.py (issue 19, "independent recomputations of a sample of the published numbers
agree to that precision"): on a tiny cache of real cheap cells it finds agreement by both routes, and a number
tampered with in a copy of the cache (stored through the cache's own writer, so its digest is valid) is reported as
a disagreement; a missing or empty cache is a clear error."""
import importlib.util
import shutil
from pathlib import Path

import pytest

from evaluation.claims.cells import OutputCell
from evaluation.spec import Method
from evaluation.sweep import Cache, run_cells

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("recompute_published", ROOT / "benchmarks" / "recompute_published.py")
rp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rp)

# two cheap converged 1-D cells (10 DDPM steps, tol 5e-3: a fraction of a second each, refined in about one)
CELLS = [OutputCell("paper_1d", "standard:10", Method("cfg", 1.0), grid=(-5.0, 5.0, 101), tol=5e-3),
         OutputCell("paper_1d", "standard:10", Method("cfg", 2.0), grid=(-5.0, 5.0, 101), tol=5e-3)]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    run_cells(CELLS, cache=root, progress=False)
    return root


def _run(root, **kw):
    return rp.recompute(root, per_kind=2, seed=0, isolate=False, progress=False, mc_seconds=1.0, **kw)


def _by(rows, number, route):
    return [r for r in rows if r.number == number and r.route.startswith(route)]


def test_real_cells_agree_by_the_refined_and_the_monte_carlo_routes(cache_dir):
    rows, line = _run(cache_dir)
    assert len({r.cell for r in rows}) == 2  # both cells drawn (one stratum: OutputCell, d = 1)
    tv = _by(rows, "tv", "refined")
    assert len(tv) == 2 and all(r.agree == "yes" and r.reference != r.published for r in tv)  # a real refinement
    mc = [r for r in rows if r.route.startswith("monte-carlo")]
    assert {"mean (unchecked)", "confidence (unchecked)", "var (grid law)"} <= {r.number for r in mc}
    assert sum(r.number.startswith("P[") for r in mc) >= 4
    # every number the cells' contract checks, and every Monte Carlo comparison, agrees (numbers a cell stores with
    # the engines' own estimate but does not check are marked "unchecked" and may not: they are findings)
    checked = [r for r in rows if not r.agree.startswith("skipped") and not r.number.endswith("(unchecked)")]
    assert len(checked) >= 10 and all(r.agree == "yes" for r in checked), [r for r in checked if r.agree == "NO"]
    assert rp.table(rows, line, cache_dir).rstrip().endswith(line)


def test_a_tampered_number_is_reported_as_a_disagreement(cache_dir, tmp_path):
    copy = tmp_path / "tampered"
    shutil.copytree(cache_dir, copy)
    cache = Cache(copy)
    hit, result = cache.load(CELLS[0])
    assert hit
    cache.store(CELLS[0], result._replace(tv=result.tv + 0.05, mean=(result.mean[0] + 0.05,)))  # a wrong engine
    rows, line = _run(copy)
    bad = {(r.number, r.route.split()[0]) for r in rows if r.agree == "NO"}
    assert ("tv", "refined") in bad and ("mean (unchecked)", "monte-carlo") in bad, bad
    # the other cell's checked numbers still agree
    assert all(r.cell == rp.summary(CELLS[0]) for r in rows if r.agree == "NO" and not r.number.endswith("(unchecked)"))
    assert f" {len([r for r in rows if r.agree == 'NO'])} disagreed" in line


def test_the_sample_is_seeded_and_stratified(cache_dir):
    entries, left = rp.read_cache(cache_dir)
    assert len(entries) == 2 and not left
    assert [e.key for e in rp.draw(entries, 1, 3)] == [e.key for e in rp.draw(entries, 1, 3)]
    assert len(rp.draw(entries, 1, 3)) == 1 and len(rp.draw(entries, 5, 3)) == 2
    assert len(rp.draw(entries, 5, 3, ("OutputCell",))) == 2 and rp.draw(entries, 5, 3, ("LawCell",)) == []
    with pytest.raises(ValueError, match="--kinds.*claims.cells:OutputCell"):
        rp.recompute(cache_dir, kinds=("LawCell",), isolate=False, progress=False)


def test_a_missing_or_empty_cache_is_a_clear_error(tmp_path, capsys):
    for folder in (tmp_path / "none", tmp_path):
        with pytest.raises(SystemExit) as e:
            rp.main(["--cache", str(folder), "--out", str(tmp_path / "out.txt")])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "--cache" in err and str(folder) in err and ("not a folder" in err or "no cell results" in err)
    with pytest.raises(SystemExit):
        rp.main(["--cache", str(tmp_path), "--per-kind", "0"])
    assert not (tmp_path / "out.txt").exists()


# --- route (d): the field claims' weighted means by Gauss-Legendre panels ------------------------------------------
def _field_rows(cell, tamper):
    """The route's rows for a small real cell whose ``tamper`` fields were made wrong (2 % and 1e-3 off)."""
    from evaluation.sweep import compute_cell

    result = compute_cell(cell)
    result = result._replace(**{k: getattr(result, k) * 1.02 + 1e-3 for k in tamper})
    entry = rp.Entry("k", cell, result)
    nums, _ = rp.converged_numbers(entry)
    return rp.field_rows(entry, nums, deadline=float("inf"))


def _field_check(rows, names, tampered):
    for name in names:
        got = [r for r in rows if r.number.startswith(name + "[")]
        assert got, (name, rows)
        want = "NO" if name in tampered else "yes"
        assert all(r.agree == want and r.route.startswith("gauss-legendre") for r in got), got


def test_linear_cfg_means_by_panels_agree_and_a_wrong_one_does_not():
    from evaluation.claims.linear_cfg import LinearCell

    rows, rest = _field_rows(LinearCell("paper_1d", "standard:6", 201), tamper=("size",))
    assert not rest and {r.number.split("[")[0] for r in rows} == {"rel", "size", "tail_mass"}
    _field_check(rows, ("rel", "size"), ("size",))


def test_box_tail_is_the_normal_tail():
    from scipy.special import ndtr

    from analytic import GaussianMixture

    one = GaussianMixture([1.0], [[0.5]], [[[0.25]]])
    assert rp._box_tail(one, [(-1.0, 2.0)], 1.0) == pytest.approx(ndtr(-3.0) * 2, rel=1e-12)
    two = GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 0.0], [0.0, 4.0]]])
    inside = (1 - 2 * ndtr(-2.0)) * (1 - 2 * ndtr(-1.0))
    assert rp._box_tail(two, [(-2.0, 2.0), (-2.0, 2.0)], 1.0) == pytest.approx(1 - inside, rel=1e-10)


def test_renyi_means_by_panels_agree_and_a_wrong_one_does_not():
    from evaluation.claims.cfgig import RenyiCell

    rows, rest = _field_rows(RenyiCell("paper_1d", "lin:20:0.007", 1.0, (-1.0, 2.0, 61), 3), tamper=("missing",))
    _field_check(rows, ("missing", "reg_gap", "cfg_size", "opposes"), ("missing",))
    assert [r.route for r in rows if r.number == "identity_error"] == ["closed form: the identity is exact"]


@pytest.mark.slow
def test_characteristic_gaps_by_newton_and_panels_agree_and_a_wrong_one_does_not():
    from evaluation.claims.characteristic import CharCell

    rows, rest = _field_rows(CharCell("paper_1d", 1.0, "lin:20:0.007", 3, (-1.0, 2.0, 61)), tamper=("char_gap",))
    _field_check(rows, ("char_gap", "cfg_gap", "reg_gap", "cfg_size"), ("char_gap",))
    assert all(r.agree.startswith("skipped: the mass where the cell's own") for r in rows
               if r.number.startswith("unconverged"))


def test_characteristic_newton_converges_at_high_noise_to_the_closed_form():
    """Single Gaussians: the fixed point is linear, Delta = -g(0) / ((1 + w) k_u - w k_c) with k = v / (v + s^2); at
    high noise Delta reaches ~4e3 and the residual's rounding (~4e-12) exceeds NEWTON_TOL (the route used to miss
    there on most of the weight, session 13's two NOs on single:1.5)."""
    import math

    import torch

    from evaluation.claims.reg_map import single
    from evaluation.spec import Law

    mu_c, s_c, mu_u, s_u = (float(v) for v in single(1.5).split(":")[1:])
    parts, w, a = Law.parse(single(1.5)).build(), 1.0, 0.002090774532806172  # CharCell's level 16 of 20
    X = torch.linspace(-1.0, 2.0, 301, dtype=torch.float64)[:, None]
    term, error, ok = rp._newton_characteristic(parts, w, X, a)
    s, x = math.sqrt((1 - a) / a), X / math.sqrt(a)
    k_c, k_u = s_c**2 / (s_c**2 + s**2), s_u**2 / (s_u**2 + s**2)
    g0 = mu_u + k_u * (x - mu_u) - mu_c - k_c * (x - mu_c)
    delta = -g0 / ((1 + w) * k_u - w * k_c)
    assert bool(ok.all()) and delta.abs().max() > 1e3
    exact = -k_c * w * delta / s
    assert torch.allclose(term, exact, rtol=0, atol=1e-10)
    assert bool((error <= 1e-10).all())


def test_characteristic_means_are_skipped_where_either_solver_missed_points():
    import numpy as np

    class Res:
        unconverged = np.array([0.0, 2e-3])

    assert rp._apart_from_the_cell(None, Res, 1) == ""  # not a CharCell
    assert rp._apart_from_the_cell((0.0, 0.0), Res, 0) == ""
    assert rp._apart_from_the_cell((1e-3, 0.0), Res, 0).startswith("the route's Newton missed part of the weight")
    assert rp._apart_from_the_cell((0.0, 0.0), Res, 1).startswith("the cell's mean leaves out")


def test_claims_field_errors_by_gauss_hermite_agree_and_a_wrong_one_does_not():
    from evaluation.claims.cells import FieldCell
    from evaluation.sweep import compute_cell

    cell = FieldCell("paper_1d", "lin:20:0.0001", Method("cfg", 1.0, reg="paper"), (-1.0, 2.0, 61), 3)
    result = compute_cell(cell)
    for bad, want in ((0.0, "yes"), (1e-6, "NO")):
        entry = rp.Entry("k", cell, result._replace(mean_error_weighted=result.mean_error_weighted + bad))
        rows, rest = rp.claims_field_rows(entry, rp.converged_numbers(entry)[0], deadline=float("inf"))
        got = {r.number: r.agree for r in rows}
        assert got == {"mean_error": "yes", "mean_error_weighted": want}, rows


def test_a_monte_carlo_cell_reseeded_agrees_and_a_wrong_number_does_not():
    from evaluation.inverse import InverseCell
    from evaluation.sweep import compute_cell

    cell = InverseCell("paper_1d", ((1.0,),), (0.5,), 0.2, levels=2, n=64)
    result = compute_cell(cell)
    runner = rp.Runner(60.0, 0.0, isolate=False)
    for shift, want in ((0.0, "yes"), (1.0, "NO")):
        entry = rp.Entry("k", cell, result._replace(log_gap=result.log_gap + shift))
        rows, rest = rp.reseeded_rows(entry, rp.converged_numbers(entry)[0], runner)
        assert not rest and {r.number.split("[")[0] for r in rows} >= {"log_gap", "field"}
        assert all(r.route.startswith("reseeded (seed 1)") for r in rows)
        # (the field errors' RMS at sigma 0.01 is heavy-tailed: at n = 64 its standard error is itself rough)
        assert {r.agree for r in rows if r.number.startswith("log_gap")} == {want}, rows


def test_a_cell_without_tol_at_a_finer_resolution_agrees_and_a_wrong_number_does_not():
    from evaluation.flows import CapCell
    from evaluation.spec import Law
    from evaluation.sweep import compute_cell

    cell = CapCell(Law.parse("paper_1d"), 1.0, 10, 7.0, 201, 4)
    result = compute_cell(cell)
    runner = rp.Runner(60.0, 0.0, isolate=False)
    for shift, want in ((0.0, "yes"), (1e-3, "NO")):
        entry = rp.Entry("k", cell, result._replace(tv=result.tv + shift))
        rows, rest = rp.finer_rows(entry, rp.converged_numbers(entry)[0], runner)
        assert not rest and [(r.number, r.route, r.agree) for r in rows] == [
            ("tv", "refined points=401 (the same formula)", want)], rows


# --- route (h): RescaleCell's ratio exactly, in reduced coordinates --------------------------------------------------
def test_rescale_ratio_against_monte_carlo_agrees_and_a_wrong_one_does_not():
    """d = 4, one level: the cell's exact ratio (quadrature, rtol 1e-3) against guidance rescale on 2^12 draws in R^4
    (standard error ~2 %): agreement within 4 standard errors (rel and factor_dev); rel moved by twice the bound is
    a NO."""
    from evaluation.claims.flawed_schedules import RescaleCell
    from evaluation.sweep import compute_cell

    cell = RescaleCell(4, levels=(0.5,), rtol=1e-3)
    result = compute_cell(cell)
    entry = rp.Entry("k", cell, result)
    rows, rest = rp.rescale_rows(entry, rp.converged_numbers(entry)[0], deadline=float("inf"), draws=2**12)
    assert not rest and [(r.number, r.agree) for r in rows] == [("rel[0]", "yes"), ("factor_dev[0]", "yes")], rows
    assert rows[0].route.startswith("monte-carlo N=4096") and 0 < rows[0].reference_error < 0.1 * rows[0].published
    shift = 2 * (rows[0].published_error + rows[0].reference_error)
    bad = rp.Entry("k", cell, result._replace(rel=result.rel + shift))
    rows, _ = rp.rescale_rows(bad, rp.converged_numbers(bad)[0], deadline=float("inf"), draws=2**12)
    assert [(r.number, r.agree) for r in rows] == [("rel[0]", "NO"), ("factor_dev[0]", "yes")], rows


def test_rescale_ratio_is_infinite_at_d_2_by_the_tail_index():
    """d = 2: the published inf is kept (not dropped as non-finite) and agreed only by the divergence test (Hill's
    tail index of the draws within 4 standard errors of <= 1); the old finite Monte Carlo value is a NO there; and
    _agree never agrees with an infinite number (inf - inf is NaN; inf <= inf no agreement)."""
    import numpy as np

    from evaluation.claims.flawed_schedules import RescaleCell
    from evaluation.sweep import compute_cell

    cell = RescaleCell(2, levels=(0.5,))
    result = compute_cell(cell)
    for rel, want in ((float("inf"), "yes"), (0.68, "NO")):
        entry = rp.Entry("k", cell, result._replace(rel=np.array([rel])))
        nums = rp.converged_numbers(entry)[0]
        assert [(n.name, n.value) for n in nums] == [("rel[0]", rel), ("factor_dev[0]", float("inf"))]
        rows, rest = rp.rescale_rows(entry, nums, deadline=float("inf"), draws=2**14)
        assert not rest and [(r.number, r.reference, r.agree) for r in rows] == [
            ("rel[0]", float("inf"), want), ("factor_dev[0]", float("inf"), "yes")], rows
        assert all("Hill tail index" in r.route and "infinite mean" in r.route for r in rows)
    assert "inf" in rp.table(rows, "", Path("c")).splitlines()[-4]
    inf = float("inf")
    assert rp._agree(inf, 0.0, inf, 0.0) == rp._agree(1.0, 0.0, inf, 0.0) == rp._agree(inf, 0.0, 1.0, 1.0) == "NO"
    # a finite-mean tail (d = 4: index ~3 or more) refutes an infinite published rel
    four = RescaleCell(4, levels=(0.5,))
    entry = rp.Entry("k", four, result._replace(rel=np.array([inf]), factor_dev=np.array([0.2])))
    rows, _ = rp.rescale_rows(entry, rp.converged_numbers(entry)[0], deadline=float("inf"), draws=2**14)
    assert rows[0].number == "rel[0]" and rows[0].agree == "NO" and "above 1 by 4 SE: finite mean" in rows[0].route, rows
    assert 0 < rows[0].reference < 1  # the Monte Carlo ratio, a finite mean


# --- route (i): CurvesCell's chain golden by a spline recursion, its closed-form curves by autograd ----------------
@pytest.fixture(scope="module")
def curves_cell():
    from evaluation.findings import CurvesCell
    from evaluation.sweep import compute_cell

    cell = CurvesCell("paper_1d", 1.0, 3)  # the paper's 20 steps at 3 points
    return cell, compute_cell(cell)


def test_curves_chain_by_spline_recursion_and_closed_forms_by_autograd_agree_and_wrong_ones_do_not(curves_cell):
    cell, result = curves_cell
    runs = ((8e-3, 20), (4e-3, 30))  # coarser than the script's: its error ~1e-8, still below the chain's 4e-8
    for bad, want in ((0.0, "yes"), (1.0, "NO")):  # 1e-6 on the chain (its error 4e-8), 1e-11 on the closed forms
        entry = rp.Entry("k", cell, result._replace(chain=result.chain + 1e-6 * bad, cfg=result.cfg + 1e-11 * bad,
                                                     reg=result.reg - 1e-11 * bad,
                                                     weight=result.weight * (1 + 1e-10 * bad)))
        nums = [n for n in rp.converged_numbers(entry)[0] if n.name.startswith("chain[")]
        rows, rest = rp.curves_rows(entry, nums, deadline=float("inf"), runs=runs)
        assert not rest
        got = {(r.number.split("[")[0], r.route.split()[0], r.agree) for r in rows}
        assert got == {("chain", "spline", want), ("cfg", "autograd", want), ("reg", "autograd", want),
                       ("weight", "scipy", want)}, rows
        assert len(rows) == 4 * rp.MAX_ELEMENTS
    chain = [r for r in rows if r.number.startswith("chain")]
    assert all(r.reference_error < 3e-8 for r in chain), chain  # a real second value, not a vacuous bound
