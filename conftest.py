"""Root settings for the whole suite, notebooks included.

The teaching notebooks (notebooks/*.ipynb, executed by nbmake) run in kernels that inherit this process's
environment: quick mode unless the caller asked otherwise (``REG_QUICK=0 python -m pytest notebooks`` runs
them in full), and this checkout's packages first on the path, so a kernel tests the code under test even
when another checkout is the one installed (kernels start in notebooks/, where the checkout is not on
``sys.path`` by default).
"""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent

os.environ.setdefault("REG_QUICK", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per worker (pytest-xdist runs one per core), kernels too
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
_path = os.environ.get("PYTHONPATH", "")
if str(ROOT) not in _path.split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), _path) if p)


def pytest_collection_modifyitems(config, items):
    """Mark every executed notebook ``notebooks`` so a fast loop can skip them: ``-m "not notebooks"``."""
    import pytest

    for item in items:
        if str(item.fspath).endswith(".ipynb"):
            item.add_marker(pytest.mark.notebooks)
