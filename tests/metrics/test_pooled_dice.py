"""Pooled Dice: all pixels of an organ over all slices together, beside the per-slice mean."""

from __future__ import annotations

import numpy as np
import pytest

from segapp.metrics.slices import MetricAccumulator


def test_pooled_dice_counts_pixels_not_slices() -> None:
    big_true = np.zeros((10, 10), np.uint8)
    big_true[:, :5] = 1  # 50 stomach pixels
    big_pred = np.zeros_like(big_true)
    big_pred[:, :4] = 1  # 40 of them found
    small_true = np.zeros_like(big_true)
    small_true[0, 0] = 1  # 1 pixel, missed
    acc = MetricAccumulator(hausdorff=False)
    acc.update(big_pred, big_true)
    acc.update(np.zeros_like(small_true), small_true)
    acc.update(np.zeros_like(big_true), np.zeros_like(big_true))  # empty-empty: counts 1 per slice, nothing pooled
    result = acc.compute()
    assert result["dice"]["stomach"] == pytest.approx((2 * 40 / 90 + 0 + 1) / 3)
    assert result["pooled_dice"]["stomach"] == pytest.approx(2 * 40 / (40 + 51))
    assert result["pooled_dice"]["small_bowel"] == 1.0  # absent everywhere
    acc.reset()
    acc.update(small_true, small_true)
    assert acc.compute()["pooled_dice"]["stomach"] == 1.0
