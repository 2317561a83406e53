"""The findings figures (curves_1d, maps_1d, trained_1d, fields_2d, closed_forms) as cells of evaluation.sweep
(issue 19, items 2 and 4): ``cells(quick)`` names every cell ``compute(quick)`` reads, so after paper_plots' one sweep
a compute computes no cell, and a warm rerun computes none either; each published number carries its error; the cells
refuse bad configurations with the argument's name."""
import math

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from evaluation import findings, sweep  # noqa: E402
from evaluation.findings import ClosedFormCell, CurvesCell, FieldMapCell, TrainedCell  # noqa: E402
from figures import closed_forms, curves_1d, fields_2d, maps_1d, trained_1d  # noqa: E402

FIVE = (curves_1d, maps_1d, trained_1d, fields_2d, closed_forms)


def _clear():
    for f in (curves_1d, trained_1d, fields_2d, closed_forms):
        f.compute.cache_clear()


class Cold:
    """The five figures' quick runs, shrunk, from an empty cache, as paper_plots does them."""

    def __init__(self, cells, first, computed_in_sweep, computed_in_compute, numbers):
        self.cells, self.first, self.numbers = cells, first, numbers
        self.computed_in_sweep, self.computed_in_compute = computed_in_sweep, computed_in_compute


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The five figures' quick configurations shrunk to a few points (real cells, a few CPU seconds in all) on an empty
    cache, run once for the module as paper_plots runs them (one sweep over every figure's cells, then each compute),
    with a count of the cells computed (evaluation.sweep's own compute_cell, which every executor calls)."""
    computed = []
    real = sweep.compute_cell
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(sweep.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
        mp.setitem(curves_1d.POINTS, True, 21)
        mp.setitem(trained_1d.POINTS, True, 21)
        mp.setitem(trained_1d.MC_EVERY, True, 10)
        mp.setattr(trained_1d, "ROLLOUTS", 4)
        mp.setitem(fields_2d.POINTS, True, 5)
        mp.setitem(closed_forms.POINTS, True, 4)
        mp.setattr(sweep, "compute_cell", lambda cell: computed.append(cell) or real(cell))
        _clear()
        cells = [c for f in FIVE for c in f.cells(True)]
        first = sweep.run_cells(cells, progress=False)
        in_sweep = list(computed)
        del computed[:]
        numbers = {f.NAME: f.summary(f.compute(True)) for f in FIVE}
        yield Cold(cells, first, in_sweep, computed, numbers)
        _clear()  # no shrunk arrays are left for other tests


def test_after_the_sweep_compute_reads_the_cache_and_a_warm_rerun_computes_nothing(tiny):
    """paper_plots' order: one run_cells over every figure's cells, then each compute. No compute may compute a
    cell (its cells hook names them all), the shared exact curves are computed once, and a second (warm) round
    computes nothing and gives the same numbers."""
    distinct = len(set(map(sweep.cell_key, tiny.cells)))
    assert tiny.first.computed == distinct == len(tiny.computed_in_sweep)
    assert distinct == 2 + len(fields_2d.PRESETS) * len(fields_2d.LEVELS) + len(closed_forms.WEIGHTS)
    assert len(tiny.cells) > distinct  # curves_1d's cell is shared by three figures, trained_1d's by two
    assert tiny.computed_in_compute == []
    _clear()  # as a new process: nothing in memory, everything on disk
    again = sweep.run_cells(tiny.cells, progress=False)
    assert (again.computed, again.reused) == (0, distinct)
    assert {f.NAME: f.summary(f.compute(True)) for f in FIVE} == tiny.numbers
    assert tiny.computed_in_compute == []


def test_every_published_number_carries_its_error(tiny):
    """Each leaf of the five summaries is {"value", "error"} with a finite error >= 0, and the exact goldens' errors
    are far below the printed digits (4 significant)."""
    for f in FIVE:
        leaves = []

        def walk(d):
            for v in d.values():
                if isinstance(v, dict) and set(v) == {"value", "error"}:
                    leaves.append(v)
                else:
                    assert isinstance(v, dict), (f.NAME, v)
                    walk(v)

        walk(tiny.numbers[f.NAME])
        assert leaves, f.NAME
        for leaf in leaves:
            assert math.isfinite(leaf["error"]) and 0 <= leaf["error"] <= 1e-4 * max(abs(leaf["value"]), 1e-3), \
                (f.NAME, leaf)


def test_errors_are_the_goldens_estimates_carried_through(tiny):
    """The error of a mean gap is the same mean of the golden's error estimate; of a largest gap, the golden's
    largest error estimate; of a weighted 2-D mean, the weighted mean of the error's norm."""
    c = curves_1d.compute(True)
    s = curves_1d.summary(c)
    assert s["mean_abs_gap_chain"]["reg"]["error"] == pytest.approx(np.abs(c.chain_error).mean(), rel=1e-12)
    wt = c.weight / c.weight.sum(1, keepdims=True)
    assert s["mean_abs_gap_ideal_weighted"]["cfg"]["error"] == pytest.approx(
        (np.abs(c.golden_error) * wt).sum(1).mean(), rel=1e-12)
    assert c.chain_error.max() > 0 and c.golden_error.max() > 0  # the engines' estimates, not zeros
    m = maps_1d.summary(maps_1d.compute(True))
    t = trained_1d.compute(True)
    assert m["max_abs_gap_trained"]["cfg"]["error"] == np.abs(t.grid_error).max()
    assert m["max_abs_gap_sampler_chain"]["reg"]["value"] == np.abs(c.chain - c.reg).max()
    f = fields_2d.compute(True)
    p, a = fields_2d.PRESETS[1], fields_2d.LEVELS[0]
    wt2 = f.density[p, a] / f.density[p, a].sum()
    assert fields_2d.summary(f)["weighted_mean_error_norm"][f"{p}@abar={a}"]["reg_vjp"]["error"] == pytest.approx(
        (wt2 * np.linalg.norm(f.golden_error[p, a], axis=-1)).sum(), rel=1e-12)


def test_closed_form_fractions_against_the_precision_by_hand(tiny):  # noqa: ARG001 - the shrunk figures
    """fraction_diverging is the share of grid points where the tilted precision (1+w)/s_c^2 - w/s_u^2 + a/(1-a)
    (THEORY: E_t finite iff it is positive), computed here by hand, is not positive; no sign is undecided here."""
    c = closed_forms.compute(True)
    s = closed_forms.summary(c)
    A, R = np.meshgrid(c.abar, c.ratio)  # [R, A]
    for w in closed_forms.WEIGHTS:
        prec = (1 + w) / (closed_forms.S_U**2 * R) - w / closed_forms.S_U**2 + A / (1 - A)
        assert s[f"w={w}"]["fraction_diverging"] == {"value": float((prec <= 0).mean()), "error": 0.0}
        assert not c.undecided[w].any()


def test_undecided_signs_are_counted_as_the_error(monkeypatch):
    """A weight that puts a grid point on the divergence boundary (the tilted precision 0 within rounding): the cell
    marks it undecided, and the summary's error counts it instead of publishing an exact-looking share."""
    n, s_u = 4, 0.5
    ratio, abar = np.geomspace(0.1, 3.0, n)[-1], np.linspace(0.02, 0.98, n)[0]  # the cell's grid (r > 1 needed)
    # (1+w)/(s_u^2 r) - w/s_u^2 + a/(1-a) = 0 solved for w
    w = (1 / ratio + s_u**2 * abar / (1 - abar)) / (1 - 1 / ratio)
    r = findings.closed_forms(ClosedFormCell(w, 1.0, 0.0, s_u, n))
    assert r.undecided[-1, 0] and r.undecided.sum() == 1
    monkeypatch.setattr(closed_forms, "WEIGHTS", (w,))
    cf = closed_forms.ClosedForms(r.abar, r.ratio, {w: r.log_ratio}, {w: r.diverges}, {w: r.undecided})
    assert closed_forms.summary(cf)[f"w={w}"]["fraction_diverging"]["error"] == 1 / n**2


def test_cells_store_canonical_numbers_so_equal_cells_share_one_key():
    """Review of issue 20: the cells had their own validators (findings._check_finite / _check_count, twins of
    sampler.schedules.check_number / check_count) that refused ``points=60.0`` and ``np.int64(60)`` and stored
    ``w=1`` as an int, so ``CurvesCell(w=1)`` and ``CurvesCell(w=1.0)`` had different cache keys. Now the shared
    validators check each field and the cell stores the canonical type."""
    from evaluation.sweep import cell_key

    pairs = [
        (CurvesCell(w=1, points=np.int64(50)), CurvesCell(w=1.0, points=50)),
        (CurvesCell(w=np.float32(0.5), points=50.0), CurvesCell(w=0.5, points=50)),
        (TrainedCell(w=2, points=60.0, mc_every=np.int32(5), steps=[np.int64(20), 4.0], rollouts=10.0, seed=np.int8(0)),
         TrainedCell(w=2.0, points=60, mc_every=5, steps=(20, 4), rollouts=10, seed=0)),
        (FieldMapCell("classes_2d", w=np.float64(1), abar=torch.tensor(0.5, dtype=torch.float64), points=9.0),
         FieldMapCell("classes_2d", w=1.0, abar=0.5, points=9)),
        (ClosedFormCell(1, 1, 0, np.float32(0.5), np.int64(8)), ClosedFormCell(1.0, 1.0, 0.0, 0.5, 8)),
    ]
    for given, canonical in pairs:
        assert given == canonical and hash(given) == hash(canonical) and cell_key(given) == cell_key(canonical)
        for field, value in vars(canonical).items():
            got = getattr(given, field)
            assert type(got) is type(value), (given, field)
            if isinstance(value, tuple):
                assert all(type(g) is int for g in got), (given, field)


@pytest.mark.parametrize("make, match", [
    (lambda: CurvesCell(w="1"), "w must be a number, got '1'"), (lambda: CurvesCell(w=True), "w must be a number"),
    (lambda: CurvesCell(w=math.inf), "w must be finite"),
    (lambda: CurvesCell(points=2.5), "points must be an integer >= 2"),
    (lambda: CurvesCell(points="50"), "points must be a number"),
    (lambda: TrainedCell(seed=-1), "seed must be a non-negative"),
    (lambda: TrainedCell(seed=True), "seed must be a non-negative"),
    (lambda: TrainedCell(steps=(True,)), "steps must be"),
    (lambda: TrainedCell(steps=20), "steps must be a non-empty tuple"),
    (lambda: TrainedCell(steps=(20.5,)), "steps must be"),
    (lambda: FieldMapCell("classes_2d", abar="0.5"), "abar must be a number"),
    (lambda: ClosedFormCell(mu_c=None), "mu_c must be a single number, got None")])
def test_cells_refuse_what_the_shared_validators_refuse(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("make, name", [
    (lambda: CurvesCell("correlated_2d"), "law"), (lambda: CurvesCell(w=float("nan")), "w"),
    (lambda: CurvesCell(points=1), "points"), (lambda: TrainedCell(steps=(0,)), "steps"),
    (lambda: TrainedCell(rollouts=0), "rollouts"), (lambda: TrainedCell(mc_every=0), "mc_every"),
    (lambda: FieldMapCell("paper_1d"), "law"), (lambda: FieldMapCell("classes_2d", abar=1.0), "abar"),
    (lambda: ClosedFormCell(s_u=0.0), "s_u"), (lambda: ClosedFormCell(points=True), "points"),
    (lambda: CurvesCell("no_such_law"), "law")])
def test_bad_cells_are_refused_with_the_arguments_name(make, name):
    with pytest.raises(ValueError, match=name):
        make()
