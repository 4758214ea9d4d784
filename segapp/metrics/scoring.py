"""Scoring a model on labelled slices through the inference service's own path.

Predicting and scoring are two steps, so a caller can predict once and score those masks in
several ways: :func:`predict_slices` segments each slice with :class:`segapp.Segmenter`
(read, preprocessed, segmented and upsampled to its own size, as the app does), and
:func:`score_slices` compares masks with the truth through
:class:`segapp.metrics.slices.MetricAccumulator`. Training-time validation calls
:func:`evaluate_slices`, the two in a row; ``python -m segapp.evaluate`` and
``python -m segapp.tune_postprocessing`` call the steps themselves, so a score means the same
everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from segapp.inference.segmenter import Segmenter
from segapp.io.image import ScanImage
from segapp.metrics.slices import MetricAccumulator
from segapp.model.context import SlicePlace, context_stack, placed_context_indices


def predict_slices(
    segmenter: Segmenter,
    scans: Sequence[ScanImage],
    *,
    batch_size: int = 16,
    progress: bool = False,
    places: Sequence[SlicePlace | None] | None = None,
) -> list[np.ndarray]:
    """Segment slices, batching slices of equal size together.

    Args:
        segmenter: The model (it splits batches above its ``max_batch_size``).
        scans: Slices as read by :func:`segapp.read_image`.
        batch_size: Slices per forward pass, >= 1.
        progress: Show a progress bar over the batches.
        places: Where each slice lies in its scan (:data:`segapp.model.context.SlicePlace`;
            :attr:`segapp.metrics.labelled_data.ValidSet.places`). A 2.5D model then gets each slice's
            neighbours from the same scan; without places, or for a slice of unknown place, the
            slice fills every channel.

    Returns:
        One (H, W) uint8 class-id mask per scan, at its size, in the order of ``scans``.
    """
    # Same-size slices in one batch: one resize and one upsample call per group.
    order = sorted(range(len(scans)), key=lambda i: scans[i].size)
    batches: Iterable[list[int]] = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if progress:
        batches = tqdm(batches, desc="validating", unit="batch", leave=False)
    neighbours = None
    if segmenter.processing.is_2_5d and places is not None:
        if len(places) != len(scans):
            raise ValueError(f"{len(places)} places for {len(scans)} slices")
        neighbours = placed_context_indices(places, segmenter.processing.context_offsets)
    planes = [scan.pixels for scan in scans]
    masks: dict[int, np.ndarray] = {}
    for batch in batches:
        stacks = None if neighbours is None else [context_stack(planes, neighbours, i) for i in batch]
        for index, prediction in zip(batch, segmenter.predict_batch([scans[i] for i in batch], stacks=stacks)):
            masks[index] = prediction.mask
    return [masks[i] for i in range(len(scans))]


def score_slices(
    pred_masks: Sequence[np.ndarray],
    true_masks: Sequence[np.ndarray],
    spacings: Sequence[tuple[float, float] | None],
    *,
    hausdorff: bool = True,
) -> dict[str, Any]:
    """Average the slice metrics of predicted masks over a labelled set.

    Args:
        pred_masks: Predicted (H, W) class ids.
        true_masks: Ground-truth (H, W) class ids, same order and sizes.
        spacings: (row, column) pixel size in mm of each slice, or None where unknown.
        hausdorff: Also compute Hausdorff 95 (costlier than Dice/IoU).

    Returns:
        :meth:`MetricAccumulator.compute`'s dict.

    Raises:
        ValueError: Different numbers of predictions, masks and spacings, or none.
    """
    if not (len(pred_masks) == len(true_masks) == len(spacings)) or not pred_masks:
        raise ValueError(
            f"need equally many predictions, masks and spacings (at least one), "
            f"got {len(pred_masks)}, {len(true_masks)} and {len(spacings)}"
        )
    accumulator = MetricAccumulator(hausdorff=hausdorff)
    # Slices in order of size (stable), the order predict_slices runs them in: a mean of floats
    # depends on the order of its terms in the last digit, and this keeps every figure identical
    # to scoring batch by batch as the slices were predicted.
    for index in sorted(range(len(true_masks)), key=lambda i: true_masks[i].shape):
        accumulator.update(pred_masks[index], true_masks[index], spacing_mm=spacings[index])
    return accumulator.compute()


def evaluate_slices(
    segmenter: Segmenter,
    scans: Sequence[ScanImage],
    masks: Sequence[np.ndarray],
    *,
    batch_size: int = 16,
    hausdorff: bool = True,
    progress: bool = False,
    places: Sequence[SlicePlace | None] | None = None,
) -> dict[str, Any]:
    """Segment labelled slices and average the metrics over them (:func:`predict_slices`, then
    :func:`score_slices`).

    Args:
        segmenter: The model to score (it splits batches above its ``max_batch_size``).
        scans: Slices as read by :func:`segapp.read_image`.
        masks: Ground-truth (H, W) class ids at each slice's size.
        batch_size: Slices per forward pass; slices of equal size are batched together.
        hausdorff: Also compute Hausdorff 95 (costlier than Dice/IoU).
        progress: Show a progress bar.
        places: Where each slice lies, for a 2.5D model's neighbours (see :func:`predict_slices`).

    Returns:
        :meth:`MetricAccumulator.compute`'s dict plus ``images_per_s`` (model and metrics).
    """
    if len(scans) != len(masks) or not scans:
        raise ValueError(f"need equally many scans and masks, got {len(scans)} and {len(masks)}")
    start = time.perf_counter()
    preds = predict_slices(segmenter, scans, batch_size=batch_size, progress=progress, places=places)
    result = score_slices(preds, masks, [scan.spacing_mm for scan in scans], hausdorff=hausdorff)
    result["images_per_s"] = len(scans) / max(time.perf_counter() - start, 1e-9)
    return result
