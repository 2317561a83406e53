"""evaluation.flow_entropy: the entropy and expectations of a deterministic sampler's 1-D output from its map,
against closed forms (an affine map: a Gaussian; a monotone exp: the log-normal; a fold u^2: chi-square with one
degree of freedom), against the grid engine, and its refusals."""
import math

import pytest
import torch

import evaluation.flow_entropy as fe
from analytic.rewards import ClassifierReward
from evaluation.accuracy import coarsen
from evaluation.density import output_density
from evaluation.flow_entropy import flow_numbers
from evaluation.spec import Law, Method, Schedule

from tests.helpers import ddim_gaussian_case

F64 = torch.float64
MU, S0 = 0.7, 0.5
ONE_STEP = torch.tensor([2.0, 0.0], dtype=F64)  # one DDIM step to sigma = 0: the output is the denoiser's value
SCALE = math.sqrt(1 + 2.0**2)  # x_T = SCALE u


def _map(phi):
    """A denoiser whose one-step DDIM output is ``phi(u)`` for the start ``u``."""
    return lambda x, sigma: phi(x / SCALE)


def test_ddim_on_a_gaussian_has_the_closed_form_entropy_and_mean():
    """DDIM with the exact denoiser of N(MU, S0^2) is affine per step (test_density_tail's closed form): the output
    is N(MU - C MU, (C sqrt(1 + sigma_0^2))^2), entropy 0.5 log(2 pi e std^2)."""
    den, sig, mean, std = ddim_gaussian_case(MU, S0)
    r = flow_numbers(den, sig, functions=(lambda x: x[:, 0],), tol=1e-6)
    exact = 0.5 * math.log(2 * math.pi * math.e * std**2)
    assert abs(r.entropy - exact) <= r.entropy_error <= 1e-6
    assert abs(r.expectations[0] - mean) <= r.expectation_errors[0] <= 1e-6
    assert r.monotone and r.points < 20_000


def test_a_monotone_curved_map_gives_the_log_normal_entropy():
    """Y = exp(u): log-normal, entropy 1/2 + log(2 pi) / 2, mean e^(1/2) (the span's cut tails: below 1e-10)."""
    r = flow_numbers(_map(torch.exp), ONE_STEP, functions=(lambda x: x[:, 0],), tol=1e-6)
    assert abs(r.entropy - (0.5 + 0.5 * math.log(2 * math.pi))) <= r.entropy_error <= 1e-6
    assert abs(r.expectations[0] - math.exp(0.5)) <= r.expectation_errors[0] + 1e-9
    assert r.monotone


def test_a_folding_map_gives_the_chi_square_entropy():
    """Y = u^2 folds at u = 0 (the output density has a 1 / sqrt(y) edge; two branches overlap): chi-square with one
    degree of freedom, entropy 1/2 + log(2 Gamma(1/2)) + psi(1/2) / 2, mean 1."""
    r = flow_numbers(_map(torch.square), ONE_STEP, functions=(lambda x: x[:, 0],), tol=1e-5)
    exact = 0.5 + math.log(2 * math.sqrt(math.pi)) + 0.5 * torch.special.digamma(torch.tensor(0.5, dtype=F64)).item()
    assert abs(r.entropy - exact) <= r.entropy_error <= 1e-5
    assert abs(r.expectations[0] - 1.0) <= r.expectation_errors[0] + 1e-9
    assert not r.monotone


@pytest.mark.parametrize("phi, cells", [(torch.square, 1025), (lambda u: 1 + u.square(), 1024)],
                         ids=["turning point between two ends of one image", "turning point flat below the rounding"])
def test_a_folds_turning_point_mapped_to_one_double_is_no_atom(phi, cells):
    """A fold whose turning sub-cell's ends map to one double is not an atom. u^2 on 1025 first sub-cells: the middle
    one is [-h, h] exactly (its ends' images are equal, its midpoint's is 0); 1 + u^2: every start within 1e-8 of 0
    maps to 1.0 (u^2 is below half an ulp of 1), so near the turning point the ends and the midpoint all map to one
    double (rand1d_iso:4 CFG w = 0.5 DDIM had this: ends 1.3e-8 apart with one image). Both are chi-square with one
    degree of freedom (shifted by 1: the same entropy); both were refused as atoms."""
    r = flow_numbers(_map(phi), ONE_STEP, tol=1e-5, cells=cells)
    exact = 0.5 + math.log(2 * math.sqrt(math.pi)) + 0.5 * torch.special.digamma(torch.tensor(0.5, dtype=F64)).item()
    assert abs(r.entropy - exact) <= r.entropy_error <= 1e-5
    assert not r.monotone


@pytest.mark.parametrize("lo, hi", [(-0.2, 0.2), (1.0, 1.03)])
def test_a_map_constant_on_a_stretch_with_mass_is_an_atom(lo, hi):
    """u - clamp(u, lo, hi) + lo is constant on [lo, hi] (mass 0.16, and 7e-3 on a stretch 0.03 wide, two first
    sub-cells): an atom in the output, whose entropy is -inf; still refused (the turning points' rule must not take
    it for rounding), however the first sub-cells fall. (A stretch inside one first sub-cell that every bisection
    splits in the same proportion is not seen: the segment law's terms do not change.)"""
    phi = lambda u: u - u.clamp(lo, hi) + lo  # noqa: E731
    for cells in (1024, 1025):
        with pytest.raises(ValueError, match="atom"):
            flow_numbers(_map(phi), ONE_STEP, tol=1e-5, cells=cells)


@pytest.mark.parametrize("law, w", [("rand1d_iso:4", 0.5), ("rand1d:43", 4.0), ("rand1d:103", 4.0)])
def test_a_wu_gmm_ddim_law_with_a_flat_turning_point_agrees_with_a_finer_run(law, w):
    """rand1d_iso:4 CFG w = 0.5, rand1d:43 w = 4 and rand1d:103 w = 4, DDIM (20 steps): the default run (1024 first
    sub-cells, tol 1e-5) was refused as an atom (a fold's turning point whose sub-cell ends map to one double;
    rand1d:43 also has a flat left tail whose images wiggle by ~1e-13, ~600 turns of the chain; rand1d:103's halving
    estimate then came out 1.25e-5 with the bisection's shares of tol, and is within tol with a quarter of them).
    Against a run on another first partition at tol 1e-6: the two agree within their errors, the confidences too."""
    parts = Law.parse(law).build()
    schedule = Schedule.parse("lin:20:0.0001")
    guided = Method("cfg", w).build(parts, schedule).guided
    sig = schedule.vp.sampling_sigmas()
    bayes = ClassifierReward(list(parts.classes), list(parts.priors), parts.y, 1.0)
    conf = (lambda x: torch.exp(bayes.log_r0(x)),)
    r = flow_numbers(guided, sig, functions=conf, tol=1e-5)
    fine = flow_numbers(guided, sig, functions=conf, tol=1e-6, cells=1536)
    assert r.entropy_error <= 1e-5 and fine.entropy_error <= 1e-6
    assert abs(r.entropy - fine.entropy) <= r.entropy_error + fine.entropy_error
    assert abs(r.expectations[0] - fine.expectations[0]) <= r.expectation_errors[0] + fine.expectation_errors[0]
    assert not r.monotone


def test_a_ddim_law_below_the_grids_spacing_agrees_with_the_grid_engine():
    """rand1d:3 CFG w = 1 DDIM (the wu-gmm cell that was not converged): the hat masses' entropy on a fine grid with
    many sub-points (its own error estimate beside it) agrees with the map's; the confidence too."""
    law = Law.parse("rand1d:3").build()
    schedule = Schedule.parse("lin:20:0.0001")
    guided = Method("cfg", 1.0).build(law, schedule).guided
    sig = schedule.vp.sampling_sigmas()
    r = flow_numbers(guided, sig, tol=1e-5)
    axis = torch.linspace(-7.0, 7.0, 1121, dtype=F64)
    od = output_density(guided, sig, axis, sampler="ddim", sub=32)
    m = od.mass.clamp(min=0)
    m = m / m.sum()
    h = (axis[1] - axis[0]).item()

    def grid_entropy(mass, h):
        return -(mass[mass > 0] * torch.log(mass[mass > 0] / h)).sum().item()

    grid_h = grid_entropy(m, h)
    # its error as the contract's: the first-order sensitivity to the masses' errors, and the change from twice the
    # spacing (hat smoothing)
    sens = (od.error * (torch.log(torch.maximum(m, od.error) / h) + grid_h).abs()).sum().item()
    smooth = abs(grid_h - grid_entropy(coarsen(m), 2 * h))
    assert abs(grid_h - r.entropy) <= sens + smooth
    assert abs(grid_h - r.entropy) > r.entropy_error  # the grid's number is the rougher one


def test_bad_input_is_refused_by_name(monkeypatch):
    den = _map(torch.exp)
    with pytest.raises(ValueError, match="sampler"):
        flow_numbers(den, ONE_STEP, sampler="ddpm")
    with pytest.raises(ValueError, match="span"):
        flow_numbers(den, ONE_STEP, (1.0, -1.0))
    with pytest.raises(ValueError, match="span"):
        flow_numbers(den, ONE_STEP, (-1.0, 1.0), tol=1e-3)  # 0.32 of the start outside it
    with pytest.raises(ValueError, match="tol"):
        flow_numbers(den, ONE_STEP, tol=0.0)
    with pytest.raises(ValueError, match="cells"):
        flow_numbers(den, ONE_STEP, cells=2)
    with pytest.raises(ValueError, match="functions"):
        flow_numbers(den, ONE_STEP, functions=(3,))
    with pytest.raises(ValueError, match="denoiser"):
        flow_numbers(None, ONE_STEP)
    with pytest.raises(ValueError, match="atom"):
        flow_numbers(_map(lambda u: u.clamp(min=0)), ONE_STEP)  # half the start lands on 0
    with pytest.raises(ValueError, match="non-finite"):
        flow_numbers(_map(lambda u: 1 / (u - u)), ONE_STEP)
    monkeypatch.setattr(fe, "MAX_FLOW_POINTS", 5000)  # a budget: the run stops there and says so
    with pytest.raises(ValueError, match="MAX_FLOW_POINTS"):
        flow_numbers(den, ONE_STEP, tol=1e-10)


def test_an_output_cells_grid_entropy_takes_off_the_hats_smoothing():
    """The entropy of hat masses is the entropy of the law smoothed by the hat (variance h^2 / 6): h^2 J / 12 above
    the law's (de Bruijn). The cell takes it off (evaluation.claims.cells): the tilted target of CFG w = 0 on a single
    Gaussian is the conditional N(1, 0.2^2), whose entropy on the cell's final grid was 3.3e-4 too high; now it is
    within 1e-5."""
    from evaluation.claims.cells import OutputCell, output_law

    r = output_law(OutputCell("single:1:0.2:0:1", "lin:20:0.0001", Method("cfg", 0.0), grid=(-4.0, 4.0, 161),
                              checked=("mean",)))
    exact = 0.5 * math.log(2 * math.pi * math.e * 0.2**2)
    assert abs(r.target_entropy - exact) < 1e-5
