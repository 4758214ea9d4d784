"""``python -m segapp.phantom`` (console script ``segapp-phantom``): write a phantom data set,
as PNG slices (notebook or competition layout) or as volumes (NIfTI pairs, DICOM MR series).

A thin front over :func:`segapp.synthetic.generate_dataset`; the generator itself lives in
:mod:`segapp.synthetic`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from segapp.cli import non_negative_int
from segapp.synthetic.anatomy import ANATOMIES, STYLES
from segapp.synthetic.dataset import generate_dataset
from segapp.synthetic.volume_files import ORIENTATIONS, generate_volumes


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m segapp.phantom``: write a phantom data set. Returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m segapp.phantom",
        description="Write synthetic abdominal MRI slices with exact stomach and bowel masks.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (absent or empty)")
    parser.add_argument(
        "--train", type=non_negative_int, default=None,
        help="training slices (raw layout: all slices); needed for --format slices",
    )
    parser.add_argument(
        "--valid", type=non_negative_int, default=0, help="validation slices, from other cases (default 0)"
    )
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed; equal seeds give equal files")
    parser.add_argument("--raw", action="store_true", help="competition layout: 16-bit scans and train.csv")
    parser.add_argument("--workers", type=int, default=1, help="processes to render with (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace train/, valid/, train.csv in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--style", default="mixed", choices=(*STYLES, "mixed"),
                        help="contrast family: bssfp, t2 (HASTE-like), t1, or mixed: drawn per case "
                             "(bssfp 0.5, t2 0.3, t1 0.2; default)")
    parser.add_argument("--anatomy", default="standard", choices=ANATOMIES,
                        help="variant: obese habitus, body cut by the field, arms down, ptosis "
                             "(for generalisation checks; default standard)")
    volumes = parser.add_argument_group("volumes (--format nifti or dicom)")
    volumes.add_argument("--format", dest="file_format", default="slices", choices=("slices", "nifti", "dicom"),
                         help="slices: PNG data sets (default); nifti: image + label pairs; dicom: MR series")
    volumes.add_argument("--cases", type=non_negative_int, default=4, help="patient-days to write (default 4)")
    volumes.add_argument("--slices", type=non_negative_int, default=144,
                         help="consecutive slices per volume, centred on the organs (default 144, the whole scan)")
    volumes.add_argument("--orientation", default="standard", choices=(*sorted(ORIENTATIONS), "mixed"),
                         help="how DICOM slices are stored in-plane (mixed: a different one per case)")
    volumes.add_argument("--reverse", action="store_true", help="DICOM slices written head first")
    args = parser.parse_args(argv)
    if args.file_format != "slices":
        return _write_volumes(args)
    if args.train is None:
        parser.error("--train is required for --format slices")
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
            style=args.style,
            anatomy=args.anatomy,
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


def _write_volumes(args: argparse.Namespace) -> int:
    if args.out.exists() and any(args.out.iterdir()) and not args.overwrite:
        print(f"error: {args.out} is not empty; pass --overwrite to write into it", file=sys.stderr)
        return 2
    written = generate_volumes(args.out, cases=args.cases, seed=args.seed, file_format=args.file_format,
                               slices=args.slices, orientation=args.orientation, reverse=args.reverse,
                               style=args.style, anatomy=args.anatomy)
    print(f"wrote {len(written)} phantom volume(s) as {args.file_format} to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
