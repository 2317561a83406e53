"""The bench's providers (evaluation.bench_providers): diffusers' guiders and the practitioners' rules as rules of
the user contract, their registry entries (skipped without diffusers), their cache key, ``min_dim``, and the
generated conformance table (docs/conformance.md)."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from evaluation import bench
from evaluation.bench import BenchCell, BenchConfig, Provider, bench_cell, rule_source
from evaluation.bench_providers import DIFFUSERS_OPTIONS, PRACTICE_RULES, diffusers_rule, practice_rule
from evaluation.spec import Law, Levels
from evaluation.sweep import cell_key

ROOT = Path(__file__).resolve().parents[2]
TINY = BenchConfig(laws=("paper_1d",), levels=("flow:10",), weights=(2.0,), points=(301, 21), field_nodes=(8, 4),
                   mc_samples=2048)
HAS_DIFFUSERS = importlib.util.find_spec("diffusers") is not None
needs_diffusers = pytest.mark.skipif(not HAS_DIFFUSERS, reason="diffusers is not installed")


def _cell(source: str, law: str = "paper_1d", levels: str = "flow:10", w: float = 2.0) -> BenchCell:
    src, dig = rule_source(source)
    law_ = Law.parse(law)
    k = 0 if law_.dim == 1 or law_.kind == "reducible" else 1
    return BenchCell(src, dig, law_, Levels.parse(levels), float(w), TINY.half_width[k], TINY.points[k],
                     TINY.field_nodes[k], TINY.mc_samples, TINY.mc_seed)


def _preds(n=16, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(3))


# --- diffusers ---------------------------------------------------------------------------------------------------
@needs_diffusers
def test_diffusers_cfg_scores_as_the_builtin_cfg():
    """The exact route on paper_1d, 10 flow steps: diffusers' u + s (c - u) with s = 1 + w is the built-in CFG."""
    ours = bench_cell(_cell("cfg"))
    theirs = bench_cell(_cell("diffusers:ClassifierFreeGuidance"))
    assert ours.route == theirs.route == "exact"
    assert theirs.values == pytest.approx(ours.values, rel=1e-6, abs=1e-9)
    assert theirs.field_levels == pytest.approx(ours.field_levels, rel=1e-6, abs=1e-9)


@needs_diffusers
def test_diffusers_rules_on_predictions():
    """Each guider on eps predictions against its formula written here (the weight mapped s = 1 + w)."""
    eps_c, eps_u, x = _preds()
    w = 1.5
    cfg = eps_c + w * (eps_c - eps_u)
    assert torch.allclose(diffusers_rule("ClassifierFreeGuidance")(eps_c, eps_u, x, 0.7, w), cfg, rtol=1e-12)
    # MAMBO-G (diffusers' magnitude_aware_guidance.py): u + s_eff (c - u), s_eff = 1 + (s - 1) exp(-alpha |c-u|/|u|)
    ratio = (eps_c - eps_u).norm(dim=1, keepdim=True) / eps_u.norm(dim=1, keepdim=True)
    mambo = eps_u + (1 + w * torch.exp(-8.0 * ratio)) * (eps_c - eps_u)
    assert torch.allclose(diffusers_rule("MagnitudeAwareGuidance")(eps_c, eps_u, x, 0.7, w), mambo, rtol=1e-10)
    # CFG-Zero* without zero-init steps: u scaled by <c, u> / |u|^2, in float32 inside diffusers
    st = (eps_c * eps_u).sum(1, keepdim=True) / (eps_u * eps_u).sum(1, keepdim=True)
    zero_star = st * eps_u + (1 + w) * (eps_c - st * eps_u)
    got = diffusers_rule("ClassifierFreeZeroStarGuidance")(eps_c, eps_u, x, 0.7, w)
    assert torch.allclose(got, zero_star, rtol=1e-5, atol=1e-5)
    # diffusers' APG defaults (eta = 1, cap 15 never reached here) are CFG
    assert torch.allclose(diffusers_rule("AdaptiveProjectedGuidance")(eps_c, eps_u, x, 0.7, w), cfg, rtol=1e-12)
    assert [diffusers_rule(n).coordinatewise for n in DIFFUSERS_OPTIONS] == [True, False, False, False, False]


@needs_diffusers
def test_diffusers_tcfg_needs_two_coordinates():
    """diffusers' TCFG indexes a second singular vector (tangential_classifier_free_guidance.py:140): IndexError on
    one coordinate, hence min_dim = 2 and undefined 1-D rows."""
    eps_c, eps_u, x = _preds(d=1)
    r = diffusers_rule("TangentialClassifierFreeGuidance")
    assert r.min_dim == 2
    with pytest.raises(IndexError):
        r(eps_c, eps_u, x, 0.7, 1.0)
    assert bench_cell(_cell("diffusers:TangentialClassifierFreeGuidance")).route == "undefined"


def test_diffusers_names_are_checked():
    with pytest.raises(ValueError, match="unknown diffusers guider 'Foo'"):
        diffusers_rule("Foo")


def test_diffusers_entries_are_skipped_without_diffusers(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(bench.importlib.util, "find_spec",
                        lambda name, *a: None if name == "diffusers" else real(name, *a))
    entries, skipped = bench.check_rules(bench.REGISTRY)
    names = [e[0] for e in entries]
    diffusers_names = [n for n in bench.REGISTRY if n.startswith("diffusers:")]
    assert len(diffusers_names) == 5 and not set(diffusers_names) & set(names)
    assert len(skipped) == 5 and all("'diffusers'" in s and "not installed" in s for s in skipped)
    assert [n for n in names if n.startswith("practice:")] == [f"practice:{n}" for n in PRACTICE_RULES]
    board = {"version": 1, "config": {"laws": ["paper_1d"], "levels": ["flow:10"], "weights": [1.0]},
             "skipped": skipped, "leaderboard": [], "rows": []}
    assert all(f"- {s}" in bench.markdown(board) for s in skipped)


# --- practice ----------------------------------------------------------------------------------------------------
def test_practice_rescale_against_its_formula():
    """phi = 0 is CFG; phi = 0.7 is Lin et al.'s Algorithm 2 written here on eps (not through D)."""
    eps_c, eps_u, x = _preds()
    w = 2.0
    cfg = eps_c + w * (eps_c - eps_u)
    assert torch.allclose(practice_rule("GuidanceRescale", phi=0.0)(eps_c, eps_u, x, 0.7, w), cfg, rtol=1e-12)
    rescaled = cfg * eps_c.std(dim=1, keepdim=True) / cfg.std(dim=1, keepdim=True)
    expect = 0.7 * rescaled + 0.3 * cfg
    got = practice_rule("GuidanceRescale")(eps_c, eps_u, x, 0.7, w)
    assert torch.allclose(got, expect, rtol=1e-12) and not torch.allclose(got, cfg, rtol=1e-3)


def test_practice_rules_against_their_formulas():
    eps_c, eps_u, x = _preds()
    w, s = 2.0, 0.7
    d_c, d_u = x - s * eps_c, x - s * eps_u
    d_g = d_c + w * (d_c - d_u)
    # CFGNorm: D = D_g min(1, |D_c| / |D_g|) (ComfyUI, cap 1)
    norm = d_g * torch.clamp(d_c.norm(dim=1, keepdim=True) / d_g.norm(dim=1, keepdim=True), max=1.0)
    assert torch.allclose(practice_rule("CFGNorm")(eps_c, eps_u, x, s, w), (x - norm) / s, rtol=1e-10)
    # dynamic thresholding: t = max(quantile_0.995 |D_g|, 1), D = clip(D_g, -t, t) / t (numpy's percentile)
    import numpy as np

    t = np.maximum(np.quantile(np.abs(d_g.numpy()), 0.995, axis=1, keepdims=True), 1.0)
    thr = torch.from_numpy(np.clip(d_g.numpy(), -t, t) / t)
    assert torch.allclose(practice_rule("DynamicThresholding")(eps_c, eps_u, x, s, w), (x - thr) / s, rtol=1e-10)
    # TCFG: eps_u replaced by its projection on the top right-singular vector of [eps_c; eps_u], by numpy's SVD
    out = []
    for c, u in zip(eps_c.numpy(), eps_u.numpy()):
        v1 = np.linalg.svd(np.stack([c, u]))[2][0]
        out.append(c + w * (c - (u @ v1) * v1))
    assert torch.allclose(practice_rule("TCFG")(eps_c, eps_u, x, s, w), torch.from_numpy(np.stack(out)), rtol=1e-9)
    # MAMBO-G with alpha = 0 is CFG
    cfg = eps_c + w * (eps_c - eps_u)
    assert torch.allclose(practice_rule("MamboG", alpha=0.0)(eps_c, eps_u, x, s, w), cfg, rtol=1e-12)


def test_practice_bad_input():
    with pytest.raises(ValueError, match="Characteristic"):
        practice_rule("Characteristic")
    with pytest.raises(ValueError, match="phi"):
        practice_rule("GuidanceRescale", phi=float("nan"))
    eps_c, eps_u, x = _preds()
    with pytest.raises(ValueError, match="sigma"):
        practice_rule("TCFG")(eps_c, eps_u, x, 0.0, 1.0)


def test_rescale_is_undefined_on_one_coordinate():
    assert practice_rule("GuidanceRescale").min_dim == 2 and practice_rule("TCFG").min_dim == 1
    r = bench_cell(_cell("practice:GuidanceRescale"))
    assert r.route == "undefined" and all(v != v for v in r.values)  # nan, not CFG's numbers


def test_min_dim_is_checked(tmp_path):
    path = tmp_path / "rule.py"
    path.write_text("def r(eps_c, eps_u, x, sigma, w):\n    return eps_c\nr.min_dim = 0\n")
    with pytest.raises(ValueError, match="min_dim must be an integer >= 1, got 0"):
        rule_source(f"{path}:r")


# --- the cache key -----------------------------------------------------------------------------------------------
def test_provider_rules_are_keyed_by_the_provider_source(tmp_path, monkeypatch):
    """A provider rule's digest (part of its cells' key) is that of the provider module's source: a copy with the
    same bytes has the same key, an edited copy another."""
    origin = ROOT / "evaluation" / "bench_providers.py"
    for name, extra in (("prov_same", ""), ("prov_edited", "\n# edited\n")):
        (tmp_path / f"{name}.py").write_text(origin.read_text() + extra)
    monkeypatch.syspath_prepend(str(tmp_path))
    keys = {}
    for name in ("bench_providers", "prov_same", "prov_edited"):
        module = "evaluation.bench_providers" if name == "bench_providers" else name
        monkeypatch.setitem(bench.PROVIDERS, "practice", Provider(module, "torch", "practice_rule"))
        keys[name] = (rule_source("practice:TCFG")[1], cell_key(_cell("practice:TCFG")))
    assert keys["bench_providers"] == keys["prov_same"]
    assert keys["prov_edited"][0] != keys["bench_providers"][0]
    assert keys["prov_edited"][1] != keys["bench_providers"][1]
    for name in ("prov_same", "prov_edited"):
        sys.modules.pop(name, None)


# --- the conformance table ---------------------------------------------------------------------------------------
@needs_diffusers
def test_conformance_doc_is_generated():
    """docs/conformance.md equals a fresh render of images.guiders.conformance() (values at their printed precision),
    and every difference names its diffusers source line."""
    from images.guiders import conformance, conformance_markdown

    rows = conformance()
    assert (ROOT / "docs" / "conformance.md").read_text() == conformance_markdown(rows)
    assert all(r.agrees or r.source.startswith("guiders/") for r in rows)
    assert {r.guider.split()[0] for r in rows} == {f"diffusers:{n}" for n in DIFFUSERS_OPTIONS}
