"""Session-11 adversarial round (issue 20, /work/notes/probe11.md): a cache file names only record types, and the
progress bar's :class:`evaluation.sweep.Eta` refuses what it cannot count instead of crashing at the first redraw."""
import dataclasses
import json
import math
from typing import NamedTuple

import pytest

from evaluation.sweep import Cache, CacheWarning, CellFailed, Eta, _digest, cell_kind, decode, encode, run_cells


@dataclasses.dataclass(frozen=True)
class Plus:
    x: float


class PlusResult(NamedTuple):
    y: float


@cell_kind(Plus)
def _plus(cell: Plus) -> PlusResult:
    return PlusResult(cell.x + 1.0)


def _forge(tmp_path, encoded_result):
    """A cached Plus(1.0) whose result is replaced by ``encoded_result`` with a matching sha256 (key and
    configuration untouched): what a hand-edited or foreign cache file can hold."""
    run_cells([Plus(1.0)], cache=tmp_path, progress=False)
    path = Cache(tmp_path).path(Plus(1.0))
    record = json.loads(path.read_text())
    record["result"], record["sha256"] = encoded_result, _digest(encoded_result)
    path.write_text(json.dumps(record))


@pytest.mark.parametrize("encoded", [
    {"__type__": "os:system", "fields": {"command": "touch {marker}"}},
    {"__type__": "builtins:open", "fields": {"file": "{marker}", "mode": "w"}},
    {"__type__": "pathlib:Path.touch", "fields": {"self": "{marker}"}},
])
def test_a_cache_file_naming_a_callable_that_is_not_a_record_type_is_never_called(tmp_path, encoded):
    """Before: decode called any importable name with the file's fields, so a cache file naming ``os:system`` ran its
    command and the command's return value (0) became the cell's result, silently."""
    marker = tmp_path / "ran"
    text = json.dumps(encoded).replace("{marker}", str(marker))
    _forge(tmp_path / "cache", json.loads(text))
    with pytest.warns(CacheWarning, match="not a dataclass or NamedTuple type"):
        run = run_cells([Plus(1.0)], cache=tmp_path / "cache", progress=False)
    assert not marker.exists()
    assert run.results == (PlusResult(2.0),) and run.reused == 0  # a miss, recomputed


@pytest.mark.parametrize("fields", [{"cell": 3, "error": None}, {"cell": "Plus(x=1.0)", "error": 7}])
def test_a_cached_failure_whose_fields_are_not_strings_is_a_miss(tmp_path, fields):
    """Before: ``CellFailed(cell=3, error=None)`` was read back as the cell's failure (a claim 'not converged:
    None')."""
    _forge(tmp_path, {"__type__": "evaluation.sweep:CellFailed", "fields": fields})
    with pytest.warns(CacheWarning, match="as strings"):
        run = run_cells([Plus(1.0)], cache=tmp_path, progress=False, keep_going=True)
    assert run.results == (PlusResult(2.0),)


def test_decode_still_reads_what_encode_writes():
    value = (CellFailed("c", "ValueError: e"), PlusResult(math.inf), Plus(2.0))
    assert decode(json.loads(json.dumps(encode(value)))) == value
    with pytest.raises(ValueError, match="holds numbers"):
        decode({"__ndarray__": [1], "dtype": "|O", "shape": [1]})


def _eta_with(**kw):
    eta = Eta(clock=lambda: 1.0)
    eta.add("a", "k", **kw)
    return eta


@pytest.mark.parametrize("kw, match", [
    (dict(prior=math.nan), "prior"), (dict(prior=math.inf), "prior"), (dict(prior=-5.0), "prior"),
    (dict(cost=math.nan), "cost"), (dict(cost=-1.0), "cost"), (dict(cost=0.0), "cost"), (dict(cost=math.inf), "cost"),
])
def test_eta_refuses_a_prior_or_cost_it_cannot_count(kw, match):
    """Before: a nan or inf prior (paper_plots reads them from the last run's results.json) crashed the first redraw
    of the bar with ``cannot convert float NaN to integer``; a negative prior gave ETA 0:00 and a negative total."""
    with pytest.raises(ValueError, match=match):
        _eta_with(**kw)


@pytest.mark.parametrize("seconds", [math.nan, math.inf, "a"])
def test_eta_refuses_seconds_that_are_not_finite(seconds):
    eta = _eta_with()
    eta.begin("a")
    with pytest.raises(ValueError, match="finite seconds"):
        eta.finish("a", seconds)


def test_eta_names_an_unknown_or_repeated_task():
    """Before: bare KeyErrors ('zz'), the repeated one only at the next estimate."""
    eta = _eta_with()
    for call in (lambda: eta.begin("zz"), lambda: eta.finish("zz", 1.0), lambda: eta.drop("zz")):
        with pytest.raises(ValueError, match="no task 'zz'"):
            call()
    with pytest.raises(ValueError, match="added already"):
        eta.add("a", "k")
    eta.begin("a")
    eta.finish("a", 2.0)
    assert eta.done == 1 and eta.remaining() == 0
