"""The ledger's output cells share one process's tilted targets (s7 census: a 2-D target on 201^2 nodes costs ~18
CPU-s, and the target depends on the law, the reward, the grid and the tolerance alone)."""
import math

import numpy as np
import pytest
import torch

from analytic import AutoGReward, CFGReward
from evaluation.claims import cells as cells_mod
from evaluation.claims.cells import OutputCell, clear_targets, output_law, shared_target
from evaluation.distances import TargetMemo, tilted_target
from evaluation import accuracy as accuracy_mod
from evaluation.accuracy import axes_of
from evaluation.spec import Law, Method

PLAIN = OutputCell("paper_1d", "lin:10:0.0001", Method("cfg", 1.0), grid=(-5.0, 5.0, 401))
REG = OutputCell("paper_1d", "lin:10:0.0001", Method("cfg", 1.0, reg="paper"), "tilted", grid=(-5.0, 5.0, 401))


def _equal(a, b) -> bool:
    for x, y in zip(a, b):
        if isinstance(x, np.ndarray):
            if not np.array_equal(x, y):
                return False
        elif isinstance(x, float) and math.isnan(x):
            if not (isinstance(y, float) and math.isnan(y)):
                return False
        elif x != y:
            return False
    return True


def test_cells_of_one_law_and_reward_compute_their_target_once(monkeypatch):
    """A REG cell with another start after the plain one: of the targets (with a tolerance) it asks for, those on the
    grids the plain cell visited come from the plain cell's (nothing computed), and its numbers are those of the cell
    computed alone, to the last bit."""
    computed, asked = [], []
    real_target, real_shared = accuracy_mod.tilted_target, cells_mod.shared_target

    def counted(cond, reward, axes, **kw):
        if "tol" in kw:
            computed.append(len(axes[0]))
        return real_target(cond, reward, axes, **kw)

    def recorded(cond, reward, grid, tol):
        asked.append(grid[2])
        return real_shared(cond, reward, grid, tol)

    monkeypatch.setattr(accuracy_mod, "tilted_target", counted)  # shared_target's (evaluation.accuracy)
    monkeypatch.setattr(cells_mod, "shared_target", recorded)
    clear_targets()
    output_law(PLAIN)
    plain_grids = set(asked)
    assert sorted(set(computed)) == sorted(plain_grids)
    computed.clear(), asked.clear()
    warm = output_law(REG)
    assert plain_grids & set(asked)  # the two cells share at least one grid
    assert set(computed) == set(asked) - plain_grids  # only the grids the plain cell did not visit are computed
    clear_targets()
    computed.clear()
    cold = output_law(REG)
    assert set(computed) == set(asked) and _equal(warm, cold)


def test_a_shared_target_is_the_fresh_one_and_rewards_are_told_apart():
    parts = Law.parse("paper_1d").build()
    grid, tol = (-5.0, 5.0, 201), 5e-4
    clear_targets()
    rewards = [CFGReward(parts.cond, parts.uncond, 1.0), CFGReward(parts.cond, parts.uncond, 3.0),
               AutoGReward(parts.cond, Method("autog", 1.0).reward(parts).bad, 1.0)]
    got = [shared_target(parts.cond, r, grid, tol) for r in rewards]
    assert len({id(g) for g in got}) == 3
    for r, g in zip(rewards, got):
        fresh = tilted_target(parts.cond, r, axes_of(grid, 1), tol=tol)
        assert torch.equal(g.mass, fresh.mass) and torch.equal(g.error, fresh.error) and g.lost == fresh.lost
    again = shared_target(parts.cond, CFGReward(parts.cond, parts.uncond, 1.0), grid, tol)
    assert again is got[0]  # an equal reward built anew: the same target
    assert shared_target(parts.cond, rewards[0], grid, 1e-4) is not got[0]  # another tolerance


def test_the_target_memo_keeps_the_newest_and_never_a_none_key():
    """TargetMemo (the memo of shared_target and of evaluation.flows): each key computed once while kept, at most
    max_items kept with the oldest out first (a hit does not make an entry newer), a None key computed every time and
    never kept; clear() forgets everything; a bad bound is refused naming it."""
    made = []

    def make(tag):
        def f():
            made.append(tag)
            return [tag]  # a fresh object each time: `is` tells a kept one from a recomputed one
        return f

    memo = TargetMemo(2)
    a, b = memo.get("a", make("a")), memo.get("b", make("b"))
    assert memo.get("a", make("a")) is a and memo.get("b", make("b")) is b and made == ["a", "b"]
    none = memo.get(None, make("n"))
    assert memo.get(None, make("n")) is not none and made == ["a", "b", "n", "n"]  # never kept, evicts nothing
    c = memo.get("c", make("c"))  # the third: "a", the oldest (though read since), goes
    assert memo.get("b", make("b")) is b and made == ["a", "b", "n", "n", "c"]
    assert memo.get("a", make("a")) is not a and made[-1] == "a"  # recomputed; now "b" went
    assert memo.get("c", make("c")) is c and made[-1] == "a"
    assert memo.get("b", make("b")) is not b and made[-1] == "b"
    memo.clear()
    memo.get("c", make("c"))
    assert made[-1] == "c" and len(made) == 8
    for bad in (0, -1, 2.5, None, True):
        with pytest.raises(ValueError, match=rf"max_items must be .*, got {bad!r}"):
            TargetMemo(bad)


def test_shared_targets_are_keyed_by_the_conditional_itself():
    """Two conditionals under one reward are two targets (the key is the mixture's values, not a name)."""
    parts = Law.parse("paper_1d").build()
    other = Law.parse("rand1d:3").build()
    grid, tol = (-5.0, 5.0, 201), 5e-4
    clear_targets()
    reward = CFGReward(parts.cond, parts.uncond, 1.0)
    a, b = shared_target(parts.cond, reward, grid, tol), shared_target(other.cond, reward, grid, tol)
    assert a is not b and not torch.equal(a.mass, b.mass)
    fresh = tilted_target(other.cond, reward, axes_of(grid, 1), tol=tol)
    assert torch.equal(b.mass, fresh.mass)
