"""One figure style for every figure, applied locally (never by mutating global state at import)."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import seaborn as sns

# One colour per method, shared by every figure.
COLORS = {
    "golden": "#222222",
    "chain": "#777777",
    "cfg": "#1f77b4",
    "reg_paper": "#d62728",
    "reg_vjp": "#ff7f0e",
    "reg_diag": "#9467bd",
    "trained": "#2ca02c",
}
LABELS = {
    "golden": "golden (ideal chain)",
    "chain": "golden (sampler chain)",
    "cfg": "CFG",
    "reg_paper": "REG paper ($J^T 1$)",
    "reg_vjp": "REG vjp ($J^T g$)",
    "reg_diag": "REG diag",
}


@contextmanager
def style():
    """Seaborn's paper theme for the figures made inside the block."""
    rc = {"figure.dpi": 110, "savefig.dpi": 160, "axes.titlesize": 9, "axes.labelsize": 9,
          "legend.fontsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7}
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"), mpl.rc_context(rc):
        yield


def save(fig, out_dir: Path, name: str) -> list[Path]:
    """Write ``name``.png and ``name``.pdf and close the figure."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    for p in paths:
        fig.savefig(p, bbox_inches="tight")
    plt.close(fig)
    return paths
