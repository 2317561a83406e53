"""The numbers the claims schedules, cfgig, pavasovic-highdim, cfg-zero-star, apg, characteristic and linear-cfg
publish carry their error estimates (issue 19), and each estimate holds against an independent recomputation:
a grid with half the spacing, or a closed form. Small cells, seconds each; the claims' real cells are in the
``ledger`` tests."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from analytic import guidance_fields_on_grid
from analytic.quadrature import grid_points
from evaluation.spec import Law, Method, Schedule

F64 = torch.float64


def _numbers(outcome):
    return {n.name: n for n in outcome.result.numbers}


# --- the shared grid quadrature -----------------------------------------------------------------------------
def test_weighted_mean_error_bounds_the_change_to_a_much_finer_grid():
    """A p-weighted mean on a coarse grid, against the same mean on a grid 16 times finer (its error is far
    below the coarse one's): within the estimate; the estimate is not vacuous (within 50x of the actual error)."""
    from evaluation.claims.cfgig import coarse_nodes, weighted_mean

    def mean_on(n):
        x = torch.linspace(-1.0, 2.0, n, dtype=F64)
        log_p = torch.distributions.Normal(0.3, 0.4).log_prob(x)
        return weighted_mean(log_p, torch.tanh(3 * x) ** 2, coarse_nodes((x,)))

    coarse, fine = mean_on(31), mean_on(481)
    actual = abs(coarse.value - fine.value)
    assert 0 < actual <= coarse.error <= 50 * actual, (actual, coarse.error)


def test_weighted_mean_without_weight_is_nan_and_without_coarse_weight_has_no_estimate():
    from evaluation.claims.cfgig import coarse_nodes, weighted_mean

    x = torch.linspace(0.0, 1.0, 5, dtype=F64)
    coarse = coarse_nodes((x,))
    none = weighted_mean(torch.full((5,), -math.inf, dtype=F64), x, coarse)
    assert math.isnan(none.value) and math.isnan(none.error)
    odd = weighted_mean(torch.where(coarse, -math.inf, 0.0).to(F64), x, coarse)
    assert odd.value == pytest.approx(0.5) and odd.error == math.inf


def test_coarse_nodes_are_the_grid_at_twice_the_spacing_in_2d():
    from evaluation.claims.cfgig import coarse_nodes

    ax = torch.linspace(0.0, 4.0, 5, dtype=F64)
    X = grid_points((ax, ax))
    kept = X[coarse_nodes((ax, ax))]
    assert kept.shape == (9, 2) and set(kept.flatten().tolist()) == {0.0, 2.0, 4.0}


# --- schedules ----------------------------------------------------------------------------------------------
def test_schedules_publishes_each_tv_with_its_cell_error_and_counts_without():
    from evaluation.claims import schedules

    cells = schedules.cells(True)
    fake = [SimpleNamespace(tv=0.1 + 0.01 * i, tv_error=1e-4 * (i + 1), confidence=0.5, entropy=1.0)
            for i in range(len(cells))]
    n = _numbers(schedules.conclude(True, fake))
    first = cells[0]
    name = f"{first.law} {first.schedule} w={first.method.w:g}: TV const"
    assert n[name].value == pytest.approx(0.1) and n[name].error == pytest.approx(1e-4)
    assert math.isnan(n["settings"].error)


@pytest.mark.slow
def test_schedules_tv_agrees_with_a_grid_of_half_the_spacing_within_its_error():
    """One 1-D schedules cell (increasing weights, 20 steps) against output_density and the tilted target on a
    grid of half the contract's final spacing, run independently of the contract."""
    from evaluation.claims.cells import output_law
    from evaluation.claims.schedules import _cell
    from evaluation.density import output_density
    from evaluation.starts import vp_start
    from evaluation.distances import tilted_target, total_variation

    cell = _cell("paper_1d", "lin:20:0.0001", 3.0, "up")
    r = output_law(cell)
    assert math.isfinite(r.tv_error) and 0 < r.tv_error <= 5e-4
    lo, hi, n = r.grid
    axes = (torch.linspace(lo, hi, 2 * n - 1, dtype=F64),)
    law = Law.parse(cell.law).build()
    guided = cell.method.build(law, Schedule.parse(cell.schedule)).guided
    od = output_density(guided, Schedule.parse(cell.schedule).vp.sampling_sigmas(), axes, start=vp_start(1), sub=32)
    target = tilted_target(law.cond, cell.method.reward(law), axes, tol=1e-5)
    assert abs(total_variation(od.mass, target.mass) - r.tv) <= r.tv_error


# --- cfgig --------------------------------------------------------------------------------------------------
def test_cfgig_numbers_agree_with_a_grid_of_half_the_spacing_within_their_errors():
    from evaluation.claims.cfgig import RenyiCell, renyi_term

    cell = RenyiCell("paper_1d", levels=6)
    r = renyi_term(cell)
    assert np.isfinite(r.missing_error).all() and np.isfinite(r.opposes_error).all()
    assert math.isfinite(r.identity_error_error) and r.identity_error < 1e-8
    law = Law.parse(cell.law).build()
    reward = Method("cfg", cell.w).reward(law)
    x = torch.linspace(-1.0, 2.0, 2 * cell.grid[2] - 1, dtype=F64)  # half the spacing
    sched = Schedule.parse(cell.schedule).vp.respace(cell.levels)
    for t in (1, 3, 6):
        a = sched.abar[t].item()
        f = guidance_fields_on_grid(law.cond, reward, (x,), a)
        p = torch.softmax(law.cond.noised(a).log_prob(x[:, None]), 0)
        missing = (p * (f.golden - f.present).norm(dim=1)).sum().item()
        cfg = (p * f.present.norm(dim=1)).sum().item()
        assert abs(missing - r.missing[t - 1]) <= r.missing_error[t - 1], t
        assert abs(cfg - r.cfg_size[t - 1]) <= r.cfg_size_error[t - 1], t


def test_cfgig_conclusion_carries_errors_through_ratios_and_maxima():
    from evaluation.claims import cfgig

    results = [cfgig.renyi_term(c) for c in cfgig.cells(True)]
    n = _numbers(cfgig.conclude(True, results))
    r = results[0]
    top = n["paper_1d w=1: max missing term"]
    assert top.value == r.missing.max() and top.error == r.missing_error.max()  # a max: the max of the errors
    for name, num in n.items():
        assert math.isfinite(num.error) and num.error >= 0, name


# --- pavasovic-highdim ---------------------------------------------------------------------------------------
def test_pavasovic_propagates_mean_and_variance_errors():
    from evaluation.claims import pavasovic as P

    cells = P.cells(True)
    fake = {c: SimpleNamespace(mean=1.0 + c.w * 0.5, var=1.0 - c.w * 0.2, tv=0.1 * c.w, reduction_error=1e-15,
                               mean_error=1e-4, var_error=2e-4, tv_error=3e-4) for c in cells}
    n = _numbers(P.conclude(True, [fake[c] for c in cells]))
    over = n["fixed d=1 w=2: mean overshoot along U"]
    assert over.value == pytest.approx(1.0) and over.error == pytest.approx(2e-4)
    ratio = n["fixed d=1 w=2: variance ratio along U"]
    assert ratio.value == pytest.approx(0.6) and ratio.error == pytest.approx(0.6 * (2e-4 / 0.6 + 2e-4))
    assert n["fixed d=1 w=2: TV to the conditional"].error == pytest.approx(3e-4)
    for name, num in n.items():
        assert math.isfinite(num.error), name


@pytest.mark.slow
def test_pavasovic_mean_and_variance_agree_with_a_grid_of_half_the_spacing():
    from evaluation.claims.pavasovic import HighDimCell, _classes_1d, high_dim_law
    from evaluation.density import output_density
    from sampler import CFG

    cell = HighDimCell("fixed", 1, 2.0)
    r = high_dim_law(cell)
    lo, hi, n = r.grid
    x = torch.linspace(lo, hi, 2 * n - 1, dtype=F64)
    cond, uncond = _classes_1d(cell.mu)
    od = output_density(CFG(cond.denoise, uncond.denoise, cell.w), Schedule.parse(cell.schedule).sigmas(), (x,))
    p = od.mass / od.mass.sum()
    mean = (p * x).sum().item()
    var = (p * (x - mean) ** 2).sum().item()
    assert abs(mean - r.mean) <= r.mean_error and abs(var - r.var) <= r.var_error


# --- characteristic ------------------------------------------------------------------------------------------
def test_characteristic_gap_on_a_gaussian_is_zero_within_its_error_and_cfg_gap_agrees_on_a_finer_grid():
    """On a single Gaussian the characteristic term is the golden in closed form: its published gap is 0 within
    its error; CFG's gap on paper_1d agrees with a grid of half the spacing within its error."""
    from evaluation.claims.characteristic import CharCell, characteristic_gap
    from evaluation.claims.reg_map import single

    g = characteristic_gap(CharCell(single(0.5), 1.0, levels=4, grid=(-1.0, 2.0, 41)))
    assert np.isfinite(g.char_gap_error).all() and (g.char_gap <= g.char_gap_error).all()
    cell = CharCell("paper_1d", 1.0, levels=4, grid=(-1.0, 2.0, 61))
    g = characteristic_gap(cell)
    law = Law.parse(cell.law).build()
    x = torch.linspace(-1.0, 2.0, 121, dtype=F64)
    sched = Schedule.parse(cell.schedule).vp.respace(cell.levels)
    for t in range(1, 5):
        a = sched.abar[t].item()
        f = guidance_fields_on_grid(law.cond, Method("cfg", 1.0).reward(law), (x,), a)
        p = torch.softmax(law.cond.noised(a).log_prob(x[:, None]), 0)
        cfg_gap = (p * (f.present - f.golden).norm(dim=1)).sum().item()
        assert abs(cfg_gap - g.cfg_gap[t - 1]) <= g.cfg_gap_error[t - 1], t


def test_characteristic_extremes_carry_the_max_of_their_errors():
    from evaluation.claims import characteristic as ch

    settings = ch._settings(True)
    L = 3

    def gap(scale):
        z = np.full(L, 1.0)
        return ch.CharGap(np.array([0.01, 0.1, 1.0]), z, z, scale * z, 0.5 * z, 0.2 * z, 0 * z, 1e-12,
                          1e-3 * z, scale * 1e-3 * z, 2e-3 * z, 1e-3 * z, 0 * z)

    results = [gap(1e-9) if law.startswith("single:") else gap(0.05 * (i + 1)) for i, (law, _) in enumerate(settings)]
    n = _numbers(ch.conclude(True, results))
    mixes = [r for (law, _), r in zip(settings, results) if not law.startswith("single:")]
    expect = max(ch._rel_error(r, "char_gap") for r in mixes)
    assert n["mixtures: min relative gap, characteristic"].error == pytest.approx(expect)
    assert n["mixtures: max relative gap, characteristic"].error == pytest.approx(expect)


# --- linear-cfg ----------------------------------------------------------------------------------------------
def test_linear_cfg_relative_differences_agree_with_a_grid_of_half_the_spacing():
    from evaluation.claims.linear_cfg import LinearCell, linear_gap

    coarse, fine = linear_gap(LinearCell("paper_1d", "standard:10", 101)), linear_gap(LinearCell("paper_1d",
                                                                                                "standard:10", 201))
    assert np.isfinite(coarse.rel_error).all() and math.isfinite(coarse.tail_mass_error)
    assert (np.abs(coarse.rel - fine.rel) <= coarse.rel_error).all()
    assert (fine.rel_error <= coarse.rel_error).all()  # the estimate shrinks with the spacing


# --- cfg-zero-star and apg (the flows cells) -----------------------------------------------------------------
def _fake_flow_results(sw1_error):
    """Results of the flow claims' cells: the k-th law cell at sw1 0.2 + 0.01 k with error sw1_error(k)."""
    from evaluation.claims import cfg_zero_star as Z
    from evaluation.flows import CapTV, CellDistances, LawCell, LawResult

    results, k = [], {}
    for c in Z.cells(True):
        if not isinstance(c, LawCell):
            results.append(CapTV(0.1))
            continue
        key = (c.law, c.levels, c.method)
        k.setdefault(key, len(k) + 1)
        results.append(LawResult(CellDistances(0.2 + 0.01 * k[key], 0.5, 0.1, 0.1, 0.0, 0, sw1_error(k[key])),
                                 np.zeros(0)))
    return results


def test_flow_claims_publish_each_sw1_with_its_cells_error():
    from evaluation.claims import apg, cfg_zero_star as Z

    results = _fake_flow_results(lambda k: 1e-4 * k)
    for claim in (Z, apg):
        n = _numbers(claim.conclude(True, results))
        sw1 = {k: v for k, v in n.items() if ": sw1 " in k}
        assert sw1 and all(math.isfinite(v.error) and v.error > 0 for v in sw1.values())
        for v in sw1.values():  # the value 0.2 + 0.01 k with its own cell's error 1e-4 k
            k = round((v.value - 0.2) / 0.01)
            assert v.value == pytest.approx(0.2 + 0.01 * k) and v.error == pytest.approx(1e-4 * k)
        assert all(math.isnan(v.error) for k, v in n.items() if "cells" in k or "ties" in k)


def test_a_flow_cell_beyond_its_tolerance_or_without_an_error_leaves_the_claims_not_converged():
    from evaluation.claims import apg, cfg_zero_star as Z
    from evaluation.claims.ledger import NOT_CONVERGED

    for bad, text in ((0.02, "+- 0.02"), (math.nan, "+- nan")):
        results = _fake_flow_results(lambda k: bad if k == 3 else 1e-4)
        for claim in (Z, apg):
            o = claim.conclude(True, results)
            assert o.result.verdict == NOT_CONVERGED and o.result.numbers == ()
            assert "1 cell(s) failed" in o.result.key_number and text in o.result.key_number


@pytest.mark.slow
def test_2d_flow_cell_sw1_agrees_with_a_monte_carlo_run_within_its_error():
    """Issue 19: a 2-D output-law cell the ledger publishes (cfg-zero-star / apg, quick: correlated_2d, APG with
    momentum, w = 4, DDIM, 10 steps) against 2^17 runs of the sampler itself from random starts, their sliced W1 to
    the target's quadrature: within the cell's error plus the Monte Carlo spread (W1 of 2^17 samples to their law
    is about 2e-3 per projection; 6e-3 allowed)."""
    from evaluation import flows
    from evaluation.claims import cfg_zero_star as Z
    from sampler import sample

    cell = next(c for c in Z.cells(True) if isinstance(c, flows.LawCell) and c.method.rule == "apg_momentum"
                and c.method.w == 4 and c.levels == flows.levels("vp_ddim", 10, 3.0))
    got = flows.law_cell(cell).distances
    b = cell.method.build(cell.law, cell.levels)
    s = cell.levels.sigmas()
    gen = torch.Generator().manual_seed(0)
    b.guided.reset()
    with torch.no_grad():
        x = sample("ddim", b.guided, math.sqrt(1 + s[0].item() ** 2) * torch.randn(2**17, 2, generator=gen,
                                                                                    dtype=torch.float64), s)
    ax = torch.linspace(-6, 6, 601, dtype=torch.float64)
    y = torch.cartesian_prod(ax, ax)
    lf = b.law.cond.log_prob(y) + b.reward.log_r0(y)
    mc = flows.sliced_w1_points(x, torch.ones(x.shape[0], dtype=torch.float64), y, torch.exp(lf - lf.max()))
    print(f"published sw1 {got.sw1:.5f} +- {got.sw1_error:.2g}; Monte Carlo {mc:.5f}")
    assert 0 < got.sw1_error < 5e-3 and abs(mc - got.sw1) <= got.sw1_error + 6e-3
