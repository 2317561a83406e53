"""Brute-force checks of :func:`evaluation.density.output_density` and :mod:`evaluation.distances` on random laws.

The reference is built independently of the module: every stochastic step is the dense transition matrix of the
sampler's Gaussian kernel on a fine, wide grid (the trapezoid rule with the kernel resolved: ``scipy.stats.norm``
densities, no normalisation tricks, no splitting, no sub-sources), the last deterministic step pushes every fine
node's mass through the sampler and splits it onto the output hats, and the target's hat masses are a fine
trapezoid sum of ``p(x_0|y) R_0 phi_k``. Each value must lie within the module's stated error (issue 20).
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from analytic import CFGReward, GaussianMixture
from evaluation.density import output_density
from evaluation.distances import distances, distances_between, tilted_target
from sampler import CFG, MixtureModel, VPSchedule, bind, sample
from sampler.samplers import ddim_coefficients

F64 = torch.float64
SEARCH = settings(max_examples=5, derandomize=True, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _restrict(mass, k):
    """Hat masses of a grid 2^k times coarser (nested hats: phi_H = phi_h(2K) + (phi_h(2K-1) + phi_h(2K+1))/2)."""
    for _ in range(k):
        pad = torch.cat([torch.zeros(1, dtype=F64), mass, torch.zeros(1, dtype=F64)])
        mass = pad[1:-1:2] + 0.5 * (pad[0:-2:2] + pad[2::2])
    return mass


def _hat_masses(points, weights, axis):
    """sum_i weights_i phi_k(points_i): every point's weight split linearly between its two nodes (numpy)."""
    h = axis[1] - axis[0]
    f = (points - axis[0]) / h
    k = np.floor(f).astype(int)
    t = f - k
    out = np.zeros(len(axis))
    for idx, wt in ((k, 1 - t), (k + 1, t)):
        ok = (idx >= 0) & (idx < len(axis))
        np.add.at(out, idx[ok], (weights * wt)[ok])
    return out


def _hat_antiderivative(t):
    """int_{-inf}^t of the unit hat max(0, 1 - |s|)."""
    t = np.clip(t, -1.0, 1.0)
    return np.where(t < 0, 0.5 * (t + 1) ** 2, 1 - 0.5 * (1 - t) ** 2)


def _pushed_hat_masses(v, p, x0, axis, split):
    """Hat masses on ``axis`` of the nodal density ``p`` on nodes ``v`` pushed by the map with node images ``x0``:
    every cell cut into ``split`` pieces (``p`` and the map linear on a cell), each piece's mass spread uniformly
    over its image interval, and the hat integrated over it exactly (its antiderivative)."""
    t = (np.arange(split) + 0.5) / split
    dv = (v[1] - v[0]) / split
    pm = p[:-1, None] * (1 - t) + p[1:, None] * t  # density at the pieces' midpoints
    edges = np.concatenate([np.arange(split) / split, [1.0]])
    img = x0[:-1, None] * (1 - edges) + x0[1:, None] * edges  # images of the pieces' edges [cells, split + 1]
    a, b = np.minimum(img[:, :-1], img[:, 1:]).ravel(), np.maximum(img[:, :-1], img[:, 1:]).ravel()
    m = (pm * dv).ravel()
    h = axis[1] - axis[0]
    Ha = _hat_antiderivative((a[:, None] - axis[None, :]) / h)
    Hb = _hat_antiderivative((b[:, None] - axis[None, :]) / h)
    width = b - a
    share = np.where(width[:, None] > 1e-12 * h, h * (Hb - Ha) / np.maximum(width, 1e-300)[:, None],
                     np.maximum(0.0, 1 - np.abs((a[:, None] - axis[None, :]) / h)))
    return m @ share


def brute_force_law(den, sigmas, axis, sampler, eta, fine_h):
    """The sampler's output hat masses on ``axis`` from the N(0, 1) start, by dense transition matrices on a grid
    of spacing ``fine_h`` covering [-9, 9] (VP coordinates), and the error of the final push-forward (the change
    from twice the pieces per cell, whose error is second order)."""
    v = np.arange(-9.0, 9.0 + fine_h / 2, fine_h)
    p = norm.pdf(v)  # nodal density of the start
    s = sigmas.numpy()
    scale = np.sqrt(1 + s**2)
    eta_eff = 1.0 if sampler == "ddpm" else eta
    n_stoch = len(s) - 2 if eta_eff > 0 else 0
    for i in range(n_stoch):
        with torch.no_grad():
            x = scale[i] * torch.from_numpy(v)[:, None]
            D = den(x, float(s[i]))[:, 0].numpy()
        keep, c_ve = ddim_coefficients(float(s[i]), float(s[i + 1]), eta_eff)
        mean = (D + keep * (x[:, 0].numpy() - D)) / scale[i + 1]
        c = c_ve / scale[i + 1]
        assume(np.abs(np.diff(mean)).max() <= c / 1.5)  # the reference's own trapezoid rule is resolved
        K = norm.pdf(v[:, None], loc=mean[None, :], scale=c)  # K[k, j] = N(v_k; m(v_j), c^2)
        p = K @ (p * fine_h)
    start = torch.from_numpy(v)[:, None] * scale[n_stoch]
    with torch.no_grad():
        x0 = sample(sampler, den, start, sigmas[n_stoch:], eta=eta)[:, 0].numpy() / scale[-1]
    ax = axis.numpy()
    once, twice = _pushed_hat_masses(v, p, x0, ax, 4), _pushed_hat_masses(v, p, x0, ax, 8)
    return torch.from_numpy(twice), 2 * np.abs(twice - once).sum()


def brute_force_target(cond, reward, axis, fine_h=2e-4):
    """Hat masses of p(x_0|y) R_0 / Z on ``axis`` and log Z, by a trapezoid sum on [-12, 12]."""
    x = torch.arange(-12.0, 12.0 + fine_h / 2, fine_h, dtype=F64)[:, None]
    log_f = (cond.log_prob(x) + reward.log_r0(x)).numpy()
    f = np.exp(log_f - log_f.max())
    Z = f.sum() * fine_h
    mass = _hat_masses(x[:, 0].numpy(), f * fine_h / Z, axis.numpy())
    return torch.from_numpy(mass), math.log(Z) + log_f.max()


@st.composite
def laws_1d(draw):
    def mixture(K):
        w = [draw(st.floats(0.1, 1.0)) for _ in range(K)]
        mu = [draw(st.floats(-1.5, 1.5)) for _ in range(K)]
        std = [draw(st.floats(0.2, 0.6)) for _ in range(K)]  # laws the 0.1-spacing grids below resolve
        return GaussianMixture.from_1d(w, mu, std)

    cond, uncond = mixture(draw(st.integers(1, 2))), mixture(draw(st.integers(1, 3)))
    w = draw(st.floats(0.0, 2.0))
    steps = draw(st.integers(3, 10))
    sampler, eta = draw(st.sampled_from([("ddpm", 0.0), ("ddim", 0.0), ("ddim", 0.6), ("euler", 0.0)]))
    return cond, uncond, w, steps, sampler, eta


def _case(law):
    cond, uncond, w, steps, sampler, eta = law
    m = MixtureModel({"c": cond, None: uncond})
    den = CFG(bind(m, "c"), bind(m, None), w)
    sigmas = VPSchedule.linear(steps, 0.02, 0.4).sampling_sigmas()
    return cond, CFGReward(cond, uncond, w), den, sigmas, sampler, eta


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason="open defect (issue 20): in CI this search finds laws where output_density's "
                   "summed estimate undershoots the dense-matrix error by up to 1.7x (DDPM at w = 2 with a narrow "
                   "conditional; two-component laws under DDIM); the DDPM cases are pinned strictly below")
@SEARCH
@given(laws_1d())
def test_output_density_and_distances_within_their_estimates_against_dense_matrices(law):
    _dense_matrix_check(law)


def _dense_matrix_check(law):
    cond, reward, den, sigmas, sampler, eta = _case(law)
    try:
        target = tilted_target(cond, reward, torch.linspace(-5, 5, 161, dtype=F64))
    except ValueError:  # Z infinite: no target
        assume(False)
    axis = target.axes[0]
    od = output_density(den, sigmas, axis, sampler=sampler, eta=eta)
    ref, ref_error = brute_force_law(den, sigmas, axis, sampler, eta, fine_h=0.008)
    err = (od.mass - ref).abs().sum().item()
    print(f"1-D brute force {sampler} eta={eta} steps={len(sigmas) - 1}: error {err:.3g}, estimate {od.total_error:.3g}")
    assert ref_error < 0.2 * od.total_error  # the brute force is the more accurate
    assert err <= od.total_error + ref_error, (err, od.total_error, ref_error)
    ref_target, log_Z = brute_force_target(cond, reward, axis)
    assert (target.mass - ref_target).abs().sum().item() <= target.error.sum().item() + target.outside + 1e-9
    assert abs(target.log_Z - log_Z) <= target.log_Z_error + 1e-9
    got = distances_between(od, target)
    exact = distances(ref, ref_target, (axis,))
    for name in ("tv", "w1", "kl_out_target", "kl_target_out"):
        assert abs(getattr(got, name) - getattr(exact, name)) <= getattr(got, name + "_error") + 2 * ref_error, name


def _single(mu_c, std_c, mu_u, std_u):
    return GaussianMixture.from_1d([1.0], [mu_c], [std_c]), GaussianMixture.from_1d([1.0], [mu_u], [std_u])


# Found by the search above in CI (issue 20, "estimates that bound"): open defects, pinned so that a fix shows up
# as an XPASS failure (strict) and the pins are removed with it.
@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="open defect: output_density's DDPM error estimate undershoots the dense-matrix error "
                          "(5.1e-05 against 3.7e-05 + 4.5e-06 at 3 steps, 8.4e-05 against 4.9e-05 at 5) for a narrow "
                          "conditional at w = 2")
@pytest.mark.parametrize("steps", [3, 5])
def test_known_ddpm_counterexamples(steps):
    _dense_matrix_check((*_single(0.0, 0.2, 1.0, 0.5), 2.0, steps, "ddpm", 0.0))


@pytest.mark.slow
@SEARCH
@given(laws_1d())
def test_output_density_estimate_bounds_the_converged_error_1d(law):
    _, _, den, sigmas, sampler, eta = _case(law)
    axis = torch.linspace(-5, 5, 101, dtype=F64)
    od = output_density(den, sigmas, axis, sampler=sampler, eta=eta)
    fine = output_density(den, sigmas, torch.linspace(-5, 5, 801, dtype=F64), sampler=sampler, eta=eta, sub=16)
    err = (od.mass - _restrict(fine.mass, 3)).abs().sum().item()
    print(f"1-D {sampler} eta={eta} steps={len(sigmas) - 1}: error {err:.3g}, estimate {od.error.sum().item():.3g}")
    assert fine.error.sum().item() < 0.5 * od.error.sum().item()  # the reference is converged further
    assert err <= od.error.sum().item() + fine.error.sum().item(), (err, od.error.sum().item())


@st.composite
def laws_2d(draw):
    def mixture(K):
        w = torch.tensor([draw(st.floats(0.2, 1.0)) for _ in range(K)], dtype=F64)
        mu = torch.tensor([[draw(st.floats(-1.0, 1.0)) for _ in range(2)] for _ in range(K)], dtype=F64)
        covs = []
        for _ in range(K):
            s1, s2, rho = draw(st.floats(0.3, 0.7)), draw(st.floats(0.3, 0.7)), draw(st.floats(-0.6, 0.6))
            covs.append([[s1 * s1, rho * s1 * s2], [rho * s1 * s2, s2 * s2]])
        return GaussianMixture(w, mu, torch.tensor(covs, dtype=F64))

    return (mixture(draw(st.integers(1, 2))), mixture(draw(st.integers(1, 2))), draw(st.floats(0.0, 2.0)),
            draw(st.integers(3, 8)), draw(st.sampled_from(["ddpm", "ddim"])))


@pytest.mark.slow
@settings(max_examples=3, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(laws_2d())
def test_output_density_estimate_bounds_the_converged_error_2d(law):
    cond, uncond, w, steps, sampler = law
    m = MixtureModel({"c": cond, None: uncond})
    den = CFG(bind(m, "c"), bind(m, None), w)
    sigmas = VPSchedule.linear(steps, 0.02, 0.4).sampling_sigmas()
    coarse = (torch.linspace(-4, 4, 33, dtype=F64),) * 2
    od = output_density(den, sigmas, coarse, sampler=sampler)
    fine = output_density(den, sigmas, (torch.linspace(-4, 4, 129, dtype=F64),) * 2, sampler=sampler, sub=4)
    ref = fine.mass
    for _ in range(2):
        ref = torch.stack([_restrict(r, 1) for r in ref])
        ref = torch.stack([_restrict(r, 1) for r in ref.T]).T
    err = (od.mass - ref).abs().sum().item()
    print(f"2-D {sampler} steps={steps} w={w:.2f}: error {err:.3g}, estimate {od.error.sum().item():.3g}")
    assert err <= od.error.sum().item() + fine.error.sum().item(), (err, od.error.sum().item())
