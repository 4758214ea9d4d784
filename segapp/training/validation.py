"""Validation during training: the served path's scores plus the training loss on the validation slices."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from segapp.inference.render import overlay
from segapp.inference.segmenter import Segmenter
from segapp.metrics.labelled_data import ValidSet
from segapp.metrics.scoring import evaluate_slices
from segapp.model.context import context_stack, placed_context_indices
from segapp.model.processing import ProcessingConfig, preprocess
from segapp.model.weights import LoadedModel
from segapp.training.config import TrainConfig
from segapp.training.loss import segmentation_loss
from segapp.training.tracking import Overlay

OVERLAY_SLICES = 4  # validation slices shown to the trackers at each validation


def validation_service(model: torch.nn.Module, loaded: LoadedModel, processing: ProcessingConfig,
                       device: torch.device, config: TrainConfig) -> Segmenter:
    """The inference service around the model being trained, as the app would serve it."""
    return Segmenter(
        dataclasses.replace(loaded, model=model, processing=processing),
        device=device, max_batch_size=config.valid_batch_size, warmup=False,
    )


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
    metrics = evaluate_slices(
        validation_service(model, loaded, processing, device, config), valid_set.scans, valid_set.masks, batch_size=config.valid_batch_size,
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


def overlay_indices(valid_set: ValidSet, count: int = OVERLAY_SLICES) -> list[int]:
    """``count`` fixed validation slices to show: evenly spread over those with an organ in the truth
    (over all slices when none has one), so every validation shows the same slices."""
    pool = [i for i, mask in enumerate(valid_set.masks) if mask.any()] or list(range(len(valid_set)))
    if len(pool) <= count:
        return pool
    return [pool[round(k * (len(pool) - 1) / (count - 1))] for k in range(count)] if count > 1 else pool[:1]


def validation_overlays(service: Segmenter, valid_set: ValidSet, indices: list[int]) -> list[Overlay]:
    """The slices ``indices`` as the trackers show them: truth overlay | prediction overlay, side by side.

    ``service``: :func:`validation_service` of the model being trained. Captions name the slice by
    its index in the validation set, never by its file name (which may carry patient data). A 2.5D
    model gets each slice's neighbours, as in scoring.
    """
    processing = service.processing
    scans = [valid_set.scans[i] for i in indices]
    stacks = None
    if processing.is_2_5d:
        planes = [scan.pixels for scan in valid_set.scans]
        neighbours = placed_context_indices(valid_set.places, processing.context_offsets)
        stacks = [context_stack(planes, neighbours, i) for i in indices]
    predictions = service.predict_batch(scans, stacks=stacks)
    images: list[Overlay] = []
    for i, scan, prediction in zip(indices, scans, predictions):
        truth = overlay(scan.pixels, valid_set.masks[i])
        images.append((f"validation slice {i}: truth | prediction",
                       np.concatenate([truth, overlay(scan.pixels, prediction.mask)], axis=1)))
    return images
