"""Weight schedules (functions of sigma only) and the weight-convention converters."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sampler import CFG, DPS, Constant, Cosine, Interval, LinearRamp, PerpNeg, as_schedule, s_to_w, w_to_s

finite = st.floats(-50, 50, allow_nan=False)


@settings(deadline=None, max_examples=50)
@given(finite)
def test_converters_round_trip(w):
    assert s_to_w(w_to_s(w)) == pytest.approx(w, abs=1e-12)
    assert w_to_s(w) == pytest.approx(w + 1, abs=1e-12)


@settings(deadline=None, max_examples=50)
@given(finite, st.integers(0, 2**31 - 1))
def test_lerp_convention_equals_cond_anchored(s, seed):
    """``D_u + s (D_c - D_u) == D_c + w (D_c - D_u)`` for ``w = s - 1``."""
    g = torch.Generator().manual_seed(seed)
    d_c, d_u = torch.randn(5, dtype=torch.float64, generator=g), torch.randn(5, dtype=torch.float64, generator=g)
    w = s_to_w(s)
    torch.testing.assert_close(d_u + s * (d_c - d_u), d_c + w * (d_c - d_u), rtol=1e-12, atol=1e-10)


def test_constant_and_as_schedule():
    assert Constant(2.5)(0.0) == 2.5 and Constant(2.5)(80.0) == 2.5
    assert as_schedule(3)(1.0) == 3.0
    lin = LinearRamp(1.0, 2.0, 0.1, 1.0)
    assert as_schedule(lin) is lin
    for bad in ("2", None, True):
        with pytest.raises(ValueError):
            as_schedule(bad)


def test_linear_ramp():
    r = LinearRamp(w_start=4.0, w_end=1.0, sigma_min=0.5, sigma_max=2.0)
    assert r(2.0) == pytest.approx(4.0) and r(0.5) == pytest.approx(1.0)
    assert r(1.25) == pytest.approx(2.5)  # midpoint
    assert r(10.0) == pytest.approx(4.0) and r(0.0) == pytest.approx(1.0)  # constant beyond the ends
    with pytest.raises(ValueError, match="sigma_min"):
        LinearRamp(1.0, 2.0, 2.0, 1.0)


def test_cosine():
    c = Cosine(w=3.0, s=2.0, sigma_max=4.0)
    assert c(4.0) == pytest.approx(0.0, abs=1e-15) and c(0.0) == pytest.approx(3.0)
    u = 1 - 1.0 / 4.0
    assert c(1.0) == pytest.approx(1.5 * (1 - math.cos(math.pi * u**2)))
    vals = [c(s) for s in (4.0, 3.0, 2.0, 1.0, 0.0)]
    assert vals == sorted(vals)  # weight grows as the noise falls
    assert c(100.0) == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match="power s"):
        Cosine(1.0, 0.0, 1.0)


def test_interval():
    i = Interval(2.0, 0.28, 2.9)
    assert i(0.28) == 2.0 and i(2.9) == 2.0 and i(1.0) == 2.0
    assert i(0.27) == 0.0 and i(3.0) == 0.0 and i(0.0) == 0.0
    with pytest.raises(ValueError, match="sigma_lo=3.0 > sigma_hi=1.0"):
        Interval(1.0, 3.0, 1.0)


@pytest.mark.parametrize("sched", [Constant(1.0), LinearRamp(1, 2, 0.1, 1), Cosine(1, 1, 1), Interval(1, 0.1, 1)])
def test_bad_sigma(sched):
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="sigma"):
            sched(bad)


def test_bad_weights():
    with pytest.raises(ValueError, match="w must be finite"):
        Constant(float("nan"))
    with pytest.raises(ValueError, match="w must be a number"):
        Constant("x")


def _nan_schedule(sigma):
    return float("nan") if sigma > 0.5 else 1.0


@pytest.mark.parametrize("make", [
    lambda w: CFG(lambda x, s: x / (1 + s**2), lambda x, s: 0.5 * x / (1 + s**2), w),
    lambda w: PerpNeg(lambda x, s: 0.5 * x, lambda x, s: 0.4 * x, lambda x, s: 0.3 * x, w),
    lambda w: PerpNeg(lambda x, s: 0.5 * x, lambda x, s: 0.4 * x, lambda x, s: 0.3 * x, 1.0, w),
    lambda w: DPS(lambda x, s: 0.5 * x, lambda z: z[:, :1], torch.tensor([0.3], dtype=torch.float64), 0.1, weight=w),
])
def test_a_schedule_value_that_is_not_finite_is_refused_naming_the_schedule_and_sigma(make):
    """Issue 20 round 3: a weight schedule returning NaN gave NaN guidance without a word (CFG, PerpNeg, DPS: every
    rule reads its weight through as_schedule). A finite caller's schedule gives the same numbers as a Constant."""
    x = torch.tensor([[1.0, 2.0], [-0.5, 0.3]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"weight schedule .*_nan_schedule.* returned nan at sigma=1.0"):
        make(_nan_schedule)(x, 1.0)
    assert torch.equal(make(_nan_schedule)(x, 0.25), make(1.0)(x, 0.25))
    for bad in (lambda s: float("inf"), lambda s: torch.tensor([1.0, float("nan")]), lambda s: None,
                lambda s: True):
        with pytest.raises(ValueError, match="sigma=1.0; a guidance weight must be a finite number"):
            make(bad)(x, 1.0)


def test_as_schedule_wraps_only_callers_schedules():
    own = Cosine(1, 1, 1)
    assert as_schedule(own) is own and as_schedule(2.0) == Constant(2.0)
    f = lambda s: 2.0 * s  # noqa: E731
    checked = as_schedule(f)
    assert checked.schedule is f and as_schedule(checked) is checked and checked(0.3) == f(0.3)
