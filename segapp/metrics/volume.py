"""3D metrics of label volumes with their true voxel spacing: Dice and Hausdorff 95 in mm.

Conventions follow the slice metrics (:mod:`segapp.metrics.slices`), one dimension up:

* A class absent from both volumes scores Dice 1 and HD95 0; present in exactly one, Dice 0 and
  HD95 the volume's diagonal in mm.
* Surfaces are the boundary voxels of a class region (the region minus its erosion by the 6-
  neighbourhood cross; the volume's border counts as outside), distances exact Euclidean between
  voxel centres with the (slice, row, column) spacing, symmetric: the 95th percentile over the
  distances from each surface to the other, pooled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from segapp.labels import FOREGROUND
from segapp.metrics.competition import VolumeError, group_volumes


def _surface(region: np.ndarray) -> np.ndarray:
    # scipy here, not at the top: its import costs about 0.3 s that only the 3D metrics need.
    from scipy import ndimage  # type: ignore[import-untyped]

    eroded = ndimage.binary_erosion(region, structure=ndimage.generate_binary_structure(3, 1), border_value=0)
    return region & ~eroded


def hd95_mm(pred: np.ndarray, true: np.ndarray, spacing_mm: Sequence[float]) -> float:
    """Symmetric 95th-percentile Hausdorff distance between two boolean (Z, H, W) regions, mm."""
    from scipy import ndimage  # type: ignore[import-untyped]  # here: see _surface

    if not pred.any() and not true.any():
        return 0.0
    if not pred.any() or not true.any():
        return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(pred.shape, spacing_mm))))
    pred_surface, true_surface = _surface(pred), _surface(true)
    # Distance of every voxel to the nearest surface voxel of the other region.
    to_true = ndimage.distance_transform_edt(~true_surface, sampling=spacing_mm)
    to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=spacing_mm)
    distances = np.concatenate([to_true[pred_surface], to_pred[true_surface]])
    return float(np.percentile(distances, 95))


def dice_3d(pred: np.ndarray, true: np.ndarray) -> float:
    """Dice of two boolean regions; 1 when both are empty."""
    total = int(pred.sum()) + int(true.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(pred, true).sum()) / total


def volume_metrics(pred: np.ndarray, true: np.ndarray, spacing_mm: Sequence[float], *,
                   hausdorff: bool = True) -> dict[str, Any]:
    """Per-organ 3D Dice (and HD95 in mm) of two (Z, H, W) label volumes.

    Returns:
        ``{"dice": {organ: float}, "hd95_mm": {organ: float}, "volume_ml": {organ: {"pred",
        "true"}}}`` (``hd95_mm`` only with ``hausdorff``).
    """
    if pred.shape != true.shape:
        raise ValueError(f"prediction {pred.shape} and labels {true.shape} differ in shape")
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    result: dict[str, Any] = {"dice": {}, "volume_ml": {}}
    if hausdorff:
        result["hd95_mm"] = {}
    for label in FOREGROUND:
        p, t = pred == label.id, true == label.id
        result["dice"][label.name] = dice_3d(p, t)
        result["volume_ml"][label.name] = {"pred": float(p.sum()) * voxel_ml, "true": float(t.sum()) * voxel_ml}
        if hausdorff:
            result["hd95_mm"][label.name] = hd95_mm(p, t, spacing_mm)
    return result


def mean_over_volumes(per_volume: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Average :func:`volume_metrics` results over volumes, per organ and over organs."""
    summary: dict[str, Any] = {"volumes": len(per_volume)}
    for key in ("dice", "hd95_mm"):
        if per_volume and all(key in v for v in per_volume):
            by_organ = {label.name: float(np.mean([v[key][label.name] for v in per_volume])) for label in FOREGROUND}
            summary[key] = by_organ
            summary[f"mean_{key}"] = float(np.mean(list(by_organ.values())))
    return summary


def case_day_metrics(preds: Sequence[np.ndarray], masks: Sequence[np.ndarray], names: Sequence[str],
                     spacings: Sequence[tuple[float, float] | None], *, slice_mm: float = 3.0,
                     hausdorff: bool = True) -> dict[str, Any]:
    """3D metrics of competition-named slices stacked into their case-day volumes.

    Slices of one ``caseN_dayD`` are stacked by slice number; missing slice numbers stay as
    empty slices in both volumes, so distances across a gap keep its true length.

    Args:
        preds: Predicted (H, W) class ids.
        masks: True (H, W) class ids.
        names: Slice file names (they give case, day and slice number).
        spacings: (row, column) mm of each slice (from the names); required.
        slice_mm: Slice step in mm (3 mm in the UW-Madison data).
        hausdorff: Also compute HD95 in mm.

    Raises:
        segapp.metrics.competition.VolumeError: The names do not form volumes, or a spacing is unknown.
    """
    volumes = group_volumes(names, [m.shape for m in masks])
    per_volume = []
    for volume in volumes:
        spacing = spacings[volume.indices[0]]
        if spacing is None:
            raise VolumeError(f"{volume.name} has no pixel spacing in its names")
        pred = np.zeros((volume.depth, volume.height, volume.width), dtype=np.uint8)
        true = np.zeros_like(pred)
        for index, depth in zip(volume.indices, volume.depths):
            pred[depth], true[depth] = preds[index], masks[index]
        per_volume.append(volume_metrics(pred, true, (slice_mm, *spacing), hausdorff=hausdorff))
    return mean_over_volumes(per_volume)
