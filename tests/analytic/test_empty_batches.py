"""Issue 11, defect 13: every public analytic routine that takes a batch of points accepts an empty one
and returns empty results of the right shapes (the issue's reproducer was ``guidance_fields`` with ``x_t``
of shape [0, 1]; ``optimal_denoiser`` and ``MixtureVelocity`` still raised "cannot reshape tensor of 0
elements"). Routines on grids (``golden_on_grid``, ``chain_golden``) refuse an empty grid with a clear
``ValueError``: their working resolution is sized from the points."""
import pytest
import torch

import analytic as A
from sampler import LINEAR, VPSchedule

F64 = torch.float64


@pytest.fixture(params=[1, 2], ids=["1d", "2d"])
def case(request):
    d = request.param
    p = A.get_preset("paper_1d" if d == 1 else "correlated_2d")
    return d, p.cond, p.uncond


def _shapes(obj):
    return {k: tuple(v.shape) for k, v in obj._asdict().items() if isinstance(v, torch.Tensor)}


def test_defect13_guidance_fields_issue_example():
    p = A.get_preset("paper_1d")
    f = A.guidance_fields(p.cond, A.CFGReward(p.cond, p.uncond, 1.0), torch.zeros(0, 1, dtype=F64), 0.5)
    for name in ("golden", "present", "reg_paper", "reg_vjp", "reg_diag", "golden_error"):
        assert getattr(f, name).shape == (0, 1), name


def test_defect13_every_pointwise_routine_on_an_empty_batch(case):
    d, c, u = case
    e = torch.zeros(0, d, dtype=F64)
    for r in (A.CFGReward(c, u, 1.0), A.AutoGReward(c, A.degrade(c), 1.0)):
        assert r.log_r0(e).shape == (0,) and r.log_rt(e, 0.5).shape == (0,)
        assert r.grad_log_rt(e, 0.5).shape == (0, d) and r.present(e, 0.5).shape == (0, d)
        for method in ("auto", "grid", "gh", "is"):
            o = A.optimal_guidance(c, r, e, 0.5, method=method, generator=torch.Generator().manual_seed(0))
            assert _shapes(o) == {"log_E": (0,), "grad_log_E": (0, d), "tilted_mean": (0, d), "golden": (0, d),
                                  "err_log_E": (0,), "err_grad": (0, d), "golden_error": (0, d),
                                  "err_tilted_mean": (0, d)}, method
        assert _shapes(A.golden_at_points(c, r, e, 0.5))["golden_error"] == (0, d)
        assert _shapes(A.tilted_posterior(c, r, e, 0.5))["tilted_mean"] == (0, d)
        f = A.guidance_fields(c, r, e, 0.5)
        assert f.golden.shape == f.reg_diag.shape == (0, d)
        den = A.optimal_denoiser(c, r)  # was "cannot reshape tensor of 0 elements"
        assert den(torch.zeros(0, d, dtype=torch.float32), 1.0).shape == (0, d)
    for out, shape in ((c.eps(e, 0.5), (0, d)), (c.score(e, 0.5), (0, d)), (c.denoise(e, 0.5), (0, d)),
                       (c.score_ve(e, 0.5), (0, d)), (c.log_prob(e), (0,)), (c.grad_log_prob(e), (0, d)),
                       (c.component_log_prob(e), (0, c.weights.numel())), (c.posterior(e, 0.5).mean(), (0, d)),
                       (A.eps_jacobian(c, e, 0.5), (0, d, d)), (A.batch_jacobian(lambda x: c.eps(x, 0.5), e), (0, d, d)),
                       (A.mixture_eps_fn(c, VPSchedule.paper_1d())(e, 3), (0, d)),
                       (A.path_fields(c, LINEAR, e, 0.5).velocity, (0, d)),
                       (A.MixtureVelocity({0: c}, LINEAR)(e, torch.zeros(0), 0), (0, d)),
                       (A.reg_correction(e, torch.zeros(0, d, d, dtype=F64), 0.5, "vjp"), (0, d))):
        assert tuple(out.shape) == shape


def test_grid_routines_refuse_an_empty_grid_clearly():
    p = A.get_preset("paper_1d")
    r = A.CFGReward(p.cond, p.uncond, 1.0)
    with pytest.raises(ValueError, match="at least 2 points"):
        A.golden_on_grid(p.cond, r, torch.zeros(0, dtype=F64), 0.5)
    with pytest.raises(ValueError, match="N >= 1"):
        A.chain_golden(A.mixture_eps_fn(p.cond, VPSchedule.paper_1d()), r.log_r0, VPSchedule.paper_1d(),
                       points=torch.zeros(0, 1, dtype=F64))
