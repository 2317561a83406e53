"""Session-11 adversarial round (issue 20, /work/notes/probe11.md): paper_plots keeps a figure's files only when they
are the files its last drawing wrote in --out, and what it reads back from --out (.drawn.json, results.json) cannot
stop a run."""
import json
import types

import matplotlib
import pytest

matplotlib.use("Agg")

import paper_plots  # noqa: E402


@pytest.fixture
def stub(tmp_path, monkeypatch):
    """A figure drawing stub.png, and ``run(*flags) -> exit status`` into ``tmp_path``; ``calls`` counts drawings."""
    calls = []

    def plot(arrays, out):
        calls.append(arrays)
        path = out / "stub.png"
        path.write_text(f"drawn {arrays}")
        return [path]

    fig = types.SimpleNamespace(NAME="stub", CAPTION="c", compute=lambda quick=False: {"v": 1.0}, plot=plot,
                                summary=lambda a: {"v": a["v"]})
    monkeypatch.setattr(paper_plots, "FIGURES", {"stub": fig})
    ns = types.SimpleNamespace(calls=calls, out=tmp_path)
    ns.run = lambda *extra: paper_plots.main(["--out", str(tmp_path), "--workers", "1", "--no-progress", *extra])
    return ns


def _files(out):
    return json.loads((out / "results.json").read_text())["figures"]["stub"]["files"]


def test_a_file_redrawn_since_by_another_checkout_is_drawn_again(stub):
    """Before: another checkout (or a hand edit) that overwrote stub.png after the last run left .drawn.json as it was,
    and the rerun kept the foreign drawing while results.json described this code's numbers."""
    assert stub.run() == 0 and len(stub.calls) == 1
    assert stub.run() == 0 and len(stub.calls) == 1  # unchanged: kept
    (stub.out / "stub.png").write_text("another checkout's drawing")
    assert stub.run() == 0 and len(stub.calls) == 2
    assert (stub.out / "stub.png").read_text() == "drawn {'v': 1.0}"


def test_a_drawn_record_copied_from_another_out_keeps_no_stale_file(stub, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    assert paper_plots.main(["--out", str(other), "--workers", "1", "--no-progress"]) == 0
    (stub.out / "stub.png").write_text("stale")
    (stub.out / paper_plots.DRAWN).write_text((other / paper_plots.DRAWN).read_text())
    assert stub.run() == 0 and (stub.out / "stub.png").read_text() == "drawn {'v': 1.0}"


@pytest.mark.parametrize("files", [[1], [None], ["results.md"], ["/etc/hostname"], ["../x.png"], [paper_plots.DRAWN]])
def test_a_drawn_record_naming_anything_but_the_figures_own_file_is_a_miss(stub, files):
    """Before, with the figure's own stamp: files [1] or [None] failed the figure with a TypeError; results.md,
    /etc/hostname or ../x.png were kept as the figure's drawing and listed in results.json."""
    (stub.out.parent / "x.png").write_text("foreign")
    assert stub.run() == 0
    record = json.loads((stub.out / paper_plots.DRAWN).read_text())
    record["stub"]["files"] = files
    (stub.out / paper_plots.DRAWN).write_text(json.dumps(record))
    assert stub.run() == 0 and len(stub.calls) == 2 and _files(stub.out) == ["stub.png"]


def test_a_drawn_record_that_cannot_be_written_costs_a_redraw_not_the_results(stub, capsys):
    """Before: a folder named .drawn.json ended the run in an IsADirectoryError traceback after every figure was drawn,
    and results.json / results.md were never written."""
    (stub.out / paper_plots.DRAWN).mkdir()
    assert stub.run() == 0
    assert _files(stub.out) == ["stub.png"] and (stub.out / "results.md").is_file()
    assert "cannot record what was drawn" in capsys.readouterr().err


@pytest.mark.parametrize("seconds", [float("nan"), float("inf"), -1e9, "abc", None])
def test_the_last_runs_seconds_that_are_not_finite_are_ignored(stub, seconds):
    """Before: a results.json in --out whose seconds were NaN or Infinity (JSON allows both tokens) crashed the run at
    the bar's first redraw (``cannot convert float NaN to integer``)."""
    assert stub.run() == 0
    data = json.loads((stub.out / "results.json").read_text())
    data["figures"]["stub"]["seconds"] = seconds
    (stub.out / "results.json").write_text(json.dumps(data))
    assert paper_plots._previous_seconds(stub.out) == {}
    assert stub.run() == 0
