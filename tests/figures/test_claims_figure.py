"""The ledger's figures inside paper_plots (the ``claims`` entry): registered, drawn from the ledger's own
outcomes, its numbers the ledger's verdicts, and a failing figure reported without stopping the others.
The whole quick ledger is too slow for a unit test, so these run one cheap claim through the same code."""
import json

import matplotlib
import pytest

matplotlib.use("Agg")

from evaluation.claims import CLAIMS, get_claim, run_ledger  # noqa: E402
from evaluation.claims.ledger import Outcome  # noqa: E402
from figures import FIGURES, claims  # noqa: E402


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """The ledger run of one cheap claim (the CFG-IG field claim: seconds)."""
    return run_ledger([get_claim("cfgig")], quick=True, cache=tmp_path_factory.mktemp("cache"), progress=False)


def test_every_available_claim_has_its_figure_module():
    assert FIGURES["claims"] is claims
    for c in CLAIMS:
        mod = __import__(f"figures.{c.figure}", fromlist=["plot"])
        assert mod.NAME == c.figure and callable(mod.plot), c.id


def test_summary_counts_the_ledgers_verdicts(small_run):
    """The findings table holds numbers only; the verdicts and key numbers live once, in claims.md (the full run's
    findings printed every verdict as text that the docs test could not check)."""
    r = small_run.outcomes[0].result
    assert claims.summary(small_run) == {"claims": 1, "holds": 0, "holds only when": 1, "fails": 0, "not converged": 0}
    assert r.verdict.startswith("holds only when the conditional is narrower")  # pinned in test_claims_verdicts.py


def test_paper_plots_writes_the_ledger_figures_and_table(small_run, tmp_path, monkeypatch):
    import paper_plots

    monkeypatch.setattr(claims, "compute", lambda quick=False: small_run)  # the full quick ledger takes minutes
    monkeypatch.setattr(claims, "cells", lambda quick=False: [])
    assert paper_plots.main(["--quick", "--only", "claims", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "claims_cfgig.png").stat().st_size > 0 and (tmp_path / "claims_cfgig.pdf").stat().st_size > 0
    res = json.loads((tmp_path / "results.json").read_text())["figures"]["claims"]
    assert res["files"] == ["claims_cfgig.png", "claims_cfgig.pdf"]
    assert res["numbers"] == claims.summary(small_run)
    md = (tmp_path / "results.md").read_text()
    assert "| holds only when | 1 |" in md


def test_a_failing_figure_is_reported_and_the_others_are_drawn(small_run, tmp_path):
    good = small_run.outcomes[0]
    broken = Outcome(good.result._replace(figure="claims_theorem1"), good.data)  # wrong arrays for that figure
    paths, failed = claims.draw([broken, good], tmp_path)
    assert [p.name for p in paths] == ["claims_cfgig.png", "claims_cfgig.pdf"]
    assert len(failed) == 1 and failed[0].startswith("claims_theorem1: ")
    with pytest.raises(RuntimeError, match="claims_theorem1"):
        claims.plot(small_run._replace(outcomes=(broken, good)), tmp_path)


def test_quick_leaves_the_ledger_out_unless_named(tmp_path, monkeypatch, capsys):
    import paper_plots

    def never(quick=False):
        raise AssertionError("the ledger ran in a plain --quick")

    monkeypatch.setattr(claims, "compute", never)
    monkeypatch.setattr(paper_plots, "FIGURES", {"maps_1d": FIGURES["maps_1d"], "claims": claims})
    assert paper_plots.main(["--quick", "--out", str(tmp_path), "--workers", "1"]) == 0
    assert "claims         skipped in --quick (draw it with --only claims)" in capsys.readouterr().out
    assert set(json.loads((tmp_path / "results.json").read_text())["figures"]) == {"maps_1d"}
