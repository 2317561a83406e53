"""Sweeps (ARCHITECTURE.md, contract 8): cells, an on-disk cache, executors.

A *cell* is a frozen dataclass (or NamedTuple) configuration whose result is a pure function of it. A
*cell kind* pairs the configuration type with that function, registered once beside it::

    @dataclass(frozen=True)
    class GapCell:
        w: float

    @cell_kind(GapCell)
    def gap(cell: GapCell) -> GapResult: ...

:func:`run_cells` runs a list of cells and returns their results in order:

- **cache**: every result is stored on disk under ``key = sha256(kind, configuration, code version)``,
  where the code version hashes the source of the packages every exact result depends on (``analytic``,
  ``sampler``), the kind's own module, the ``modules`` it names, and every project module these import, found by
  reading their source (imports inside functions too, so a helper imported from another module cannot change a
  result behind the cache's back; a module's comments and docstrings are not part of it, :func:`code_text`); a
  package counts with every file in it, so ``toy``'s shipped checkpoints are part
  of the version of a cell that runs the trained networks. Only the modules of :data:`NOT_RESULT_SOURCES` (the engine
  and the ledger's bookkeeping, which compute no number a cell returns) are left out. A changed configuration or a
  changed source recomputes exactly the cells it touches; nothing else is recomputed. Files are written
  to a temporary name in the same folder and renamed (atomic on POSIX), so a run that is killed leaves
  either a whole result or none: rerunning it resumes where it stopped, with no duplicate or missing cell.
  Identical cells in one list are computed once. Every file stores its key, its configuration, the format
  and a sha256 of its encoded result; a file whose key, configuration, format or digest does not match the
  cell asked for, or that cannot be read as a result at all, is a miss: it is recomputed and overwritten,
  with a :class:`CacheWarning` naming the file (never reused silently). A result that cannot be stored (a folder
  or another unwritable entry where its file goes) is still returned, with a :class:`CacheWarning` naming the file
  and the OS error; it is recomputed next time.
- **executors**: ``workers=1`` runs in this process; ``workers=N`` in ``N`` local worker processes
  (``concurrent.futures.ProcessPoolExecutor``, spawned, torch at one thread each); ``scheduler=ADDRESS``
  on an existing Dask cluster (``distributed.Client(ADDRESS).get_executor()``, the ``[sweeps]`` extra); a scheduler
  that does not answer within ``SCHEDULER_TIMEOUT`` seconds (at the start, or after it cancelled a pending cell), or
  that has no running worker for that long (once the cells are submitted, or later while cells are pending), is
  :class:`SchedulerUnreachable`, naming the address and what is missing.
  All three are ``concurrent.futures`` executors driven by the same loop; the parent process writes each
  result as it arrives, so workers need no shared file system.

- **progress and order of work**: one tqdm bar in seconds of work, measured where done and estimated where pending
  (:class:`Eta`): each cell has a rate class and a relative cost (:func:`evaluation.costs.cost_of`: a model per kind,
  else the kind and the cell's declared ``cost``), and its seconds are estimated from the cells of its class (else its
  kind) measured so far, as a fixed part plus a part that grows with the cost (declared costs are comparable within a
  class, not across kinds); before a class is measured, from its seconds in the last cold run of the main job
  (:data:`evaluation.costs.PRIORS`, written from the cache's ``seconds.jsonl``, where every computed cell's seconds are
  recorded) times this machine's speed measured on the other classes. Local workers get one cell each at a time, in the
  order of :meth:`Eta.take`: the cheapest cell of every kind first, then the costliest of every class, then the largest
  estimate first, so every estimate is measured early and the run does not end with one worker on a long cell (a Dask
  cluster gets them all at once, in that order). The order changes no result. The postfix says ``cells done/total``, the
  ETA (the work left over the measured throughput; ``ETA ?`` while a kind has no measured cell and no prior) and what
  the workers are on (``on`` the running cells' classes). Pass ``bar=`` to draw several sweeps on one bar.
- **interrupts**: Ctrl-C (``KeyboardInterrupt``) ends :func:`run_cells` with :class:`SweepInterrupted`, whose
  one-line message says how many cells are cached where; entry points print it and exit with status 130.

Results are serialised to JSON with their type (NamedTuples, frozen dataclasses, floats incl. nan/inf,
ints, strings, tuples, numpy arrays), so a cached result is read back as the same type with the same
numbers (float64 round-trips exactly). Dicts are refused: results are typed (house rules).
"""
from __future__ import annotations

import ast
import bisect
import concurrent.futures as cf
import dataclasses
import datetime
import functools
import hashlib
import importlib
import importlib.util
import io
import json
import math
import multiprocessing
import numbers
import os
import pickle
import re
import signal
import statistics
import sys
import threading
import time
import tokenize
import warnings
from pathlib import Path
from typing import Any, Callable, Container, Iterable, NamedTuple, Sequence

import numpy as np
from tqdm.auto import tqdm

from sampler.files import check_writable_dir, write_atomically
from sampler.schedules import check_count

from .costs import SECONDS_LOG, add_to_sums, cost_of, fit_line, nonnegative, read_priors

__all__ = ["CellKind", "cell_kind", "compute_cell", "code_version", "code_text", "cell_key", "Cache", "SweepResult",
           "run_cells",
           "encode", "decode", "default_cache_dir", "write_atomically", "CACHE_ENV", "CacheWarning", "SweepInterrupted",
           "BAR_FORMAT", "Eta", "eta_of", "CellFailed", "check_scheduler", "SchedulerUnreachable",
           "SCHEDULER_TIMEOUT", "local_pool", "CellCost", "cell_costs", "SECONDS_LOG"]

FORMAT = 2  # bump when the file layout or encoding changes (2: key, configuration and result digest checked)
BASE_PACKAGES = ("analytic", "sampler")  # every exact result depends on these
# Project modules a cell's module may import whose source is not part of its code version (code_version), because no
# number a cell returns is computed there; every other project module it imports, directly or not, is.
NOT_RESULT_SOURCES = {
    "evaluation.sweep": "the engine: keys, cache, workers, progress",
    "evaluation.costs": "the engine's cost models, which order the work and change no result",
    "evaluation.io": "the entry points' output files and argument checks",
    "evaluation.docs": "the formatting of published numbers in text",
    "evaluation.claims.ledger": "the claims' verdicts and the ledger's files, applied to results after they return",
}
CACHE_ENV = "REG_GUIDANCE_CACHE"
# the bar counts seconds of work (measured or estimated, class Eta): the fraction, elapsed, and the postfix with
# "cells done/total" and the ETA from measured rates (tqdm's own {remaining} would trust unmeasured estimates)
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}{postfix}]"


class CellKind(NamedTuple):
    config: type
    compute: Callable[[Any], Any]
    modules: tuple[str, ...]  # further modules (or packages) it uses without importing them (cell_kind)


_KINDS: dict[type, CellKind] = {}


def _is_config_type(t: type) -> bool:
    if dataclasses.is_dataclass(t):
        return bool(t.__dataclass_params__.frozen)
    return issubclass(t, tuple) and hasattr(t, "_fields")


def cell_kind(config: type, *, modules: Sequence[str] = ()):
    """Register the decorated function as the pure computation of cells of type ``config`` (a frozen
    dataclass or NamedTuple). Register it in the module that defines ``config``, so that unpickling a
    cell in a worker registers its kind too. The code version counts every project module the kind's module
    imports (:func:`result_sources`); ``modules`` names further ones it reaches without an import statement (a
    module imported by name)."""
    if not isinstance(config, type) or not _is_config_type(config):
        raise ValueError(f"a cell configuration must be a frozen dataclass or NamedTuple type, got {config!r}")

    def register(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        if not callable(fn):
            raise ValueError(f"cell kind of {config.__name__} needs a callable, got {fn!r}")
        _KINDS[config] = CellKind(config, fn, tuple(modules))
        return fn

    return register


def _kind(cell: Any) -> CellKind:
    kind = _KINDS.get(type(cell))
    if kind is None:
        raise ValueError(f"{type(cell).__qualname__} is not a registered cell kind (decorate its compute function "
                         f"with evaluation.sweep.cell_kind); known: {sorted(t.__qualname__ for t in _KINDS)}")
    return kind


def compute_cell(cell: Any) -> Any:
    """The result of one cell, computed here (no cache)."""
    return _kind(cell).compute(cell)


# --- code version -----------------------------------------------------------------------------------
def _sources(name: str) -> list[Path]:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ValueError(f"cannot find the source of module {name!r}")
    origin = Path(spec.origin)
    if origin.name == "__init__.py":  # a package: every file in it, its data too (toy's shipped checkpoints)
        return sorted(p for p in origin.parent.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return [origin]


def code_text(source: str) -> str:
    """Python ``source`` as the code version reads it: without comments, docstrings (the first statement of a module,
    class or function, when it is a string), trailing blanks and blank lines, so that editing prose changes no
    version (a docstring slip once waited for an hour's republish). What remains is code: any other change, a string
    an error message prints included, is a new version. No result of a cell may depend on a docstring (the project
    reads ``__doc__`` only for command-line help). Positions come from :mod:`ast` and :mod:`tokenize`, which agree
    across Python versions, so the text is the same on every interpreter."""
    lines = source.splitlines()
    spans = []  # (first row, its column, last row, its end column), rows from 1, columns in characters
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                end = len(lines[first.end_lineno - 1].encode()[:first.end_col_offset].decode())  # ast counts bytes
                start = len(lines[first.lineno - 1].encode()[:first.col_offset].decode())
                spans.append((first.lineno, start, first.end_lineno, end))
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            spans.append((*tok.start, *tok.end))
    for r0, c0, r1, c1 in sorted(spans, reverse=True):  # from the end, so earlier positions stay valid
        lines[r0 - 1: r1] = [lines[r0 - 1][:c0] + lines[r1 - 1][c1:]]
    return "\n".join(line.rstrip() for line in lines if line.strip())


@functools.cache
def _module_digest(name: str) -> str:
    """sha256 of a module's files: a ``.py`` file by its :func:`code_text`, any other (a shipped checkpoint) whole."""
    h = hashlib.sha256()
    for path in _sources(name):
        h.update(str(path.name).encode())
        h.update(code_text(path.read_text()).encode() if path.suffix == ".py" else path.read_bytes())
    return h.hexdigest()


# an import statement at the start of a line: ``from .x import (a, b)`` (over lines) or ``import a.b as c, d``
_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#;]*)|import[ \t]+([^\n#;]*))", re.M)


def _in_root(root: Path, name: str) -> bool:
    """Whether module ``name`` is a source file (or package) under ``root``: a module of the project, found on the
    file system alone, so every process finds the same modules whatever it has imported."""
    base = root.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


@functools.cache
def _imports(name: str, root: Path) -> frozenset[str]:
    """The modules under ``root`` that the source of module ``name`` imports (every file of a package), imports
    inside functions included (read from the text, so an import line in a docstring counts too: that only adds a
    module): ``from pkg import a`` names ``pkg.a`` when that is a module, else ``pkg``."""
    found = set()
    origin = Path(importlib.util.find_spec(name).origin)
    for path in _sources(name):
        if path.suffix != ".py":
            continue
        parts = path.relative_to(origin.parent).with_suffix("").parts if origin.name == "__init__.py" else ()
        module = ".".join((name, *(parts[:-1] if parts[-1:] == ("__init__",) else parts)))
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for dots, base, names, plain in _IMPORT.findall(path.read_text()):
            words = [w.split()[0] for w in (plain or names.strip("()")).split(",") if w.split()]
            if plain:
                targets = words
            else:
                if dots:
                    parent = package.rsplit(".", len(dots) - 1)[0] if len(dots) > 1 else package
                    base = f"{parent}.{base}" if base else parent
                targets = [f"{base}.{w}" if _in_root(root, f"{base}.{w}") else base for w in words]
            found.update(t for t in targets if _in_root(root, t))
    return frozenset(found)


def result_sources(config: type) -> tuple[str, ...]:
    """The modules whose source is part of the code version of cells of type ``config``: the base packages, the
    kind's module and declared ``modules``, and every module of the project (the folder that holds the kind's
    package) these import, transitively (a package stands for all its files), except :data:`NOT_RESULT_SOURCES`."""
    kind = _KINDS.get(config)
    if kind is None:
        raise ValueError(f"{config!r} is not a registered cell kind")
    module = _importable(kind.compute.__module__)
    origin = Path(importlib.util.find_spec(module).origin)
    root = origin.parents[module.count(".") + (origin.name == "__init__.py")]
    return _closure(tuple(sorted(set(BASE_PACKAGES) | {module, _importable(config.__module__)} | set(kind.modules))),
                    root)


def _importable(name: str) -> str:
    """A module's importable name: ``__main__`` run as ``python -m pkg.mod`` is ``pkg.mod`` (its relative imports are
    read against that package; session 14: ``python -m evaluation.report --write-regression-table`` failed on
    ``from .spec import``)."""
    if name == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if spec is not None and spec.name:
            return spec.name
    return name


@functools.cache
def _closure(roots: tuple[str, ...], root: Path) -> tuple[str, ...]:
    names, todo = set(roots), list(roots)

    def covered(m: str) -> bool:  # a module of a package already counted is counted with it
        return any(m == n or m.startswith(n + ".") for n in names)

    while todo:
        for dep in _imports(todo.pop(), root):
            if dep not in NOT_RESULT_SOURCES and not covered(dep):
                names.add(dep)
                todo.append(dep)
    # a module added before its package is counted with the package: the same files, whatever the order of the search
    return tuple(sorted(n for n in names if not any(n.startswith(m + ".") for m in names)))


def code_version(config: type) -> str:
    """sha256 of the source the results of cells of type ``config`` depend on (:func:`result_sources`: the base
    packages, the kind's module, its declared ``modules`` and what they import). Cached per process: the source is
    read once."""
    names = result_sources(config)
    h = hashlib.sha256(f"format {FORMAT}".encode())
    for name in names:
        h.update(name.encode())
        h.update(_module_digest(name).encode())
    return h.hexdigest()


def cells_code(cells: Sequence[Any]) -> str:
    """12 hex digits naming the code versions of the kinds of ``cells`` (:func:`code_version`): equal stamps mean
    the numbers were computed by the same source. The run stamp of a ledger entry and of a published figure."""
    versions = sorted({code_version(type(c)) for c in cells})
    return hashlib.sha256(" ".join(versions).encode()).hexdigest()[:12]


# --- encoding -----------------------------------------------------------------------------------------
def _type_name(t: type) -> str:
    return f"{t.__module__}:{t.__qualname__}"


def encode(obj: Any) -> Any:
    """A JSON-able form of a configuration or result that :func:`decode` turns back into the same object."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else {"__float__": repr(f)}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "fiub":
            raise ValueError(f"cannot encode a numpy array of dtype {obj.dtype}")
        return {"__ndarray__": [encode(v) for v in obj.reshape(-1).tolist()], "dtype": obj.dtype.str,
                "shape": list(obj.shape)}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"__type__": _type_name(type(obj)),
                "fields": {f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return {"__type__": _type_name(type(obj)), "fields": {k: encode(v) for k, v in zip(obj._fields, obj)}}
    if isinstance(obj, (tuple, list)):
        return [encode(v) for v in obj]
    raise ValueError(f"cannot encode {type(obj).__qualname__} ({obj!r:.80}): configurations and results hold "
                     "numbers, strings, tuples, numpy arrays, NamedTuples and frozen dataclasses")


def _is_record_type(obj: Any) -> bool:
    """Whether ``obj`` is a type :func:`encode` writes with ``__type__``: a dataclass or a NamedTuple."""
    return isinstance(obj, type) and (dataclasses.is_dataclass(obj) or (issubclass(obj, tuple)
                                                                        and hasattr(obj, "_fields")))


def _resolve(name: str) -> type:
    """The dataclass or NamedTuple type ``module:qualname``; ``ValueError`` for anything else, so that a cache file
    naming another callable (``os:system``, ``builtins:open``) is never called by :func:`decode` (issue 20: such a
    file with a matching sha256 ran its command and its return value became the cell's result)."""
    if not isinstance(name, str):
        raise ValueError(f"an encoded type is 'module:qualname', got {name!r:.80}")
    module, _, qual = name.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    if not _is_record_type(obj):
        raise ValueError(f"{name!r} is not a dataclass or NamedTuple type: an encoded record names only those")
    return obj


def decode(data: Any) -> Any:
    """The inverse of :func:`encode` (lists come back as tuples). ``ValueError`` for data :func:`encode` never writes:
    a ``__type__`` that is not a dataclass or NamedTuple type, an array of another dtype than numbers, a
    :class:`CellFailed` whose fields are not strings."""
    if isinstance(data, list):
        return tuple(decode(v) for v in data)
    if isinstance(data, dict):
        if "__float__" in data:
            return float(data["__float__"])
        if "__ndarray__" in data:
            flat = [decode(v) for v in data["__ndarray__"]]
            dtype = np.dtype(data["dtype"])
            if dtype.kind not in "fiub":
                raise ValueError(f"an encoded numpy array holds numbers, got dtype {dtype}")
            return np.array(flat, dtype=dtype).reshape(data["shape"])
        if "__type__" in data:
            obj = _resolve(data["__type__"])(**{k: decode(v) for k, v in data["fields"].items()})
            if isinstance(obj, CellFailed) and not all(isinstance(v, str) for v in obj):
                raise ValueError(f"a cached failure holds the cell's repr and the error as strings, got {obj!r:.200}")
            return obj
        raise ValueError(f"not an encoded object: keys {sorted(data)}")
    return data


def cell_key(cell: Any) -> str:
    """The cache key of a cell: sha256 of its kind, its configuration and the code version."""
    kind = _kind(cell)
    text = json.dumps({"kind": _type_name(kind.config), "config": encode(cell), "code": code_version(kind.config)},
                      sort_keys=True, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


# --- the cache ----------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """``$REG_GUIDANCE_CACHE`` or ``~/.cache/reg-guidance/sweeps``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "reg-guidance" / "sweeps"


class CacheWarning(UserWarning):
    """A cache file that does not hold the result asked for (edited, truncated, another cell's, an older
    format): it is recomputed and overwritten; or a computed result that cannot be stored (its file cannot be
    written): the run uses it, the next run recomputes it."""


def _digest(encoded_result: Any) -> str:
    """sha256 of an encoded result, in canonical JSON (sorted keys, no nan: :func:`encode` spells those)."""
    return hashlib.sha256(json.dumps(encoded_result, sort_keys=True, allow_nan=False).encode()).hexdigest()


class Cache:
    """Results on disk: ``root/<kind>/<key[:2]>/<key>.json``, each written atomically (temporary file in
    the same folder, fsync, rename) and checked on reading (:meth:`load`)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, cell: Any, key: str | None = None) -> Path:
        key = key or cell_key(cell)
        return self.root / type(cell).__qualname__ / key[:2] / f"{key}.json"

    def load(self, cell: Any, key: str | None = None) -> tuple[bool, Any]:
        """``(True, result)`` when the cell is stored, else ``(False, None)``. A file that is not this cell's
        whole result (unreadable, of the wrong shape, another format, another key or configuration, a result
        that does not match its sha256 or does not decode) is a miss, with a :class:`CacheWarning` naming it."""
        key = key or cell_key(cell)
        path = self.path(cell, key)
        why = ""
        try:
            payload = json.loads(path.read_text())
            if not isinstance(payload, dict):
                why = f"holds a JSON {type(payload).__name__}, not a cell's record"
            elif missing := sorted({"format", "key", "config", "result", "sha256"} - set(payload)):
                why = f"lacks {', '.join(missing)}"
            elif payload["format"] != FORMAT:
                why = f"has format {payload['format']!r}, this code reads format {FORMAT}"
            elif payload["key"] != key:
                why = f"is stored under key {str(payload['key'])[:12]}..., not this cell's {key[:12]}..."
            elif payload["config"] != json.loads(json.dumps(encode(cell))):
                why = f"holds another configuration than {cell!r:.200}"
            elif payload["sha256"] != _digest(payload["result"]):
                why = "has a result that does not match its sha256 (edited or corrupt)"
            else:
                return True, decode(payload["result"])
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return False, None  # not stored (a folder in the way is named when the result cannot be stored there)
        except OSError as err:
            why = f"cannot be read ({err.strerror or err})"
        except (ValueError, TypeError, KeyError, AttributeError, ImportError, RecursionError) as err:  # undecodable
            why = f"cannot be read as a result ({type(err).__name__}: {err})"
        warnings.warn(f"cache file {path} {why}: recomputing the cell and overwriting it", CacheWarning, stacklevel=2)
        return False, None

    def store(self, cell: Any, result: Any, key: str | None = None) -> Path:
        """Write ``result`` as ``cell``'s (``ValueError`` from :func:`encode` when it cannot be stored)."""
        return self.store_encoded(cell, encode(result), key)

    def store_encoded(self, cell: Any, encoded: Any, key: str | None = None) -> Path:
        """Write a result already encoded by :func:`encode` as ``cell``'s (``OSError`` when its file cannot be
        written: :func:`run_cells` then warns and keeps the result)."""
        key = key or cell_key(cell)
        text = json.dumps({"format": FORMAT, "key": key, "config": encode(cell), "result": encoded,
                           "sha256": _digest(encoded)})
        path = self.path(cell, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_atomically(path, text)

    def check_writable(self) -> Path:
        """Create the cache folder and check it takes a file, before any cell is computed: ``OSError`` naming
        the folder (and ``$REG_GUIDANCE_CACHE``, which chooses it by default) otherwise."""
        try:
            return check_writable_dir(self.root)
        except OSError as err:
            raise OSError(f"cannot write to the cell cache {self.root} (set ${CACHE_ENV} or pass a cache folder "
                          f"that can be written): {err.strerror or err}") from err

    def keys(self) -> list[str]:
        """Keys of every stored result (temporary files, and folders where a result would go, excluded)."""
        return sorted(p.stem for p in self.root.glob("*/*/*.json") if p.is_file())


# --- executors ----------------------------------------------------------------------------------------
def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def pool_worker_init() -> None:
    """A local worker: one torch thread, and Ctrl-C left to the parent (which cancels the sweep and ends the
    workers), so the terminal shows one line, not a traceback per worker. tqdm gets a thread lock: its default
    process lock is a named semaphore that a worker ended by the parent would leave behind (a "leaked
    semaphore" warning at exit). The initializer of :func:`local_pool`'s workers, and of a pool an entry point starts
    itself before importing this module (``paper_plots.py``: :func:`pool_closer`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tqdm.set_lock(threading.RLock())
    _worker_init()



def _sendable(err: Exception) -> Exception:
    """``err`` when it survives pickling (a worker sends it back that way), else a ``RuntimeError`` with its type and
    message: an exception that cannot be unpickled (e.g. an ``__init__`` with more arguments than it passes on)
    breaks the whole process pool, and every pending cell would be reported failed with ``BrokenProcessPool``."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:  # noqa: BLE001 - any failure to round-trip
        return RuntimeError(f"{type(err).__name__}: {err} (an exception that cannot be pickled, sent as RuntimeError)")


def _execute(cell: Any) -> tuple[Any, float]:
    """What a worker runs: one thread for torch, then the pure computation; (result, seconds it took). A cell that
    exits the interpreter (``SystemExit``: ``sys.exit`` or an argparse error in a library it calls) raises a
    ``RuntimeError`` saying so: it would otherwise end the calling process with no message, ``keep_going`` or not."""
    _worker_init()
    start = time.perf_counter()
    try:
        result = compute_cell(cell)
    except SystemExit as err:
        raise RuntimeError(f"the cell exited the interpreter (SystemExit({err.code!r})) instead of returning a result "
                           "or raising an Exception") from None
    except Exception as err:
        sent = _sendable(err)
        if sent is err:
            raise
        raise sent from None
    return result, time.perf_counter() - start


class _InProcess(cf.Executor):
    """Runs each submission at once in this process (``workers=1``): the same loop as the pools."""

    def submit(self, fn, /, *args, **kwargs):
        fut: cf.Future = cf.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as err:  # noqa: BLE001 - handed to the caller through the future
            fut.set_exception(err)
        return fut


class SweepResult(NamedTuple):
    results: tuple  # one result per cell, in the order of the cells
    computed: int  # cells computed in this run (distinct keys)
    reused: int  # cells read from the cache
    seconds: float
    failed: int = 0  # cells that raised (``keep_going=True``: their results are :class:`CellFailed`)


class CellFailed(NamedTuple):
    """The result of a cell that raised, under ``run_cells(..., keep_going=True)``; cached when the error was a
    ``ValueError`` (deterministic), else tried again by a rerun. ``cell`` is the cell's repr (shortened), ``error``
    the exception's type and message."""

    cell: str
    error: str

    def __str__(self) -> str:
        return f"cell {self.cell} failed: {self.reason}"

    @property
    def reason(self) -> str:
        """``error`` without the cell's repr that a cell's own message begins with (the accuracy contract names the
        cell it refuses), so the cell is named once."""
        kind, sep, message = self.error.partition(": ")
        if not sep or not message.startswith(self.cell):
            return self.error
        depth = 0
        for i, c in enumerate(message):  # the repr ends where its first parenthesis closes
            depth += (c == "(") - (c == ")")
            if depth == 0 and c == ")":
                rest = message[i + 1:]
                return f"{kind}: {rest[2:]}" if rest.startswith(": ") else self.error
        return self.error


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_cells`; ``str()`` is one line saying what is kept. Every finished cell is in
    the cache, so rerunning the same sweep resumes it."""

    def __init__(self, cached: int, total: int, computed: int, root: Path):
        self.cached, self.total, self.computed, self.root = cached, total, computed, Path(root)
        super().__init__(f"interrupted: {cached} of {total} cells computed and cached in {root} ({computed} in this "
                         "run); rerun to resume")


_ADDRESS = re.compile(r"(?:(?:tcp|tls|ucx|ws|wss)://)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})|inproc://\S+")


def check_scheduler(scheduler: str | None) -> str | None:
    """``scheduler`` when it is ``None`` or the address of a Dask scheduler, ``[PROTOCOL://]HOST:PORT`` (protocol
    ``tcp``, the default, ``tls``, ``ucx``, ``ws`` or ``wss``; a port in 1..65535; host a name, an IPv4 address or an
    ``[IPv6]`` address) or an in-process ``inproc://...`` one; ``ValueError`` naming ``scheduler`` otherwise. The one
    check of the address, for :func:`run_cells` and the entry points' ``--scheduler``, before any connection."""
    if scheduler is None:
        return None
    match = _ADDRESS.fullmatch(scheduler) if isinstance(scheduler, str) else None
    if match is None or (match.group(1) is not None and not 0 < int(match.group(1)) < 65536):
        raise ValueError(f"scheduler must be a Dask scheduler address like 'tcp://127.0.0.1:8786' "
                         f"([tcp|tls|ucx|ws|wss://]HOST:PORT), got {scheduler!r}")
    return scheduler


SCHEDULER_TIMEOUT = 5.0
"""Seconds :func:`run_cells` waits for a Dask scheduler to answer (``distributed``'s own default is 30 s, then a
traceback): a running scheduler answers in well under a second. It is also how long a cluster may have no running
worker (checked once the cells are submitted, so that an adaptive cluster can start some, and whenever no cell has
finished for that long) before the sweep stops: Dask itself would wait forever. A cluster whose workers take longer
to start needs them started first (or this raised)."""


class SchedulerUnreachable(ValueError):
    """The Dask cluster at the ``scheduler`` address cannot run cells: no scheduler answered within
    :data:`SCHEDULER_TIMEOUT` seconds (nothing listening, an unknown host, something that is not a Dask scheduler,
    or a scheduler that closed while cells were pending; ``workers=False``), or it answered but had no running
    worker for that long (``workers=True``: none started, or every one left while cells were pending). ``str()`` is
    one line naming the address and what is missing. Raised by :func:`run_cells`, before any cell is submitted or
    while cells are pending (the finished ones are cached); entry points print it as an argparse error of
    ``--scheduler``."""

    def __init__(self, scheduler: str, reason: str, *, workers: bool = False):
        self.scheduler, self.workers = scheduler, workers
        if workers:
            message = (f"the Dask scheduler at {scheduler!r} has no running worker (waited {SCHEDULER_TIMEOUT:g} s: "
                       f"{reason}); start one with 'dask worker {scheduler}'")
        else:
            message = (f"cannot connect to a Dask scheduler at {scheduler!r} (waited at most {SCHEDULER_TIMEOUT:g} s: "
                       f"{reason}); is a Dask scheduler running there?")
        super().__init__(message)


def _running_worker(client: Any, scheduler: str, when: str) -> None:
    """Returns once the cluster of ``client`` has a running worker; :class:`SchedulerUnreachable` (``workers=True``,
    saying ``when``) after :data:`SCHEDULER_TIMEOUT` seconds without one, or (``workers=False``) when the scheduler
    stops answering."""
    try:
        client.wait_for_workers(1, timeout=SCHEDULER_TIMEOUT)
    except TimeoutError:  # distributed's WorkerStartTimeoutError
        raise SchedulerUnreachable(scheduler, f"{when}, 0 workers", workers=True) from None
    except Exception as err:  # the scheduler went away (OSError, CommClosedError, ...)
        raise SchedulerUnreachable(scheduler, f"{when}: {type(err).__name__}: {str(err)[:200]}") from None


def _executor(workers: int, scheduler: str | None, pool: cf.Executor | None = None):
    """(executor, closer, watch) for the requested back end; ``closer(cancel)`` cancels what has not started and,
    for local workers, ends them at once (the caller's ``pool``: it is left open, its owner closes it); ``watch()`` is
    called once the cells are submitted (so that an adaptive Dask cluster has seen them and can start workers) and
    again whenever no cell has finished for :data:`SCHEDULER_TIMEOUT` seconds, and raises when the back end cannot run
    them (a Dask cluster with no running worker or no scheduler; local executors always can)."""
    if pool is not None:
        return pool, lambda cancel: None, lambda: None
    if scheduler is not None:
        try:
            from distributed import Client
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ValueError("scheduler= needs dask.distributed: pip install 'reg-guidance[sweeps]'") from err
        try:
            client = Client(scheduler, timeout=SCHEDULER_TIMEOUT)
        except Exception as err:  # OSError (timed out, refused, unknown host), or garbage from a non-Dask server
            raise SchedulerUnreachable(scheduler, f"{type(err).__name__}: {str(err)[:200]}") from None
        ex = client.get_executor()
        return (ex, lambda cancel: (ex.shutdown(wait=not cancel), client.close()),
                lambda: _running_worker(client, scheduler, "with cells pending"))
    if workers == 1:
        ex = _InProcess()
        return ex, lambda cancel: None, lambda: None
    return (*local_pool(workers), lambda: None)


def local_pool(workers: int) -> tuple[cf.ProcessPoolExecutor, Callable[[bool], None]]:
    """``workers`` spawned local processes (one torch thread each; Ctrl-C left to this process, so the terminal
    shows one line, not a traceback per worker) and their closer ``close(cancel)``: it waits for the submitted
    work, or with ``cancel`` drops what has not started and ends the running work at once. The pool of
    :func:`run_cells`, and of an entry point's own computations (``paper_plots.py``'s figures)."""
    ex = cf.ProcessPoolExecutor(max_workers=check_count(workers, "workers"),
                                mp_context=multiprocessing.get_context("spawn"), initializer=pool_worker_init)
    return ex, pool_closer(ex)


def pool_closer(ex: cf.ProcessPoolExecutor) -> Callable[[bool], None]:
    """``close(cancel)`` of a local process pool (:func:`local_pool`'s): it waits for the submitted work, or with
    ``cancel`` drops what has not started and ends the running work at once."""
    def close(cancel: bool) -> None:
        if cancel:  # the running work would otherwise finish first (no public way to stop it before 3.14)
            for proc in list((getattr(ex, "_processes", None) or {}).values()):
                proc.terminate()
        ex.shutdown(wait=True, cancel_futures=cancel)

    return close


class CellCost(NamedTuple):
    """One cell's place in the order of work and the progress bar (:func:`cell_costs`)."""

    kind: str  # the kind's ``module:qualname``
    group: str  # the rate class: the kind, followed by the model's group (:func:`evaluation.costs.cost_of`)
    cost: float  # relative cost


def cell_costs(cells: Sequence[Any]) -> list[CellCost]:
    """Each cell's kind, rate class and relative cost for the order of work and the progress bar
    (:func:`evaluation.costs.cost_of`; :class:`Eta`'s ``add(key, kind, cost, group=...)``): a cell without a cost
    counts as the mean declared cost of its class (1 when no cell of the class declares one)."""
    kinds, classes, declared = [], [], []
    for c in cells:
        group, cost = cost_of(c)
        kind = _kind_name(c)
        kinds.append(kind)
        classes.append(f"{kind} {group}" if group else kind)
        declared.append(cost)
    known: dict[str, list[float]] = {}
    for cls, v in zip(classes, declared):
        if v is not None:
            known.setdefault(cls, []).append(v)
    fill = {cls: sum(vs) / len(vs) for cls, vs in known.items()}
    return [CellCost(kind, cls, fill.get(cls, 1.0) if v is None else v)
            for kind, cls, v in zip(kinds, classes, declared)]


class _Task(NamedTuple):
    kind: str
    group: str  # the rate class: the kind, or a finer class within it
    cost: float
    prior: float | None
    seq: int  # order of addition (ties)
    alone: bool = False  # run one at a time, by no worker (paper_plots' figures)


def _wall() -> float:
    """The wall clock of :class:`Eta`: ``time.perf_counter``, looked up when called."""
    return time.perf_counter()




def _measure(fits: dict[str, list[float]], task: _Task, seconds: float) -> None:
    """Add a measured task to the sums of its class and of its kind."""
    for cls in {task.group, task.kind}:
        add_to_sums(fits.setdefault(cls, [0.0] * 5), task.cost, seconds)


class Eta:
    """Progress in seconds of work, the ETA, and the order of work, for one bar over one or more sweeps (and other
    tasks: ``paper_plots.py`` adds its figures).

    Each task has a *kind*, a *rate class* (``group``: the kind, or a finer class within it, :mod:`evaluation.costs`)
    and a declared relative cost. Its estimated seconds are ``a + b cost``, the line fitted (least squares, ``a`` and
    ``b`` not negative: :func:`evaluation.costs.fit_line`) to the measured tasks of its class, else of its kind
    (``prior`` seconds where neither is measured): a fixed part per task (building a law, a target) and a part that
    grows with the work, so a class measured on its cheapest and its costliest task estimates the tasks between. A running task that has already
    run longer than its estimate counts in its class and kind as if it finished now (its seconds so far: a lower
    bound), so a class costlier than its first tasks said raises its estimates while it runs. A kind with no measured
    task (and no prior) has no estimate: the ETA is then unknown (``None``), not a guess from another kind's (declared
    costs of different kinds are not comparable: a Monte Carlo cell and a grid cell).

    ``priors`` (:func:`evaluation.costs.read_priors`: the shipped table of the last cold run, ``{rate class or kind:
    (fixed seconds, seconds per unit of cost)}``) estimate a class before it is measured: a task's estimate is the
    line of its class measured here, else its class's line in the table, else its kind's measured here, else its
    kind's in the table, else its ``prior``; a table's line is multiplied by this machine's *speed*, the median over
    the measured classes that the table holds of their measured seconds over the table's for the same tasks (1 before
    any), so that a machine twice as slow as the table's has its unmeasured classes estimated twice as long. A class
    measured here is never estimated from the table (issue 19: the 2-D output classes, about two thirds of the main
    job's work, were first measured at minute 8-12 of a 64-minute run, and the ETA said 13 minutes in all until then).

    The ETA is the estimated work left (waiting tasks, plus what running tasks have left of their estimate) over the
    throughput (seconds of work finished or under way per wall second since the first task began: it counts the
    workers and the machine's load as they are), plus the work left in tasks added ``alone`` (run one at a time after
    the others, by no worker), and never less than the longest single task left (one worker runs it alone).
    :meth:`take` gives the order of work that makes the estimates good early and the end short: a probe of every kind
    (its cheapest task), then of every class (its costliest, and two tasks at least), then the largest estimate first.
    ``clock``: the wall clock in seconds (default ``time.perf_counter``; injectable, for tests)."""

    def __init__(self, clock: Callable[[], float] | None = None,
                 priors: dict[str, tuple[float, float]] | None = None):
        self.clock = clock if clock is not None else _wall
        self.priors: dict[str, tuple[float, float]] = {}  # rate class or kind -> (a, b) of the last cold run
        for cls, ab in (priors or {}).items():
            if not (isinstance(ab, tuple) and len(ab) == 2 and all(nonnegative(v) for v in ab)):
                raise ValueError(f"Eta: the prior of class {cls!r:.200} must be (fixed seconds, seconds per unit of "
                                 f"cost), finite and >= 0, got {ab!r:.200}")
            self.priors[cls] = (float(ab[0]), float(ab[1]))
        self.speed = 1.0  # measured seconds over the priors' for the same tasks: the median over classes (_speed)
        self._groups: set[str] = set()  # rate classes with a finished task
        self.start: float | None = None  # when the first task began (or a task finished unbegun, minus its seconds)
        self.fits: dict[str, list[float]] = {}  # rate class or kind -> sums of its finished tasks (see fit_line)
        self._fitted: dict[str, tuple[float, float]] = {}  # rate class or kind -> fit_line of its sums
        self.pending: dict[Any, _Task] = {}  # waiting or running
        self.running: dict[Any, float] = {}  # key -> when it started (self.clock)
        self._waiting: dict[str, list[tuple[float, int, Any]]] = {}  # class -> (cost, seq, key) not started, sorted
        self._wsum: dict[str, float] = {}  # class -> summed cost of its waiting tasks
        self._probed: set[str] = set()  # classes whose costliest task has started
        self._started: dict[str, int] = {}  # class -> tasks started
        self.done_seconds, self.done, self.total = 0.0, 0, 0

    def add(self, key: Any, kind: str, cost: float = 1.0, prior: float | None = None, group: str | None = None,
            alone: bool = False) -> None:
        """A waiting task of ``kind`` in the rate class ``group`` (default: the kind) with relative ``cost``; ``alone``:
        it runs one at a time after the others, by no worker (its seconds are not shared by the throughput);
        ``prior``: its estimated seconds until its class or kind is measured. ``ValueError`` for a key already
        waiting or running, a cost that is not a finite number > 0, a prior that is not a finite number >= 0."""
        if key in self.pending:
            raise ValueError(f"Eta: task {key!r:.200} was added already")
        if isinstance(cost, bool) or not isinstance(cost, numbers.Real) or not (math.isfinite(cost) and cost > 0):
            raise ValueError(f"Eta: the cost of task {key!r:.200} must be a finite number > 0, got {cost!r}")
        if prior is not None and not nonnegative(prior):
            raise ValueError(f"Eta: the prior of task {key!r:.200} must be None or finite seconds >= 0, got {prior!r}")
        task = _Task(kind, group or kind, float(cost), prior, self.total, bool(alone))
        self.pending[key] = task
        bisect.insort(self._waiting.setdefault(task.group, []), (task.cost, task.seq, key))
        self._wsum[task.group] = self._wsum.get(task.group, 0.0) + task.cost
        self.total += 1

    def skip(self, n: int = 1) -> None:
        """``n`` tasks already done (read from the cache): counted as done, with no work."""
        self.done += n
        self.total += n

    def _pending(self, key: Any) -> _Task:
        try:
            return self.pending[key]
        except KeyError:
            raise ValueError(f"Eta: no task {key!r:.200} is waiting or running (add it first)") from None

    def _unwait(self, key: Any) -> _Task:
        task = self._pending(key)
        if key not in self.running:
            queue = self._waiting[task.group]
            queue.remove((task.cost, task.seq, key))
            self._wsum[task.group] -= task.cost
            if not queue:
                del self._waiting[task.group], self._wsum[task.group]
        return task

    def begin(self, key: Any) -> None:
        """The task started now (a worker took it)."""
        task = self._pending(key)
        if key not in self.running and task.cost >= self._waiting[task.group][-1][0]:
            self._probed.add(task.group)  # its class's costliest task is measured
        self._started[task.group] = self._started.get(task.group, 0) + 1
        self._unwait(key)
        self.running[key] = self.clock()
        if self.start is None:
            self.start = self.running[key]

    def drop(self, key: Any) -> None:
        """A task that ended without a result (it failed): done, and not counted in its class's estimates."""
        self._unwait(key)
        self.pending.pop(key)
        self.running.pop(key, None)
        self.done += 1

    def finish(self, key: Any, seconds: float) -> None:
        """The task ended after ``seconds`` of work (begun or not; a finite number, negative counts as 0)."""
        if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real) or not math.isfinite(seconds):
            raise ValueError(f"Eta: task {key!r:.200} ended after {seconds!r} seconds; give finite seconds")
        task = self._unwait(key)
        self.pending.pop(key)
        self.running.pop(key, None)
        seconds = max(float(seconds), 0.0)
        if self.start is None:
            self.start = self.clock() - seconds
        _measure(self.fits, task, seconds)
        for cls in {task.group, task.kind}:
            self._fitted[cls] = fit_line(self.fits[cls])
        self._groups.add(task.group)
        if task.group in self.priors:
            self.speed = self._speed()
        self.done_seconds += seconds
        self.done += 1

    # --- estimates ---------------------------------------------------------------------------------------------
    def _speed(self) -> float:
        """The median, over the measured rate classes that :attr:`priors` holds, of their measured seconds over the
        seconds the priors give their finished tasks (1 when there is none)."""
        ratios = []
        for cls in self._groups:
            if cls in self.priors:
                n, c, s = self.fits[cls][:3]
                a, b = self.priors[cls]
                if n * a + b * c > 0:
                    ratios.append(s / (n * a + b * c))
        return statistics.median(ratios) if ratios else 1.0

    def _lines(self, now: float) -> Callable[[_Task], tuple[float, float] | None]:
        """The line ``(a, b)`` of a task's class, fitted to its finished tasks and to the running ones that ran longer
        than that line says (as if they finished now), else its line in :attr:`priors` times :attr:`speed`, else the
        same of its kind; ``None`` when neither is measured or in the priors."""
        def line(task: _Task, extra: dict[str, list[float]]) -> tuple[float, float] | None:
            for cls in (task.group, task.kind):
                if cls in extra:
                    return fit_line([u + v for u, v in zip(self.fits.get(cls, (0.0,) * 5), extra[cls])])
                if cls in self._fitted:
                    return self._fitted[cls]
                if cls in self.priors:
                    a, b = self.priors[cls]
                    return a * self.speed, b * self.speed
            return None

        extra: dict[str, list[float]] = {}
        for key, began in self.running.items():
            task, ran = self.pending[key], now - began
            ab = line(task, {})
            if ab is not None and ran > ab[0] + ab[1] * task.cost:
                _measure(extra, task, ran)
        return lambda task: line(task, extra)

    def _estimate(self, task: _Task, line: Callable[[_Task], tuple[float, float] | None]) -> float | None:
        ab = line(task)
        return task.prior if ab is None else ab[0] + ab[1] * task.cost

    def estimate(self, key: Any) -> float | None:
        """Estimated seconds of the pending task ``key`` (the whole task, also when it is running), or ``None``."""
        return self._estimate(self.pending[key], self._lines(self.clock()))

    def _left(self, now: float) -> tuple[float | None, float, float, float]:
        """(estimated seconds of work left or None, the longest single task's estimated seconds left, the work left for
        the bar: running tasks whole, a task without an estimate as the mean measured task or 1 s; the part of the
        first in ``alone`` tasks), in one pass."""
        line = self._lines(now)
        mean = self.done_seconds / self.done if self.done_seconds > 0 and self.done else 1.0
        total, longest, bar, alone, unknown = 0.0, 0.0, 0.0, 0.0, False
        for key, began in self.running.items():
            task = self.pending[key]
            e = self._estimate(task, line)
            bar += mean if e is None else e
            if e is None:
                unknown = True
                continue
            e = max(e - (now - began), 0.0)
            total, longest, alone = total + e, max(longest, e), alone + (e if task.alone else 0.0)
        for cls, queue in self._waiting.items():  # one class, one line: from its count and summed cost
            first = self.pending[queue[0][2]]
            ab = line(first)
            if ab is not None:
                e = len(queue) * ab[0] + ab[1] * self._wsum[cls]
                total, longest, bar = total + e, max(longest, ab[0] + ab[1] * queue[-1][0]), bar + e
                alone += e if first.alone else 0.0
                continue
            for _, _, key in queue:  # no measured task of its class or kind: the tasks' own priors
                task = self.pending[key]
                e = task.prior
                bar += mean if e is None else e
                if e is None:
                    unknown = True
                else:
                    total, longest, alone = total + e, max(longest, e), alone + (e if task.alone else 0.0)
        return (None if unknown else total), longest, bar, alone

    def remaining(self) -> float | None:
        """Estimated seconds of work left (``None`` while some pending task has no estimate)."""
        return self._left(self.clock())[0]

    def _eta(self, now: float, left: float | None, longest: float, alone: float) -> float | None:
        if left is None:
            return None
        if left == 0:
            return 0.0
        busy = self.done_seconds + sum(now - began for began in self.running.values())
        if self.start is None or busy <= 0 or now <= self.start:
            return None
        return max((left - alone) / (busy / (now - self.start)) + alone, longest)

    def eta(self) -> float | None:
        """Estimated wall seconds to the end, or ``None`` (unknown)."""
        now = self.clock()
        left, longest, _, alone = self._left(now)
        return self._eta(now, left, longest, alone)

    def take(self, among: Container[Any] | None = None, first: Sequence[Any] = ()) -> Any | None:
        """The waiting task to start next, of the classes whose waiting tasks are ``among`` these keys (default: all;
        ``None`` when none waits): first the cheapest task of each kind with no task started or measured (in order of
        addition: every kind is measured early, on a short task); then the tasks of ``first`` still waiting, in that
        order (``run_cells``' ``first``: the cells of the figures drawn while the rest compute); then the costliest
        task of each class whose
        costliest has not started or that has fewer than two tasks started (every class is measured early, on its
        longest task and on two at least: its fixed part and its growth from two ends, one slow task is not all it
        knows, and the long tasks do not come last), the largest estimate first; then any task, the largest estimate
        first. No estimate counts as the largest; among equals, the first added. Call :meth:`begin` when it
        starts."""
        queues = {cls: q for cls, q in self._waiting.items() if among is None or q[0][2] in among}
        if not queues:
            return None
        started = {self.pending[k].kind for k in self.running} | set(self.fits)
        fresh = [q[0] for q in queues.values() if self.pending[q[0][2]].kind not in started]
        if fresh:  # a kind not measured at all
            return min(fresh, key=lambda item: item[1])[2]
        for key in first:
            if key in self.pending and key not in self.running and (among is None or key in among):
                return key
        unprobed = {cls: q for cls, q in queues.items() if cls not in self._probed or self._started.get(cls, 0) < 2}
        line = self._lines(self.clock())
        best, best_rank = None, None
        for queue in (unprobed or queues).values():
            head = queue[bisect.bisect_left(queue, (queue[-1][0], -1))]  # the costliest, first added among equals
            task = self.pending[head[2]]
            e = self._estimate(task, line)
            rank = (-math.inf if e is None else -e, task.seq)
            if best_rank is None or rank < best_rank:
                best, best_rank = head[2], rank
        return best

    def fraction(self) -> tuple[float, float]:
        """(work done, work in all) in seconds for the bar: pending tasks without an estimate count as the mean
        measured task (or 1 s), so the bar moves; the ETA alone says when that is not known."""
        return self.done_seconds, self.done_seconds + self._left(self.clock())[2]

    def postfix(self, eta: float | None = ...) -> str:
        """``cells done/total, ETA m:ss`` (``ETA ?`` when unknown; ``eta``: seconds already computed, default
        :meth:`eta`), and what is running: ``on`` its rate classes (the kind's name and its class, at most two)."""
        eta = self.eta() if eta is ... else eta
        text = "?" if eta is None else f"{int(eta) // 60}:{int(eta) % 60:02d}"
        out = f"cells {self.done}/{self.total}, ETA {text}"
        on = list(dict.fromkeys(_short(self.pending[k].group) for k in self.running))
        if on:
            out += f", on {'; '.join(on[:2])}{' ...' if len(on) > 2 else ''}"
        return out

    def show(self, bar: tqdm) -> None:
        """Draw the state on ``bar`` (its ``n`` and ``total`` in seconds of work, the postfix)."""
        now = self.clock()
        left, longest, rest, alone = self._left(now)
        bar.total = max(self.done_seconds + rest, 1e-9)
        bar.n = min(self.done_seconds, bar.total)
        bar.set_postfix_str(self.postfix(self._eta(now, left, longest, alone)), refresh=False)
        bar.refresh()


def _short(cls: str) -> str:
    """A rate class as the bar shows it: the kind's qualified name without its module."""
    kind, _, group = cls.partition(" ")
    return " ".join(filter(None, (kind.rpartition(":")[2], group)))


def eta_of(bar: tqdm) -> Eta:
    """The :class:`Eta` kept on ``bar`` (a new one on first use, with the shipped priors,
    :data:`evaluation.costs.PRIORS`), so several sweeps and other tasks share it."""
    eta = getattr(bar, "eta", None)
    if not isinstance(eta, Eta):
        eta = Eta(priors=read_priors())
        bar.eta = eta
    return eta


def _kind_name(cell: Any) -> str:
    return _type_name(type(cell))


def _utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds_log(root: Path, workers: int | None) -> Callable[[str, CellCost, float], None]:
    """``log(key, cost, seconds)``: append one JSON line for a computed cell to ``root/SECONDS_LOG`` (in this process,
    as results arrive; never by workers): its key, kind, rate class, declared relative cost, the worker's measured
    seconds, when it arrived and when this sweep began (UTC), the local workers (``None``: a Dask cluster), this
    machine's CPUs and its 1-minute load average (the machine's load is part of what the seconds mean). A log that
    cannot be written warns once (:class:`CacheWarning`) and the sweep goes on: it changes no result."""
    path, run, broken = root / SECONDS_LOG, _utc(), False

    def log(key: str, cost: CellCost, seconds: float, failed: bool = False) -> None:
        nonlocal broken
        if broken:
            return
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        line = json.dumps({"key": key, "kind": cost.kind, "class": cost.group, "cost": cost.cost,
                           "seconds": float(seconds), "at": _utc(), "failed": failed,
                           "run": run, "workers": workers, "cpus": os.cpu_count(), "load": load}, allow_nan=False)
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError as err:
            broken = True
            warnings.warn(f"cannot append to the log of cell seconds {path} ({type(err).__name__}: "
                          f"{err.strerror or err}): the results are cached, but this run's seconds are not recorded",
                          CacheWarning, stacklevel=4)

    return log


def run_cells(cells: Iterable[Any], *, cache: Cache | str | Path | None = None, workers: int = 1,
              scheduler: str | None = None, progress: bool = True, desc: str = "cells",
              bar: tqdm | None = None, keep_going: bool = False, retry_failed: bool = False,
              on_result: Callable[[Any, Any], None] | None = None, first: Iterable[Any] = (),
              pool: cf.Executor | None = None) -> SweepResult:
    """Results of ``cells`` (in order), from the cache where stored, computed otherwise.

    Args:
        cells: registered cell configurations (see :func:`cell_kind`): a list, tuple or any other iterable (a
            generator is read once, at the start).
        cache: a :class:`Cache` or its folder (default :func:`default_cache_dir`).
        workers: local worker processes (1: this process).
        scheduler: address of a running Dask scheduler (``tcp://HOST:PORT``, checked by :func:`check_scheduler`);
            overrides ``workers``. Connected to only when a cell is to be computed: :class:`SchedulerUnreachable`
            when it does not answer within :data:`SCHEDULER_TIMEOUT` seconds, or has no running worker for that
            long once the cells are submitted (or later, while cells are pending).
        progress: draw a progress bar (ignored when ``bar`` is given).
        desc: what the bar says is being computed.
        bar: an open tqdm bar to advance instead of a new one, so one display spans several sweeps: this
            sweep adds its cells to the bar's :class:`Eta` (:func:`eta_of`), which draws the bar in seconds of
            work with ``cells done/total`` and the ETA; the caller closes it.
        keep_going: a cell that raises (an ``Exception``, or ``SystemExit``), or returns a result the cache
            cannot hold (:func:`encode`'s ``ValueError``), gives a :class:`CellFailed` result (not cached) and the
            sweep goes on (``SweepResult.failed`` counts them); otherwise (the default) the sweep stops with a
            ``RuntimeError`` naming the cell.
        on_result: called as ``on_result(cell, result)`` in this thread once for every distinct cell as soon as its
            result is known (read from the cache, at the start; computed; or a :class:`CellFailed` under
            ``keep_going``), so the caller can use the results of some cells while others compute
            (``paper_plots.py`` draws a figure once its cells are done). What it raises ends the sweep.
        pool: an open executor to run the cells on (``paper_plots.py``'s :func:`local_pool`-like pool, started
            before its imports so that the workers start meanwhile), instead of a new pool of ``workers`` processes;
            ``workers`` cells are given to it at a time (so ``workers`` is its size). It is left open: its owner closes
            it (on Ctrl-C or a failure, only the cells given to it and not started are cancelled here).
        first: cells (of ``cells``) to start before the others, in this order, once every kind has been measured on
            one cell (:meth:`Eta.take`): ``paper_plots.py`` lists the cells of its figures with the fewest cells, so
            that they are drawn while the rest compute. The other cells follow in the order of :meth:`Eta.take`.

    A computed result whose cache file cannot be written (a folder or another unwritable entry in its place; the
    folder as a whole is checked before the first cell) is still returned, with one :class:`CacheWarning` naming
    the file and the OS error. Ctrl-C ends the sweep with :class:`SweepInterrupted` (every finished cell that could
    be stored is cached).

    Each computed cell appends one JSON line to the cache folder's :data:`SECONDS_LOG` (``seconds.jsonl``): its key,
    kind, rate class, relative cost and measured seconds (:func:`_seconds_log`), the record the ETA's priors are made
    from (:mod:`evaluation.costs`); so does a cell that fails with ``ValueError`` on a local worker (``failed``: true;
    its seconds from when a worker took it, measured here: its cost is part of its class's, and the bar counts it
    so), while cells read from the cache, and other failures, add nothing.

    A cell that raises ``ValueError`` (it cannot meet its tolerance, or refuses its configuration) fails the same way
    on every run of the same code and configuration: its :class:`CellFailed` is cached like a result, so a rerun, or a
    figure asking for the same cell after the sweep, reads the failure instead of computing it again (issue 19: the
    full job's claims figure recomputed 37 failed cells one by one, about an hour). ``retry_failed=True`` computes
    cached failures again; other exceptions (memory, a lost worker) are never cached.
    """
    workers = check_count(workers, "workers")
    check_scheduler(scheduler)
    if not isinstance(retry_failed, bool):
        raise ValueError(f"retry_failed must be True or False, got {retry_failed!r}")
    if bar is not None and not isinstance(bar, tqdm):
        raise ValueError(f"bar must be a tqdm progress bar, got {type(bar).__name__}")
    if not isinstance(keep_going, bool):
        raise ValueError(f"keep_going must be True or False, got {keep_going!r}")
    if pool is not None and (scheduler is not None or not isinstance(pool, cf.Executor)):
        raise ValueError(f"pool must be an open concurrent.futures executor and scheduler None, got {pool!r:.200} "
                         f"with scheduler {scheduler!r}")
    if on_result is not None and not callable(on_result):
        raise ValueError(f"on_result must be None or a callable(cell, result), got {on_result!r:.200}")
    if type(cells) in _KINDS:
        raise ValueError(f"cells must be an iterable of cells, got one cell {cells!r:.200}: pass [cell]")
    try:
        cells = tuple(cells)  # a generator is read once: the cells are walked twice below
    except TypeError:
        raise ValueError(f"cells must be an iterable of cell configurations (a list, tuple or generator), got "
                         f"{type(cells).__name__}") from None
    cache = cache if isinstance(cache, Cache) else Cache(cache if cache is not None else default_cache_dir())
    start = time.perf_counter()
    keys = [cell_key(c) for c in cells]  # validates every cell first
    try:
        first = list(dict.fromkeys(cell_key(c) for c in first))
    except TypeError:
        raise ValueError(f"first must be an iterable of cells, got {type(first).__name__}") from None
    unknown = set(first) - set(keys)
    if unknown:
        raise ValueError(f"first names {len(unknown)} cell(s) not in cells, e.g. key {sorted(unknown)[0]}")
    done: dict[str, Any] = {}
    pending: dict[str, Any] = {}
    for c, k in zip(cells, keys):
        if k in done or k in pending:
            continue
        hit, result = cache.load(c, k)
        if hit and not (retry_failed and isinstance(result, CellFailed)):
            done[k] = result
        else:
            pending[k] = c
    reused = len(done)
    failed_before = [k for k, r in done.items() if isinstance(r, CellFailed)]  # cached failures
    if failed_before and not keep_going:
        k = failed_before[0]
        raise RuntimeError(f"{done[k]} (a failure cached in {cache.path(cells[keys.index(k)], k)}; pass "
                           f"retry_failed=True to compute it again)")
    distinct = reused + len(pending)
    costs = dict(zip(pending, cell_costs(list(pending.values()))))
    own = bar is None
    if own:
        bar = tqdm(total=0, desc=desc, disable=not progress or not pending, bar_format=BAR_FORMAT)
    else:
        bar.set_description_str(desc, refresh=False)
    eta = eta_of(bar)
    eta.skip(reused)
    for k in pending:
        eta.add(k, costs[k].kind, costs[k].cost, group=costs[k].group)
    eta.show(bar)
    if on_result is not None:
        cell_of = dict(zip(keys, cells))  # equal keys, equal configurations
        for k, r in done.items():  # read from the cache
            on_result(cell_of[k], r)
    computed = failed = stored = 0  # stored: computed and written to the cache
    interrupted = False
    try:
        if pending:
            cache.check_writable()  # before the first cell, not after it
            ex, close, watch = _executor(workers, scheduler, pool)
            log_seconds = _seconds_log(cache.root, workers if scheduler is None else None)
            cancelled, futures = True, {}

            def keep(k: str, encoded: Any) -> bool:
                """Store a cell's encoded result (or its cached failure) at once: a run killed later keeps it."""
                try:
                    cache.store_encoded(pending[k], encoded, k)
                    return True
                except OSError as err:  # one entry in the way (a folder at the file's path, a read-only subfolder)
                    warnings.warn(f"cannot store the result of cell {pending[k]!r:.200} in {cache.path(pending[k], k)} "
                                  f"({type(err).__name__}: {err.strerror or err}): this run uses it, but it is not "
                                  "cached, so the cell will be recomputed next time", CacheWarning, stacklevel=4)
                    return False

            def collect(fut: cf.Future, k: str) -> None:
                nonlocal computed, failed, stored
                try:
                    try:
                        result, seconds = fut.result()
                    except cf.CancelledError:  # not by us: a Dask cluster that closed, lost its workers or restarted
                        watch()  # the cluster's failure (SchedulerUnreachable), not the cell's, when it is gone
                        raise RuntimeError("the executor cancelled the cell (a Dask cluster that restarted?)") from None
                    encoded = encode(result)  # a result the cache cannot hold is this cell's failure
                except SchedulerUnreachable:
                    raise
                except Exception as err:
                    failure = CellFailed(f"{pending[k]!r:.200}", f"{type(err).__name__}: {err}")
                    if isinstance(err, ValueError):  # deterministic: the same code and configuration fail alike
                        keep(k, encode(failure))
                    if not keep_going:
                        raise RuntimeError(f"cell {pending[k]!r} failed: {type(err).__name__}: {err}") from err
                    done[k] = failure
                    failed += 1
                    began = eta.running.get(k) if limit is not None else None  # local: taken when a worker was free
                    if isinstance(err, ValueError) and began is not None:  # its cost is its class's, like a result's
                        # (session 15: the 26 failing 2-D laws, a quarter of the cold job, were missing from the log)
                        elapsed = max(eta.clock() - began, 0.0)
                        eta.finish(k, elapsed)
                        log_seconds(k, costs[k], elapsed, failed=True)
                    else:
                        eta.drop(k)
                    eta.show(bar)
                    if on_result is not None:
                        on_result(pending[k], failure)
                    return
                done[k] = result  # whether or not it can be stored: a computed result is never lost
                stored += keep(k, encoded)
                computed += 1
                eta.finish(k, seconds)
                log_seconds(k, costs[k], seconds)
                eta.show(bar)
                if on_result is not None:
                    on_result(pending[k], result)

            try:
                # the order of work is the Eta's (Eta.take: a probe of every rate class, then the costliest first),
                # one cell per local worker at a time so that each choice uses the rates measured so far; a Dask
                # cluster gets every cell at once, in that order (its workers are not counted here)
                limit = None if scheduler is not None else workers
                mine, waiting, watched = set(pending), set(), False
                while True:
                    while limit is None or len(waiting) < limit:
                        k = eta.take(mine, first)
                        if k is None:
                            break
                        mine.discard(k)
                        eta.begin(k)
                        if limit == 1 and isinstance(ex, _InProcess):
                            eta.show(bar)  # what this process computes now (the bar is not drawn during it)
                        fut = ex.submit(_execute, pending[k])
                        if fut.done():  # the in-process executor has already computed it
                            collect(fut, k)
                        else:
                            futures[fut] = k
                            waiting.add(fut)
                    if not waiting:
                        break
                    eta.show(bar)  # what runs now
                    if not watched:
                        watch()  # a cluster without workers would hold the cells forever
                        watched = True
                    finished, waiting = cf.wait(waiting, timeout=SCHEDULER_TIMEOUT, return_when=cf.FIRST_COMPLETED)
                    for fut in finished:
                        collect(fut, futures.pop(fut))
                    if not finished:
                        watch()  # a cluster whose workers all left would wait forever
                cancelled = False
            finally:
                if cancelled and pool is not None:  # the owner's pool: only this sweep's cells not started
                    for fut in futures:
                        fut.cancel()
                close(cancelled)
                del ex, close, watch, futures  # the pool and its queues go now, not when the interpreter exits
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if own:
            bar.close()
    if interrupted:  # raised here, so the interrupted frames (and the pool) are not kept alive by a traceback
        raise SweepInterrupted(reused + stored, distinct, stored, cache.root)  # not failed or unstored cells
    return SweepResult(tuple(done[k] for k in keys), len(pending) - failed, reused, time.perf_counter() - start,
                       failed + len(failed_before))
