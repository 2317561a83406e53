"""Shared test fixtures as plain functions (importable from any test package)."""
import torch

from analytic import GaussianMixture


def random_mixture(d: int, K: int, seed: int, scale: float = 0.3, spread: float = 1.0) -> GaussianMixture:
    """A seeded random K-component mixture in d dimensions: weights in [0.2, 1.2), means uniform in
    ``0.5 +- spread`` per coordinate, covariances ``A A^T + scale^2 I`` with ``A`` Gaussian of scale ``scale``."""
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(K, generator=g, dtype=torch.float64) + 0.2
    mu = 0.5 + spread * (2 * torch.rand(K, d, generator=g, dtype=torch.float64) - 1)
    A = torch.randn(K, d, d, generator=g, dtype=torch.float64) * scale
    covs = A @ A.transpose(-1, -2) + (scale**2) * torch.eye(d, dtype=torch.float64)
    return GaussianMixture(w, mu, covs)


def paper_pair():
    """The REG paper's 1-D toy (conditional, and the unconditional stored with its checkpoints)."""
    cond = GaussianMixture.from_1d([0.5, 0.5], [0.5, 1.5], [0.25, 0.25])
    uncond = GaussianMixture.from_1d([0.5, 0.5], [-2.0, 0.0], [0.5, 0.5])
    return cond, uncond


class GeneratorElsewhere(torch.Generator):
    """A CPU generator that reports CUDA as its device (a CUDA generator cannot be made without CUDA): for the
    checks that a generator is on the device of the draws."""

    @property
    def device(self):
        return torch.device("cuda", 0)

