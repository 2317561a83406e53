"""The claims ledger's machinery: names by value (laws, schedules, methods), the generic cells, the ledger's
table, the command line, and the loader of the REG paper's released networks."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.claims import ALL_CLAIMS, CLAIMS, get_claim
from evaluation.claims.__main__ import main
from evaluation.claims.cells import OutputCell, output_law
from evaluation.claims.ledger import Claim, markdown, to_json
from evaluation.claims.paper_figure import load_released, released_dir
from evaluation.spec import Method
from evaluation.sweep import cell_key


def test_every_claim_has_a_source_a_figure_module_and_a_unique_id():
    ids = [c.id for c in ALL_CLAIMS]
    assert len(ids) == len(set(ids)) >= 12
    for c in ALL_CLAIMS:
        assert c.source[:4].isdigit() and "." in c.source, c.source
        assert c.provenance in ("abstract", "memory")
        assert (Path(__file__).parents[2] / "figures" / f"{c.figure}.py").is_file(), c.figure
    with pytest.raises(ValueError, match="unknown claim"):
        get_claim("nope")


def test_cells_refuse_bad_names_where_they_are_made():
    with pytest.raises(ValueError, match="start"):
        OutputCell("paper_1d", "paper", start="uniform")
    with pytest.raises(ValueError, match="unknown law"):
        OutputCell("nothing", "paper")
    with pytest.raises(ValueError, match="unknown schedule"):
        OutputCell("paper_1d", "geometric:10")
    with pytest.raises(ValueError, match="tol must be a positive number"):
        OutputCell("paper_1d", "paper", tol=0.0)
    with pytest.raises(ValueError, match="checked must be a tuple of names"):
        OutputCell("paper_1d", "paper", checked=("tv", "fid"))
    with pytest.raises(ValueError, match="regions must be"):
        OutputCell("paper_1d", "paper", regions=((1.0, 0.0),))


def test_output_cell_matches_the_report_number_and_flags_a_missing_target():
    """paper_1d, T = 20, w = 1, N(0,1): CFG's TV 0.664 (evaluation.report, README); a conditional wider than the
    unconditional at w = 8 has no tilted target: the cell says so instead of returning numbers."""
    r = output_law(OutputCell("paper_1d", "paper", Method("cfg", 1.0), grid=(-6.0, 6.0, 2001)))
    assert r.valid and r.tv == pytest.approx(0.6635, abs=5e-4)
    assert r.tv_error <= 1e-4 and r.lost <= 1e-4 and r.grid[2] >= 2001
    bad = output_law(OutputCell("single:1:0.6:0:0.5", "paper", Method("cfg", 8.0)))
    assert not bad.valid and math.isnan(bad.tv) and "does not exist" in bad.reason


def test_cells_are_their_own_keys():
    a = OutputCell("paper_1d", "paper", Method("cfg", 1.0, reg="paper"))
    assert cell_key(a) == cell_key(OutputCell("paper_1d", "paper", Method("cfg", 1.0, reg="paper")))
    assert cell_key(a) != cell_key(OutputCell("paper_1d", "paper", Method("cfg", 1.0, reg="vjp")))


def test_verdicts_have_one_of_three_forms():
    c = get_claim("cfgpp")
    assert c.result("holds", "k", [("a", 1)]).verdict == "holds"
    assert c.result("holds only when x", "k", []).verdict.startswith("holds only when")
    with pytest.raises(ValueError, match="verdict"):
        c.result("mostly", "k", [])


def test_markdown_and_json_carry_every_claim():
    rs = [get_claim("cfgpp").result("fails", "key | with a bar", [("n", math.nan)])]
    md = markdown(rs, quick=True, seconds=1.0)
    assert "| cfgpp |" in md and "key \\| with a bar" in md and "2406.08070" in md
    assert json.loads(to_json(rs, quick=True, seconds=1.0))["claims"][0]["numbers"][0]["value"] == "nan"


def test_a_number_with_its_error_prints_the_digits_the_error_supports():
    """The ledger prints a cell's number with its error (evaluation.docs.format_number, the one printing rule), a
    count as an integer, and keeps the error through claims.json."""
    from evaluation.claims.ledger import from_json

    rs = [get_claim("cfgpp").result("holds", "k", [("tv", 0.16341, 0.0031), ("settings", 4), ("ratio", 0.123456)])]
    md = markdown(rs, quick=True, seconds=1.0)
    assert "| tv | 0.1634 ± 0.0031 |" in md and "| settings | 4 |" in md and "| ratio | 0.1235 |" in md
    back, _ = from_json(to_json(rs, quick=True, seconds=1.0))
    assert back[0].numbers[0].error == 0.0031 and math.isnan(back[0].numbers[1].error)


def test_command_line_writes_the_ledger(tmp_path):
    out = tmp_path / "out"
    assert main(["--quick", "--only", "cfgpp", "--out", str(out), "--cache", str(tmp_path / "cache")]) == 0
    md = (out / "claims.md").read_text()
    assert "| cfgpp |" in md and "(abstract)" in md
    assert (out / "claims_cfgpp.png").is_file()
    data = json.loads((out / "claims.json").read_text())
    assert data["quick"] and data["claims"][0]["id"] == "cfgpp"
    with pytest.raises(SystemExit):
        main(["--only", "nope"])


# --- the released networks of the REG paper ---------------------------------------------------------------
RELEASED = released_dir()
needs_released = pytest.mark.skipif(RELEASED is None, reason="the REG paper's released 1-D networks are not here")


def _upstream_forward(state, x: float, k: int, label: int) -> float:
    """The upstream MLP written out from official_code_notes.md 1.3 (numpy), with the upstream step index k."""
    f = np.exp(-np.arange(64) * np.log(1e4) / 63)
    emb = lambda v, s: np.concatenate([np.sin(s * v * f), np.cos(s * v * f)])  # noqa: E731
    W = {k_: v.double().numpy() for k_, v in state.items()}
    gelu = lambda z: 0.5 * z * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))  # noqa: E731
    c = W["class_emb.weight"][0] if label >= 0 else np.zeros(128)
    h = gelu(W["joint_mlp.0.weight"] @ np.concatenate([emb(x, 25.0), emb(k, 1.0) + c]) + W["joint_mlp.0.bias"])
    for i in (2, 3, 4):
        h = h + gelu(W[f"joint_mlp.{i}.ff.weight"] @ h + W[f"joint_mlp.{i}.ff.bias"])
    return float((W["joint_mlp.5.weight"] @ h + W["joint_mlp.5.bias"])[0])


@needs_released
def test_released_networks_load_with_the_upstream_step_index():
    for name, label in (("released_cond.pth", 0), ("released_uncond.pth", None)):
        net = load_released(RELEASED / name)
        state = torch.load(RELEASED / name, weights_only=True)
        for x, t in ((0.3, 1), (1.2, 10), (-0.7, 20)):
            ours = net(torch.tensor([[x]], dtype=torch.float64), torch.tensor([t]), label).item()
            assert ours == pytest.approx(_upstream_forward(state, x, t - 1, -1 if label is None else 0), abs=2e-5)


def test_released_loader_refuses_foreign_files(tmp_path):
    with pytest.raises(ValueError, match="no released network"):
        load_released(tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"layer.weight": torch.zeros(2)}, bad)
    with pytest.raises(ValueError, match="unexpected key"):
        load_released(bad)
    bad.write_text("not torch")
    with pytest.raises(ValueError, match="not a readable"):
        load_released(bad)


def test_claims_list_skips_only_what_cannot_run_here():
    missing = [c.id for c in ALL_CLAIMS if c not in CLAIMS]
    assert missing == ([] if RELEASED is not None else ["paper-figure"])
    assert isinstance(ALL_CLAIMS[0], Claim)
