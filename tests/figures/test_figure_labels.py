"""What a reader sees in the figures (issue 21, the figure review): legends name methods, starts and schedules the
way a reader does (``AutoG``, ``N(0,1) start``, ``linear betas to abar_T = ...``), never by their code spellings
(``autog``, ``n01``, ``lin:T:0.8168``, ``up``); log axes carry plain-number ticks; clipped densities say so; one key
per figure where several panels share it. Drawn from small synthetic arrays (no cell runs): seconds."""
import re

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from evaluation.claims.autoguidance import GUIDES, Autoguidance  # noqa: E402
from evaluation.claims.chidambaram import Guided  # noqa: E402
from evaluation.claims.reg_map import Gap, RegMap  # noqa: E402
from evaluation.claims.schedules import WEIGHTINGS, WeightSchedules  # noqa: E402
from evaluation.claims.theorem1 import Theorem1  # noqa: E402
from figures import (claims_autoguidance, claims_bn_pc, claims_cfgpp, claims_chidambaram, claims_interval,  # noqa: E402
                     claims_pavasovic, claims_reg_fields, claims_reg_samples, claims_schedules, claims_theorem1, style)

# code spellings that must not reach a legend: rule and start names, guide names, weightings, schedule spellings
CODE = re.compile(r"\b(autog|cfg_zero_star(_init)?|apg_momentum|reg_vjp|reg_paper|n01|const|up|down)\b"
                  r"|\b(lin|cosine|linear):[\dT]")


def _draw(module, data, monkeypatch, tmp_path):
    """The figure ``module.plot`` draws from ``data``, kept open (``save`` replaced)."""
    drawn = {}
    monkeypatch.setattr(module, "save", lambda fig, out, name: drawn.setdefault("fig", fig) and [])
    module.plot(data, tmp_path)
    return drawn["fig"]


def _legend_texts(fig) -> list[str]:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return [t.get_text() for lg in legends for t in lg.get_texts()]


def _no_code_names(fig) -> list[str]:
    texts = _legend_texts(fig)
    assert texts, "the figure has no legend"
    bad = [t for t in texts if CODE.search(t)]
    assert not bad, f"code spellings in the legend: {bad}"
    return texts


def test_style_names_schedules_and_starts_as_a_reader_does():
    assert style.schedule_label("lin:T:0.0001") == "linear betas to abar_T = 0.0001"
    assert style.schedule_label("lin:20:0.5") == "linear betas to abar_T = 0.5, T = 20"
    assert style.schedule_label("cosine:T") == "cosine"
    assert style.schedule_label("paper") == "paper"  # other spellings as they are
    assert style.schedule_label("linear:20:0.01:0.4") == "linear:20:0.01:0.4"
    from evaluation.spec import STARTS
    assert set(style.START_LABELS) == set(STARTS)  # every start of the vocabulary has its name


def test_log_axes_get_plain_tick_labels():
    fig, ax = plt.subplots()
    ax.plot([25, 50, 100, 400], [0.3, 0.5, 0.9, 1.4])
    ax.set_xscale("log")
    ax.set_yscale("log")
    style.ticks_at(ax.xaxis, [25, 50, 100, 400])
    style.plain_log_ticks(ax.yaxis)
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["25", "50", "100", "400"]
    assert not ax.xaxis.get_minorticklocs().size
    ylabels = {t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True)} - {""}
    assert {"0.3", "0.5", "1"} <= ylabels and not any("times" in t or "^" in t for t in ylabels)
    plt.close(fig)


def test_autoguidance_legend_names_the_guides(tmp_path, monkeypatch):
    ws = np.array([0.0, 0.5, 1.0])
    v = np.ones((2, len(GUIDES), len(ws)))
    d = Autoguidance(("paper_1d", "classes_2d"), ws, v, v, np.ones(2), v, v, np.zeros(2))
    fig = _draw(claims_autoguidance, d, monkeypatch, tmp_path)
    texts = _no_code_names(fig)
    assert texts == [claims_autoguidance.GUIDE_LABELS[g] for g in GUIDES]  # one key for every panel
    assert not set(texts) & set(GUIDES)  # not the guides' code names ("control" alone)
    assert not any(ax.get_legend() for ax in fig.axes)
    plt.close(fig)


def test_theorem1_legend_and_ticks(tmp_path, monkeypatch):
    T = np.array([10, 20, 40])
    curves = ("lin:T:0.8168 / tilted", "lin:T:0.8168 / n01", "lin:T:0.0001 / tilted", "lin:T:0.0001 / n01")
    tv = np.array([[0.1, 0.05, 0.025], [0.5, 0.5, 0.5], [0.3, 0.2, 0.1], [0.3, 0.2, 0.1]])
    fig = _draw(claims_theorem1, Theorem1(T, curves, tv, tv), monkeypatch, tmp_path)
    texts = _no_code_names(fig)
    assert texts[1] == "linear betas to abar_T = 0.8168, N(0,1) start"
    ax = fig.axes[0]
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["10", "20", "40"]
    plt.close(fig)


def test_schedules_legend_names_the_weightings(tmp_path, monkeypatch):
    settings = (("paper_1d", "paper", 1.0), ("paper_1d", "lin:20:0.0001", 3.0))
    v = np.full((2, len(WEIGHTINGS)), 0.5)
    fig = _draw(claims_schedules, WeightSchedules(settings, v, v, v), monkeypatch, tmp_path)
    assert _no_code_names(fig) == ["constant weight", "increasing weight", "decreasing weight"]
    plt.close(fig)


def test_chidambaram_one_key_plain_weights_and_a_stated_clip(tmp_path, monkeypatch):
    x = np.linspace(-1, 4, 501)
    ws, errors = np.array([0.0, 1.0, 8.0, 32.0]), np.array([0.0, 0.02, 0.1])
    mass = np.exp(-((x - 1.5) / 0.3) ** 2)
    spike = np.exp(-((x - 2.2) / 0.005) ** 2)  # a density far above the clip
    block = np.stack([np.stack([mass] * 3 + [spike])] * len(errors))  # [E, W, n]
    z = np.zeros((len(errors), len(ws)))
    d = Guided(x, ws, ws[:3], errors, block, z, z, z, np.zeros((2, 3)), np.zeros((2, 3)), None)
    fig = _draw(claims_chidambaram, d, monkeypatch, tmp_path)
    _no_code_names(fig)
    density_axes = fig.axes[:len(errors)]
    assert all(ax.get_ylim()[1] == claims_chidambaram.CLIP and "clipped" in ax.get_title() for ax in density_axes)
    assert sum(ax.get_legend() is not None for ax in density_axes) + len(fig.legends) == 1  # the w key once
    fig.canvas.draw()
    assert [t.get_text() for t in fig.axes[len(errors)].get_xticklabels()] == ["0", "1", "8", "32"]
    plt.close(fig)


def _gap(law, schedule, w, start, d_tv):
    return Gap(law, schedule, "cfg", "paper", w, start, 0.5, 0.5 + d_tv, d_tv, 0.0, 0.0, 0.0, 0.1, 0.1 + d_tv / 4,
               d_tv / 4, 1e-4, 1e-4)


def test_reg_samples_legends_name_the_starts_and_schedules(tmp_path, monkeypatch):
    gaps = [_gap("paper_1d", s, w, st, 0.1 * (i - 2)) for i, s in enumerate(("paper", "lin:20:0.0001"))
            for w in (1.0, 3.0) for st in ("n01", "tilted")]
    gaps += [_gap("paper_1d", f"lin:{T}:0.8168", w, st, -0.1) for T in (10, 20) for w in (1.0, 3.0)
             for st in ("n01", "tilted")]
    gaps += [_gap(f"single:1:{np.sqrt(r) / 2}:0:0.5", "lin:20:0.0001", 1.0, st, r - 0.6) for r in (0.25, 0.5, 1.0)
             for st in ("n01", "tilted")]
    fig = _draw(claims_reg_samples, RegMap(tuple(gaps), True), monkeypatch, tmp_path)
    texts = _no_code_names(fig)
    assert "linear betas to abar_T = 0.8168, w = 1, N(0,1) start" in texts
    assert "w = 1, tilted start p_T E_T" in texts
    plt.close(fig)


@pytest.mark.parametrize("module", [claims_bn_pc])
def test_bn_pc_ticks_are_the_step_counts(module, tmp_path, monkeypatch):
    from evaluation.claims.bradley_nakkiran import PredictorCorrector
    fields = PredictorCorrector._fields
    T = np.array([25, 50, 100])
    x = np.linspace(-2, 3, 51)
    values = {"ws": np.array([1.0]), "T": T, "x": x, "laws": np.ones((4, len(x)))}
    d = PredictorCorrector(**{f: values.get(f, np.full((1, len(T)), 0.3)) for f in fields})
    fig = _draw(module, d, monkeypatch, tmp_path)
    fig.canvas.draw()
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["25", "50", "100"]
    plt.close(fig)


def test_flows_names_the_rules_gives_each_a_marker_and_states_its_clip(tmp_path, monkeypatch):
    from evaluation import flows as flows_exp
    from figures import flows

    c = flows_exp.FlowsConfig(presets=("paper_1d",), weights=(1.0,), steps=(2,), schedules=("flow",),
                              methods=("cfg", "cfg_zero_star_init", "apg_momentum"), density_points=(101, 11),
                              fields=False, grid_check=False, optimal_2d_steps=())
    fig = _draw(flows, flows_exp.compute(config=c, progress=False), monkeypatch, tmp_path)
    texts = _no_code_names(fig)
    assert {"CFG-Zero* + zero-init", "APG + momentum"} <= set(texts)
    assert len({flows.MARKER[m] for m in c.methods}) == len(c.methods)  # one marker per rule
    ax = fig.axes[0]  # the 1-D densities: a spike above the axis is said in the title
    top = ax.get_ylim()[1]
    clipped = any((np.asarray(line.get_ydata(), float) > top).any() for line in ax.get_lines())
    assert clipped == ("clipped" in ax.get_title())
    plt.close(fig)


def test_pavasovic_panels_have_y_labels(tmp_path, monkeypatch):
    from evaluation.claims.pavasovic import SEPARATIONS, HighDim

    dims, ws = np.array([1, 4, 16]), np.array([0.0, 1.0, 2.0])
    shape = (len(SEPARATIONS), len(dims), len(ws))
    d = HighDim(dims, ws, np.ones(shape[:2]), np.ones(shape), np.ones(shape), np.full(shape, 0.1), 0.0)
    fig = _draw(claims_pavasovic, d, monkeypatch, tmp_path)
    assert all(ax.get_ylabel() and ax.get_xlabel() for ax in fig.axes)
    plt.close(fig)


def test_reg_fields_names_the_estimators_with_the_method_vocabulary(tmp_path, monkeypatch):
    from evaluation.claims.reg_fields import FieldComparison, RegFields
    from evaluation.spec import Method

    abar = np.array([0.9, 0.5, 0.1])
    comps = tuple(FieldComparison(law, "paper", "cfg", 1.0, est, abar, abar, abar / 2, abar, 0.5, 0.25)
                  for law in ("paper_1d", "correlated_2d") for est in (("paper",) if law == "paper_1d" else
                                                                        ("paper", "vjp", "diag")))
    fig = _draw(claims_reg_fields, RegFields(comps, 0), monkeypatch, tmp_path)
    texts = _no_code_names(fig)
    for est in ("paper", "vjp", "diag"):
        assert f"{Method('cfg', reg=est).label}, paper schedule" in texts  # "REG (vjp)", as every other figure
    plt.close(fig)


def test_interval_colour_bar_says_what_it_measures(tmp_path, monkeypatch):
    from evaluation.claims.interval import IntervalMap

    ends = (0.0, 0.1, 1.0, float("inf"))
    tv = np.full((1, 1, len(ends), len(ends)), np.nan)
    tv[0, 0][np.triu_indices(len(ends), 1)] = 0.4
    sig = np.array([[[0.1, 1.0, 10.0]]])
    values = {"laws": ("paper_1d",), "ws": (5.0,), "ends": ends, "tv_target": tv, "sigma": sig}
    d = IntervalMap(**{f: values.get(f, np.ones_like(sig)) for f in IntervalMap._fields})
    fig = _draw(claims_interval, d, monkeypatch, tmp_path)
    assert any(ax.get_ylabel() == "TV to the tilted target" for ax in fig.axes)  # the colour bar's axis
    plt.close(fig)


def test_cfgpp_ticks_are_steps_and_step_counts_and_the_densities_have_a_y_label(tmp_path, monkeypatch):
    from evaluation.claims.cfgpp import CFGpp

    T, x = np.array([10, 20, 40]), np.linspace(-3, 4, 71)
    values = {"T": T, "x": x, "lambdas": (0.0, 1.0), "lerp_scales": np.linspace(2, 1, 20),
              "tv_cond": np.full((2, 3), 0.5), "cond_mass": np.exp(-x ** 2) / 10, "masses": np.ones((2, len(x))) / 70}
    d = CFGpp(**{f: values.get(f, 0.0) for f in CFGpp._fields})
    fig = _draw(claims_cfgpp, d, monkeypatch, tmp_path)
    fig.canvas.draw()
    steps = [float(t.get_text().replace("\u2212", "-")) for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert steps and all(s.is_integer() for s in steps)
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == ["10", "20", "40"]
    assert fig.axes[2].get_ylabel() == "output density"
    plt.close(fig)
