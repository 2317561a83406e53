"""The README and docs/ as a reader meets them: every python block runs (in order, one namespace per file, as
pasted); every number in a generated block is the results file's value at its printed precision; the README
is short with its example early; every relative link resolves; :mod:`evaluation.docs` renders and writes
blocks correctly and refuses bad input."""
from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import re
from pathlib import Path

import pytest

from evaluation import docs as D

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _python_blocks(path: Path) -> list[str]:
    return FENCE.findall(path.read_text())


# --- (a) every python block runs ------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _run_blocks(path: Path) -> tuple[dict, str]:
    """Run a file's python blocks in order in one namespace, as a reader pastes them; (namespace, stdout)."""
    namespace: dict = {"__name__": "__doc_example__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for i, block in enumerate(_python_blocks(path)):
            try:
                exec(compile(block, f"{path.name}[block {i}]", "exec"), namespace)
            except Exception as err:  # the block and file in the failure, as a reader would see them
                raise AssertionError(f"{path.name}, python block {i} failed: {type(err).__name__}: {err}\n"
                                     f"{block}") from err
    return namespace, out.getvalue()


@pytest.mark.parametrize("path", [p for p in DOCS if _python_blocks(p)], ids=lambda p: p.name)
def test_python_blocks_run_in_order(path):
    _run_blocks(path)


def test_block_runner_shares_one_namespace_and_reports_a_failing_block(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("```python\nx = 2\n```\n\ntext\n\n```python\nprint(x + 1)\n```\n\n```python\n1 / 0\n```\n")
    with pytest.raises(AssertionError, match=r"doc.md, python block 2 failed: ZeroDivisionError"):
        _run_blocks(doc)
    good = tmp_path / "good.md"  # another path: _run_blocks remembers a file's run
    good.write_text("```python\nx = 2\n```\n\n```python\nprint(x + 1)\n```\n")
    assert _run_blocks(good)[1] == "3\n"


def test_readme_example_computes_what_it_says():
    """The README's own-mixture example: the golden is exact (reported error below 1e-6), REG's field is closer
    to it than CFG's here, and the printed TVs carry errors smaller than the TVs' difference, so the comparison
    it shows is resolved."""
    ns, out = _run_blocks(ROOT / "README.md")
    f = ns["f"]
    assert f.golden_error.max().item() < 1e-6
    gap = {k: (getattr(f, k) - f.golden).abs().mean().item() for k in ("present", "reg_vjp")}
    assert gap["reg_vjp"] < gap["present"], gap
    printed = re.findall(r"^(\w+): TV to the tilted target ([\d.]+) \+- ([\d.e+-]+)", out, re.M)
    tvs = {m: (float(a), float(b)) for m, a, b in printed}
    assert set(tvs) == {"CFG", "REG"}, out
    assert abs(tvs["CFG"][0] - tvs["REG"][0]) > tvs["CFG"][1] + tvs["REG"][1], tvs


# --- (c) the README is a front door ----------------------------------------------------------------------
def test_readme_is_short_with_its_example_early():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, len(lines)
    first = next(i for i, line in enumerate(lines) if line.startswith("```python"))
    assert first < 60, first
    # "golden" is defined where it first appears
    at = next(i for i, line in enumerate(lines) if "golden" in line.lower())
    assert "optimal guidance" in " ".join(lines[at:at + 2]), lines[at:at + 2]


# --- (d) every relative link resolves -------------------------------------------------------------------
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("path", DOCS + [ROOT / "CHANGELOG.md"], ids=lambda p: p.name)
def test_relative_links_resolve(path):
    text = FENCE.sub("", path.read_text())
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        if not (path.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken, f"{path.name}: broken links {broken}"


def test_link_check_sees_a_broken_link(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("[ok](x.md) [gone](docs/missing.md) ![img](img/none.png) [web](https://example.org)\n")
    found = [t for t in LINK.findall(doc.read_text()) if not re.match(r"^[a-z]+:", t)
             and not (doc.parent / t).exists()]
    assert found == ["docs/missing.md", "img/none.png"]


# --- (b) generated numbers equal the results at their printed precision ----------------------------------
NUM = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|[+-]?inf|nan)$")


def _printed(token: str) -> tuple[float, float]:
    """A printed number and half a unit of its last printed digit (independent of the renderer)."""
    token = token.strip()
    assert NUM.match(token), f"not a number: {token!r}"
    value = float(token)
    if not math.isfinite(value):
        return value, 0.0
    mantissa, _, exp = token.lstrip("+-").partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return value, 0.5 * 10.0 ** (int(exp or 0) - decimals)


def _agrees(token: str, value: float) -> bool:
    printed, half = _printed(token)
    if not math.isfinite(value):
        return printed == value or (math.isnan(printed) and math.isnan(value))
    return abs(printed - value) <= half * (1 + 1e-9) + 1e-300


def _check_cell(cell: str, value, error=None) -> None:
    """``cell`` prints ``value`` (and ``error``, when the results carry one) at its printed precision."""
    cell = cell.strip()
    if error is not None and isinstance(value, (int, float)) and math.isinf(error):
        assert cell.endswith(" ± inf"), f"{cell}: the unbounded error is missing"
        assert _agrees(cell[:-len(" ± inf")], value), (cell, value)
        return
    if error is not None and isinstance(value, (int, float)) and math.isfinite(error) and error > 0:
        assert " ± " in cell, f"{cell}: the error {error} is missing"
        v, e = cell.split(" ± ")
        assert _agrees(v, value), (cell, value)
        assert _agrees(e, error), (cell, error)
        # the same digits, or (an error far below them) the value's last digit converged: error < half a unit of it
        assert (_printed(v)[1] == pytest.approx(_printed(e)[1]) or error < _printed(v)[1]), \
            f"{cell}: value and error to different digits"
        return
    assert "±" not in cell, cell
    assert _agrees(cell, float(value)), (cell, value)


def _table(section: str) -> dict[str, str]:
    """``{label: cell}`` of the Markdown tables in a section (escaped pipes kept): ``quantity | value`` tables
    by quantity, others by ``row / column``."""
    rows, header = {}, None
    for line in section.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.replace("\\|", "|").strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if header is None:
            header = cells
        elif not all(set(c) <= set("-") for c in cells):
            if header == ["quantity", "value"]:
                rows[cells[0]] = cells[1]
            else:
                rows.update({f"{cells[0]} / {col}": c for col, c in zip(header[1:], cells[1:], strict=True) if c})
    return rows


def _leaves(numbers: dict, prefix=()):
    """``(label, value, error)`` of every number in a figure's numbers, walked independently of the renderer."""
    for k, v in numbers.items():
        if k.endswith("_error") and k[:-6] in numbers:
            continue
        label = " / ".join(prefix + (k,))
        if isinstance(v, dict) and set(v) == {"value", "error"}:
            yield label, v["value"], v["error"]
        elif isinstance(v, dict):
            yield from _leaves(v, prefix + (k,))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            yield label, v, numbers.get(f"{k}_error")
        elif isinstance(v, list):
            yield label, v, None


def check_findings(block: str, results: dict) -> int:
    """Every number of ``results`` appears in ``block`` at its printed precision; returns how many."""
    n = 0
    sections = re.split(r"^#### `([^`]+)`(?: \(code ([0-9a-f]{12})\))?$", block, flags=re.M)
    by_name = dict(zip(sections[1::3], sections[3::3]))
    assert list(by_name) == list(results["figures"]), (list(by_name), list(results["figures"]))
    codes = dict(zip(sections[1::3], sections[2::3]))
    assert all(codes[name] == fig.get("code") for name, fig in results["figures"].items()), codes  # its stamp
    for name, fig in results["figures"].items():
        rows = _table(by_name[name])
        leaves = list(_leaves(fig.get("numbers", {})))
        # and the other way: every cell the table prints is one of the results' numbers (nothing typed, nothing left over)
        extra = set(rows) - {label for label, _, _ in leaves}
        assert not extra, f"{name}: the generated table prints {sorted(extra)[:5]}, which the results do not hold"
        for label, value, error in leaves:
            assert label in rows, f"{name}: {label!r} not in the generated table"
            if isinstance(value, list):
                for token, v in zip(rows[label].split(", "), value, strict=True):
                    assert _agrees(token, v), (name, label, token, v)
            else:
                _check_cell(rows[label], value, error)
            n += 1
    return n


def check_claims(block: str, claims: dict) -> int:
    n = 0
    sections = re.split(r"^#### `([^`]+)`$", block, flags=re.M)
    by_id = dict(zip(sections[1::2], sections[2::2]))
    for c in claims["claims"]:
        assert f"| `{c['id']}` |" in block, c["id"]
        assert c["verdict"].replace("|", "\\|") in block, c["id"]
        if not c["numbers"]:
            continue
        rows = _table(by_id[c["id"]])
        for num in c["numbers"]:
            value = float(num["value"]) if isinstance(num["value"], str) else num["value"]
            _check_cell(rows[num["name"]], value, num.get("error"))
            n += 1
    return n


FIXTURE_RESULTS = {"quick": True, "figures": {
    "outputs": {"caption": "Exact output laws | against the tilted target.", "files": ["outputs.png"], "numbers": {
        "w=1": {"cfg": {"tv": 0.66312345, "tv_error": 0.00123456, "kl": 1.23456789e-5},
                "reg": {"tv": {"value": 0.6751, "error": 0.0000429}, "kl": 12345.678}},
        "steps": 20, "ratios": [0.1234567, 2.0, 1e-12]}},
    "sweeps": {"caption": "a pivot table", "numbers": {"w=1": {"tv": 0.1234567, "kl": 2.5e-7, "kl_error": 1.1e-8},
                                                       "w=2": {"tv": 0.98765}}},
    "broken": {"caption": "a figure that failed", "error": "RuntimeError: boom"},
}}
FIXTURE_CLAIMS = {"quick": False, "seconds": 12.3, "claims": [
    {"id": "reg-samples", "source": "2501.18865", "title": "REG's samples are closer", "statement": "s",
     "provenance": "abstract", "experiment": "e", "verdict": "holds only when the start is tilted | exact",
     "key_number": "REG closer in 291/424", "figure": "claims_reg_samples",
     "numbers": [{"name": "TV |plain|", "value": 0.663123}, {"name": "gap", "value": -0.0119876, "error": 0.00031},
                 {"name": "blow-up", "value": "inf"}, {"name": "count", "value": 291.0}]},
    {"id": "bn-pc", "source": "2408.09000", "title": "t", "statement": "s", "provenance": "memory",
     "experiment": "e", "verdict": "holds", "key_number": "k", "figure": "claims_bn_pc", "numbers": [],
     "run": {"quick": True, "date": "2026-12-06", "code": "0123456789abcdef"}}]}


def _doc_with_blocks(tmp_path) -> Path:
    doc = tmp_path / "doc.md"
    doc.write_text("# Title\n\nprose 1.5 stays\n\n<!-- generated:findings -->\nSTALE\n<!-- /generated:findings -->\n\n"
                   "between\n\n<!-- generated:claims -->\n<!-- /generated:claims -->\ntail\n")
    return doc


def test_rendered_numbers_equal_the_results_at_printed_precision(tmp_path):
    doc = _doc_with_blocks(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps(FIXTURE_RESULTS))
    D.update(doc, "findings", D.render_findings(tmp_path / "results.json"))
    D.update(doc, "claims", D.render_claims(FIXTURE_CLAIMS))
    text = doc.read_text()
    assert text.startswith("# Title\n\nprose 1.5 stays\n\n<!-- generated:findings -->\n") and text.endswith("tail\n")
    assert "between" in text and "STALE" not in text
    found = D.blocks(text)
    assert check_findings(found["findings"], FIXTURE_RESULTS) == 9
    assert "**failed**: RuntimeError: boom" in found["findings"]
    assert check_claims(found["claims"], FIXTURE_CLAIMS) == 4
    # a merged ledger says which run each entry came from
    assert "| **holds** | k | 2026-12-06 quick 0123456789ab |" in found["claims"]
    assert "| REG closer in 291/424 | full |" in found["claims"]
    # the error sets the digits: 0.66312345 +- 0.00123456 prints as 0.6631 ± 0.0012
    assert "| w=1 / cfg / tv | 0.6631 ± 0.0012 |" in found["findings"]


def test_findings_say_which_run_and_code_made_each_figure():
    """paper_plots stamps results.json with the run's end and each figure with its cells' code version (as the ledger
    stamps its entries), so a reader sees which source the published numbers came from; the stamps are not
    numbers the precision check reads."""
    results = {**FIXTURE_RESULTS, "date": "2026-12-07T12:00:00Z",
               "figures": {**FIXTURE_RESULTS["figures"], "outputs": {**FIXTURE_RESULTS["figures"]["outputs"],
                                                                     "code": "0123456789ab"}}}
    block = D.render_findings(results)
    assert "`python paper_plots.py --quick` (run ended 2026-12-07T12:00:00Z)" in block
    assert "#### `outputs` (code 0123456789ab)" in block and "#### `sweeps`\n" in block
    assert check_findings(block, results) == 9


def test_publish_images_copies_the_figures_the_docs_show(tmp_path):
    """paper_plots --update-docs copies the figures docs/img shows from its --out, so the published images are those
    of the published numbers (they were copied by hand); a figure the run did not draw refuses, copying none."""
    img, out = tmp_path / "docs" / "img", tmp_path / "out"
    img.mkdir(parents=True), out.mkdir()
    (img / "a.png").write_bytes(b"old a"), (img / "b.png").write_bytes(b"old b")
    (out / "a.png").write_bytes(b"new a"), (out / "c.png").write_bytes(b"not shown")
    with pytest.raises(ValueError, match="lacks b.png"):
        D.publish_images(out, root=tmp_path)
    assert (img / "a.png").read_bytes() == b"old a"
    (out / "b.png").write_bytes(b"new b")
    assert [p.name for p in D.publish_images(out, root=tmp_path)] == ["a.png", "b.png"]
    assert (img / "a.png").read_bytes() == b"new a" and (img / "b.png").read_bytes() == b"new b"
    assert not (img / "c.png").exists()
    with pytest.raises(ValueError, match="holds no figure"):
        D.publish_images(out, root=tmp_path / "elsewhere")


def test_the_precision_check_catches_a_wrong_number():
    """The check of (b) can fail: a number off by more than half its last digit, or an error dropped."""
    block = D.render_findings(FIXTURE_RESULTS).replace("0.6631 ± 0.0012", "0.6634 ± 0.0012")
    with pytest.raises(AssertionError):
        check_findings(block, FIXTURE_RESULTS)
    block = D.render_findings(FIXTURE_RESULTS).replace("0.6631 ± 0.0012", "0.6631")
    with pytest.raises(AssertionError):
        check_findings(block, FIXTURE_RESULTS)
    block = D.render_findings(FIXTURE_RESULTS).replace("| w=2 | 0.9877 |", "| w=2 | 0.9871 |")  # a pivot cell
    with pytest.raises(AssertionError):
        check_findings(block, FIXTURE_RESULTS)
    block = D.render_findings(FIXTURE_RESULTS).replace("| w=2 | 0.9877 |  |", "| w=2 | 0.9877 |  |\n| w=3 | 0.5000 |  |")
    with pytest.raises(AssertionError, match="results do not hold"):  # a row the results do not hold
        check_findings(block, FIXTURE_RESULTS)
    block = D.render_claims(FIXTURE_CLAIMS).replace("0.6631", "0.663")  # fewer digits than printed: still right
    assert check_claims(block, FIXTURE_CLAIMS) == 4
    with pytest.raises(AssertionError):
        check_claims(D.render_claims(FIXTURE_CLAIMS).replace("0.6631", "0.6621"), FIXTURE_CLAIMS)


@pytest.mark.parametrize("value, error, printed", [
    (0.66312345, 0.00123456, "0.6631 ± 0.0012"), (12345.678, 2.34, "12345.7 ± 2.3"), (0.5, 0.25, "0.50 ± 0.25"),
    (1.0, None, "1.000"), (1.574e-16, None, "1.574e-16"), (291, None, "291"), (float("inf"), None, "inf"),
    ("inf", None, "inf"), (0.2, 0.0, "0.2000"), (-0.0119876, 0.00031, "-0.01199 ± 0.00031"),
    (2.5e-7, 1.1e-8, "2.50e-07 ± 0.11e-07"), (1.0e-12, 2.3e-8, "0.0e-08 ± 2.3e-08"),
    (3.14159e7, 12345.0, "3.1416e+07 ± 0.0012e+07"), (0.51607184274916, 4.4e-12, "0.5161 ± 4.4e-12"),
    (-3.2e-9, 1.2e-20, "-3.200e-09 ± 1.2e-20"), (0.123456789, 1.2e-7, "0.1235 ± 1.2e-07"),
    (0.123456789, 1.2e-6, "0.1235 ± 1.2e-06"), (0.123456789, 1.2e-5, "0.123457 ± 0.000012"),
    (0.9742044, float("inf"), "0.9742 ± inf"), (0.9742044, float("nan"), "0.9742"),
    (float("nan"), float("inf"), "nan")])
def test_format_number(value, error, printed):
    assert D.format_number(value, error) == printed


@pytest.mark.parametrize("value, error", [("0.5", None), (None, None), (True, None), (0.5, "0.1"), ([1.0], None)])
def test_format_number_refuses_non_numbers(value, error):
    with pytest.raises(ValueError, match="value|error"):
        D.format_number(value, error)


def test_update_refuses_bad_input(tmp_path):
    doc = _doc_with_blocks(tmp_path)
    before = doc.read_text()
    with pytest.raises(ValueError, match="no block"):
        D.update(doc, "nonesuch", "x")
    with pytest.raises(ValueError, match="name"):
        D.update(doc, "bad name", "x")
    with pytest.raises(ValueError, match="markers"):
        D.update(doc, "claims", "<!-- generated:claims -->")
    with pytest.raises(ValueError, match="doc_path"):
        D.update(tmp_path / "missing.md", "claims", "x")
    with pytest.raises(ValueError, match="markdown_text"):
        D.update(doc, "claims", 3)
    assert doc.read_text() == before
    doc.write_text("<!-- generated:a -->\nx\n")
    with pytest.raises(ValueError, match="unmatched"):
        D.update(doc, "a", "y")
    doc.write_text("<!-- generated:a -->\n<!-- /generated:a -->\n<!-- generated:a -->\n<!-- /generated:a -->\n")
    with pytest.raises(ValueError, match="twice"):
        D.blocks(doc.read_text())


def test_renderers_refuse_the_wrong_file(tmp_path):
    with pytest.raises(ValueError, match="figures"):
        D.render_findings(FIXTURE_CLAIMS)
    with pytest.raises(ValueError, match="claims"):
        D.render_claims(FIXTURE_RESULTS)
    with pytest.raises(ValueError, match="does not exist"):
        D.render_claims(tmp_path / "none.json")
    with pytest.raises(ValueError, match="mapping"):
        D.render_claims(3)


def test_refresh_renders_every_section_whose_results_exist(tmp_path):
    for name, s in D.SECTIONS.items():
        (tmp_path / s.doc).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / s.doc).write_text(f"x\n<!-- generated:{name} -->\n{D.placeholder(name)}\n"
                                      f"<!-- /generated:{name} -->\n")
    (tmp_path / D.SECTIONS["claims"].source).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / D.SECTIONS["claims"].source).write_text(json.dumps(FIXTURE_CLAIMS))
    assert D.refresh(tmp_path) == [tmp_path / D.SECTIONS["claims"].doc]
    assert check_claims(D.blocks((tmp_path / D.SECTIONS["claims"].doc).read_text())["claims"], FIXTURE_CLAIMS) == 4
    findings = D.blocks((tmp_path / D.SECTIONS["findings"].doc).read_text())["findings"]
    assert findings.strip() == D.placeholder("findings")


def test_generated_blocks_of_the_docs_match_their_results():
    """Each generated block in README/docs is one of SECTIONS, in its doc. With its results file committed, the
    block is that file's rendering and every number agrees at its printed precision; without it, the block is
    the one-line note and holds no number."""
    seen = set()
    for path in DOCS:
        for name, content in D.blocks(path.read_text()).items():
            assert name in D.SECTIONS, f"{path.name}: unknown generated block {name!r}"
            section = D.SECTIONS[name]
            assert path == ROOT / section.doc, (path, section.doc)
            seen.add(name)
            source = ROOT / section.source
            if source.is_file():
                results = json.loads(source.read_text())
                assert content.strip() == section.render(results).strip(), f"{path.name}: {name} is stale"
                assert CHECKS[name](content, results) > 0
            else:
                assert content.strip() == D.placeholder(name)
                assert not re.search(r"\d", content.replace(section.source, "")), content
    assert seen == set(D.SECTIONS)


def check_bench(block: str, bench: dict) -> int:
    """Every leaderboard row shown prints its rule, its score and error at their printed precision; returns how
    many rows."""
    n = 0
    for line in block.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) != 4 or not cells[0].isdigit():
            continue
        b = bench["leaderboard"][int(cells[0]) - 1]
        assert cells[1].replace("\\|", "|").removesuffix(" (partial)") == b["rule"], (cells, b["rule"])
        if b["score"] is None:
            assert cells[2] == "n/a", cells
        else:
            _check_cell(cells[2], b["score"], b.get("score_error"))
        assert int(cells[3]) == b["settings"]
        n += 1
    return n


CHECKS = {"findings": check_findings, "claims": check_claims, "bench": check_bench, "inverse": check_findings}


def test_bench_headline_prints_the_leaderboard_at_its_precision():
    board = [{"rule": "optimal", "score": 1.0, "score_error": 0.07, "settings": 8, "complete": True},
             {"rule": "cfg", "score": 4.912, "score_error": 0.21, "settings": 8, "complete": True},
             {"rule": "x", "score": None, "score_error": None, "settings": 0, "complete": False}]
    bench = {"version": 1, "config": {"laws": ["paper_1d"], "levels": ["flow:10"], "weights": [1.0, 4.0]},
             "leaderboard": board}
    block = D.render_bench(bench)
    assert check_bench(block, bench) == 3
    with pytest.raises(AssertionError):
        check_bench(block.replace("4.91 ± 0.21", "4.81 ± 0.21"), bench)
    with pytest.raises(ValueError, match="leaderboard"):
        D.render_bench({"rows": []})


HAND_TYPED = re.compile(r"(?<![\w.])(?<!arXiv )\d+\.\d{3,}")  # a result-like number: three or more decimals


@pytest.mark.parametrize("path", [p for p in DOCS if p.name not in ("benchmarks.md", "THEORY.md")],
                         ids=lambda p: p.name)
def test_no_hand_typed_results_outside_generated_blocks(path):
    """Results reach README and docs only through generated blocks: outside them no number carries three or more
    decimals (set-up values such as w = 0.25 or abar = 0.5 do not; benchmarks.md is a dated log of measurements,
    THEORY.md quotes the paper)."""
    text = re.sub(r"<!-- generated:(\S+) -->.*?<!-- /generated:\1 -->", "", path.read_text(), flags=re.S)
    text = FENCE.sub("", text)
    assert not HAND_TYPED.findall(text), f"{path.name}: {HAND_TYPED.findall(text)}"


def test_hand_typed_check_sees_a_typed_result():
    assert HAND_TYPED.findall("TV 0.663 -> 0.675, w = 0.25, arXiv 2501.18865, 1e-4") == ["0.663", "0.675"]


REAL_RESULTS = {"findings": [D.SECTIONS["findings"].source, "out/figures/results.json"],
                "claims": [D.SECTIONS["claims"].source, "out/claims/claims.json"],
                "bench": [D.SECTIONS["bench"].source, "out/bench/bench.json"]}


@pytest.mark.parametrize("name", sorted(REAL_RESULTS))
def test_rendering_of_real_results_keeps_every_number(name):
    """On the results files a run wrote (committed under docs/data/, or a local run's out/), every number is
    rendered at its printed precision (and with its error where the file carries one)."""
    paths = [ROOT / p for p in REAL_RESULTS[name] if (ROOT / p).is_file()]
    if not paths:
        pytest.skip(f"no results file for {name} here ({', '.join(REAL_RESULTS[name])})")
    for path in paths:
        results = json.loads(path.read_text())
        CHECKS[name](D.SECTIONS[name].render(results), results)


def test_publish_copies_the_results_and_renders_the_block(tmp_path):
    """``paper_plots.py --update-docs`` / ``python -m evaluation.claims --update-docs``: the results file lands under
    docs/data/ and the block is rendered from it; a root without the doc is refused before anything is written."""
    (tmp_path / "docs").mkdir()
    name = "claims"
    doc = tmp_path / D.SECTIONS[name].doc
    doc.write_text(f"# Ledger\n\n<!-- generated:{name} -->\nold\n<!-- /generated:{name} -->\n")
    src = tmp_path / "claims.json"
    src.write_text(json.dumps(FIXTURE_CLAIMS))
    assert D.publish(name, src, root=tmp_path) == doc
    assert json.loads((tmp_path / D.SECTIONS[name].source).read_text()) == FIXTURE_CLAIMS
    assert check_claims(D.blocks(doc.read_text())[name], FIXTURE_CLAIMS) > 0
    with pytest.raises(ValueError, match="clone"):
        D.publish(name, src, root=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="one of"):
        D.publish("bogus", src, root=tmp_path)
