"""Run the same snippet in this tree and in an earlier revision of it, for before/after benchmarks measured in one
run: :func:`checkout` extracts a revision with ``git archive`` into a temporary folder, :func:`run_in` runs
Python code there in a fresh process (its own ``REG_GUIDANCE_CACHE``) and returns what the code prints last as
JSON. Not a test."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def checkout(rev: str, into: Path) -> Path:
    """The tree of ``rev`` (a commit of this repository) extracted into ``into``; ``ValueError`` if unknown."""
    res = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev], capture_output=True)
    if res.returncode != 0:
        raise ValueError(f"rev {rev!r} is not a revision of {ROOT}: {res.stderr.decode().strip()}")
    into.mkdir(parents=True, exist_ok=True)
    tar = into / "tree.tar"
    tar.write_bytes(res.stdout)
    with tarfile.open(tar) as t:
        t.extractall(into, filter="data")
    tar.unlink()
    return into


def run_in(tree: Path, code: str, *args: str, cache: Path | None = None, timeout: float = 3600) -> dict:
    """Run ``code`` (Python source) with ``tree`` first on the import path and the working folder ``tree``;
    returns the JSON object on its last line of output."""
    env = {**os.environ, "PYTHONPATH": str(tree), "REG_GUIDANCE_CACHE": str(cache or tempfile.mkdtemp())}
    res = subprocess.run([sys.executable, "-c", code, *args], cwd=tree, env=env, capture_output=True, text=True,
                         timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"the run in {tree} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def module_from(path: Path, name: str):
    """The file ``path`` (one module of ``evaluation``, e.g. from a :func:`checkout`) loaded as the module
    ``evaluation.<name>`` beside this tree's: its relative imports resolve in this tree's package, so two versions
    of one module run side by side in one process."""
    importlib.import_module("evaluation")  # the parent package first
    spec = importlib.util.spec_from_file_location(f"evaluation.{name}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def comparison_parser(doc: str, base: str, cases: int, out: str) -> argparse.ArgumentParser:
    """The options every before/after benchmark takes: ``--base`` (default ``base``), ``--cases`` (indices into its
    ``cases`` cases, default all), ``--repeat`` and ``--out`` (default ``benchmarks/<out>``); partial names refused."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--base", default=base, help=f"the revision before the change (default {base})")
    ap.add_argument("--cases", default=",".join(str(i) for i in range(cases)), help="indices into CASES")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each, interleaved; the smallest CPU time is kept")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / out))
    return ap


@contextlib.contextmanager
def timed_part(mod, name: str):
    """Within the block, ``mod.<name>`` adds its CPU seconds (``time.process_time``) to ``spent[0]`` and its
    positional arguments to ``calls``; yields ``(spent, calls)`` and restores the function after."""
    inner, spent, calls = getattr(mod, name), [0.0], []

    def timed(*a, **k):
        t = time.process_time()
        out = inner(*a, **k)
        spent[0] += time.process_time() - t
        calls.append(a)
        return out

    setattr(mod, name, timed)
    try:
        yield spent, calls
    finally:
        setattr(mod, name, inner)


def load() -> str:
    """The load averages (1, 5, 15 minutes) and the core count, for the record beside every time."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"
