"""The claims ledger (issue 12): published claims about guidance, each checked exactly on Gaussian-mixture
diffusion, with a verdict, its numbers, a figure and a pinned test. ``python -m evaluation.claims``.

:data:`CLAIMS` lists every claim in ledger order; :func:`get_claim` finds one by id.
"""
import importlib

# Loaded on first use (PEP 562): ``python -m evaluation.claims`` imports this package before its ``__main__`` can
# answer Ctrl-C, so the package imports nothing (torch and the claims take seconds to load).
_FROM = {**dict.fromkeys(("CLAIMS", "ALL_CLAIMS", "get_claim"), ".registry"),
         **dict.fromkeys(("Claim", "ClaimResult", "Number", "Outcome", "LedgerRun", "run_ledger", "evaluate", "markdown",
                          "to_json"), ".ledger")}
__all__ = list(_FROM)


def __getattr__(name: str):
    if name not in _FROM:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_FROM[name], __name__), name)
