"""Score weights on labelled slices: ``python -m segapp.evaluate --data DATA_DIR/valid``.

Prints a per-class table (Dice, IoU, Hausdorff 95 in pixels and mm, and the normalised 3D
Hausdorff) and the competition score, and writes JSON. The work is
:mod:`segapp.metrics.evaluation` (:func:`evaluate` for a slice split, :func:`evaluate_volumes` for
labelled volumes). Per-slice results are optional (``--per-slice FILE.csv``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from segapp.cli import add_device_option, add_min_region_option, add_runtime_option, add_weights_option
from segapp.io.files import write_text_atomic
from segapp.metrics.evaluation import evaluate, evaluate_volumes, format_table, write_per_slice_csv
from segapp.metrics.labelled_data import DataError, is_volume_split
from segapp.model.onnx_runtime import OnnxError
from segapp.model.weights import ModelLoadError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m segapp.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", required=True,
        help="split folder with images/ and masks/ (e.g. DATA_DIR/valid), or a folder of labelled "
        "volumes (NAME_image.nii.gz + NAME_labels.nii.gz, NAME/ DICOM series + NAME_labels.nii.gz, "
        "or imagesTr/ + labelsTr/)"
    )
    add_weights_option(parser)
    add_device_option(parser)
    parser.add_argument("--batch-size", type=int, default=16, help="slices per forward pass")
    parser.add_argument(
        "--no-hausdorff", action="store_true", help="skip Hausdorff 95 and the 3D score (faster)"
    )
    parser.add_argument("--no-competition", action="store_true", help="skip the competition score")
    parser.add_argument(
        "--per-slice", metavar="FILE", help="write per-slice results to this CSV (and the JSON)"
    )
    parser.add_argument("--json", help="write the full result to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_min_region_option(parser)
    add_runtime_option(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    common = dict(weights=args.weights, device=args.device, batch_size=args.batch_size,
                  hausdorff=not args.no_hausdorff, progress=not args.no_progress,
                  min_region_px=args.min_region_px, runtime=args.runtime)
    try:
        if is_volume_split(args.data):
            result = evaluate_volumes(args.data, competition=not args.no_competition, **common)
            if args.per_slice:
                print("note: --per-slice applies to slice splits (images/ + masks/); not written", file=sys.stderr)
                args.per_slice = None
        else:
            result = evaluate(args.data, competition=not args.no_competition, per_slice=bool(args.per_slice),
                              **common)
    except (DataError, ModelLoadError, ValueError, OnnxError) as exc:  # ValueError: option combinations
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.per_slice:
        write_per_slice_csv(result["per_slice"], args.per_slice)
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
