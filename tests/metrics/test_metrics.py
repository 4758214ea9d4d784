"""Metrics: hand-computed Dice / IoU / Hausdorff cases, a brute-force reference, accumulation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from segapp.labels import LABELS, NUM_LABELS
from segapp.metrics.slices import (
    MetricAccumulator,
    dice_per_class,
    hausdorff_per_class,
    iou_per_class,
    mean_foreground_dice,
    slice_metrics,
)

STOMACH, SMALL_BOWEL, LARGE_BOWEL = 1, 2, 3


def square(shape: tuple[int, int], top: int, left: int, size: int, label: int = STOMACH) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    mask[top : top + size, left : left + size] = label
    return mask


def blobs(
    rng: np.random.Generator, shape: tuple[int, int], count: int, radius: tuple[int, int]
) -> np.ndarray:
    """Random overlapping discs of random organ classes."""
    mask = np.zeros(shape, dtype=np.int64)
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    for _ in range(count):
        r, c = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        rad = rng.integers(*radius)
        mask[(rows - r) ** 2 + (cols - c) ** 2 < rad**2] = rng.integers(1, NUM_LABELS)
    return mask


def reference_hausdorff(
    pred: np.ndarray, target: np.ndarray, label: int, spacing: tuple[float, float], percentile: float
) -> tuple[float, float]:
    """Brute force over all boundary pairs (boundary: region minus its 4-neighbour erosion)."""

    def boundary(region: np.ndarray) -> np.ndarray:
        p = np.pad(region, 1)
        interior = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
        return np.argwhere(region & ~interior) * np.asarray(spacing)

    a, b = boundary(pred == label), boundary(target == label)
    pairwise = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    distances = np.concatenate([pairwise.min(1), pairwise.min(0)])
    return float(distances.max()), float(np.percentile(distances, percentile))


# Dice and IoU


def test_identical_masks_score_one_and_zero_distance():
    mask = square((32, 40), 5, 6, 10) + square((32, 40), 20, 20, 6, LARGE_BOWEL)
    m = slice_metrics(mask, mask.copy(), spacing_mm=(1.5, 1.5))
    np.testing.assert_array_equal(m.dice, np.ones(NUM_LABELS))
    np.testing.assert_array_equal(m.iou, np.ones(NUM_LABELS))
    for hd in (m.hd95_px, m.hd_max_px, m.hd95_mm, m.hd_max_mm):
        np.testing.assert_array_equal(hd, np.zeros(NUM_LABELS))


def test_disjoint_squares_score_zero():
    pred, target = square((30, 30), 0, 0, 8), square((30, 30), 15, 15, 8)
    assert dice_per_class(pred, target)[STOMACH] == 0.0
    assert iou_per_class(pred, target)[STOMACH] == 0.0


def test_half_overlapping_squares():
    # Two 10x10 squares shifted by 5 columns: overlap 50 px, sizes 100 + 100, union 150.
    pred, target = square((20, 30), 5, 2, 10), square((20, 30), 5, 7, 10)
    assert dice_per_class(pred, target)[STOMACH] == pytest.approx(0.5)
    assert iou_per_class(pred, target)[STOMACH] == pytest.approx(1 / 3)
    # Background: 600 - 100 px each, overlap 600 - 150 = 450.
    assert dice_per_class(pred, target)[0] == pytest.approx(2 * 450 / 1000)


def test_class_absent_from_both_scores_one():
    pred, target = square((16, 16), 2, 2, 5), square((16, 16), 3, 3, 5)
    for scores in (dice_per_class(pred, target), iou_per_class(pred, target)):
        assert scores[SMALL_BOWEL] == 1.0 and scores[LARGE_BOWEL] == 1.0
    hd = hausdorff_per_class(pred, target)
    assert hd.max_px[SMALL_BOWEL] == 0.0 and hd.p95_px[LARGE_BOWEL] == 0.0


def test_class_in_one_mask_only_scores_zero_and_the_diagonal():
    height, width = 30, 40
    pred = square((height, width), 3, 3, 6, SMALL_BOWEL)
    target = np.zeros((height, width), dtype=np.uint8)
    assert dice_per_class(pred, target)[SMALL_BOWEL] == 0.0
    assert iou_per_class(pred, target)[SMALL_BOWEL] == 0.0
    hd = hausdorff_per_class(pred, target, spacing_mm=(2.0, 1.0))
    assert hd.max_px[SMALL_BOWEL] == pytest.approx(50.0)  # sqrt(30**2 + 40**2)
    assert hd.p95_px[SMALL_BOWEL] == pytest.approx(50.0)
    assert hd.max_mm[SMALL_BOWEL] == pytest.approx(math.hypot(60.0, 40.0))
    # Swapping the roles gives the same worst case.
    assert hausdorff_per_class(target, pred).max_px[SMALL_BOWEL] == pytest.approx(50.0)


def test_mean_foreground_dice_ignores_background():
    assert mean_foreground_dice(np.array([0.0, 0.5, 1.0, 0.0])) == pytest.approx(0.5)
    assert mean_foreground_dice(np.array([1.0, 0.3, 0.3, 0.3])) == pytest.approx(0.3)


# Hausdorff


@pytest.mark.parametrize("k", [1, 3, 7])
def test_single_points_shifted_along_rows(k):
    pred, target = np.zeros((20, 20), np.uint8), np.zeros((20, 20), np.uint8)
    pred[4, 6] = STOMACH
    target[4 + k, 6] = STOMACH
    hd = hausdorff_per_class(pred, target, spacing_mm=(2.0, 1.0))
    assert hd.max_px[STOMACH] == pytest.approx(k)
    assert hd.p95_px[STOMACH] == pytest.approx(k)
    assert hd.max_mm[STOMACH] == pytest.approx(2.0 * k)


@pytest.mark.parametrize("k", [1, 4, 9])
def test_squares_shifted_along_rows_use_row_spacing(k):
    pred, target = square((40, 40), 5, 10, 10), square((40, 40), 5 + k, 10, 10)
    hd = hausdorff_per_class(pred, target, spacing_mm=(2.0, 1.0))
    assert hd.max_px[STOMACH] == pytest.approx(k)
    assert hd.max_mm[STOMACH] == pytest.approx(2.0 * k)


@pytest.mark.parametrize("k", [2, 5])
def test_squares_shifted_along_columns_use_column_spacing(k):
    pred, target = square((40, 40), 10, 5, 10), square((40, 40), 10, 5 + k, 10)
    hd = hausdorff_per_class(pred, target, spacing_mm=(2.0, 3.0))
    assert hd.max_px[STOMACH] == pytest.approx(k)
    assert hd.max_mm[STOMACH] == pytest.approx(3.0 * k)


def test_distance_is_between_boundaries_not_all_pixels():
    # A 9x9 square against the same square with its centre pixel removed: the hole adds four
    # boundary pixels, 3 px from the outer ring. Over all pixels the distance would be 1.
    pred = square((15, 15), 3, 3, 9)
    target = pred.copy()
    target[7, 7] = 0
    assert hausdorff_per_class(pred, target).max_px[STOMACH] == pytest.approx(3.0)


def test_diagonal_offset_is_euclidean():
    pred, target = np.zeros((20, 20), np.uint8), np.zeros((20, 20), np.uint8)
    pred[2, 2] = STOMACH
    target[5, 6] = STOMACH
    hd = hausdorff_per_class(pred, target, spacing_mm=(0.5, 2.0))
    assert hd.max_px[STOMACH] == pytest.approx(5.0)
    assert hd.max_mm[STOMACH] == pytest.approx(math.hypot(1.5, 8.0))


def test_mm_fields_are_none_without_spacing():
    mask = square((10, 10), 1, 1, 3)
    hd = hausdorff_per_class(mask, mask)
    assert hd.max_mm is None and hd.p95_mm is None
    assert slice_metrics(mask, mask).hd95_mm is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hausdorff_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    pred, target = blobs(rng, (36, 44), 6, (3, 12)), blobs(rng, (36, 44), 6, (3, 12))
    spacing = (1.7, 0.8)
    hd = hausdorff_per_class(pred, target, spacing_mm=spacing, percentile=90.0)
    for label in range(NUM_LABELS):
        if not ((pred == label).any() and (target == label).any()):
            continue
        max_px, p_px = reference_hausdorff(pred, target, label, (1.0, 1.0), 90.0)
        max_mm, p_mm = reference_hausdorff(pred, target, label, spacing, 90.0)
        assert hd.max_px[label] == pytest.approx(max_px)
        assert hd.p95_px[label] == pytest.approx(p_px)
        assert hd.max_mm[label] == pytest.approx(max_mm)
        assert hd.p95_mm[label] == pytest.approx(p_mm)


def test_hd95_is_at_most_hd_max_and_percentile_bounds():
    rng = np.random.default_rng(3)
    pred, target = blobs(rng, (64, 64), 8, (4, 16)), blobs(rng, (64, 64), 8, (4, 16))
    hd = hausdorff_per_class(pred, target, spacing_mm=(1.2, 0.9))
    assert np.all(hd.p95_px <= hd.max_px) and np.all(hd.p95_px >= 0)
    assert np.all(hd.p95_mm <= hd.max_mm)
    full = hausdorff_per_class(pred, target, percentile=100.0)
    np.testing.assert_allclose(full.p95_px, full.max_px)
    with pytest.raises(ValueError, match="percentile"):
        hausdorff_per_class(pred, target, percentile=101.0)


# Inputs


def test_torch_and_numpy_inputs_agree():
    rng = np.random.default_rng(4)
    pred, target = blobs(rng, (48, 56), 8, (4, 14)), blobs(rng, (48, 56), 8, (4, 14))
    from_numpy = slice_metrics(pred.astype(np.uint8), target, spacing_mm=(1.5, 2.0))
    from_torch = slice_metrics(
        torch.from_numpy(pred).to(torch.int32), torch.from_numpy(target), spacing_mm=(1.5, 2.0)
    )
    for field in ("dice", "iou", "hd95_px", "hd_max_px", "hd95_mm", "hd_max_mm"):
        np.testing.assert_allclose(getattr(from_numpy, field), getattr(from_torch, field))
        assert getattr(from_torch, field).dtype == np.float64


def test_invalid_masks_are_rejected():
    mask = np.zeros((8, 8), np.int64)
    with pytest.raises(ValueError, match="shape"):
        dice_per_class(mask, np.zeros((8, 9), np.int64))
    with pytest.raises(TypeError, match="argmax"):
        dice_per_class(mask.astype(np.float32), mask)
    with pytest.raises(ValueError, match="0..3"):
        dice_per_class(mask + 4, mask)
    with pytest.raises(ValueError, match="shape"):
        MetricAccumulator().update(np.stack([mask, mask]), mask)  # a (B, H, W) batch needs (B, H, W) targets


# Accumulation


def test_accumulator_averages_per_slice_metrics():
    rng = np.random.default_rng(6)
    pairs = [(blobs(rng, (40, 48), 6, (3, 12)), blobs(rng, (40, 48), 6, (3, 12))) for _ in range(5)]
    acc = MetricAccumulator()
    for pred, target in pairs:
        acc.update(pred, target, spacing_mm=(2.0, 1.0))
    result = acc.compute()

    per_slice = [slice_metrics(p, t, spacing_mm=(2.0, 1.0)) for p, t in pairs]
    dice = np.mean([m.dice for m in per_slice], axis=0)
    names = [label.name for label in LABELS]
    assert result["slices"] == 5 and len(acc) == 5
    assert list(result["dice"]) == names
    np.testing.assert_allclose(list(result["dice"].values()), dice)
    np.testing.assert_allclose(list(result["iou"].values()), np.mean([m.iou for m in per_slice], axis=0))
    np.testing.assert_allclose(
        list(result["hd95_px"].values()), np.mean([m.hd95_px for m in per_slice], axis=0)
    )
    np.testing.assert_allclose(
        list(result["hd95_mm"].values()), np.mean([m.hd95_mm for m in per_slice], axis=0)
    )
    assert result["mean_foreground_dice"] == pytest.approx(dice[1:].mean())
    assert json.loads(json.dumps(result)) == result


def test_accumulator_batch_update_equals_slice_updates():
    rng = np.random.default_rng(7)
    pred = np.stack([blobs(rng, (32, 40), 5, (3, 10)) for _ in range(4)])
    target = np.stack([blobs(rng, (32, 40), 5, (3, 10)) for _ in range(4)])
    batched, single = MetricAccumulator(), MetricAccumulator()
    batched.update(torch.from_numpy(pred), torch.from_numpy(target))
    for p, t in zip(pred, target, strict=True):
        single.update(p, t)
    a, b = batched.compute(), single.compute()
    assert a.keys() == b.keys() and a["slices"] == b["slices"] == 4
    for key in ("dice", "iou", "hd95_px"):
        assert a[key] == pytest.approx(b[key])


def test_accumulator_reports_mm_only_when_every_slice_had_spacing():
    mask_a, mask_b = square((20, 20), 2, 2, 6), square((20, 20), 4, 3, 6)
    acc = MetricAccumulator()
    acc.update(mask_a, mask_b, spacing_mm=(1.5, 1.5))
    assert "hd95_mm" in acc.compute()
    acc.update(mask_a, mask_b)
    assert "hd95_mm" not in acc.compute() and "hd95_px" in acc.compute()

    fast = MetricAccumulator(hausdorff=False)
    fast.update(mask_a, mask_b, spacing_mm=(1.5, 1.5))
    assert "hd95_px" not in fast.compute() and "hd95_mm" not in fast.compute()

    acc.reset()
    with pytest.raises(ValueError, match="update"):
        acc.compute()


def test_full_size_slice_metrics_are_consistent():
    # Speed is a benchmark's business (timed asserts fail on busy machines); this checks a
    # full-size (310 x 360) pair of many blobs end to end.
    rng = np.random.default_rng(8)
    pred, target = blobs(rng, (310, 360), 14, (10, 60)), blobs(rng, (310, 360), 14, (10, 60))
    m = slice_metrics(pred, target, spacing_mm=(1.5, 1.5))
    assert np.all(m.hd95_px <= m.hd_max_px)
    assert np.allclose(m.hd95_mm, 1.5 * m.hd95_px)
