"""Output files of the entry points: check the folder before the work, write results atomically."""
from __future__ import annotations

from pathlib import Path

from sampler.files import write_atomically

__all__ = ["check_writable_dir", "write_atomically"]


def check_writable_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and check it takes a file, before minutes of work are spent;
    ``OSError`` (with the OS's reason) otherwise."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    probe = path / ".write-test"
    probe.write_text("")
    probe.unlink()
    return path
