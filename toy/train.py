"""Entry point: ``python -m toy.train --preset NAME [--role ROLE] [--device auto|cpu|cuda] [--out DIR] ...``.

The command only (argument parsing and files); the library it calls is :mod:`toy.training`
(:func:`toy.train_network`).

Trains the toy networks of a preset (every role by default; ``--preset all`` for every preset) with the
paper's hyperparameters unless overridden, and writes ``{out}/{preset}_{role}.pt``. The default ``--out`` is
``out/toy/checkpoints`` (relative to the working folder), so a retraining never replaces the shipped
checkpoints that :func:`toy.load_pretrained` reads; to replace those, pass their folder explicitly
(``--out toy/checkpoints``). Arguments and the output folder are checked before any training.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analytic import PRESETS
from sampler.files import check_writable_dir

from .checkpoints import CHECKPOINT_DIR, checkpoint_path, save_checkpoint
from .data import ROLES
from .training import default_config, resolve_device, train_network

DEFAULT_OUT = Path("out/toy/checkpoints")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m toy.train", description=__doc__.splitlines()[0],
                                 allow_abbrev=False)
    ap.add_argument("--preset", required=True, choices=sorted(PRESETS) + ["all"])
    ap.add_argument("--role", default="all", choices=list(ROLES) + ["all"])
    ap.add_argument("--epochs", type=int, help="default: 200 (weak: 20)")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--n-samples", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--label-dropout", type=float)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:i]")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads while training (default 1, the "
                    "fastest for these small networks)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"output folder (default {DEFAULT_OUT}, relative to the working folder). The shipped "
                    f"checkpoints that toy.load_pretrained reads are in {CHECKPOINT_DIR}: they are replaced only "
                    "when that folder is passed here")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    try:
        device = resolve_device(args.device)
    except ValueError as err:
        ap.error(f"--device: {err}")
    overrides = {k: v for k, v in dict(epochs=args.epochs, batch_size=args.batch_size, n_samples=args.n_samples,
                                       lr=args.lr, label_dropout=args.label_dropout, seed=args.seed).items()
                 if v is not None}
    presets = sorted(PRESETS) if args.preset == "all" else [args.preset]
    roles = list(ROLES) if args.role == "all" else [args.role]
    try:  # every configuration first: a bad value fails before the first network trains
        configs = [default_config(preset, role, **overrides) for preset in presets for role in roles]
    except ValueError as err:
        ap.error(str(err))
    try:
        check_writable_dir(args.out)
    except OSError as err:
        ap.error(f"cannot write to --out {args.out}: {err}")
    for cfg in configs:
        result = train_network(cfg, device=device, progress=not args.no_progress, threads=args.threads)
        path = save_checkpoint(result, checkpoint_path(cfg.preset, cfg.role, args.out))
        print(f"{cfg.preset}/{cfg.role}: {cfg.epochs} epochs in {result.seconds:.1f} s on {device}, "
              f"final loss {result.losses[-1].item():.4f} -> {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
