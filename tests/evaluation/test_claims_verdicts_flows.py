"""Pinned verdicts of the two flow claims of the ledger (CFG-Zero*, arXiv 2503.18886; APG, arXiv 2410.02416): their
--quick experiment is one shared set of cells (evaluation.flows on correlated_2d, w = 1 and 4, 10 steps, the
deterministic schedules), concluded by each claim; verdicts and the numbers behind them pinned on both sides. The
cells are computed once (one cache for the module, the fixture of test_claims_verdicts.py)."""
import numpy as np
import pytest

from evaluation.claims import get_claim
from evaluation.claims.cfg_zero_star import verdict_text
from evaluation.flows import FlowsResult, Verdict

from .test_claims_verdicts import _near, _run, cache  # noqa: F401 (cache is the module's cell-cache fixture)


def test_cfg_zero_star_closer_only_where_cfg_overshoots(cache):
    """At w = 4 on SD3-shifted and VP levels CFG overshoots (sliced W1 1.1) and CFG-Zero* (+ zero-init) is 3x
    closer; at w = 1 CFG is close (0.05-0.09) and CFG-Zero* 2.7-5x further; on uniform flow levels at w = 4 a tie."""
    o, n = _run("cfg-zero-star", cache)
    assert o.result.verdict.startswith("holds only when cfg itself lands far from the target")
    assert isinstance(o.data, FlowsResult) and o.result.figure == "flows"
    label = "CFG-Zero* (+ zero-init)"
    assert (n[f"{label}: cells closer than cfg"], n[f"{label}: cells further"], n[f"{label}: ties (within 10%)"]) == (
        2, 3, 1)
    assert (n["optimised scale alone: cells closer than cfg"], n["optimised scale alone: cells further"]) == (2, 3)
    _near(n["correlated_2d w=4 flow_shift n=10: sw1 cfg"], 1.1182, 2e-3)
    _near(n["correlated_2d w=4 flow_shift n=10: sw1 cfg_zero_star_init"], 0.3409, 2e-3)
    _near(n["correlated_2d w=4 vp_ddim n=10: sw1 cfg_zero_star_init"], 0.3230, 2e-3)
    _near(n["correlated_2d w=1 flow n=10: sw1 cfg"], 0.0493, 1e-3)
    _near(n["correlated_2d w=1 flow n=10: sw1 cfg_zero_star_init"], 0.2592, 2e-3)


def test_apg_closer_only_where_cfg_overshoots(cache):
    """APG (+ reverse momentum) is closer than CFG only where CFG overshoots (w = 4, shifted / VP levels: 0.63 and
    0.55 vs 1.1), and 3-7x further elsewhere, with or without momentum."""
    o, n = _run("apg", cache)
    assert o.result.verdict.startswith("holds only when cfg itself lands far from the target")
    assert (n["APG + momentum: cells closer than cfg"], n["APG + momentum: cells further"]) == (2, 4)
    assert (n["APG without momentum: cells closer than cfg"], n["APG without momentum: cells further"]) == (2, 4)
    _near(n["correlated_2d w=4 flow_shift n=10: sw1 apg_momentum"], 0.6318, 2e-3)
    _near(n["correlated_2d w=4 vp_ddim n=10: sw1 apg_momentum"], 0.5483, 2e-3)
    _near(n["correlated_2d w=4 flow n=10: sw1 apg"], 0.3834, 2e-3)
    _near(n["correlated_2d w=1 flow n=10: sw1 apg"], 0.3518, 2e-3)


def _verdict(rule_values, baseline_values):
    cells = tuple(("correlated_2d", 1.0, "flow", n) for n in range(10, 10 + len(rule_values)))
    return Verdict("c", "r", "cfg", "sw1", 0.1, cells, np.array(rule_values), np.array(baseline_values))


def test_verdict_text_names_the_domain_only_when_the_baseline_separates_it():
    assert verdict_text(_verdict([0.5, 1.0], [1.0, 1.0])) == "holds"  # closer and tied: never further
    assert verdict_text(_verdict([2.0, 1.0], [1.0, 1.0])) == "fails"
    separated = verdict_text(_verdict([0.5, 2.0], [1.0, 0.4]))
    assert separated.startswith("holds only when cfg itself lands far from the target (its sliced W1 >= 1.00 where")
    assert "<= 0.40 where it is further" in separated and "flow (10 steps)" in separated
    mixed = verdict_text(_verdict([0.2, 2.0], [0.3, 0.4]))  # closer where CFG is at 0.3, further where at 0.4
    assert mixed.startswith("holds only when the setting is one of these: closer in 1")


def test_conclude_refuses_another_result():
    with pytest.raises(ValueError, match="flows experiment"):
        get_claim("apg").conclude(True, (object(),))
    with pytest.raises(ValueError, match="flows experiment"):
        get_claim("cfg-zero-star").conclude(True, (object(),))
