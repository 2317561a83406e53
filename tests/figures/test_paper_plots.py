"""paper_plots.py as one job (issue 19, item 4): every table of results.md has its values, no two figures write a
file of the same name (the ledger's flows figure once overwrote flows.png), the figures' cells run in one sweep
before their compute reads them, and the command line's --workers is checked."""
import json
import re

import matplotlib
import pytest

matplotlib.use("Agg")

import paper_plots  # noqa: E402
from evaluation import flows as flows_exp  # noqa: E402
from evaluation.docs import numbers_table  # noqa: E402
from evaluation.claims import get_claim, run_ledger  # noqa: E402
from evaluation.claims.ledger import Outcome  # noqa: E402
from evaluation.sweep import cells_code  # noqa: E402
from figures import claims, flows, maps_1d  # noqa: E402
from tests.helpers import Refuses  # noqa: E402


def _rows_without_values(md: str) -> list[str]:
    """The table rows of a Markdown text (header and rule excluded) whose value cells are all empty."""
    bad = []
    for line in md.splitlines():
        if not line.startswith("|") or set(line) <= set("|-") or line.startswith("| |"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if cells[:1] in (["quantity"],):
            continue
        if not any(cells[1:]):
            bad.append(line)
    return bad


def test_table_rows_whose_names_hold_the_separator_keep_their_values():
    numbers = {"paper_1d / flow": {"cfg": {"sw1": 0.5, "tv": 0.25}},
               "a|b": {"cfg": {"sw1": 1.5, "tv": 2.0}}}
    t = numbers_table(numbers)
    assert "| paper_1d / flow / cfg | 0.5000 | 0.2500 |" in t
    assert "| a\\|b / cfg | 1.500 | 2.000 |" in t
    assert _rows_without_values(t) == []
    flat = numbers_table({"x / y": 1.0, "z": "text"})
    assert "| x / y | 1.000 |" in flat and _rows_without_values(flat) == []
    # a key holding " / " and a deeper path that prints the same stay two rows, each with its own values
    both = numbers_table({"p / q": {"r": {"m": 1.0}}, "p": {"q": {"r": {"n": 2.0}}}})
    assert "| p / q / r | 1.000 |  |" in both and "| p / q / r |  | 2.000 |" in both


def test_results_md_prints_each_number_with_its_error_to_the_digits_the_error_supports():
    md = paper_plots.markdown({"f": {"caption": "c", "numbers": {"a": {"tv": {"value": 0.28634, "error": 0.0069},
                                                                      "kl": 2.0}}}})
    assert "| a | 0.2863 ± 0.0069 | 2.000 |" in md


def test_every_table_of_results_md_has_its_values():
    results = {"f": {"caption": "c", "numbers": {"p / q": {"r": {"m": 1.0, "n": 2.0}}, "s": {"t": {"m": 3.0}}}},
               "g": {"caption": "d", "numbers": {"k": 4.0}}}
    md = paper_plots.markdown(results)
    assert _rows_without_values(md) == []
    assert "| p / q / r | 1.000 | 2.000 |" in md and "| s / t | 3.000 |  |" in md


@pytest.fixture(scope="module")
def tiny_flows():
    """A real flows experiment, as small as it gets: paper_1d, CFG, flow Euler, 2 steps, no field errors."""
    c = flows_exp.FlowsConfig(presets=("paper_1d",), weights=(1.0,), steps=(2,), schedules=("flow",), methods=("cfg",),
                              density_points=(101, 11), fields=False, grid_check=False, optimal_2d_steps=())
    return flows_exp.compute(config=c, progress=False)


def test_no_two_figures_write_the_same_file(tiny_flows, tmp_path, tmp_path_factory, monkeypatch):
    """The ledger's flow claims draw figures.flows: in paper_plots that must not replace flows.png (it did)."""
    small = run_ledger([get_claim("cfgig")], quick=True, cache=tmp_path_factory.mktemp("cache"), progress=False)
    bn = small.outcomes[0]
    outcomes = (bn, Outcome(bn.result._replace(id="cfg-zero-star", figure="flows"), tiny_flows),
                Outcome(bn.result._replace(id="apg", figure="flows"), tiny_flows))  # two claims, one shared cell
    monkeypatch.setattr(claims, "cells", lambda quick=False: [], raising=False)
    monkeypatch.setattr(claims, "compute", lambda quick=False: small._replace(outcomes=outcomes))
    monkeypatch.setattr(flows, "compute", lambda quick=False: tiny_flows)
    monkeypatch.setattr(flows, "cells", lambda quick=False: [])  # compute is replaced: its real cells are not needed
    monkeypatch.setattr(paper_plots, "FIGURES", {"flows": flows, "claims": claims})
    assert paper_plots.main(["--quick", "--only", "flows", "--only", "claims", "--out", str(tmp_path),
                             "--workers", "1", "--no-progress"]) == 0
    figs = json.loads((tmp_path / "results.json").read_text())["figures"]
    files = [f for r in figs.values() for f in r["files"]]
    assert len(files) == len(set(files)), files
    assert figs["flows"]["files"] == ["flows.png", "flows.pdf"]
    assert figs["claims"]["files"] == ["claims_cfgig.png", "claims_cfgig.pdf", "claims_flows.png", "claims_flows.pdf"]


def test_a_figure_that_would_overwrite_another_fails(tmp_path, monkeypatch):
    """The run's own guard: a second figure writing maps_1d.png is recorded as failed, the first stands."""
    monkeypatch.setattr(paper_plots, "FIGURES", {"maps_1d": maps_1d, "again": maps_1d})
    assert paper_plots.main(["--quick", "--out", str(tmp_path), "--workers", "1", "--no-progress"]) == 1
    figs = json.loads((tmp_path / "results.json").read_text())["figures"]
    assert figs["maps_1d"]["files"] == ["maps_1d.png", "maps_1d.pdf"]
    assert "already written by maps_1d" in figs["again"]["error"]


def test_cells_run_in_one_sweep_before_compute(tmp_path, monkeypatch):
    """The cells hook: paper_plots runs the gathered cells once, then compute finds every one in the cache."""
    from evaluation import sweep

    seen = []
    real = sweep.run_cells

    def spy(cells, **kw):
        seen.append((len(cells), kw.get("workers")))
        return real(cells, **kw)

    small = [c for c in get_claim("cfgig").cells(True)]
    monkeypatch.setattr(claims, "cells", lambda quick=False: small)
    monkeypatch.setattr(paper_plots, "run_cells", spy)
    monkeypatch.setenv("REG_GUIDANCE_CACHE", str(tmp_path / "cache"))

    def compute(quick=False):
        run = real(small, progress=False)
        assert run.computed == 0 and run.reused == len(set(map(sweep.cell_key, small)))
        return run_ledger([get_claim("cfgig")], quick=True, progress=False)

    monkeypatch.setattr(claims, "compute", compute)
    monkeypatch.setattr(paper_plots, "FIGURES", {"claims": claims})
    assert paper_plots.main(["--quick", "--only", "claims", "--out", str(tmp_path / "out"), "--workers", "1",
                             "--no-progress"]) == 0
    assert seen == [(len(small), 1)]


@pytest.mark.parametrize("flag", ["--workers=0", "--threads=0"])
def test_bad_counts_are_refused(flag, tmp_path, capsys):
    with pytest.raises(SystemExit):
        paper_plots.main([flag, "--out", str(tmp_path)])
    assert flag.split("=")[0] in capsys.readouterr().err


def test_figures_that_use_others_run_with_them_after_them(monkeypatch):
    """Figures without cells that draw others' arrays (``USES``) share a worker with them, after them (the findings
    figures that once did so read cached cells now: stand-ins here)."""
    from types import SimpleNamespace

    figs = {"a": SimpleNamespace(), "uses_ab": SimpleNamespace(USES=("a", "b")), "b": SimpleNamespace(),
            "alone": SimpleNamespace()}
    monkeypatch.setattr(paper_plots, "FIGURES", figs)
    groups = paper_plots._groups(["a", "uses_ab", "b", "alone"])
    assert ("a", "b", "uses_ab") in groups and ("alone",) in groups and len(groups) == 2
    assert paper_plots._groups(["uses_ab", "alone"]) == [("uses_ab",), ("alone",)]


def test_the_findings_figures_declare_their_cells():
    """curves_1d, maps_1d, trained_1d, fields_2d and closed_forms run in paper_plots' one sweep (tests of the cells
    themselves: tests/figures/test_findings_cells.py)."""
    from figures import FIGURES

    for name in ("curves_1d", "maps_1d", "trained_1d", "fields_2d", "closed_forms"):
        assert callable(getattr(FIGURES[name], "cells", None)) and FIGURES[name].cells(True), name


def _figure(name: str, cells: list, partial: bool = False):
    """A stand-in figure module with the cells hook whose compute reads its cells (through the cache) and plots
    nothing."""
    from types import SimpleNamespace

    from evaluation.sweep import run_cells

    def compute(quick=False):
        return run_cells(cells, progress=False, keep_going=partial).results

    ns = SimpleNamespace(NAME=name, CAPTION=name, cells=lambda quick=False: list(cells), compute=compute,
                         plot=lambda arrays, out: [], summary=lambda arrays: {"x": str(arrays[0])})
    if partial:
        ns.PARTIAL = True
    return ns


def test_a_failing_cell_fails_only_the_figures_that_list_it(tmp_path, monkeypatch):
    """Found by the census (s7): one cell of the whole job that raised (a wu-gmm cell not converged, an autoguidance
    2-D cell over the node budget) stopped paper_plots' one sweep and failed EVERY figure with cells. Now the sweep
    goes on; the figures listing the cell fail naming it, the others are drawn, and a figure that copes with failed
    cells (``PARTIAL``, the claims ledger) computes anyway."""
    monkeypatch.setenv("REG_GUIDANCE_CACHE", str(tmp_path / "cache"))
    figs = {"good": _figure("good", [Refuses(1.0)]), "bad": _figure("bad", [Refuses(2.0), Refuses(-1.0)]),
            "copes": _figure("copes", [Refuses(-1.0), Refuses(3.0)], partial=True)}
    monkeypatch.setattr(paper_plots, "FIGURES", figs)
    assert paper_plots.main(["--out", str(tmp_path / "out"), "--workers", "1", "--no-progress"]) == 1
    res = json.loads((tmp_path / "out" / "results.json").read_text())["figures"]
    assert res["good"]["numbers"] == {"x": "2.0"}
    assert "1 of its cells failed" in res["bad"]["error"] and "x = -1.0 refuses" in res["bad"]["error"]
    assert "error" not in res["copes"] and res["copes"]["numbers"]["x"].startswith("cell Refuses(x=-1.0) failed")
    # each drawn figure is stamped with its cells' code version, as the ledger's entries are
    assert res["good"]["code"] == cells_code([Refuses(1.0)]) and res["copes"]["code"] == cells_code([Refuses(3.0)])
    assert "code" not in res["bad"]


def test_a_figure_is_drawn_while_the_cells_of_the_others_compute(tmp_path, monkeypatch):
    """Issue 19 (--quick within 60 s on 2 cores): every figure was drawn after the last cell, one after the other
    (about 20 CPU-s of drawing in --quick with one core idle). Now a figure is drawn as soon as its own cells are
    done, while the workers compute the others' cells; results.json still lists the figures in order."""
    import threading

    from evaluation import sweep

    monkeypatch.setenv("REG_GUIDANCE_CACHE", str(tmp_path / "cache"))
    drawn, plots = threading.Event(), []
    early, late = _figure("early", [Refuses(1.0), Refuses(1.0)]), _figure("late", [Refuses(2.0), Refuses(1.0)])
    late_drawn = threading.Event()
    early.plot = lambda arrays, out: plots.append(arrays) or drawn.set() or []
    late.plot = lambda arrays, out: late_drawn.set() or []
    waited = []

    def one_cell_at_a_time(cells, **kw):  # the sweep, in this process: "late"'s cell waits for "early" to be drawn
        def on_result(cell, result):
            kw["on_result"](cell, result)
            waited.append((drawn if cell == Refuses(1.0) else late_drawn).wait(60))

        return sweep.run_cells(sorted(cells, key=lambda c: c.x), **{**kw, "workers": 1, "on_result": on_result})

    monkeypatch.setattr(paper_plots, "run_cells", one_cell_at_a_time)
    monkeypatch.setattr(paper_plots, "FIGURES", {"late": late, "early": early})
    assert paper_plots.main(["--out", str(tmp_path / "out"), "--workers", "2", "--no-progress"]) == 0
    assert waited == [True, True]  # "early" was drawn before the sweep went on to "late"'s cell
    assert len(plots) == 1  # once, though it lists its cell twice (the quick job's dimension figure does)
    res = json.loads((tmp_path / "out" / "results.json").read_text())["figures"]
    assert list(res) == ["late", "early"] and res["early"]["numbers"] == {"x": "2.0"}


def test_a_spawned_worker_does_not_import_the_figures_again():
    """Issue 19 (--quick within 60 s): each spawned worker ran paper_plots.py again as ``__mp_main__`` (what
    multiprocessing's spawn does with the main script) and so imported matplotlib, seaborn and every figure module
    before its first cell (about 1.3 CPU-s each, while the main process waits). A worker now skips them."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import runpy, sys; ns = runpy.run_path(sys.argv[1], run_name='__mp_main__'); "
            "print(sorted(m for m in ('matplotlib', 'seaborn', 'figures', 'torch') if m in sys.modules), "
            "callable(ns['_compute']))")
    root = Path(paper_plots.__file__).resolve().parent
    out = subprocess.run([sys.executable, "-c", code, str(root / "paper_plots.py")], cwd=root, capture_output=True,
                         text=True, check=True).stdout.split("\n")[-2]
    assert out == "[] True"


def test_a_warm_rerun_keeps_the_files_of_unchanged_figures_and_redraws_changed_ones(tmp_path, monkeypatch):
    """Issue 19 (a warm rerun within 60 s): drawing the figures was over half of the warm full job. A figure whose
    arrays, code and matplotlib are those of its last drawing in --out keeps its files; changed arrays, a missing
    file or --redraw draw it again."""
    import types

    calls, data = [], {"v": 1.0}

    def plot(arrays, out):
        calls.append(arrays)
        path = out / "stub.png"
        path.write_text(str(arrays))
        return [path]

    stub = types.SimpleNamespace(NAME="stub", CAPTION="c", compute=lambda quick=False: dict(data), plot=plot,
                                 summary=lambda a: {"v": a["v"]})
    monkeypatch.setattr(paper_plots, "FIGURES", {"stub": stub})
    run = lambda *extra: paper_plots.main(["--out", str(tmp_path), "--workers", "1", "--no-progress", *extra])  # noqa: E731
    assert run() == 0 and len(calls) == 1
    assert run() == 0 and len(calls) == 1  # unchanged: kept
    assert json.loads((tmp_path / "results.json").read_text())["figures"]["stub"]["files"] == ["stub.png"]
    data["v"] = 2.0
    assert run() == 0 and len(calls) == 2 and (tmp_path / "stub.png").read_text() == str({"v": 2.0})
    (tmp_path / "stub.png").unlink()
    assert run() == 0 and len(calls) == 3  # its file is gone: drawn again
    assert run("--redraw") == 0 and len(calls) == 4
    monkeypatch.setattr(paper_plots, "_stamp", lambda name, arrays, quick: None)  # arrays that do not pickle
    assert run() == 0 and len(calls) == 5


def test_first_cells_are_the_smaller_figures_fewest_cells_first():
    """Issue 19: the cells of every figure but the largest, the figures with the fewest distinct cells first (drawn
    while the rest compute)."""
    big, small = [Refuses(float(x)) for x in range(4)], [Refuses(20.0)]
    mid = [Refuses(10.0), Refuses(11.0), Refuses(10.0)]
    assert paper_plots.first_cells({"big": big, "mid": mid, "small": small}) == small + mid
    assert paper_plots.first_cells({"only": big}) == [] and paper_plots.first_cells({}) == []


def test_start_workers_starts_every_worker_before_the_imports(monkeypatch):
    """Issue 19: paper_plots' pool is started before its imports, with one warm-up task per worker (a process is
    spawned per task submitted while none is idle); none for one worker, --help or a --workers main will refuse."""
    made = []

    class Pool:
        def __init__(self, max_workers, mp_context, initializer):
            made.append((max_workers, mp_context.get_start_method(), initializer))
            self.tasks = []

        def submit(self, fn):
            self.tasks.append(fn)

    monkeypatch.setattr(paper_plots.cf, "ProcessPoolExecutor", Pool)
    pool = paper_plots.start_workers(["--quick", "--workers", "3"])
    assert made == [(3, "spawn", paper_plots._start_worker)] and pool.tasks == [paper_plots._warm_up] * 3
    for argv in (["--workers", "1"], ["--workers", "x"], ["--workers", "2", "--help"], ["-h"]):
        assert paper_plots.start_workers(argv) is None
    monkeypatch.setattr(paper_plots.os, "cpu_count", lambda: 2)
    assert paper_plots.start_workers(["--quick"]).tasks == [paper_plots._warm_up] * 2  # default: every core
