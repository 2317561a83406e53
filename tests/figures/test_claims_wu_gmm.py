"""figures.claims_wu_gmm: the laws that meet the paper's conditions (rand1d_iso) are drawn apart from the random
mixtures (their own colour, markers and legend entry), violations red in both, from synthetic arrays."""
import matplotlib
import numpy as np

matplotlib.use("Agg")

from evaluation.claims.wu import Monotone  # noqa: E402
from figures import claims_wu_gmm as fig_mod  # noqa: E402


def test_the_papers_conditions_have_their_own_style_and_legend_entry(tmp_path, monkeypatch):
    seeds = np.array(["rand1d:0", "rand1d:1", "rand1d_iso:0", "rand1d_iso:1"])
    ws = np.array([0.0, 1.0])
    v = np.zeros((4, 2, 2))
    up = np.array([[True, True], [False, True], [True, True], [True, False]])  # [S, 2] (ddpm, ddim)
    d = Monotone(seeds, ws, v, v, v, v, up, np.ones((4, 2), dtype=bool))
    drawn = {}
    monkeypatch.setattr(fig_mod, "save", lambda fig, out, name: drawn.setdefault("fig", fig) and [])
    fig_mod.plot(d, tmp_path)
    ax = drawn["fig"].axes[0]  # confidence: 4 laws x 2 samplers, the paper's conditions drawn last
    style = [(line.get_color(), line.get_marker(), line.get_linestyle()) for line in ax.get_lines()]
    assert style == [("0.6", "None", "-"), ("0.6", "None", "--"), (fig_mod.RED, "None", "-"), ("0.6", "None", "--"),
                     (fig_mod.BLUE, "o", "-"), (fig_mod.BLUE, "o", "--"), (fig_mod.BLUE, "o", "-"),
                     (fig_mod.RED, "o", "--")]
    labels = [t.get_text() for t in drawn["fig"].legends[0].get_texts()]
    assert labels[0].startswith("random mixtures (2)") and labels[1].startswith("paper's conditions (2")
    assert fig_mod.summary(d)["paper_conditions_laws"] == 2
