"""Output files of the entry points: check the folder before the work, write results atomically (both
written once, in :mod:`sampler.files`, the lowest floor, so the toy and image entry points use them too)."""
from __future__ import annotations

from sampler.files import check_writable_dir, write_atomically

__all__ = ["check_writable_dir", "write_atomically", "check_cli_arguments"]


def check_cli_arguments(ap, workers: int, *folders) -> None:
    """An entry point's first checks, as argparse errors before any work: ``--workers`` >= 1 and every output
    folder in ``folders`` writable."""
    if workers < 1:
        ap.error(f"--workers must be >= 1, got {workers}")
    try:
        for folder in folders:
            check_writable_dir(folder)
    except OSError as err:
        ap.error(f"cannot write the output: {err}")
