"""One figure style for every figure, applied locally (never by mutating global state at import)."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import seaborn as sns

from evaluation.spec import Method
from sampler.method import Method as MethodValue

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
# the paper's Figure 1 colours (paper_figure_compare_t10.png: blue golden, green CFG, red REG), for every figure of
# guidance curves on the paper's 1-D toy, so that they and the paper's figure read side by side without remapping
PAPER_COLORS = {"golden": "#1f77b4", "chain": "#6baed6", "cfg": "#2ca02c", "reg": "#d62728"}
# the references the methods are measured against (not methods: a method is named by method_label)
LABELS = {
    "golden": "golden (ideal chain)",
    "chain": "golden (sampler chain)",
}
# the formula of a REG estimator's Jacobian term, shown after its name where a figure compares estimators
REG_FORMULAS = {"paper": "$J^T 1$", "vjp": "$J^T g$"}
# the starts of a chain (evaluation.spec.STARTS) as a reader names them
START_LABELS = {"n01": "N(0,1) start", "tilted": "tilted start p_T E_T", "tilted_n01": "N(0,1) E_T start"}


def method_label(method: MethodValue | str, formula: bool = False) -> str:
    """The name of ``method`` (an :class:`evaluation.spec.Method` or :class:`sampler.method.Method`, or a spelling
    such as ``cfg,reg=vjp``) in every figure: its ``Method.label`` (``CFG``, ``REG (vjp)``), the vocabulary of the
    tables and the report; with ``formula``, a REG estimator's formula of :data:`REG_FORMULAS` after it
    (``REG (paper), $J^T 1$``). ValueError for anything else."""
    m = Method.parse(method) if isinstance(method, str) else method
    if not isinstance(m, MethodValue):
        raise ValueError(f"method must be a Method or its spelling, got {method!r}")
    if formula and m.reg in REG_FORMULAS:
        return f"{m.label}, {REG_FORMULAS[m.reg]}"
    return m.label


def schedule_label(spelling: str) -> str:
    """A schedule family of :mod:`evaluation.spec` spelled with its step count free or given (``lin:T:0.0001``,
    ``lin:20:0.5``, ``cosine:T``) as a reader names it (``linear betas to abar_T = 0.0001``); other spellings
    (``paper``, ``linear:20:0.01:0.4``) are returned as they are."""
    kind, *args = spelling.split(":")
    steps = "" if not args or args[0] == "T" else f", T = {args[0]}"
    if kind == "lin" and len(args) == 2:
        return f"linear betas to abar_T = {args[1]}{steps}"
    if kind == "cosine" and len(args) == 1:
        return f"cosine{steps}"
    return spelling


@contextmanager
def style():
    """Seaborn's paper theme for the figures made inside the block."""
    rc = {"figure.dpi": 110, "savefig.dpi": 160, "axes.titlesize": 9, "axes.labelsize": 9,
          "legend.fontsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7}
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"), mpl.rc_context(rc):
        yield


def plain_log_ticks(axis, minor: tuple[float, ...] = (2, 3, 5)) -> None:
    """Label a log axis (``ax.xaxis`` / ``ax.yaxis``) that spans about one or two decades with plain numbers
    (0.3, 0.5, 1, 2; 30, 50, 100, 200) at the decades and at ``minor`` times them, instead of one labelled decade
    or mixed ``3 x 10^-1`` labels."""
    plain = mticker.FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_formatter(plain)
    axis.set_minor_locator(mticker.LogLocator(base=10, subs=minor))
    axis.set_minor_formatter(plain)


def ticks_at(axis, values) -> None:
    """Ticks of ``axis`` exactly at the sampled ``values`` (e.g. the step counts T of a sweep), labelled as plain
    numbers, and no minor ticks: on a log axis the default labels only the decades."""
    values = sorted({float(v) for v in values})
    if axis.get_scale() == "log" and values and values[0] <= 0:  # a tick at 0 turns a log axis into one squashed end
        raise ValueError(f"ticks at {values[0]:g} on a log axis: give the sampled values only (all > 0)")
    axis.set_ticks(values, [f"{v:g}" for v in values])
    axis.set_minor_locator(mticker.NullLocator())


def save(fig, out_dir: Path, name: str) -> list[Path]:
    """Write ``name``.png and ``name``.pdf, cropped to the figure's tight bounding box, and close the figure.

    The figure is laid out (its layout engine, e.g. constrained) and measured once, at the PNG's dpi, and both files
    are drawn from that layout: ``savefig(bbox_inches="tight")`` lays the figure out and measures it again for each
    file, a full draw without rendering each time (about 40 % of the CPU of drawing the ``--quick`` figures, issue
    19). The PNG is the one ``savefig(bbox_inches="tight")`` draws, pixel for pixel; the PDF has the PNG's layout
    (before, its own, from the PDF backend's text metrics: positions that differed by a fraction of a point)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    dpi = mpl.rcParams["savefig.dpi"]
    if dpi != "figure":
        fig.set_dpi(dpi)  # measured at the PNG's dpi, as savefig measures it for the PNG
    fig.draw_without_rendering()  # the layout engine runs here, once
    bbox = fig.get_tightbbox().padded(mpl.rcParams["savefig.pad_inches"])
    with mpl.rc_context({"figure.autolayout": False, "figure.constrained_layout.use": False}):
        fig.set_layout_engine(None)  # laid out: savefig draws it as it is (no layout, no draw to measure it)
    for p in paths:
        fig.savefig(p, bbox_inches=bbox)
    plt.close(fig)
    return paths
