"""Output files of the entry points: check the folder before the work, write results atomically."""
from __future__ import annotations

from pathlib import Path

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


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: readers see the old file or the new
    one, never half of one, and a failed write leaves no temporary file behind."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
