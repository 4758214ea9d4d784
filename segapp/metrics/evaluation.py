"""Scoring weights on labelled data: the work of ``python -m segapp.evaluate``.

The slices are predicted once; dataset metrics come from the same code as training-time validation
(:func:`segapp.metrics.scoring.predict_slices` and :func:`segapp.metrics.scoring.score_slices`); the
competition score ``0.4 x Dice + 0.6 x (1 - normalised 3D Hausdorff)`` is computed by
:func:`segapp.metrics.competition.competition_score` when the slice names form case-day volumes (its
docstring says exactly how). Labelled volumes are segmented as the volume mode does and scored in 3D.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segapp.bundled import MODEL_DIR
from segapp.inference.segmenter import Segmenter
from segapp.io.files import write_text_atomic
from segapp.io.labelled import LAYOUTS, find_labelled_volumes, read_labelled_volume
from segapp.io.volume import InvalidVolumeError
from segapp.labels import FOREGROUND
from segapp.metrics.competition import VolumeError, competition_score, consecutive_volumes
from segapp.metrics.labelled_data import DataError, load_valid_set
from segapp.metrics.scoring import predict_slices, score_slices
from segapp.metrics.slices import (
    PER_CLASS_METRICS,
    dice_per_class,
    iou_per_class,
    mean_foreground_dice,
    slice_metrics,
)
from segapp.metrics.volume import case_day_metrics, mean_over_volumes, volume_metrics


def per_slice_results(
    names: Sequence[str],
    preds: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    spacings: Sequence[tuple[float, float] | None],
    *,
    hausdorff: bool = True,
) -> list[dict[str, Any]]:
    """Metrics of every slice, one flat JSON/CSV-ready dict each.

    Args:
        names: Slice file names.
        preds: Predicted (H, W) class ids.
        targets: True (H, W) class ids.
        spacings: (row, column) mm per slice, or None.
        hausdorff: Include Hausdorff 95 (pixels, and mm when the spacing is known).

    Returns:
        ``{"name", "mean_foreground_dice", "<organ>_dice", "<organ>_iou", "<organ>_hd95_px",
        "<organ>_hd95_mm"}`` per slice (Hausdorff keys only with ``hausdorff``; mm None without spacing).
    """
    rows = []
    for name, pred, target, spacing in zip(names, preds, targets, spacings):
        if hausdorff:
            metrics = slice_metrics(pred, target, spacing_mm=spacing)
            dice, iou = metrics.dice, metrics.iou
        else:
            dice, iou = dice_per_class(pred, target), iou_per_class(pred, target)
        row: dict[str, Any] = {"name": name, "mean_foreground_dice": mean_foreground_dice(dice)}
        for label in FOREGROUND:
            row[f"{label.name}_dice"] = float(dice[label.id])
            row[f"{label.name}_iou"] = float(iou[label.id])
            if hausdorff:
                row[f"{label.name}_hd95_px"] = float(metrics.hd95_px[label.id])
                row[f"{label.name}_hd95_mm"] = (
                    None if metrics.hd95_mm is None else float(metrics.hd95_mm[label.id])
                )
        rows.append(row)
    return rows

def _loaded(segmenter: Segmenter | None, weights: str | os.PathLike[str], *, device: str, batch_size: int,
            min_region_px: int | None, runtime: str) -> tuple[Segmenter, str | None]:
    """The segmenter to score and what the JSON names as its weights (None for a given one)."""
    if segmenter is not None:
        return segmenter, None
    loaded = Segmenter.from_pretrained(
        weights, device=device, max_batch_size=batch_size, min_region_px=min_region_px, runtime=runtime
    )
    return loaded, str(weights)

def _describe_run(result: dict[str, Any], segmenter: Segmenter, source: str | None) -> None:
    """Add the organ means of each per-class metric and what ran (weights, device, runtime, clean-up)."""
    result["mean_foreground"] = {
        key: float(np.mean([result[key][label.name] for label in FOREGROUND]))
        for key in PER_CLASS_METRICS
        if key in result
    }
    result.update(weights=source, device=str(segmenter.device), runtime=getattr(segmenter, "runtime", "torch"),
                  min_region_px=segmenter.processing.min_region_px)

def evaluate(
    data: str | Path,
    *,
    weights: str | os.PathLike[str] = MODEL_DIR,
    device: str = "auto",
    batch_size: int = 16,
    hausdorff: bool = True,
    competition: bool = True,
    per_slice: bool = False,
    segmenter: Segmenter | None = None,
    progress: bool = True,
    min_region_px: int | None = None,
    runtime: str = "torch",
) -> dict[str, Any]:
    """Evaluate ``weights`` on a split folder with ``images/`` and ``masks/``.

    Args:
        data: Split folder (``DATA_DIR/valid``).
        weights: Any source :func:`segapp.load_model` accepts (ignored when ``segmenter`` is given);
            by default the bundled demonstration weights.
        device: ``auto``, ``cpu``, ``cuda``...
        batch_size: Slices per forward pass.
        hausdorff: Compute the Hausdorff distances (2D HD95 and, for the competition score, 3D).
        competition: Compute the competition score when the slices form volumes.
        per_slice: Add ``per_slice``, one dict per slice (see :func:`per_slice_results`).
        segmenter: An already loaded model to use instead of loading ``weights``.
        progress: Show progress bars.
        min_region_px: Override the weights' small-region clean-up (None: the folder's value;
            0: off). Ignored when ``segmenter`` is given.
        runtime: ``torch``, or ``onnx`` (ONNX Runtime on the CPU: score exactly what an app
            started with ``--runtime onnx`` serves). Ignored when ``segmenter`` is given.

    Returns:
        :func:`segapp.metrics.scoring.evaluate_slices`'s dict (``slices``, ``mean_foreground_dice``,
        ``dice``/``iou``/``hd95_px``/``hd95_mm`` per class, ``images_per_s``) plus
        ``mean_foreground`` (each of those averaged over the three organs), ``weights``
        (None when ``segmenter`` was given),
        ``device``, ``runtime``, ``competition`` (:func:`segapp.metrics.competition.competition_score`'s dict, or
        ``{"skipped": reason}``) and, when asked, ``per_slice``.

    Raises:
        segapp.metrics.labelled_data.DataError: The folder is not a usable split.
        segapp.ModelLoadError: The weights cannot be loaded.
    """
    valid = load_valid_set(data, progress=progress)
    segmenter, source = _loaded(segmenter, weights, device=device, batch_size=batch_size,
                                min_region_px=min_region_px, runtime=runtime)
    # Predict once: the dataset metrics, the per-slice rows and the 3D volumes all score these masks.
    start = time.perf_counter()
    preds = predict_slices(segmenter, valid.scans, batch_size=batch_size, progress=progress, places=valid.places)
    spacings = [scan.spacing_mm for scan in valid.scans]
    result = score_slices(preds, valid.masks, spacings, hausdorff=hausdorff)
    # Model and 2D metrics, the same figure training-time validation reports.
    result["images_per_s"] = len(preds) / max(time.perf_counter() - start, 1e-9)
    _describe_run(result, segmenter, source)
    if not competition:
        result["competition"] = {"skipped": "not asked for"}
    elif not hausdorff:
        result["competition"] = {"skipped": "needs the Hausdorff distance (drop --no-hausdorff)"}
    else:
        try:
            result["competition"] = competition_score(preds, valid.masks, valid.names, progress=progress)
        except VolumeError as exc:
            result["competition"] = {"skipped": f"the slices do not form volumes: {exc}"}
    try:
        result["volumes_3d"] = case_day_metrics(preds, valid.masks, valid.names, spacings, hausdorff=hausdorff)
    except VolumeError as exc:
        result["volumes_3d"] = {"skipped": f"the slices do not form volumes: {exc}"}
    if per_slice:
        result["per_slice"] = per_slice_results(
            valid.names, preds, valid.masks, spacings, hausdorff=hausdorff
        )
    return result

def evaluate_volumes(
    data: str | Path,
    *,
    weights: str | os.PathLike[str] = MODEL_DIR,
    device: str = "auto",
    batch_size: int = 16,
    hausdorff: bool = True,
    segmenter: Segmenter | None = None,
    progress: bool = True,
    min_region_px: int | None = None,
    runtime: str = "torch",
    competition: bool = True,
) -> dict[str, Any]:
    """Evaluate ``weights`` on labelled volumes (:func:`segapp.io.labelled.find_labelled_volumes`:
    NIfTI pairs, DICOM series folders with label NIfTIs, nnU-Net's imagesTr/labelsTr).

    Each volume is segmented as the volume mode does (:func:`segapp.inference.volume.predict_volume`;
    a 2.5D model gets each slice's neighbours in the volume) and scored in 3D with its true voxel
    spacing (:func:`segapp.metrics.volume.volume_metrics`: Dice and HD95 in mm per organ), every
    slice in 2D as :func:`evaluate` does, and the competition score over the volumes (their
    slices all present, Hausdorff in voxels as the competition measured it).

    Returns:
        :func:`segapp.metrics.scoring.score_slices`'s dict over all slices, plus ``volumes_3d``
        (means over volumes and ``per_volume``), ``competition``, ``weights``, ``device``, ``runtime``.

    Raises:
        DataError: No pairs, or a pair that cannot be read or does not match its image.
    """
    pairs = find_labelled_volumes(data)
    if not pairs:
        raise DataError(f"{data} holds no labelled volumes ({LAYOUTS}) and no images/ + masks/ split")
    segmenter, source = _loaded(segmenter, weights, device=device, batch_size=batch_size,
                                min_region_px=min_region_px, runtime=runtime)
    per_volume, preds, trues, spacings, shapes = [], [], [], [], []
    start = time.perf_counter()
    for files in pairs:
        try:
            scan, true = read_labelled_volume(files)
        except InvalidVolumeError as exc:
            raise DataError(f"{files.name}: {exc}") from None
        pred = segmenter.predict_volume(scan, batch_size=batch_size).labels
        per_volume.append({"name": files.name, **volume_metrics(pred, true, scan.spacing_mm, hausdorff=hausdorff)})
        preds += list(pred)
        trues += list(true)
        spacings += [(scan.spacing_mm[1], scan.spacing_mm[2])] * pred.shape[0]
        shapes.append((files.name, pred.shape))
    result = score_slices(preds, trues, spacings, hausdorff=hausdorff)
    result["images_per_s"] = len(preds) / max(time.perf_counter() - start, 1e-9)
    _describe_run(result, segmenter, source)
    result["volumes_3d"] = {**mean_over_volumes(per_volume), "per_volume": per_volume}
    if not competition:
        result["competition"] = {"skipped": "not asked for"}
    elif not hausdorff:
        result["competition"] = {"skipped": "needs the Hausdorff distance (drop --no-hausdorff)"}
    else:
        result["competition"] = competition_score(preds, trues, volumes=consecutive_volumes(shapes),
                                                  progress=progress)
    return result

def format_table(result: dict[str, Any]) -> str:
    """A readable per-class table of an :func:`evaluate` result."""
    competition = result.get("competition") or {}
    scored = "score" in competition
    columns = [c for c in PER_CLASS_METRICS if c in result]
    width = {c: max(10, len(c) + 1) for c in columns}
    header = "class        " + "".join(f"{c:>{width[c]}}" for c in columns) + (f"{'hd3d_norm':>11}" if scored else "")
    lines = [header]
    for label in FOREGROUND:
        cells = "".join(f"{result[c][label.name]:>{width[c]}.4f}" for c in columns)
        if scored:
            cells += f"{competition['per_class'][label.name]['hausdorff_3d']:>11.4f}"
        lines.append(f"{label.name:<13}" + cells)
    means = result.get("mean_foreground", {})
    if all(c in means for c in columns):
        cells = "".join(f"{means[c]:>{width[c]}.4f}" for c in columns)
        if scored:
            cells += f"{competition['hausdorff_3d']:>11.4f}"
        lines.append(f"{'mean':<13}" + cells)
    lines.append(
        f"mean foreground Dice {result['mean_foreground_dice']:.4f} over {result['slices']} slices "
        f"({result['images_per_s']:.1f} slices/s on {result.get('device', '?')}"
        + (f"; regions under {result['min_region_px']} px removed" if result.get("min_region_px") else "")
        + ")"
    )
    if scored:
        lines.append(
            f"competition score {competition['score']:.4f} = 0.4 x Dice {competition['dice']:.4f} "
            f"+ 0.6 x (1 - 3D Hausdorff {competition['hausdorff_3d']:.4f}), {competition['volumes']} volume(s)"
        )
    elif "skipped" in competition:
        lines.append(f"competition score: not computed, {competition['skipped']}")
    volumes = result.get("volumes_3d") or {}
    if "dice" in volumes:
        lines.append(f"3D, {volumes['volumes']} volume(s), true voxel spacing: mean Dice {volumes['mean_dice']:.4f}"
                     + (f", mean HD95 {volumes['mean_hd95_mm']:.1f} mm" if "hd95_mm" in volumes else ""))
        for label in FOREGROUND:
            hd = f", HD95 {volumes['hd95_mm'][label.name]:.1f} mm" if "hd95_mm" in volumes else ""
            lines.append(f"  {label.name:<13}Dice {volumes['dice'][label.name]:.4f}{hd}")
    return "\n".join(lines)

def write_per_slice_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Write :func:`per_slice_results` rows as CSV (None as an empty cell), atomically."""
    if not rows:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    write_text_atomic(path, buffer.getvalue())
