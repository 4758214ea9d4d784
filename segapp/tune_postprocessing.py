"""Choose a model's small-region clean-up on its validation split.

    python -m segapp.tune_postprocessing --weights RUN_DIR/best --data DATA_DIR/valid [--write]

Segmentation models leave small stray islands of a class (a few dozen pixels) on slices where
the organ is absent or elsewhere; on a per-slice Dice such an island costs a whole slice. This
command predicts the split once, then scores each candidate minimum region size (see
:func:`segapp.model.processing.remove_small_regions`) through the same scoring path as
``segapp.evaluate``, prints the table and, with ``--write``, stores the best value in the model
folder's ``preprocessor_config.json`` (``segapp_min_region_px``), which the app, ``predict``,
``evaluate`` and the benchmarks then all apply. Tune on validation data, report on other data.
The work is :mod:`segapp.metrics.cleanup_tuning`.

With ``--volumes`` it tunes the 3D clean-up of volumes instead: on labelled NIfTI volumes, each
candidate size in mL (26-connected components of one class below it become background) is
scored by 3D Dice and HD95 in mm, and ``--write`` stores the best as ``segapp_min_component_ml``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from segapp.cli import add_device_option, add_weights_option
from segapp.metrics.cleanup_tuning import (
    CANDIDATES,
    CANDIDATES_ML,
    format_table,
    format_volume_table,
    tune,
    tune_volumes,
    write_min_component,
    write_min_region,
)
from segapp.model.weights import ModelLoadError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m segapp.tune_postprocessing", description=__doc__.splitlines()[0])
    add_weights_option(parser, default=None, required=True)
    parser.add_argument("--data", required=True, help="labelled validation split (not your test data): images/ and masks/, or labelled volumes "
                        "(NIfTI pairs, DICOM series + label NIfTI; the 2D clean-up is tuned on their slices)")
    parser.add_argument("--candidates", default=None,
                        help="comma-separated sizes to try: pixels (default: " + ",".join(map(str, CANDIDATES))
                        + "), or mL with --volumes (default: " + ",".join(f"{c:g}" for c in CANDIDATES_ML) + ")")
    parser.add_argument("--volumes", action="store_true",
                        help="tune the 3D clean-up of volumes (mL) on the labelled volumes in --data instead")
    parser.add_argument("--write", action="store_true", help="store the best value in the model folder")
    add_device_option(parser)
    parser.add_argument("--batch-size", type=int, default=16, help="slices per forward pass")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.volumes:
            sizes = [float(v) for v in (args.candidates or ",".join(map(str, CANDIDATES_ML))).split(",") if v.strip()]
            volume_result = tune_volumes(args.weights, args.data, candidates=sizes, device=args.device,
                                         batch_size=args.batch_size)
            print(format_volume_table(volume_result))
            if args.write:
                write_min_component(args.weights, volume_result["best"])
                print(f"wrote min_component_ml={volume_result['best']:g} to {Path(args.weights) / 'preprocessor_config.json'}")
            return 0
        candidates = [int(v) for v in (args.candidates or ",".join(map(str, CANDIDATES))).split(",") if v.strip()]
        result = tune(args.weights, args.data, candidates=candidates, device=args.device,
                      batch_size=args.batch_size, progress=not args.no_progress)
        print(format_table(result))
        if args.write:
            write_min_region(args.weights, result["best"])
            print(f"wrote min_region_px={result['best']} to {Path(args.weights) / 'preprocessor_config.json'}")
    except (ValueError, ModelLoadError) as exc:  # DataError is a ValueError; so is bad --candidates text
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
