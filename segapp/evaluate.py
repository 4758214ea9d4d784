"""Score weights on labelled slices: ``python -m segapp.evaluate --data DATA_DIR/valid``.

Prints a per-class table (Dice, IoU, Hausdorff 95 in pixels and mm) and writes JSON.
It runs the same code as training-time validation (:func:`segapp.evaluation.evaluate_slices`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from segapp.data import DataError, load_valid_set
from segapp.evaluation import evaluate_slices
from segapp.labels import FOREGROUND
from segapp.modeling import ModelLoadError
from segapp.segmenter import Segmenter

DEFAULT_WEIGHTS = str(Path(__file__).resolve().parent.parent / "assets" / "model")


def evaluate(
    data: str | Path,
    *,
    weights: str = DEFAULT_WEIGHTS,
    device: str = "auto",
    batch_size: int = 16,
    hausdorff: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``weights`` on a split folder with ``images/`` and ``masks/``.

    Returns:
        The metrics dict of :func:`segapp.evaluation.evaluate_slices` plus ``weights`` and ``device``.
    """
    valid = load_valid_set(data, progress=progress)
    segmenter = Segmenter.from_pretrained(weights, device=device, max_batch_size=batch_size)
    result = evaluate_slices(
        segmenter, valid.scans, valid.masks, batch_size=batch_size, hausdorff=hausdorff, progress=progress
    )
    result.update(weights=str(weights), device=str(segmenter.device))
    return result


def format_table(result: dict[str, Any]) -> str:
    """A readable per-class table of an :func:`evaluate` result."""
    columns = [c for c in ("dice", "iou", "hd95_px", "hd95_mm") if c in result]
    lines = ["class        " + "".join(f"{c:>10}" for c in columns)]
    for label in FOREGROUND:
        lines.append(f"{label.name:<13}" + "".join(f"{result[c][label.name]:>10.4f}" for c in columns))
    lines.append(f"mean foreground Dice {result['mean_foreground_dice']:.4f} over {result['slices']} slices "
                 f"({result['images_per_s']:.1f} slices/s on {result.get('device', '?')})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segapp.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="split folder with images/ and masks/ (e.g. DATA_DIR/valid)")
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS, help="model folder, .safetensors, .ckpt or hub id")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--batch-size", type=int, default=16, help="slices per forward pass")
    parser.add_argument("--no-hausdorff", action="store_true", help="skip Hausdorff 95 (faster)")
    parser.add_argument("--json", help="write the full result to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        result = evaluate(
            args.data, weights=args.weights, device=args.device, batch_size=args.batch_size,
            hausdorff=not args.no_hausdorff, progress=not args.no_progress,
        )
    except (DataError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
