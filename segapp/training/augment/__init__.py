"""Batched data augmentation on the training device.

One sampling grid per slice (zoom and crop, rotation, scale, translation, elastic bending) is
applied to image and mask together: bilinear for the image, nearest for the mask, so labels stay
exact class ids (:mod:`.geometry`). No left-right flip: it would swap the patient's sides (liver
on the image's left is anatomy, not noise). Intensity changes touch the image only
(:mod:`.intensity`): the domain-randomisation levers (grey-level curves, bias and coil fields,
blur or sharpening, textured noise), then the classic brightness, contrast, gamma and light noise.

Two presets (:data:`PRESETS`): ``classic`` (the affine and photometric set alone: every new lever
at probability 0, drawing nothing, so a seed gives the same batches as before the levers existed)
and ``domain`` (every lever on, at the probabilities of :data:`DOMAIN`), which keeps the model
from relying on the phantom's grey levels and framing.
"""

from __future__ import annotations

import torch

from segapp.training.augment.config import DOMAIN, LEVERS, PRESETS, AugmentConfig, preset
from segapp.training.augment.geometry import random_warp
from segapp.training.augment.intensity import domain_randomisation, photometric

__all__ = ["DOMAIN", "LEVERS", "PRESETS", "AugmentConfig", "augment", "photometric", "preset", "random_warp"]


def augment(
    images: torch.Tensor,
    masks: torch.Tensor,
    config: AugmentConfig,
    generator: torch.Generator,
    *,
    geometric: bool = True,
    intensity: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch on its device.

    Args:
        images: (B, H, W) or (B, C, H, W) uint8 slices at the model input size; the C channels
            of a slice (a 2.5D stack) get the same geometric and intensity changes.
        masks: (B, H, W) uint8 class ids.
        config: Ranges and probabilities.
        generator: Random source on the same device.
        geometric: Apply the random warp (affine, zoom and crop, elastic).
        intensity: Apply the intensity changes (domain levers, then the classic photometric set).

    Returns:
        (B, C, H, W) float32 images in 0..255 (C = 1 for (B, H, W) input) and (B, H, W) long masks.
    """
    x = (images if images.dim() == 4 else images[:, None]).float()
    y = masks.long()
    if geometric:
        x, y = random_warp(x, y, config, generator)
    if intensity:
        x = photometric(domain_randomisation(x, config, generator), config, generator)
    return x, y
