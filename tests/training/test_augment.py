"""Batched augmentation: one shared sampling grid for image and mask, exact class ids, no mirror,
reproducible from the generator, photometric changes on the image only.

Alignment under the default ranges and the left-side marker are also in test_train.py; these
add identity settings, a non-square batch, chirality, determinism and the photometric contract.
"""

from __future__ import annotations

import pytest
import torch

from segapp.training.augment import AugmentConfig, augment, photometric, random_affine

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


def test_random_affine_moves_out_of_frame_content_to_zero_and_background() -> None:
    # A shift of the whole image (translate near 1 = half the frame) leaves an empty border.
    images = torch.full((4, 1, 16, 16), 200.0)
    masks = torch.full((4, 16, 16), 2, dtype=torch.long)
    config = AugmentConfig(rotation_deg=0.0, scale=(1.0, 1.0), translate=0.5)
    x, y = random_affine(images, masks, config, _seeded(11))
    outside = y == 0
    assert outside.any(), "some content must have left the frame"
    assert torch.all(x[:, 0][outside] < 200)  # zeros padded in (bilinear blends at the edge)
    assert set(torch.unique(y).tolist()) <= {0, 2}
