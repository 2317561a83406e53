"""Output files of the entry points: check the folder before the work, write results atomically (both
written once, in :mod:`sampler.files`, the lowest floor, so the toy and image entry points use them too)."""
from __future__ import annotations

from sampler.files import check_writable_dir, write_atomically

__all__ = ["check_writable_dir", "write_atomically"]
