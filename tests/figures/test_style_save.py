"""figures.style.save: one layout for both files (issue 19), the PNG that savefig(bbox_inches="tight") draws."""
from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from figures.style import save, style  # noqa: E402


def _constrained():
    fig, axes = plt.subplots(2, 2, figsize=(5, 4), layout="constrained", sharex=True)
    for i, ax in enumerate(axes.flat):
        im = ax.pcolormesh(np.arange(20.0).reshape(4, 5) * (i + 1), cmap="OrRd")
        ax.set_title(f"$J^T g$, panel {i}")
        ax.plot([0, 4], [0, 3], label="a line")
    fig.colorbar(im, ax=axes[:, 1].tolist(), label="|golden - method|")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center")
    fig.suptitle("a long suptitle that the tight box must hold")
    return fig


def _tight():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_yscale("log")
    ax.plot([1, 2, 3], [1e-3, 1e-1, 10], marker="o")
    ax.set_ylabel("$10^{-3}$ to 10")
    fig.tight_layout()
    return fig


@pytest.mark.parametrize("build", [_constrained, _tight])
def test_save_draws_the_png_of_savefig_tight_once_laid_out(build, tmp_path):
    with style():
        fig = build()
        paths = save(fig, tmp_path / "new", "fig")
        assert not plt.fignum_exists(fig.number)  # save closed it (other tests may leave theirs open)
        reference = build()
        reference.savefig(tmp_path / "ref.png", bbox_inches="tight")
        dpi = matplotlib.rcParams["savefig.dpi"]
        plt.close(reference)
    assert [p.name for p in paths] == ["fig.png", "fig.pdf"] and all(p.stat().st_size > 0 for p in paths)
    png = np.asarray(Image.open(paths[0]))
    assert np.array_equal(png, np.asarray(Image.open(tmp_path / "ref.png")))  # pixel for pixel
    # the PDF is the same box: its page (points) is the PNG's size (pixels at the savefig dpi) within a pixel
    box = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", paths[1].read_bytes())
    width, height = (float(v) * dpi / 72 for v in box.groups())
    assert abs(width - png.shape[1]) <= 1.5 and abs(height - png.shape[0]) <= 1.5


def test_save_lays_the_figure_out_once_for_both_files(tmp_path, monkeypatch):
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    runs = []
    execute = ConstrainedLayoutEngine.execute
    monkeypatch.setattr(ConstrainedLayoutEngine, "execute", lambda self, fig: runs.append(1) or execute(self, fig))
    with style():
        save(_constrained(), tmp_path, "fig")
    assert len(runs) == 1  # savefig(bbox_inches="tight") per file: 2
