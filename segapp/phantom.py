"""``python -m segapp.phantom`` (console script ``segapp-phantom``): write a phantom data set.

A thin front over :func:`segapp.synthetic.generate_dataset`; the generator itself lives in
:mod:`segapp.synthetic`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from segapp.cli import non_negative_int
from segapp.synthetic.dataset import generate_dataset


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m segapp.phantom``: write a phantom data set. Returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m segapp.phantom",
        description="Write synthetic abdominal MRI slices with exact stomach and bowel masks.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (absent or empty)")
    parser.add_argument(
        "--train", type=non_negative_int, required=True, help="training slices (raw layout: all slices)"
    )
    parser.add_argument(
        "--valid", type=non_negative_int, default=0, help="validation slices, from other cases (default 0)"
    )
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed; equal seeds give equal files")
    parser.add_argument("--raw", action="store_true", help="competition layout: 16-bit scans and train.csv")
    parser.add_argument("--workers", type=int, default=1, help="processes to render with (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace train/, valid/, train.csv in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        summary = generate_dataset(
            args.out,
            train=args.train,
            valid=args.valid,
            seed=args.seed,
            raw=args.raw,
            progress=not args.quiet,
            workers=max(1, args.workers),
            overwrite=args.overwrite,
        )
    except FileExistsError as exc:
        print(f"error: {exc}; pass --overwrite to replace its train/, valid/ and train.csv", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sizes = ", ".join(f"{size}: {count}" for size, count in sorted(summary["sizes"].items()))
    print(
        f"wrote {summary['train']} train + {summary['valid']} valid slices ({summary['layout']} layout) "
        f"to {summary['out']}: {summary['empty_share']:.0%} without organs; sizes {sizes}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
