"""The errors the field-error tables state (evaluation.field_errors, and the ledger's FieldCell that the sweeps
figure reads): each mean of |golden - field| is within its stated error of the same mean against the golden
recomputed by another quadrature (a fixed, wide and fine x_0 grid instead of the adaptive one), and the stated
error is the golden's (positive, below its tolerance)."""
import torch

from analytic import CFGReward, golden_on_grid
from analytic.quadrature import grid_points
from evaluation.claims.cells import FieldCell, field_error
from evaluation.field_errors import field_errors, guidance_term
from evaluation.spec import Law, Method, Schedule
from sampler import CFG, REG, MixtureModel, VPSchedule, bind

from tests.helpers import paper_pair

F64 = torch.float64
ROUNDING = 1e-15
X0 = (torch.linspace(-9.0, 10.0, 6001, dtype=F64),)  # the independent quadrature: spacing 0.003, far beyond the mass


def _golden(cond, reward, axis, a):
    return golden_on_grid(cond, reward, axis, a, x0_axes=X0).golden.reshape(-1, 1)


def test_field_error_tables_carry_the_goldens_error():
    cond, uncond = paper_pair()
    reward = CFGReward(cond, uncond, 2.0)
    m = MixtureModel({"c": cond, None: uncond})
    cfg = CFG(bind(m, "c"), bind(m, None), 2.0)
    guided = {"cfg": cfg, "reg": REG(cfg, "paper")}
    sched = VPSchedule.paper_1d().respace(4)
    axis = torch.linspace(-1, 2, 61, dtype=F64)
    fe = field_errors(cond, sched, axis, guided, reward, sampler_chain=False)
    assert torch.all(fe.golden_error > 0) and fe.golden_error.max() < 1e-6
    assert torch.all(fe.golden_error_weighted > 0) and fe.golden_error_weighted.max() < 1e-6
    X = axis[:, None]
    for j, t in enumerate(fe.t.tolist()):
        a = sched.abar[t].item()
        golden = _golden(cond, reward, axis, a)
        weight = torch.softmax(cond.noised(a).log_prob(X), 0)
        for i, name in enumerate(fe.methods):
            gap = (golden - guidance_term(guided[name], cond.denoise, X, a)).norm(dim=1)
            plain, weighted = gap.mean().item(), (weight * gap).sum().item()
            assert abs(fe.ideal[i, j].item() - plain) <= fe.golden_error[j].item() + ROUNDING, (t, name)
            assert abs(fe.ideal_weighted[i, j].item() - weighted) <= fe.golden_error_weighted[j].item() + ROUNDING
        size = (weight * golden.norm(dim=1)).sum().item()
        assert abs(fe.golden_size[j].item() - size) <= fe.golden_error_weighted[j].item() + ROUNDING


def test_the_ledgers_field_cell_states_its_error():
    """FieldCell (the sweeps figure's field error): its mean over the levels of the p_t-weighted mean |golden - CFG|
    is within its stated error of the same mean against the goldens of another quadrature."""
    cell = FieldCell("paper_1d", "paper", Method("cfg", 2.0), (-1.0, 2.0, 61), 3)
    r = field_error(cell)
    assert 0 < r.mean_error_weighted_error < 1e-6 and 0 < r.mean_error_error < 1e-6
    law = Law.parse("paper_1d").build()
    reward = cell.method.reward(law)
    guided = cell.method.build(law, Schedule.parse("paper")).guided
    axis = torch.linspace(-1.0, 2.0, 61, dtype=F64)
    X = grid_points((axis,))
    plain, weighted = [], []
    for a in r.abar.tolist():
        gap = (_golden(law.cond, reward, axis, a) - guidance_term(guided, law.cond.denoise, X, a)).norm(dim=1)
        plain.append(gap.mean().item())
        weighted.append((torch.softmax(law.cond.noised(a).log_prob(X), 0) * gap).sum().item())
    assert abs(r.mean_error - sum(plain) / len(plain)) <= r.mean_error_error + ROUNDING
    assert abs(r.mean_error_weighted - sum(weighted) / len(weighted)) <= r.mean_error_weighted_error + ROUNDING
