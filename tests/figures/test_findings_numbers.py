"""The numbers the findings block prints (docs/findings.md, rendered from paper_plots.py's results.json): each figure
that publishes output-law numbers reads them from cells computed to a tolerance with their errors; the renderer prints
each with its error at its printed precision; and a sample of them agrees with independent recomputations (a much
finer grid without the accuracy contract, and Monte Carlo sampling)."""
import inspect

import numpy as np
import pytest
import torch

from evaluation import output_density, tilted_target
from evaluation.claims import reg_map
from evaluation.claims.cells import OutputCell
from evaluation.distances import total_variation
from evaluation.docs import render_findings
from evaluation.spec import Law, Method, Schedule
from evaluation.sweep import compute_cell
from figures import outputs, sweeps
from sampler import sample, vp_prior
from tests.test_docs import check_findings


def test_sweeps_speaks_the_one_vocabulary_and_shares_the_ledgers_cells():
    """The families are spec Methods (no second dialect: no "vanilla", no hand-built guidance), printed by their
    method names, and the figure's cells are the ledger's where they coincide (cached once)."""
    assert all(isinstance(f, Method) and Method.parse(str(f)) == f for f in sweeps.FAMILIES)
    assert len(set(sweeps.FAMILIES)) == len(sweeps.FAMILIES)
    src = inspect.getsource(sweeps)
    for dialect in ("vanilla", "CFG(", "REG(", "AutoGuidance(", "ClassifierGuidance("):
        assert dialect not in src, dialect
    assert [f.label for f in sweeps.FAMILIES] == ["CFG", "CFG (linear)", "CFG (cosine)", "CFG (interval)", "AutoG",
                                                  "CG"]
    shared = set(sweeps.cells(True)) & set(reg_map.cells(True))
    assert len(shared) >= 4, len(shared)


def _fake(kind):
    """A figure's arrays with known numbers (no computation): the summary's shape is what the renderer sees."""
    rng = np.random.default_rng(0)
    if kind == "outputs":
        keys = [(w, m) for w in outputs.WEIGHTS for m in outputs.METHODS_1D]
        vals = {k: float(rng.uniform(0.01, 0.9)) for k in keys}
        errs = {k: float(rng.uniform(1e-6, 3e-4)) for k in keys}
        return outputs.Outputs({}, {}, {}, vals, vals, errs, errs, np.zeros(1), np.zeros((1, 1)), {})
    ws = sweeps.weights(True)
    keys = [(f, r) for f in sweeps.FAMILIES for r in (False, True)]
    arr = lambda lo, hi: {k: rng.uniform(lo, hi, len(ws)) for k in keys}  # noqa: E731
    return sweeps.Sweeps(ws, arr(0.01, 1), arr(0.01, 1), arr(0.01, 3), arr(1e-6, 1e-4), arr(1e-6, 1e-3), arr(1e-14, 1e-12))


@pytest.mark.parametrize("kind", ["outputs", "sweeps"])
def test_output_numbers_are_printed_with_their_errors(kind):
    """Every TV and KL of the figure reaches the findings block as ``value ± error`` at the error's digits
    (tests/test_docs.py's check, which fails for a number off by half its last digit or printed without its error)."""
    mod = {"outputs": outputs, "sweeps": sweeps}[kind]
    numbers = mod.summary(_fake(kind))
    results = {"figures": {kind: {"caption": "c", "numbers": numbers}}}
    block = render_findings(results)
    assert check_findings(block, results) > 0
    printed = [line for line in block.splitlines() if line.startswith("|") and "±" in line]
    assert len(printed) >= len(outputs.WEIGHTS) if kind == "outputs" else len(sweeps.FAMILIES)


@pytest.mark.slow
def test_an_output_tv_agrees_with_a_much_finer_grid_and_monte_carlo():
    """One findings number recomputed independently, small: CFG at w = 1 on the paper's toy (outputs' quick cell).
    A grid 8x finer and wider, without the accuracy contract, gives the TV within the cell's error; 200k DDPM samples
    give the output mean within the cell's error plus 5 standard errors."""
    cell = outputs.cells(True)[outputs.METHODS_1D.index("cfg")]
    assert cell.method == Method("cfg", w=1.0) and isinstance(cell, OutputCell)
    r = compute_cell(cell)
    assert r.valid and r.tv_error < 1e-3
    built = Method("cfg", w=1.0).build(Law.parse("paper_1d"), Schedule.parse("paper"))
    sched = Schedule.parse("paper").vp
    axis = torch.linspace(-8, 8, 12801, dtype=torch.float64)  # spacing 0.00125 (the cell starts at 0.015)
    od = output_density(built.guided, sched.sampling_sigmas(), axis, sampler="ddpm", estimate_error=False)
    target = tilted_target(built.law.cond, built.reward, axis).mass
    fine = total_variation(od.mass, target)
    assert abs(fine - r.tv) <= r.tv_error + 1e-5, (fine, r.tv, r.tv_error)
    n = 200_000
    noise = torch.randn(n, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x = sample("ddpm", built.guided, vp_prior(noise, sched.sigmas[-1].item()), sched.sampling_sigmas(),
               generator=torch.Generator().manual_seed(4))
    se = x.std().item() / n ** 0.5
    assert abs(x.mean().item() - r.mean[0]) <= r.mean_error + 5 * se, (x.mean().item(), r.mean, r.mean_error, se)
