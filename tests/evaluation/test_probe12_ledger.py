"""Session-12 closing round (issue 20, /work/notes/probe12.md): a claim's outcome from results that are not one per
cell is a ValueError naming the claim and the missing cells (before: the claim's own bare ``KeyError``), and Ctrl-C
during the ledger ends in one line saying what is kept."""
import pytest

from evaluation.claims import get_claim
from evaluation.claims.ledger import Outcome
from evaluation.sweep import CellFailed
from tests.helpers import Refuses


def _claim(n_cells=3, partial=False):
    base = get_claim("theorem1")
    return base._replace(id="toy", partial=partial, cells=lambda quick: [Refuses(float(i)) for i in range(n_cells)],
                         conclude=lambda q, r: Outcome(base.result("holds", "k", [("n", r[2])]), None))


@pytest.mark.parametrize("partial", [False, True])
def test_an_outcome_from_fewer_results_than_cells_names_the_claim_and_the_missing_cells(partial):
    """Before: the claim's conclude looked its cells up and raised a bare ``KeyError: OutputCell(...)`` (reg-samples;
    the toy's conclude an ``IndexError``); a partial claim given only failures was 'not converged' for cells it never
    saw."""
    claim = _claim(partial=partial)
    with pytest.raises(ValueError, match=r"claim toy: 2 results for its 3 cells \(quick=True\); missing: "
                                         r"Refuses\(x=2\.0\)"):
        claim.outcome(True, (1.0, 2.0))
    with pytest.raises(ValueError, match=r"claim toy: 1 results for its 3 cells .*missing: Refuses\(x=1\.0\), "
                                         r"Refuses\(x=2\.0\)"):
        claim.outcome(True, (CellFailed("c", "ValueError: x"),))
    with pytest.raises(ValueError, match=r"claim toy: 4 results for its 3 cells \(quick=False\); one result per cell"):
        claim.outcome(False, (1.0, 2.0, 3.0, 4.0))
    assert claim.outcome(True, (1.0, 2.0, 3.0)).result.numbers[0].value == 3.0


def test_a_ledger_passes_the_cells_it_built_so_a_claim_builds_them_once():
    """The check costs nothing in the ledger: ``run_ledger`` hands the cells it already built (``cells(False)`` of
    reg-samples takes seconds); a direct call builds them once."""
    calls = []
    claim = _claim()._replace(cells=lambda quick: calls.append(quick) or [Refuses(0.0), Refuses(1.0), Refuses(2.0)])
    claim.outcome(True, (1.0, 2.0, 3.0), cells=[Refuses(0.0), Refuses(1.0), Refuses(2.0)])
    assert calls == []
    claim.outcome(True, (1.0, 2.0, 3.0))
    assert calls == [True]
    for bad in (5, None.__class__, "abc"):
        with pytest.raises(ValueError, match="claim toy: cells must be the list of its cells"):
            claim.outcome(True, (1.0, 2.0, 3.0), cells=bad)


def _ledger_main(monkeypatch, argv, figures=False, handler=None):
    """``python -m evaluation.claims`` in-process on theorem1 with two stand-in cells (computed in milliseconds);
    a Ctrl-C that escapes ``main`` fails the test (pytest would end the session on it)."""
    import signal

    from evaluation.claims import __main__ as cli

    base = get_claim("theorem1")
    toy = base._replace(cells=lambda quick: [Refuses(1.0), Refuses(2.0)],
                        conclude=lambda q, r: Outcome(base.result("holds", "k", [("n", r[0])]), None))
    monkeypatch.setattr(cli, "get_claim", lambda i: toy)
    previous = signal.signal(signal.SIGINT, handler or signal.default_int_handler)  # as in a terminal
    try:
        return cli.main(["--only", "theorem1", "--workers", "1", *argv] + ([] if figures else ["--no-figures"]))
    except KeyboardInterrupt as err:
        pytest.fail(f"Ctrl-C escaped the ledger's main: {type(err).__name__}: {err}")
    finally:
        signal.signal(signal.SIGINT, previous)


def _last_line(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.replace("\r", "\n").strip().splitlines()[-1]


def test_a_real_sigint_between_the_two_ledger_files_writes_both_then_says_so(tmp_path, capsys, monkeypatch):
    """Before: SIGINT after claims.md was written escaped as a KeyboardInterrupt traceback and left claims.json
    (the file a later ``--only`` run merges into) older than claims.md. Now both are written, then one line."""
    import json
    import os
    import signal

    from evaluation.claims import __main__ as cli

    real = cli.write_atomically

    def write_then_sigint(path, text):
        real(path, text)
        if path.name == "claims.md":
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(cli, "write_atomically", write_then_sigint)
    out = tmp_path / "out"
    assert _ledger_main(monkeypatch, ["--quick", "--out", str(out), "--cache", str(tmp_path / "c")]) == 130
    assert _last_line(capsys) == f"interrupted after the ledger was written to {out} (claims.md, claims.json)"
    assert [c["id"] for c in json.loads((out / "claims.json").read_text())["claims"]] == ["theorem1"]
    assert "theorem1" in (out / "claims.md").read_text()
    # a run that ignores SIGINT (started with nohup or in the background) is not interrupted by the deferral
    out2 = tmp_path / "out2"
    assert _ledger_main(monkeypatch, ["--quick", "--out", str(out2), "--cache", str(tmp_path / "c")],
                        handler=signal.SIG_IGN) == 0
    assert (out2 / "claims.json").exists()


def test_ctrl_c_before_the_cells_after_the_ledger_or_while_drawing_says_what_is_kept(tmp_path, capsys, monkeypatch):
    """Before: Ctrl-C before the sweep (e.g. while a --scheduler is tried for 5 s) or while --update-docs publishes
    ended in a traceback; one while drawing said the --out folder was unchanged though figures in it were replaced."""
    import evaluation.docs
    import figures.claims
    from evaluation.claims import __main__ as cli

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    out, cache = tmp_path / "out", tmp_path / "c"
    with monkeypatch.context() as m:
        m.setattr(cli, "check_sweep_arguments", interrupt)
        assert _ledger_main(monkeypatch, ["--quick", "--out", str(out), "--cache", str(cache)]) == 130
        assert _last_line(capsys) == f"interrupted before any cell ran: {out} is unchanged"
    with monkeypatch.context() as m:
        m.setattr(evaluation.docs, "publish", interrupt)  # never the real one: it would write docs/
        assert _ledger_main(monkeypatch, ["--update-docs", "--out", str(out), "--cache", str(cache)]) == 130
        assert _last_line(capsys) == (f"interrupted after the ledger was written to {out} (claims.md, claims.json); "
                                      "docs/ not updated: rerun with --update-docs")
    with monkeypatch.context() as m:
        m.setattr(figures.claims, "draw", interrupt)
        assert _ledger_main(monkeypatch, ["--quick", "--out", str(out), "--cache", str(cache)], figures=True) == 130
        assert _last_line(capsys) == (f"interrupted while drawing the figures (cells cached in {cache}): claims.md and "
                                      f"claims.json in {out} are unchanged, the figures drawn so far replace theirs; "
                                      "rerun to finish")
