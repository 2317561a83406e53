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
    steps = next(ax for ax in fig.axes if ax.get_xlabel() == "T")  # ticks at the step counts, on a log axis
    assert steps.get_xscale() == "log" and [t.get_text() for t in steps.get_xticklabels()] == ["10", "20"]
    # single Gaussians: the two starts of one w nearly coincide there, so they share w's colour and differ in line
    # style (each start had its own colour and the second line hid the first: legend entries with no line to see)
    singles = next(ax for ax in fig.axes if ax.get_title().startswith("single Gaussians"))
    lines = {ln.get_label(): ln for ln in singles.get_lines() if ln.get_label().startswith("w = ")}
    n01, tilted = lines["w = 1, N(0,1) start"], lines["w = 1, tilted start p_T E_T"]
    assert n01.get_color() == tilted.get_color() and n01.get_linestyle() != tilted.get_linestyle()
    plt.close(fig)


def test_ticks_at_refuses_a_tick_a_log_axis_cannot_show():
    """The full run's reg-samples panel took its ticks from every line, the zero line's x data (0, 1) included:
    ticks at 0 and 1 squashed its step counts into the right edge."""
    fig, ax = plt.subplots()
    ax.set_xscale("log")
    with pytest.raises(ValueError, match="ticks at 0 on a log axis"):
        style.ticks_at(ax.xaxis, [0, 1, 10, 20])
    style.ticks_at(ax.xaxis, [10, 20])
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


# --- one name per method (issue 21, "one spelling per concept"): every figure names a method by its Method.label ---
# a REG named in a legend or a title is a Method.label, "REG (estimator)"; "REG paper ($J^T 1$)", "REG vjp" and a bare
# "REG" were a second vocabulary (style.LABELS) beside it
NOT_A_LABEL = re.compile(r"\bREG\b(?! \((paper|vjp|diag|jvp|fd)\))|\boptimal\b")


def _draw_all(module, data, monkeypatch, tmp_path) -> list:
    """Every figure ``module.plot`` draws from ``data``, kept open."""
    drawn = []
    monkeypatch.setattr(module, "save", lambda fig, out, name: drawn.append(fig) or [])
    module.plot(data, tmp_path)
    return drawn


def _texts(fig) -> list[str]:
    """What names the lines and panels of ``fig``: legend entries, panel titles, the figure's title."""
    texts = _legend_texts(fig) + [ax.get_title() for ax in fig.axes]
    return texts + [fig.get_suptitle()]


def _method_names_are_labels(figs) -> list[str]:
    texts = [t for fig in figs for t in _texts(fig) if t]
    bad = [t for t in texts if NOT_A_LABEL.search(t) or CODE.search(t)]
    assert not bad, f"a method named other than by its Method.label: {bad}"
    return texts


def test_method_label_is_the_method_vocabulary():
    from evaluation.spec import Method
    from sampler.method import RULES
    from sampler.reg import ESTIMATORS

    for rule in RULES:
        m = Method(rule)
        assert style.method_label(m) == style.method_label(str(m)) == m.label
    for est in ESTIMATORS:
        m = Method("cfg", reg=est)
        assert style.method_label(m) == m.label == f"REG ({est})"
        assert style.method_label(m, formula=True).startswith(m.label)  # the formula is a suffix, never a new name
    assert style.method_label("cfg,reg=paper", formula=True) == "REG (paper), $J^T 1$"
    assert style.method_label("cfg", formula=True) == "CFG"
    # no second table of method names: style.LABELS names only the goldens the methods are measured against
    assert not [v for v in style.LABELS.values() if re.search(r"\b(CFG|REG|AutoG|CG)\b", v)]
    with pytest.raises(ValueError, match="method"):
        style.method_label(3)
    with pytest.raises(ValueError, match="nope"):
        style.method_label("cfg,reg=nope")


def _curves(T=20, n=31):
    from figures import curves_1d
    x = np.linspace(-1, 2, n)
    rows = [np.tile(np.sin(x + k), (T, 1)) for k in range(4)]
    w = np.tile(np.exp(-x ** 2), (T, 1))
    return curves_1d.Curves1D(x, np.arange(1, T + 1), np.linspace(0.8, 0.999, T), *rows, w / w.sum(1, keepdims=True),
                              np.zeros((T, n)), np.zeros((T, n)))


def _trained():
    from figures import trained_1d
    c = _curves()
    z = np.zeros_like(c.golden)
    return trained_1d.Trained1D(c.x, c.golden, c.x[::5], c.golden[:len(trained_1d.STEPS), ::5], c.cfg, c.reg, c,
                                z)


def _line_colours(fig) -> dict:
    from matplotlib.colors import to_hex
    return {ln.get_label(): to_hex(ln.get_color()) for ax in fig.axes for ln in ax.get_lines()}


def test_1d_figures_name_methods_by_label_and_share_the_paper_colours(tmp_path, monkeypatch):
    """curves_1d, trained_1d and maps_1d name CFG and REG by Method.label; trained_1d draws CFG, REG and the goldens
    in curves_1d's colours (the paper's Figure 1: CFG green, REG red, golden blue), one choice in figures.style."""
    from evaluation.spec import Method
    from figures import curves_1d, maps_1d, trained_1d

    curves = _draw_all(curves_1d, _curves(), monkeypatch, tmp_path)
    trained = _draw_all(trained_1d, _trained(), monkeypatch, tmp_path)
    maps = _draw_all(maps_1d, maps_1d.Maps1D(_curves(), _trained()), monkeypatch, tmp_path)
    texts = _method_names_are_labels(curves + trained + maps)
    reg = Method("cfg", reg="paper").label
    assert {"CFG", reg} <= set(_legend_texts(curves[0])) and {"CFG", reg} <= set(_legend_texts(trained[0]))
    assert any(f"|golden - {reg}|" in t for t in texts)
    a, b = _line_colours(curves[0]), _line_colours(trained[0])
    for label in ("CFG", reg, style.LABELS["golden"], style.LABELS["chain"]):
        assert a[label] == b[label], f"{label}: curves_1d {a[label]}, trained_1d {b[label]}"
    assert (a["CFG"], a[reg], a[style.LABELS["golden"]]) == tuple(
        style.PAPER_COLORS[k] for k in ("cfg", "reg", "golden"))
    plt.close("all")


def test_outputs_fields_and_dimension_name_methods_by_label(tmp_path, monkeypatch):
    """outputs, fields_2d and dimension: one name per method (dimension named REG (paper) 'REG paper ($J^T 1$)' in
    its field panels and 'REG (paper)' in its law panels)."""
    from evaluation import dimension as dim
    from figures import dimension, fields_2d, outputs

    x = np.linspace(-2, 3, 41)
    keys = [(w, m) for w in outputs.WEIGHTS for m in outputs.METHODS_1D]
    one = {k: np.exp(-x ** 2) / 10 for k in keys}
    num = {k: 0.5 for k in keys}
    axis2 = np.linspace(-1.5, 2.5, 9)
    o = outputs.Outputs({k: x for k in keys}, one, one, num, num, num, num, axis2,
                        np.exp(-np.add.outer(axis2 ** 2, axis2 ** 2)), {m: np.ones((5, 2)) for m in outputs.METHODS_2D})
    figs = _draw_all(outputs, o, monkeypatch, tmp_path)

    ax1 = np.linspace(-1, 2, 6)
    g = np.ones((6, 6, 2))
    f = fields_2d.Fields2D(ax1, {(p, a, m): g * k for p in fields_2d.PRESETS for a in fields_2d.LEVELS
                                 for k, m in enumerate(fields_2d.METHODS)},
                           {(p, a): np.ones((6, 6)) for p in fields_2d.PRESETS for a in fields_2d.LEVELS},
                           {(p, a): g * 0 for p in fields_2d.PRESETS for a in fields_2d.LEVELS})
    figs += _draw_all(fields_2d, f, monkeypatch, tmp_path)

    S, V, O, D, L, M, D2 = len(dim.SEPARATIONS), len(dim.VARIANCES), len(dim.ORIENTATIONS), 3, 2, len(dim.METHODS), 2
    e = np.full((S, V, O, D, L, M), 0.1)
    law = np.ones((S, D2, len(dim.LAW_METHODS)))
    r = dim.DimensionStudy(np.array([1, 4, 16]), np.array([0.5, 0.05]), 2.0, 1.5, 1.0, 1.5, 8, e, e / 10, e / 10,
                           np.ones((S, V, D, L)), np.ones((S, V, D, L)), np.ones((S, V, D, L)), np.array([1, 8]), 30,
                           law, law, np.ones((S, D2)), np.ones((S, D2)), 0.0, law * 0, law * 0, np.zeros((S, D2)),
                           np.zeros((S, D2)))
    figs += _draw_all(dimension, r, monkeypatch, tmp_path)
    texts = _method_names_are_labels(figs)
    for name in ("REG (paper), $J^T 1$", "REG (vjp), $J^T g$"):
        assert any(t.startswith(name) for t in texts), name
    plt.close("all")


def _luminance(colour) -> float:
    from matplotlib.colors import to_rgb
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in to_rgb(colour)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _drawn_colours(line) -> list:
    """The colours a line is drawn in: its own and its path effects' outlines (matplotlib keeps an outline's colour
    only in the effect's ``_gc``)."""
    return [line.get_color()] + [pe._gc["foreground"] for pe in line.get_path_effects() if "foreground" in pe._gc]


def test_closed_forms_r1_line_shows_on_its_saturated_band_and_is_keyed_alike(tmp_path, monkeypatch):
    """The r = 1 row is where CFG is exact and the ratio saturates the colour scale: the line marking it must have a
    colour far in luminance from that band (a black dotted line vanished in the dark red), and the key the same."""
    from figures import closed_forms

    abar, ratio = np.linspace(0.01, 0.99, 8), np.geomspace(0.1, 3, 9)
    band = np.where(np.isclose(ratio, 1.0, rtol=0.2)[:, None], 2.0, -0.5) * np.ones((9, 8))
    c = closed_forms.ClosedForms(abar, ratio, {w: band for w in closed_forms.WEIGHTS},
                                 {w: np.zeros((9, 8), bool) for w in closed_forms.WEIGHTS},
                                 {w: np.zeros((9, 8), bool) for w in closed_forms.WEIGHTS})
    fig = _draw(closed_forms, c, monkeypatch, tmp_path)
    mesh = fig.axes[0].collections[0]
    band_colour = mesh.cmap(mesh.norm(2.0))
    for ax in fig.axes[:len(closed_forms.WEIGHTS)]:
        (line,) = [ln for ln in ax.get_lines() if list(ln.get_ydata()) == [1, 1]]
        assert max(abs(_luminance(col) - _luminance(band_colour)) for col in _drawn_colours(line)) > 0.5
    (key,) = [h for lg in fig.legends for h in lg.legend_handles if h.get_label() == "r = 1: CFG exact"]
    assert key.get_linestyle() == line.get_linestyle() and _drawn_colours(key) == _drawn_colours(line)
    plt.close(fig)


def test_paper_figure_names_methods_by_label(tmp_path, monkeypatch):
    from evaluation.claims.paper_figure import PaperFigure
    from figures import claims_paper_figure

    t, x = np.arange(1, 21), np.linspace(-1, 2, 11)
    rows = np.ones((20, 11))
    d = PaperFigure(t, x, rows, rows, rows, rows, rows, *(np.ones(20),) * 5, "")
    figs = _draw_all(claims_paper_figure, d, monkeypatch, tmp_path)
    texts = _method_names_are_labels(figs)
    assert "REG (paper)" in texts and "|golden - REG (paper)|" in texts
    plt.close("all")
