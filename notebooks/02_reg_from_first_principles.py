# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 2. REG from first principles
#
# A 30-45 minute unit; it builds on notebook 1 (guidance as a tilt, `E_t`, the golden term).
#
# **What you will be able to do**
# - derive REG's Jacobian correction from the optimal guidance, and check each step with autograd;
# - compute REG's three estimators (`paper`, `vjp`, `diag`) from a Jacobian by hand;
# - read the single-Gaussian closed forms (derived with sympy by `analytic.symbolic`) and say, for given
#   variances, weight and noise level, whether REG helps or hurts;
# - compare the estimators side by side on a 2-D mixture, against the exact optimum.

# %% tags=["parameters"]
import os

# Quick mode (the test suite sets REG_QUICK=1): coarser grids, the same lessons and checks.
QUICK = os.environ.get("REG_QUICK", "0") == "1"
print("quick mode" if QUICK else "full mode")

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import sympy as sp
import torch

import analytic as A
from analytic import symbolic as S
from evaluation import guidance_term
from figures.style import COLORS, method_label, style
from sampler import CFG, REG, MixtureModel, bind
from teaching import check

torch.set_num_threads(1)
FIG = dict(dpi=80)
N_GRID = 21 if QUICK else 41  # points per axis of the 2-D grid

# %% [markdown]
# ## 1. The Jacobian of the denoiser
#
# Write `c = sqrt(1 - abar)` and `J = d eps_c / d x_t`, the Jacobian of the conditional noise prediction
# (`A.eps_jacobian`, autograd through the exact mixture). Tweedie's denoiser is
# `x0_hat = (x_t - c eps_c) / sqrt(abar)`, so
#
#     d x0_hat / d x_t = (I - c J) / sqrt(abar).
#
# For an exact model there is more: `I - c J = abar / (1 - abar) Cov(x_0 | x_t)` (second-order Tweedie),
# symmetric and positive definite. Check both on the 2-D preset `correlated_2d`, where `J` is a full
# 2x2 matrix at every point, against two other library routes: autograd of the posterior mean, and the
# posterior covariance of the mixture.

# %%
p = A.get_preset("correlated_2d")
cond, uncond = p.cond, p.uncond
print(p.description)
gen = torch.Generator().manual_seed(0)
abar = 0.82
c = math.sqrt(1 - abar)
x_t = 1.5 * torch.randn(200, 2, generator=gen, dtype=torch.float64) + 0.5  # [N, 2] test points
J = A.eps_jacobian(cond, x_t, abar)  # [N, 2, 2]
eye = torch.eye(2, dtype=torch.float64)

dmean = A.batch_jacobian(lambda z: cond.posterior(z, abar).mean(), x_t)  # autograd of E[x_0 | x_t]
print("max |d x0_hat/d x_t - (I - cJ)/sqrt(abar)| =", (dmean - (eye - c * J) / math.sqrt(abar)).abs().max().item())
assert torch.allclose(dmean, (eye - c * J) / math.sqrt(abar), atol=1e-10)

cov = cond.posterior(x_t, abar).cov()
print("max |I - cJ - abar/(1-abar) Cov| =", (eye - c * J - abar / (1 - abar) * cov).abs().max().item())
assert torch.allclose(eye - c * J, abar / (1 - abar) * cov, atol=1e-10)

# %% [markdown]
# ## 2. The correction, derived
#
# The optimal term is `-c grad log E_t`, with `E_t(x_t) = E[R_0(x_0) | x_t]`. REG makes two
# approximations (`help(sampler.REG)`):
#
# 1. replace the expectation by the reward at the point estimate: `E_t(x_t) ~ R_0(x0_hat(x_t))`, so by the
#    chain rule `grad log E_t ~ (d x0_hat/d x_t)^T grad log R_0(x0_hat) = (I - cJ)^T grad log R_0(x0_hat) / sqrt(abar)`;
# 2. replace the clean-time gradient `grad log R_0(x0_hat) / sqrt(abar)` by the present-time one,
#    `grad log R_t(x_t)`, which is what CFG already computes.
#
# In eps units, with CFG's term `g = -c grad log R_t = w (eps_c - eps_u)`, that is the **vjp** estimator
# `g - c J^T g` (one backward pass). The paper keeps only a diagonal, estimated with the all-ones
# vector: **paper** `g * (1 - c J^T 1)`. The **diag** estimator uses the true diagonal, `g * (1 - c diag J)`.
# In 1-D all three coincide.
#
# ### Your turn 1: REG by hand
#
# At the points `x_t` and level `abar` above, with `J` from the cell above and
# `g = reward.present(x_t, abar)`, compute the `vjp` and the `paper` estimators, each `[N, 2]`. The check
# compares them with the library's `A.guidance_fields(...)`.

# %%
reward = A.CFGReward(cond, uncond, w=1.0)
fields = A.guidance_fields(cond, reward, x_t, abar)
vjp_mine = None  # your answer here
paper_mine = None  # your answer here
check("REG vjp", vjp_mine, fields.reg_vjp, tol=1e-10)
check("REG paper", paper_mine, fields.reg_paper, tol=1e-10)

# %% tags=["solution"] jupyter={"source_hidden": true}
g = reward.present(x_t, abar)  # [N, 2]
vjp_solution = g - c * torch.einsum("nij,ni->nj", J, g)  # J^T g
paper_solution = g * (1 - c * J.sum(dim=1))  # J^T 1: column sums
check("REG vjp (solution)", vjp_solution, fields.reg_vjp, tol=1e-10, strict=True)
check("REG paper (solution)", paper_solution, fields.reg_paper, tol=1e-10, strict=True)

# %% [markdown]
# The sampler applies REG as a modifier of any guidance object, `sampler.REG(guidance, estimator)`, in
# the denoiser (`D`) form with autograd through the network: an independent implementation of the same
# correction. On the exact mixture it must agree with the analytic fields to rounding.

# %%
model = MixtureModel({"c": cond, None: uncond})
D_c, D_u = bind(model, "c"), bind(model, None)
cfg = CFG(D_c, D_u, 1.0)
for est in ("paper", "vjp", "diag"):
    term = guidance_term(REG(cfg, est), D_c, x_t, abar)  # eps units, [N, 2]
    err = (term - getattr(fields, f"reg_{est}")).abs().max().item()
    print(f"sampler.REG(cfg, {est!r}) against analytic: max difference {err:.1e}")
    assert err < 1e-10
assert torch.allclose(guidance_term(cfg, D_c, x_t, abar), fields.present, atol=1e-12)

# %% [markdown]
# ## 3. Single Gaussians: where REG helps and where it hurts
#
# With a Gaussian conditional `N(mu_c, s_c^2)` and unconditional `N(mu_u, s_u^2)` in 1-D, every quantity is
# closed form. `analytic.symbolic` derives them with sympy from the model (Gaussian integrals and
# derivatives, nothing typed in by hand). All three fields are affine in `x` and proportional:
# `golden = kappa * CFG` and `REG = rho * CFG`.

# %%
F = S.single_gaussian_forms()
print("rho   = REG / CFG    =", F.reg_factor)
print("kappa = golden / CFG =", sp.factor(F.golden_over_cfg))

# %% [markdown]
# First, an independent check: the closed forms against the library's quadrature (`guidance_fields` on
# single-Gaussian mixtures).

# %%
params = dict(a=0.5, mu_c=1.0, s_c=0.25, mu_u=0.0, s_u=0.5, w=1.0)
gc = A.GaussianMixture.from_1d([1.0], [params["mu_c"]], [params["s_c"]])
gu = A.GaussianMixture.from_1d([1.0], [params["mu_u"]], [params["s_u"]])
x1 = torch.linspace(-1, 2, 61, dtype=torch.float64)[:, None]
num = A.guidance_fields(gc, A.CFGReward(gc, gu, params["w"]), x1, params["a"])
closed = S.fields(x1[:, 0].numpy(), **params)
for name, exact in (("golden", closed.golden), ("cfg", closed.cfg), ("reg", closed.reg)):
    numeric = {"golden": num.golden, "cfg": num.present, "reg": num.reg_vjp}[name][:, 0].numpy()
    print(f"{name}: max |quadrature - sympy| = {np.abs(numeric - exact).max():.1e}")
    assert np.allclose(numeric, exact, atol=1e-8)

# %% [markdown]
# Because the fields are proportional, which method is closer does not depend on `x`: REG is closer than
# CFG exactly where `|kappa - rho| < |kappa - 1|` (read `kappa` and `rho` off the affine coefficients; at
# `r = 1` CFG's slope vanishes, so use slope and intercept together). The map below is computed from the closed-form
# coefficients (`S.coefficients`, vectorised over parameters) for `w = 1`, over the variance ratio
# `r = s_c^2 / s_u^2` and the noise level. The dashed lines are the README's two thresholds,
# `r = (1+w)/(2+w)` (below it REG wins at every level) and `r = (1+2w)/(2+2w)` (above it REG loses at
# every level); the map checks them.

# %%
w = 1.0
s_u = 0.5
r_axis = np.linspace(0.3, 1.0, 71 if QUICK else 141)
a_axis = np.linspace(0.02, 0.98, 49 if QUICK else 97)
R, Aa = np.meshgrid(r_axis, a_axis, indexing="ij")
co = S.coefficients(Aa, 1.0, s_u * np.sqrt(R), 0.0, s_u, w)


def ratio(line, ref):
    """The factor k with line = k * ref, for two proportional affine functions (slope and intercept)."""
    return (line.slope * ref.slope + line.intercept * ref.intercept) / (ref.slope**2 + ref.intercept**2)


kappa, rho = ratio(co.golden, co.cfg), ratio(co.reg, co.cfg)
assert np.isfinite(kappa).all() and np.isfinite(rho).all()
reg_wins = np.abs(kappa - rho) < np.abs(kappa - 1)
lo, hi = (1 + w) / (2 + w), (1 + 2 * w) / (2 + 2 * w)
with style():
    fig, ax = plt.subplots(figsize=(4.5, 3), **FIG)
    ax.pcolormesh(r_axis, a_axis, reg_wins.T, cmap="RdBu", vmin=-0.5, vmax=1.5, shading="auto")
    for v in (lo, hi):
        ax.axvline(v, color="k", ls="--", lw=1)
    ax.set_xlabel("r = s_c^2 / s_u^2")
    ax.set_ylabel("abar")
    ax.set_title("blue: REG closer to the optimum than CFG (w = 1)")
    plt.show()
print("REG wins at every level for r <", lo, ":", bool(reg_wins[r_axis < lo - 1e-9].all()))
print("REG loses at every level for r >", hi, ":", bool((~reg_wins[r_axis > hi + 1e-9]).all()))
assert reg_wins[r_axis < lo - 1e-9].all() and (~reg_wins[r_axis > hi + 1e-9]).all()
between = (r_axis > lo + 1e-9) & (r_axis < hi - 1e-9)
assert reg_wins[between].any() and (~reg_wins[between]).any()  # in between: it depends on the noise level

# %% [markdown]
# Two special cases to keep in mind. With **equal variances** (`r = 1`) CFG is exact at every level and
# weight: `log R_0` is linear, and REG can only hurt, by damping an exact term by `rho`. With a **wider
# conditional** (`r > 1`) CFG undershoots and REG, which only shrinks, hurts everywhere.

# %%
eq = S.gap_summary(0.5, 1.0, 0.25, 0.0, 0.25, 1.0)
print(f"equal variances: CFG exact = {eq.cfg_exact}, REG relative error = {eq.rel_gap_reg:.3f}")
assert eq.cfg_exact and not eq.reg_helps

# %% [markdown]
# ### Your turn 2: the level where REG is exact
#
# For `mu_c = 1, s_c = 0.25, mu_u = 0, s_u = 0.5, w = 1` REG is closer than CFG at every level, and exact
# at a single one. Find that `abar` numerically (for example with `scipy.optimize.brentq` on the slope of
# `S.coefficients(a, ...).gap_reg`, or by bisection on `S.gap_summary(a, ...).rel_gap_reg`) and store it in
# `a_star_mine`. The check evaluates the library's exact relative REG error there; it must be zero.

# %%
a_star_mine = None  # your answer here
check("REG exact level",
      None if a_star_mine is None else S.gap_summary(a_star_mine, 1.0, 0.25, 0.0, 0.5, 1.0).rel_gap_reg, 0.0, tol=1e-8)

# %% tags=["solution"] jupyter={"source_hidden": true}
from scipy.optimize import brentq

a_star_solution = brentq(lambda a: float(S.coefficients(a, 1.0, 0.25, 0.0, 0.5, 1.0).gap_reg.slope), 0.5, 0.999,
                         xtol=1e-14)
print(f"abar* = {a_star_solution:.6f}")
check("REG exact level (solution)", S.gap_summary(a_star_solution, 1.0, 0.25, 0.0, 0.5, 1.0).rel_gap_reg, 0.0,
      tol=1e-8, strict=True)

# %% [markdown]
# ## 4. The estimators side by side in 2-D
#
# Back to `correlated_2d`: anisotropic, correlated components, so `J` is not diagonal and the three
# estimators differ. `A.guidance_fields_on_grid` computes golden, CFG and the three REG terms on a whole
# grid. The maps show `|golden - method|` where the conditional has its mass (contours of `p_t(x | y)`).

# %%
axis = torch.linspace(-1, 2, N_GRID, dtype=torch.float64)
grid = torch.cartesian_prod(axis, axis)  # [N_GRID^2, 2], 'ij' order
levels = (0.3, 0.82, 0.99)
methods = {"cfg": "present", "reg_paper": "reg_paper", "reg_vjp": "reg_vjp", "reg_diag": "reg_diag"}
grid_fields = {a: A.guidance_fields_on_grid(cond, reward, (axis, axis), a) for a in levels}

a = 0.82
f = grid_fields[a]
dens = cond.noised(a).log_prob(grid).exp().reshape(N_GRID, N_GRID)
with style():
    fig, axs = plt.subplots(1, 4, figsize=(11, 2.8), **FIG)
    for ax, (m, attr) in zip(axs, methods.items()):
        err = (f.golden - getattr(f, attr)).norm(dim=-1).reshape(N_GRID, N_GRID)
        im = ax.pcolormesh(axis, axis, err.T, vmin=0, vmax=2.0, shading="auto", cmap="magma")
        ax.contour(axis, axis, dens.T, levels=4, colors="w", linewidths=0.6)
        ax.set_title(f"|golden - {method_label(m.replace('reg_', 'cfg,reg='))}|", fontsize=8)  # reg_X: cfg,reg=X
        ax.set_aspect("equal")
    fig.colorbar(im, ax=axs, shrink=0.8)
    plt.show()

# %% [markdown]
# One number per level: the `p_t(x | y)`-weighted mean of `||golden - method||` over the grid, from the
# library's one field-error table `A.step_gaps` (here each "step" is one noise level).

# %%
golden = torch.stack([grid_fields[a].golden for a in levels])  # [S, N, 2]
weights = torch.stack([cond.noised(a).log_prob(grid).exp() for a in levels])  # [S, N]
table = A.step_gaps(golden, {m: torch.stack([getattr(grid_fields[a], attr) for a in levels])
                             for m, attr in methods.items()}, steps=range(len(levels)), weights=weights)
print("abar    golden size  " + "  ".join(f"{m:>9}" for m in table.methods))
for s, a in enumerate(levels):
    print(f"{a:<7} {table.golden_size[s].item():11.3f}  " + "  ".join(f"{table.gaps[i, s].item():9.3f}"
                                                               for i in range(len(table.methods))))
# at abar = 0.82 every REG estimator beats CFG here, and the chain-rule vjp beats the paper's J^T 1
s = levels.index(0.82)
assert table.of("reg_vjp")[s] < table.of("reg_paper")[s] < table.of("cfg")[s]

# %% [markdown]
# ### Your turn 3: the weighted error, by hand
#
# For `abar = 0.82`, compute the `p_t(x | y)`-weighted mean of the Euclidean norm `||golden - reg_vjp||`
# over the grid points (weights normalised to sum to one), as a float in `gap_mine`. The check compares it
# with the library's table.

# %%
gap_mine = None  # your answer here
check("weighted REG vjp gap", gap_mine, table.of("reg_vjp")[s], tol=1e-12)

# %% tags=["solution"] jupyter={"source_hidden": true}
wt = cond.noised(0.82).log_prob(grid).exp()
f82 = grid_fields[0.82]
gap_solution = ((f82.golden - f82.reg_vjp).norm(dim=-1) * wt).sum() / wt.sum()
check("weighted REG vjp gap (solution)", gap_solution, table.of("reg_vjp")[s], tol=1e-12, strict=True)

# %% [markdown]
# **Summary.** REG is the chain rule through the denoiser applied to a present-time reward gradient; its
# `vjp` form is the un-approximated chain rule, the paper's `J^T 1` a diagonal estimate of it. For single
# Gaussians the closed forms say exactly where it helps (conditional much narrower than unconditional)
# and where it can only hurt (equal or wider conditional). In 2-D with correlations the estimators
# differ, and which one is best depends on the noise level. Notebook 3 asks what these field errors
# cost in samples.

# %%
print(f"this kernel used {time.process_time():.1f} s of CPU ({'quick' if QUICK else 'full'} mode)")
