"""Volume inference: every slice of a :class:`ScanVolume` through the Segmenter's batched path,
then per-organ volumes in mL.

The slices go through :meth:`Segmenter.predict_batch` (one preprocessing, one postprocessing, the
2D clean-up stored with the model), so with a 2D model a volume's slice k gets exactly the mask
that slice would get alone. A 2.5D model (``segapp_context_offsets`` in the model folder) gets each
slice with its neighbours in the input channels (:func:`segapp.model.context.context_indices` over
the volume's slice indices: at the ends, the nearest slice there is). An optional 3D clean-up then removes 26-connected components smaller than a volume in mL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from segapp.io.volume import ScanVolume
from segapp.labels import FOREGROUND
from segapp.model.context import context_indices, context_stack

if TYPE_CHECKING:  # pragma: no cover
    from segapp.inference.segmenter import Segmenter

Progress = Callable[[int, int], None]  # (slices done, total)


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
        confidence: (Z, H, W) float16 probability of the chosen class.
        organs: Organ name -> :class:`OrganVolume`, for every foreground class.
        timings_ms: "slices" (the batched 2D path), "cleanup_3d", "total".
        device: Where the model ran.
        volume: The scan.
    """

    labels: np.ndarray
    confidence: np.ndarray
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


def predict_volume(
    segmenter: Segmenter,
    volume: ScanVolume,
    *,
    batch_size: int | None = None,
    progress: Progress | None = None,
    min_component_ml: float = 0.0,
) -> VolumePrediction:
    """Segment every slice of ``volume``.

    Args:
        segmenter: The model service.
        volume: The scan; its slices are fed as the slice reader makes them (8-bit, per slice).
        batch_size: Slices per forward pass (default: the segmenter's ``max_batch_size``).
        progress: Called with (slices done, total) after each batch.
        min_component_ml: 3D clean-up: 26-connected components of one class smaller than this
            many mL become background (0: off).
    """
    from segapp.io.image import ScanImage

    start = time.perf_counter()
    slices = volume.slices_uint8()
    spacing = (volume.spacing_mm[1], volume.spacing_mm[2])
    step = max(1, batch_size or segmenter.max_batch_size)
    labels = np.empty(volume.shape, dtype=np.uint8)
    confidence = np.empty(volume.shape, dtype=np.float16)
    total = volume.shape[0]
    processing = segmenter.processing
    neighbours = context_indices(range(total), processing.context_offsets) if processing.is_2_5d else None
    for first in range(0, total, step):
        rows = range(first, min(total, first + step))
        chunk = [ScanImage(pixels=slices[k], spacing_mm=spacing, bit_depth=8, original_mode=volume.kind)
                 for k in rows]
        stacks = None if neighbours is None else [context_stack(slices, neighbours, k) for k in rows]
        for offset, prediction in enumerate(segmenter.predict_batch(chunk, stacks=stacks)):
            labels[first + offset] = prediction.mask
            confidence[first + offset] = prediction.confidence
        if progress is not None:
            progress(min(total, first + step), total)
    timings = {"slices": (time.perf_counter() - start) * 1000}
    cleanup_start = time.perf_counter()
    if min_component_ml > 0:
        labels = remove_small_components(labels, min_component_ml, volume.spacing_mm)
    timings["cleanup_3d"] = (time.perf_counter() - cleanup_start) * 1000
    organs = organ_volumes(labels, confidence, volume.spacing_mm)
    timings["total"] = (time.perf_counter() - start) * 1000
    return VolumePrediction(labels, confidence, organs, timings, str(segmenter.device), volume)


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
