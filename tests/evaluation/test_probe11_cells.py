"""Issue 20, probe round 11 section 4: the bad inputs of cell code that gave a silent result, an unhelpful crash
or a long run (the bench's user rules, two-law distances on unchecked GridLaws, the density engine's arguments,
LawCell's checked names, an unreachable output_density tol). Each test failed before its fix."""
import math
import subprocess
import sys

import pytest
import torch

from evaluation.bench import RuleGuidance, check_rules, load_rule, rule_source
from evaluation.spec import Law, Levels, Method
from sampler import sample


# --- the bench's user rules --------------------------------------------------------------------------------
def _rule_file(tmp_path, text: str):
    path = tmp_path / "rule.py"
    path.write_text(text)
    return path


def test_a_rule_writing_into_x_does_not_move_the_sampler(tmp_path):
    """``x.mul_(0)`` in a rule changed the guided prediction (``x - s * eps`` read the zeroed x) and the sampler's
    state: a different output law, silently. The rule now gets a copy: same output as the rule without the write."""
    path = _rule_file(tmp_path, "def clean(a, b, x, s, w):\n    return a + w * (a - b)\n\n"
                                "def dirty(a, b, x, s, w):\n    x.mul_(0.0)\n    return a + w * (a - b)\n")
    b = Method("cfg", 2.0).build(Law.parse("paper_1d"), Levels.parse("flow:10"))
    path_ = Levels.parse("flow:10").schedule.path
    clean, dirty = (RuleGuidance(load_rule(f"{path}:{n}"), b.guided.cond, b.guided.uncond, 2.0, path_)
                    for n in ("clean", "dirty"))
    x = torch.randn(6, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) + 1.0
    x_before = x.clone()
    assert torch.equal(dirty(x, 0.7), clean(x, 0.7))
    assert torch.equal(x, x_before)
    sigmas = Levels.parse("flow:10").sigmas()
    assert torch.equal(sample("ddim", dirty, x, sigmas), sample("ddim", clean, x, sigmas))


def test_a_rule_file_calling_sys_exit_is_a_clear_error(tmp_path):
    """``sys.exit(3)`` in a rule file ended ``python -m evaluation.bench`` with status 3 and no message."""
    path = _rule_file(tmp_path, "import sys\nsys.exit(3)\n")
    with pytest.raises(ValueError, match=r"rule\.py'? failed to import: SystemExit: 3"):
        rule_source(f"{path}:f")


@pytest.mark.slow  # a fresh interpreter importing the bench: ~12 s on the shared machine
def test_a_rule_file_calling_sys_exit_names_the_file_on_the_cli(tmp_path):
    path = _rule_file(tmp_path, "import sys\nsys.exit(3)\n")
    r = subprocess.run([sys.executable, "-c", f"from evaluation.bench import rule_source; rule_source({str(path)!r} + ':f')"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "failed to import: SystemExit: 3" in r.stderr and str(path) in r.stderr


@pytest.mark.parametrize("rules", [[("a", "cfg")], "cfg", None])
def test_check_rules_wants_a_mapping(rules):
    with pytest.raises(ValueError, match="rules must map rule names to sources"):
        check_rules(rules)


@pytest.mark.parametrize("flag", ["yes", 1, None])
def test_a_coordinatewise_flag_that_is_not_a_bool_is_refused(tmp_path, flag):
    """``coordinatewise = "yes"`` was read as True: the reducible family scored exactly along its line on a promise
    the rule never made in the documented form."""
    path = _rule_file(tmp_path, f"def f(a, b, x, s, w):\n    return a\n\nf.coordinatewise = {flag!r}\n")
    with pytest.raises(ValueError, match=r"rule\.coordinatewise must be True or False, got " + repr(flag).replace("'", ".")):
        rule_source(f"{path}:f")


@pytest.mark.parametrize("flag", [True, False])
def test_a_bool_coordinatewise_flag_passes(tmp_path, flag):
    path = _rule_file(tmp_path, f"def f(a, b, x, s, w):\n    return a\n\nf.coordinatewise = {flag!r}\n")
    assert rule_source(f"{path}:f")[0].endswith("rule.py:f")


# --- two-law distances on GridLaws (evaluation.accuracy.common_grid, under cfgpp.bounded_tv and tv_between) ------
from evaluation.accuracy import GridLaw, common_grid, converged_laws, density_engine, tv_between  # noqa: E402
from evaluation.claims.cfgpp import bounded_tv  # noqa: E402

F64 = torch.float64
G = (-1.0, 1.0, 11)


def _law(mass, error=None, lost=0.0, grid=G):
    mass = torch.as_tensor(mass, dtype=F64)
    return GridLaw(grid, mass, torch.zeros_like(mass) if error is None else torch.as_tensor(error, dtype=F64), lost, 0)


UNIFORM = torch.full((11,), 1 / 11, dtype=F64)
PEAK = torch.zeros(11, dtype=F64)
PEAK[5] = 1.0


@pytest.mark.parametrize("first, match", [
    (_law(UNIFORM, -torch.ones(11)), "first law: errors that are NaN or negative"),        # gave TV 1.16 +- (-5.25)
    (_law(UNIFORM, torch.full((11,), math.nan)), "first law: errors that are NaN or negative"),  # gave nan +- nan
    (_law(UNIFORM, lost=math.nan), "first law: lost mass must be finite"),                # gave nan +- nan
    (_law(UNIFORM * 0.5, lost=-0.5), "first law: lost mass must be >= 0"),                # shifted the value
    (_law(10 * UNIFORM), "first law: masses and lost mass add to 10, not 1"),              # accepted
    (UNIFORM, "first law must be a GridLaw.*got Tensor"),                                 # AttributeError: 'mass'
    (_law(UNIFORM, lost="0"), "first law: lost mass must be a number"),
    (_law(UNIFORM, grid=(-1.0, 1.0)), "first law: grid must be \\(lo, hi, n\\)"),
    (_law(UNIFORM, grid=(-1.0, 1.0, 9)), "first law: masses \\(11,\\) and errors \\(11,\\) do not match"),
])
def test_a_two_law_distance_refuses_a_law_it_cannot_trust(first, match):
    for f in (bounded_tv, tv_between, common_grid):
        with pytest.raises(ValueError, match=match):
            f(first, _law(PEAK))
    with pytest.raises(ValueError, match=match.replace("first", "second")):
        bounded_tv(_law(PEAK), first)


def test_a_two_law_distance_still_takes_laws_that_lose_mass_or_carry_no_bound():
    """Valid edges: mass lost from the grid (balanced by ``lost``), masses off by their own error, an infinite error
    (an engine's "no bound"), a rounding-negative lost mass."""
    assert bounded_tv(_law(UNIFORM), _law(PEAK)) == pytest.approx((0.9545454545454546, 0.045454545454545414))
    assert math.isfinite(bounded_tv(_law(0.9 * UNIFORM, lost=0.1), _law(PEAK)).value)
    assert math.isfinite(bounded_tv(_law(1.05 * UNIFORM, torch.full((11,), 0.01)), _law(PEAK)).value)
    assert tv_between(_law(UNIFORM, torch.full((11,), math.inf)), _law(PEAK)).error == math.inf
    assert math.isfinite(tv_between(_law(UNIFORM, lost=-1e-16), _law(PEAK)).value)


# --- the density engine's arguments and converged_laws' engines ------------------------------------------------
@pytest.fixture(scope="module")
def engine():
    from evaluation.spec import Schedule

    law, sched = Law.parse("paper_1d").build(), Schedule.parse("lin:10:0.0001")
    return density_engine(Method("cfg", 1.0).build(law, sched).guided, sched.sigmas(), sampler="ddim")


@pytest.mark.parametrize("args, match", [
    ((3, (-5.0, 5.0, 11)), "d must be 1 or 2, got 3"),            # KeyError: 3
    ((0, (-5.0, 5.0, 11)), "d must be 1 or 2, got 0"),
    ((True, (-5.0, 5.0, 11)), "d must be 1 or 2, got True"),
    ((1, (-5.0, 5.0, "a")), "grid must be \\(lo, hi, n\\)"),       # int() conversion error
    ((1, (-5.0, 5.0, math.nan)), "grid must be \\(lo, hi, n\\)"),
    ((1, (-5.0, 5.0)), "grid must be \\(lo, hi, n\\)"),             # IndexError
    ((1, (-5.0, 5.0, -3)), "grid must be \\(lo, hi, n\\)"),         # returned 2
    ((1, (5.0, -5.0, 11)), "grid must be \\(lo, hi, n\\)"),
])
def test_density_engine_efforts_refuses_bad_arguments(engine, args, match):
    with pytest.raises(ValueError, match="density_engine.efforts: " + match):
        engine.efforts(*args)


@pytest.mark.parametrize("d, effort, match", [
    (1, 5, "effort must be at most 2 in 1-D"),        # IndexError
    (1, -1, "effort must be a non-negative integer"),  # silently ran the top effort (SUBS[1][-1])
    (1, 1.5, "effort must be a non-negative integer"),
    (1, None, "effort must be a single number"),
    (3, 0, "d must be 1 or 2, got 3"),                 # KeyError: 3
])
def test_density_engine_run_refuses_bad_arguments(engine, d, effort, match):
    with pytest.raises(ValueError, match="density_engine: " + match):
        engine((-5.0, 5.0, 11), d, effort=effort)


def test_density_engine_still_runs_its_efforts(engine):
    assert engine.efforts(1, (-5.0, 5.0, 101)) == 2 and engine.efforts(2, (-5.0, 5.0, 10**6)) == -1
    law = engine((-5.0, 5.0, 101), 1, effort=2)
    assert law.mass.sum().item() + law.lost == pytest.approx(1.0, abs=1e-12)


def _flat(grid, d, effort=0):
    n = int(grid[2])
    m = torch.full((n,), 1.0 / n, dtype=F64)
    return GridLaw(grid, m, torch.zeros_like(m), 0.0, 0)


@pytest.mark.parametrize("value", [None, "x", math.nan, 2.5, True, -5])
def test_converged_laws_refuses_an_engine_whose_efforts_is_not_an_integer(value):
    """None / "x" gave a bare TypeError; nan and 2.5 were taken (the cell converged on a nonsense knob)."""
    def e(grid, d, effort=0):
        return _flat(grid, d, effort)

    e.efforts = lambda d, g: value
    with pytest.raises(ValueError, match=r"c: engine 0's efforts\(d, grid\) must return an integer >= -1"):
        converged_laws([e], (-1.0, 1.0, 11), 1, name="c")


def test_converged_laws_refuses_a_dimension_it_has_no_budget_for():
    with pytest.raises(ValueError, match="c: d must be 1 or 2, got 3"):
        converged_laws([_flat], (-1.0, 1.0, 11), 3, name="c", tol=1e-3, max_nodes=10**4)
    with pytest.raises(ValueError, match="c: max_nodes must be a positive integer"):
        converged_laws([_flat], (-1.0, 1.0, 11), 1, name="c", max_nodes=-5)


# --- LawCell's checked names ----------------------------------------------------------------------------------
@pytest.mark.parametrize("checked", [None, ["tv"], "tv", {"tv"}])
def test_lawcell_wants_a_tuple_of_checked_names(checked):
    """``None`` gave a bare TypeError ('NoneType' object is not iterable); a list passed and the cell was unhashable
    later (a sweep keys its cells)."""
    from evaluation.flows import LawCell

    with pytest.raises(ValueError, match="checked must be a tuple of distinct names"):
        LawCell(Law.parse("paper_1d"), Levels.parse("standard:10"), Method.parse("cfg"), (-5.0, 5.0, 11), checked=checked)


def test_lawcell_takes_a_tuple_of_checked_names():
    from evaluation.flows import LawCell

    for checked in ((), ("tv",)):
        cell = LawCell(Law.parse("paper_1d"), Levels.parse("standard:10"), Method.parse("cfg"), (-5.0, 5.0, 11),
                       checked=checked)
        assert hash(cell) == hash(cell) and cell.checked == checked


# --- output_density with a tol no grid reaches ------------------------------------------------------------------
class _Counted:
    """A denoiser that counts its calls and stops a run past ``cap`` calls (the refinement did not stop)."""

    def __init__(self, denoiser, cap=None):
        self.denoiser, self.cap, self.calls = denoiser, cap, 0

    def __call__(self, x, sigma):
        self.calls += 1
        if self.cap is not None and self.calls > self.cap:
            raise RuntimeError(f"refined past the first grid ({self.calls} calls)")
        return self.denoiser(x, sigma)


@pytest.fixture(scope="module")
def ddim_cfg():
    from evaluation.spec import Schedule

    sched = Schedule.parse("lin:10:0.0001")
    return Method("cfg", 1.0).build(Law.parse("paper_1d").build(), sched).guided, sched.sigmas()


def _first_grid_calls(den, sigmas, axis):
    from evaluation.density import output_density

    c = _Counted(den)
    output_density(c, sigmas, axis, sampler="ddim")
    return c.calls


@pytest.mark.parametrize("max_nodes", [4_000_000, 10**12])
def test_output_density_refuses_a_tol_below_the_rounding_floor_after_one_grid(ddim_cfg, max_nodes):
    """tol=1e-300 refined for more than 280 s (to 2e6 nodes) before the budget stopped it; every estimate holds
    1e-15 of the largest mass per node, so no grid meets it."""
    from evaluation.density import output_density

    den, sigmas = ddim_cfg
    axis = torch.linspace(-5, 5, 101, dtype=F64)
    c = _Counted(den, cap=_first_grid_calls(den, sigmas, axis))
    for on_budget in ("raise", "warn"):
        c.calls = 0
        with pytest.raises(ValueError, match=r"tol=1e-300 is below what float64 hat masses resolve"):
            output_density(c, sigmas, axis, sampler="ddim", tol=1e-300, max_nodes=max_nodes, on_budget=on_budget)


def test_output_density_refuses_a_tol_the_budget_cannot_reach_after_one_grid(ddim_cfg):
    """101 nodes and max_nodes=1000 leave 3 halvings of the spacing: 1e-13 is out of their reach even at 256 times
    less error per halving, so the first grid refuses it (it computed 4 grids, then said the same)."""
    from evaluation.density import output_density

    den, sigmas = ddim_cfg
    axis = torch.linspace(-5, 5, 101, dtype=F64)
    c = _Counted(den, cap=_first_grid_calls(den, sigmas, axis))
    with pytest.raises(ValueError, match=r"estimated error of .* allows 3 more halvings .* would not reach tol=1e-13"):
        output_density(c, sigmas, axis, sampler="ddim", tol=1e-13, max_nodes=1000)
    with pytest.warns(RuntimeWarning, match="estimated error"):  # "warn" still gets the budget's result
        out = output_density(den, sigmas, axis, sampler="ddim", tol=1e-13, max_nodes=1000, on_budget="warn")
    assert out.error.sum() > 1e-13


def test_output_density_still_refines_to_a_reachable_tol(ddim_cfg):
    from evaluation.density import output_density

    den, sigmas = ddim_cfg
    axis = torch.linspace(-5, 5, 101, dtype=F64)
    first = output_density(den, sigmas, axis, sampler="ddim")
    tol = first.error.sum().item() / 3
    out = output_density(den, sigmas, axis, sampler="ddim", tol=tol)
    assert out.error.sum().item() <= tol


def test_output_density_refuses_a_tol_out_of_reach_of_the_observed_rate():
    """Issue 20 (H): paper_1d, CFG w = 3, DDPM on lin:10:0.0001 from 101 nodes at tol=1e-11 refined for minutes (to
    51201 nodes and beyond, the estimate halving per halving of the spacing: a first-order tail) because order 8 was
    taken to be reachable. With the rate observed on two settled grids in a row (squared) it refuses at 1601 nodes;
    a reachable tol (1e-4, met at 3201 nodes) is still met."""
    from evaluation.density import output_density
    from evaluation.spec import Law, Method, Schedule

    law, levels = Law.parse("paper_1d").build(), Schedule.parse("lin:10:0.0001")
    den, sigmas = Method(rule="cfg", w=3.0).build(law, levels).guided, levels.vp.sampling_sigmas()
    axis = torch.linspace(-5, 5, 101, dtype=F64)
    with pytest.raises(ValueError, match=r"estimated error of .* on 1601 working nodes.* would not reach tol=1e-11"):
        output_density(den, sigmas, axis, tol=1e-11)
    assert output_density(den, sigmas, axis, tol=1e-4).error.sum().item() <= 1e-4
