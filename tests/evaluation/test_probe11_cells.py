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
