"""The competition's raw layout, read and checked: ``RAW/train.csv`` (``id,class,segmentation``)
and ``RAW/train/caseN/caseN_dayD/scans/slice_SSSS_W_H_PW_PH.png`` (16-bit).

CSV rows are matched to scans by id; a class missing from a slice's rows counts as absent,
and scans without any row are counted (reported as unlabelled). Every error names the CSV line
or the file, and the fix.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from segapp.io.naming import format_slice_name, parse_slice_name
from segapp.io.rle import RLEError, rle_decode
from segapp.labels import FOREGROUND

CSV_NAME = "train.csv"
_ORGANS = {label.name for label in FOREGROUND}


class PrepareError(ValueError):
    """Raw data that cannot be prepared; the message names the CSV line or file and the fix."""


@dataclass
class RawSlice:
    """One slice of the raw data set: its scan and its labels.

    Attributes:
        id: Competition id, ``caseN_dayD_slice_SSSS``.
        case: Case (patient) number.
        day: Scan day.
        slice: Slice number.
        scan: Path of the 16-bit scan.
        width: Width in pixels, from the scan's name.
        height: Height in pixels, from the scan's name.
        spacing_mm: (row, column) pixel spacing in mm, from the scan's name.
        codes: Organ name -> (CSV line number, run-length code); organs without a row are absent.
    """

    id: str
    case: int
    day: int
    slice: int
    scan: Path
    width: int
    height: int
    spacing_mm: tuple[float, float]
    codes: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """No organ in any row."""
        return not any(code.strip() for _, code in self.codes.values())

    @property
    def first_line(self) -> int:
        """The CSV line of the slice's first row (0 when it has none)."""
        return min((line for line, _ in self.codes.values()), default=0)

    @property
    def file_name(self) -> str:
        """Name in the prepared layout, ``caseN_dayD_slice_SSSS_W_H_PW_PH.png``."""
        return (
            format_slice_name(self.case, self.day, self.slice, self.width, self.height, self.spacing_mm)
            + ".png"
        )


# ---------------------------------------------------------------------------------------------
# Reading the raw layout


def read_labels(csv_path: str | os.PathLike) -> dict[str, dict[str, tuple[int, str]]]:
    """Read ``train.csv``.

    Args:
        csv_path: The competition's label file (columns ``id``, ``class``, ``segmentation``).

    Returns:
        id -> organ name -> (line number in the file, run-length code; "" when absent).

    Raises:
        PrepareError: Missing file or column, a malformed id, an unknown class, or an
            (id, class) pair given twice; the message names the line.
    """
    path = Path(csv_path)
    if not path.is_file():
        raise PrepareError(
            f"There is no {path.name} at {path}. --raw must be the folder holding train.csv and train/."
        )
    labels: dict[str, dict[str, tuple[int, str]]] = {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"id", "class", "segmentation"} - set(reader.fieldnames or ())
        if missing:
            raise PrepareError(
                f"{path.name} lacks the column(s) {sorted(missing)}; expected the header id,class,segmentation."
            )
        for row in reader:
            line = reader.line_num
            raw_id, organ, code = row["id"] or "", row["class"] or "", row["segmentation"] or ""
            slice_id = _canonical_id(raw_id)
            if slice_id is None:
                raise PrepareError(
                    f"{path.name} line {line}: id {raw_id!r} is not of the form caseN_dayD_slice_SSSS."
                )
            if organ not in _ORGANS:
                raise PrepareError(
                    f"{path.name} line {line} ({slice_id}): unknown class {organ!r}; expected one of {sorted(_ORGANS)}."
                )
            organs = labels.setdefault(slice_id, {})
            if organ in organs:
                raise PrepareError(
                    f"{path.name} line {line} ({slice_id}, {organ}): this slice and class already appeared "
                    f"on line {organs[organ][0]}."
                )
            organs[organ] = (line, code)
    return labels


def _canonical_id(text: str) -> str | None:
    """``caseN_dayD_slice_SSSS`` in its canonical spelling (4-digit slice), or None if it is not one."""
    # Through the one file-name parser: give the id a dummy size and spacing to parse.
    parsed = parse_slice_name(f"{text}_1_1_1.00_1.00")
    return None if parsed is None else parsed.id


def find_scans(raw_dir: str | os.PathLike) -> dict[str, Path]:
    """Index the raw scans by competition id.

    Args:
        raw_dir: Folder holding ``train/caseN/caseN_dayD/scans/*.png``.

    Returns:
        id -> scan path.

    Raises:
        PrepareError: No ``train/`` folder, or two scans with the same id.
    """
    root = Path(raw_dir) / "train"
    if not root.is_dir():
        raise PrepareError(
            f"There is no folder {root}; expected train/caseN/caseN_dayD/scans/slice_*.png inside --raw."
        )
    scans: dict[str, Path] = {}
    for path in sorted(root.glob("case*/case*_day*/scans/*.png")):
        parsed = parse_slice_name(path.relative_to(root))
        if parsed is None or parsed.id is None:
            continue  # not a slice file (e.g. a stray preview)
        if parsed.id in scans:
            raise PrepareError(f"Two scans for {parsed.id}: {scans[parsed.id]} and {path}.")
        scans[parsed.id] = path
    return scans


def match_slices(raw_dir: str | os.PathLike) -> tuple[list[RawSlice], int]:
    """Pair every CSV slice with its scan and check every run-length code against the scan's size.

    Args:
        raw_dir: The competition folder (``train.csv`` and ``train/``).

    Returns:
        (slices sorted by case, day and slice; number of scans without any CSV row).

    Raises:
        PrepareError: As :func:`read_labels`, plus a CSV id without a scan and a malformed
            code or one running past its image, each naming the CSV line.
    """
    raw = Path(raw_dir)
    labels = read_labels(raw / CSV_NAME)
    scans = find_scans(raw)
    slices = []
    for slice_id, codes in labels.items():
        line = min(line for line, _ in codes.values())
        scan = scans.get(slice_id)
        if scan is None:
            raise PrepareError(
                f"{CSV_NAME} line {line}: no scan for {slice_id} under {raw / 'train'} "
                "(expected caseN/caseN_dayD/scans/slice_SSSS_W_H_PW_PH.png)."
            )
        name = parse_slice_name(scan.relative_to(raw / "train"))
        assert name is not None and name.case is not None and name.day is not None  # as find_scans kept
        item = RawSlice(
            id=slice_id,
            case=name.case,
            day=name.day,
            slice=name.slice,
            scan=scan,
            width=name.width,
            height=name.height,
            spacing_mm=name.spacing_mm,
            codes=dict(codes),
        )
        for organ, (row, code) in codes.items():
            try:
                rle_decode(code, (item.height, item.width))
            except RLEError as exc:
                raise PrepareError(f"{CSV_NAME} line {row} ({slice_id}, {organ}): {exc}.") from None
        slices.append(item)
    slices.sort(key=lambda s: (s.case, s.day, s.slice))
    return slices, len(set(scans) - set(labels))
