"""Theorem 1 end to end: the exact optimal guidance started from N(0, I) E_T samples the tilted target
as the number of steps grows; started from N(0, I) it does not (THEORY.md section 4)."""
import functools
import pytest
import torch

from analytic import CFGReward, optimal_denoiser
from evaluation.density import output_density
from evaluation.starts import tilted_start
from evaluation.distances import distances, tilted_target
from sampler import MixtureModel, TiltedMean, VPSchedule, bind

from tests.helpers import paper_pair

F64 = torch.float64
STEPS = (10, 20, 40, 80, 160)
# Two fine linear schedules respaced to T steps (only the number of steps changes between runs): the
# standard DDPM range (abar_T = 4e-5, x_T ~ N(0, 1)) and the paper's (abar_T = 0.819).
STANDARD = VPSchedule.linear(1000, 1e-4, 0.02)
PAPER_RANGE = VPSchedule.linear(1000, 2e-5, 3.8e-4)


def theorem1_table(fine, steps=STEPS, w=1.0, n_grid=801, marginal=True):
    """Rows ``(T, tilted start N(0,1) E_T, tilted marginal p_T E_T, untilted N(0,1))`` of Distances
    (the marginal-start entry is None when ``marginal`` is False)."""
    cond, uncond = paper_pair()
    reward = CFGReward(cond, uncond, w)
    axis = torch.linspace(-5, 5, n_grid, dtype=F64)
    target = tilted_target(cond, reward, axis).mass
    opt = TiltedMean(bind(MixtureModel({"c": cond}), "c"), optimal_denoiser(cond, reward))
    rows = []
    for T in steps:
        sched = fine.respace(T)
        sig, a_T = sched.sampling_sigmas(), sched.abar[-1].item()
        law = functools.partial(output_density, opt, sig, axis, estimate_error=False)  # the masses only
        laws = [law(start=tilted_start(cond, reward, a_T)),
                law(start=tilted_start(cond, reward, a_T, marginal=True)) if marginal else None,
                law()]
        rows.append((T,) + tuple(None if od is None else distances(od.mass, target, axis) for od in laws))
    return rows


def _first_order(tv):
    assert all(a > b for a, b in zip(tv, tv[1:])), tv
    assert 1.5 < tv[-2] / tv[-1] < 2.5, tv  # doubling T halves the distance


@pytest.mark.slow
def test_tilted_start_converges_to_the_tilted_target_standard_range():
    rows = theorem1_table(STANDARD, steps=(20, 40, 80, 160), marginal=False)
    _first_order([r[1].tv for r in rows])
    assert rows[-1][1].tv < 0.05 and rows[-1][1].kl_target_out < 0.01
    # at abar_T = 4e-5 the tilt of the start is tiny: what the untilted start loses is small
    assert abs(rows[-1][1].tv - rows[-1][3].tv) < 1e-3


@pytest.mark.slow
def test_paper_range_needs_the_tilted_marginal_start():
    rows = theorem1_table(PAPER_RANGE)
    _first_order([r[2].tv for r in rows])
    assert rows[-1][2].tv < 0.01
    # N(0, 1) E_T and N(0, 1) leave floors that more steps do not remove (x_T is far from N(0, 1))
    for k, floor in ((1, 0.015), (3, 0.4)):
        tv = [r[k].tv for r in rows]
        assert min(tv) > floor and abs(tv[-1] - tv[-2]) < 0.3 * tv[-1], (k, tv)


if __name__ == "__main__":  # prints the convergence tables
    for name, fine in (("standard range", STANDARD), ("paper range", PAPER_RANGE)):
        print(name)
        for T, a, b, c in theorem1_table(fine, steps=(10, 20, 40, 80, 160, 320)):
            print(f"T={T:4d}  N(0,1)E_T: TV {a.tv:.5f} KL(t||o) {a.kl_target_out:.6f}  |  p_T E_T: TV {b.tv:.5f} "
                  f"KL(t||o) {b.kl_target_out:.6f}  |  N(0,1): TV {c.tv:.4f} KL(t||o) {c.kl_target_out:.4f}")
