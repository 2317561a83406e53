"""Exact output densities against Monte Carlo runs of the same sampler, refinement, and contracts."""
import math

import pytest
import torch

from analytic import CFGReward, optimal_denoiser
from analytic import optimal_guidance, support_axes
from analytic.quadrature import deposit, spline_at, sub_points
from evaluation.density import gaussian_step, output_density
from evaluation.starts import tilted_start, vp_start
from sampler import CFG, REG, MixtureModel, Unguided, VPSchedule, bind, sample, vp_prior

from tests.helpers import paper_pair, random_mixture

F64 = torch.float64


@pytest.fixture(scope="module")
def paper():
    cond, uncond = paper_pair()
    m = MixtureModel({"c": cond, None: uncond})
    return cond, uncond, CFG(bind(m, "c"), bind(m, None), 1.0)


def _monte_carlo(name, denoiser, sigmas, n, d=1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = vp_prior(torch.randn(n, d, generator=gen, dtype=F64), sigmas[0].item())
    return sample(name, denoiser, x, sigmas, generator=gen)


@pytest.mark.parametrize("name", ["ddpm", "ddim", "euler", "heun"])
def test_1d_density_matches_a_large_monte_carlo_run(paper, name):
    _, _, cfg = paper
    sigmas = VPSchedule.paper_1d().sampling_sigmas()
    axis = torch.linspace(-6, 6, 1201, dtype=F64)
    od = output_density(cfg, sigmas, axis, sampler=name)
    assert abs(od.mass.sum().item() + od.lost - 1) < 1e-12 and od.lost < 1e-8
    h = (axis[1] - axis[0]).item()  # the start's mass beyond the cells, |u| > 6 + h/2, is lost (issue 20)
    assert od.start_lost == pytest.approx(math.erfc((6 + h / 2) / math.sqrt(2)), rel=0.01)
    n = 100_000
    x = _monte_carlo(name, cfg, sigmas, n)
    mc, _ = deposit(x, torch.full((n,), 1.0 / n, dtype=F64), (axis,))
    ks = (mc.cumsum(0) - od.mass.cumsum(0)).abs().max().item()
    assert ks < 1.63 / math.sqrt(n)  # the Kolmogorov-Smirnov 1% critical value
    mean = (od.mass * axis).sum().item()
    assert abs(mean - x.mean().item()) < 4 * x.std().item() / math.sqrt(n)
    # and it is not the unguided law
    un = output_density(Unguided(cfg.cond), sigmas, axis, sampler=name)
    assert 0.5 * (un.mass - od.mass).abs().sum() > 0.1


def test_ddim_with_eta_matches_monte_carlo(paper):
    _, _, cfg = paper
    sigmas = VPSchedule.linear(30, 1e-3, 0.1).sampling_sigmas()
    axis = torch.linspace(-5, 5, 801, dtype=F64)
    od = output_density(cfg, sigmas, axis, sampler="ddim", eta=0.5)
    n = 100_000
    gen = torch.Generator().manual_seed(3)
    x = sample("ddim", cfg, vp_prior(torch.randn(n, 1, generator=gen, dtype=F64), sigmas[0].item()), sigmas,
               eta=0.5, generator=gen)
    mc, _ = deposit(x, torch.full((n,), 1.0 / n, dtype=F64), (axis,))
    assert (mc.cumsum(0) - od.mass.cumsum(0)).abs().max().item() < 1.63 / math.sqrt(n)


def test_1d_density_converges_under_grid_refinement(paper):
    _, _, cfg = paper
    sigmas = VPSchedule.paper_1d().sampling_sigmas()
    laws = []
    for n in (301, 601, 1201, 2401):  # each grid's nodes contain the previous one's
        od = output_density(cfg, sigmas, torch.linspace(-6, 6, n, dtype=F64))
        cdf = od.mass.cumsum(0) - od.mass / 2  # a smoothed step centred on each node: O(h^2)
        laws.append(cdf[:: (n - 1) // 300])
    diffs = [(a - b).abs().max().item() for a, b in zip(laws, laws[1:])]
    assert diffs[0] > diffs[1] > diffs[2]
    assert diffs[2] < 2e-4
    assert diffs[1] / diffs[2] > 3  # second order


def test_2d_density_matches_monte_carlo_moments():
    cond, uncond = random_mixture(2, 2, 5), random_mixture(2, 3, 6)
    m = MixtureModel({"c": cond, None: uncond})
    den = REG(CFG(bind(m, "c"), bind(m, None), 1.0), "vjp")
    sigmas = VPSchedule.linear(12, 0.01, 0.3).sampling_sigmas()
    axes = (torch.linspace(-4, 4, 81, dtype=F64),) * 2
    for name in ("ddpm", "euler"):
        od = output_density(den, sigmas, axes, sampler=name)
        assert od.lost < 2e-4  # the N(0, I) start beyond |u| = 4
        n = 40_000
        x = _monte_carlo(name, den, sigmas, n, d=2, seed=1)
        X = torch.cartesian_prod(*axes)
        w = od.mass.reshape(-1)
        mean = w @ X
        cov = (X - mean).T @ ((X - mean) * w[:, None])
        se = x.std(0) / math.sqrt(n)
        assert torch.all((mean - x.mean(0)).abs() < 4 * se + 2e-3), (mean, x.mean(0))
        assert (cov - torch.cov(x.T)).abs().max() < 0.02


def test_optimal_denoiser_is_the_tilted_posterior_mean_by_gauss_hermite(paper):
    """The dense-quadrature optimal denoiser against the independent posterior-decomposition route."""
    cond, uncond, _ = paper
    reward = CFGReward(cond, uncond, 1.0)
    x = torch.linspace(-2, 3, 41, dtype=F64)[:, None]
    for sigma in (0.1, 0.5, 2.0):
        a = 1 / (1 + sigma**2)
        got = optimal_denoiser(cond, reward)(x, sigma)
        ref = optimal_guidance(cond, reward, math.sqrt(a) * x, a, method="gh", tol=1e-10).tilted_mean
        assert (got - ref).abs().max() < 1e-8


def test_tilted_start_is_normal_times_E_T(paper):
    cond, uncond, _ = paper
    reward = CFGReward(cond, uncond, 1.0)
    from analytic import golden_at_points

    u = torch.linspace(-3, 3, 31, dtype=F64)[:, None]
    lp = tilted_start(cond, reward, 0.5)(u)
    ref = vp_start(1)(u) + golden_at_points(cond, reward, u, 0.5).log_E
    assert (lp - ref).abs().max() < 1e-9
    far = torch.tensor([[-40.0], [40.0]], dtype=F64)  # the log-space fallback keeps it finite
    assert torch.all(torch.isfinite(tilted_start(cond, CFGReward(cond, uncond, 3.0), 0.8)(far)))


def test_support_axes_cover_the_tilted_integrand(paper):
    cond, uncond, _ = paper
    axes = support_axes(cond, CFGReward(cond, uncond, 1.0), 0.5)
    assert axes[0][0] < 0.5 - 1.0 and axes[0][-1] > 1.5 + 1.0


def test_deposit_preserves_mass_and_mean():
    gen = torch.Generator().manual_seed(0)
    pts = torch.rand(1000, 2, generator=gen, dtype=F64) * 2 - 1
    w = torch.rand(1000, generator=gen, dtype=F64)
    axes = (torch.linspace(-1.5, 1.5, 31, dtype=F64),) * 2
    mass, lost = deposit(pts, w, axes)
    assert abs(mass.sum().item() - w.sum().item()) < 1e-12 and abs(lost) < 1e-12
    X = torch.cartesian_prod(*axes)
    assert torch.allclose(mass.reshape(-1) @ X, w @ pts, atol=1e-12)
    _, lost = deposit(pts + 10, w, axes)
    assert abs(lost - w.sum().item()) < 1e-12


def _dense_step(p, mean, c, axis):
    """One stochastic step by brute force: every source's Gaussian over every node of a grid extended by 200
    spacings each side (normalised there, so what leaves the grid is lost), cropped back to the grid."""
    h = (axis[1] - axis[0]).item()
    ext = torch.cat([axis[0] - h * torch.arange(200, 0, -1, dtype=F64), axis, axis[-1] + h * torch.arange(1, 201, dtype=F64)])
    K = torch.exp(-0.5 * ((ext[None, :] - mean[:, None]) / c) ** 2)
    return (p[:, None] * K / K.sum(1, keepdim=True)).sum(0)[200:-200]


def test_wide_kernels_split_into_two_resolved_sums_equal_the_direct_sum(paper):
    """Kernels wider than 2.4 spacings are computed as a narrow scatter and one convolution; the result is the
    brute-force transition to the trapezoid rule's aliasing (1e-12), in the tails too."""
    _, _, cfg = paper
    sigmas = VPSchedule.linear(12, 0.01, 0.3).sampling_sigmas()  # kernels of 1 to 16 spacings
    axis = torch.linspace(-6, 6, 241, dtype=F64)
    h = (axis[1] - axis[0]).item()
    scale = torch.sqrt(1 + sigmas**2)
    p = torch.exp(-0.5 * axis**2)
    p = p / (p.sum() * h)
    from sampler.samplers import ddim_coefficients
    checked = 0
    for i in range(len(sigmas) - 2):
        D = cfg(scale[i] * axis[:, None], sigmas[i].item())[:, 0]
        a, c = ddim_coefficients(sigmas[i].item(), sigmas[i + 1].item(), 1.0)
        mean = (D + a * (scale[i] * axis - D)) / scale[i + 1]
        c = c / scale[i + 1].item()
        if c < 1.2 * h:  # not normalised per source (tested against the brute force in test_density_bruteforce)
            continue
        got, lost = gaussian_step(p, mean[:, None], c, (axis,), [axis[0].item()], [h])
        ref = _dense_step(p * h, mean, c, axis) / h
        assert ((got - ref).abs() / ref.max()).max() < 1e-11
        assert abs(lost - (p.sum() - ref.sum()).item() * h) < 1e-12
        p, checked = ref, checked + 1
    assert checked >= 8
    od = output_density(cfg, sigmas[:-1], axis)
    assert torch.all(od.error >= 1e-15 * od.mass.max())


def _restrict(mass, k):
    """Hat masses of a grid 2^k times coarser (nested hats: phi_H = phi_h(2K) + (phi_h(2K-1) + phi_h(2K+1))/2)."""
    for _ in range(k):
        pad = torch.cat([torch.zeros(1, dtype=F64), mass, torch.zeros(1, dtype=F64)])
        mass = pad[1:-1:2] + 0.5 * (pad[0:-2:2] + pad[2::2])
    return mass


def test_error_estimate_bounds_the_error_and_tol_is_met(paper):
    _, _, cfg = paper
    sigmas = VPSchedule.paper_1d().sampling_sigmas()
    axis = torch.linspace(-6, 6, 121, dtype=F64)  # coarse: spacing 0.1 against kernels of 0.01 to 0.13
    ref = _restrict(output_density(cfg, sigmas, torch.linspace(-6, 6, 120 * 16 + 1, dtype=F64)).mass, 4)
    od = output_density(cfg, sigmas, axis)
    err = (od.mass - ref).abs()
    assert od.error.shape == od.mass.shape and torch.all(od.error >= 0)
    assert err.sum() <= od.error.sum() and err.sum() > 0.05 * od.error.sum()  # honest, and not vacuous
    tight = output_density(cfg, sigmas, axis, tol=2e-4)
    assert tight.error.sum() <= 2e-4
    assert (tight.mass - ref).abs().sum() <= tight.error.sum()
    assert (tight.mass - ref).abs().sum() < 0.2 * err.sum()  # refining the working grid did help
    with pytest.raises(ValueError, match="estimated error"):
        output_density(cfg, sigmas, axis, tol=1e-12, max_nodes=1000)
    with pytest.warns(RuntimeWarning, match="estimated error"):
        out = output_density(cfg, sigmas, axis, tol=1e-12, max_nodes=1000, on_budget="warn")
    assert out.error.sum() > 1e-12


def test_2d_error_estimate_is_honest():
    cond, uncond = random_mixture(2, 2, 5), random_mixture(2, 3, 6)
    m = MixtureModel({"c": cond, None: uncond})
    den = CFG(bind(m, "c"), bind(m, None), 1.0)
    sigmas = VPSchedule.linear(8, 0.02, 0.3).sampling_sigmas()
    coarse = (torch.linspace(-4, 4, 17, dtype=F64),) * 2
    fine = (torch.linspace(-4, 4, 65, dtype=F64),) * 2
    for name in ("ddpm", "euler"):
        od = output_density(den, sigmas, coarse, sampler=name)
        ref = output_density(den, sigmas, fine, sampler=name).mass
        for _ in range(2):  # restrict both axes twice
            ref = torch.stack([_restrict(r, 1) for r in ref])
            ref = torch.stack([_restrict(r, 1) for r in ref.T]).T
        assert (od.mass - ref).abs().sum() <= od.error.sum(), name


def test_bad_input(paper):
    _, _, cfg = paper
    sig = VPSchedule.paper_1d().sampling_sigmas()
    ax = torch.linspace(-3, 3, 101, dtype=F64)
    with pytest.raises(ValueError, match="unknown sampler"):
        output_density(cfg, sig, ax, sampler="bogus")
    with pytest.raises(ValueError, match="eta"):
        output_density(cfg, sig, ax, sampler="euler", eta=0.5)
    with pytest.raises(ValueError, match="sub"):
        output_density(cfg, sig, ax, sub=0)
    with pytest.raises(ValueError, match=r"sub must be at least 2 when the error is estimated .* got 1"):
        output_density(cfg, sig, ax, sub=1)  # its check would run at the same sub-points
    assert output_density(cfg, sig, ax, sub=1, estimate_error=False).error is None  # without the estimate: allowed
    with pytest.raises(ValueError, match="decreasing"):
        output_density(cfg, sig.flip(0), ax)
    with pytest.raises(ValueError, match="uniform"):
        output_density(cfg, sig, ax**3)
    with pytest.raises(ValueError, match="at least 3 nodes"):
        output_density(cfg, sig, ax[:2])
    for bad in (0.0, -1.0, math.nan, True):
        with pytest.raises(ValueError, match="tol"):
            output_density(cfg, sig, ax, tol=bad)
    with pytest.raises(ValueError, match="on_budget"):
        output_density(cfg, sig, ax, tol=1e-3, on_budget="ignore")
    with pytest.raises(ValueError, match="max_nodes"):
        output_density(cfg, sig, ax, max_nodes=2)


def test_bad_callables_and_knobs_are_named(paper):
    """Issue 20: each of these was a bare TypeError / RuntimeError / misleading message, or accepted."""
    _, _, cfg = paper
    sig = VPSchedule.linear(1000, 2e-5, 3.8e-4).respace(4).sampling_sigmas()
    ax = torch.linspace(-3, 3, 31, dtype=F64)
    cases = [
        (dict(max_nodes=math.nan), "max_nodes must be finite"),
        (dict(min_kernel_width=-1.0), "min_kernel_width must be a number of grid spacings >= 0"),
        (dict(start=3), "start must be None or a callable"),
        (dict(start=lambda u: torch.full(u.shape[:1], math.nan, dtype=F64)), "start is not a finite log-density"),
        (dict(start=lambda u: torch.full(u.shape[:1], -math.inf, dtype=F64)), "start is -inf .* no mass near the grid"),
        (dict(start=lambda u: torch.zeros(3, dtype=F64)),
         "start must return log-densities \\[N\\].* got shape \\(3,\\)"),
        (dict(max_outside=1.0), "max_outside must be a mass in \\[0, 1\\)"),
    ]
    for kw, match in cases:
        with pytest.raises(ValueError, match=match):
            output_density(cfg, sig, ax, **kw)
    with pytest.raises(ValueError, match="x's shape \\(31, 1\\), got shape \\(31, 0\\)"):
        output_density(lambda x, s: x[:, :0], sig, ax)
    with pytest.raises(ValueError, match="x must have shape \\[N, 1\\].*axes has 2 entries, so the denoiser gets points"):
        output_density(cfg, sig, (ax[::2], ax[::2]))


def test_sub_is_bounded_before_anything_is_allocated(paper):
    """Issue 20: sub=10**7 took 20 GB in 40 s; now refused at once, naming sub and the memory."""
    import time

    from evaluation.density import MAX_SUB_POINTS
    _, _, cfg = paper
    sig = VPSchedule.linear(1000, 2e-5, 3.8e-4).respace(4).sampling_sigmas()
    ax = torch.linspace(-3, 3, 101, dtype=F64)
    t = time.process_time()
    with pytest.raises(ValueError, match="sub=10000000 puts 1.01e\\+09 points .* GB"):
        output_density(cfg, sig, ax, sub=10**7)
    assert time.process_time() - t < 1.0
    # the contract's largest runs (accuracy.density_engine's efforts): 1-D 256 sub-points, 2-D 24 up to 201^2, 12 on 401^2
    assert 101 * 256 <= MAX_SUB_POINTS and 201**2 * 24**2 <= MAX_SUB_POINTS
    assert 401**2 * 12**2 <= MAX_SUB_POINTS


def test_a_grid_missing_most_of_the_start_is_refused_not_nan():
    """Issue 20: a grid inside the start law (or off it) gave mass, lost and error all NaN. The start's share outside
    the grid's cells is erfc(0.11 / sqrt 2) = 0.912 here (cells reach half a spacing past the edge nodes): refused
    by default; allowed by max_outside, the law is finite and its mass plus lost is 1."""
    from evaluation.spec import Law, Method, Schedule
    law, sched = Law.parse("paper_1d").build(), Schedule.parse("lin:10:0.0001")
    sig, guided = sched.sigmas(), Method("cfg", 1.0).build(law, sched).guided
    narrow = torch.linspace(-0.1, 0.1, 11, dtype=F64)
    with pytest.raises(ValueError, match="start law has 0.912 of its mass outside the grid \\[-0.1, 0.1\\]"):
        output_density(guided, sig, narrow)
    with pytest.raises(ValueError, match="start law has 1 of its mass outside"):
        output_density(guided, sig, torch.linspace(-5, 5, 101, dtype=F64),
                       start=lambda u: -0.5 * ((u[:, 0] - 10) / 0.1) ** 2)
    for sampler in ("ddpm", "ddim"):
        od = output_density(guided, sig, narrow, sampler=sampler, max_outside=0.99)
        assert od.start_lost == pytest.approx(math.erfc(0.11 / math.sqrt(2)), rel=1e-3)
        assert torch.isfinite(od.mass).all() and torch.isfinite(od.error).all() and math.isfinite(od.lost)
        assert od.lost > 0.99 and abs(od.mass.sum().item() + od.lost - 1) < 1e-12


def test_estimate_error_false_gives_the_same_masses_without_the_extra_runs():
    """``estimate_error=False`` (callers that use only the masses) skips the even-node grid and the doubled
    sub-points: the same masses, ``error`` None, and no tolerance can be asked of it."""
    cond, uncond = paper_pair()
    model = MixtureModel({"c": cond, "u": uncond})
    g = CFG(bind(model, "c"), bind(model, "u"), 1.0)
    axis = torch.linspace(-4, 4, 201, dtype=torch.float64)
    for sampler in ("ddpm", "ddim"):
        sig = VPSchedule.paper_1d().sampling_sigmas()
        calls = []
        counted = lambda x, s: (calls.append(x.shape[0]), g(x, s))[1]  # noqa: E731
        full = output_density(counted, sig, axis, sampler=sampler)
        n_full, calls[:] = sum(calls), []
        fast = output_density(counted, sig, axis, sampler=sampler, estimate_error=False)
        assert fast.error is None and full.error is not None
        torch.testing.assert_close(fast.mass, full.mass, rtol=0, atol=0)
        assert sum(calls) < n_full
    with pytest.raises(ValueError, match="estimate_error"):
        output_density(g, sig, axis, estimate_error=False, tol=1e-3)
    with pytest.raises(ValueError, match="estimate_error"):
        output_density(g, sig, axis, estimate_error="no")


@pytest.mark.slow
def test_error_estimate_bounds_when_the_last_kernel_is_narrower_than_the_spacing():
    """Issue 20 defect 14: a late DDPM kernel (std 0.004) on a grid of spacing 0.025 was summed over the nodes
    as sources, an O(1) quadrature error (1.7e-2 in L1) that the estimate (1.1e-2) missed. Such steps now take
    sub-sources whose kernel means overlap, so the law converges and the estimate bounds its error."""
    cond, uncond = paper_pair()
    m = MixtureModel({"c": cond, None: uncond})
    cfg = CFG(bind(m, "c"), bind(m, None), 1.0)
    sigmas = VPSchedule.linear(1000, 2e-5, 3.8e-4).respace(40).sampling_sigmas()
    od = output_density(cfg, sigmas, torch.linspace(-4, 4, 321, dtype=F64))
    assert od.narrow_steps == 1
    fine = output_density(cfg, sigmas, torch.linspace(-4, 4, 1281, dtype=F64), sub=16, estimate_error=False)
    err = (od.mass - _restrict(fine.mass, 2)).abs().sum()
    assert err <= od.error.sum() <= 30 * err + 1e-6


def test_start_mass_outside_the_grid_is_lost_and_bounded():
    """Issue 20: the N(0, I) start has 7.7e-4 of its mass outside [-3.55, 3.55]^2; it is reported in ``lost`` /
    ``start_lost`` (no longer normalised away) and ``total_error`` bounds the masses against a wide grid."""
    cond = random_mixture(2, 2, 5)
    den = Unguided(bind(MixtureModel({"c": cond}), "c"))
    sigmas = VPSchedule.linear(6, 0.02, 0.3).sampling_sigmas()
    small = (torch.linspace(-3.5, 3.5, 71, dtype=F64),) * 2
    wide = (torch.linspace(-7, 7, 141, dtype=F64),) * 2  # the same nodes and more
    for name in ("euler", "ddpm"):
        od = output_density(den, sigmas, small, sampler=name)
        exact = 1 - (1 - math.erfc(3.55 / math.sqrt(2))) ** 2
        assert od.start_lost == pytest.approx(exact, rel=0.01)
        # lost is a mass balance (the start's part plus what each step's sums say left): rounding may put it 1e-16
        # below the start's part, as evaluation.accuracy's law check allows
        assert od.lost >= od.start_lost - 1e-14 and abs(od.mass.sum().item() + od.lost - 1) < 1e-12
        ref = output_density(den, sigmas, wide, sampler=name)
        inner = ref.mass[35:106, 35:106]  # the small grid's hats (the edge hats differ by their outer halves)
        err = (od.mass - inner)[1:-1, 1:-1].abs().sum().item()
        assert err <= od.total_error, name
        assert err > 0.2 * od.start_lost  # the truncated start shows (same spacing: the rest of the error cancels)


def test_mass_outside_of_starts():
    """The start's mass beyond the grid's cells, by the midpoint rule on a frame around it: N(0, I) against its
    closed form; a start given on a grid has none beyond that grid; a law with mass far beyond raises."""
    from evaluation.density import mass_outside
    from evaluation.starts import grid_log_prob_start
    ax = torch.linspace(-2, 2, 81, dtype=F64)
    assert mass_outside(vp_start(1), (ax,)) == pytest.approx(math.erfc(2.025 / math.sqrt(2)), rel=5e-3)
    assert mass_outside(vp_start(2), (ax, ax)) == pytest.approx(1 - math.erf(2.025 / math.sqrt(2)) ** 2, rel=5e-3)
    wide = torch.linspace(-3, 3, 121, dtype=F64)
    on_grid = grid_log_prob_start(-0.5 * wide**2, (wide,))
    assert mass_outside(on_grid, (wide,)) == 0.0
    assert mass_outside(on_grid, (ax,)) == pytest.approx(math.erfc(2.025 / math.sqrt(2)) - math.erfc(3.025 / math.sqrt(2)), rel=5e-3)
    with pytest.raises(ValueError, match="widen axes"):
        mass_outside(lambda u: -1e-3 * u.abs().sum(1), (ax,))


def test_a_step_too_narrow_for_the_sub_sources_is_flagged_and_keeps_its_mass_local():
    """Kernel std 0.0045 on a spacing of 0.25 needs more than 64 sources per cell: the step keeps each source's
    mass on its nearest nodes (first order: the mean stays right), is counted in ``unresolved_steps``, and
    ``total_error`` is inf (no bound is claimed)."""
    cond, uncond = paper_pair()
    m = MixtureModel({"c": cond, None: uncond})
    cfg = CFG(bind(m, "c"), bind(m, None), 1.0)
    sigmas = VPSchedule.linear(1000, 2e-5, 3.8e-4).respace(40).sampling_sigmas()
    axis = torch.linspace(-4, 4, 33, dtype=F64)
    od = output_density(cfg, sigmas, axis)
    assert od.unresolved_steps == 1 and od.total_error == math.inf
    fine = output_density(cfg, sigmas, torch.linspace(-4, 4, 641, dtype=F64))
    assert fine.unresolved_steps == 0 and math.isfinite(fine.total_error)
    mean = lambda law: (law.mass * law.axes[0]).sum().item() / law.mass.sum().item()  # noqa: E731
    assert abs(mean(od) - mean(fine)) < 0.25 / 8  # an eighth of the coarse spacing
    assert not torch.isnan(od.error).any()  # the coarse check's narrower kernel does not underflow (was nan)
