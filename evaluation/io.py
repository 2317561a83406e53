"""Output files of the entry points: check the folder before the work, write results atomically (both
written once, in :mod:`sampler.files`, the lowest floor, so the toy and image entry points use them too), and the
entry points' first checks of their arguments as argparse errors."""
from __future__ import annotations

import os
from pathlib import Path

from sampler.files import check_writable_dir, write_atomically

from .sweep import CACHE_ENV, check_scheduler, default_cache_dir

__all__ = ["check_writable_dir", "write_atomically", "check_cli_arguments", "check_sweep_arguments"]


def check_cli_arguments(ap, workers: int, *folders, scheduler: str | None = None) -> None:
    """An entry point's first checks, as argparse errors before any work: ``--workers`` >= 1, every output
    folder in ``folders`` writable, then its cell sweep (:func:`check_sweep_arguments`: the default cell cache
    writable, ``scheduler`` a Dask address)."""
    if workers < 1:
        ap.error(f"--workers must be >= 1, got {workers}")
    try:
        for folder in folders:
            check_writable_dir(folder)
    except OSError as err:
        ap.error(f"cannot write the output: {err}")
    check_sweep_arguments(ap, None, scheduler)


def _cache_source(cache: Path | None) -> str:
    """Which setting chose the cell cache folder (for the error message)."""
    if cache is not None:
        return "--cache"
    return f"${CACHE_ENV}" if os.environ.get(CACHE_ENV) else f"the default; set ${CACHE_ENV} to choose another"


def check_sweep_arguments(ap, cache: Path | None, scheduler: str | None = None) -> Path:
    """An entry point's checks of its cell sweep, as argparse errors before any work: ``--scheduler`` a Dask
    address (:func:`evaluation.sweep.check_scheduler`, the check :func:`~evaluation.sweep.run_cells` makes) and the
    cell cache (``--cache``, else ``$REG_GUIDANCE_CACHE`` or the default folder) writable, the error naming the
    setting that chose it. Returns the cache folder."""
    try:
        check_scheduler(scheduler)
    except ValueError as err:
        ap.error(f"--scheduler: {err}")
    folder = Path(cache) if cache is not None else default_cache_dir()
    try:
        check_writable_dir(folder)
    except OSError as err:
        ap.error(f"cannot write to the cell cache {folder} ({_cache_source(cache)}): {err.strerror or err}")
    return folder
