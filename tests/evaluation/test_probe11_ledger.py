"""Session-11 adversarial round (issue 20, /work/notes/probe11.md): a claim's ``partial`` is a bool, and the ledger's
cell count counts a cached failure once."""
import pytest

from evaluation.claims import CLAIMS
from evaluation.claims.ledger import Outcome, run_ledger
from evaluation.sweep import CellFailed
from tests.helpers import Refuses


@pytest.mark.parametrize("partial", ["yes", 1, None])
def test_a_claim_whose_partial_is_not_a_bool_is_refused_naming_it(partial):
    """Before: ``partial="yes"`` (truthy) made a claim conclude with a failed cell's settings left out, without a
    word; ``None`` refused quietly as not partial."""
    base = CLAIMS[0]
    claim = base._replace(partial=partial, conclude=lambda q, r: Outcome(base.result("holds", "k", [("n", 1.0)]), None),
                          cells=lambda quick: [Refuses(1.0), Refuses(-1.0)])  # one result per cell
    with pytest.raises(ValueError, match=f"claim {base.id}: partial must be True or False, got {partial!r}"):
        claim.outcome(True, (1.0, CellFailed("c", "ValueError: x")))
    assert claim._replace(partial=True).outcome(True, (1.0, CellFailed("c", "ValueError: x"))).result.verdict == "holds"


def test_the_ledger_counts_a_cached_failure_once(tmp_path):
    """Before: a rerun reading a cached failure counted it as reused and as failed: 'Last run: ...; 3 cells (0
    computed, 2 from the cache)' for 2 cells (claims.md's note; seen on theorem1 --quick: 5 cells for 4)."""
    claim = CLAIMS[0]._replace(id="bad", cells=lambda quick: [Refuses(3.0), Refuses(-4.0)], partial=False)
    first = run_ledger([claim], cache=tmp_path, progress=False)
    again = run_ledger([claim], cache=tmp_path, progress=False)
    assert (first.cells, first.computed, first.reused) == (2, 1, 0)
    assert (again.cells, again.computed, again.reused) == (2, 0, 2)
