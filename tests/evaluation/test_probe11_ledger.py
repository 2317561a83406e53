"""Session-11 adversarial round (issue 20, /work/notes/probe11.md): a claim's ``partial`` is a bool."""
import pytest

from evaluation.claims import CLAIMS
from evaluation.claims.ledger import Outcome
from evaluation.sweep import CellFailed


@pytest.mark.parametrize("partial", ["yes", 1, None])
def test_a_claim_whose_partial_is_not_a_bool_is_refused_naming_it(partial):
    """Before: ``partial="yes"`` (truthy) made a claim conclude with a failed cell's settings left out, without a
    word; ``None`` refused quietly as not partial."""
    base = CLAIMS[0]
    claim = base._replace(partial=partial, conclude=lambda q, r: Outcome(base.result("holds", "k", [("n", 1.0)]), None))
    with pytest.raises(ValueError, match=f"claim {base.id}: partial must be True or False, got {partial!r}"):
        claim.outcome(True, (1.0, CellFailed("c", "ValueError: x")))
    assert claim._replace(partial=True).outcome(True, (1.0, CellFailed("c", "ValueError: x"))).result.verdict == "holds"
