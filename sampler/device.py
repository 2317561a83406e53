"""Device choice for entry points and loaders (ARCHITECTURE.md contract 6: never hard-code CUDA)."""
from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when present, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:i"`` or a ``torch.device`` as
    given. ``ValueError`` for anything else, or for CUDA on a machine without it."""
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif isinstance(device, str) and device.split(":")[0] in ("cpu", "cuda"):
        try:
            dev = torch.device(device)
        except RuntimeError:  # 'cuda:x', 'cpu:-1': torch's "Invalid device string"
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}") from None
    else:
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available")
    return dev
