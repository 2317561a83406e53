"""Real image data that ships inside a package: scikit-learn's handwritten digits (no download).

1,797 grey-scale 8x8 images of the digits 0-9 (UCI optical digits; pixel values 0..16), scaled to
``[-1, 1]`` (``x / 8 - 1``) and split, stratified by class and seeded, into a training and a held-out set.
Optionally brought to 16x16, by padding with the background value ``-1`` (``resize="pad"``, the digit in
the centre) or by nearest-neighbour upsampling (``resize="upsample"``, each pixel a 2x2 block).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

__all__ = ["NUM_CLASSES", "RESIZES", "DigitsSplit", "load_digits_split", "to_unit_range"]

NUM_CLASSES = 10
RESIZES = ("none", "pad", "upsample")


class DigitsSplit(NamedTuple):
    """Images ``[N, 1, H, W]`` float32 in [-1, 1] and labels ``[N]`` int64, for both halves of a split."""

    train_x: torch.Tensor  # [N_train, 1, H, W]
    train_y: torch.Tensor  # [N_train]
    test_x: torch.Tensor  # [N_test, 1, H, W]
    test_y: torch.Tensor  # [N_test]

    @property
    def size(self) -> int:
        return int(self.train_x.shape[-1])

    def train_set(self) -> torch.utils.data.TensorDataset:
        return torch.utils.data.TensorDataset(self.train_x, self.train_y)

    def test_set(self) -> torch.utils.data.TensorDataset:
        return torch.utils.data.TensorDataset(self.test_x, self.test_y)


def _resize(x: torch.Tensor, resize: str) -> torch.Tensor:
    if resize == "none":
        return x
    elif resize == "pad":
        return torch.nn.functional.pad(x, (4, 4, 4, 4), value=-1.0)
    elif resize == "upsample":
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    else:
        raise ValueError(f"unknown resize {resize!r}; choose one of {RESIZES}")


def load_digits_split(test_fraction: float = 0.2, seed: int = 0, resize: str = "none") -> DigitsSplit:
    """The digits as ``DigitsSplit``: a class-stratified random split with ``round(test_fraction * n_c)``
    held-out images of every class ``c``, chosen by a ``numpy`` generator seeded with ``seed``.

    ``resize``: ``"none"`` (8x8), ``"pad"`` or ``"upsample"`` (16x16)."""
    if not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    if resize not in RESIZES:
        raise ValueError(f"unknown resize {resize!r}; choose one of {RESIZES}")
    if isinstance(seed, bool) or int(seed) != seed:
        raise ValueError(f"seed must be an integer, got {seed!r}")
    from sklearn.datasets import load_digits  # noqa: PLC0415 (optional 'images' extra; ships its data)

    digits = load_digits()
    images = np.asarray(digits.images, dtype=np.float32)  # [1797, 8, 8], 0..16
    labels = np.asarray(digits.target, dtype=np.int64)  # [1797]
    rng = np.random.default_rng(int(seed))
    test_idx = []
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == c)
        k = int(round(test_fraction * idx.size))
        test_idx.append(rng.permutation(idx)[:k])
    test_idx = np.sort(np.concatenate(test_idx))
    is_test = np.zeros(labels.size, dtype=bool)
    is_test[test_idx] = True
    x = _resize(torch.from_numpy(images / 8.0 - 1.0)[:, None], resize)  # [N, 1, H, W]
    y = torch.from_numpy(labels)
    tr, te = torch.from_numpy(~is_test), torch.from_numpy(is_test)
    return DigitsSplit(x[tr].contiguous(), y[tr].contiguous(), x[te].contiguous(), y[te].contiguous())


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """Images from [-1, 1] to [0, 1] (clamped), for plotting."""
    return ((x + 1) / 2).clamp(0, 1)
