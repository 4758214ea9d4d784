"""Validation during training: the served path's scores plus the training loss on the validation slices."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F

from segapp.inference.segmenter import Segmenter
from segapp.metrics.labelled_data import ValidSet
from segapp.metrics.scoring import evaluate_slices
from segapp.model.context import context_stack, placed_context_indices
from segapp.model.processing import ProcessingConfig, preprocess
from segapp.model.weights import LoadedModel
from segapp.training.config import TrainConfig
from segapp.training.loss import segmentation_loss


def validate(
    model: torch.nn.Module,
    loaded: LoadedModel,
    processing: ProcessingConfig,
    valid_set: ValidSet,
    device: torch.device,
    config: TrainConfig,
) -> dict[str, Any]:
    """Score the model exactly as the inference service would serve it, plus the training loss.

    Returns:
        :func:`segapp.metrics.scoring.evaluate_slices`'s metrics, with ``loss`` added.
    """
    service = Segmenter(
        dataclasses.replace(loaded, model=model, processing=processing),
        device=device, max_batch_size=config.valid_batch_size, warmup=False,
    )
    metrics = evaluate_slices(
        service, valid_set.scans, valid_set.masks, batch_size=config.valid_batch_size,
        hausdorff=config.hausdorff, progress=config.progress, places=valid_set.places,
    )
    metrics["loss"] = validation_loss(model, processing, valid_set, device, config.valid_batch_size)
    return metrics


@torch.inference_mode()
def validation_loss(
    model: torch.nn.Module, processing: ProcessingConfig, valid_set: ValidSet, device: torch.device, batch_size: int
) -> float:
    """The training loss on the validation slices, at the model input size, without augmentation.

    Inputs go through :func:`segapp.model.processing.preprocess` (the serving path; a 2.5D model's
    neighbours from the slices' places, as in scoring); masks are resized with nearest neighbour, as for
    training. Returns the mean over slices.
    """
    size = (processing.height, processing.width)
    planes = [scan.pixels for scan in valid_set.scans]
    neighbours = placed_context_indices(valid_set.places, processing.context_offsets) if processing.is_2_5d else None
    total = 0.0
    for start in range(0, len(valid_set), batch_size):
        rows = range(start, min(len(valid_set), start + batch_size))
        scans = valid_set.scans[start : start + batch_size]
        masks = valid_set.masks[start : start + batch_size]
        inputs = planes[start : start + batch_size] if neighbours is None else [
            context_stack(planes, neighbours, i) for i in rows
        ]
        pixel_values = preprocess(inputs, processing, device)  # (B, 3, S, S)
        labels = torch.cat([
            F.interpolate(torch.from_numpy(m)[None, None].float(), size=size, mode="nearest")[0].long()
            for m in masks
        ]).to(device)  # (B, S, S)
        logits = model(pixel_values=pixel_values).logits  # (B, C, S/4, S/4)
        total += segmentation_loss(logits, labels).item() * len(scans)
    return total / len(valid_set)
