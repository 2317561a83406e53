"""The guidance bench (evaluation.bench): the user's rule contract, the Monte Carlo route, the registry and its
providers, the cache key of rule files, the outputs, and the leaderboard's ranking pinned on both sides."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from evaluation import bench
from evaluation.bench import BenchCell, BenchConfig, Provider, RuleGuidance, bench_cell, load_rule, rule_source
from evaluation.spec import Law, Levels, Method
from evaluation.sweep import cell_key
from sampler import sample

ROOT = Path(__file__).resolve().parents[2]
TINY = BenchConfig(laws=("paper_1d",), levels=("flow:10",), weights=(2.0,), points=(301, 21), field_nodes=(8, 4),
                   mc_samples=2048)
REDUCIBLE = "reducible:64:1.5:1.5:1:7"
CFG_RULE = "def my_cfg(eps_c, eps_u, x, sigma, w):\n    return eps_c + w * (eps_c - eps_u)\n"
# a stateful rule: CFG plus a momentum term that refuses to run on state from an earlier run (the noise level rises)
MOMENTUM_RULE = '''
class Momentum:
    def __init__(self):
        self.resets = 0
        self.reset()

    def reset(self):
        self.running, self.last = None, None
        self.resets += 1

    def __call__(self, eps_c, eps_u, x, sigma, w):
        if self.last is not None and sigma > self.last:
            raise ValueError("new run on old momentum: reset() was not called")
        diff = eps_c - eps_u
        if self.running is not None and self.running.shape == diff.shape:
            diff = diff - 0.5 * self.running
        self.running, self.last = diff, sigma
        return eps_c + w * diff
'''


def _file(tmp_path, text: str, name: str = "rule.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _cell(source: str, law: str, levels: str, w: float, config: BenchConfig = TINY, digest: str | None = None):
    src, dig = rule_source(source)
    law_ = Law.parse(law)
    k = 0 if law_.dim == 1 or law_.kind == "reducible" else 1
    return BenchCell(src, dig if digest is None else digest, law_, Levels.parse(levels), float(w),
                     config.half_width[k], config.points[k], config.field_nodes[k], config.mc_samples, config.mc_seed)


# --- the user's rule contract --------------------------------------------------------------------------------
@pytest.mark.parametrize("law, levels", [("paper_1d", "flow:10"), ("paper_1d", "standard:10/ddpm"),
                                         pytest.param("correlated_2d", "standard:10/ddim", marks=pytest.mark.slow)])
def test_user_cfg_scores_as_builtin_cfg(tmp_path, law, levels):
    """A user rule written as plain CFG in eps units gives the built-in CFG's numbers (every metric and error, to
    float64 rounding: D = x - sigma (eps_c + w (eps_c - eps_u)) is D_c + w (D_c - D_u) up to the last bits)."""
    user = bench_cell(_cell(f"{_file(tmp_path, CFG_RULE)}:my_cfg", law, levels, 2.0))
    builtin = bench_cell(_cell("cfg", law, levels, 2.0))
    assert user.route == builtin.route == "exact"
    for a, b in zip(user.values + user.field_levels, builtin.values + builtin.field_levels):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12)
    for a, b in zip(user.errors, builtin.errors):  # an error estimate divides grid changes: rounding weighs more
        assert a == pytest.approx(b, rel=1e-6, abs=1e-12)
    assert builtin.values[0] > 0.05  # not a vacuous comparison: CFG is far from the target here


@pytest.mark.parametrize("space", ["x0", "velocity"])
def test_x0_and_velocity_space_rules_equal_cfg(tmp_path, space):
    """CFG written on x0 predictions or on path velocities (the flag ``rule.space``) is the same guidance: CFG is
    affine in the prediction, and x0 and velocity are affine maps of eps at fixed (x, sigma)."""
    text = f"def r(a, b, x, sigma, w):\n    return a + w * (a - b)\n\nr.space = {space!r}\n"
    rule = load_rule(f"{_file(tmp_path, text)}:r")
    b = Method("cfg", 1.5).build(Law.parse("correlated_2d"), Levels.parse("flow:10"))
    g = RuleGuidance(rule, b.guided.cond, b.guided.uncond, 1.5, Levels.parse("flow:10").schedule.path)
    x = torch.randn(7, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for s in (0.3, 2.0):
        torch.testing.assert_close(g(x, s), b.guided(x, s), rtol=1e-10, atol=1e-10)


def test_stateful_rule_is_reset_before_every_run(tmp_path):
    """The momentum rule refuses to continue on old state; the bench's exact route (several push-forward runs per
    cell) and its Monte Carlo route run it, so reset() came before every run. Without reset a second run fails."""
    path = _file(tmp_path, MOMENTUM_RULE)
    exact = bench_cell(_cell(f"{path}:Momentum", "paper_1d", "flow:10", 2.0))
    assert exact.route == "exact" and math.isfinite(exact.values[0]) and math.isnan(exact.values[-1])  # no field
    mc = bench_cell(_cell(f"{path}:Momentum", REDUCIBLE, "flow:10", 2.0))
    assert mc.route == "monte_carlo" and math.isfinite(mc.values[0])
    assert bench_cell(_cell(f"{path}:Momentum", "paper_1d", "standard:10/ddpm", 2.0)).route == "undefined"
    rule = load_rule(f"{path}:Momentum")
    b = Method("cfg", 2.0).build(Law.parse("paper_1d"), Levels.parse("flow:10"))
    g = RuleGuidance(rule, b.guided.cond, b.guided.uncond, 2.0, Levels.parse("flow:10").schedule.path)
    x = torch.randn(5, 1, dtype=torch.float64)
    sigmas = Levels.parse("flow:10").sigmas()
    sample("ddim", g, x, sigmas)
    with pytest.raises(ValueError, match="reset"):
        sample("ddim", g, x, sigmas)
    resets = rule.resets
    g.reset()
    sample("ddim", g, x, sigmas)
    assert rule.resets == resets + 1


@pytest.mark.parametrize("text, source, match", [
    (None, "{dir}/missing.py:f", "does not exist"),
    (CFG_RULE, "{path}:nope", "has no 'nope'.*my_cfg"),
    ("f = 3\n", "{path}:f", "not callable"),
    ("import not_a_module_xyz\n", "{path}:f", "failed to import: ModuleNotFoundError"),
    ("def f(a, b, x, s, w):\n    return a[:, :0]\n", "{path}:f", "must return a tensor of the input's shape"),
    ("def f(a, b, x, s, w):\n    return a\nf.space = 'logits'\n", "{path}:f", "rule.space"),
    (CFG_RULE, "{path}:1bad", "Python name"),
])
def test_bad_rule_files_give_clear_errors(tmp_path, text, source, match):
    path = _file(tmp_path, text) if text is not None else None
    with pytest.raises(ValueError, match=match):
        rule_source(source.format(dir=tmp_path, path=path))


@pytest.mark.slow
def test_cli_reports_a_bad_rule_before_any_work(tmp_path):
    r = subprocess.run([sys.executable, "-m", "evaluation.bench", "--quick", "--out", str(tmp_path / "out"),
                        "--rule", f"{tmp_path}/missing.py:f"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "does not exist" in r.stderr and not (tmp_path / "out" / "bench.json").exists()


@pytest.mark.parametrize("argv, match", [(["--rule", "no_colon"], "FILE.py:NAME"), (["--workers", "0"], "workers"),
                                         (["--quic"], "unrecognized")])
def test_cli_rejects_bad_arguments(tmp_path, capsys, argv, match):
    with pytest.raises(SystemExit) as exc:
        bench.main(argv + ["--out", str(tmp_path)])
    assert exc.value.code == 2 and match in capsys.readouterr().err


def test_an_edited_rule_file_changes_the_key(tmp_path):
    path = _file(tmp_path, CFG_RULE)
    before = _cell(f"{path}:my_cfg", "paper_1d", "flow:10", 2.0)
    path.write_text(CFG_RULE + "# edited\n")
    after = _cell(f"{path}:my_cfg", "paper_1d", "flow:10", 2.0)
    assert before.digest != after.digest and cell_key(before) != cell_key(after)
    with pytest.raises(ValueError, match="changed during the run"):
        bench_cell(before)


# --- the registry and providers ------------------------------------------------------------------------------
def test_every_registered_rule_resolves():
    for name, source in bench.REGISTRY.items():
        if source.partition(":")[0] in bench.PROVIDERS:  # tests/evaluation/test_bench_providers.py
            continue
        src, digest = rule_source(source)
        assert digest == "" and Method.parse(src).w == 1.0, name
    with pytest.raises(ValueError, match="without w"):
        rule_source("cfg,w=2")


def rule(name: str):
    """The test provider: plain CFG under any name (``tests.evaluation.test_bench:rule``)."""
    if name != "CFG":
        raise ValueError(f"no guider {name!r}")
    return lambda eps_c, eps_u, x, sigma, w: eps_c + w * (eps_c - eps_u)


def test_provider_entries_run_or_are_skipped(monkeypatch):
    monkeypatch.setitem(bench.PROVIDERS, "fake", Provider("tests.evaluation.test_bench", "torch"))
    monkeypatch.setitem(bench.PROVIDERS, "absent", Provider("tests.evaluation.test_bench", "not_installed_xyz"))
    entries, skipped = bench.check_rules({"fake:CFG": "fake:CFG", "absent:CFG": "absent:CFG", "cfg": "cfg"})
    assert [e[0] for e in entries] == ["fake:CFG", "cfg"] and entries[0][2]  # a digest of the provider's code
    assert len(skipped) == 1 and "absent:CFG" in skipped[0] and "not_installed_xyz" in skipped[0]
    via = bench_cell(_cell("fake:CFG", "paper_1d", "standard:10/ddim", 1.0))
    builtin = bench_cell(_cell("cfg", "paper_1d", "standard:10/ddim", 1.0))
    assert via.values == pytest.approx(builtin.values, rel=1e-9)


# --- the Monte Carlo route -----------------------------------------------------------------------------------
@pytest.mark.parametrize("levels", ["flow:10", "standard:10/ddpm"])
def test_monte_carlo_agrees_with_exact_for_cfg(tmp_path, levels):
    """CFG on the reducible family in d = 64: the built-in is carried by the line (exact), the same rule from a file
    without ``coordinatewise`` runs by Monte Carlo; every metric agrees within three combined errors."""
    config = BenchConfig(laws=(REDUCIBLE,), levels=(levels,), weights=(2.0,), points=(601, 21), field_nodes=(16, 4),
                         mc_samples=8192)
    exact = bench_cell(_cell("cfg", REDUCIBLE, levels, 2.0, config))
    mc = bench_cell(_cell(f"{_file(tmp_path, CFG_RULE)}:my_cfg", REDUCIBLE, levels, 2.0, config))
    assert (exact.route, mc.route) == ("exact", "monte_carlo")
    for i, m in enumerate(bench.METRICS):
        if m in ("tv", "kl_target_out", "kl_out_target"):
            assert math.isnan(mc.values[i])
            continue
        gap, err = abs(exact.values[i] - mc.values[i]), exact.errors[i] + mc.errors[i]
        assert gap <= 3 * err, (m, exact.values[i], mc.values[i], err)
        assert mc.errors[i] < 0.1 * max(abs(exact.values[i]), 0.1), m  # and the errors are small


def test_monte_carlo_refuses_other_laws():
    g = Method("cfg", 1.0).build(Law.parse("paper_1d"), Levels.parse("flow:4")).guided
    with pytest.raises(ValueError, match="reducible"):
        bench.monte_carlo(g, Law.parse("paper_1d"), Levels.parse("flow:4"), 16, 0)


# --- the leaderboard, pinned on both sides -------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    rules = {k: bench.REGISTRY[k] for k in ("optimal", "unguided", "cfg", "reg_vjp")}
    return bench.run(TINY, rules, cache=tmp_path_factory.mktemp("cache"), progress=False)


def test_leaderboard_ranking_on_paper_1d(tiny_bench):
    """paper_1d, 10 flow steps, w = 2: the optimum first (score 1), then REG (vjp), CFG, unguided; REG (vjp) is about
    half as far from the target as CFG (0.47 measured), CFG about 10x the optimum, unguided about 23x."""
    board = {b["rule"]: b for b in tiny_bench["leaderboard"]}
    assert [b["rule"] for b in tiny_bench["leaderboard"]] == ["optimal", "reg_vjp", "cfg", "unguided"]
    assert board["optimal"]["score"] == pytest.approx(1.0)
    assert 0.35 < board["reg_vjp"]["score"] / board["cfg"]["score"] < 0.6
    assert 7 < board["cfg"]["score"] < 14 and 17 < board["unguided"]["score"] < 30
    rows = {r["rule"]: r for r in tiny_bench["rows"]}
    assert rows["optimal"]["field"] == 0 and rows["reg_vjp"]["field"] < rows["cfg"]["field"]
    assert rows["cfg"]["overshoot"] > 0.2 > -0.2 > rows["unguided"]["overshoot"]  # CFG past the target, unguided short


def test_bench_json_and_markdown(tiny_bench):
    data = json.loads(json.dumps(tiny_bench))  # plain JSON (None for nan)
    assert data["version"] == bench.BENCH_VERSION
    row = data["rows"][0]
    for m in bench.METRICS:
        assert m in row and m + "_error" in row
    assert {"rule", "setting", "w", "exact", "route", "mode_mass", "field_levels"} <= set(row)
    md = bench.markdown(data)
    order = [md.index(f"| {b['rule']} |") for b in data["leaderboard"]]
    assert order == sorted(order)


def test_main_writes_the_outputs(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "QUICK", BenchConfig(laws=("paper_1d",), levels=("standard:10/ddim",), weights=(1.0,),
                                                    points=(201, 21), field_nodes=(4, 4)))
    monkeypatch.setattr(bench, "REGISTRY", {"optimal": "optimal", "cfg": "cfg"})
    monkeypatch.setenv("REG_GUIDANCE_CACHE", str(tmp_path / "cache"))
    path = _file(tmp_path, CFG_RULE)
    bench.main(["--quick", "--out", str(tmp_path / "out"), "--rule", f"{path}:my_cfg"])
    data = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert {b["rule"] for b in data["leaderboard"]} == {"optimal", "cfg", "rule.py:my_cfg"}
    assert (tmp_path / "out" / "bench.md").read_text() == bench.markdown(data)
    assert (tmp_path / "out" / "bench.png").stat().st_size > 1000


def test_the_docs_examples_are_rules(tmp_path):
    """The rules of docs/bench.md run through the bench's loader (the stateful one is a class with reset)."""
    text = (ROOT / "docs" / "bench.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    path = _file(tmp_path, "\n\n".join(b for b in blocks if not b.startswith("def rule(")))
    assert rule_source(f"{path}:Momentum")[1] and hasattr(load_rule(f"{path}:Momentum"), "reset")
    recipe = text.split("cat > my_rule.py <<'EOF'\n", 1)[1].split("EOF", 1)[0]
    assert rule_source(f"{_file(tmp_path, recipe, 'my_rule.py')}:my_cfg")[1]


def test_conditional_nodes_take_a_law():
    """evaluation.flows.conditional_nodes on any Law with a mixture conditional (the bench's reduced reducible law):
    the preset's nodes by name and by Law are the same, and the weighted nodes have the marginal's mean (the
    noised conditional's, in contract coordinates: the data mean) and second moment."""
    from evaluation.flows import conditional_nodes

    x1, w1 = conditional_nodes("paper_1d", 0.7, 8)
    x2, w2 = conditional_nodes(Law.parse("paper_1d"), 0.7, 8)
    assert torch.equal(x1, x2) and torch.equal(w1, w2)
    line = bench.line_law(Law.parse(REDUCIBLE))
    cond = line.build().cond
    s = 0.7
    x, w = conditional_nodes(line, s, 8)
    mean = (cond.weights[:, None] * cond.means).sum(0)
    second = (cond.weights * (cond.covs[:, 0, 0] + cond.means[:, 0] ** 2)).sum() + s ** 2  # x = x0 + s * noise
    assert (w * x[:, 0]).sum().item() == pytest.approx(mean.item(), abs=1e-12)
    assert (w * x[:, 0] ** 2).sum().item() == pytest.approx(second.item(), rel=1e-12)
    with pytest.raises(ValueError, match="GaussianMixture"):
        conditional_nodes(Law.parse(REDUCIBLE), s, 4)


def test_unknown_provider_is_named():
    with pytest.raises(ValueError, match="unknown rule provider 'comfy'"):
        rule_source("comfy:CFGNorm")


def test_partial_rules_rank_after_complete_ones():
    """A rule scored on fewer settings (undefined rows) ranks after the complete rules, however low its score."""
    def row(rule, setting, sw1):
        return {"rule": rule, "setting": setting, "w": 1.0, "sw1": sw1, "sw1_error": 0.0, "tv": None, "field": None,
                "exact": True}

    rows = [row("optimal", s, 1.0) for s in ("a", "b")] + [row("cfg", s, 3.0) for s in ("a", "b")]
    rows += [row("narrow", "a", 1.5), row("narrow", "b", None)]
    board = bench.leaderboard(rows)
    assert [b["rule"] for b in board] == ["optimal", "cfg", "narrow"]
    assert [b["complete"] for b in board] == [True, True, False]
    text = bench.markdown({"version": 1, "config": {"laws": ["a"], "levels": ["l"], "weights": [1.0]},
                           "leaderboard": board, "skipped": []})
    assert "narrow (partial)" in text and "not comparable" in text
