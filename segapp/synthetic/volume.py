"""Phantom volumes: every slice of one synthetic patient-day, in the display convention.

The slices are exactly those :func:`segapp.synthetic.dataset_slice` gives for the same seed and
name (slice number = z index + 1, growing toward the feet), stacked feet first as
:mod:`segapp.io.volume` orders every volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segapp.synthetic.anatomy import SLICE_THICKNESS_MM, SLICES_PER_SCAN, make_case
from segapp.synthetic.dataset import case_rng, slice_rng
from segapp.synthetic.rendering import render_slice


@dataclass(frozen=True, eq=False)
class PhantomVolume:
    """One phantom patient-day as a volume.

    Attributes:
        image16: (Z, H, W) uint16 raw-scan-like signal, display order (slice 0 most inferior).
        labels: (Z, H, W) uint8 class ids, same order.
        spacing_mm: (slice, row, column) mm.
        case: Patient number.
        day: Scan day.
        slice_numbers: Competition slice number (1-based, growing toward the feet) of each slice.
        style: The contrast family the case was drawn with (:data:`segapp.synthetic.STYLES`).
    """

    image16: np.ndarray
    labels: np.ndarray
    spacing_mm: tuple[float, float, float]
    case: int
    day: int
    slice_numbers: tuple[int, ...]
    style: str = "bssfp"


def phantom_volume(seed: int, case_id: int, day: int, *, first: int = 1, count: int = SLICES_PER_SCAN,
                   size: tuple[int, int] | None = None, style: str = "mixed",
                   anatomy: str = "standard") -> PhantomVolume:
    """Render slices ``first .. first + count - 1`` of a phantom patient-day.

    Args:
        seed: The data set's seed (>= 0).
        case_id: N of ``caseN``.
        day: D of ``dayD``.
        first: First slice number (1-based).
        count: Number of consecutive slices.
        size: (width, height), one of :data:`segapp.synthetic.PROTOCOLS`; drawn when None.
        style: Contrast family (:data:`segapp.synthetic.STYLES`) or ``"mixed"``.
        anatomy: ``"standard"`` or ``"variant"``.
    """
    if not (first >= 1 and count >= 1 and first + count - 1 <= SLICES_PER_SCAN):
        raise ValueError(f"slices {first}..{first + count - 1} outside 1..{SLICES_PER_SCAN}")
    case = make_case(case_rng(seed, case_id), case_id=case_id, day=day, size=size, style=style, anatomy=anatomy)
    numbers = list(range(first + count - 1, first - 1, -1))  # feet first
    slices = [render_slice(case, n - 1, slice_rng(seed, case_id, day, n - 1)) for n in numbers]
    row_mm, col_mm = slices[0].spacing_mm
    return PhantomVolume(
        image16=np.stack([s.image16 for s in slices]),
        labels=np.stack([s.mask for s in slices]),
        spacing_mm=(SLICE_THICKNESS_MM, row_mm, col_mm),
        case=case_id,
        day=day,
        slice_numbers=tuple(numbers),
        style=case.style,
    )
