"""Generated sections of the documentation: Markdown rendered from the results the engine writes.

Numbers in ``README.md`` and ``docs/*.md`` are never typed by hand: a doc holds a marker block

    <!-- generated:NAME -->
    ...
    <!-- /generated:NAME -->

whose content :func:`update` replaces (atomically) with a section rendered from a results file:
:func:`render_findings` from ``paper_plots.py``'s ``results.json`` (``{"figures": {name: {"caption",
"numbers", ...}}}``) and :func:`render_claims` from the claims ledger's ``claims.json``
(:func:`evaluation.claims.ledger.to_json`). Every number is printed by :func:`format_number`: with its error
where the results carry one (a leaf ``{"value": v, "error": e}``, a sibling key ``NAME_error`` beside
``NAME``, or an ``"error"`` beside a claim number's ``"value"``), else to :data:`DIGITS` significant digits;
``tests/test_docs.py`` checks that every printed number equals the results' value at its printed precision.

:data:`SECTIONS` lists the generated blocks of the docs and the results file each is rendered from (a copy
committed under ``docs/data/``); :func:`refresh` re-renders every block whose results file exists.
Only the standard library (and :func:`sampler.files.write_atomically`, the project's one atomic write).
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

from sampler.files import write_atomically

__all__ = ["DIGITS", "Section", "SECTIONS", "format_number", "numbers_table", "render_findings", "render_claims", "render_bench", "update",
           "blocks", "placeholder", "refresh", "publish", "REPOSITORY", "render_inverse"]

REPOSITORY = Path(__file__).resolve().parents[1]  # the clone this module runs from (docs/ lives there)
DIGITS = 4  # significant digits of a number printed without an error
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_BLOCK = re.compile(r"<!-- generated:([A-Za-z0-9_.-]+) -->\n?(.*?)<!-- /generated:\1 -->", re.S)


class Section(NamedTuple):
    """A generated block: the doc it lives in and the results file it is rendered from (repository paths)."""

    doc: str
    source: str
    render: Callable[[Any], str]
    command: str  # the command that writes the results file


def format_number(value: Any, error: Any = None) -> str:
    """One number as printed in the docs.

    With a finite positive ``error``: ``"value ± error"``, the error to two significant digits and the value
    to the error's last digit (``0.2863 ± 0.0069``; with one exponent, ``2.50e-07 ± 0.11e-07``, below 1e-6
    or from 1e6); an error that supports more than ``DIGITS + 1`` significant digits leaves the value at ``DIGITS``
    of them, the error in its own exponent (``0.5161 ± 4.4e-12``). Without: ``DIGITS`` significant digits (``%.4g``);
    integers in full; ``inf`` / ``nan`` (also the strings the ledger writes for them) as such. An infinite
    ``error`` (an estimate that does not bound, e.g. a KL whose support is not resolved) prints as ``"value ± inf"``,
    never as digits that look converged; a ``nan`` error is no error (a count).
    ``ValueError`` for anything that is not a number."""
    if isinstance(value, str) and value.strip().lower() in ("inf", "-inf", "nan", "+inf"):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"value must be a number, got {value!r}")
    if error is not None and (isinstance(error, bool) or not isinstance(error, (int, float))):
        raise ValueError(f"error must be a number or None, got {error!r}")
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if error is not None and math.isinf(error):
        return f"{value:#.{DIGITS}g} ± inf"
    if error is not None and math.isfinite(error) and error > 0:
        err = float(f"{error:.2g}")
        last = math.floor(math.log10(err)) - 1  # the decade of the error's second digit
        if math.floor(math.log10(max(abs(value), err))) - last >= DIGITS + 2:
            # the error supports more digits than a reader uses (0.51607184274916 ± 4.4e-12): DIGITS significant
            # digits, each of them converged, and the error beside them
            return f"{value:#.{DIGITS}g} ± {err:.1e}"
        if -6 <= last and max(abs(value), err) < 1e6:
            decimals = max(0, -last)
            return f"{value:.{decimals}f} ± {err:.{decimals}f}"
        exp = math.floor(math.log10(max(abs(value), err)))  # one exponent for both: 2.50e-07 ± 0.11e-07
        decimals = exp - last
        return f"{value / 10.0**exp:.{decimals}f}e{exp:+03d} ± {err / 10.0**exp:.{decimals}f}e{exp:+03d}"
    return f"{value:#.{DIGITS}g}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _load(results: Any) -> Mapping:
    """A results mapping, or the JSON file at a path."""
    if isinstance(results, Mapping):
        return results
    if isinstance(results, (str, os.PathLike)):
        path = Path(results)
        if not path.is_file():
            raise ValueError(f"results file {str(path)!r} does not exist")
        return json.loads(path.read_text())
    raise ValueError(f"results must be a mapping or the path of a JSON file, got {type(results).__name__}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _leaf(v: Any) -> str:
    """A leaf of a figure's numbers: a number, ``{"value", "error"}``, a list of them, or text."""
    if isinstance(v, Mapping) and set(v) == {"value", "error"}:
        return format_number(v["value"], v["error"])
    if _is_number(v):
        return format_number(v)
    if isinstance(v, (list, tuple)):
        return ", ".join(_leaf(x) for x in v)
    return _cell(v)


def _rows(numbers: Mapping, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """``(key path, printed value)`` of every leaf, in the results' order; ``NAME_error`` beside ``NAME`` is
    printed as ``NAME``'s error."""
    rows = []
    for k, v in numbers.items():
        k = str(k)
        if k.endswith("_error") and k[:-6] in numbers:
            continue
        err = numbers.get(f"{k}_error")
        if isinstance(v, Mapping) and set(v) != {"value", "error"}:
            rows += _rows(v, prefix + (k,))
        elif err is not None and _is_number(v):
            rows.append((prefix + (k,), format_number(v, err)))
        else:
            rows.append((prefix + (k,), _leaf(v)))
    return rows


def _table(rows: list[tuple[tuple[str, ...], str]]) -> list[str]:
    """A Markdown table: rows are the key paths but the last and columns the last key when every path has
    two keys or more, else ``quantity | value``. Paths stay tuples until printed (joined by " / "), so a key may
    hold any text: a " / " or a "|" in a name cannot split or merge rows."""
    if min(len(k) for k, _ in rows) < 2:
        return ["| quantity | value |", "|---|---|"] + [f"| {_cell(' / '.join(k))} | {v} |" for k, v in rows]
    cols = list(dict.fromkeys(k[-1] for k, _ in rows))
    cells = {(k[:-1], k[-1]): v for k, v in rows}
    names = list(dict.fromkeys(name for name, _ in cells))
    lines = ["| | " + " | ".join(_cell(c) for c in cols) + " |", "|---|" + "---|" * len(cols)]
    lines += [f"| {_cell(' / '.join(n))} | " + " | ".join(cells.get((n, c), "") for c in cols) + " |" for n in names]
    return lines


def numbers_table(numbers: Mapping) -> str:
    """A figure's nested numbers as one Markdown table (``results.md`` and the findings block print the same
    table): every leaf by :func:`format_number`, a ``{"value", "error"}`` leaf or a ``NAME`` beside ``NAME_error``
    with its error."""
    rows = _rows(numbers)
    return "\n".join(_table(rows)) if rows else "(no numbers)"


def render_findings(results: Any) -> str:
    """The findings section from ``paper_plots.py``'s ``results.json`` (a mapping or its path): per figure,
    its caption and a table of its numbers (rows: key paths; columns: the last key)."""
    data = _load(results)
    figures = data.get("figures")
    if not isinstance(figures, Mapping):
        raise ValueError("results must hold a 'figures' mapping (paper_plots.py's results.json)")
    run = f" (run ended {data['date']})" if data.get("date") else ""
    return _captioned_tables(f"_Generated by `python paper_plots.py{' --quick' if data.get('quick') else ''}`{run} from "
                             f"its `results.json`; do not edit by hand. A figure's code stamp names the source of its "
                             f"cells (`evaluation.sweep.cells_code`), as the claims ledger's run stamps do._", figures)


def _captioned_tables(head: str, figures: Mapping, *, require_numbers: bool = False) -> str:
    """``head``, then per figure (or setting) of ``figures``: its name, its caption and the table of its numbers
    (:func:`numbers_table`); a figure that failed shows its error. ``require_numbers``: a figure without numbers is
    an error instead of ``(no numbers)``."""
    lines = [head, ""]
    for name, fig in figures.items():
        lines += [f"#### `{name}`" + (f" (code {fig['code']})" if fig.get("code") else ""), ""]
        if fig.get("caption"):
            lines += [_cell(fig["caption"]), ""]
        if "error" in fig:
            lines += [f"**failed**: {_cell(fig['error'])}", ""]
            continue
        if require_numbers and not fig.get("numbers"):
            raise ValueError(f"setting {name!r} has no numbers")
        lines += [numbers_table(fig.get("numbers") or {}), ""]
    return "\n".join(lines).rstrip() + "\n"


def render_bench(bench: Any, top: int = 8) -> str:
    """The bench's headline from ``python -m evaluation.bench``'s ``bench.json`` (a mapping or its path): the first
    ``top`` rules of the leaderboard, each score with its error."""
    data = _load(bench)
    board, config = data.get("leaderboard"), data.get("config")
    if not isinstance(board, list) or not isinstance(config, Mapping):
        raise ValueError("bench must hold a 'leaderboard' list and a 'config' mapping (evaluation.bench's bench.json)")
    lines = [f"_Generated by `python -m evaluation.bench` (settings version {data.get('version')}: laws "
             f"{', '.join(map(str, config.get('laws', ())))}; levels {', '.join(map(str, config.get('levels', ())))}; "
             f"weights {', '.join(f'{w:g}' for w in config.get('weights', ()))}); do not edit by hand._", "",
             "| rank | rule | score (sw1 / sw1 of the optimum; lower is better) | settings |", "|---:|---|---:|---:|"]
    for i, b in enumerate(board[:top], 1):
        score = "n/a" if b.get("score") is None else format_number(b["score"], b.get("score_error"))
        partial = "" if b.get("complete", True) else " (partial)"
        lines.append(f"| {i} | {_cell(b['rule'])}{partial} | {score} | {b.get('settings')} |")
    lines += ["", f"{len(board)} rules in all; the whole table, its rows and errors: `bench.md` / `bench.json`."]
    return "\n".join(lines) + "\n"


def render_claims(claims: Any) -> str:
    """The ledger section from ``claims.json`` (a mapping or its path): the verdict table (with each entry's
    run, date / quick or full / code version, when the ledger stamps them), then each claim's numbers
    (quantity | value)."""
    data = _load(claims)
    items = data.get("claims")
    if not isinstance(items, list):
        raise ValueError("claims must hold a 'claims' list (the ledger's claims.json)")
    stamped = any("run" in c for c in items)  # ledgers merged from several runs stamp each entry
    lines = [f"_Generated by `python -m evaluation.claims{' --quick' if data.get('quick') else ''}` from its "
             f"`claims.json`; do not edit by hand._", "",
             "| id | claim | source | verdict | key number |" + (" run |" if stamped else ""),
             "|---|---|---|---|---|" + ("---|" if stamped else "")]
    for c in items:
        run = ""
        if stamped:
            r = c.get("run") or {"quick": data.get("quick")}
            run = " " + _cell(" ".join(s for s in (str(r.get("date", "")), "quick" if r.get("quick") else "full",
                                                   str(r.get("code", ""))[:12]) if s)) + " |"
        lines.append(f"| `{c['id']}` | {_cell(c.get('title', ''))} | arXiv {c['source']} ({c.get('provenance', '')}) | "
                     f"**{_cell(c['verdict'])}** | {_cell(c.get('key_number', ''))} |{run}")
    lines.append("")
    for c in items:
        numbers = c.get("numbers") or []
        if not numbers:
            continue
        lines += [f"#### `{c['id']}`", "", "| quantity | value |", "|---|---|"]
        lines += [f"| {_cell(n['name'])} | {format_number(n['value'], n.get('error'))} |" for n in numbers]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def render_inverse(results: Any) -> str:
    """DPS against the exact posterior from ``python -m evaluation.inverse``'s ``inverse.json`` (a mapping or its
    path; :func:`evaluation.inverse.to_results`): per setting, its caption and a table, one row per noise level and one
    column per quantity, each number with its error."""
    data = _load(results)
    settings = data.get("figures")
    if not isinstance(settings, Mapping) or not settings:
        raise ValueError("results must hold a non-empty 'figures' mapping (evaluation.inverse's inverse.json)")
    return _captioned_tables(f"_Generated by `python -m evaluation.inverse{' --quick' if data.get('quick') else ''}` "
                             f"from its `inverse.json`; do not edit by hand._", settings, require_numbers=True)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"name must be letters, digits, '_', '.' or '-', got {name!r}")


def blocks(text: str) -> dict[str, str]:
    """``{NAME: content}`` of every generated block in a doc's text. ``ValueError`` when a marker is
    unmatched or a name occurs twice."""
    found: dict[str, str] = {}
    for m in _BLOCK.finditer(text):
        if m.group(1) in found:
            raise ValueError(f"generated block {m.group(1)!r} occurs twice")
        found[m.group(1)] = m.group(2)
    opened = re.findall(r"<!-- generated:([^ ]+) -->", text)
    closed = re.findall(r"<!-- /generated:([^ ]+) -->", text)
    if sorted(opened) != sorted(found) or sorted(closed) != sorted(found):
        raise ValueError(f"unmatched generated markers: opened {opened}, closed {closed}")
    return found


def update(doc_path: str | os.PathLike, name: str, markdown_text: str) -> Path:
    """Replace the content of the block ``NAME`` in the doc at ``doc_path`` with ``markdown_text``, atomically
    (readers see the old doc or the new one). ``ValueError`` when the doc has no such block (add the two
    markers by hand first) or its markers are broken. Returns the path."""
    _check_name(name)
    if not isinstance(markdown_text, str):
        raise ValueError(f"markdown_text must be a str, got {type(markdown_text).__name__}")
    if "<!-- generated:" in markdown_text or "<!-- /generated:" in markdown_text:
        raise ValueError("markdown_text must not contain generated-block markers")
    path = Path(doc_path)
    if not path.is_file():
        raise ValueError(f"doc_path {str(path)!r} is not a file")
    text = path.read_text()
    if name not in blocks(text):
        raise ValueError(f"{path} has no block '<!-- generated:{name} -->' ... '<!-- /generated:{name} -->'")
    start, end = f"<!-- generated:{name} -->", f"<!-- /generated:{name} -->"
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    body = markdown_text.strip("\n")
    write_atomically(path, f"{before}{start}\n{body}\n{end}{after}")
    return path


SECTIONS: dict[str, Section] = {
    "findings": Section("docs/findings.md", "docs/data/results.json", render_findings, "python paper_plots.py"),
    "claims": Section("docs/claims.md", "docs/data/claims.json", render_claims, "python -m evaluation.claims"),
    "bench": Section("README.md", "docs/data/bench.json", render_bench, "python -m evaluation.bench --quick"),
    "inverse": Section("docs/inverse.md", "docs/data/inverse.json", render_inverse, "python -m evaluation.inverse"),
}


def placeholder(name: str) -> str:
    """The one line a block holds while its results file is not in the repository."""
    if name not in SECTIONS:
        raise ValueError(f"name must be one of {sorted(SECTIONS)}, got {name!r}")
    return f"_Generated by `{SECTIONS[name].command}` (results file `{SECTIONS[name].source}` not yet committed)._"


def refresh(root: str | os.PathLike = ".") -> list[Path]:
    """Re-render every block of :data:`SECTIONS` whose results file exists under ``root``; returns the docs
    written."""
    root = Path(root)
    written = []
    for name, s in SECTIONS.items():
        if (root / s.source).is_file():
            written.append(update(root / s.doc, name, s.render(root / s.source)))
    return written


def publish_images(out: str | os.PathLike, root: str | os.PathLike = REPOSITORY) -> list[Path]:
    """Copy the figures the docs show (every ``docs/img/*.png`` under ``root``) from a full run's ``out`` folder,
    so the published images are those of the published numbers; returns the images written. ``ValueError`` naming
    the images ``out`` did not draw (nothing is copied then)."""
    root, out = Path(root), Path(out)
    shown = sorted((root / "docs" / "img").glob("*.png"))
    if not shown:
        raise ValueError(f"{root / 'docs' / 'img'} holds no figure: docs are published from a clone of the repository")
    missing = [p.name for p in shown if not (out / p.name).is_file()]
    if missing:
        raise ValueError(f"{out} lacks {', '.join(missing)}, which docs/img shows: run every figure into it first")
    for p in shown:
        write_atomically(p, (out / p.name).read_bytes())
    return shown


def publish(name: str, results_file: str | os.PathLike, root: str | os.PathLike = REPOSITORY) -> Path:
    """Copy ``results_file`` (a full run's ``results.json`` or ``claims.json``) to the committed copy of section
    ``name`` under ``root`` (``docs/data/``) and re-render its block; returns the doc written. ``ValueError`` when
    ``root`` has no ``docs/`` (an installed copy, not a clone) or the results do not render."""
    if name not in SECTIONS:
        raise ValueError(f"name must be one of {sorted(SECTIONS)}, got {name!r}")
    s, root = SECTIONS[name], Path(root)
    if not (root / s.doc).is_file():
        raise ValueError(f"{root / s.doc} not found: docs are published from a clone of the repository")
    text = Path(results_file).read_text()
    rendered = s.render(json.loads(text))  # renders before anything is written
    target = root / s.source
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, text)
    return update(root / s.doc, name, rendered)
