"""One module per figure: ``compute(quick) -> arrays``, ``plot(arrays, out_dir) -> paths``,
``summary(arrays) -> dict`` (the numbers behind it) and a one-line ``CAPTION`` that says what the figure shows
and what to conclude; where the conclusion rests on numbers, an optional ``conclusion(arrays) -> str`` states it
from the arrays (``paper_plots.py`` appends it to the caption in results.md: no number is typed by hand).
``claims`` draws the figures of the claims ledger (one ``claims_*`` module per claim) from one sweep of all its
cells.

The cells protocol (how ``paper_plots.py`` runs every figure as one job). A figure whose numbers come from cells
of :mod:`evaluation.sweep` declares them with an optional hook::

    def cells(quick: bool) -> list:
        return [...]  # registered cell configurations: exactly the cells compute(quick) will ask for

    def compute(quick: bool = False):
        run = run_cells(cells(quick), progress=False)  # every cell is in the cache by now: reads only
        return ...  # the arrays, built from run.results

``paper_plots.py`` first gathers ``cells(quick)`` of every figure it draws and runs them all in ONE
``run_cells(..., workers=N)`` call (shared cells computed once, one progress bar, the cores busy until the
last cell; a cell that fails fails the figures that list it, unless a figure declares ``PARTIAL = True``: its
``compute`` copes with failed cells, which it finds uncached), then calls each figure's ``compute(quick)``, which
finds its cells cached. ``cells`` must be cheap
(it builds configurations, it computes nothing) and ``compute`` must use the default cache
(:func:`evaluation.sweep.default_cache_dir`) so that it finds them. A figure without the hook still works:
its ``compute`` runs in a worker process of its own (``--workers`` > 1) or in the main process; a figure that
draws other figures' arrays names them in ``USES`` (a tuple of figure names), so that it runs after them in their
worker process and finds their arrays cached there.

No two figures write a file of the same name: ``plot`` saves under its ``NAME`` (and ``NAME_*``), and
``paper_plots.py`` fails a figure that would overwrite another's file.
"""
from . import claims, closed_forms, curves_1d, dimension, dps_bias, fields_2d, flows, maps_1d, outputs, sweeps, trained_1d

FIGURES = {m.NAME: m for m in (curves_1d, maps_1d, trained_1d, fields_2d, outputs, sweeps, closed_forms, flows,
                                  dimension, dps_bias, claims)}

__all__ = ["FIGURES"]
