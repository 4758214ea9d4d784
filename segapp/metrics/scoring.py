"""Scoring a model on labelled slices through the inference service's own path.

Training-time validation and ``python -m segapp.evaluate`` both call
:func:`evaluate_slices`, so a score means the same everywhere: each slice is read,
preprocessed, segmented and upsampled to its own size by :class:`segapp.Segmenter`,
then compared with its mask by :class:`segapp.metrics.slices.MetricAccumulator`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from segapp.inference.segmenter import Segmenter
from segapp.io.image import ScanImage
from segapp.metrics.slices import MetricAccumulator


def evaluate_slices(
    segmenter: Segmenter,
    scans: Sequence[ScanImage],
    masks: Sequence[np.ndarray],
    *,
    batch_size: int = 16,
    hausdorff: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Segment labelled slices and average the metrics over them.

    Args:
        segmenter: The model to score (it splits batches above its ``max_batch_size``).
        scans: Slices as read by :func:`segapp.read_image`.
        masks: Ground-truth (H, W) class ids at each slice's size.
        batch_size: Slices per forward pass; slices of equal size are batched together.
        hausdorff: Also compute Hausdorff 95 (costlier than Dice/IoU).
        progress: Show a progress bar.

    Returns:
        :meth:`MetricAccumulator.compute`'s dict plus ``images_per_s`` (model and metrics).
    """
    if len(scans) != len(masks) or not scans:
        raise ValueError(f"need equally many scans and masks, got {len(scans)} and {len(masks)}")
    accumulator = MetricAccumulator(hausdorff=hausdorff)
    start = time.perf_counter()
    # Same-size slices in one batch: one resize and one upsample call per group.
    order = sorted(range(len(scans)), key=lambda i: scans[i].size)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="validating", unit="batch", leave=False)
    for batch in batches:
        predictions = segmenter.predict_batch([scans[i] for i in batch])
        for index, prediction in zip(batch, predictions):
            accumulator.update(prediction.mask, masks[index], spacing_mm=scans[index].spacing_mm)
    result = accumulator.compute()
    result["images_per_s"] = len(scans) / max(time.perf_counter() - start, 1e-9)
    return result
