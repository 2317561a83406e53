"""Files every package writes and reads: atomic writes, and the integrity of saved network weights.

It sits in the lowest floor because the image path (which may import only ``sampler``) writes checkpoints
too; :mod:`evaluation.io`, :mod:`toy.checkpoints`, :mod:`images.train` and :mod:`images.classifier` all
write through :func:`write_atomically` and seal/verify weights with :func:`state_dict_sha256` and
:func:`check_state_dict` (issue 11, defects 7 and 8); every entry point checks its output folder before
the work with :func:`check_writable_dir`.
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Mapping, Optional

import torch

__all__ = ["check_writable_dir", "write_atomically", "save_torch_atomically", "state_dict_sha256", "check_state_dict"]


def check_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) and check it takes a file, before minutes of work are spent;
    ``OSError`` (with the OS's reason) otherwise. Returns the path."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test.")
    os.close(fd)
    os.unlink(probe)
    return path


def write_atomically(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` through a uniquely named temporary file in the same
    folder, fsync and rename (atomic on POSIX): readers, and concurrent writers of the same file, see the old
    file or a whole new one, never a part; a failed write leaves the old file as it was and no temporary file
    behind. The folder must exist (``OSError`` otherwise). Returns the path."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    elif not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"data must be str or bytes, got {type(data).__name__}")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:24]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_torch_atomically(payload, path: str | os.PathLike) -> Path:
    """``torch.save(payload)`` to ``path`` atomically (serialised in memory, then :func:`write_atomically`);
    the parent folder is created. Returns the path."""
    path = Path(path)
    buf = io.BytesIO()
    torch.save(payload, buf)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(path, buf.getvalue())


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of a state dict's tensors: every entry in key order contributes its name, dtype, shape
    and raw bytes (CPU, contiguous), so a flipped bit, a renamed or reshaped entry changes the digest."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key]
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"state_dict entry {key!r} is not a tensor ({type(t).__name__})")
        t = t.detach().to("cpu").contiguous()
        h.update(f"{key}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_state_dict(state_dict, path: str | os.PathLike, sha256: Optional[str]) -> None:
    """``ValueError`` naming ``path`` unless ``state_dict`` is a dict of tensors, all floating entries finite,
    and (when the checkpoint stores one) its :func:`state_dict_sha256` equals ``sha256``. Checkpoints written
    before digests were stored (``sha256 is None``) get the finiteness check only."""
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"checkpoint {str(path)!r}: state_dict is a {type(state_dict).__name__}, not a dict of tensors")
    for key, t in state_dict.items():
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"checkpoint {str(path)!r}: state_dict entry {key!r} is not a tensor ({type(t).__name__})")
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ValueError(f"checkpoint {str(path)!r}: weights {key!r} have {bad} non-finite value(s) (corrupt file)")
    if sha256 is None:
        return
    if not isinstance(sha256, str):
        raise ValueError(f"checkpoint {str(path)!r}: stored sha256 is a {type(sha256).__name__}, not a hex string")
    got = state_dict_sha256(state_dict)
    if got != sha256:
        raise ValueError(f"checkpoint {str(path)!r}: weights do not match their stored sha256 "
                         f"({got[:12]}... != {sha256[:12]}...): the file is corrupt or was altered")
