"""Choosing a model's clean-up on labelled data: the work of ``python -m segapp.tune_postprocessing``.

:func:`tune` predicts a split once and scores each candidate minimum region size (2D, pixels;
:func:`segapp.model.processing.remove_small_regions`) through the scoring path of
``segapp.evaluate``; :func:`tune_volumes` scores each 3D clean-up size (mL) on labelled volumes by
3D Dice and HD95. The best value is stored in the model folder's ``preprocessor_config.json``
(:func:`write_min_region`, :func:`write_min_component`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from segapp.inference.segmenter import Segmenter
from segapp.inference.volume import remove_small_components
from segapp.io.labelled import LAYOUTS, find_labelled_volumes, read_labelled_volume
from segapp.io.volume import InvalidVolumeError
from segapp.labels import FOREGROUND
from segapp.metrics.labelled_data import DataError, load_valid_set
from segapp.metrics.scoring import predict_slices, score_slices
from segapp.metrics.volume import mean_over_volumes, volume_metrics
from segapp.model.processing import ProcessingConfig, remove_small_regions

CANDIDATES = (0, 10, 25, 50, 75, 100, 150, 200)
CANDIDATES_ML = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0)  # 3D clean-up sizes for --volumes


def tune(
    weights: str,
    data: str | Path,
    *,
    candidates: Sequence[int] = CANDIDATES,
    device: str = "auto",
    batch_size: int = 16,
    progress: bool = False,
) -> dict[str, Any]:
    """Score each minimum region size (pixels, >= 0) on a labelled split.

    Returns:
        ``{"slices", "current", "best", "results": [{"min_region_px", "mean_foreground_dice",
        "dice": {class: value}}, ...]}``; ``best`` has the highest mean foreground Dice (the
        smallest size among equals), ``current`` is the value the weights carry now.

    Raises:
        ValueError: a candidate is negative or there are none.
        segapp.metrics.labelled_data.DataError, segapp.ModelLoadError: unusable data or weights.
    """
    sizes = sorted({int(c) for c in candidates})
    if not sizes or sizes[0] < 0:
        raise ValueError(f"candidates must be whole numbers >= 0, got {list(candidates)}")
    valid = load_valid_set(data, progress=progress)
    segmenter = Segmenter.from_pretrained(weights, device=device, max_batch_size=batch_size, min_region_px=0)
    current = segmenter.loaded.processing.min_region_px
    # Predict once without clean-up; each candidate then cleans up copies of the same masks.
    preds = predict_slices(segmenter, valid.scans, batch_size=batch_size, places=valid.places)
    spacings = [scan.spacing_mm for scan in valid.scans]
    results = []
    for size in sizes:
        cleaned = [remove_small_regions(mask, size) for mask in preds]
        scores = score_slices(cleaned, valid.masks, spacings, hausdorff=False)
        results.append({
            "min_region_px": size,
            "mean_foreground_dice": scores["mean_foreground_dice"],
            "dice": {label.name: scores["dice"][label.name] for label in FOREGROUND},
        })
    best = max(results, key=lambda r: (r["mean_foreground_dice"], -r["min_region_px"]))["min_region_px"]
    return {"slices": len(valid), "current": current, "best": best, "results": results}

def tune_volumes(
    weights: str,
    data: str | Path,
    *,
    candidates: Sequence[float] = CANDIDATES_ML,
    device: str = "auto",
    batch_size: int = 16,
) -> dict[str, Any]:
    """Score each 3D clean-up size (mL, >= 0) on labelled NIfTI volumes
    (:func:`segapp.io.labelled.find_labelled_volumes`).

    Each volume is predicted once (with the weights' 2D clean-up, without any 3D one); each
    candidate then removes 26-connected components under its size from copies of those labels.

    Returns:
        ``{"volumes", "current", "best", "results": [{"min_component_ml", "mean_dice",
        "mean_hd95_mm", "dice": {...}, "hd95_mm": {...}}, ...]}``; ``best`` has the highest mean
        3D Dice, then the lowest mean HD95, then the smallest size.
    """
    sizes = sorted({float(c) for c in candidates})
    if not sizes or sizes[0] < 0:
        raise ValueError(f"candidates must be numbers of mL >= 0, got {list(candidates)}")
    pairs = find_labelled_volumes(data)
    if not pairs:
        raise DataError(f"{data} holds no labelled volumes ({LAYOUTS})")
    segmenter = Segmenter.from_pretrained(weights, device=device, max_batch_size=batch_size)
    current = segmenter.processing.min_component_ml
    predicted = []
    for files in pairs:
        try:
            scan, truth = read_labelled_volume(files)
        except InvalidVolumeError as exc:
            raise DataError(f"{files.name}: {exc}") from None
        predicted.append((segmenter.predict_volume(scan, min_component_ml=0).labels, truth, scan.spacing_mm))
    results = []
    for size in sizes:
        per_volume = [volume_metrics(remove_small_components(pred, size, spacing) if size else pred, true, spacing)
                      for pred, true, spacing in predicted]
        summary = mean_over_volumes(per_volume)
        results.append({"min_component_ml": size, "mean_dice": summary["mean_dice"],
                        "mean_hd95_mm": summary["mean_hd95_mm"], "dice": summary["dice"], "hd95_mm": summary["hd95_mm"]})
    best = max(results, key=lambda r: (r["mean_dice"], -r["mean_hd95_mm"], -r["min_component_ml"]))["min_component_ml"]
    return {"volumes": len(pairs), "current": current, "best": best, "results": results}

def write_min_region(folder: str | Path, min_region_px: int) -> None:
    """Store ``min_region_px`` in a model folder's ``preprocessor_config.json`` (atomic write;
    every other setting is kept)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ValueError(f"--write needs a model folder with config.json; {folder} is not one")
    config = ProcessingConfig.from_folder(folder)
    replace(config, min_region_px=int(min_region_px)).save(folder)

def write_min_component(folder: str | Path, min_component_ml: float) -> None:
    """Store the 3D clean-up size in a model folder's ``preprocessor_config.json`` (atomic)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ValueError(f"--write needs a model folder with config.json; {folder} is not one")
    replace(ProcessingConfig.from_folder(folder), min_component_ml=float(min_component_ml)).save(folder)

def format_volume_table(result: dict[str, Any]) -> str:
    """The 3D candidates as a text table, the best one marked."""
    lines = [f"{'min component mL':>16}  {'mean 3D Dice':>12}  {'mean HD95 mm':>12}"]
    for row in result["results"]:
        mark = "  <- best" if row["min_component_ml"] == result["best"] else ""
        lines.append(f"{row['min_component_ml']:>16g}  {row['mean_dice']:>12.4f}  {row['mean_hd95_mm']:>12.2f}{mark}")
    lines.append(f"{result['volumes']} volumes; the weights carry min_component_ml={result['current']:g} now")
    return "\n".join(lines)

def format_table(result: dict[str, Any]) -> str:
    """The candidates as a text table, the best one marked."""
    lines = [f"{'min region px':>13}  {'mean fg Dice':>12}  " + "  ".join(f"{label.name:>11}" for label in FOREGROUND)]
    for row in result["results"]:
        mark = "  <- best" if row["min_region_px"] == result["best"] else ""
        lines.append(
            f"{row['min_region_px']:>13}  {row['mean_foreground_dice']:>12.4f}  "
            + "  ".join(f"{row['dice'][label.name]:>11.4f}" for label in FOREGROUND) + mark
        )
    lines.append(f"{result['slices']} slices; the weights carry min_region_px={result['current']} now")
    return "\n".join(lines)
