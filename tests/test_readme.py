"""The README's two set-up commands are the ones CI and users run."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands():
    text = (ROOT / "README.md").read_text()
    return [line.strip() for line in text.splitlines() if line.startswith("    python3 -m venv")]


def test_readme_has_main_and_test_commands():
    cmds = _commands()
    assert len(cmds) == 2, cmds
    assert "pytest" in cmds[1] and "pytest" not in cmds[0]


def test_ci_runs_the_readme_test_command():
    test_cmd = _commands()[1]
    install_and_test = test_cmd.split("&& ", 2)[-1]  # after the venv creation and activation
    ci = (ROOT / ".ci" / "run").read_text()
    assert install_and_test in ci.splitlines(), (install_and_test, ci)
    assert re.search(r"status\" -eq 5", ci)
