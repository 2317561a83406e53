"""Pinned verdicts of the two flow claims of the ledger (CFG-Zero*, arXiv 2503.18886; APG, arXiv 2410.02416): their
--quick experiment is one shared set of cells (evaluation.flows on correlated_2d, w = 1 and 4, 10 steps, the
deterministic schedules), concluded by each claim; verdicts and the numbers behind them pinned on both sides. The
cells are computed once (one cache for the module, the fixture of test_claims_verdicts.py); they are the claims'
real cells (minutes), so the verdict pins are ``ledger`` tests."""
import numpy as np
import pytest

from evaluation.claims import get_claim
from evaluation.claims.ledger import NOT_CONVERGED
from evaluation.claims.cfg_zero_star import verdict_text
from evaluation.flows import FlowsResult, Verdict

from .test_claims_verdicts import _run, cache  # noqa: F401 (cache is the module's cell-cache fixture)


def _converged_flow_claim(claim_id, cache):
    """Issue 19: the flow claims conclude (their sliced W1 is evaluation.flows.pushed_sw1's, no output grid)."""
    o, n = _run(claim_id, cache)
    assert o.result.verdict != NOT_CONVERGED, o.result.key_number
    assert isinstance(o.data, FlowsResult) and o.result.figure == "flows"
    for x in o.result.numbers:  # every sliced W1 within its tolerance (TOL_2D)
        if ": sw1 " in x.name:
            assert 0 <= x.error <= 5e-3, x
    return o, n


@pytest.mark.ledger
def test_cfg_zero_star_closer_only_where_cfg_overshoots(cache):
    """At w = 4 on SD3-shifted and VP levels CFG overshoots and CFG-Zero* (+ zero-init) is closer; at w = 1 CFG is
    close and CFG-Zero* further (sliced W1 1.1443 vs 0.360 at w = 4 shifted, 0.1028 vs 0.2634 at w = 1 uniform)."""
    o, n = _converged_flow_claim("cfg-zero-star", cache)
    assert o.result.verdict.startswith("holds only when cfg itself lands far from the target")
    label = "CFG-Zero* (+ zero-init)"
    assert n[f"{label}: cells closer than cfg"] >= 2 and n[f"{label}: cells further"] >= 2
    assert n["correlated_2d w=4 flow_shift n=10: sw1 cfg"] > 2 * n["correlated_2d w=4 flow_shift n=10: sw1 cfg_zero_star_init"]
    assert n["correlated_2d w=1 flow n=10: sw1 cfg_zero_star_init"] > 2 * n["correlated_2d w=1 flow n=10: sw1 cfg"]


@pytest.mark.ledger
def test_apg_closer_only_where_cfg_overshoots(cache):
    """APG (+ reverse momentum) is closer than CFG only where CFG overshoots (w = 4, shifted / VP levels: 0.653
    and 0.565 vs 1.144 and 1.105), and further elsewhere, with or without momentum."""
    o, n = _converged_flow_claim("apg", cache)
    assert o.result.verdict.startswith("holds only when cfg itself lands far from the target")
    assert n["APG + momentum: cells closer than cfg"] >= 2 and n["APG + momentum: cells further"] >= 2
    assert n["correlated_2d w=4 flow_shift n=10: sw1 cfg"] > n["correlated_2d w=4 flow_shift n=10: sw1 apg_momentum"]


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
