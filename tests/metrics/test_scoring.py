"""Scoring a model on labelled slices: predicting (same-size batches, input order) and scoring."""

from __future__ import annotations

import numpy as np
import pytest

from segapp.io.image import ScanImage
from segapp.io.readers import read_image
from segapp.labels import NUM_LABELS
from segapp.metrics.scoring import evaluate_slices, predict_slices, score_slices
from segapp.metrics.slices import MetricAccumulator

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Interleaved sizes, so same-size batching has to reorder the slices and put them back.
SIZES = [(40, 48), (32, 32), (40, 48), (24, 36), (32, 32), (40, 48), (24, 36)]


def scans_and_masks(seed: int = 0) -> tuple[list[ScanImage], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    scans = [
        read_image(rng.integers(0, 256, size, dtype=np.uint8), spacing_mm=(1.5, 1.25)) for size in SIZES
    ]
    masks = [rng.integers(0, NUM_LABELS, size, dtype=np.uint8) for size in SIZES]
    return scans, masks


def test_predict_slices_returns_each_scans_mask_in_input_order(tiny_segmenter) -> None:
    scans, _ = scans_and_masks()
    one_by_one = [tiny_segmenter.predict_batch([scan])[0].mask for scan in scans]
    for batch_size in (1, 2, 16):
        masks = predict_slices(tiny_segmenter, scans, batch_size=batch_size)
        assert [m.shape for m in masks] == SIZES
        assert all(m.dtype == np.uint8 for m in masks)
        for mask, expected in zip(masks, one_by_one, strict=True):
            np.testing.assert_array_equal(mask, expected)


def test_score_slices_averages_what_the_accumulator_averages() -> None:
    _, truth = scans_and_masks(1)
    preds = [np.roll(mask, 3, axis=1) for mask in truth]
    spacings: list[tuple[float, float] | None] = [(1.5, 1.25)] * len(truth)
    accumulator = MetricAccumulator()
    for pred, target in zip(preds, truth, strict=True):
        accumulator.update(pred, target, spacing_mm=(1.5, 1.25))
    expected = accumulator.compute()
    result = score_slices(preds, truth, spacings)
    assert result.keys() == expected.keys() and result["slices"] == len(truth)
    for key in ("dice", "iou", "hd95_px", "hd95_mm"):
        assert result[key] == pytest.approx(expected[key], rel=1e-12)
    fast = score_slices(preds, truth, spacings, hausdorff=False)
    assert "hd95_px" not in fast and fast["dice"] == pytest.approx(expected["dice"], rel=1e-12)
    # One slice without a spacing: no mm distances, as the accumulator reports it.
    assert "hd95_mm" not in score_slices(preds, truth, [*spacings[:-1], None])


def test_score_slices_does_not_depend_on_the_order_of_slices_of_different_sizes() -> None:
    # The slices are taken in order of size, so any order of distinct sizes gives the very same floats.
    rng = np.random.default_rng(2)
    sizes = [(20 + i, 30) for i in range(9)]
    truth = [rng.integers(0, NUM_LABELS, size, dtype=np.uint8) for size in sizes]
    preds = [rng.integers(0, NUM_LABELS, size, dtype=np.uint8) for size in sizes]
    spacings: list[tuple[float, float] | None] = [(1.0, 1.0)] * len(sizes)
    forward = score_slices(preds, truth, spacings)
    for order in (list(reversed(range(9))), [4, 0, 8, 2, 6, 1, 7, 3, 5]):
        shuffled = score_slices([preds[i] for i in order], [truth[i] for i in order], spacings)
        assert shuffled == forward


def test_evaluate_slices_is_predict_then_score(tiny_segmenter) -> None:
    scans, truth = scans_and_masks(3)
    result = evaluate_slices(tiny_segmenter, scans, truth, batch_size=2)
    assert result.pop("images_per_s") > 0
    preds = predict_slices(tiny_segmenter, scans, batch_size=2)
    assert result == score_slices(preds, truth, [scan.spacing_mm for scan in scans])


def test_mismatched_or_empty_inputs_are_refused(tiny_segmenter) -> None:
    scans, truth = scans_and_masks()
    with pytest.raises(ValueError, match="equally many predictions, masks and spacings"):
        score_slices(truth, truth[:-1], [None] * len(truth))
    with pytest.raises(ValueError, match="at least one"):
        score_slices([], [], [])
    with pytest.raises(ValueError, match="equally many scans and masks"):
        evaluate_slices(tiny_segmenter, scans, truth[:-1])
