"""Batched augmentation: one shared sampling grid for image and mask, exact class ids, no mirror,
reproducible from the generator, photometric changes on the image only; the domain levers
(grey-level curves, bias and coil fields, blur and sharpening, textured noise, elastic, zoom and
crop), 2.5D stacks (every channel of a slice changed alike) and the classic preset pinned to the
augmentation as it was before the levers.

Alignment under the default ranges and the left-side marker are also in test_train.py; these
add identity settings, a non-square batch, chirality, determinism and the photometric contract.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from segapp.training.augment import DOMAIN, PRESETS, AugmentConfig, augment, photometric, preset, random_warp
from segapp.training.augment.geometry import elastic_field
from segapp.training.augment.intensity import (
    apply_curves,
    bias_field,
    blur_or_sharpen,
    coil_field,
    domain_randomisation,
    gaussian_blur,
    remap,
    remap_curves,
    textured_noise,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NO_WARP = dict(rotation_deg=0.0, scale=(1.0, 1.0), translate=0.0)
NO_INTENSITY = dict(brightness=0.0, contrast=(1.0, 1.0), gamma=(1.0, 1.0), noise_std=0.0)
STRONG = AugmentConfig(rotation_deg=30.0, scale=(0.8, 1.2), translate=0.15)


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _blobs(batch: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth uint8 images of three off-centre Gaussian blobs, and the mask that thresholds them
    (blob k -> class k), so the mask is a function of the image."""
    rows = torch.arange(height, dtype=torch.float32)[:, None]
    cols = torch.arange(width, dtype=torch.float32)[None, :]
    images = torch.zeros(height, width)
    masks = torch.zeros(height, width, dtype=torch.uint8)
    for class_id, (r, c) in enumerate([(0.3, 0.25), (0.7, 0.35), (0.45, 0.75)], start=1):
        blob = torch.exp(-((rows - r * height) ** 2 + (cols - c * width) ** 2) / (2 * 5.0**2))
        images = torch.maximum(images, 250 * blob)
        masks[blob > 0.5] = class_id
    return images.round().to(torch.uint8).expand(batch, -1, -1), masks.expand(batch, -1, -1)


def _centroid(mask: torch.Tensor) -> torch.Tensor:
    """(row, col) mean position of the true pixels of an (H, W) bool mask."""
    return torch.nonzero(mask).float().mean(0)


def test_shapes_and_dtypes_on_a_non_square_batch() -> None:
    images, masks = _blobs(3, 40, 56)
    x, y = augment(images, masks, AugmentConfig(), _seeded())
    assert x.shape == (3, 1, 40, 56) and x.dtype == torch.float32
    assert y.shape == (3, 40, 56) and y.dtype == torch.long
    assert x.min() >= 0 and x.max() <= 255


def test_identity_settings_give_back_the_input() -> None:
    images, masks = _blobs(4, 40, 56)
    x, y = augment(images, masks, AugmentConfig(**NO_WARP, **NO_INTENSITY), _seeded())
    assert torch.equal(y, masks.long())
    assert torch.allclose(x[:, 0], images.float(), atol=1e-3)
    # Switched off, nothing is drawn and nothing changes, whatever the ranges.
    x, y = augment(images, masks, STRONG, _seeded(), geometric=False, intensity=False)
    assert torch.equal(x[:, 0], images.float()) and torch.equal(y, masks.long())


def test_warped_masks_hold_only_the_input_class_ids_or_background() -> None:
    generator = _seeded(3)
    masks = torch.randint(0, 4, (6, 24, 24), generator=generator, dtype=torch.uint8)  # salt and pepper
    masks[0] = 3  # one slice of a single class: only 3 and the background moved in may come out
    masks[1] = torch.where(masks[1] == 1, 2, masks[1])  # no class 1 in this slice
    _, y = augment(masks * 60, masks, STRONG, generator, intensity=False)
    assert set(torch.unique(y[0]).tolist()) <= {0, 3}
    assert 1 not in torch.unique(y[1]).tolist()
    assert set(torch.unique(y).tolist()) <= {0, 1, 2, 3}


def test_image_and_mask_share_the_sampling_grid() -> None:
    # The mask thresholds the image; after one random warp it must still threshold the warped image.
    images, masks = _blobs(16, 40, 56)
    x, y = augment(images, masks, STRONG, _seeded(1), intensity=False)
    moved = 0
    for index in range(16):
        for class_id in (1, 2, 3):
            warped_mask, before = y[index] == class_id, masks[index] == class_id
            assert warped_mask.any()
            # The blob's own pixels in the warped image: where it is above half height, nearest
            # to this blob's warped mask (the blobs are far apart).
            near = torch.nn.functional.max_pool2d(warped_mask[None, None].float(), 9, 1, 4)[0, 0] > 0
            warped_blob = (x[index, 0] > 125) & near
            iou = (warped_blob & warped_mask).sum() / (warped_blob | warped_mask).sum()
            assert iou > 0.8, (index, class_id, iou)
            assert (_centroid(warped_blob) - _centroid(warped_mask)).abs().max() < 1.0
            moved += int((_centroid(warped_mask) - _centroid(before)).abs().max() > 2)
    assert moved > 24  # the warps really moved the blobs, so the agreement above means something


def test_no_mirror_image_ever_the_three_blobs_keep_their_handedness() -> None:
    # Rotation, scale and shift keep the orientation of a triangle; a left-right (or up-down)
    # flip reverses it. The sign of the cross product of the blob centroids tells which.
    images, masks = _blobs(32, 40, 56)
    _, y = augment(images, masks, STRONG, _seeded(2), intensity=False)

    def orientation(mask: torch.Tensor) -> float:
        a, b, c = (_centroid(mask == k) for k in (1, 2, 3))
        (ab_r, ab_c), (ac_r, ac_c) = b - a, c - a
        return float(ab_r * ac_c - ab_c * ac_r)

    expected = orientation(masks[0])
    assert expected != 0
    assert all(orientation(y[i]) * expected > 0 for i in range(32))


def test_seeded_generator_reproduces_the_batch_and_other_seeds_differ() -> None:
    images, masks = _blobs(4, 32, 32)
    first = augment(images, masks, AugmentConfig(), _seeded(7))
    again = augment(images, masks, AugmentConfig(), _seeded(7))
    other = augment(images, masks, AugmentConfig(), _seeded(8))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0]) and not torch.equal(first[1], other[1])


def test_each_slice_draws_its_own_warp() -> None:
    images, masks = _blobs(2, 32, 32)  # two identical slices
    x, y = augment(images, masks, STRONG, _seeded(4), intensity=False)
    assert not torch.equal(y[0], y[1]) and not torch.equal(x[0], x[1])


def test_intensity_changes_leave_the_mask_untouched() -> None:
    images, masks = _blobs(4, 32, 32)
    config = AugmentConfig(brightness=0.3, noise_std=0.1)
    x, y = augment(images, masks, config, _seeded(5), geometric=False)
    assert torch.equal(y, masks.long()) and not torch.equal(x[:, 0], images.float())
    # With the warp on, the photometric draws come after the warp's: the same seed gives the
    # same warped masks with and without the intensity part.
    _, warped = augment(images, masks, config, _seeded(6), intensity=False)
    _, warped_and_shaded = augment(images, masks, config, _seeded(6))
    assert torch.equal(warped, warped_and_shaded)


def test_brightness_alone_shifts_each_slice_by_one_offset_within_its_range() -> None:
    images = torch.full((8, 1, 16, 16), 128.0)
    images[:, :, :8] = 100.0
    config = AugmentConfig(**NO_WARP, **{**NO_INTENSITY, "brightness": 0.1})
    out = photometric(images, config, _seeded(9))
    offsets = (out - images).flatten(1)
    assert torch.allclose(offsets, offsets[:, :1].expand_as(offsets), atol=1e-3)  # one offset per slice
    assert offsets.abs().max() <= 0.1 * 255 + 1e-3
    assert offsets[:, 0].unique().numel() == 8  # and each slice its own


def test_photometric_stays_in_range_even_when_pushed() -> None:
    images = torch.tensor([0.0, 255.0]).repeat_interleave(32).view(1, 1, 8, 8).repeat(4, 1, 1, 1)
    config = AugmentConfig(brightness=1.0, contrast=(0.2, 3.0), noise_std=0.5)
    out = photometric(images, config, _seeded(10))
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 255


def test_random_warp_moves_out_of_frame_content_to_zero_and_background() -> None:
    # A shift of the whole image (translate near 1 = half the frame) leaves an empty border.
    images = torch.full((4, 1, 16, 16), 200.0)
    masks = torch.full((4, 16, 16), 2, dtype=torch.long)
    config = AugmentConfig(rotation_deg=0.0, scale=(1.0, 1.0), translate=0.5)
    x, y = random_warp(images, masks, config, _seeded(11))
    outside = y == 0
    assert outside.any(), "some content must have left the frame"
    assert torch.all(x[:, 0][outside] < 200)  # zeros padded in (bilinear blends at the edge)
    assert set(torch.unique(y).tolist()) <= {0, 2}


# ----------------------------------------------------------------------------- classic preset, pinned


def _augment_before_the_levers(images: torch.Tensor, masks: torch.Tensor, config: AugmentConfig,
                               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The augmentation as it was before domain randomisation (commit f62a1ea), frozen here as
    the reference: the classic preset must reproduce its batches bit for bit for a seed."""
    b = images.shape[0]

    def draw(n: int, low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=generator) * (high - low) + low

    x, y = images[:, None].float(), masks.long()
    angle = draw(b, -config.rotation_deg, config.rotation_deg) * (math.pi / 180)
    scale = draw(b, *config.scale)
    shift = draw(2 * b, -config.translate, config.translate).view(b, 2) * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = F.grid_sample(y[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)[:, 0].long()
    x = (x / 255.0).clamp_min(0).pow(draw(b, *config.gamma).view(b, 1, 1, 1))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast, brightness = draw(b, *config.contrast), draw(b, -config.brightness, config.brightness)
    x = (x - mean) * contrast.view(b, 1, 1, 1) + mean + brightness.view(b, 1, 1, 1)
    sigma = draw(b, 0.0, config.noise_std).view(b, 1, 1, 1)
    x = x + sigma * torch.randn(x.shape, generator=generator)
    return x.clamp(0, 1) * 255.0, y


def test_the_classic_preset_reproduces_the_augmentation_before_the_levers() -> None:
    images, masks = _blobs(6, 48, 40)
    images = (images.float() + torch.arange(48.0)[:, None]).clamp(0, 255).to(torch.uint8)  # a ramp under the blobs
    for seed in (0, 1):
        expected = _augment_before_the_levers(images, masks, AugmentConfig(), _seeded(seed))
        got = augment(images, masks, PRESETS["classic"], _seeded(seed))
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    assert PRESETS["classic"] == AugmentConfig()  # and AugmentConfig() is that preset


@pytest.mark.parametrize("lever", sorted(DOMAIN))
def test_each_lever_changes_the_batch_only_when_on(lever: str) -> None:
    images, masks = _blobs(4, 48, 48)
    classic = augment(images, masks, AugmentConfig(), _seeded(3))
    off = augment(images, masks, AugmentConfig(**{lever: 0.0}), _seeded(3))
    on = augment(images, masks, AugmentConfig(**{lever: 1.0}), _seeded(3))
    assert torch.equal(off[0], classic[0]) and torch.equal(off[1], classic[1])
    assert not torch.equal(on[0], classic[0])


def test_the_domain_preset_turns_every_lever_on_and_presets_take_overrides() -> None:
    domain = PRESETS["domain"]
    assert all(getattr(domain, name) > 0 for name in DOMAIN)
    assert preset("domain", elastic=0.0) == dataclasses.replace(domain, elastic=0.0)
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        preset("fancy")
    with pytest.raises(ValueError, match="remap is a probability"):
        AugmentConfig(remap=1.5)
    with pytest.raises(ValueError, match="exclude each other"):
        AugmentConfig(blur=0.6, sharpen=0.6)


# ----------------------------------------------------------------------------- domain preset, 2.5D


@pytest.mark.parametrize("channels", [None, 1, 3])
def test_domain_shapes_dtypes_and_range(channels: int | None) -> None:
    images, masks = _blobs(5, 40, 56)
    if channels is not None:
        images = images[:, None].expand(-1, channels, -1, -1)
    x, y = augment(images, masks, PRESETS["domain"], _seeded(12))
    assert x.shape == (5, channels or 1, 40, 56) and x.dtype == torch.float32
    assert y.shape == (5, 40, 56) and y.dtype == torch.long
    assert x.min() >= 0 and x.max() <= 255 and set(torch.unique(y).tolist()) <= {0, 1, 2, 3}


def test_every_channel_of_a_slice_gets_the_same_change() -> None:
    # The same image in three channels: with the per-pixel noise off, every draw (warp, curve,
    # fields, blur) is the slice's, so the three channels come out identical.
    images, masks = _blobs(8, 48, 48)
    stack = images[:, None].expand(-1, 3, -1, -1)
    quiet = preset("domain", noise=0.0, remap=1.0, bias=1.0, coil=1.0, blur=0.5, sharpen=0.5, elastic=1.0, zoom=1.0)
    quiet = dataclasses.replace(quiet, noise_std=0.0)
    x, y = augment(stack, masks, quiet, _seeded(13))
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    single, y1 = augment(images, masks, quiet, _seeded(13))  # and as one channel: the same slice
    assert torch.allclose(single[:, 0], x[:, 0], atol=1e-3) and torch.equal(y, y1)
    # With noise, the channels differ by noise alone: independent per channel, same strength.
    x, _ = augment(stack, masks, preset("domain", noise=1.0), _seeded(13))
    difference = (x[:, 0] - x[:, 1]).abs().mean()
    assert 0 < difference < 0.1 * 255


def test_masks_move_with_the_image_under_elastic_zoom_and_side_crops() -> None:
    # A bright square on a dark field, its mask the same square: after the warp the mask must
    # still be where the image is bright.
    images = torch.zeros(16, 64, 64, dtype=torch.uint8)
    images[:, 20:44, 16:48] = 200
    masks = (images > 0).to(torch.uint8) * 2
    config = preset("classic", elastic=1.0, zoom=1.0, crop_sides=1.0)
    x, y = augment(images, masks, config, _seeded(14), intensity=False)
    assert set(torch.unique(y).tolist()) <= {0, 2}
    bright, labelled = x[:, 0] > 100, y == 2
    iou = (bright & labelled).flatten(1).sum(1) / (bright | labelled).flatten(1).sum(1)
    assert iou.min() > 0.9, iou
    assert not torch.equal(y, masks.long())


def test_side_crops_stretch_horizontally_and_zoom_keeps_the_aspect() -> None:
    images = torch.zeros(8, 64, 64, dtype=torch.uint8)
    images[:, 24:40, 24:40] = 200  # a centred square
    masks = (images > 0).to(torch.uint8)
    still = dict(rotation_deg=0.0, scale=(1.0, 1.0), translate=0.0)
    _, sides = augment(images, masks, AugmentConfig(**still, crop_sides=1.0, crop_sides_max=1.6), _seeded(15),
                       intensity=False)
    _, zoomed = augment(images, masks, AugmentConfig(**still, zoom=1.0, zoom_in=1.8, zoom_out=1.2), _seeded(15),
                        intensity=False)

    def extent(mask: torch.Tensor) -> tuple[float, float]:
        rows, cols = torch.nonzero(mask, as_tuple=True)
        return float(rows.max() - rows.min() + 1), float(cols.max() - cols.min() + 1)

    widths = []
    for index in range(8):
        height, width = extent(sides[index])
        assert height == 16 and width >= 16  # wider (stretch 1..1.6), never taller
        widths.append(width)
        height, width = extent(zoomed[index])
        assert height > 16 and abs(width - height) <= 1  # larger, still square
    assert sum(widths) / len(widths) > 18


def test_elastic_field_is_smooth_and_within_its_magnitude() -> None:
    config = AugmentConfig(elastic=1.0, elastic_magnitude=0.05)
    field = elastic_field(16, 128, 96, config, _seeded(16), torch.device("cpu"))  # (B, H, W, 2)
    assert field.shape == (16, 128, 96, 2)
    assert field.abs().max() <= 2 * 0.05 + 1e-6 and field.abs().max() > 0.05  # grid units: 2 per image
    steps = max((field[:, 1:] - field[:, :-1]).abs().max(), (field[:, :, 1:] - field[:, :, :-1]).abs().max())
    assert steps < 0.1 * field.abs().max()  # no jumps: a few bends across the image
    none = elastic_field(4, 8, 8, AugmentConfig(elastic=0.0), _seeded(16), torch.device("cpu"))
    assert torch.equal(none, torch.zeros_like(none))


def test_seeded_generator_reproduces_the_domain_batch() -> None:
    images, masks = _blobs(4, 32, 32)
    first = augment(images, masks, PRESETS["domain"], _seeded(17))
    again = augment(images, masks, PRESETS["domain"], _seeded(17))
    other = augment(images, masks, PRESETS["domain"], _seeded(18))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])


# ----------------------------------------------------------------------------- intensity levers


def _ramp(batch: int = 1, size: int = 64) -> torch.Tensor:
    """(B, 1, size, size) on 0..1, rising along the columns."""
    return torch.linspace(0, 1, size).expand(batch, 1, size, size).contiguous()


def test_monotone_curves_keep_the_order_of_grey_levels() -> None:
    config = AugmentConfig(remap=1.0, remap_nonmonotone=0.0)
    out = remap(_ramp(32), config, _seeded(19))[:, 0, 0]  # (B, size) along the ramp
    assert torch.all(out[:, 1:] >= out[:, :-1] - 1e-6)
    assert (out[:, -1] - out[:, 0]).min() > 0.5  # and they keep a contrast
    assert not torch.allclose(out, _ramp(32)[:, 0, 0], atol=0.02)  # but a new spacing


def test_free_curves_can_invert_and_keep_air_dark() -> None:
    curves = remap_curves(64, AugmentConfig(remap=1.0, remap_nonmonotone=1.0), _seeded(20), torch.device("cpu"))
    assert curves.shape == (64, 256) and curves.min() >= 0 and curves.max() <= 1
    falling = (curves[:, 1:] < curves[:, :-1] - 1e-4).any(1)
    assert falling.float().mean() > 0.5  # most are not monotone
    inverted = curves[:, 230] < curves[:, 100] - 0.2  # bright tissue drawn darker than mid-grey tissue
    assert inverted.any()
    assert curves[:, 0].max() <= 0.1  # air (0) stays dark


def test_curves_are_exact_on_identity_and_interpolate_between_entries() -> None:
    identity = torch.linspace(0, 1, 256)[None].expand(2, -1)
    x = torch.rand(2, 3, 8, 8, generator=_seeded(21))
    assert torch.allclose(apply_curves(x, identity), x, atol=1e-6)
    # Slices not drawn come back unchanged, bit for bit.
    assert torch.equal(remap(x, AugmentConfig(remap=0.0), _seeded(21)), x)


def test_bias_field_is_smooth_and_within_its_strength() -> None:
    config = AugmentConfig(bias=1.0, bias_strength=0.4)
    field = bias_field(16, 64, 48, config, _seeded(22), torch.device("cpu"))  # (B, 1, H, W)
    assert field.shape == (16, 1, 64, 48)
    assert field.min() >= 0.6 - 1e-6 and field.max() <= 1.4 + 1e-6
    assert (field - 1).abs().amax(dim=(1, 2, 3)).max() > 0.2  # strong ones occur
    steps = max((field[..., 1:, :] - field[..., :-1, :]).abs().max(), (field[..., 1:] - field[..., :-1]).abs().max())
    assert steps < 0.05
    off = bias_field(4, 8, 8, AugmentConfig(bias=0.0), _seeded(22), torch.device("cpu"))
    assert torch.equal(off, torch.ones_like(off))


def test_coil_shading_brightens_top_and_bottom_over_the_middle() -> None:
    field = coil_field(16, 64, AugmentConfig(coil=1.0, coil_strength=0.6), _seeded(23), torch.device("cpu"))
    assert field.shape == (16, 1, 64, 1) and field.max() <= 1 + 1e-6 and field.min() >= 1 / 1.6 - 1e-3
    rows = field[:, 0, :, 0]
    assert torch.all(rows[:, :4].mean(1) >= rows[:, 28:36].mean(1)) and torch.all(rows[:, -4:].mean(1) >= rows[:, 28:36].mean(1))
    assert (rows.amax(1) - rows.amin(1)).max() > 0.2


def test_blur_smooths_and_sharpening_steepens_an_edge() -> None:
    step = torch.zeros(4, 2, 32, 32)
    step[..., 16:] = 1.0
    blurred = blur_or_sharpen(step, AugmentConfig(blur=1.0), _seeded(24))
    sharpened = blur_or_sharpen(step, AugmentConfig(sharpen=1.0), _seeded(24))
    assert torch.all(blurred[..., 15] > 0.01) and torch.all(blurred[..., 16] < 0.99)  # the edge spreads
    assert torch.all(sharpened[..., 15] < -0.01) and torch.all(sharpened[..., 16] > 1.01)  # over- and undershoot
    assert torch.equal(blurred[:, 0], blurred[:, 1])  # one kernel per slice, on every channel
    flat = torch.full((2, 1, 16, 16), 0.5)
    assert torch.allclose(gaussian_blur(flat, torch.tensor([1.0, 2.0]), 6), flat)  # reflected edges: no dark rim
    assert torch.equal(blur_or_sharpen(step, AugmentConfig(), _seeded(24)), step)


def test_noise_textures_white_rician_and_correlated() -> None:
    air = torch.zeros(48, 1, 32, 32)
    config = AugmentConfig(noise=1.0, noise_strength=0.05)
    noisy = textured_noise(air, config, _seeded(25))
    std = noisy.flatten(1).std(1)
    assert std.max() < 0.06 and std.min() > 1e-4 and std.median() < 0.025  # mostly mild (strength x u^2)
    # Rician noise is positive in the air; white and correlated noise average out around 0.
    positive = (noisy.flatten(1) >= 0).all(1)
    assert positive.any() and not positive.all()
    # Correlated noise: neighbouring pixels alike (lag-1 correlation), white noise: not.
    zero_mean = noisy - noisy.mean(dim=(2, 3), keepdim=True)
    lag1 = (zero_mean[..., 1:] * zero_mean[..., :-1]).mean(dim=(1, 2, 3)) / zero_mean.pow(2).mean(dim=(1, 2, 3))
    assert lag1.max() > 0.5 and lag1[~positive].min() < 0.2
    assert torch.equal(textured_noise(air, AugmentConfig(), _seeded(25)), air)


def test_domain_randomisation_with_every_lever_off_is_the_identity() -> None:
    x = torch.rand(2, 3, 16, 16, generator=_seeded(26)) * 255
    assert domain_randomisation(x, AugmentConfig(), _seeded(26)) is x
