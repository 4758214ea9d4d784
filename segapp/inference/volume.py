"""A segmented volume: its result type, per-organ volumes in mL, and the 3D clean-up.

The slices are segmented by :meth:`segapp.inference.segmenter.Segmenter.predict_volume` (the
Segmenter's batched path); this module holds what that and anything else that has labels on a
volume's grid (slice predictions stacked, labels handed in) share, and imports no model code.
An optional 3D clean-up removes 26-connected components smaller than a volume in mL.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from segapp.io.volume import ScanVolume
from segapp.labels import FOREGROUND


@dataclass(frozen=True)
class OrganVolume:
    """One organ in a predicted volume.

    Attributes:
        voxels: Voxels labelled with the organ.
        volume_ml: voxels x the three spacings / 1000.
        slices: (first, last) slice index (display order, 0 = most inferior) where it appears,
            or None when absent.
        max_area_mm2: Its largest in-slice area, mm².
        mean_confidence: Mean winning-class probability over its voxels, or None when absent.
    """

    voxels: int
    volume_ml: float
    slices: tuple[int, int] | None
    max_area_mm2: float
    mean_confidence: float | None


@dataclass(frozen=True, eq=False)
class VolumePrediction:
    """A segmented volume.

    Attributes:
        labels: (Z, H, W) uint8 class ids on the volume's grid (display order).
        confidence: (Z, H, W) float16 probability of the chosen class; None for labels that
            no model gave (handed in, e.g. corrected).
        organs: Organ name -> :class:`OrganVolume`, for every foreground class.
        timings_ms: "slices" (the batched 2D path), "cleanup_3d", "total"; empty when not timed.
        device: Where the model ran.
        volume: The scan.
    """

    labels: np.ndarray
    confidence: np.ndarray | None
    organs: dict[str, OrganVolume]
    timings_ms: dict[str, float]
    device: str
    volume: ScanVolume

    def stats_dict(self) -> dict[str, Any]:
        """JSON-ready figures: per organ, the volume's description and timings. No patient data."""
        return {
            "organs": {name: asdict(organ) for name, organ in self.organs.items()},
            "volume": self.volume.description,
            "timings_ms": self.timings_ms,
            "device": self.device,
        }


def volume_prediction(volume: ScanVolume, labels: np.ndarray, confidence: np.ndarray | None = None, *,
                      device: str, min_component_ml: float = 0.0, started: float | None = None) -> VolumePrediction:
    """A :class:`VolumePrediction` of ``labels`` on ``volume``: the 3D clean-up, then the organ volumes.

    Args:
        volume: The scan the labels are on.
        labels: (Z, H, W) uint8 class ids on the volume's grid (display order).
        confidence: (Z, H, W) winning-class probabilities, or None (labels not from a model).
        device: Where the model ran (shown with the results).
        min_component_ml: 3D clean-up: 26-connected components of one class smaller than this
            many mL become background (0: off).
        started: ``time.perf_counter()`` when the slices began: the timings are filled in
            (``slices``, ``cleanup_3d``, ``total``); None: no timings.

    Raises:
        ValueError: ``labels`` (or ``confidence``) is not on the volume's grid.
    """
    for name, array in (("labels", labels), ("confidence", confidence)):
        if array is not None and array.shape != volume.shape:
            raise ValueError(f"{name} are {array.shape}, not on the volume's grid {volume.shape}")
    cleanup_start = time.perf_counter()
    if min_component_ml > 0:
        labels = remove_small_components(labels, min_component_ml, volume.spacing_mm)
    cleanup_ms = (time.perf_counter() - cleanup_start) * 1000
    organs = organ_volumes(labels, confidence, volume.spacing_mm)
    timings: dict[str, float] = {}
    if started is not None:
        timings = {"slices": (cleanup_start - started) * 1000, "cleanup_3d": cleanup_ms,
                   "total": (time.perf_counter() - started) * 1000}
    return VolumePrediction(labels, confidence, organs, timings, device, volume)


def organ_volumes(labels: np.ndarray, confidence: np.ndarray | None,
                  spacing_mm: tuple[float, float, float]) -> dict[str, OrganVolume]:
    """Per-organ voxels, mL, slice range, largest in-slice area and mean confidence.

    Args:
        labels: (Z, H, W) class ids.
        confidence: (Z, H, W) winning-class probabilities, or None.
        spacing_mm: (slice, row, column) mm.
    """
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    pixel_mm2 = spacing_mm[1] * spacing_mm[2]
    organs = {}
    for label in FOREGROUND:
        inside = labels == label.id
        per_slice = inside.reshape(inside.shape[0], -1).sum(axis=1)
        present = np.flatnonzero(per_slice)
        count = int(per_slice.sum())
        mean_conf = None
        if count and confidence is not None:
            mean_conf = float(confidence[inside].astype(np.float64).mean())
        organs[label.name] = OrganVolume(
            voxels=count,
            volume_ml=count * voxel_ml,
            slices=(int(present[0]), int(present[-1])) if present.size else None,
            max_area_mm2=float(per_slice.max() * pixel_mm2) if count else 0.0,
            mean_confidence=mean_conf,
        )
    return organs


def remove_small_components(labels: np.ndarray, min_ml: float, spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """Set 26-connected components of one class smaller than ``min_ml`` mL to background.

    Args:
        labels: (Z, H, W) class ids (not modified).
        min_ml: Smallest component kept, mL.
        spacing_mm: (slice, row, column) mm.

    Returns:
        A new (Z, H, W) uint8 array.
    """
    # Here, not at the top: scipy.ndimage costs start-up time to every command that only reads results.
    from scipy import ndimage  # type: ignore[import-untyped]

    out = labels.copy()
    min_voxels = min_ml * 1000.0 / float(np.prod(spacing_mm))
    structure = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity
    for label in FOREGROUND:
        components, count = ndimage.label(labels == label.id, structure=structure)
        if count == 0:
            continue
        sizes = np.bincount(components.reshape(-1), minlength=count + 1)
        small = np.flatnonzero(sizes < min_voxels)
        small = small[small != 0]
        if small.size:
            out[np.isin(components, small)] = 0
    return out
