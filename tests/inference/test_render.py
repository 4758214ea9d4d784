"""Colour masks, overlays and heat maps."""

from __future__ import annotations

import numpy as np
import pytest

from segapp.inference.render import (
    CONFIDENCE_EDGES,
    color_mask,
    confidence_histogram,
    confidence_map,
    overlay,
)
from segapp.labels import LABELS, organ_palette


def _mask() -> np.ndarray:
    mask = np.zeros((6, 6), np.uint8)
    mask[1:3, 1:3] = 1
    mask[3:5, 3:5] = 3
    return mask


def test_color_mask_uses_label_colours_and_visibility() -> None:
    mask = _mask()
    rgb = color_mask(mask)
    assert rgb.shape == (6, 6, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[1, 1]) == LABELS[1].color and tuple(rgb[4, 4]) == LABELS[3].color
    assert tuple(rgb[0, 0]) == (0, 0, 0)
    hidden = color_mask(mask, visible=["large_bowel"])
    assert tuple(hidden[1, 1]) == (0, 0, 0) and tuple(hidden[4, 4]) == LABELS[3].color


def test_overlay_blends_by_opacity() -> None:
    gray = np.full((6, 6), 100, np.uint8)
    mask = _mask()
    none = overlay(gray, mask, opacity=0.0, outline=False)
    assert (none == 100).all()
    half = overlay(gray, mask, opacity=0.5, outline=False)
    expected = np.round(0.5 * 100 + 0.5 * np.array(LABELS[1].color))
    assert np.array_equal(half[1, 1], expected.astype(np.uint8))
    assert tuple(half[0, 0]) == (100, 100, 100)
    solid = overlay(gray, mask, opacity=1.0, visible=[1], outline=False)
    assert tuple(solid[1, 1]) == LABELS[1].color and tuple(solid[4, 4]) == (100, 100, 100)


def test_overlay_outline_draws_region_borders_in_full_colour() -> None:
    gray = np.full((6, 6), 100, np.uint8)
    out = overlay(gray, _mask(), opacity=0.0, outline=True)
    assert tuple(out[1, 1]) == LABELS[1].color  # corner of the stomach square is a border pixel
    assert tuple(out[0, 5]) == (100, 100, 100)


def test_overlay_size_mismatch() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        overlay(np.zeros((4, 4), np.uint8), np.zeros((5, 5), np.uint8))


def test_confidence_map_ends_and_monotone_brightness() -> None:
    conf = np.linspace(0, 1, 11, dtype=np.float32)[None]
    rgb = confidence_map(conf)
    assert tuple(rgb[0, 0]) == (68, 1, 84) and tuple(rgb[0, -1]) == (253, 231, 37)
    luminance = rgb.astype(float) @ np.array([0.299, 0.587, 0.114])
    assert np.all(np.diff(luminance[0]) > 0)


def test_confidence_map_table_matches_the_exact_ramp_within_one_level() -> None:
    from segapp.inference.render import _viridis

    conf = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    conf[0, :3] = [np.nan, -0.5, 1.5]  # NaN and out-of-range values read as 0, 0 and 1
    exact = (_viridis(np.clip(np.nan_to_num(conf), 0, 1)) + 0.5).astype(np.uint8)
    assert np.abs(confidence_map(conf).astype(int) - exact).max() <= 1
    assert confidence_map(conf).dtype == np.uint8 and confidence_map(conf).shape == (64, 64, 3)



def test_a_palette_colours_the_overlay_and_the_mask_and_none_keeps_the_table() -> None:
    gray = np.full((4, 4), 100, dtype=np.uint8)
    mask = np.zeros((4, 4), dtype=np.uint8)
    mask[1:3, 1:3] = 1
    palette = organ_palette(["#ff0000", "#00ff00", "#0000ff"])
    assert tuple(color_mask(mask, palette=palette)[1, 1]) == (255, 0, 0)
    assert tuple(overlay(gray, mask, opacity=1.0, palette=palette)[1, 1]) == (255, 0, 0)
    assert (overlay(gray, mask) == overlay(gray, mask, palette=organ_palette(None))).all()
    with pytest.raises(ValueError):
        overlay(gray, mask, palette=[(1, 2, 3)])


def test_confidence_histogram_counts_each_organs_pixels_by_bin() -> None:
    labels = np.array([[0, 1, 1], [2, 2, 2]], dtype=np.uint8)
    confidence = np.array([[0.9, 0.26, 0.99], [1.0, 0.6, 0.61]], dtype=np.float32)
    counts = confidence_histogram(labels, confidence)
    assert set(counts) == {"stomach", "small_bowel", "large_bowel"}
    assert counts["stomach"].sum() == 2 and counts["stomach"][0] == 1 and counts["stomach"][-1] == 1
    assert counts["small_bowel"].sum() == 3 and counts["small_bowel"][-1] == 1  # 1.0 lands in the last bin
    assert counts["large_bowel"].sum() == 0
    assert len(counts["stomach"]) == len(CONFIDENCE_EDGES) - 1
    volume = confidence_histogram(np.stack([labels, labels]), np.stack([confidence, confidence]).astype(np.float16))
    assert volume["small_bowel"].sum() == 6
    assert confidence_histogram(labels, None)["stomach"].sum() == 0
