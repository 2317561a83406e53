"""Runs samplers and compares them against the exact answer (ARCHITECTURE.md, the evaluation floor).

- :mod:`evaluation.density`: exact output laws of any sampler, guidance and REG estimator on 1-D/2-D grids, from the
  starts of :mod:`evaluation.starts`;
- :mod:`evaluation.distances`: the tilted target, TV, both KLs, W1, energy distance;
- :mod:`evaluation.field_errors`: per-step field errors of guided samplers against both goldens;
- :mod:`evaluation.spec`: the one experiment vocabulary (``Law``, ``Levels``, ``Method``; one text spelling each;
  ``method.build(law, levels)`` gives the guided denoiser and its reward from the same weight);
- :mod:`evaluation.sweep`: cells, the on-disk cache and executors, under every experiment;
- :mod:`evaluation.cases`, :mod:`evaluation.report` (``python -m evaluation.report``), :mod:`evaluation.demo`
  (``python -m evaluation.demo``), :mod:`evaluation.flows` (``python -m evaluation.flows``),
  :mod:`evaluation.dimension` (``python -m evaluation.dimension``), :mod:`evaluation.claims`,
  :mod:`evaluation.findings` (the cells of the findings figures);
- :mod:`evaluation.bench` (``python -m evaluation.bench``): the guidance bench, any rule scored exactly.

These lived in ``analytic`` before issue 10 (``analytic.density``, ``analytic.metrics``, ``analytic.report``,
``analytic.demo``); ``analytic`` is now the exact mathematics alone and imports nothing from here.
"""
from ._lazy import lazy_exports

# Loaded on first use (PEP 562, :mod:`evaluation._lazy`), so ``python -m evaluation.<entry point>`` reaches its own code
# (which answers Ctrl-C with one line) before torch is imported.
_FROM = {**dict.fromkeys(("tilted_start", "vp_start", "grid_log_prob_start"), ".starts"),
         **dict.fromkeys(("OutputDensity", "output_density"), ".density"),
         **dict.fromkeys(("TiltedTarget", "tilted_target", "Distances", "distances", "total_variation", "kl_divergence",
                          "wasserstein1", "EnergyDistance", "energy_distance"), ".distances"),
         **dict.fromkeys(("FieldErrors", "field_errors", "guidance_term"), ".field_errors")}
__all__ = list(_FROM)
__getattr__ = lazy_exports(__name__, _FROM)  # the exports named like their modules (distances, field_errors) win
