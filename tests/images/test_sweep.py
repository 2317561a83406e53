"""The digits sweep: weight schedules, a miniature sweep end to end (rows, statistics, table, CSV, the
Pareto figure's arrays and file)."""
import math

import pytest
import torch

pytest.importorskip("sklearn")

from images.classifier import load_classifier  # noqa: E402
from images.data import load_digits_split  # noqa: E402
from images.metrics import DigitsEvaluator  # noqa: E402
from images.run import main as run_main  # noqa: E402
from images.sweep import METHODS, SweepConfig, compute, reference_images  # noqa: E402
from images.sweep_stats import best_per_method, best_vs_best, markdown_table, read_csv, summarize, write_csv  # noqa: E402
from images.train import DEFAULT_CHECKPOINT, WEAK_CHECKPOINT, load_model  # noqa: E402
from sampler import REG, bind, sampling_levels  # noqa: E402
from sampler.method import Method  # noqa: E402


def test_weight_schedules_of_the_methods():
    """The default methods' weights: constant; the ramps 0 at sigma = 10 (and above) to 2w at 0, averaging w over
    [0, 10]; the interval w on [0.3, 3] only."""
    sig = torch.tensor([80.0, 20.0, 5.0, 1.0, 0.1, 0.0])
    weight = {m: Method.parse(m).replace(w=1.5).weight(sig) for m in METHODS}
    assert weight["cfg"](3.0) == 1.5 and weight["autog"](100.0) == 1.5
    for m in ("cfg,weighting=linear,lo=0,hi=10", "cfg,weighting=cosine,hi=10"):
        f = weight[m]
        assert f(10.0) == pytest.approx(0.0) and f(50.0) == pytest.approx(0.0)
        assert f(0.0) == pytest.approx(3.0)
        grid = torch.linspace(0, 10.0, 2001)
        assert sum(f(float(v)) for v in grid) / len(grid) == pytest.approx(1.5, rel=1e-2)
    f = weight["cfg,weighting=interval,lo=0.3,hi=3"]
    assert f(1.65) == 1.5 and f(0.15) == 0.0 and f(6.0) == 0.0


@pytest.mark.parametrize("bad, match", [(dict(methods=("pag",)), "rule"), (dict(methods=("vanilla",)), "rule"),
                                        (dict(methods=("cfg,w=2",)), "must not set w"),
                                        (dict(methods=("cfg,reg=vjp",)), "must not set w or reg"),
                                        (dict(methods=("optimal",)), "not swept"), (dict(methods=("cfg", "cfg,w=1")), "distinct"),
                                        (dict(regs=("none",)), "REG estimator"), (dict(regs=("exact",)), "REG estimator"),
                                        (dict(weights=(0.0,)), "weights"), (dict(samplers=("rk4",)), "sampler"),
                                        (dict(n_samples=5), "n_samples"), (dict(seeds=()), "seeds"),
                                        (dict(samplers=("euler",)), "step count")])
def test_config_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        SweepConfig(**bad)


def test_config_keeps_canonical_spellings_and_runs():
    cfg = SweepConfig(methods=("cfg,w=1", "autog,hi=5,weighting=interval"), regs=("paper",), weights=(0.5, 2))
    assert cfg.methods == ("cfg", "autog,weighting=interval,hi=5")
    runs = cfg.runs()
    assert runs[0] == Method("unguided", w=0.0) and len(runs) == 1 + 2 * 2 * 2
    assert Method.parse("autog,w=2,weighting=interval,hi=5,reg=paper") in runs


@pytest.fixture(scope="module")
def mini():
    data = load_digits_split()
    ev = DigitsEvaluator(load_classifier(), data.test_x)
    model, weak = load_model(DEFAULT_CHECKPOINT), load_model(WEAK_CHECKPOINT)
    cfg = SweepConfig(methods=("cfg", "cfg,weighting=interval,lo=0.5,hi=3", "autog"), regs=("paper",), weights=(1.0,),
                      steps=(("ddpm", 3), ("heun", 3)), seeds=(0, 1), n_samples=20)
    res = compute(model, weak, ev, cfg, reference_train=data.train_x[:20], progress=False)
    return cfg, res, model, weak


def test_mini_sweep_end_to_end(mini, tmp_path):
    cfg, res, model, weak = mini
    assert len(res.rows) == cfg.n_runs() == 2 * 2 * (1 + 3 * 2 * 1)
    for r in res.rows:
        assert math.isfinite(r.fd) and 1 <= r.score <= 10 and 0 <= r.accuracy <= 1
    assert math.isfinite(res.reference.fd)
    by = {(r.sampler, r.seed, r.method, r.reg): r for r in res.rows}
    # REG changes the result; the seeds differ
    assert by[("ddpm", 0, "cfg", "paper")].fd != by[("ddpm", 0, "cfg", "")].fd
    assert by[("ddpm", 0, "unguided", "")].fd != by[("ddpm", 1, "unguided", "")].fd
    summ = summarize(res)
    assert {s.n_seeds for s in summ} == {2}
    paper = [s for s in summ if s.reg == "paper" and s.method == "cfg" and s.sampler == "ddpm"][0]
    want = [by[("ddpm", k, "cfg", "paper")].fd - by[("ddpm", k, "cfg", "")].fd for k in (0, 1)]
    assert paper.d_fd == pytest.approx(sum(want) / 2)
    assert len(best_per_method(summ)) == 2 * (1 + 3 * 2)
    table = markdown_table(res)
    for m in ("unguided",) + tuple(cfg.methods):
        assert f"| {m} |" in table
    assert "| cfg | paper |" in table and "| cfg | – |" in table
    assert "not comparable to ImageNet" in table
    # best against best: one weight per method here, so it is the paired difference at that weight
    bvb = best_vs_best(res)
    assert bvb[("ddpm", "cfg", "paper")][0] == pytest.approx(sum(want) / 2)
    with pytest.raises(ValueError, match="against"):
        best_vs_best(res, "cfg")
    # the CSV round trip is exact, and re-tabulating from it gives the same table
    path = write_csv(res, tmp_path / "rows.csv")
    assert read_csv(path) == res.rows
    assert markdown_table(res._replace(rows=read_csv(path))) == table


def test_pareto_figure_reads_the_sweep(mini, tmp_path):
    """figures.digits_pareto: the arrays are the seed means of the rows (no sampling), and it draws them."""
    import matplotlib

    matplotlib.use("Agg")
    from figures import digits_pareto

    cfg, res, model, weak = mini
    c = digits_pareto.from_result(res)
    by = {(r.sampler, r.seed, r.method, r.reg): r for r in res.rows}
    cur = c.curves[("heun", "autog", "paper")]
    assert cur.w.tolist() == [1.0]
    assert cur.fd[0] == pytest.approx(sum(by[("heun", k, "autog", "paper")].fd for k in (0, 1)) / 2)
    assert cur.score[0] == pytest.approx(sum(by[("heun", k, "autog", "paper")].score for k in (0, 1)) / 2)
    assert c.unguided["ddpm"][1] == pytest.approx(sum(by[("ddpm", k, "unguided", "")].fd for k in (0, 1)) / 2)
    assert set(c.curves) == {(s, m, e) for s in cfg.samplers for m in cfg.methods for e in ("",) + cfg.regs}
    best = digits_pareto.summary(c)["best_fd"]
    assert best["ddpm/cfg"]["fd"] == pytest.approx(c.curves[("ddpm", "cfg", "")].fd.min())
    assert best["heun/autog,reg=paper"]["fd"] == pytest.approx(cur.fd.min())
    paths = digits_pareto.plot(c, tmp_path)
    assert [p.name for p in paths] == ["digits_pareto.png", "digits_pareto.pdf"] and paths[0].stat().st_size > 10_000
    with pytest.raises(ValueError, match="SweepResult"):
        digits_pareto.from_result(res.rows)


def test_reference_images_are_a_seeded_draw_of_training_digits():
    data = load_digits_split()
    a, b = reference_images(data, 50), reference_images(data, 50)
    assert torch.equal(a, b) and not torch.equal(a, reference_images(data, 50, seed=1))
    rows = {tuple(r.flatten().tolist()) for r in data.train_x}
    assert all(tuple(r.flatten().tolist()) in rows for r in a) and len({tuple(r.flatten().tolist()) for r in a}) == 50
    with pytest.raises(ValueError, match="n must"):
        reference_images(data, 0)


def test_mini_sweep_is_reproducible(mini):
    cfg, res, model, weak = mini
    data = load_digits_split()
    ev = DigitsEvaluator(load_classifier(), data.test_x)
    one = SweepConfig(methods=("cfg",), regs=("paper",), weights=(1.0,), samplers=("ddpm",),
                      steps=(("ddpm", 3),), seeds=(1,), n_samples=20)
    again = compute(model, weak, ev, one, progress=False).rows
    first = {(r.sampler, r.seed, r.method, r.reg, r.w): r.fd for r in res.rows}
    assert len(again) == 1 + 2  # unguided, cfg, cfg + REG (paper)
    for r in again:
        assert r.fd == pytest.approx(first[(r.sampler, r.seed, r.method, r.reg, r.w)], rel=1e-9)


def test_sweep_methods_build_on_the_network(mini):
    """The sweep's guidance is Method.guide over the network's branches: autog + REG is REG over AutoG, and a
    sweep with autog and no weak model fails before sampling."""
    cfg, res, model, weak = mini
    sig = sampling_levels(model.schedule, "ddpm", 3)
    labels = torch.arange(4) % 10
    g = Method.parse("autog,reg=vjp").guide(bind(model, labels), bind(model, None), sig, weak=bind(weak, labels))
    assert isinstance(g, REG) and g.estimator == "vjp"
    data = load_digits_split()
    with pytest.raises(ValueError, match="weak"):
        compute(model, None, DigitsEvaluator(load_classifier(), data.test_x), cfg, progress=False)


def test_run_needs_an_action():
    with pytest.raises(SystemExit):
        run_main([])


@pytest.mark.slow
def test_run_entry_point_writes_plot_and_table(tmp_path):
    run_main(["--sweep", "--quick", "--seeds", "0", "--weights", "1", "--regs", "paper",
              "--n-samples", "20", "--out", str(tmp_path), "--device", "cpu"])
    for name in ("pareto.png", "pareto.pdf", "table.md", "rows.csv", "samples.png"):
        assert (tmp_path / name).stat().st_size > 100, name
    assert "| autog | paper |" in (tmp_path / "table.md").read_text()
