"""Run-length encoding as used by the UW-Madison GI Tract competition.

Format: space-separated "start length" pairs; starts are 1-indexed; pixels are
numbered row by row (row-major over H x W). An empty string means no pixel.
"""

from __future__ import annotations

import numpy as np


class RLEError(ValueError):
    """A run-length string that is malformed or does not fit the image."""


def rle_encode(mask: np.ndarray) -> str:
    """Encode a binary mask.

    Args:
        mask: (H, W) array; non-zero pixels are "on".

    Returns:
        "start length ..." with 1-indexed starts, row-major; "" for an empty mask.
    """
    flat = np.asarray(mask).astype(bool).ravel(order="C")
    padded = np.concatenate([[False], flat, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])  # 0-indexed run starts/ends
    starts, ends = edges[0::2], edges[1::2]
    runs = np.empty(starts.size * 2, dtype=np.int64)
    runs[0::2] = starts + 1
    runs[1::2] = ends - starts
    return " ".join(map(str, runs.tolist()))


def rle_decode(rle: str | float | None, shape: tuple[int, int]) -> np.ndarray:
    """Decode a competition RLE string.

    Args:
        rle: "start length ..." pairs; "", None or NaN (pandas' empty cell) mean empty.
        shape: (H, W) of the image.

    Returns:
        (H, W) bool mask.

    Raises:
        RLEError: odd number of values, non-integers, non-positive starts or
            lengths, or a run past the end of the image.
    """
    height, width = shape
    total = height * width
    flat = np.zeros(total, dtype=bool)
    if rle is None or (isinstance(rle, float) and np.isnan(rle)):
        return flat.reshape(height, width)
    text = str(rle).strip()
    if not text:
        return flat.reshape(height, width)
    try:
        values = np.array([int(v) for v in text.split()], dtype=np.int64)
    except ValueError as exc:
        raise RLEError(f"RLE contains a value that is not an integer: {exc}") from None
    if values.size % 2:
        raise RLEError(f"RLE has an odd number of values ({values.size}); expected start/length pairs")
    starts, lengths = values[0::2] - 1, values[1::2]
    if (starts < 0).any() or (lengths <= 0).any():
        raise RLEError("RLE has a start below 1 or a length below 1")
    if (starts + lengths > total).any():
        bad = int(np.argmax(starts + lengths > total))
        raise RLEError(
            f"RLE run {bad + 1} (start {starts[bad] + 1}, length {lengths[bad]}) runs past the end "
            f"of a {height} x {width} image ({total} pixels)"
        )
    for start, length in zip(starts.tolist(), lengths.tolist()):
        flat[start : start + length] = True
    return flat.reshape(height, width)
