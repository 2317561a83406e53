"""Figures of the claims ledger (``python -m evaluation.claims``) for ``paper_plots.py``: one sweep over every
claim's cells (shared cells computed once, each cell cached on disk, :mod:`evaluation.sweep`), then each claim's
own figure module (``figures.claims_*``, named by :attr:`evaluation.claims.ClaimResult.figure`) draws its arrays.
The numbers behind it are the ledger's table: each claim's verdict and key number.

``paper_plots.py --quick`` leaves this set out (``QUICK = False``) unless it is named with ``--only claims``.
The paper's own 1-D figure (``paper-figure``) needs the REG paper's released networks and is drawn only where
they are found (:data:`evaluation.claims.CLAIMS`).
"""
from __future__ import annotations

import functools
import importlib
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from evaluation.claims import CLAIMS, LedgerRun, Outcome, run_ledger
from evaluation.claims.ledger import NOT_CONVERGED

NAME = "claims"
QUICK = False  # the quick ledger alone takes about 1.5 CPU-minutes: paper_plots --quick draws it only with --only
PARTIAL = True  # a claim with a failed cell is reported not converged (run_ledger); the other claims conclude
CAPTION = ("The claims ledger: published claims about guidance, each checked exactly on Gaussian-mixture diffusion "
           "(one figure each, claims_<name>.png); the count of each verdict here, every verdict with its key number "
           "in docs/claims.md (python -m evaluation.claims).")


def cells(quick: bool = False) -> list:
    """Every cell of the ledger (the cells protocol of :mod:`figures`): ``paper_plots.py`` runs them with the other
    figures' cells in one sweep, and :func:`compute` then reads them from the cache."""
    return [cell for claim in CLAIMS for cell in claim.cells(quick)]


@functools.cache
def compute(quick: bool = False) -> LedgerRun:
    return run_ledger(list(CLAIMS), quick=quick, progress=False)


def fingerprint(run: LedgerRun):
    """What :func:`plot` draws (``paper_plots.py`` keeps the files when it is unchanged): the outcomes, not the run's
    seconds or counts."""
    return run.outcomes


def summary(run: LedgerRun) -> dict:
    """How many claims got each verdict (the verdicts themselves live once, in the ledger's ``claims.md``)."""
    verdicts = [o.result.verdict for o in run.outcomes]
    return {"claims": len(verdicts), "holds": verdicts.count("holds"),
            "holds only when": sum(v.startswith("holds only when") for v in verdicts),
            "fails": verdicts.count("fails"), NOT_CONVERGED: verdicts.count(NOT_CONVERGED)}


def draw(outcomes: Sequence[Outcome], out_dir: Path, *, prefix: str = "") -> tuple[list[Path], list[str]]:
    """Each claim's figure from its arrays: (paths written, one line per figure that failed). A failing figure
    does not stop the others. A figure module that several claims name is drawn once when they share their
    arrays (the flow claims share one cell), and once per claim otherwise (``<name>_<claim id>``). ``prefix``
    goes before the name of every figure module that is not a ``claims_*`` one (``paper_plots.py`` passes
    ``"claims_"``: the ledger's own flows figure must not overwrite the flows figure, ``flows.png``)."""
    paths, failed, drawn = [], [], {}
    for o in outcomes:
        if o.data is None:  # a claim that did not converge has no arrays to draw
            continue
        module = o.result.figure
        stem = module if module.startswith("claims_") else prefix + module
        if stem in drawn:
            if drawn[stem] is o.data:
                continue
            stem = f"{stem}_{o.result.id}"
        drawn[stem] = o.data
        try:
            mod = importlib.import_module(f"{__package__}.{module}")
            with tempfile.TemporaryDirectory() as tmp:  # drawn under the module's NAME, then named ``stem``
                for p in mod.plot(o.data, Path(tmp)):
                    target = Path(out_dir) / (stem + p.name[len(mod.NAME):])
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(p, target)
                    paths.append(target)
        except Exception as err:  # noqa: BLE001 - reported by the caller
            failed.append(f"{module}: {type(err).__name__}: {err}")
    return paths, failed


def plot(run: LedgerRun, out_dir: Path) -> list[Path]:
    paths, failed = draw(run.outcomes, out_dir, prefix=f"{NAME}_")
    if failed:
        raise RuntimeError(f"{len(failed)} ledger figure(s) failed: {'; '.join(failed)}")
    return paths
