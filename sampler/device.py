"""Device choice for entry points and loaders (ARCHITECTURE.md contract 6: never hard-code CUDA)."""
from __future__ import annotations

import torch

__all__ = ["resolve_device", "check_generator"]


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


def check_generator(generator, device: torch.device) -> torch.Generator | None:
    """``generator`` when it is ``None`` or a ``torch.Generator`` on ``device`` (where the draws are made), else
    ``ValueError`` naming ``generator`` (torch's own errors name the call, and none at all when nothing is drawn)."""
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__} "
                         f"{generator!r:.80}")
    gen_dev, device = torch.device(generator.device), torch.device(device)
    if gen_dev.type != device.type or (gen_dev.index is not None and device.index is not None
                                       and gen_dev.index != device.index):
        raise ValueError(f"generator is on device {gen_dev}, but the draws are made on {device}: pass a "
                         f"torch.Generator(device={str(device)!r})")
    return generator
