"""The stochastic step's kernel sums (:func:`evaluation.density.source_step`) against the direct dense sum of
Gaussian kernel values (``scipy.stats.norm``, every source at every node, no band, no padding, no tiles) on small
1-D and 2-D grids: resolved kernels (normalised per source; split into a narrow scatter and a blur when wide),
narrow ones (the nodes sample the sum; the mass beyond the grid from the normal CDF) and narrow ones normalised per
source (``overlap=False``: normalised over the whole lattice). Sources lie near and beyond the grid's edges and far
outside it; the mass they put beyond the edges is ``lost``. Issue 19: the 2-D scatter sums the same terms as
matrix products over tiles of sources, so these checks cover chunks and tiles (many sources, a crowded tile)."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from evaluation.density import gaussian_step, source_step

F64 = torch.float64
AXES = {1: (np.linspace(-2.0, 2.2, 43),),  # h = 0.1
        2: (np.linspace(-2.0, 2.2, 22), np.linspace(-1.5, 1.5, 31))}  # h = 0.2 and 0.1: the axes differ


def _sources(d: int, M: int, axes, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Masses (spread over six orders) and means [M, d]: most within three spacings of the grid's box (near and
    beyond its edges), two far outside it (beyond the padding)."""
    rng = np.random.default_rng(seed)
    mean = np.stack([rng.uniform(a[0] - 3 * (a[1] - a[0]), a[-1] + 3 * (a[1] - a[0]), M) for a in axes], 1)
    mean[0] = [a[0] - 60 * (a[1] - a[0]) for a in axes]
    mean[1] = [a[-1] + 200 * (a[1] - a[0]) for a in axes]
    return np.exp(rng.uniform(-7, 7, M)), mean


def _direct(mass, mean, c, axes) -> np.ndarray:
    """``sum_j mass_j prod_i N(u_i; mean_ji, c^2)`` at every node. [n_1(, n_2)]"""
    P = [norm.pdf(a[None, :], loc=mean[:, i, None], scale=c) for i, a in enumerate(axes)]  # [M, n_i]
    return np.einsum("j,ja->a", mass, P[0]) if len(axes) == 1 else np.einsum("j,ja,jb->ab", mass, P[0], P[1])


def _run(mass, mean, c, axes, **kw):
    t_axes = tuple(torch.tensor(a, dtype=F64) for a in axes)
    lo, h = [a[0] for a in axes], [a[1] - a[0] for a in axes]
    got, lost = source_step(torch.tensor(mass, dtype=F64), torch.tensor(mean, dtype=F64), c, t_axes, lo, h, **kw)
    return got.reshape(tuple(len(a) for a in axes)).numpy(), lost, math.prod(h)


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("width", [1.6, 3.5])  # in the largest spacing: resolved; wide (scatter + blur on an axis)
def test_resolved_kernels_are_the_direct_sum(d, width):
    """Normalised per source on the nodes (the lattice sum of a resolved Gaussian is 1 up to aliasing, 1e-12):
    the nodal density is the direct sum, and the lost mass is what the direct sum puts beyond the grid."""
    axes = AXES[d]
    c = width * max(a[1] - a[0] for a in axes)
    mass, mean = _sources(d, 400, axes)
    got, lost, cell = _run(mass, mean, c, axes)
    ref = _direct(mass, mean, c, axes)
    assert np.abs(got - ref).max() < 1e-11 * ref.max()
    ref_lost = mass.sum() - cell * ref.sum()
    assert ref_lost > 0.05 * mass.sum()  # the edges matter here
    assert abs(lost - ref_lost) < 1e-11 * mass.sum()


@pytest.mark.parametrize("d", [1, 2])
def test_narrow_kernels_sample_the_direct_sum_and_lose_the_normal_tails(d):
    """Narrower than 1.2 spacings (not normalised per source): the nodes carry the direct sum, scaled to the mass
    the sources keep within the grid's cells (normal CDFs), and the rest is lost."""
    axes = AXES[d]
    h = [a[1] - a[0] for a in axes]
    c = 0.8 * min(h)
    mass, mean = _sources(d, 3000, axes, seed=1)
    got, lost, cell = _run(mass, mean, c, axes)
    inside = np.ones_like(mass)
    for i, (a, hi) in enumerate(zip(axes, h)):
        inside *= norm.cdf(a[-1] + 0.5 * hi, mean[:, i], c) - norm.cdf(a[0] - 0.5 * hi, mean[:, i], c)
    kept = (mass * inside).sum()
    ref = _direct(mass, mean, c, axes)
    ref = ref * (kept / (cell * ref.sum()))
    assert np.abs(got - ref).max() < 1e-11 * ref.max()
    assert abs(lost - (mass.sum() - kept)) < 1e-11 * mass.sum()


@pytest.mark.parametrize("d", [1, 2])
def test_narrow_kernels_without_overlap_are_normalised_over_the_lattice(d):
    """``overlap=False``: each source's narrow kernel is normalised over the grid's lattice (extended without
    end), so its mass stays on the nodes near its mean, or is lost beyond the edges."""
    axes = AXES[d]
    h = [a[1] - a[0] for a in axes]
    c = 0.4 * min(h)
    mass, mean = _sources(d, 500, axes, seed=2)
    got, lost, cell = _run(mass, mean, c, axes, overlap=False)
    L = 400  # lattice nodes beyond each end: past every source but the far ones' (whose weights underflow there)
    P = []
    for i, (a, hi) in enumerate(zip(axes, h)):
        lattice = a[0] + hi * np.arange(-L, len(a) + L)
        g = np.exp(-0.5 * ((lattice[None, :] - mean[:, i, None]) / c) ** 2)
        far = g.sum(1) == 0  # beyond the lattice too: its mass is lost either way
        g[far, 0] = 1.0
        P.append((g / g.sum(1, keepdims=True))[:, L:L + len(a)])
    ref = (np.einsum("j,ja->a", mass, P[0]) if d == 1 else np.einsum("j,ja,jb->ab", mass, P[0], P[1])) / cell
    assert np.abs(got - ref).max() < 1e-11 * ref.max()
    assert abs(lost - (mass.sum() - cell * ref.sum())) < 1e-11 * mass.sum()


@pytest.mark.parametrize("width", [1.6, 3.5])
def test_a_tail_source_keeps_its_relative_accuracy(width):
    """A source of mass 1e-200 far from one of mass 1 (2-D): every node near it carries its own kernel to 1e-11
    relative (direct sums of positive terms; an FFT's rounding, 1e-16 of the largest value, would bury it)."""
    h = 0.1
    axis = np.linspace(-9.0, 9.0, 181)
    c = width * h
    mass, mean = np.array([1.0, 1e-200]), np.array([[-6.0, -6.0], [6.0, 6.0]])
    got, _, _ = _run(mass, mean, c, (axis, axis))
    ref = _direct(mass, mean, c, (axis, axis))
    big = _direct(mass[:1], mean[:1], c, (axis, axis))
    near = (np.abs(axis - 6.0) < 5 * c)[:, None] & (np.abs(axis - 6.0) < 5 * c)[None, :]
    assert np.all(big[near] < 1e-20 * ref[near])  # the tiny source's own values there
    assert ref[near].max() < 1e-190
    assert np.abs(got[near] / ref[near] - 1).max() < 1e-11


def test_many_sources_and_a_crowded_tile_are_the_direct_sum():
    """20000 sources, 12000 of them within a tenth of a spacing of one point (one tile, several blocks of sources):
    the 2-D scatter's tiles and blocks add up to the direct sum (``gaussian_step``: nodal values in, as a step)."""
    axes = (np.linspace(-1.0, 1.0, 21), np.linspace(-1.3, 1.3, 27))  # h = 0.1
    rng = np.random.default_rng(3)
    _, spread = _sources(2, 8000, axes, seed=3)
    crowd = np.array([0.23, -0.41]) + 0.01 * rng.uniform(-1, 1, (12000, 2))
    mean = np.concatenate([crowd[:5000], spread, crowd[5000:]])  # the crowd's sources far apart in the input order
    p = rng.uniform(0.5, 1.5, len(mean))
    c = 0.15
    t_axes = tuple(torch.tensor(a, dtype=F64) for a in axes)
    got, lost = gaussian_step(torch.tensor(p, dtype=F64), torch.tensor(mean, dtype=F64), c, t_axes, [-1.0, -1.3],
                              [0.1, 0.1])
    ref = _direct(p * 0.01, mean, c, axes)
    assert np.abs(got.reshape(21, 27).numpy() - ref).max() < 1e-11 * ref.max()
    assert abs(lost - (0.01 * p.sum() - 0.01 * ref.sum())) < 1e-11 * 0.01 * p.sum()
