"""The competition's run-length code: "start length" pairs, 1-indexed starts, row-major over H x W."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segapp.io.rle import RLEError, rle_decode, rle_encode

# 3 x 4, numbered row by row (1-indexed):
#    1  2  3  4
#    5  6  7  8
#    9 10 11 12
# On: 2, 3 (one run), 8, 9 (one run across the row break), 12.
SMALL = np.array(
    [
        [0, 1, 1, 0],
        [0, 0, 0, 1],
        [1, 0, 0, 1],
    ],
    dtype=np.uint8,
)
SMALL_RLE = "2 2 8 2 12 1"


def test_hand_made_mask_encodes_to_its_known_string() -> None:
    assert rle_encode(SMALL) == SMALL_RLE
    assert rle_encode(SMALL.astype(bool)) == SMALL_RLE
    assert rle_encode(SMALL * 3) == SMALL_RLE  # any non-zero value (a class id) is "on"
    assert np.array_equal(rle_decode(SMALL_RLE, (3, 4)), SMALL.astype(bool))


def test_pixels_are_numbered_row_by_row_not_column_by_column() -> None:
    top_row = np.array([[1, 1, 1], [0, 0, 0]])
    assert rle_encode(top_row) == "1 3"  # column-major would be "1 1 3 1 5 1"
    left_column = np.array([[1, 0, 0], [1, 0, 0]])
    assert rle_encode(left_column) == "1 1 4 1"
    assert np.array_equal(rle_decode("1 3", (2, 3)), top_row.astype(bool))
    assert np.array_equal(rle_decode("1 1 4 1", (2, 3)), left_column.astype(bool))


@pytest.mark.parametrize("shape", [(1, 1), (3, 4), (4, 3), (1, 9), (9, 1), (17, 5)])
def test_special_masks_have_known_codes(shape: tuple[int, int]) -> None:
    height, width = shape
    total = height * width
    empty = np.zeros(shape, dtype=bool)
    full = np.ones(shape, dtype=bool)
    first = empty.copy()
    first[0, 0] = True
    last = empty.copy()
    last[-1, -1] = True
    assert rle_encode(empty) == ""
    assert rle_encode(full) == f"1 {total}"
    assert rle_encode(first) == "1 1"
    assert rle_encode(last) == f"{total} 1"
    for mask in (empty, full, first, last):
        decoded = rle_decode(rle_encode(mask), shape)
        assert decoded.dtype == np.bool_ and decoded.shape == shape
        assert np.array_equal(decoded, mask)


@pytest.mark.parametrize("shape", [(2, 2), (7, 13), (13, 7), (32, 32), (1, 50)])
@pytest.mark.parametrize("density", [0.05, 0.5, 0.95])
def test_decode_inverts_encode_on_random_masks(shape: tuple[int, int], density: float) -> None:
    rng = np.random.default_rng([*shape, round(density * 100)])
    for _ in range(5):
        mask = rng.random(shape) < density
        code = rle_encode(mask)
        assert np.array_equal(rle_decode(code, shape), mask)
        # The code is canonical: increasing starts, separated runs, lengths summing to the area.
        values = [int(v) for v in code.split()]
        starts, lengths = values[0::2], values[1::2]
        assert sum(lengths) == int(mask.sum())
        assert all(s + n < next_s for s, n, next_s in zip(starts, lengths, starts[1:]))
        assert rle_encode(rle_decode(code, shape)) == code


@pytest.mark.parametrize("empty", ["", "   ", None, math.nan, np.nan])
def test_empty_cells_decode_to_an_empty_mask(empty) -> None:
    decoded = rle_decode(empty, (3, 4))
    assert decoded.shape == (3, 4) and decoded.dtype == np.bool_ and not decoded.any()


def test_surrounding_and_repeated_whitespace_is_accepted() -> None:
    assert np.array_equal(rle_decode(" 2 2  8 2\t12 1\n", (3, 4)), SMALL.astype(bool))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5", "odd number of values \\(1\\)"),
        ("2 2 8", "odd number of values \\(3\\)"),
        ("2 two", "not an integer"),
        ("2.0 2", "not an integer"),
        ("2,2", "not an integer"),
        ("0 3", "start below 1"),
        ("-1 3", "start below 1"),
        ("2 0", "length below 1"),
        ("2 -2", "length below 1"),
    ],
)
def test_malformed_text_is_refused(text: str, message: str) -> None:
    with pytest.raises(RLEError, match=message):
        rle_decode(text, (3, 4))


def test_a_run_past_the_image_is_refused_and_named() -> None:
    assert rle_decode("12 1", (3, 4))[-1, -1]  # ends exactly on the last pixel: fine
    assert rle_decode("1 12", (3, 4)).all()
    with pytest.raises(RLEError, match=r"run 2 \(start 12, length 2\).*3 x 4 image \(12 pixels\)"):
        rle_decode("2 2 12 2", (3, 4))
    with pytest.raises(RLEError, match=r"run 1 \(start 13, length 1\)"):
        rle_decode("13 1", (3, 4))
    # A code that fits the image it was made for does not fit a smaller one.
    with pytest.raises(RLEError, match="runs past the end"):
        rle_decode(SMALL_RLE, (2, 4))


def test_rle_error_is_a_value_error() -> None:
    assert issubclass(RLEError, ValueError)


def test_unsorted_and_overlapping_runs_are_not_refused_they_decode_to_the_union() -> None:
    # The decoder is lenient here (it documents no refusal): runs are painted in any order.
    assert np.array_equal(rle_decode("12 1 8 2 2 2", (3, 4)), SMALL.astype(bool))
    assert np.array_equal(rle_decode("2 2 3 1 8 2 9 1 12 1", (3, 4)), SMALL.astype(bool))
