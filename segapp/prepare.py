"""Turn the competition download into a training set: ``python -m segapp.prepare --raw RAW --out DATA``.

Input, the UW-Madison GI Tract layout: ``RAW/train.csv`` and ``RAW/train/caseN/caseN_dayD/scans/``
(16-bit PNGs). Output, the layout training reads: ``DATA/{train,valid}/{images,masks}/`` plus
``DATA/prepare_summary.json``; by default split by case (no patient on both sides), overlapping
organs resolved by "the smaller organ wins", and nothing half-written.

This module is the command line only: the conversion and its rules are
:func:`segapp.io.competition.prepare` (reading the raw layout: :mod:`segapp.io.competition_raw`).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

from segapp.io.competition import (
    DEFAULT_EMPTY_FRACTION,
    DEFAULT_SEED,
    DEFAULT_VALID_FRACTION,
    format_summary,
    prepare,
)
from segapp.io.competition_raw import PrepareError


def _fraction(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in 0..1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m segapp.prepare",
        description="Convert the UW-Madison GI Tract download (train.csv + 16-bit scans) into "
        "DATA/{train,valid}/{images,masks}.",
    )
    parser.add_argument("--raw", required=True, help="competition folder holding train.csv and train/")
    parser.add_argument("--out", required=True, help="data folder to create")
    parser.add_argument(
        "--valid-fraction",
        type=_fraction,
        default=DEFAULT_VALID_FRACTION,
        help=f"share of slices for validation (default {DEFAULT_VALID_FRACTION})",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"split seed (default {DEFAULT_SEED})")
    parser.add_argument(
        "--split",
        choices=("case", "slice"),
        default="case",
        help="case: no patient on both sides (default); slice: the notebook's leaky split",
    )
    empty = parser.add_mutually_exclusive_group()
    empty.add_argument("--keep-empty", action="store_true", help="keep every training slice without organs")
    empty.add_argument(
        "--empty-fraction",
        type=_fraction,
        default=DEFAULT_EMPTY_FRACTION,
        help=f"share of training slices without organs to keep (default {DEFAULT_EMPTY_FRACTION}); "
        "validation keeps them all",
    )
    parser.add_argument("--workers", type=int, default=None, help="conversion threads (default: up to 8)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a non-empty --out once the new one is done"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, prepare, print the summary; returns the exit status (0, 2 on an error with its message)."""
    args = build_parser().parse_args(argv)
    try:
        summary = prepare(
            args.raw,
            args.out,
            valid_fraction=args.valid_fraction,
            seed=args.seed,
            split=args.split,
            empty_fraction=args.empty_fraction,
            keep_empty=args.keep_empty,
            workers=args.workers,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except PrepareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
