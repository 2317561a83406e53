"""benchmarks/quick_profile.py's replay (issue 19): the workers started with the main process (paper_plots.start_workers)
share the cores with its imports and wait for its list of cells."""
import importlib.util
from pathlib import Path

import pytest

from evaluation.sweep import cell_key
from tests.helpers import Refuses

_spec = importlib.util.spec_from_file_location("quick_profile",
                                               Path(__file__).resolve().parent.parent / "benchmarks" / "quick_profile.py")
qp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(qp)


def test_simulate_starts_the_workers_after_or_with_the_main_process():
    cells = {cell_key(c): c for c in (Refuses(1.0), Refuses(2.0))}
    seconds = dict.fromkeys(cells, 1.0)
    common = dict(workers=2, cores=2, startup=4.0, head=4.0, concurrent=True)
    args = (cells, seconds, {"fig": set(cells)}, {"fig": 0.5})
    # after: 4 s of imports alone, 4 s of start-up on each core, the two cells side by side, then the drawing
    assert qp.simulate(*args, **common) == pytest.approx(4 + 4 + 1 + 0.5)
    # with: three processes on two cores for 12 CPU-s (all ready at 6 s), then the same
    assert qp.simulate(*args, early=True, **common) == pytest.approx(6 + 1 + 0.5)
    # workers ready before the main process has listed the cells wait for it: 1.5 s three-way, 3 s of imports alone
    assert qp.simulate(*args, early=True, **{**common, "startup": 1.0}) == pytest.approx(1.5 + 3 + 1 + 0.5)
