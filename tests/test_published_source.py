"""The published numbers come from this tree's source (issue 19, "Done when"): ``docs/data/results.json`` stamps
each figure, and ``docs/data/claims.json`` each claim, with the code version of their cells
(:func:`evaluation.sweep.cells_code`: the source of every module the cells' results depend on). A change to that
source that lands without the main job re-run and published (``python paper_plots.py --update-docs``, then
``python -m evaluation.claims --update-docs``) leaves numbers in the README and the docs that this source may no
longer compute; this test names them."""
import importlib
import json
from pathlib import Path

from evaluation.sweep import cells_code, code_version

ROOT = Path(__file__).resolve().parents[1]


def _claim_cells(claim) -> list:
    """``claim.cells(False)``; for a claim that cannot run here (``requires`` names files this machine lacks: the paper
    figure's released networks, published from a machine that has them) a bare instance of each cell kind its
    module defines, which is all a stamp reads (:func:`cells_code` takes the cells' types)."""
    if claim.requires is None or not claim.requires():
        return claim.cells(False)
    module = importlib.import_module(claim.cells.__module__)
    kinds = []
    for value in vars(module).values():
        if isinstance(value, type) and value.__module__ == module.__name__:
            try:
                code_version(value)
            except ValueError:  # not a cell kind
                continue
            kinds.append(object.__new__(value))
    assert kinds, f"{claim.id}: no cell kind found in {module.__name__}"
    return kinds


def _figure_cells(name: str, figure) -> list:
    """The cells of a published figure; for the ledger's figure, those of the claims the published ledger holds."""
    if name != "claims":
        return figure.cells(False)
    from evaluation.claims import ALL_CLAIMS

    published = {e["id"] for e in json.loads((ROOT / "docs/data/claims.json").read_text())["claims"]}
    return [cell for claim in ALL_CLAIMS if claim.id in published for cell in _claim_cells(claim)]


def test_every_published_figure_is_stamped_with_this_source():
    import paper_plots

    results = json.loads((ROOT / "docs/data/results.json").read_text())
    assert not results["quick"]
    stale = {name: (fig.get("code"), cells_code(_figure_cells(name, paper_plots.FIGURES[name])))
             for name, fig in results["figures"].items() if callable(getattr(paper_plots.FIGURES[name], "cells", None))}
    stale = {name: codes for name, codes in stale.items() if codes[0] != codes[1]}
    assert not stale, f"published with other source (published stamp, this tree's): {stale}; rerun the main job"


def test_every_published_claim_is_stamped_with_this_source():
    from evaluation.claims import ALL_CLAIMS

    ledger = json.loads((ROOT / "docs/data/claims.json").read_text())
    claims = {c.id: c for c in ALL_CLAIMS}
    stale = {e["id"]: (e["run"]["code"], cells_code(_claim_cells(claims[e["id"]]))) for e in ledger["claims"]
             if not e["run"]["quick"]}
    stale = {i: codes for i, codes in stale.items() if codes[0] != codes[1]}
    assert not stale, f"published with other source (published stamp, this tree's): {stale}; rerun the ledger"
    assert not [e["id"] for e in ledger["claims"] if e["run"]["quick"]], "a --quick entry is published"
