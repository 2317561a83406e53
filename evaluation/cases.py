"""The standard cases of the report and the regression table: a law, a schedule, weights and grids."""
from __future__ import annotations

from dataclasses import dataclass

from .spec import Law, Schedule

__all__ = ["Case", "CASES", "DEFAULT_CASES", "get_case"]


@dataclass(frozen=True)
class Case:
    """One standard case: a law and a schedule (:mod:`evaluation.spec` spellings), CFG weights and the two grids."""

    name: str
    preset: str  # a law spelling (Law.parse)
    schedule: str  # a VP schedule spelling (Schedule.parse): "paper" (T = 20, abar_T = 0.82), "linear:T:B1:BT", ...
    weights: tuple[float, ...]
    field_range: tuple[float, float]  # field grid [lo, hi]^d
    field_points: int  # per dimension
    density_range: tuple[float, float]  # density grid of the VP state [lo, hi]^d
    density_points: int  # per dimension
    sampler_chain: bool  # also compare against the sampler-chain golden

    def __post_init__(self):
        Law.parse(self.preset), Schedule.parse(self.schedule).vp  # ValueError naming the forms


_LONG20 = "linear:20:0.01:0.4"  # abar_1 = 0.99 (sigma_1 = 0.1), abar_20 = 0.007

CASES = (
    Case("paper_1d", "paper_1d", "paper", (1.0, 3.0), (-1.0, 2.0), 1000, (-6.0, 6.0), 2001, True),
    # the same toy with a 20-step schedule that reaches abar_T = 0.007 (x_T close to N(0, 1))
    Case("paper_1d_long", "paper_1d", _LONG20, (1.0,), (-1.0, 2.0), 1000, (-6.0, 6.0), 2001, True),
    Case("correlated_2d", "correlated_2d", _LONG20, (1.0,), (-1.0, 2.0), 31, (-3.5, 3.5), 51, False),
    Case("classes_2d", "classes_2d", _LONG20, (1.0,), (-1.0, 2.0), 31, (-3.5, 3.5), 51, False),
)


DEFAULT_CASES = ("paper_1d", "correlated_2d", "classes_2d")


def get_case(name: str) -> Case:
    """The standard case called ``name``."""
    for c in CASES:
        if c.name == name:
            return c
    raise ValueError(f"unknown case {name!r}; choose one of {[c.name for c in CASES]}")
