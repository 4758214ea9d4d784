"""The geometric part of augmentation: one sampling grid per slice, shared by image and mask.

The grid composes, output pixel -> input pixel: zoom and crop (a window of the rotated frame,
so crops cut along the output's own edges), then the classic affine (rotation, scale,
translation), plus a smooth elastic displacement. The image is sampled bilinear, the mask
nearest, so labels stay exact class ids. Every channel of a slice shares the slice's grid
(the channels of a 2.5D stack are neighbouring slices of one scan). No mirror, ever: a flip
would swap the patient's sides.

Coordinates are ``grid_sample``'s normalised ones: x (columns) then y (rows), -1..1 across
the image, ``align_corners=False``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from segapp.training.augment.config import AugmentConfig

ELASTIC_GRID = 5  # control points per axis of the elastic field: a few bends across the body


def uniform(shape: int | tuple[int, ...], low: float, high: float, generator: torch.Generator,
            device: torch.device) -> torch.Tensor:
    """Uniform draws in [low, high) of ``shape`` from ``generator``."""
    size = (shape,) if isinstance(shape, int) else shape
    return torch.rand(size, generator=generator, device=device) * (high - low) + low


def chance(b: int, p: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """(B,) bool: which slices get a change of probability ``p``."""
    return torch.rand(b, generator=generator, device=device) < p


def affine_theta(b: int, config: AugmentConfig, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """(B, 2, 3) random rotation, scale and shift, output -> input coordinates (the classic draws, in their order)."""
    angle = uniform(b, -config.rotation_deg, config.rotation_deg, generator, device) * (math.pi / 180)
    scale = uniform(b, *config.scale, generator, device)
    shift = uniform(2 * b, -config.translate, config.translate, generator, device).view(b, 2) * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    return torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )


def zoom_crop(theta: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """``theta`` (B, 2, 3) preceded by a random zoom window: in = theta(window(out)).

    A zoomed slice (probability ``config.zoom``) scales by a log-uniform factor in
    [zoom_out, zoom_in] (> 1 enlarges, so the frame cuts the body; < 1 shrinks it into an empty
    margin); a side-cropped one (``config.crop_sides``) is also stretched horizontally by up to
    ``crop_sides_max``, cutting the body's left and right sides. The window's centre is drawn
    so that it stays inside the frame (zoom in) or the frame inside it (zoom out).
    """
    b, device = theta.shape[0], theta.device
    zoom = torch.exp(uniform(b, math.log(config.zoom_out), math.log(config.zoom_in), generator, device))
    zoom = torch.where(chance(b, config.zoom, generator, device), zoom, torch.ones_like(zoom))
    sides = uniform(b, 1.0, config.crop_sides_max, generator, device)
    sides = torch.where(chance(b, config.crop_sides, generator, device), sides, torch.ones_like(sides))
    factor = torch.stack([zoom * sides, zoom], 1)  # (B, 2): x, y
    centre = uniform((b, 2), -1.0, 1.0, generator, device) * (1 - 1 / factor).abs()
    linear = theta[:, :, :2] / factor[:, None, :]  # theta's columns scaled: M @ diag(1/zx, 1/zy)
    shift = theta[:, :, 2] + (theta[:, :, :2] @ centre[:, :, None])[:, :, 0]
    return torch.cat([linear, shift[:, :, None]], 2)


def elastic_field(b: int, height: int, width: int, config: AugmentConfig, generator: torch.Generator,
                  device: torch.device) -> torch.Tensor:
    """(B, H, W, 2) smooth random displacement in grid coordinates; zero where not drawn.

    A coarse :data:`ELASTIC_GRID` square of Gaussian draws, upsampled bicubic and scaled so its
    largest displacement is up to ``config.elastic_magnitude`` of the image's size on each axis.
    """
    coarse = torch.randn((b, 2, ELASTIC_GRID, ELASTIC_GRID), generator=generator, device=device)
    field = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)
    peak = field.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    strength = uniform(b, 0.0, 2 * config.elastic_magnitude, generator, device)  # 2: the grid spans 2 per image
    strength = strength * chance(b, config.elastic, generator, device)
    return (field / peak * strength.view(b, 1, 1, 1)).permute(0, 2, 3, 1)


def random_warp(
    images: torch.Tensor,
    masks: torch.Tensor,
    config: AugmentConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp image and mask batches with one random sampling grid per slice.

    Draws the classic affine first; zoom and crop, then the elastic field, only when their
    probability is above 0, so a classic configuration draws (and returns) exactly what the
    affine-only augmentation did.

    Args:
        images: (B, C, H, W) float; all C channels of a slice move together.
        masks: (B, H, W) integer class ids.
        config: Ranges and probabilities.
        generator: Random source on the batch's device (for reproducible runs and resume).

    Returns:
        Warped images (B, C, H, W) float (zeros where the slice moved out) and masks
        (B, H, W) long (background there).
    """
    b, _, height, width = images.shape
    device = images.device
    theta = affine_theta(b, config, generator, device)  # (B, 2, 3)
    if config.zoom > 0 or config.crop_sides > 0:
        theta = zoom_crop(theta, config, generator)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)  # (B, H, W, 2)
    if config.elastic > 0:
        grid = grid + elastic_field(b, height, width, config, generator, device)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    warped_masks = F.grid_sample(
        masks[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False
    )[:, 0].long()
    return warped, warped_masks
