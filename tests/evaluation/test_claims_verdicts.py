"""Pinned verdicts of the claims ledger: each claim's --quick experiment (a small configuration of the full one)
is run through its own conclusion, and the verdict and the numbers behind it are pinned on both sides, so a
code change that flips a verdict, or moves a finding, fails here. The cells are shared through one cache per
session, so claims that share cells compute them once."""

import math

import pytest

from evaluation.claims import ALL_CLAIMS, get_claim
from evaluation.claims.ledger import evaluate
from evaluation.claims.paper_figure import released_dir


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("claims-cache")


def _run(claim_id, cache):
    o = evaluate(get_claim(claim_id), quick=True, cache=cache)
    return o, {n.name: n.value for n in o.result.numbers}


def _near(value, expected, tol):
    assert abs(value - expected) <= tol, (value, expected)


@pytest.mark.ledger
def test_reg_samples_headline_is_an_artefact_of_the_start(cache):
    """README's headline (REG's samples further than CFG's at w = 1, 3 on the paper's setting) holds from N(0,1)
    under the truncated schedule and reverses from the chain's own tilted start."""
    o, n = _run("reg-samples", cache)
    assert o.result.verdict.startswith("holds only when the chain starts where the tilted chain starts")
    assert "the conditional is clearly narrower" in o.result.verdict
    assert (n["truncated schedule, N(0,1) start: REG closer"], n["truncated schedule, N(0,1) start: settings"]) == (0, 4)
    assert (n["truncated schedule, tilted start: REG closer"], n["truncated schedule, tilted start: settings"]) == (4, 4)
    _near(n["paper_1d paper schedule w=1 start n01: TV CFG"], 0.6633, 2e-3)
    _near(n["paper_1d paper schedule w=1 start n01: TV REG"], 0.6752, 2e-3)
    _near(n["paper_1d paper schedule w=3 start n01: TV REG"], 0.5436, 2e-3)
    _near(n["paper_1d paper schedule w=1 start tilted: TV CFG"], 0.2359, 2e-3)  # 0.2348 on the unrefined quick grid
    # 0.0782 before output_density resolved kernels narrower than the quick grid's spacing (sub-sources); the
    # full ledger's finer grid gave 0.084
    _near(n["paper_1d paper schedule w=1 start tilted: TV REG"], 0.0837, 2e-3)
    # 0.2538 on the quick 401-node grid as given; the contract refines it (TV error <= 5e-4): 0.2564
    _near(n["paper_1d paper schedule w=3 start tilted: TV REG"], 0.2564, 2e-3)
    gaps = {(g.law, g.schedule, g.w, g.start): g.d_tv for g in o.data.gaps if g.family == "cfg"}
    assert gaps["paper_1d", "lin:20:0.0001", 1.0, "n01"] < -0.2  # a full schedule: REG closer from N(0,1) too
    assert gaps["single:1:0.5:0:0.5", "lin:20:0.0001", 1.0, "n01"] > 0.3  # equal variances: CFG exact, REG hurts
    assert gaps["single:1:0.25:0:0.5", "lin:20:0.0001", 1.0, "n01"] < -0.2  # r = 0.25: REG helps


def test_reg_fields_closer_except_where_cfg_is_nearly_exact(cache):
    o, n = _run("reg-fields", cache)
    assert o.result.verdict.startswith("holds only when averaged over noise levels")
    assert n["REG closer, mixtures"] == n["mixture settings"] == 6
    assert n["single Gaussians where REG is further"] == 1
    head = [c for c in o.data.comparisons if c.law == "paper_1d" and c.family == "cfg" and c.w == 1.0][0]
    _near(head.mean_plain, 0.3728, 1e-3)  # README: 0.373 vs 0.224 (ideal chain, p_t-weighted)
    _near(head.mean_reg, 0.2239, 1e-3)


def test_theorem1_needs_the_tilted_start(cache):
    o, n = _run("theorem1", cache)
    assert o.result.verdict.startswith("holds only when the chain starts from its own tilted marginal")
    _near(n["TV T=10 lin:T:0.8168 / tilted"], 0.0920, 1e-3)
    _near(n["TV T=20 lin:T:0.8168 / tilted"], 0.0509, 1e-3)
    _near(n["TV T=20 lin:T:0.8168 / n01"], 0.5476, 2e-3)


@pytest.mark.skipif(released_dir() is None, reason="the REG paper's released 1-D networks are not here")
def test_paper_figure_reg_closer_and_the_monte_carlo_golden_is_off(cache):
    o, n = _run("paper-figure", cache)
    assert o.result.verdict == "holds"
    assert n["steps where REG is closer to the exact chain golden"] == 20
    _near(n["mean |exact - CFG| over steps"], 0.5055, 2e-3)
    _near(n["mean |exact - REG| over steps"], 0.2463, 2e-3)
    assert n["t=1: |MC - exact|"] < 1e-8  # the last step is deterministic: MC is exact there
    _near(n["mean |MC - exact| over steps"], 0.109, 0.01)  # 20 rollouts in --quick (100 in the ledger)


@pytest.mark.ledger
def test_cfg_is_a_predictor_corrector(cache):
    o, n = _run("bn-pc", cache)
    assert o.result.verdict == "holds"
    _near(n["w=1 T=25: TV(PCG, CFG-DDPM)"], 0.3521, 2e-3)
    _near(n["w=1 T=50: TV(PCG, CFG-DDPM)"], 0.1717, 2e-3)
    _near(n["w=1 T=50: TV(CFG-DDIM, CFG-DDPM)"], 0.3532, 2e-3)
    assert n["propagator vs output_density (max TV)"] < 3e-3
    # the key prints each TV with its error (0.3513 +- 0.0023: "0.351" claimed a third decimal it does not have)
    from evaluation.docs import format_number

    first = {x.name: x for x in o.result.numbers}["w=1 T=25: TV(PCG, CFG-DDPM)"]
    assert o.result.key_number.startswith(f"TV(PCG, CFG-DDPM) {format_number(first.value, first.error)} -> ")


def test_guidance_interval_middle_band_is_best(cache):
    o, n = _run("interval", cache)
    assert o.result.verdict == "holds"
    assert (n["paper_1d w=5: best interval lo"], n["paper_1d w=5: best interval hi"]) == (0.3, 1.0)
    _near(n["paper_1d w=5: TV to tilted target, best interval"], 0.3152, 2e-3)
    # 0.6114 before the contract, with up to 30 % of the mass lost past (-5, 5); widened to (-10, 10): 0.6137 +- 3e-4
    _near(n["paper_1d w=5: TV to tilted target, guidance everywhere"], 0.6137, 2e-3)


def test_autoguidance_and_its_negative_control(cache):
    o, n = _run("autoguidance", cache)
    assert o.result.verdict == "holds"
    _near(n["paper_1d: TV main model alone"], 0.0690, 1e-3)
    _near(n["paper_1d: autog best TV"], 0.0245, 1e-3)
    assert n["paper_1d: control best w"] == 0.0 and n["paper_1d: cfg best w"] == 0.0
    # entropies less the hats' smoothing (de Bruijn); the plain hat entropies gave -0.008551 and -0.728813
    _near(n["paper_1d: autog entropy at best w - conditional's"], -0.008532, 1e-5)
    _near(n["paper_1d: cfg entropy at w=1 - conditional's"], -0.729140, 1e-4)
    assert n["paper_1d: closest comparison / its error"] > 100  # 187: every comparison decided
    errors = {x.name: x.error for x in o.result.numbers}
    assert 0 < errors["paper_1d: autog best TV"] <= 5e-4
    assert 0 < errors["paper_1d: cfg entropy at w=1 - conditional's"] < 1e-3


@pytest.mark.ledger
def test_chidambaram_guidance_pushes_to_the_far_edge_and_past_a_soft_one(cache):
    o, n = _run("chidambaram", cache)
    assert o.result.verdict.startswith("holds only when the support's edge is hard")
    _near(n["exact, w=8: far-edge mass"], 0.9995, 2e-3)
    assert n["exact, w=8: near-edge mass"] < 1e-3
    _near(n["exact, w=32: outside mass"], 0.979, 5e-3)  # exact scores, converged in the step count (docstring)
    _near(n["eps error 0.1, w=32: mass outside the support"], 1.0, 1e-3)
    _near(n["paper_1d trained, w=8: mass outside the central 99.9 %"], 0.694, 5e-3)
    assert n["paper_1d exact, w=8: mass outside the central 99.9 %"] < 1e-3
    # every mass with its error, within the claim's tol (1e-3 per region)
    errors = {x.name: x.error for x in o.result.numbers}
    assert all(0 <= e <= 2e-3 for e in errors.values()), errors
    assert "paper_1d trained, w=32: mass outside the central 99.9 %" not in n  # not resolved: left out (_trained_ws)
    assert o.data.trained_ws.tolist() == [0.0, 8.0]


def test_chidambaram_names_the_errors_too_small_to_leave_the_support():
    """The full sweep's eps error 0.02 keeps the mass on the support up to w = 32 (0.00 outside): the verdict's domain
    says so; errors that leave add nothing."""
    from evaluation.claims.chidambaram import _small_errors

    assert _small_errors((0.0, 0.02, 0.1), [0.0, 1.0], (0.0, 32.0)) == (
        " when the error is large enough: at w=32, not for eps error 0.02 (0.00 outside)")
    assert _small_errors((0.0, 0.1), [1.0], (0.0, 32.0)) == ""


@pytest.mark.ledger
def test_wu_confidence_rises_entropy_can_rise(cache):
    """Concludes under the contract (issue 19/23: its DDIM entropy was not converged on grids; it now comes from the
    sampler's map, evaluation.flow_entropy). Both sides: the laws that meet the paper's conditions (rand1d_iso:0, 1:
    one Gaussian per class, one width) hold; of the random mixtures, seed 0 (its conditional's modes sit on the other
    class's) raises its entropy at small w (0 -> 1) under both samplers, seeds 1-3 hold for both numbers and both
    samplers."""
    o, n = _run("wu-gmm", cache)
    assert o.result.verdict.startswith("holds only when w <= 4 and each class is one Gaussian of a common width (the "
                                       "paper's conditions: all 2 such random laws hold, under DDPM and DDIM), or the "
                                       "law is one of the 3 of 4 random mixtures outside them that hold anyway (seeds "
                                       "[1, 2, 3])")
    assert "fails at small w (a step from w < 1) for seeds [0]" in o.result.verdict
    assert "(confidence violations: [], entropy: [0])" in o.result.verdict
    assert n["laws that meet the paper's conditions (one Gaussian per class, one width)"] == 2
    assert n["of them: confidence rises and entropy falls with w under DDPM and DDIM"] == 2
    assert n["ddpm: laws where confidence rises with w"] == n["ddim: laws where confidence rises with w"] == 4
    assert n["ddpm: laws where entropy falls with w"] == n["ddim: laws where entropy falls with w"] == 3
    assert n["ddpm: laws violating at a step from w < 1"] == n["ddim: laws violating at a step from w < 1"] == 1
    assert n["ddpm: laws violating only at steps from w >= 1"] == n["ddim: laws violating only at steps from w >= 1"] == 0
    assert n["steps in w within their errors (undecided)"] == 0
    # the best candidate for the random mixtures' domain agrees on these four laws (and on seeds 0-23; refuted on
    # fresh seeds: test_claims_wu.py)
    assert n["random laws whose tilted target's entropy first rises with w"] == 1
    assert n["random laws where that marks a failure at small w exactly"] == 4
    errors = {x.name: x.error for x in o.result.numbers}
    # the rise that fails the claim, far beyond its error (DDPM: grid law, tol 5e-4; DDIM: the map, tol 1e-5)
    _near(n["ddpm: largest entropy rise between weights"], 0.0466, 2e-3)
    assert errors["ddpm: largest entropy rise between weights"] < 1e-3
    _near(n["ddim: largest entropy rise between weights"], 0.04515, 1e-4)
    assert errors["ddim: largest entropy rise between weights"] < 2e-5
    # the paper's conditions: every step lowers the entropy and raises the confidence, by more than the errors
    assert n["paper's conditions: largest entropy rise between weights"] < -10 * errors[
        "paper's conditions: largest entropy rise between weights"]
    assert n["paper's conditions: largest confidence drop between weights"] < -10 * errors[
        "paper's conditions: largest confidence drop between weights"]
    d = o.data
    assert list(d.seeds) == ["rand1d:0", "rand1d:1", "rand1d:2", "rand1d:3", "rand1d_iso:0", "rand1d_iso:1"]
    assert d.entropy_down[0].tolist() == [False, False] and d.entropy_down[1:].all()
    assert d.confidence_up.all()
    assert d.slope[0] > 0 and (d.slope[1:] < 0).all()


def test_cfgpp_is_cfg_with_a_step_dependent_weight(cache):
    o, n = _run("cfgpp", cache)
    assert o.result.verdict.startswith("holds only when read at lambda = 0")
    assert n["max relative |CFG++ step - CFG step with w_i|"] < 1e-12
    _near(n["lambda=1, 20 steps: mean equivalent lerp scale s_i"], 3.4078, 1e-3)
    assert n["lambda=1, T=40: TV to conditional DDIM"] > 0.99 and n["lambda=0, T=40: TV to unconditional DDIM"] < 1e-9


def test_cfgpp_reads_lambda_0_as_unconditional_within_the_tv_error_on_different_grids(cache):
    """lambda = 0 is unconditional DDIM by the algebra; its TV to the unconditional cells is 0 when the contract takes
    both to one grid, and their discretisation difference when not (1.4e-6 at T = 40 with f1a1740's grid_tv), which
    a threshold of 1e-6 read as "fails". The unconditional cells started on a grid 4 times coarser than the quick
    claim's (601 nodes, against cfgpp.CELL_GRID's 2401): the verdict holds."""
    from dataclasses import replace

    from evaluation.claims import cfgpp
    from evaluation.claims.cells import OutputCell
    from evaluation.sweep import run_cells

    cells = [replace(c, grid=(-5.0, 5.0, 601)) if isinstance(c, OutputCell) and c.method == cfgpp.REFS["unconditional"]
             else c for c in cfgpp.cells(True)]
    o = cfgpp.conclude(True, run_cells(cells, cache=cache, progress=False).results)
    n = {x.name: x for x in o.result.numbers}["lambda=0, T=40: TV to unconditional DDIM"]
    assert 0 < n.value <= n.error < 1e-3, n
    assert o.result.verdict.startswith("holds only when read at lambda = 0")


def test_cfgig_missing_term_is_golden_minus_cfg(cache):
    o, n = _run("cfgig", cache)
    assert o.result.verdict.startswith("holds only when the conditional is narrower")
    assert all(v < 1e-6 for k, v in n.items() if "identity" in k)
    assert n["single:1:0.353553390593:0:0.5 w=1: fraction opposing CFG (weighted by size)"] == pytest.approx(1.0, abs=1e-12)
    assert n["single:1:0.612372435696:0:0.5 w=0.5: fraction opposing CFG (weighted by size)"] == pytest.approx(0.0, abs=1e-12)


def test_increasing_schedules_do_not_beat_constant_against_the_tilted_target(cache):
    o, n = _run("schedules", cache)
    assert o.result.verdict == "fails"
    _near(n["paper_1d lin:20:0.0001 w=1: TV down"], 0.1172, 2e-3)
    _near(n["paper_1d lin:20:0.0001 w=1: TV const"], 0.5572, 2e-3)
    _near(n["paper_1d lin:20:0.0001 w=1: TV up"], 0.8515, 2e-3)


def test_every_claim_has_a_pinned_test():
    """Here or in a sibling test_claims_*.py (the flow claims, pavasovic-highdim)."""
    from pathlib import Path

    here = "".join(p.read_text() for p in sorted(Path(__file__).parent.glob("test_claims_*.py")))
    for c in ALL_CLAIMS:
        assert f'"{c.id}"' in here, c.id


def test_autoguidance_2d_grid_keeps_the_chain_within_the_lost_mass_share():
    """The full-mode classes_2d cells start on ``GRIDS[2]``; a grid the DDPM chain leaves with more than
    ``LOST_SHARE * tol`` of the mass is widened, and at the spacing the schedule's last kernel needs the widened grid
    exceeds the 2-D node budget (every classes_2d cell failed on (-3.5, 3.5)). Measured on a coarse grid: the lost
    mass rises with refinement towards its limit (on (-3.5, 3.5) 0.0138, 0.0171, 0.0197 at 31, 51, 101 nodes; on
    (-5, 5) 1.2e-5, 2.1e-5, 2.8e-5, 3.2e-5 at 31, 51, 101, 201), so the 31-node value checks the range with a margin
    of 40x, below which the coarse grid's under-count would matter."""
    import torch
    from evaluation.accuracy import LOST_SHARE, MAX_NODES, default_tol
    from evaluation.claims.autoguidance import GRIDS, SCHEDULE
    from evaluation.density import output_density
    from evaluation.spec import Law, Schedule, weak_model
    from sampler import MixtureModel, Unguided, bind

    lo, hi, _ = GRIDS[2]
    law = Law.parse("classes_2d").build()
    main = Unguided(bind(MixtureModel({"main": weak_model(law.cond, "cov:1.5")}), "main"))
    axes = (torch.linspace(lo, hi, 31, dtype=torch.float64),) * 2
    od = output_density(main, Schedule.parse(SCHEDULE).vp.sampling_sigmas(), axes, estimate_error=False)
    assert od.lost < LOST_SHARE * default_tol(2), od.lost
    assert 201 ** 2 <= MAX_NODES[2]  # the spacing the narrow kernels ask for fits without widening


def _gaussian_hat_masses(x, s):
    """Exact hat masses of N(0, s^2) on the uniform nodes ``x``: the second difference of the density's double
    antiderivative ``s G(t / s)``, ``G(t) = t Phi(t) + phi(t)``, over the spacing."""
    import torch

    h = (x[1] - x[0]).item()
    G = lambda t: t * torch.special.ndtr(t) + torch.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)
    return s * (G((x + h) / s) - 2 * G(x / s) + G((x - h) / s)) / h


def test_autoguidance_entropy_takes_off_the_hats_smoothing():
    """The entropy autoguidance publishes is that of hat masses less their smoothing (de Bruijn, as the output
    cells'): on exact hat masses of a Gaussian against its closed-form entropy, the plain hat entropy is h^2 / (12
    s^2) too high (9.2e-3, 2.3e-3, 5.8e-4 at h = 0.1, 0.05, 0.025: 4x per halving); the corrected one 3.2e-4,
    2.1e-5, 1.3e-6 (15x). In 2-D (a product law) the same holds axis by axis."""
    import torch

    from evaluation.accuracy import grid_entropy as _entropy

    s = 0.3
    exact = 0.5 * math.log(2 * math.pi * math.e * s * s)
    plain, corrected = [], []
    for n in (61, 121, 241):
        x = torch.linspace(-3.0, 3.0, n, dtype=torch.float64)
        m = _gaussian_hat_masses(x, s)
        q = m[m > 0]
        plain.append(abs(-(q * torch.log(q / (x[1] - x[0]))).sum().item() - exact))
        corrected.append(abs(_entropy(m, (x,)) - exact))
    assert all(3.5 < a / b < 4.5 for a, b in zip(plain, plain[1:])), plain  # first order in h^2
    assert all(a / b > 12 for a, b in zip(corrected, corrected[1:])), corrected
    assert all(c < p / 25 for c, p in zip(corrected, plain)), (corrected, plain)
    x, y = torch.linspace(-3.0, 3.0, 61, dtype=torch.float64), torch.linspace(-4.0, 4.0, 81, dtype=torch.float64)
    m2 = _gaussian_hat_masses(x, 0.3)[:, None] * _gaussian_hat_masses(y, 0.5)[None, :]
    exact2 = exact + 0.5 * math.log(2 * math.pi * math.e * 0.25)
    q = m2[m2 > 0]
    plain2 = abs(-(q * torch.log(q / 0.01)).sum().item() - exact2)  # cell 0.1 x 0.1
    assert abs(_entropy(m2, (x, y)) - exact2) < plain2 / 25, (_entropy(m2, (x, y)) - exact2, plain2)


def test_autoguidance_publishes_how_far_its_closest_comparison_is_beyond_the_errors():
    """conclude publishes every TV and entropy with its error and, per law, the smallest margin of the verdict's four
    comparisons over the compared numbers' errors (below 1: a comparison the errors do not decide). Hand-made
    results: autoguidance's best TV 0.05 +- 0.005 against 0.8 x 0.10 +- 0.01 is the closest, 0.03 / 0.013."""
    from evaluation.claims.autoguidance import AutogLaw, cells, conclude

    def law(tv, tv_err=0.01, ent=1.2):
        return AutogLaw(tv, 0.0, ent, 1.0, tv_err, 0.0, 0.01, 0.001, 0.0, ())

    table = {("autog", 0.0): law(0.10), ("autog", 0.5): law(0.05, 0.005, 1.01), ("autog", 1.0): law(0.07, 0.005),
             ("control", 0.5): law(0.2), ("control", 1.0): law(0.3), ("cfg", 0.5): law(0.12), ("cfg", 1.0): law(0.2)}
    quick = cells(True)
    assert {(c.guide, c.w) for c in quick} == set(table)
    o = conclude(True, [table[c.guide, c.w] for c in quick])
    n = {x.name: x for x in o.result.numbers}
    assert o.result.verdict == "holds"
    assert abs(n["paper_1d: closest comparison / its error"].value - 0.03 / 0.013) < 1e-9
    assert n["paper_1d: autog best TV"].error == 0.005
    assert abs(n["paper_1d: autog entropy at best w - conditional's"].error - 0.011) < 1e-12
    table["autog", 0.5] = law(0.05, 0.03, 1.01)  # the same values, an error that no longer decides the first comparison
    o = conclude(True, [table[c.guide, c.w] for c in quick])
    closest = {x.name: x.value for x in o.result.numbers}["paper_1d: closest comparison / its error"]
    assert abs(closest - 0.03 / 0.038) < 1e-9
