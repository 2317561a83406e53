"""Shared fixtures for the toy tests: tiny networks, exact-mixture stand-ins for networks."""
import pytest
import torch

from toy import MLPConfig


@pytest.fixture
def tiny():
    return MLPConfig(width=16, n_blocks=1, emb_size=8)


class MixtureNet:
    """The exact eps of a mixture in the network signature ``net(x_vp, t [N], cond) -> eps``; like the real
    networks it takes an empty batch (``chain_golden`` evaluates empty chunks of its node sets)."""

    def __init__(self, mixture, schedule):
        self.mixture, self.schedule = mixture, schedule

    def __call__(self, x, t, cond=None):
        if x.shape[0] == 0:
            return torch.zeros_like(x)
        return self.mixture.eps(x, self.schedule.abar[int(t.reshape(-1)[0])].item())
