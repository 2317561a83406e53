"""The teaching notebooks (notebooks/, issue 15): each jupytext source has its executed .ipynb twin with the
same cells, the parameter and solution conventions hold, and the exercise check behaves.

Executing the notebooks is nbmake's job (pyproject's ``addopts``); these tests only read files."""
import importlib.util
import re
from pathlib import Path

import pytest
import torch

jupytext = pytest.importorskip("jupytext")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAME = re.compile(r"^\d\d_[a-z0-9_]+$")
SOURCES = sorted(p for p in NOTEBOOKS.glob("*.py") if NAME.match(p.stem))
MAX_BYTES = 300_000


def _cells(nb):
    """What a pair must agree on: each cell's type, source and (for code) tags and hidden flag."""
    out = []
    for c in nb.cells:
        meta = c.metadata
        hidden = bool(meta.get("jupyter", {}).get("source_hidden", False))
        out.append((c.cell_type, c.source.strip(), tuple(meta.get("tags", ())), hidden))
    return out


def test_the_seven_notebooks_exist_in_pairs():
    stems = [p.stem for p in SOURCES]
    assert [s[:2] for s in stems] == ["01", "02", "03", "04", "05", "06", "07"], stems
    ipynbs = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    assert ipynbs == stems, "every notebooks/NN_name.py needs its NN_name.ipynb and vice versa"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_pair_in_sync(source):
    py = jupytext.read(source)
    ipynb = jupytext.read(source.with_suffix(".ipynb"))
    a, b = _cells(py), _cells(ipynb)
    assert len(a) == len(b), f"{source.name}: {len(a)} cells, its .ipynb {len(b)}; run `jupytext --sync {source}`"
    for i, (ca, cb) in enumerate(zip(a, b)):
        assert ca == cb, f"{source.name}: cell {i} differs from the .ipynb; run `jupytext --sync {source}`"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_conventions(source):
    """Executed and small; a parameter cell reading REG_QUICK; two or three hidden solutions that check."""
    path = source.with_suffix(".ipynb")
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size} bytes; keep figures small"
    nb = jupytext.read(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), f"{path.name} is committed without outputs"
    assert not [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    params = [c for c in code if "parameters" in c.metadata.get("tags", ())]
    assert len(params) == 1 and 'os.environ.get("REG_QUICK", "0") == "1"' in params[0].source
    solutions = [c for c in code if "solution" in c.metadata.get("tags", ())]
    assert 2 <= len(solutions) <= 3, f"{path.name}: {len(solutions)} solution cells"
    for c in solutions:
        assert c.metadata.get("jupyter", {}).get("source_hidden") is True
        assert "strict=True" in c.source, "a solution cell must check itself against the library (strict)"


def _teaching():
    spec = importlib.util.spec_from_file_location("teaching", NOTEBOOKS / "teaching.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_check_tells_right_from_wrong(capsys):
    check = _teaching().check
    exact = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    assert check("a", None, exact, tol=1e-9) is False
    assert "not tried" in capsys.readouterr().out
    assert check("a", exact + 1e-12, exact, tol=1e-9) is True
    assert check("a", exact + 1e-3, exact, tol=1e-9) is False
    assert "not yet" in capsys.readouterr().out
    assert check("a", exact[:, 0], exact, tol=1e-9) is False  # wrong shape
    assert check("a", exact * float("nan"), exact, tol=1e-9) is False
    with pytest.raises(AssertionError, match="not yet"):
        check("a", exact + 1e-3, exact, tol=1e-9, strict=True)
    with pytest.raises(ValueError, match="tol"):
        check("a", exact, exact, tol=0.0)
