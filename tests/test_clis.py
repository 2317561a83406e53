"""The command-line entry points: no partial flag names, outputs checked before the work, the claims ledger
merged across ``--only`` runs, Ctrl-C and an unwritable cache ending in one line (issue 20, defects 5 and 9 and
the ledger's SIGINT; issue 21, item 5)."""
import ast
import importlib
import json
import os
import re
from pathlib import Path

import pytest

from sampler.files import check_writable_dir

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".git", ".venv", "venv", "out", "node_modules", "build", "dist"}


def _python_files():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if not (SKIP & set(rel.parts)) and not any(p.startswith(".") for p in rel.parts):
            yield rel, path


def test_every_argument_parser_refuses_partial_flag_names():
    """argparse accepts ``--case`` for ``--cases`` unless told not to: every parser in the repository (entry
    points, benchmarks, anything added later) passes ``allow_abbrev=False``."""
    found, bad = [], []
    for rel, path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(), str(rel))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "ArgumentParser":
                found.append(f"{rel}:{node.lineno}")
                kw = {k.arg: k.value for k in node.keywords}
                if not (isinstance(kw.get("allow_abbrev"), ast.Constant) and kw["allow_abbrev"].value is False):
                    bad.append(f"{rel}:{node.lineno}")
    assert len(found) >= 14, found  # paper_plots, evaluation (3), images (3), toy (2), benchmarks (5)
    assert not bad, f"ArgumentParser without allow_abbrev=False: {bad}"


@pytest.mark.parametrize("module,argv", [("evaluation.claims.__main__", ["--qui"]), ("toy.train", ["--preset", "paper_1d", "--epoch", "1"]),
                                         ("images.run", ["--swe"])])
def test_a_partial_flag_is_an_error(module, argv, capsys, monkeypatch, tmp_path):
    mod = importlib.import_module(module)
    _tripwire(monkeypatch, mod, *[n for n in ("train_network", "run_shipped", "load_digits_split", "run_ledger")
                                  if hasattr(mod, n)])
    monkeypatch.chdir(tmp_path)  # whatever a wrongly accepted flag writes lands here
    with pytest.raises(SystemExit) as e:
        mod.main(argv)
    assert e.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def _tripwire(monkeypatch, mod, *names):
    def tripwire(*a, **k):
        raise AssertionError(f"{mod.__name__} started working before checking its arguments and outputs")

    for name in names:
        monkeypatch.setattr(mod, name, tripwire)


def _error(capsys, call) -> str:
    """The one-line argparse error of ``call`` (exit status 2)."""
    with pytest.raises(SystemExit) as e:
        call()
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.fixture
def blocker(tmp_path):
    """A file where an output folder should be: every path below it is unwritable."""
    f = tmp_path / "file"
    f.write_text("")
    return f


def test_check_writable_dir(tmp_path, blocker):
    assert check_writable_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b" and not list((tmp_path / "a").rglob("*.*"))
    with pytest.raises(OSError):
        check_writable_dir(blocker / "sub")


# --- toy.train --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv,match", [
    (["--epochs", "0"], "epochs must be a positive integer, got 0"),
    (["--lr", "-1"], "lr must be finite and > 0, got -1.0"),
    (["--batch-size", "512", "--n-samples", "256"], "batch_size 512 exceeds n_samples 256"),
    (["--label-dropout", "1"], "label_dropout must lie in [0, 1), got 1.0"),
    (["--device", "bogus"], "--device: device must be 'auto', 'cpu' or 'cuda[:i]', got 'bogus'"),
    (["--threads", "0"], "--threads must be >= 1, got 0"),
])
def test_toy_train_bad_arguments_are_argparse_errors(argv, match, tmp_path, capsys, monkeypatch):
    """Defect 9: these were 11-frame tracebacks (some after the first network had trained)."""
    import toy.train as cli

    _tripwire(monkeypatch, cli, "train_network")
    line = _error(capsys, lambda: cli.main(["--preset", "paper_1d", "--out", str(tmp_path)] + argv))
    assert line.startswith("python -m toy.train: error:") and match in line


def test_toy_train_checks_its_output_before_training(blocker, capsys, monkeypatch):
    """Defect 9: ``--out /proc/x`` trained fully, then died with a traceback."""
    import toy.train as cli

    _tripwire(monkeypatch, cli, "train_network")
    for out in (blocker / "sub", Path("/proc/x")):
        line = _error(capsys, lambda: cli.main(["--preset", "paper_1d", "--out", str(out)]))
        assert f"cannot write to --out {out}" in line


def test_toy_train_does_not_replace_the_shipped_checkpoints_by_default(tmp_path, monkeypatch, capsys):
    """Issue 21, item 5: the default --out was the package's toy/checkpoints (tracked files, and what
    toy.load_pretrained reads). Now it is out/toy/checkpoints under the working folder, and --help says so."""
    import toy.train as cli
    from toy import CHECKPOINT_DIR, load_checkpoint

    assert cli.CHECKPOINT_DIR == CHECKPOINT_DIR
    shipped = tmp_path / "shipped"  # stands in for the package's folder (the real one is never written here)
    monkeypatch.setattr(cli, "CHECKPOINT_DIR", shipped)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--preset", "correlated_2d", "--role", "weak", "--epochs", "1", "--n-samples", "256",
                     "--device", "cpu", "--no-progress"]) == 0
    written = tmp_path / "out" / "toy" / "checkpoints" / "correlated_2d_weak.pt"
    assert load_checkpoint(written, preset="correlated_2d", role="weak").config.epochs == 1
    assert not shipped.exists()
    capsys.readouterr()
    monkeypatch.setenv("COLUMNS", "10000")  # no line breaks inside the paths
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "default out/toy/checkpoints" in help_text and str(shipped) in help_text


# --- images -----------------------------------------------------------------------------------------------
def test_images_run_checks_its_output_and_rows_before_the_work(tmp_path, blocker, capsys, monkeypatch):
    """Defect 9: ``--out /proc/x`` and ``--replot`` without rows.csv gave bare FileNotFoundErrors."""
    import images.run as cli

    _tripwire(monkeypatch, cli, "run_shipped", "load_digits_split")
    for out in (blocker / "sub", Path("/proc/x")):
        line = _error(capsys, lambda: cli.main(["--sweep", "--quick", "--out", str(out)]))
        assert f"cannot write to --out {out}" in line
    line = _error(capsys, lambda: cli.main(["--replot", "--out", str(tmp_path / "empty")]))
    assert f"--replot reads {tmp_path / 'empty' / 'rows.csv'}, which does not exist" in line
    (tmp_path / "empty" / "rows.csv").write_text("a,b\n1,2\n")
    line = _error(capsys, lambda: cli.main(["--replot", "--out", str(tmp_path / "empty")]))
    assert "--replot cannot read" in line and "does not hold sweep rows" in line


@pytest.mark.parametrize("module,work", [("images.train", "train_unet"), ("images.classifier", "train_classifier")])
def test_image_trainers_check_their_output_before_training(module, work, blocker, capsys, monkeypatch):
    cli = importlib.import_module(module)
    _tripwire(monkeypatch, cli, work)
    line = _error(capsys, lambda: cli.main(["--out", str(blocker / "sub" / "net.pt")]))
    assert f"cannot write to --out {blocker / 'sub' / 'net.pt'}" in line


def test_image_trainers_do_not_replace_the_shipped_checkpoints_by_default(tmp_path, monkeypatch):
    """The UNet trainer wrote to the shipped digits_unet.pt by default, even with --weak (the weak model
    replaced the strong one); now both trainers write under out/images/checkpoints unless told."""
    import images.classifier as clf
    import images.train as unet

    saved = []
    monkeypatch.chdir(tmp_path)

    class Stop(Exception):
        pass

    def fake_save(path, *a, **k):
        saved.append(Path(path))
        raise Stop

    monkeypatch.setattr(unet, "train_unet", lambda *a, **k: type("R", (), {"net": unet.DigitsUNet(unet.UNetConfig(
        width=8, groups=8)), "seconds": 0.0, "losses": [0.0]})())
    monkeypatch.setattr(unet, "save_checkpoint", fake_save)
    monkeypatch.setattr(clf, "train_classifier", lambda *a, **k: type("R", (), {"net": None, "seconds": 0.0,
                                                                                 "test_accuracy": 1.0})())
    monkeypatch.setattr(clf, "save_classifier", fake_save)
    for main, argv in ((unet.main, []), (unet.main, ["--weak"]), (clf.main, [])):
        with pytest.raises(Stop):
            main(argv)
    out = Path("out/images/checkpoints")
    assert saved == [out / "digits_unet.pt", out / "digits_unet_weak.pt", out / "digits_classifier.pt"]


class _Unprintable(float):
    def __str__(self):
        raise RuntimeError("disk full")

    __repr__ = __str__


def test_sweep_rows_are_written_atomically(tmp_path):
    """A write that fails part-way (here a value that cannot be written) leaves the old rows.csv whole; it
    used to be truncated first."""
    from images.sweep import SweepResult, SweepRow
    from images.sweep_stats import read_csv, write_csv

    row = SweepRow("ddpm", 0, "cfg", "", 1.0, 2.0, 3.0, 0.5, 0.1)
    path = write_csv(SweepResult(None, [row, row._replace(seed=1)], None, 0.0), tmp_path / "rows.csv")
    assert read_csv(path) == [row, row._replace(seed=1)]
    before = path.read_text()
    with pytest.raises(RuntimeError, match="disk full"):
        write_csv(SweepResult(None, [row, row._replace(fd=_Unprintable(1.0))], None, 0.0), path)
    assert path.read_text() == before and not list(tmp_path.glob("*.tmp"))


# --- the claims ledger ------------------------------------------------------------------------------------
def _ledger(out):
    data = json.loads((out / "claims.json").read_text())
    return {c["id"]: c for c in data["claims"]}, (out / "claims.md").read_text()


def test_ledger_runs_with_different_only_are_merged(tmp_path, capsys):
    """Defect 5 (data loss): a second run with another --only into the same --out kept only its own claims.
    Now it replaces its entries and keeps the others, each stamped with the run that made it."""
    from evaluation.claims.__main__ import main

    out, cache = tmp_path / "out", str(tmp_path / "cache")
    assert main(["--quick", "--only", "cfgig", "--out", str(out), "--cache", cache, "--no-figures"]) == 0
    first, _ = _ledger(out)
    assert main(["--quick", "--only", "cfgpp", "--out", str(out), "--cache", cache, "--no-figures"]) == 0
    merged, md = _ledger(out)
    assert list(merged) == ["cfgpp", "cfgig"]  # ledger order, not run order
    assert merged["cfgig"] == first["cfgig"]  # kept exactly, with its own stamp
    assert merged["cfgpp"]["run"]["quick"] and merged["cfgpp"]["run"]["date"].endswith("Z")
    assert len(merged["cfgpp"]["run"]["code"]) == 12
    assert "| cfgpp |" in md and "| cfgig |" in md and "kept from earlier runs: cfgig" in md
    # the same claim again replaces its entry (reusing its cached cells), and keeps the other
    assert main(["--quick", "--only", "cfgig", "--out", str(out), "--cache", cache, "--no-figures"]) == 0
    again, md = _ledger(out)
    assert list(again) == ["cfgpp", "cfgig"] and again["cfgpp"] == merged["cfgpp"]
    assert again["cfgig"]["verdict"] == first["cfgig"]["verdict"] and md.count("| cfgig |") == 1
    assert "0 computed" in capsys.readouterr().out


def test_ledger_cells_that_cannot_be_cached_still_give_the_ledger(tmp_path, capsys):
    """Issue 20 (nothing silent): a folder where a ledger cell's cache file goes ended the run in a bare
    IsADirectoryError once the cell was computed, and no ledger was written. Now the ledger has the same entries
    as a run with a clean cache, and every cell that could not be cached is named in a CacheWarning."""
    from evaluation.claims.__main__ import main
    from evaluation.sweep import CacheWarning

    argv = ["--quick", "--only", "cfgpp", "--no-figures", "--workers", "1"]
    assert main(argv + ["--out", str(tmp_path / "a"), "--cache", str(tmp_path / "ca")]) == 0
    files = sorted(p.relative_to(tmp_path / "ca") for p in (tmp_path / "ca").rglob("*.json"))
    for rel in files:  # a folder where every cell's file goes
        (tmp_path / "cb" / rel).mkdir(parents=True)
    with pytest.warns(CacheWarning) as caught:
        assert main(argv + ["--out", str(tmp_path / "b"), "--cache", str(tmp_path / "cb")]) == 0
    named = {m.group(1) for w in caught if w.category is CacheWarning
             and (m := re.search(r" in (\S+\.json) \(IsADirectoryError: Is a directory\)", str(w.message)))}
    assert len(files) > 1 and named == {str(tmp_path / "cb" / rel) for rel in files}
    assert f"({len(files)} computed, 0 from the cache)" in capsys.readouterr().out
    clean, _ = _ledger(tmp_path / "a")
    blocked, _ = _ledger(tmp_path / "b")
    assert list(blocked) == list(clean) == ["cfgpp"] and clean["cfgpp"]["verdict"]
    assert {k: v for k, v in blocked["cfgpp"].items() if k != "run"} == \
        {k: v for k, v in clean["cfgpp"].items() if k != "run"}


def test_a_ledger_that_cannot_be_read_is_not_overwritten(tmp_path, capsys, monkeypatch):
    from evaluation.claims import __main__ as cli

    _tripwire(monkeypatch, cli, "run_ledger")
    (tmp_path / "claims.json").write_text("{}")
    line = _error(capsys, lambda: cli.main(["--quick", "--only", "cfgpp", "--out", str(tmp_path),
                                            "--cache", str(tmp_path / "c")]))
    assert f"cannot update the ledger {tmp_path / 'claims.json'}: not a claims ledger" in line
    assert (tmp_path / "claims.json").read_text() == "{}"


def test_an_unwritable_cache_is_one_line_naming_the_variable(tmp_path, blocker, capsys, monkeypatch):
    """Defect 5: an unwritable REG_GUIDANCE_CACHE ended in a bare traceback."""
    from evaluation.claims import __main__ as cli

    _tripwire(monkeypatch, cli, "run_ledger")
    monkeypatch.setenv("REG_GUIDANCE_CACHE", str(blocker / "cache"))
    line = _error(capsys, lambda: cli.main(["--quick", "--only", "cfgpp", "--out", str(tmp_path / "o")]))
    assert f"cannot write to the cell cache {blocker / 'cache'} ($REG_GUIDANCE_CACHE)" in line
    line = _error(capsys, lambda: cli.main(["--quick", "--only", "cfgpp", "--out", str(tmp_path / "o"),
                                            "--cache", str(blocker / "c2")]))
    assert f"cannot write to the cell cache {blocker / 'c2'} (--cache)" in line


def test_ctrl_c_during_the_ledger_says_what_is_kept(tmp_path, capsys, monkeypatch):
    """SIGINT during the ledger: exit status 130 and one line (cells cached, where, the ledger unchanged), no
    traceback; the rerun resumes from the cache."""
    from evaluation import sweep
    from evaluation.claims.__main__ import main

    out, cache = tmp_path / "out", tmp_path / "cache"
    (out / "claims.json").parent.mkdir()
    (out / "claims.json").write_text(json.dumps({"quick": True, "seconds": 0, "claims": []}))
    calls = []
    real = sweep.compute_cell

    def interrupted_third(cell):
        calls.append(cell)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(cell)

    monkeypatch.setattr(sweep, "compute_cell", interrupted_third)
    argv = ["--quick", "--only", "cfgpp", "--out", str(out), "--cache", str(cache), "--no-figures", "--workers", "1"]
    assert main(argv) == 130
    err = capsys.readouterr().err  # the progress bar (redrawn with carriage returns), then one line
    assert "Traceback" not in err and err.endswith("\n")
    line = err.replace("\r", "\n").strip().splitlines()[-1]
    assert line.startswith("interrupted: 2 of ") and f"cells computed and cached in {cache} (2 in this run); " \
        f"rerun to resume (the ledger in {out} is unchanged)" in line
    assert json.loads((out / "claims.json").read_text())["claims"] == []
    monkeypatch.setattr(sweep, "compute_cell", real)
    assert main(argv) == 0
    assert ", 2 from the cache" in capsys.readouterr().out


def _fake_figure(name: str, cells: list, *, interrupt: bool = False):
    """A figure of the paper_plots protocol (figures/__init__.py) whose cells are test_sweep_integrity's ``Work``;
    ``interrupt``: Ctrl-C while its arrays are computed."""
    import types

    from evaluation.sweep import run_cells

    def compute(quick=False):
        if interrupt:
            raise KeyboardInterrupt
        return [r.y for r in run_cells(cells, progress=False).results]

    def plot(arrays, out):
        (Path(out) / f"{name}.png").write_text(repr(arrays))
        return [Path(out) / f"{name}.png"]

    return types.SimpleNamespace(NAME=name, CAPTION=f"{name}.", cells=lambda quick: list(cells), compute=compute,
                                 plot=plot, summary=lambda arrays: {})


def _paper_plots_main(argv) -> int:
    import paper_plots

    try:
        return paper_plots.main(argv)
    except KeyboardInterrupt as err:  # pytest would end the session on it
        pytest.fail(f"Ctrl-C escaped paper_plots.main: {type(err).__name__}: {err}")


@pytest.mark.parametrize("when", ["cells", "figures"])
def test_ctrl_c_during_paper_plots_says_what_is_kept(when, tmp_path, capsys, monkeypatch):
    """Issue 20: Ctrl-C during paper_plots.py ended in a SweepInterrupted / KeyboardInterrupt traceback. Now exit
    status 130 and one line: the cells cached (where), the figures drawn so far, the results files unchanged."""
    import paper_plots
    from tests.evaluation.test_sweep_integrity import Work

    cache, out = tmp_path / "cache", tmp_path / "out"
    monkeypatch.setenv("REG_GUIDANCE_CACHE", str(cache))
    out.mkdir()
    (out / "results.json").write_text("earlier")
    # the cheapest cell of a kind runs first, then the costliest: Work(1) is computed, then Work(2) is interrupted
    figures = {"fa": _fake_figure("fa", [Work(1.0, unit=0.0), Work(2.0, weight=2.0, unit=0.0,
                                                                      interrupt=when == "cells")]),
               "fb": _fake_figure("fb", [Work(3.0, unit=0.0)], interrupt=when == "figures")}
    monkeypatch.setattr(paper_plots, "FIGURES", figures)
    assert _paper_plots_main(["--out", str(out), "--workers", "1", "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    if when == "cells":
        assert line == (f"interrupted: 1 of 3 cells computed and cached in {cache} (1 in this run); rerun to resume "
                        f"(0 figure(s) drawn so far in {out}; its results.json and results.md are unchanged)")
    else:
        assert line == (f"interrupted after the cells (cached in {cache}, but for any a warning named); rerun to resume (1 figure(s) drawn so "
                        f"far in {out}; its results.json and results.md are unchanged)")
        assert (out / "fa.png").exists() and not (out / "fb.png").exists()
    assert (out / "results.json").read_text() == "earlier" and not (out / "results.md").exists()


_PAPER_PLOTS_INTERRUPTED = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a suite started in the background ignores it)
import paper_plots
from tests.evaluation.test_sweep_integrity import Work
from tests.test_clis import _fake_figure
paper_plots.FIGURES = {"fa": _fake_figure("fa", [Work(float(i), unit=0.3) for i in range(8)])}
sys.exit(paper_plots.main(["--out", sys.argv[1], "--workers", "2", "--no-progress"]))
"""


@pytest.mark.slow  # two spawned workers that import torch: about 15 s on a loaded 2-core machine
def test_sigint_to_paper_plots_ends_its_workers_with_one_line(tmp_path):
    """A real SIGINT to the process group (parent and cell workers) of paper_plots.py: one line, no traceback from
    the parent or a worker, exit status 130, and the finished cells cached."""
    import signal
    import subprocess
    import sys
    import time

    cache, out = tmp_path / "cache", tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", _PAPER_PLOTS_INTERRUPTED, str(out)], cwd=ROOT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "REG_GUIDANCE_CACHE": str(cache)},
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 120
        while len(list(cache.rglob("*.json"))) < 2:
            assert proc.poll() is None and time.time() < deadline, "paper_plots ended before it could be interrupted"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Warning" not in err, err
    line = err.strip().splitlines()[-1]
    kept = len(list(cache.rglob("*.json")))
    assert line == (f"interrupted: {kept} of 8 cells computed and cached in {cache} ({kept} in this run); rerun to "
                    f"resume (0 figure(s) drawn so far in {out}; its results.json and results.md are unchanged)")


def test_an_unavailable_claim_is_named_not_dropped(tmp_path, capsys, monkeypatch):
    """Without the released networks the paper-figure claim is skipped with a line naming REG_GUIDANCE_RELEASED_1D."""
    from evaluation.claims import __main__ as cli, paper_figure

    monkeypatch.setattr(paper_figure, "released_dir", lambda: None)
    monkeypatch.setattr(cli, "run_ledger", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    assert cli.main(["--quick", "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "c"), "--no-figures"]) == 130
    err = capsys.readouterr().err
    assert "paper-figure" in err and "skipped" in err and "REG_GUIDANCE_RELEASED_1D" in err


def test_a_bad_scheduler_address_is_an_argparse_error(tmp_path, capsys, monkeypatch):
    """Issue 20 round 3: ``--scheduler notanaddress`` was accepted when every cell was cached (the note then said
    'Dask worker(s)') and gave a traceback from distributed otherwise. The address is checked at the argument edge
    by the sweep's own check (evaluation.sweep.check_scheduler)."""
    from evaluation.claims import __main__ as cli

    _tripwire(monkeypatch, cli, "run_ledger")
    line = _error(capsys, lambda: cli.main(["--quick", "--only", "cfgpp", "--out", str(tmp_path / "o"), "--cache",
                                            str(tmp_path / "c"), "--scheduler", "notanaddress"]))
    assert line.startswith("python -m evaluation.claims: error: --scheduler: scheduler must be a Dask scheduler "
                           "address") and line.endswith("got 'notanaddress'")


def _quick_entry(entry: str, out) -> tuple:
    """The ledger's or the bench's ``main`` and a quick argv writing to ``out`` (the scheduler tests' runs)."""
    if entry == "claims":
        from evaluation.claims.__main__ import main
        return main, ["--quick", "--only", "cfgpp", "--out", str(out), "--no-figures"]
    from evaluation.bench import main
    return main, ["--quick", "--out", str(out)]


@pytest.mark.parametrize("entry", ["claims", "bench"])
def test_an_unreachable_scheduler_is_one_argparse_line_naming_it(entry, tmp_path, capsys, monkeypatch):
    """Issue 20: a well-formed ``--scheduler tcp://HOST:PORT`` where nothing listens waited distributed's 30 s and
    ended in its OSError traceback. Now: SCHEDULER_TIMEOUT (5 s; 1 s here), then one argparse line naming the
    address, exit status 2, nothing written."""
    import socket
    import time

    from evaluation import sweep

    pytest.importorskip("distributed", reason="dask.distributed is the optional [sweeps] extra")
    monkeypatch.setattr(sweep, "SCHEDULER_TIMEOUT", 1.0)
    monkeypatch.setenv("REG_GUIDANCE_CACHE", str(tmp_path / "c"))  # empty: every cell must be computed
    out = tmp_path / "o"
    main, argv = _quick_entry(entry, out)
    with socket.socket() as bound:  # bound, not listening: the connection is refused
        bound.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{bound.getsockname()[1]}"
        start = time.perf_counter()
        line = _error(capsys, lambda: main(argv + ["--scheduler", address]))
        assert time.perf_counter() - start < 20
    assert line.startswith(f"python -m evaluation.{entry}: error: --scheduler: cannot connect to a Dask scheduler at "
                           f"'{address}' (waited at most 1 s: OSError: ")
    assert line.endswith("is a Dask scheduler running there?")
    assert not list(out.rglob("*.*")) and not list((tmp_path / "c").rglob("*.json"))


@pytest.mark.parametrize("entry", ["claims", "bench"])
def test_a_scheduler_without_workers_is_one_argparse_line_naming_it(entry, tmp_path, capsys, monkeypatch):
    """Issue 20: ``--scheduler`` naming a running Dask scheduler with no worker waited forever (the cells queued
    until a worker joined). Now: SCHEDULER_TIMEOUT (5 s; 1 s here), then one argparse line naming the address and
    the missing workers, exit status 2, nothing written."""
    import logging
    import time

    from evaluation import sweep

    distributed = pytest.importorskip("distributed", reason="dask.distributed is the optional [sweeps] extra")
    monkeypatch.setattr(sweep, "SCHEDULER_TIMEOUT", 1.0)
    monkeypatch.setenv("REG_GUIDANCE_CACHE", str(tmp_path / "c"))  # empty: every cell must be computed
    out = tmp_path / "o"
    main, argv = _quick_entry(entry, out)
    # a library's log handler made in an earlier test (diffusers', on first import) still writes to that test's
    # closed capture stream, which logging reports with a traceback; a real run has one stream
    monkeypatch.setattr(logging, "raiseExceptions", False)
    with distributed.LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        start = time.perf_counter()
        line = _error(capsys, lambda: main(argv + ["--scheduler", address]))
        assert time.perf_counter() - start < 20
    assert line == (f"python -m evaluation.{entry}: error: --scheduler: the Dask scheduler at '{address}' has no "
                    f"running worker (waited 1 s: with cells pending, 0 workers); start one with "
                    f"'dask worker {address}'")
    assert not list(out.rglob("*.*")) and not list((tmp_path / "c").rglob("*.json"))


def test_the_inverse_cli_checks_its_cache_as_the_ledger_does(tmp_path, blocker, capsys, monkeypatch):
    """Issue 20 round 3: ``python -m evaluation.inverse --cache /proc/x`` gave a bare OSError traceback where the
    claims CLI gives an argparse error; both use evaluation.io.check_sweep_arguments now."""
    from evaluation.inverse import __main__ as cli

    _tripwire(monkeypatch, cli, "compute")
    for cache in (blocker / "c", Path("/proc/x")):
        line = _error(capsys, lambda: cli.main(["--quick", "--out", str(tmp_path / "o"), "--cache", str(cache)]))
        assert line.startswith("python -m evaluation.inverse: error: ")
        assert f"cannot write to the cell cache {cache} (--cache)" in line
    monkeypatch.setenv("REG_GUIDANCE_CACHE", str(blocker / "env"))
    line = _error(capsys, lambda: cli.main(["--quick", "--out", str(tmp_path / "o")]))
    assert f"cannot write to the cell cache {blocker / 'env'} ($REG_GUIDANCE_CACHE)" in line


@pytest.mark.parametrize("module, argv, work", [
    ("evaluation.flows", ["--quick"], "compute"), ("evaluation.dimension", ["--quick"], "compute"),
    ("evaluation.bench", ["--quick"], "run"), ("evaluation.report", [], "run_cells"), ("paper_plots", ["--quick"], "run_cells")])
def test_every_entry_point_checks_the_default_cell_cache_before_work(module, argv, work, tmp_path, blocker, capsys,
                                                                      monkeypatch):
    """An unwritable $REG_GUIDANCE_CACHE ended the flows, dimension, bench and report CLIs in an OSError traceback
    after their set-up (issue 20): each checks it with its arguments (evaluation.io.check_cli_arguments /
    check_sweep_arguments) and gives one argparse line naming the setting."""
    import importlib

    cli = importlib.import_module(module)
    _tripwire(monkeypatch, cli, work)
    monkeypatch.setenv("REG_GUIDANCE_CACHE", str(blocker / "env"))
    line = _error(capsys, lambda: cli.main(argv + ["--out", str(tmp_path / "o")]))
    assert f"cannot write to the cell cache {blocker / 'env'} ($REG_GUIDANCE_CACHE)" in line


def _entry_modules(package: str) -> set[str]:
    """The modules of ``package`` that run as ``python -m MODULE`` (an ``if __name__ == "__main__"`` block)."""
    found = set()
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        if any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body):
            found.add(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return found


@pytest.mark.parametrize("package", ["images"])  # toy and evaluation pass too (5 s each under load: not repeated)
def test_importing_a_package_loads_none_of_its_entry_points(package):
    """Review of issue 20: images/__init__.py imported images.train and images.classifier (directly, and through
    images.pipelines and images.sweep), so ``python -m images.train`` printed runpy's RuntimeWarning ("found in
    sys.modules after import of package 'images'"). A package's import must leave its entry points unloaded."""
    import subprocess
    import sys

    entries = _entry_modules(package)
    assert entries, package
    code = f"import json, sys, {package}; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                       check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout)
    assert not entries & set(loaded), f"import {package} loads its entry points {sorted(entries & set(loaded))}"


def _bound_names(tree: ast.Module) -> set[str] | None:
    """The names a module binds at top level (definitions, assignments, imports; ``None`` when it has a module
    ``__getattr__`` or a star import, whose names are not all visible in its source)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name == "__getattr__" and node in tree.body:
                return None
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if any(a.name == "*" for a in node.names):
                return None
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def test_every_name_in_a_modules_all_is_defined():
    """``from images.sweep import *`` raised AttributeError: its ``__all__`` named ``Summary``, which lives in
    images.sweep_stats (pyflakes: "undefined name in __all__"). Checked in the source of every module."""
    bad = []
    for rel, path in _python_files():
        tree = ast.parse(path.read_text(), str(rel))
        declared = [node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)]
        bound = _bound_names(tree)
        if not declared or bound is None:
            continue
        names = [e.value for e in getattr(declared[0], "elts", []) if isinstance(e, ast.Constant)]
        bad += [f"{rel}: {n}" for n in names if n not in bound]
    assert not bad, f"__all__ names a module does not define: {bad}"


@pytest.mark.parametrize("module", ["images.train"])  # images.classifier likewise (checked by the test above)
def test_image_entry_points_print_no_runpy_warning(module):
    """``python -m images.train --help`` printed runpy's RuntimeWarning before its usage; and the package's names
    are still there, loaded on first use."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and done.stdout.startswith(f"usage: python -m {module}"), done.stderr
    assert "Warning" not in done.stderr, done.stderr
    import images
    from images import classifier, pipelines, sweep, train

    for name in images.__all__:
        value = getattr(images, name)
        home = next((m for m in (classifier, pipelines, sweep, train) if name in vars(m)), None)
        assert home is None or value is getattr(home, name), name
    assert {"TrainConfig", "load_classifier", "SweepRow", "LatentPipeline"} <= set(dir(images))
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        images.nothing

