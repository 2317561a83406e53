"""The exercise check the teaching notebooks share.

Lives beside the notebooks (Jupyter and the test run start their kernels in this folder); the library
itself never imports it.
"""
from __future__ import annotations

import torch


def check(name: str, mine, exact, *, tol: float, strict: bool = False) -> bool:
    """Compare a reader's answer ``mine`` with the library's exact value ``exact`` (max abs difference).

    ``mine`` None means "not tried yet". A wrong answer prints how far off it is; with ``strict`` (the
    solution cells, which the test run executes) it raises ``AssertionError`` instead.
    """
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    if mine is None:
        print(f"{name}: not tried yet (replace None with your answer, or open the solution cell below)")
        return False
    mine_t = torch.as_tensor(mine, dtype=torch.float64).detach().cpu()
    exact_t = torch.as_tensor(exact, dtype=torch.float64).detach().cpu()
    if mine_t.shape != exact_t.shape:
        message = f"{name}: shape {tuple(mine_t.shape)}, expected {tuple(exact_t.shape)}"
    elif not torch.isfinite(mine_t).all():
        message = f"{name}: your answer has NaN or inf entries"
    else:
        err = (mine_t - exact_t).abs().max().item()
        if err <= tol:
            print(f"{name}: correct (max |yours - exact| = {err:.2e} <= {tol:.0e})")
            return True
        message = f"{name}: not yet (max |yours - exact| = {err:.3g} > {tol:.0e})"
    if strict:
        raise AssertionError(message)
    print(message)
    return False
