"""UW-Madison GI Tract file names: slice number, size and pixel spacing.

Two layouts carry the same information:

- raw competition scans: ``.../case123/case123_day20/scans/slice_0067_266_266_1.50_1.50.png``
  (case and day only in the folder names);
- the prepared data set: ``case123_day20_slice_0067_266_266_1.50_1.50.png``.

In ``slice_SSSS_W_H_PW_PH``, W and H are the width and height in pixels (width
first) and PW, PH the pixel width and height in mm. Spacing is returned the numpy
way, as (row, column) = (PH, PW).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

# Digit counts are bounded so a hostile name cannot make int() slow or huge, and
# re.ASCII keeps "\d" from matching non-ASCII digits that int() would accept.
_INT = r"(\d{1,9})"
_MM = r"(\d{1,6}(?:\.\d{1,9})?)"
_SLICE_RE = re.compile(
    rf"(?:case{_INT}_day{_INT}_)?slice_{_INT}_{_INT}_{_INT}_{_MM}_{_MM}"
    # Optional extensions; each starts with a letter so "_1.50" is never taken for one.
    r"(?:\.[a-z][a-z0-9]{0,9})*",
    re.ASCII | re.IGNORECASE,
)
_CASE_DAY_RE = re.compile(rf"case{_INT}_day{_INT}", re.ASCII | re.IGNORECASE)


@dataclass(frozen=True)
class SliceName:
    """What a slice file name says.

    Attributes:
        case: Case (patient) number, or None when neither the name nor its folders tell.
        day: Scan day, or None like ``case``.
        slice: Slice number within the scan (1-based in the competition data).
        width: Image width in pixels.
        height: Image height in pixels.
        spacing_mm: Pixel spacing as (row, column) in mm, i.e. (pixel height, pixel width).
    """

    case: int | None
    day: int | None
    slice: int
    width: int
    height: int
    spacing_mm: tuple[float, float]

    @property
    def id(self) -> str | None:
        """Competition id (``train.csv``'s ``id``), e.g. ``case123_day20_slice_0067``; None without case/day."""
        if self.case is None or self.day is None:
            return None
        return f"case{self.case}_day{self.day}_slice_{self.slice:04d}"


def _split(path_or_name: str | os.PathLike) -> tuple[list[str], str]:
    """(folders, file name); the name is empty when the path ends with a separator."""
    # Split on both separators: paths written on Windows (as the notebook's were)
    # must parse on any OS.
    *folders, name = re.split(r"[\\/]", os.fsdecode(path_or_name))
    return [folder for folder in folders if folder], name


def parse_slice_name(path_or_name: str | os.PathLike) -> SliceName | None:
    """Parse a slice file name or path.

    Args:
        path_or_name: A bare file name (with or without extension) or a full path,
            with ``/`` or ``\\`` separators.

    Returns:
        The parsed name, or None when the file name does not follow either layout
        or carries a zero size or spacing. When the file name has no case/day, they
        are taken from the nearest ``caseN_dayD`` parent folder, if any.

    Raises:
        TypeError: ``path_or_name`` is neither a string nor a path-like object.
    """
    folders, name = _split(path_or_name)
    match = _SLICE_RE.fullmatch(name)
    if match is None:
        return None
    case, day, number, width, height, pixel_w, pixel_h = match.groups()
    spacing = (float(pixel_h), float(pixel_w))
    if int(width) == 0 or int(height) == 0 or not all(math.isfinite(s) and s > 0 for s in spacing):
        return None
    if case is None:
        for folder in reversed(folders):
            folder_match = _CASE_DAY_RE.fullmatch(folder)
            if folder_match is not None:
                case, day = folder_match.groups()
                break
    return SliceName(
        case=None if case is None else int(case),
        day=None if day is None else int(day),
        slice=int(number),
        width=int(width),
        height=int(height),
        spacing_mm=spacing,
    )


def parse_spacing(path_or_name: str | os.PathLike) -> tuple[float, float] | None:
    """Pixel spacing (row, column) in mm from a slice name or path; None if it does not parse."""
    parsed = parse_slice_name(path_or_name)
    return None if parsed is None else parsed.spacing_mm


def slice_id(path_or_name: str | os.PathLike) -> str | None:
    """Competition id (``case123_day20_slice_0067``) from a name or path; None if unknown."""
    parsed = parse_slice_name(path_or_name)
    return None if parsed is None else parsed.id


def format_slice_name(
    case: int,
    day: int,
    slice: int,
    width: int,
    height: int,
    spacing_mm: tuple[float, float],
) -> str:
    """Prepared-layout file stem, the inverse of :func:`parse_slice_name`.

    Args:
        case: Case number, >= 0.
        day: Day number, >= 0.
        slice: Slice number, >= 0 (written with at least 4 digits).
        width: Width in pixels, > 0.
        height: Height in pixels, > 0.
        spacing_mm: (row, column) spacing in mm, both > 0; written with 2 decimals.

    Returns:
        E.g. ``case123_day20_slice_0067_266_266_1.50_1.50`` (no extension).

    Raises:
        ValueError: A value is out of range.
    """
    if min(case, day, slice) < 0 or min(width, height) <= 0:
        raise ValueError(
            f"case, day and slice must be >= 0 and width, height > 0; got case={case}, "
            f"day={day}, slice={slice}, width={width}, height={height}"
        )
    row_mm, col_mm = (float(s) for s in spacing_mm)
    if not (math.isfinite(row_mm) and math.isfinite(col_mm) and row_mm > 0 and col_mm > 0):
        raise ValueError(f"spacing_mm must be two positive finite numbers, got {spacing_mm!r}")
    # The name stores the pixel width (column spacing) before the pixel height.
    return f"case{case}_day{day}_slice_{slice:04d}_{width}_{height}_{col_mm:.2f}_{row_mm:.2f}"
