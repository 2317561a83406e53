"""The claims ledger (issue 12): published claims about guidance, each checked exactly on Gaussian-mixture
diffusion, with a verdict, its numbers, a figure and a pinned test. ``python -m evaluation.claims``.

:data:`CLAIMS` lists every claim in ledger order; :func:`get_claim` finds one by id.
"""
from .._lazy import lazy_exports

# Loaded on first use (PEP 562, :mod:`evaluation._lazy`): ``python -m evaluation.claims`` imports this package before
# its ``__main__`` can answer Ctrl-C, so the package imports nothing (torch and the claims take seconds to load).
_FROM = {**dict.fromkeys(("CLAIMS", "ALL_CLAIMS", "get_claim"), ".registry"),
         **dict.fromkeys(("Claim", "ClaimResult", "Number", "Outcome", "LedgerRun", "run_ledger", "evaluate", "markdown",
                          "to_json"), ".ledger")}
__all__ = list(_FROM)
__getattr__ = lazy_exports(__name__, _FROM)
