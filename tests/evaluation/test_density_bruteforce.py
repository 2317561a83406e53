"""Brute-force checks of :func:`evaluation.density.output_density` and :mod:`evaluation.distances` on random laws.

The reference is built independently of the module: every stochastic step is the dense transition matrix of the
sampler's Gaussian kernel on a fine, wide grid (the trapezoid rule with the kernel resolved: ``scipy.stats.norm``
densities, no normalisation tricks, no splitting, no sub-sources), the density after them is that kernel sum
evaluated on a grid finer still, the deterministic tail pushes every fine cell's mass through the sampler and
spreads it over the output hats, and the target's hat masses are a fine
trapezoid sum of ``p(x_0|y) R_0 phi_k``. Each value must lie within the module's stated error (issue 20).
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, seed, settings
from hypothesis import strategies as st
from scipy.stats import norm

from analytic import CFGReward, GaussianMixture
from evaluation.density import output_density
from evaluation.distances import distances, distances_between, tilted_target
from sampler import CFG, MixtureModel, VPSchedule, bind, sample
from sampler.samplers import ddim_coefficients
from tests.helpers import mixtures_2d

F64 = torch.float64
SEARCH = settings(max_examples=5, derandomize=True, database=None, deadline=None,  # the same cases on every run
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
SAMPLERS = [("ddpm", 0.0), ("ddim", 0.0), ("ddim", 0.6), ("euler", 0.0)]


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


def brute_force_law(den, sigmas, axis, sampler, eta, fine_h, refine=8):
    """The sampler's output hat masses on ``axis`` from the N(0, 1) start, and an estimate of their error.

    Every stochastic step but the last is a dense transition matrix on a grid of spacing ``fine_h`` covering
    [-9, 9] (VP coordinates), the trapezoid rule with the kernel resolved (neighbouring sources' kernel means
    within ``c / 1.5``: aliasing ~exp(-2 pi^2 1.5^2)). The density after the stochastic steps is then the last
    step's kernel sum evaluated *exactly* on a grid ``refine`` times finer (or the start density itself when
    no step is stochastic), the deterministic tail is run on that grid's nodes, and every cell's mass (density
    and map linear on the cell) is spread over its image interval and integrated against the hats exactly.
    That push-forward is second order in the spacing, so it is done at ``refine`` and ``2 refine`` and the
    change is the error estimate (about three times the error of the finer, returned one). ``None`` when a step's
    kernel means are too far apart for the reference's trapezoid rule. Interpolating the
    density between the ``fine_h`` nodes instead was a second-order error of the reference (5e-5 at
    ``fine_h = 0.008``) that its change-of-split estimate missed: the "counterexamples" to output_density's
    estimate first reported in issue 20 were that error."""
    v = np.arange(-9.0, 9.0 + fine_h / 2, fine_h)
    p = norm.pdf(v, 0.0, 1.0)  # nodal density of the start
    s = sigmas.numpy()
    scale = np.sqrt(1 + s**2)
    eta_eff = 1.0 if sampler == "ddpm" else eta
    n_stoch = len(s) - 2 if eta_eff > 0 else 0
    last = None  # (source weights, kernel means, width) of the last stochastic step
    for i in range(n_stoch):
        with torch.no_grad():
            x = scale[i] * torch.from_numpy(v)[:, None]
            D = den(x, float(s[i]))[:, 0].numpy()
        keep, c_ve = ddim_coefficients(float(s[i]), float(s[i + 1]), eta_eff)
        mean = (D + keep * (x[:, 0].numpy() - D)) / scale[i + 1]
        c = c_ve / scale[i + 1]
        if np.abs(np.diff(mean)).max() > c / 1.5:  # the reference's own trapezoid rule would not be resolved
            return None
        if i == n_stoch - 1:
            live = p > 1e-17 * p.max()
            last = (p[live] * fine_h, mean[live], c)
        else:
            p = norm.pdf(v[:, None], mean[None, :], c) @ (p * fine_h)  # K[k, j] = N(v_k; m(v_j), c^2)
    if last is None:
        support = v[norm.pdf(v, 0.0, 1.0) > 1e-17 * norm.pdf(0.0, 0.0, 1.0)]
    else:
        src, mean, c = last
        support = v[(v >= mean.min() - 9 * c) & (v <= mean.max() + 9 * c)]
    ax = axis.numpy()
    out = []
    for k in (refine, 2 * refine):
        vf = np.arange(support[0], support[-1] + fine_h / (2 * k), fine_h / k)
        if last is None:
            pf = norm.pdf(vf, 0.0, 1.0)
        else:
            pf = np.concatenate([norm.pdf(chunk[:, None], mean[None, :], c) @ src
                                 for chunk in np.array_split(vf, max(1, len(vf) * len(mean) // 4_000_000))])
        start = torch.from_numpy(vf)[:, None] * scale[n_stoch]
        with torch.no_grad():
            x0 = sample(sampler, den, start, sigmas[n_stoch:], eta=eta)[:, 0].numpy() / scale[-1]
        out.append(_pushed_hat_masses(vf, pf, x0, ax, 1))
    return torch.from_numpy(out[1]), np.abs(out[1] - out[0]).sum()


def brute_force_target(cond, reward, axis, fine_h=2e-4):
    """Hat masses of p(x_0|y) R_0 / Z on ``axis``, log Z and the masses' summed error, by trapezoid sums on [-12, 12]
    whose points include the nodes (the spacing ``fine_h`` lowered to divide the axis's), so each hat is linear
    between its points and the sum is second order in the spacing: at ``fine_h`` and half of it, extrapolated
    (Richardson), with their difference as the error. (Points off the nodes put an error of about
    ``(fine_h / h)^2 / 4`` into the masses, 2.6e-6 on 161 nodes of [-5, 5]: larger than the estimate of the
    Gauss-Legendre target, which was within 1e-13 of the closed form there.)"""
    h = (axis[1] - axis[0]).item()
    out = []
    for step in (h / math.ceil(h / fine_h), h / (2 * math.ceil(h / fine_h))):
        x = axis[0].item() + step * torch.arange(math.floor((-12.0 - axis[0].item()) / step),
                                                 math.ceil((12.0 - axis[0].item()) / step) + 1, dtype=F64)[:, None]
        log_f = (cond.log_prob(x) + reward.log_r0(x)).numpy()
        f = np.exp(log_f - log_f.max())
        Z = f.sum() * step
        out.append((_hat_masses(x[:, 0].numpy(), f * step / Z, axis.numpy()), math.log(Z) + log_f.max()))
    (m1, z1), (m2, z2) = out
    mass = m2 + (m2 - m1) / 3
    return torch.from_numpy(mass), z2 + (z2 - z1) / 3, float(np.abs(m2 - m1).sum())


@st.composite
def laws_1d(draw, samplers=tuple(SAMPLERS)):
    def mixture(K):
        w = [draw(st.floats(0.1, 1.0)) for _ in range(K)]
        mu = [draw(st.floats(-1.5, 1.5)) for _ in range(K)]
        std = [draw(st.floats(0.2, 0.6)) for _ in range(K)]  # laws the 0.1-spacing grids below resolve
        return GaussianMixture.from_1d(w, mu, std)

    cond, uncond = mixture(draw(st.integers(1, 2))), mixture(draw(st.integers(1, 3)))
    w = draw(st.floats(0.0, 2.0))
    steps = draw(st.integers(3, 10))
    sampler, eta = draw(st.sampled_from(samplers))
    return cond, uncond, w, steps, sampler, eta


def _case(law):
    cond, uncond, w, steps, sampler, eta = law
    m = MixtureModel({"c": cond, None: uncond})
    den = CFG(bind(m, "c"), bind(m, None), w)
    sigmas = VPSchedule.linear(steps, 0.02, 0.4).sampling_sigmas()
    return cond, CFGReward(cond, uncond, w), den, sigmas, sampler, eta


@pytest.mark.slow
@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: f"{s[0]}-{s[1]}")
def test_output_density_and_distances_within_their_estimates_against_dense_matrices(sampler):
    @settings(SEARCH, max_examples=3, derandomize=False)  # every sampler (5 draws from all four had no DDPM law);
    @seed(20)  # a fixed seed, not derandomize: that draws the simplest laws first (3 steps, w near 0) every time
    @given(laws_1d([sampler]))
    def search(law):
        assume(_dense_matrix_check(law))

    search()


def _dense_matrix_check(law) -> bool:
    """Every value within its estimate of the dense-matrix reference; ``False`` (nothing checked) when the law has
    no target (infinite ``Z``) or the reference does not resolve it."""
    cond, reward, den, sigmas, sampler, eta = _case(law)
    try:
        target = tilted_target(cond, reward, torch.linspace(-5, 5, 161, dtype=F64))
    except ValueError:  # Z infinite: no target
        return False
    axis = target.axes[0]
    od = output_density(den, sigmas, axis, sampler=sampler, eta=eta)
    reference = brute_force_law(den, sigmas, axis, sampler, eta, fine_h=0.008)
    if reference is None:
        return False
    ref, ref_error = reference
    err = (od.mass - ref).abs().sum().item()
    print(f"1-D brute force {sampler} eta={eta} steps={len(sigmas) - 1}: error {err:.3g}, estimate {od.total_error:.3g}")
    assert ref_error < 0.2 * od.total_error  # the brute force is the more accurate
    assert err <= od.total_error + ref_error, (err, od.total_error, ref_error)
    ref_target, log_Z, ref_target_error = brute_force_target(cond, reward, axis)
    assert (target.mass - ref_target).abs().sum().item() <= target.error.sum().item() + target.outside + ref_target_error
    assert abs(target.log_Z - log_Z) <= target.log_Z_error + 1e-9
    got = distances_between(od, target)
    exact = distances(ref, ref_target, (axis,))
    for name in ("tv", "w1", "kl_out_target", "kl_target_out"):
        assert abs(getattr(got, name) - getattr(exact, name)) <= getattr(got, name + "_error") + 2 * ref_error, name
    return True


def _single(mu_c, std_c, mu_u, std_u):
    return GaussianMixture.from_1d([1.0], [mu_c], [std_c]), GaussianMixture.from_1d([1.0], [mu_u], [std_u])


# Reported by the search above in CI as undershoots of output_density's estimate (issue 20: 5.1e-05 against
# 3.7e-05 + 4.5e-06 at 3 steps, 8.4e-05 against 4.9e-05 at 5): the error was the reference's, which interpolated
# the density linearly between its 0.008-spaced nodes before the last push-forward (second order, 5e-5 to 1e-4
# here) while its estimate measured only the split of the cells. With the density evaluated exactly on a finer
# grid the reference agrees with output_density on a grid 8 times finer to 1e-6, and the estimate bounds.
@pytest.mark.slow
@pytest.mark.parametrize("steps", [3, 5])
def test_known_ddpm_counterexamples(steps):
    assert _dense_matrix_check((*_single(0.0, 0.2, 1.0, 0.5), 2.0, steps, "ddpm", 0.0))


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
    # and tight enough to steer refinement (issue 20: the plain change of the grid was 20x a DDPM law's error)
    assert od.error.sum().item() <= 10 * (err + fine.error.sum().item()), (err, od.error.sum().item())


@st.composite
def laws_2d(draw):
    return (draw(mixtures_2d()), draw(mixtures_2d()), draw(st.floats(0.0, 2.0)),
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
