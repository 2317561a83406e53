"""Pinned verdict of the ledger claim ``pavasovic-highdim`` (Pavasovic et al., arXiv 2502.07849), in the style of
test_claims_verdicts.py: the --quick experiment run through its conclusion, verdict and numbers pinned on both
sides; plus the reduction it rests on and its bad input."""
import math

import pytest

from evaluation.claims import ALL_CLAIMS, get_claim
from evaluation.claims.ledger import evaluate
from evaluation.claims.pavasovic import HighDimCell, high_dim_law


def _near(value, expected, tol):
    assert abs(value - expected) <= tol, (value, expected)


def test_cfg_distortions_fade_only_with_separation_growing_like_sqrt_d(tmp_path):
    o = evaluate(get_claim("pavasovic-highdim"), quick=True, cache=tmp_path)
    n = {x.name: x.value for x in o.result.numbers}
    assert o.result.verdict.startswith("holds only when the class separation grows with d")
    assert n["max |CFG term in R^d - reduced 1-D term| (eps units)"] < 1e-12  # the reduction is exact in R^4096
    assert n["fixed: largest change of overshoot or variance ratio across d"] < 1e-9
    for d in (1, 64, 4096):  # fixed separation: the same distortion at every d
        _near(n[f"fixed d={d} w=2: mean overshoot along U"], 0.7584, 2e-3)
        _near(n[f"fixed d={d} w=2: variance ratio along U"], 0.5600, 2e-3)
        _near(n[f"fixed d={d} w=2: TV to the conditional"], 0.3583, 2e-3)
    _near(n["sqrt_d d=64 w=2: mean overshoot along U"], 0.1286, 2e-3)
    _near(n["sqrt_d d=64 w=2: variance ratio along U"], 0.9796, 2e-3)
    _near(n["sqrt_d d=4096 w=2: mean overshoot along U"], 0.0166, 2e-3)
    _near(n["sqrt_d d=4096 w=2: variance ratio along U"], 0.9997, 2e-3)
    # at d = 4096 CFG's law is as close to the conditional as the unguided sampler's own
    _near(n["sqrt_d d=4096 w=2: TV to the conditional"], n["sqrt_d d=4096 w=0: TV to the conditional (sampler error)"],
          2e-3)
    assert get_claim("pavasovic-highdim") in ALL_CLAIMS and o.data.mean.shape == (2, 3, 2)


def test_the_output_law_along_u_is_the_one_dimensional_cfg_law():
    """The cell at separation mu0 sqrt(d) equals the fixed cell at mu0 = sqrt(d): only mu enters the law along U,
    and the d-dimensional CFG term is the 1-D one lifted along q (to rounding)."""
    a = high_dim_law(HighDimCell("sqrt_d", 16, 1.0))
    b = high_dim_law(HighDimCell("fixed", 3, 1.0, mu0=4.0))
    assert (a.mean, a.var, a.tv) == pytest.approx((b.mean, b.var, b.tv), rel=1e-12)
    assert a.reduction_error < 1e-12 and math.isfinite(a.tv)
    # the accuracy contract: each number within the cell's tolerance, the lost mass recorded
    tol = HighDimCell("sqrt_d", 16, 1.0).tol
    assert max(a.mean_error, a.var_error, a.tv_error, a.lost) <= tol and len(a.grid) == 3


def test_bad_cells_are_refused():
    with pytest.raises(ValueError, match="separation must be one of"):
        HighDimCell("linear", 4, 1.0)
    with pytest.raises(ValueError, match="d must be a positive integer"):
        HighDimCell("fixed", 0, 1.0)
    with pytest.raises(ValueError, match="w must be a finite number >= 0"):
        HighDimCell("fixed", 4, float("nan"))
