"""Shared test fixtures as plain functions (importable from any test package)."""
import dataclasses
import math

import torch
from hypothesis import strategies as st

from analytic import GaussianMixture
from evaluation.sweep import cell_kind


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



def ddim_gaussian_case(mu: float = 0.7, s0: float = 0.5):
    """DDIM with the exact denoiser of N(mu, s0^2) on 20 linear levels: each step is affine,
    ``x' - mu = c_i (x - mu)`` with ``c_i = k + (sigma'/sigma)(1 - k)``, ``k = s0^2 / (s0^2 + sigma^2)``, so the output
    law is ``N(mu - C mu, C^2 (1 + sigma_0^2))`` from ``x_T = sqrt(1 + sigma_0^2) u``, ``u ~ N(0, 1)``,
    ``C = prod c_i``. Returns (denoiser, sigmas, output mean, output std)."""
    from sampler import MixtureModel, VPSchedule, bind

    den = bind(MixtureModel({"c": GaussianMixture.from_1d([1.0], [mu], [s0])}), "c")
    sig = VPSchedule.linear(20, 1e-4, 0.02).sampling_sigmas()
    C = 1.0
    for s, sn in zip(sig[:-1].tolist(), sig[1:].tolist()):
        k = s0**2 / (s0**2 + s**2)
        C *= k + (sn / s) * (1 - k)
    return den, sig, mu - C * mu, abs(C) * math.sqrt(1 + sig[0].item() ** 2)


@st.composite
def mixtures_2d(draw, k_max: int = 2, w_lo: float = 0.2, s: tuple = (0.3, 0.7), rho: float = 0.6) -> GaussianMixture:
    """A hypothesis strategy: a 2-D mixture of 1..``k_max`` components, weights in ``[w_lo, 1]``, means in
    ``[-1, 1]^2``, per-axis standard deviations in ``s`` and correlation in ``[-rho, rho]``."""
    K = draw(st.integers(1, k_max))
    w = torch.tensor([draw(st.floats(w_lo, 1.0)) for _ in range(K)], dtype=torch.float64)
    mu = torch.tensor([[draw(st.floats(-1.0, 1.0)) for _ in range(2)] for _ in range(K)], dtype=torch.float64)
    covs = []
    for _ in range(K):
        s1, s2, r = draw(st.floats(*s)), draw(st.floats(*s)), draw(st.floats(-rho, rho))
        covs.append([[s1 * s1, r * s1 * s2], [r * s1 * s2, s2 * s2]])
    return GaussianMixture(w, mu, torch.tensor(covs, dtype=torch.float64))


class FarBump:
    """``R_0 = 1 + exp(c - |x - (30, 0, ...)|^2 / (2 0.5^2))`` in ``d`` dimensions: a reward whose ``centres()`` does
    not mention its far feature (a user reward may not know where its features are). Between the bulk and the bump
    ``p R_0`` is a valley 100 nats deep: no edge of a grid around the bulk sees the bump, only the probes
    (``analytic.grid._far_mass``)."""

    def __init__(self, c, dim: int = 1):
        self.c, self.dim = c, dim

    def log_r0(self, x0):
        sq = (x0[:, 0] - 30) ** 2 + (x0[:, 1:] ** 2).sum(1)
        return torch.logaddexp(torch.zeros(()), self.c - 0.5 * sq / 0.25)

    def log_rt(self, x_t, abar):
        raise NotImplementedError

    def present(self, x_t, abar):
        raise NotImplementedError

    def tail_curvature(self, u):
        return torch.zeros(u.shape[0], dtype=torch.float64)

    def quadratic(self):
        return None

    def length_scale(self):
        return 0.5

    def centres(self):
        return torch.zeros(1, self.dim, dtype=torch.float64)


@dataclasses.dataclass(frozen=True)
class Refuses:
    """A stand-in cell: ``x + 1``, or a ValueError for ``x < 0`` (a cell that cannot meet its tolerance: cached as
    its failure)."""

    x: float


@cell_kind(Refuses)
def _refuses(cell: Refuses) -> float:
    if cell.x < 0:
        raise ValueError(f"cell x = {cell.x} refuses")
    return cell.x + 1
