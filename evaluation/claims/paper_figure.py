"""REG (arXiv 2501.18865), the paper's own 1-D figure, made from the paper's own networks.

The released 1-D toy networks (state_dicts with the upstream key names ``joint_mlp.*``, ``class_emb``) are
loaded into :class:`toy.MLP` by :func:`load_released` from paths the user gives. For the chain those networks
run (DDPM, T = 20, betas 1e-4..0.02), at every step:

- the exact grid golden of that chain, ``analytic.chain_golden(analytic.eps_from_denoiser(D_c, schedule))``
  (no sampling noise);
- the paper's Monte Carlo golden, ``toy.mc_golden`` (K rollouts through the conditional network,
  differentiated through the chain, as the paper's ``visual1.py`` does);
- the CFG term ``w (eps_c - eps_u)`` and the REG term ``w (1 - sigma_t d eps_c/dx) (eps_c - eps_u)``.

The paper's figure claims REG is closer to the golden than CFG at every step; the Monte Carlo golden's own
error is measured against the exact one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from analytic import chain_golden, eps_from_denoiser, golden_on_grid
from sampler import EpsModel, bind
from sampler.files import check_state_dict
from toy import MLP, MLPConfig, mc_golden

from ..field_errors import guidance_term
from ..spec import Law, Method, Schedule
from ..sweep import cell_kind
from .ledger import Claim, Outcome

__all__ = ["CLAIM", "ReleasedMLP", "load_released", "released_dir", "PaperFigureCell", "PaperFigure", "RELEASED_ENV"]

RELEASED_ENV = "REG_GUIDANCE_RELEASED_1D"
_KEY_MAP = {"joint_mlp.0.": "inp.", "joint_mlp.2.": "blocks.0.", "joint_mlp.3.": "blocks.1.", "joint_mlp.4.": "blocks.2.",
            "joint_mlp.5.": "out.", "class_emb.": "class_emb."}


class ReleasedMLP(nn.Module):
    """An upstream network on this project's step convention: the upstream code indexes its 20 steps
    ``k = 0..19`` and the schedules here ``t = 1..20``, so ``forward(x, t, cond) = mlp(x, t - 1, cond)``."""

    def __init__(self, mlp: MLP):
        super().__init__()
        self.mlp = mlp

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        return self.mlp(x, t - 1, cond)


def load_released(path: str | Path) -> ReleasedMLP:
    """One released 1-D toy network (upstream key names) as a :class:`ReleasedMLP`. ``ValueError`` naming the
    file for a missing or unreadable file, or keys and shapes that are not the upstream network's."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no released network at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for foreign files
        raise ValueError(f"{path} is not a readable state_dict: {err}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state_dict")
    check_state_dict(state, path, None)  # upstream files carry no digest: non-finite weights are refused
    mapped = {}
    for k, v in state.items():
        new = next((k.replace(old, rep, 1) for old, rep in _KEY_MAP.items() if k.startswith(old)), None)
        if new is None:
            raise ValueError(f"{path}: unexpected key {k!r} (expected upstream keys {sorted(_KEY_MAP)})")
        mapped[new] = v
    mlp = MLP(MLPConfig())
    try:
        mlp.load_state_dict(mapped, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path} does not fit the paper's MLP: {err}") from None
    return ReleasedMLP(mlp).eval()


def released_dir() -> Path | None:
    """Where the released networks are: ``$REG_GUIDANCE_RELEASED_1D``, else the reference folder beside the
    project (``../shared/reference/official_1d_toy``) when it exists."""
    env = os.environ.get(RELEASED_ENV)
    if env:
        return Path(env)
    guess = Path(__file__).resolve().parents[3] / "shared" / "reference" / "official_1d_toy"
    return guess if (guess / "released_cond.pth").is_file() else None


@dataclass(frozen=True)
class PaperFigureCell:
    cond_path: str
    uncond_path: str
    w: float = 1.0
    points: int = 301  # grid on [-1, 2], as the paper's (which has 1000)
    rollouts: int = 100
    seed: int = 0

    @property
    def cost(self) -> float:
        return 20.0 * self.points * self.rollouts


class PaperFigure(NamedTuple):
    t: np.ndarray  # [T] steps 1..20 (the paper's titles: t = 1..20)
    x: np.ndarray  # [N]
    exact: np.ndarray  # [T, N] exact grid golden of the networks' chain (eps units)
    mc: np.ndarray  # [T, N] the paper's Monte Carlo golden
    ideal: np.ndarray  # [T, N] exact ideal-chain golden of the analytic mixture (what the networks learned)
    cfg: np.ndarray  # [T, N]
    reg: np.ndarray  # [T, N]
    mc_error: np.ndarray  # [T] mean |MC - exact|
    cfg_gap: np.ndarray  # [T] mean |exact - CFG|
    reg_gap: np.ndarray  # [T] mean |exact - REG|
    cfg_gap_mc: np.ndarray  # [T] mean |MC - CFG| (the paper's own comparison)
    reg_gap_mc: np.ndarray  # [T]
    paper_png: str  # the paper's figure beside the networks, if shipped there ("" otherwise)


@cell_kind(PaperFigureCell)
def paper_figure(cell: PaperFigureCell) -> PaperFigure:
    p = Law.parse("paper_1d").build()  # the released networks' data (unconditional means -2, 0)
    sched = Schedule.parse("paper").vp
    net_c, net_u = load_released(cell.cond_path), load_released(cell.uncond_path)
    c, u = bind(EpsModel(net_c, sched), 0), bind(EpsModel(net_u, sched), None)
    reward = Method("cfg", cell.w).reward(p)
    cfg_g, reg_g = (Method("cfg", cell.w, reg=r).guide(c, u, sched.sampling_sigmas()) for r in ("", "paper"))
    axis = torch.linspace(-1.0, 2.0, cell.points, dtype=torch.float64)
    eps_c = eps_from_denoiser(c, sched)
    exact = chain_golden(eps_c, reward.log_r0, sched, axis).golden[..., 0]  # [T, N]
    mc = mc_golden(eps_c, reward.log_r0, sched, axis[:, None], n_rollouts=cell.rollouts, seed=cell.seed).golden[..., 0]
    cfg, reg, ideal = [], [], []
    for t in range(1, sched.T + 1):
        a = sched.abar[t].item()
        cfg.append(guidance_term(cfg_g, c, axis[:, None], a)[:, 0])
        reg.append(guidance_term(reg_g, c, axis[:, None], a)[:, 0])
        ideal.append(golden_on_grid(p.cond, reward, axis, a).golden.reshape(-1))
    cfg, reg, ideal = torch.stack(cfg), torch.stack(reg), torch.stack(ideal)
    gap = lambda f, g: (f - g).abs().mean(1).numpy()  # noqa: E731
    png = Path(cell.cond_path).parent / "paper_figure_compare_t10.png"
    return PaperFigure(np.arange(1, sched.T + 1), axis.numpy(), exact.numpy(), mc.numpy(), ideal.numpy(), cfg.numpy(),
                       reg.numpy(), gap(mc, exact), gap(exact, cfg), gap(exact, reg), gap(mc, cfg), gap(mc, reg),
                       str(png) if png.is_file() else "")


def _cell(quick: bool) -> PaperFigureCell:
    d = released_dir()
    if d is None:
        raise ValueError(f"the released networks are not found: set {RELEASED_ENV} to their folder")
    return PaperFigureCell(str(d / "released_cond.pth"), str(d / "released_uncond.pth"),
                           points=61 if quick else 301, rollouts=20 if quick else 100)


def cells(quick: bool) -> list:
    return [_cell(quick)]


def conclude(quick: bool, results) -> Outcome:
    f: PaperFigure = results[0]
    closer = f.reg_gap < f.cfg_gap
    closer_mc = f.reg_gap_mc < f.cfg_gap_mc
    steps_worse = [int(t) for t, c in zip(f.t, closer) if not c]
    numbers = [("steps where REG is closer to the exact chain golden", closer.sum()),
               ("steps where REG is closer to the MC golden", closer_mc.sum()),
               ("mean |exact - CFG| over steps", f.cfg_gap.mean()), ("mean |exact - REG| over steps", f.reg_gap.mean()),
               ("mean |MC - exact| over steps", f.mc_error.mean()), ("max |MC - exact| (step mean)", f.mc_error.max()),
               ("step of the largest MC error", f.t[int(np.argmax(f.mc_error))])]
    numbers += [(f"t={t}: {name}", v) for t in (1, 10, 20) for name, v in
                (("|MC - exact|", f.mc_error[t - 1]), ("|exact - CFG|", f.cfg_gap[t - 1]),
                 ("|exact - REG|", f.reg_gap[t - 1]))]
    key = (f"REG closer than CFG at {closer.sum()}/{len(f.t)} steps (mean gap {f.reg_gap.mean():.3f} vs "
           f"{f.cfg_gap.mean():.3f}); the paper's MC golden is off by {f.mc_error.mean():.3f} on average "
           f"(up to {f.mc_error.max():.3f} at t = {f.t[int(np.argmax(f.mc_error))]})")
    if closer.all():
        verdict = "holds"
    elif closer.mean() >= 0.5:
        verdict = f"holds only when t is not in {steps_worse} (there CFG is as close or closer)"
    else:
        verdict = "fails"
    return Outcome(CLAIM.result(verdict, key, numbers), f)


def _requires() -> str:
    return "" if released_dir() is not None else (
        f"needs the REG paper's released 1-D networks (released_cond.pth, released_uncond.pth; MIT): set "
        f"{RELEASED_ENV} to their folder")


CLAIM = Claim(
    id="paper-figure", source="2501.18865", title="The paper's 1-D figure: REG is closer to the golden than CFG",
    statement=("On the 1-D toy (released networks, T = 20, w = 1), REG's guidance term is closer to the golden "
               "(the gradient of log E_t of the networks' own chain) than CFG's at every step (paper's Figs. 1/5; "
               "from memory of the paper and its code, official_code_notes.md 1.6)."),
    provenance="memory",
    experiment=("Released state_dicts loaded into toy.MLP; exact grid golden of their chain (analytic.chain_golden) "
                "beside the paper's Monte Carlo golden (toy.mc_golden, 100 rollouts), CFG and REG terms on 301 "
                "points of [-1, 2] at every step; mean absolute gaps per step."),
    figure="claims_paper_figure", cells=cells, conclude=conclude, requires=_requires)
