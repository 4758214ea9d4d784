"""Segment many slices: ``python -m segapp.predict INPUT... --out OUT_DIR``.

INPUT: image files, folders (searched recursively) or glob patterns (``"scans/**/*.png"``).
Every input file keeps its name below ``OUT_DIR``: a file given directly by its name, a file
found in a folder or by a pattern by its path relative to that folder (or to the pattern's
fixed leading part). With ``.png`` as extension:

- ``png``: ``OUT_DIR/masks/REL.png``, class-id masks (0 background, 1 stomach, 2 small bowel,
  3 large bowel), the training masks' format;
- ``overlay``: ``OUT_DIR/overlays/REL.png``, the organs' colours blended onto the slice;
- ``rle``: ``OUT_DIR/submission.csv``, competition style: ``id,class,predicted``, three rows
  per slice (``large_bowel``, ``small_bowel``, ``stomach``), ``predicted`` the run-length code
  (:mod:`segapp.io.rle`). Ids ``caseN_dayD_slice_SSSS`` come from the file names or their
  folders; other files use their relative path without extension.
- always ``OUT_DIR/stats.csv``: one row per slice, pixels, area in mm² (when the name gives
  the pixel spacing) and mean confidence per organ.

Volumes are inputs too, told apart by content: a DICOM folder (any folder holding DICOM files),
a ``.zip`` of one, a DICOM file (a single slice or an enhanced multi-frame image), a ``.nii`` /
``.nii.gz`` file. Each is read whole (:func:`segapp.read_volume`), segmented slice by slice through
the same batched path, and written to ``OUT_DIR/<volume name>/`` in the volume formats:

- ``nifti``: ``segmentation.nii.gz`` (uint8 label map on the input's grid) with ``labels.json``,
  ``labels.itksnap.txt`` and ``labels.ctbl`` beside it;
- ``dicom-seg``: ``seg.dcm``; ``rtstruct``: ``rtstruct.dcm`` (DICOM inputs only);
- always one row per volume in ``OUT_DIR/volumes.csv``: geometry and, per organ, mL, voxels,
  slice range, largest area in mm² and mean confidence.

``nifti`` also assembles the slices of each competition case-day found among the slice inputs
(``caseN_dayD`` names) into ``OUT_DIR/caseN_dayD/``. ``all`` means every format that applies to
each input. The volume name is the input's own file or folder name (never anything read from
DICOM headers).

Slices of the same size are batched together (on the GPU when there is one). Files that
cannot be read are reported and skipped; the exit status is 1 when anything failed.

A 2.5D model (``segapp_context_offsets`` in its folder) gets each slice input with its neighbours
of the same case-day among the inputs, found by their competition names; slices without any are
segmented with themselves in every channel, and one ``note`` line counts them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from segapp.cli import (
    add_compile_option,
    add_device_option,
    add_min_region_option,
    add_runtime_option,
    add_weights_option,
)
from segapp.inference.batch import FORMATS, PredictError, predict
from segapp.model.weights import ModelLoadError

__all__ = ["build_parser", "main", "predict"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m segapp.predict",
        description="Segment slices (files, folders, glob patterns) and write masks, overlays, "
        "a competition submission.csv and stats.csv.",
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image file, folder (recursive) or glob pattern"
    )
    parser.add_argument("--out", required=True, help="output folder")
    add_weights_option(parser)
    parser.add_argument("--batch-size", type=int, default=16, help="slices per forward pass (default 16)")
    parser.add_argument(
        "--format",
        dest="formats",
        action="extend",
        type=_format_list,
        help="comma-separated, repeatable. Slices: png (class-id masks, the default), overlay, rle "
        "(submission.csv). Volumes: nifti (segmentation.nii.gz + label tables), dicom-seg (seg.dcm), "
        "rtstruct (rtstruct.dcm; both DICOM inputs only). all: every format that applies to each input",
    )
    add_device_option(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_min_region_option(parser)
    add_compile_option(parser)
    add_runtime_option(parser)
    parser.add_argument("--series", metavar="UID", default=None,
                        help="SeriesInstanceUID to read from DICOM inputs holding several series")
    return parser


def _format_list(text: str) -> list[str]:
    """argparse type of --format: comma-separated names, each checked."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    for name in names:
        if name not in (*FORMATS, "all"):
            raise argparse.ArgumentTypeError(f"unknown format {name!r}; choose from {', '.join(FORMATS)} or all")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = predict(
            args.inputs,
            out=args.out,
            weights=args.weights,
            formats=args.formats or ("png",),
            batch_size=args.batch_size,
            device=args.device,
            progress=not args.no_progress,
            min_region_px=args.min_region_px,
            compile=args.compile,
            runtime=args.runtime,
            series=args.series,
        )
    except (PredictError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports for every process
        return 1 if summary.failed else 0
    outputs = ", ".join(f"{kind}: {path}" for kind, path in summary.files.items())
    done = f"{summary.predicted} slices segmented ({summary.images_per_s:.1f} slices/s)"
    if summary.volumes:
        done += f", {summary.volumes} volume(s)"
    print(f"{done}; {outputs}")
    if summary.failed:
        print(f"{len(summary.failed)} input(s) skipped or failed (listed above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
