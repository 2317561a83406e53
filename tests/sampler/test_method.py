"""sampler.method: the one method spelling (parse / str round trip, bad input), its weight schedules and the
guidance it builds, checked against the formulas ``D_c + w(sigma) (D_c - D_ref)`` on closed-form denoisers."""
import math

import pytest
import torch

from sampler import REG
from sampler.method import Method

F64 = torch.float64
SIG = torch.tensor([80.0, 12.0, 5.0, 2.0, 0.6, 0.1, 0.0], dtype=F64)  # levels ending at 0, s_max = 80
A = torch.tensor([[1.2, -0.3], [0.4, 0.7]], dtype=F64)


def cond(x, s):  # linear in x: its Jacobian is A / (1 + s)
    return x @ A.T / (1.0 + s)


def uncond(x, s):
    return torch.tanh(x) * (0.5 + 0.1 * s)


def weak(x, s):
    return 0.8 * x - 0.05 * s


# the weight formulas of the digits sweep's methods, written out (w at sigma)
def linear(w, s, hi=10.0):
    return 2 * w * (1 - min(s, hi) / hi)


def cosine(w, s, hi=10.0):
    return w * (1 - math.cos(math.pi * max(0.0, 1 - s / hi)))


def interval(w, s, lo=0.3, hi=3.0):
    return w if lo <= s <= hi else 0.0


CASES = [("cfg,w=1.5", uncond, lambda s: 1.5), ("cfg,w=1.5,weighting=linear,lo=0,hi=10", uncond, lambda s: linear(1.5, s)),
         ("cfg,w=1.5,weighting=cosine,hi=10", uncond, lambda s: cosine(1.5, s)),
         ("cfg,w=1.5,weighting=interval,lo=0.3,hi=3", uncond, lambda s: interval(1.5, s)),
         ("autog,w=0.5", weak, lambda s: 0.5)]


@pytest.mark.parametrize("text, ref, wf", CASES)
def test_guidance_is_the_formula(text, ref, wf):
    x = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    g = Method.parse(text).guide(cond, uncond, SIG, weak=weak)
    for s in (50.0, 10.0, 5.0, 2.0, 0.6, 0.1):
        want = cond(x, s) + wf(s) * (cond(x, s) - ref(x, s))
        assert torch.allclose(g(x, s), want, rtol=1e-13, atol=1e-14), (text, s)


def test_reg_pulls_the_delta_back_through_the_conditional_jacobian():
    """REG (vjp): ``D_c + J_c^T delta``; with ``D_c = A x / (1 + s)``, ``J_c^T delta = delta A / (1 + s)``."""
    x = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    m = Method.parse("cfg,w=2,reg=vjp")
    g = m.guide(cond, uncond, SIG)
    assert isinstance(g, REG) and g.estimator == "vjp"
    for s in (5.0, 0.6):
        delta = 2.0 * (cond(x, s) - uncond(x, s))
        assert torch.allclose(g(x, s), cond(x, s) + delta @ A / (1.0 + s), rtol=1e-12, atol=1e-13)


def test_unguided_and_needs():
    x = torch.randn(3, 2, dtype=F64)
    assert torch.equal(Method("unguided").guide(cond, None, SIG)(x, 2.0), cond(x, 2.0))
    with pytest.raises(ValueError, match="weak model"):
        Method.parse("autog").guide(cond, uncond, SIG)


@pytest.mark.parametrize("text", ["cfg", "cfg,w=2,reg=vjp", "cfg,weighting=interval,lo=0.1,hi=1", "autog,reg=paper",
                                  "apg_momentum,w=4,momentum=-0.25", "cfg,w=0.25,weighting=cosine,hi=10"])
def test_spelling_round_trip(text):
    m = Method.parse(text)
    assert str(m) == text and Method.parse(str(m)) == m


@pytest.mark.parametrize("text, match", [("vanilla", "rule"), ("cfg,estimator=vjp", "bad item"), ("cfg,w=x", "w must"),
                                         ("cfg,reg=none", "REG estimator"), ("cfg,weighting=ramp", "weighting"),
                                         ("unguided,reg=vjp", "REG modifies"), ("cfg,w=1,w=2", "bad item"),
                                         ("cfg,lo=2,hi=1", "lo must"), ("", "RULE")])
def test_bad_spellings(text, match):
    with pytest.raises(ValueError, match=match):
        Method.parse(text)


def test_label():
    assert Method.parse("cfg,w=3").label == "CFG"
    assert Method.parse("cfg,reg=vjp").label == "REG (vjp)"
    assert Method.parse("autog,weighting=linear,reg=paper").label == "AutoG (linear) + REG (paper)"
