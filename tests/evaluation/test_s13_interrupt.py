"""Issue 20 (probe round 12, item U): Ctrl-C while ``python -m evaluation.claims`` was still importing (torch and every
claim: 5-45 s on a loaded machine) ended in Python's traceback, because the package imported everything before its
``__main__`` could answer. The packages now load on first use, and the entry point's imports answer with one line."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Ctrl-C arrives at the first import of torch, wherever that happens (as a terminal's would, mid-import)
_INTERRUPTED_IMPORT = """
import builtins, runpy, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
real = builtins.__import__
def interrupted(name, *args, **kwargs):
    if name == "torch" or name.startswith("torch."):
        raise KeyboardInterrupt
    return real(name, *args, **kwargs)
builtins.__import__ = interrupted
sys.argv = ["evaluation.claims", "--quick"]
runpy.run_module("evaluation.claims", run_name="__main__", alter_sys=True)
"""


def test_ctrl_c_while_the_ledger_cli_imports_is_one_line():
    proc = subprocess.run([sys.executable, "-c", _INTERRUPTED_IMPORT], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == "interrupted while loading the ledger's modules: nothing computed or written"


def test_the_packages_import_nothing_heavy_until_used():
    """The window before the entry point's own code runs holds no torch import; the names still resolve."""
    code = ("import sys; import evaluation, evaluation.claims; assert 'torch' not in sys.modules, 'torch'\n"
            "from evaluation.claims import CLAIMS, get_claim, run_ledger, reg_map\n"
            "from evaluation import output_density, tilted_target\n"
            "import evaluation.distances, evaluation.field_errors\n"  # modules named like two exports: the
            "from evaluation import distances, field_errors\n"  # exports still win, as with eager imports
            "assert callable(distances) and callable(field_errors) and distances.__module__ == 'evaluation.distances'\n"
            "assert get_claim(CLAIMS[0].id) is CLAIMS[0] and callable(output_density)\n"
            "try:\n    from evaluation.claims import no_such_name\nexcept ImportError:\n    pass\n"
            "else:\n    raise AssertionError('an unknown name resolved')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
