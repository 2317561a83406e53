"""One module per figure: ``compute(quick) -> arrays``, ``plot(arrays, out_dir) -> paths``,
``summary(arrays) -> dict`` (the numbers behind it) and a one-line ``CAPTION``. ``claims`` draws the figures of
the claims ledger (one ``claims_*`` module per claim) from one sweep of all its cells."""
from . import claims, closed_forms, curves_1d, dimension, fields_2d, flows, maps_1d, outputs, sweeps, trained_1d

FIGURES = {m.NAME: m for m in (curves_1d, maps_1d, trained_1d, fields_2d, outputs, sweeps, closed_forms, flows,
                                  dimension, claims)}

__all__ = ["FIGURES"]
