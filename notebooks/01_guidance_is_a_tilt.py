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
# # 1. Guidance is a tilt
#
# A 30-45 minute unit. Everything below is computed by the library (`analytic`, `sampler`); the notebook
# writes no formula of its own except in the exercises, where you write it and the library checks it.
#
# **What you will be able to do**
# - build a Gaussian-mixture diffusion with `analytic`, noise it, and read off its exact score, noise
#   prediction `eps` and Tweedie denoiser;
# - say which reward on the *clean* sample CFG, autoguidance (AutoG) and classifier guidance (CG) stand
#   for, and compute the guidance term each of them adds in practice;
# - explain why "tilt every step's marginal by the reward" is not a target any sampler can hit;
# - compute the expected terminal reward `E_t` and the optimal guidance `-sqrt(1 - abar) grad log E_t`,
#   and compare it with CFG.
#
# Background: the README's "What the exact numbers say"; the derivations are in the library's docstrings
# (`help(A.optimal_guidance)`, `help(A.CFGReward)`).

# %% tags=["parameters"]
import os

# Quick mode (the test suite sets REG_QUICK=1): fewer points, the same lessons and checks.
QUICK = os.environ.get("REG_QUICK", "0") == "1"
print("quick mode" if QUICK else "full mode")

# %%
import math
import time

import matplotlib.pyplot as plt
import torch

import analytic as A
from figures.style import COLORS, LABELS, method_label, style
from sampler import abar_to_sigma
from teaching import check

torch.set_num_threads(1)  # the arrays here are small: extra threads only add overhead
N_POINTS = 151 if QUICK else 601
FIG = dict(dpi=80)

# %% [markdown]
# ## 1. A mixture, noised
#
# The running example is the REG paper's 1-D toy (`analytic.get_preset("paper_1d")`): the conditional
# `p(x_0 | y)` is `0.5 N(0.5, 0.25^2) + 0.5 N(1.5, 0.25^2)`, the unconditional `p(x_0)` a separate
# mixture. The forward process `x_t = sqrt(abar) x_0 + sqrt(1 - abar) n` keeps a Gaussian mixture a
# Gaussian mixture: `GaussianMixture.noised(abar)` is its exact law at level `abar`.

# %%
p = A.get_preset("paper_1d")
cond, uncond = p.cond, p.uncond
print(p.description)
print("conditional:", cond.weights.tolist(), cond.means[:, 0].tolist(), cond.covs[:, 0, 0].sqrt().tolist())
print("unconditional:", uncond.weights.tolist(), uncond.means[:, 0].tolist(), uncond.covs[:, 0, 0].sqrt().tolist())

x = torch.linspace(-3, 3, N_POINTS, dtype=torch.float64)[:, None]  # [N, 1]
levels = (1.0, 0.9, 0.5, 0.1)
with style():
    fig, axs = plt.subplots(1, 2, figsize=(8, 2.6), **FIG)
    for a in levels:
        axs[0].plot(x[:, 0], cond.noised(a).log_prob(x).exp(), label=f"abar = {a}")
        axs[1].plot(x[:, 0], uncond.noised(a).log_prob(x).exp(), label=f"abar = {a}")
    axs[0].set_title("p_t(x | y), conditional")
    axs[1].set_title("p_t(x), unconditional")
    axs[0].legend()
    fig.tight_layout()
    plt.show()

# %% [markdown]
# Each noised law is a density: check that it integrates to one (a trapezoid sum on a wide grid).

# %%
wide = torch.linspace(-12, 12, 4001, dtype=torch.float64)[:, None]
for a in levels:
    mass = torch.trapezoid(cond.noised(a).log_prob(wide).exp(), wide[:, 0]).item()
    print(f"abar = {a}: integral of p_t(x|y) = {mass:.10f}")
    assert abs(mass - 1) < 1e-9

# %% [markdown]
# ## 2. Score, noise prediction and Tweedie
#
# For a mixture everything is exact: the score `grad log p_t` (`cond.score`), the noise prediction
# `eps = -sqrt(1 - abar) grad log p_t` (`cond.eps`), and the posterior `p(x_0 | x_t)`
# (`cond.posterior`), itself a Gaussian mixture at every point. Tweedie's formula says the posterior
# mean is what a perfect denoiser outputs. The library has two independent routes to it:
# `cond.posterior(x_t, abar).mean()` (Kalman form of each component) and `cond.denoise(x, sigma)` (the VE
# denoiser `x + sigma^2 grad log p_sigma(x)`, with `x = x_t / sqrt(abar)`, `sigma^2 = (1 - abar)/abar`).

# %%
abar = 0.5
x_t = torch.linspace(-2, 3, N_POINTS, dtype=torch.float64)[:, None]
sigma = abar_to_sigma(abar)
m_posterior = cond.posterior(x_t, abar).mean()  # [N, 1]
m_denoiser = cond.denoise(x_t / math.sqrt(abar), sigma)  # [N, 1]
print("max |posterior mean - VE denoiser| =", (m_posterior - m_denoiser).abs().max().item())
assert torch.allclose(m_posterior, m_denoiser, atol=1e-12)

# the score is the gradient of the log-density: compare with autograd
xg = x_t.clone().requires_grad_(True)
autograd_score = torch.autograd.grad(cond.noised(abar).log_prob(xg).sum(), xg)[0]
print("max |score - autograd| =", (cond.score(x_t, abar) - autograd_score).abs().max().item())
assert torch.allclose(cond.score(x_t, abar), autograd_score, atol=1e-12)

# %% [markdown]
# ### Your turn 1: Tweedie by hand
#
# Using only `cond.eps(x_t, abar)`, compute the denoised estimate
# `x0_hat = (x_t - sqrt(1 - abar) eps) / sqrt(abar)` at the points `x_t` above, and store it in `x0_mine`
# (shape `[N, 1]`). The check compares it with the exact posterior mean.

# %%
x0_mine = None  # your answer here
check("Tweedie", x0_mine, cond.posterior(x_t, abar).mean(), tol=1e-10)

# %% tags=["solution"] jupyter={"source_hidden": true}
x0_solution = (x_t - math.sqrt(1 - abar) * cond.eps(x_t, abar)) / math.sqrt(abar)
check("Tweedie (solution)", x0_solution, cond.posterior(x_t, abar).mean(), tol=1e-10, strict=True)

# %% [markdown]
# ## 3. Guidance methods are rewards on the clean sample
#
# A guidance method wants samples from the *tilted* law `p(x_0 | y) R_0(x_0, y) / Z`. The three classic
# methods differ only in the reward:
#
# | method | reward `R_0(x_0)` | library |
# |---|---|---|
# | CFG | `(p(x_0 \| y) / p(x_0))^w` | `A.CFGReward(cond, uncond, w)` |
# | AutoG | `(p(x_0 \| y) / p_bad(x_0 \| y))^w`, a weaker model | `A.AutoGReward(cond, A.degrade(cond), w)` |
# | CG | `p(y \| x_0)^w`, a classifier | `A.ClassifierReward(classes, priors, y, w)` |
#
# For CG we make a two-class problem out of the toy: class 0 is the conditional, class 1 the
# unconditional mixture, equal priors.

# %%
w = 1.0
rewards = {
    "CFG": A.CFGReward(cond, uncond, w),
    "AutoG": A.AutoGReward(cond, A.degrade(cond, 2.0), w),
    "CG": A.ClassifierReward([cond, uncond], [0.5, 0.5], 0, w),
}
x0 = torch.linspace(-1, 2.5, N_POINTS, dtype=torch.float64)[:, None]
with style():
    fig, axs = plt.subplots(1, 2, figsize=(8, 2.6), **FIG)
    axs[0].plot(x0[:, 0], cond.log_prob(x0).exp(), color="k", label="p(x_0 | y)")
    for name, r in rewards.items():
        axs[1].plot(x0[:, 0], r.log_r0(x0), label=name)
        tilted = cond.log_prob(x0) + r.log_r0(x0)
        axs[0].plot(x0[:, 0], (tilted - torch.logsumexp(tilted, 0)).exp() / (x0[1, 0] - x0[0, 0]),
                    label=f"tilted by {name}")
    axs[0].set_title("conditional and its tilts (normalised on the grid)")
    axs[1].set_title("log R_0(x_0)")
    axs[0].legend()
    axs[1].legend()
    fig.tight_layout()
    plt.show()

# %% [markdown]
# In practice none of them evaluates `R_0` at the clean sample, which the sampler does not have yet.
# Each uses the same ratio at the *present* noise level, `R_t(x_t)` (noised mixtures), and adds the
# present-time guidance term `-sqrt(1 - abar) grad log R_t(x_t)` to `eps_c`: `reward.present(x_t, abar)`.
# For CFG that term is the familiar `w (eps_c - eps_u)`.
#
# ### Your turn 2: the CFG term
#
# Compute CFG's guidance term in eps units, `w (eps_c - eps_u)`, at the points `x_t` and level `abar`
# above, from `cond.eps` and `uncond.eps`. The check compares it with `rewards["CFG"].present`, which
# the library computes from the reward's log-ratio.

# %%
cfg_mine = None  # your answer here
check("CFG term", cfg_mine, rewards["CFG"].present(x_t, abar), tol=1e-10)

# %% tags=["solution"] jupyter={"source_hidden": true}
cfg_solution = w * (cond.eps(x_t, abar) - uncond.eps(x_t, abar))
check("CFG term (solution)", cfg_solution, rewards["CFG"].present(x_t, abar), tol=1e-10, strict=True)

# %% [markdown]
# The library's `present` is the gradient of `log_rt`: an autograd check, for all three rewards.

# %%
for name, r in rewards.items():
    xg = x_t.clone().requires_grad_(True)
    grad = torch.autograd.grad(r.log_rt(xg, abar).sum(), xg)[0]
    err = (r.present(x_t, abar) + math.sqrt(1 - abar) * grad).abs().max().item()
    print(f"{name}: max |present + sqrt(1-abar) grad log R_t| = {err:.2e}")
    assert err < 1e-10

# %% [markdown]
# ## 4. Why tilting every step's marginal is not a valid target
#
# The motivation usually given for these methods is: "make the marginal at every step
# `p_t(x_t | y) R_t(x_t)`". That over-constrains the chain: a guided step only reweights the unguided
# Gaussian kernel, so once `R_t` is chosen the kernel fixes what the next marginal can be, and with every
# sampler starting from the same `N(0, I)` only a constant reward survives.
#
# The paper's Theorem 1 poses the well-defined version: reweight the *whole* chain by the terminal
# reward, `p(x_{0:T} | y) R_0(x_0)`. That chain is unique, it ends at the tilted law, and its marginals are
# `p_t(x_t | y) E_t(x_t) / E`, with the **expected terminal reward**
#
#     E_t(x_t) = E[ R_0(x_0) | x_t ]   (the expectation over the posterior p(x_0 | x_t, y)).
#
# The per-step target agrees with it only if `R_t` is proportional to `E_t` at every level, i.e. if
# `log E_t - log R_t` is a constant in `x_t`. The library computes `log E_t` exactly
# (`A.optimal_guidance`, quadrature with an error estimate). Look at the spread of the difference:

# %%
r = rewards["CFG"]
x_t = torch.linspace(-1, 2, N_POINTS, dtype=torch.float64)[:, None]
spreads = {}
for a in (0.3, 0.82, 0.99):
    og = A.optimal_guidance(cond, r, x_t, a)
    diff = og.log_E - r.log_rt(x_t, a)
    spreads[a] = (diff.max() - diff.min()).item()
    print(f"abar = {a}: log E_t - log R_t spans {spreads[a]:.3f} nats on [-1, 2] "
          f"(quadrature error of log E_t <= {og.err_log_E.max().item():.1e})")
    assert spreads[a] > max(1.0, 100 * og.err_log_E.max().item())  # not a constant: over a nat, far beyond the error

# %% [markdown]
# Far from constant: more than a nat of spread at every level shown, far beyond the quadrature error.
# CFG, AutoG and CG are motivated by a target that no chain started from noise reaches; the reachable one
# is built from `E_t`.
# Near `abar = 1` the two coincide, as they must: `E_0 = R_0`.

# %%
og_clean = A.optimal_guidance(cond, r, x_t, 0.99999)
gap = og_clean.log_E - r.log_r0(x_t)
print("abar = 0.99999: spread of log E_t - log R_0 =", (gap.max() - gap.min()).item())
assert (gap.max() - gap.min()).item() < 0.05

# %% [markdown]
# ## 5. The optimal guidance
#
# Theorem 1 also gives the one guidance term that does sample the tilted law (on the ideal chain):
# `golden = -sqrt(1 - abar) grad log E_t(x_t)`. `A.optimal_guidance` returns it with its error estimate;
# an independent route is a central finite difference of the library's own `log E_t`.

# %%
a = 0.82
og = A.optimal_guidance(cond, r, x_t, a)
h = 1e-4
fd = (A.optimal_guidance(cond, r, x_t + h, a).log_E - A.optimal_guidance(cond, r, x_t - h, a).log_E) / (2 * h)
fd_golden = -math.sqrt(1 - a) * fd[:, None]
print("max |golden - finite difference| =", (og.golden - fd_golden).abs().max().item())
assert torch.allclose(og.golden, fd_golden, atol=1e-6)

# %% [markdown]
# ### Your turn 3: the working identity
#
# Differentiating `E_t` under the integral gives (the docstring of `analytic.golden`)
# `grad log E_t = sqrt(abar) / (1 - abar) * (m_R - m)`, with `m` the posterior mean and `m_R` the mean of
# the reward-tilted posterior, which `og.tilted_mean` holds. Compute `grad log E_t` this way at the points
# `x_t` and level `a` above and store it in `grad_mine`; the check compares it with `og.grad_log_E`.

# %%
grad_mine = None  # your answer here
check("grad log E_t", grad_mine, og.grad_log_E, tol=1e-8)

# %% tags=["solution"] jupyter={"source_hidden": true}
grad_solution = math.sqrt(a) / (1 - a) * (og.tilted_mean - cond.posterior(x_t, a).mean())
check("grad log E_t (solution)", grad_solution, og.grad_log_E, tol=1e-8, strict=True)

# %% [markdown]
# ## 6. Golden against CFG
#
# `A.guidance_fields` returns, at once, the golden term, the present-time term (CFG here) and REG's
# estimators (notebook 2). Below: golden against CFG at three noise levels, for `w = 1`.

# %%
levels = (0.3, 0.82, 0.99)
fields = {a: A.guidance_fields(cond, r, x_t, a) for a in levels}
with style():
    fig, axs = plt.subplots(1, 3, figsize=(9, 2.6), sharey=False, **FIG)
    for ax, a in zip(axs, levels):
        f = fields[a]
        ax.plot(x_t[:, 0], f.golden[:, 0], color=COLORS["golden"], label=LABELS["golden"])
        ax.plot(x_t[:, 0], f.present[:, 0], color=COLORS["cfg"], label=method_label("cfg"))
        ax.set_title(f"abar = {a}")
        ax.set_xlabel("x_t")
    axs[0].set_ylabel("guidance term (eps units)")
    axs[0].legend()
    fig.tight_layout()
    plt.show()

for a in levels:
    f = fields[a]
    gap_cfg = (f.golden - f.present).abs().mean().item()
    print(f"abar = {a}: mean |golden| = {f.golden.abs().mean().item():.3f}, mean |golden - CFG| = {gap_cfg:.3f}")
    # the fields agree with the pointwise optimum and with the reward's present term
    assert torch.allclose(f.golden, A.optimal_guidance(cond, r, x_t, a).golden, atol=1e-8)
    assert torch.allclose(f.present, r.present(x_t, a), atol=1e-12)
    assert gap_cfg > 10 * f.golden_error.max().item()

# %% [markdown]
# CFG is not a small perturbation of the optimum: at moderate noise its error is about as large as the
# golden term itself (the numbers above), and the two meet only as `abar -> 1`. Notebook 2 derives REG, which corrects CFG's term with the Jacobian of the conditional denoiser;
# notebook 3 turns fields into samples and measures what the errors cost.
#
# **Summary.** A guidance method is a reward on the clean sample; the exact target of a chain is the
# tilted law, and the unique way to reach it is the golden term built from `E_t`, not from the
# present-time reward `R_t`.

# %%
print(f"this kernel used {time.process_time():.1f} s of CPU ({'quick' if QUICK else 'full'} mode)")
