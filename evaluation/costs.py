"""What a cell's work costs, for the order of work and the progress bar of :func:`evaluation.sweep.run_cells`
(:class:`evaluation.sweep.Eta`; issue 19, item 4: an ETA right within 2x).

A cell's cost has two parts (:class:`Cost`):

- its **rate class** (``group``): the settings that change the seconds per unit of work by a factor no size
  predicts (the dimension, the sampler, the guidance rule and REG estimator, the start, the model), so that cells
  of one class are timed together and a class measured on cheap cells says nothing about another: in the session-9
  full job a 2-D output cell declared 20 x 51^2 = 52020 and took 100-300 s, as long as 1-D cells declaring 30x more
  took 1 s (``benchmarks/eta_replay.txt``);
- its **relative cost** within the class (``cost``): the size of the work (steps x grid nodes, draws x dimension).

What no setting predicts (the accuracy contract refining one cell's grid many times more than another's, e.g.
``bn-pc``'s ``ddpm_grid`` cells at w = 3 against w = 1, 60x) is left to the measurements: the sweep measures every
class on its costliest cell early and counts a cell that runs longer than its estimate while it runs
(:class:`evaluation.sweep.Eta`). A class per weight as well did no better in the replay of that job.

A kind without a model here is one class with its cells' declared ``cost`` (``None`` when it declares none: the
sweep counts it as the mean of its class). The models live here, not on the cell types, so that refining them
changes no cell's code version (:func:`evaluation.sweep.code_version` hashes the kinds' own modules, not this one):
the cache stays valid. A model reads the configuration only; it computes nothing.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, NamedTuple

from .spec import Law, Schedule

__all__ = ["Cost", "cost_of", "declared_cost", "MODELS"]


class Cost(NamedTuple):
    group: str  # the rate class within the kind ("" for the kind as a whole)
    cost: float | None  # relative cost within the class (None: the mean of its class)


def declared_cost(cell: Any) -> float | None:
    """The cell's own ``cost`` (finite, > 0), or ``None`` when it declares none; ``ValueError`` naming the cell for
    any other value."""
    v = getattr(cell, "cost", None)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"cell {cell!r:.200} declares cost {v!r}; a cost is a finite number > 0")
    return float(v)


def _dim(law: Any) -> int:
    return (law if isinstance(law, Law) else Law.parse(law)).dim


def _method(m: Any) -> str:
    return m.rule + (f"+{m.reg}" if getattr(m, "reg", "") else "")


def _output_cell(c: Any) -> Cost:  # evaluation.claims.cells.OutputCell
    d = _dim(c.law)
    return Cost(f"d={d} {c.sampler} {_method(c.method)} {c.start} {c.model}",
                Schedule.parse(c.schedule).steps * float(c.grid[2]) ** d)


def _claims_field_cell(c: Any) -> Cost:  # evaluation.claims.cells.FieldCell: goldens on a grid at a few levels
    d = _dim(c.law)
    return Cost(f"d={d} {_method(c.method)}", min(c.levels, Schedule.parse(c.schedule).steps) * float(c.grid[2]) ** d)


def _pc_cell(c: Any) -> Cost:  # evaluation.claims.bradley_nakkiran.PCCell
    return Cost(c.kind, float(Schedule.parse(c.schedule).vp.T))


def _autog_cell(c: Any) -> Cost:  # evaluation.claims.autoguidance.AutogCell
    return Cost(f"d={_dim(c.law)} {c.guide}", float(Schedule.parse(c.schedule).steps))


def _law_cell(c: Any) -> Cost:  # evaluation.flows.LawCell: the contract's laws from a starting grid
    d = c.law.dim
    checked = ",".join(c.checked) or "-"
    return Cost(f"d={d} {c.levels.sampler} {_method(c.method)} {checked}", c.levels.steps * float(c.grid[2]) ** d)


def _flows_field_cell(c: Any) -> Cost:  # evaluation.flows.FieldCell
    return Cost(f"d={c.law.dim}", c.levels.steps * len(c.methods) * float(c.nodes) ** c.law.dim)


def _field_point(c: Any) -> Cost:  # evaluation.dimension.FieldPoint: mostly a fixed part per draw, not d
    # benchmarks/census.txt: 192 draws take 1.5 CPU-s at d = 128 ... 512, 1.7 at d = 2048, 3.0 at d = 4096 (its
    # declared n_points x d says 32x from d = 128 to 4096: a cheap first cell then predicted hours)
    return Cost("", c.n_points * (1.0 + c.law.dim / 2048.0))


MODELS: dict[str, Callable[[Any], Cost]] = {
    "evaluation.dimension:FieldPoint": _field_point,
    "evaluation.claims.cells:OutputCell": _output_cell,
    "evaluation.claims.cells:FieldCell": _claims_field_cell,
    "evaluation.claims.bradley_nakkiran:PCCell": _pc_cell,
    "evaluation.claims.autoguidance:AutogCell": _autog_cell,
    "evaluation.flows:LawCell": _law_cell,
    "evaluation.flows:FieldCell": _flows_field_cell,
}
"""The cost models, by the cell type's ``module:qualname`` (names, not the types: this module imports no cell kind)."""


def cost_of(cell: Any) -> Cost:
    """The rate class and relative cost of ``cell`` (its kind's model in :data:`MODELS`, else its declared ``cost``
    in the kind's one class)."""
    model = MODELS.get(f"{type(cell).__module__}:{type(cell).__qualname__}")
    if model is None:
        return Cost("", declared_cost(cell))
    group, cost = model(cell)
    if cost is not None and not (math.isfinite(cost) and cost > 0):
        raise ValueError(f"the cost model of {type(cell).__qualname__} gives cost {cost!r} for {cell!r:.200}")
    return Cost(group, cost)
