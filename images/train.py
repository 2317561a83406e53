"""Training the digits UNet with label dropout, and its checkpoints (state_dict + config).

DDPM training (Ho et al. 2020): ``t ~ U{1..T}``, ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``, loss
``|eps - net(x_t, t, y)|^2``, on the linear schedule ``VPSchedule.linear(T)``. Label dropout (Ho &
Salimans 2022): with probability ``p_uncond`` a label is replaced by the null label ``num_classes``, so one
network gives both the conditional and the unconditional prediction CFG needs. An exponential moving
average of the weights (``ema``) is what gets saved. The weak model for autoguidance (Karras et al.
2024) is the same recipe with fewer channels and fewer steps.

    python -m images.train [--out out/images/checkpoints/digits_unet.pt] [--width 16] [--steps 5000] [--seed 0]
        [--device auto|cpu|cuda] [--weak]

writes ``out/images/checkpoints/digits_unet.pt`` (``digits_unet_weak.pt`` with ``--weak``) unless ``--out``
names another file; the shipped checkpoints in ``images/checkpoints`` are replaced only when named.

A checkpoint is a dict ``{"format", "version", "unet", "train", "schedule", "state_dict", "sha256", "log"}`` of
plain values and tensors (``torch.load(weights_only=True)`` reads it), written atomically (a failed save
leaves the previous file intact); :func:`load_model` rebuilds the network from its configuration and
validates everything it reads, naming the file: the schedule (which must have the UNet's ``T``), finite
weights and, when stored (checkpoints written before it was are accepted without), the weights' sha256.
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple, Optional

import torch

from sampler.device import resolve_device
from sampler.files import check_state_dict, check_writable_dir, save_torch_atomically, state_dict_sha256
from sampler.model import EpsModel
from sampler.schedules import VPSchedule, check_number

from .data import RESIZES, DigitsSplit, load_digits_split
from .unet import DigitsUNet, UNetConfig

__all__ = [
    "TrainConfig",
    "TrainResult",
    "resolve_device",
    "train_unet",
    "save_checkpoint",
    "load_unet",
    "load_model",
    "CHECKPOINT_DIR",
    "DEFAULT_CHECKPOINT",
    "WEAK_CHECKPOINT",
]

FORMAT, VERSION = "reg-guidance/digits-unet", 1
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
DEFAULT_CHECKPOINT = CHECKPOINT_DIR / "digits_unet.pt"
TRAIN_OUT = Path("out/images/checkpoints")  # where the training commands write unless told (not the shipped files)
WEAK_CHECKPOINT = CHECKPOINT_DIR / "digits_unet_weak.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (stored in checkpoints). ``beta_start``/``beta_end``: the linear schedule."""

    steps: int = 5000
    batch_size: int = 128
    lr: float = 2e-3
    p_uncond: float = 0.15
    ema: float = 0.995
    seed: int = 0
    beta_start: float = 1e-4
    beta_end: float = 0.02
    test_fraction: float = 0.2
    split_seed: int = 0
    resize: str = "none"

    def __post_init__(self):
        for name in ("steps", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not 0 <= self.p_uncond < 1:
            raise ValueError(f"p_uncond must lie in [0, 1), got {self.p_uncond!r}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must lie in [0, 1), got {self.ema!r}")
        if self.resize not in RESIZES:
            raise ValueError(f"unknown resize {self.resize!r}; choose one of {RESIZES}")


class TrainResult(NamedTuple):
    net: DigitsUNet  # the EMA network, eval mode
    losses: list  # per-step training loss of the raw network
    seconds: float


def _schedule(train: TrainConfig, T: int) -> VPSchedule:
    return VPSchedule.linear(T, train.beta_start, train.beta_end)


def train_unet(
    unet_config: UNetConfig,
    train: TrainConfig,
    data: Optional[DigitsSplit] = None,
    *,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> TrainResult:
    """Train a :class:`DigitsUNet` on ``data.train_x`` (default: ``load_digits_split`` with the split in
    ``train``). Deterministic for a given seed and device: one ``torch.Generator`` drives initialisation,
    batches, timesteps, noise and label dropout."""
    dev = resolve_device(device)
    if data is None:
        data = load_digits_split(train.test_fraction, train.split_seed, train.resize)
    x_all, y_all = data.train_x, data.train_y
    if tuple(x_all.shape[1:]) != (unet_config.channels, unet_config.size, unet_config.size):
        raise ValueError(
            f"data images have shape {tuple(x_all.shape[1:])}, the UNet expects "
            f"{(unet_config.channels, unet_config.size, unet_config.size)}"
        )
    if int(y_all.max()) >= unet_config.num_classes:
        raise ValueError(f"labels reach {int(y_all.max())}, the UNet has {unet_config.num_classes} classes")
    g = torch.Generator().manual_seed(train.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train.seed)
        net = DigitsUNet(unet_config)
    net.to(dev).train()
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    sched = _schedule(train, unet_config.T)
    opt = torch.optim.Adam(net.parameters(), lr=train.lr)
    warmup = max(1, min(100, train.steps // 10))
    lr_at = lambda i: train.lr * min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * i / train.steps))  # noqa: E731
    x_all, y_all = x_all.to(dev), y_all.to(dev)
    losses = []
    steps = range(train.steps)
    if progress:
        from tqdm.auto import tqdm  # noqa: PLC0415

        steps = tqdm(steps, desc=f"train digits UNet (width {unet_config.width})")
    t0 = time.perf_counter()
    for i in steps:
        idx = torch.randint(0, x_all.shape[0], (train.batch_size,), generator=g).to(dev)
        x0, y = x_all[idx], y_all[idx].clone()
        t = torch.randint(1, unet_config.T + 1, (train.batch_size,), generator=g).to(dev)
        eps = torch.randn(x0.shape, generator=g).to(dev)
        drop = (torch.rand(train.batch_size, generator=g) < train.p_uncond).to(dev)
        y[drop] = unet_config.num_classes  # the null label
        x_t = sched.add_noise(x0, eps, t)
        loss = torch.nn.functional.mse_loss(net(x_t, t, y), eps)
        for group in opt.param_groups:
            group["lr"] = lr_at(i)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            decay = min(train.ema, (1 + i) / (10 + i))
            for pe, p in zip(ema.parameters(), net.parameters()):
                pe.lerp_(p, 1 - decay)
        losses.append(loss.item())
        if progress and i % 50 == 0:
            steps.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
    return TrainResult(ema, losses, time.perf_counter() - t0)


# --- checkpoints ------------------------------------------------------------------------------------
def save_checkpoint(path: str | os.PathLike, net: DigitsUNet, train: TrainConfig, log: Optional[dict] = None) -> Path:
    """Write ``net``'s state_dict (on the CPU) with its UNet and training configurations and its sha256,
    atomically (the previous file survives a failed save)."""
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "unet": net.config.to_dict(),
        "train": asdict(train),
        "schedule": {"kind": "linear", "T": net.config.T, "beta_start": train.beta_start, "beta_end": train.beta_end},
        "state_dict": state,
        "sha256": state_dict_sha256(state),
        "log": dict(log or {}),
    }
    return save_torch_atomically(ckpt, path)


def _read(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint file at {str(path)!r}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (any unreadable file is the same user error)
        raise ValueError(f"{str(path)!r} is not a readable torch checkpoint: {err}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{str(path)!r} is not a digits-UNet checkpoint (format {got!r}, expected {FORMAT!r})")
    if ckpt.get("version") != VERSION:
        raise ValueError(f"{str(path)!r} has checkpoint version {ckpt.get('version')!r}, this code reads {VERSION}")
    for key in ("unet", "schedule", "state_dict"):
        if key not in ckpt:
            raise ValueError(f"checkpoint {str(path)!r} lacks {key!r}")
    return ckpt


def _read_schedule(s, path) -> VPSchedule:
    """The linear schedule stored as ``{"kind": "linear", "T", "beta_start", "beta_end"}``; ``ValueError``
    naming the file for anything else."""
    if not isinstance(s, dict) or s.get("kind") != "linear":
        raise ValueError(f"checkpoint {str(path)!r} has an unknown schedule {s!r} (expected kind 'linear')")
    missing = [k for k in ("T", "beta_start", "beta_end") if k not in s]
    if missing:
        raise ValueError(f"checkpoint {str(path)!r}: its schedule {s!r} lacks {missing}")
    T = s["T"]
    if isinstance(T, bool) or not isinstance(T, int):
        raise ValueError(f"checkpoint {str(path)!r}: schedule T must be an integer, got {T!r}")
    try:
        return VPSchedule.linear(T, check_number(s["beta_start"], "beta_start"), check_number(s["beta_end"], "beta_end"))
    except ValueError as err:
        raise ValueError(f"checkpoint {str(path)!r} has an invalid schedule {s!r}: {err}") from err


def load_unet(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[DigitsUNet, VPSchedule]:
    """The network (eval mode, parameters frozen) and its training schedule from a checkpoint."""
    ckpt = _read(path)
    try:
        config = UNetConfig(**ckpt["unet"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"checkpoint {str(path)!r} has an invalid UNet configuration: {err}") from err
    sched = _read_schedule(ckpt["schedule"], path)
    if sched.T != config.T:
        raise ValueError(f"checkpoint {str(path)!r}: its schedule has T = {sched.T} steps, its UNet was built "
                         f"for T = {config.T}")
    check_state_dict(ckpt["state_dict"], path, ckpt.get("sha256"))
    net = DigitsUNet(config)
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"checkpoint {str(path)!r} does not match its configuration: {err}") from err
    return net.to(resolve_device(device)).eval().requires_grad_(False), sched


def load_model(
    path: str | os.PathLike = DEFAULT_CHECKPOINT, device: str | torch.device = "cpu", steps: Optional[int] = None
) -> EpsModel:
    """A checkpoint as a contract model ``EpsModel(net, schedule)``; ``steps`` respaces the schedule
    (the sampler then walks ``model.schedule.sampling_sigmas()``)."""
    net, sched = load_unet(path, device)
    return EpsModel(net, sched if steps is None else sched.respace(steps))


# --- entry point --------------------------------------------------------------------------------
def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m images.train", description="Train the class-conditional digits UNet "
                                "(label dropout).", allow_abbrev=False)
    p.add_argument("--out", default=None,
                   help=f"checkpoint file (default {TRAIN_OUT / DEFAULT_CHECKPOINT.name}, with --weak "
                   f"{TRAIN_OUT / WEAK_CHECKPOINT.name}, relative to the working folder). The shipped checkpoints "
                   f"that images.run reads ({DEFAULT_CHECKPOINT}, {WEAK_CHECKPOINT.name}) are replaced only when "
                   "their path is passed here")
    p.add_argument("--weak", action="store_true", help="the autoguidance weak model: width 8, 1000 steps")
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--p-uncond", type=float, default=0.15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resize", default="none", choices=RESIZES)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    a = p.parse_args(argv)
    if a.threads is not None and a.threads < 1:  # 0 used to be dropped silently (issue 11, defect 12)
        p.error(f"--threads must be >= 1, got {a.threads}")
    if a.out is None:
        a.out = str(TRAIN_OUT / (WEAK_CHECKPOINT if a.weak else DEFAULT_CHECKPOINT).name)
    width = (8 if a.weak else 16) if a.width is None else a.width  # --width 0 / --steps 0 were read as "default"
    steps = (1000 if a.weak else 5000) if a.steps is None else a.steps
    size = 16 if a.resize != "none" else 8
    try:
        uc = UNetConfig(width=width, size=size, groups=math.gcd(8, width))
        tc = TrainConfig(steps=steps, batch_size=a.batch_size, lr=a.lr, p_uncond=a.p_uncond, seed=a.seed,
                         resize=a.resize)
    except ValueError as err:
        p.error(str(err))
    try:
        check_writable_dir(Path(a.out).parent)
    except OSError as err:
        p.error(f"cannot write to --out {a.out}: {err}")
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    res = train_unet(uc, tc, device=a.device)
    n_params = sum(p.numel() for p in res.net.parameters())
    log = {"seconds": res.seconds, "final_loss": sum(res.losses[-200:]) / len(res.losses[-200:]), "parameters": n_params}
    out = save_checkpoint(a.out, res.net, tc, log)
    print(f"saved {out} ({n_params} parameters, {res.seconds:.0f} s, final loss {log['final_loss']:.4f})")


if __name__ == "__main__":
    main()
