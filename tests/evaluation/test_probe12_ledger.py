"""Session-12 closing round (issue 20, /work/notes/probe12.md): a claim's outcome from results that are not one per
cell is a ValueError naming the claim and the missing cells (before: the claim's own bare ``KeyError``), and Ctrl-C
during the ledger ends in one line saying what is kept."""
import pytest

from evaluation.claims import get_claim
from evaluation.claims.ledger import Outcome
from evaluation.sweep import CellFailed
from tests.helpers import Refuses


def _claim(n_cells=3, partial=False):
    base = get_claim("theorem1")
    return base._replace(id="toy", partial=partial, cells=lambda quick: [Refuses(float(i)) for i in range(n_cells)],
                         conclude=lambda q, r: Outcome(base.result("holds", "k", [("n", r[2])]), None))


@pytest.mark.parametrize("partial", [False, True])
def test_an_outcome_from_fewer_results_than_cells_names_the_claim_and_the_missing_cells(partial):
    """Before: the claim's conclude looked its cells up and raised a bare ``KeyError: OutputCell(...)`` (reg-samples;
    the toy's conclude an ``IndexError``); a partial claim given only failures was 'not converged' for cells it never
    saw."""
    claim = _claim(partial=partial)
    with pytest.raises(ValueError, match=r"claim toy: 2 results for its 3 cells \(quick=True\); missing: "
                                         r"Refuses\(x=2\.0\)"):
        claim.outcome(True, (1.0, 2.0))
    with pytest.raises(ValueError, match=r"claim toy: 1 results for its 3 cells .*missing: Refuses\(x=1\.0\), "
                                         r"Refuses\(x=2\.0\)"):
        claim.outcome(True, (CellFailed("c", "ValueError: x"),))
    with pytest.raises(ValueError, match=r"claim toy: 4 results for its 3 cells \(quick=False\); one result per cell"):
        claim.outcome(False, (1.0, 2.0, 3.0, 4.0))
    assert claim.outcome(True, (1.0, 2.0, 3.0)).result.numbers[0].value == 3.0


def test_a_ledger_passes_the_cells_it_built_so_a_claim_builds_them_once():
    """The check costs nothing in the ledger: ``run_ledger`` hands the cells it already built (``cells(False)`` of
    reg-samples takes seconds); a direct call builds them once."""
    calls = []
    claim = _claim()._replace(cells=lambda quick: calls.append(quick) or [Refuses(0.0), Refuses(1.0), Refuses(2.0)])
    claim.outcome(True, (1.0, 2.0, 3.0), cells=[Refuses(0.0), Refuses(1.0), Refuses(2.0)])
    assert calls == []
    claim.outcome(True, (1.0, 2.0, 3.0))
    assert calls == [True]

