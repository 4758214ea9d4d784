"""Batched data augmentation on the training device.

One affine warp per slice (rotation, scale, translation) is applied to image and mask
with the same sampling grid: bilinear for the image, nearest for the mask, so labels
stay exact class ids. No left-right flip: it would swap the patient's sides (liver on
the image's left is anatomy, not noise). Photometric changes (brightness, contrast,
gamma, noise) touch the image only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random changes; each slice draws its own values uniformly.

    Attributes:
        rotation_deg: Rotation in [-r, r] degrees.
        scale: (min, max) zoom factor.
        translate: Shift up to this fraction of the image size, each axis.
        brightness: Added offset in [-b, b] on the 0..1 scale.
        contrast: Multiplier range around the slice mean.
        gamma: Exponent range on the 0..1 scale.
        noise_std: Gaussian noise standard deviation up to this (0..1 scale).
    """

    rotation_deg: float = 15.0
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.06
    brightness: float = 0.1
    contrast: tuple[float, float] = (0.8, 1.2)
    gamma: tuple[float, float] = (0.7, 1.5)
    noise_std: float = 0.03


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def random_affine(
    images: torch.Tensor,
    masks: torch.Tensor,
    config: AugmentConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp image and mask batches with one random affine per slice.

    Args:
        images: (B, C, H, W) float; all C channels share the slice's warp.
        masks: (B, H, W) integer class ids.
        config: Ranges.
        generator: Random source on the batch's device (for reproducible runs and resume).

    Returns:
        Warped images (B, C, H, W) float (zeros where the slice moved out) and masks
        (B, H, W) long (background there).
    """
    b, device = images.shape[0], images.device
    angle = _uniform(b, -config.rotation_deg, config.rotation_deg, generator, device) * (math.pi / 180)
    scale = _uniform(b, *config.scale, generator, device)
    shift = _uniform(2 * b, -config.translate, config.translate, generator, device).view(b, 2) * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # theta maps output coordinates to input coordinates (normalised -1..1).
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )  # (B, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    warped_masks = F.grid_sample(
        masks[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False
    )[:, 0].long()
    return warped, warped_masks


def photometric(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Random brightness, contrast, gamma and noise on (B, C, H, W) images in 0..255: one draw per
    slice for all its channels (the contrast's mean is over them all); the noise is per pixel."""
    b, device = images.shape[0], images.device
    x = images / 255.0
    gamma = _uniform(b, *config.gamma, generator, device).view(b, 1, 1, 1)
    x = x.clamp_min(0).pow(gamma)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = _uniform(b, *config.contrast, generator, device).view(b, 1, 1, 1)
    brightness = _uniform(b, -config.brightness, config.brightness, generator, device).view(b, 1, 1, 1)
    x = (x - mean) * contrast + mean + brightness
    sigma = _uniform(b, 0.0, config.noise_std, generator, device).view(b, 1, 1, 1)
    noise = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
    x = x + sigma * noise
    return x.clamp(0, 1) * 255.0


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
        images: (B, H, W) uint8 slices at the model input size, or (B, C, H, W) channel stacks
            (2.5D), whose channels move together.
        masks: (B, H, W) uint8 class ids.
        config: Ranges.
        generator: Random source on the same device.
        geometric: Apply the random affine.
        intensity: Apply the photometric changes.

    Returns:
        (B, 1, H, W) (or (B, C, H, W)) float32 images in 0..255 and (B, H, W) long masks.
    """
    x = (images[:, None] if images.ndim == 3 else images).float()
    y = masks.long()
    if geometric:
        x, y = random_affine(x, y, config, generator)
    if intensity:
        x = photometric(x, config, generator)
    return x, y
