"""A small digits classifier, the feature network of the download-free metrics (``images.metrics``).

Two 3x3 convs (the second with stride 2), a hidden layer of ``features`` units (the penultimate
features used for the Frechet distance, like Inception's pool features for FID) and a linear head.
Trained on the training split only (random 1-pixel shifts as augmentation), so the held-out images
stay unseen by both the diffusion model and the classifier.

    python -m images.classifier [--out out/images/checkpoints/digits_classifier.pt] [--steps 1500] [--seed 0]

(the shipped ``images/checkpoints/digits_classifier.pt`` is replaced only when ``--out`` names it).
"""
from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple, Optional

import torch
from torch import nn
from torch.nn import functional as F

from sampler.files import check_state_dict, check_writable_dir, save_torch_atomically, state_dict_sha256

from .data import DigitsSplit, load_digits_split
from .train import CHECKPOINT_DIR, TRAIN_OUT, resolve_device

__all__ = [
    "ClassifierConfig",
    "DigitsClassifier",
    "train_classifier",
    "save_classifier",
    "load_classifier",
    "DEFAULT_CLASSIFIER",
]

FORMAT, VERSION = "reg-guidance/digits-classifier", 1
DEFAULT_CLASSIFIER = CHECKPOINT_DIR / "digits_classifier.pt"


@dataclass(frozen=True)
class ClassifierConfig:
    num_classes: int = 10
    channels: int = 1
    size: int = 8
    width: int = 32
    features: int = 64

    def __post_init__(self):
        for name in ("num_classes", "channels", "size", "width", "features"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.size % 2:
            raise ValueError(f"size must be even, got {self.size}")


class DigitsClassifier(nn.Module):
    """``logits = head(features(x))``; ``x`` [N, C, H, W] in [-1, 1]."""

    def __init__(self, config: ClassifierConfig = ClassifierConfig()):
        super().__init__()
        if not isinstance(config, ClassifierConfig):
            raise ValueError(f"config must be a ClassifierConfig, got {config!r}")
        self.config = c = config
        self.conv1 = nn.Conv2d(c.channels, c.width, 3, padding=1)
        self.conv2 = nn.Conv2d(c.width, 2 * c.width, 3, stride=2, padding=1)
        self.hidden = nn.Linear(2 * c.width * (c.size // 2) ** 2, c.features)
        self.head = nn.Linear(c.features, c.num_classes)

    def _check(self, x: torch.Tensor) -> None:
        c = self.config
        if x.ndim != 4 or tuple(x.shape[1:]) != (c.channels, c.size, c.size):
            raise ValueError(f"expected images [N, {c.channels}, {c.size}, {c.size}], got {tuple(x.shape)}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features [N, features]."""
        self._check(x)
        h = F.silu(self.conv1(x))
        h = F.silu(self.conv2(h))
        return F.silu(self.hidden(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # [N, num_classes]


def _shift(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random shifts by -1, 0 or 1 pixel per image and axis, background -1 filled in."""
    n, _, h, w = x.shape
    pad = F.pad(x, (1, 1, 1, 1), value=-1.0)
    dy, dx = torch.randint(0, 3, (n,), generator=g), torch.randint(0, 3, (n,), generator=g)
    rows = (dy[:, None] + torch.arange(h)[None]).to(x.device)  # [N, H]
    cols = (dx[:, None] + torch.arange(w)[None]).to(x.device)  # [N, W]
    idx_n = torch.arange(n, device=x.device)[:, None, None]
    return pad[idx_n, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


class ClassifierResult(NamedTuple):
    net: DigitsClassifier
    test_accuracy: float
    seconds: float


def train_classifier(
    config: ClassifierConfig = ClassifierConfig(),
    data: Optional[DigitsSplit] = None,
    *,
    steps: int = 1500,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> ClassifierResult:
    """Train on ``data.train_*`` (default split), report accuracy on ``data.test_*``."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    dev = resolve_device(device)
    data = load_digits_split() if data is None else data
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DigitsClassifier(config)
    net.to(dev).train()
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
    x_all, y_all = data.train_x.to(dev), data.train_y.to(dev)
    it = range(steps)
    if progress:
        from tqdm.auto import tqdm  # noqa: PLC0415

        it = tqdm(it, desc="train digits classifier")
    t0 = time.perf_counter()
    for i in it:
        idx = torch.randint(0, x_all.shape[0], (batch_size,), generator=g).to(dev)
        x = _shift(x_all[idx], g)
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * i / steps))
        loss = F.cross_entropy(net(x), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval().requires_grad_(False)
    with torch.no_grad():
        acc = (net(data.test_x.to(dev)).argmax(1).cpu() == data.test_y).float().mean().item()
    return ClassifierResult(net, acc, time.perf_counter() - t0)


def save_classifier(path: str | os.PathLike, net: DigitsClassifier, log: Optional[dict] = None) -> Path:
    """Write the classifier's state_dict (on the CPU), configuration and sha256, atomically (the previous
    file survives a failed save)."""
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    return save_torch_atomically({"format": FORMAT, "version": VERSION, "config": asdict(net.config), "state_dict": state,
                                  "sha256": state_dict_sha256(state), "log": dict(log or {})}, path)


def load_classifier(path: str | os.PathLike = DEFAULT_CLASSIFIER, device: str | torch.device = "cpu") -> DigitsClassifier:
    """The classifier (eval mode, frozen) from a checkpoint; ``ValueError`` naming the file for a missing,
    foreign or inconsistent file, non-finite weights, or weights that do not match their stored sha256
    (checkpoints written before it was stored get the finiteness check only)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no classifier checkpoint at {str(path)!r}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"{str(path)!r} is not a readable torch checkpoint: {err}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or ckpt.get("version") != VERSION:
        got = (ckpt.get("format"), ckpt.get("version")) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{str(path)!r} is not a digits-classifier checkpoint v{VERSION} (got {got!r})")
    try:
        net = DigitsClassifier(ClassifierConfig(**ckpt["config"]))
        check_state_dict(ckpt["state_dict"], path, ckpt.get("sha256"))
        net.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, RuntimeError) as err:
        raise ValueError(f"classifier checkpoint {str(path)!r} is inconsistent: {err}") from err
    return net.to(resolve_device(device)).eval().requires_grad_(False)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m images.classifier", description="Train the digits classifier behind "
                                "FD-digits and the score.", allow_abbrev=False)
    p.add_argument("--out", default=str(TRAIN_OUT / DEFAULT_CLASSIFIER.name),
                   help=f"checkpoint file (default %(default)s, relative to the working folder); the shipped "
                   f"{DEFAULT_CLASSIFIER} that images.run reads is replaced only when its path is passed here")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    if a.threads is not None and a.threads < 1:  # 0 used to be dropped silently (issue 11, defect 12)
        p.error(f"--threads must be >= 1, got {a.threads}")
    if a.steps < 1:
        p.error(f"--steps must be >= 1, got {a.steps}")
    try:
        check_writable_dir(Path(a.out).parent)
    except OSError as err:
        p.error(f"cannot write to --out {a.out}: {err}")
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    res = train_classifier(steps=a.steps, seed=a.seed, device=a.device)
    out = save_classifier(a.out, res.net, {"test_accuracy": res.test_accuracy, "seconds": res.seconds, "steps": a.steps})
    print(f"saved {out}: held-out accuracy {res.test_accuracy:.4f} ({res.seconds:.0f} s)")


if __name__ == "__main__":
    main()
