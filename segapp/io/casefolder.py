"""Competition case-day folders as volumes: ``caseN_dayD/scans/slice_SSSS_W_H_PW_PH.png``,
as a folder, a list of files or a ``.zip`` (unpacked by the DICOM reader's one safe unzipper,
:func:`segapp.io.dicom.unpacked`, which keeps these slices' names).

Each slice goes through the slice decoder (:func:`segapp.io.image.decode_image`), so the volume's
voxels are the 8-bit slices the model is fed (16-bit scans min-max scaled per slice, as the data
preparation does). The PNGs are already in the display convention in-plane. Slice numbers are
taken to grow toward the feet, as in the phantom generator (slice 1 is the most superior; the data
set does not document the direction), so the volume's slice 0 is the highest slice number; slices
are 3 mm apart as the data set documents. Without DICOM geometry the affine is a plain scaling with
the origin at the first voxel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from segapp.io.dicom import unpacked, zip_member_names
from segapp.io.image import InvalidImageError, decode_image
from segapp.io.naming import SliceName, parse_slice_name
from segapp.io.volume import (
    MAX_FILES,
    InvalidVolumeError,
    ScanVolume,
    check_voxels,
    describe,
)

SLICE_THICKNESS_MM = 3.0  # UW-Madison GI Tract data set
_IDENTITY_ORIENTATION = np.array([[0, 1], [1, 1], [2, 1]], dtype=np.float64)


def _named_pngs(folder: Path) -> list[tuple[Path, SliceName]]:
    scans = folder / "scans" if (folder / "scans").is_dir() else folder
    found = []
    for path in sorted(scans.glob("*.png")):
        name = parse_slice_name(path)
        if name is not None:
            found.append((path, name))
        if len(found) > MAX_FILES:
            raise InvalidVolumeError(f"The folder holds more than {MAX_FILES:,} slices.")
    return found


def is_case_folder(folder: Path) -> bool:
    """Whether ``folder`` (or its ``scans/``) holds competition-named PNG slices."""
    return bool(_named_pngs(folder))


def read_case_folder(folder: Path, *, max_voxels: int) -> ScanVolume:
    """Read a case-day folder (or any folder of competition-named PNG slices of one case-day)."""
    return _read(_named_pngs(folder), max_voxels=max_voxels)


def is_slice_zip(archive: Path) -> bool:
    """Whether every file in a zip (macOS metadata aside) is a competition-named PNG slice: a
    zipped case-day folder (``scans/`` inside it, or flat). Reads the zip's directory only.

    Raises:
        InvalidVolumeError: The zip is damaged.
    """
    names = zip_member_names(archive)
    return bool(names) and all(n.lower().endswith(".png") and parse_slice_name(n) is not None for n in names)


def read_slice_zip(archive: Path, *, max_voxels: int) -> ScanVolume:
    """Read a zipped case-day folder (see :func:`is_slice_zip`); it is unpacked into a temporary
    folder that is removed afterwards."""
    with unpacked(archive) as paths:
        return read_png_slices(paths, max_voxels=max_voxels)


def read_png_slices(paths: Sequence[Path], *, max_voxels: int,
                    decoded: Mapping[Path, np.ndarray] | None = None) -> ScanVolume:
    """Read a list of competition-named PNG slices (an upload) of one case-day.

    Args:
        paths: The slice files.
        max_voxels: Largest accepted voxel count.
        decoded: Slices the slice reader has already read, (H, W) uint8 by path: used as they
            are instead of reading the files again.
    """
    named = []
    for path in paths:
        name = parse_slice_name(path)
        if name is None:
            raise InvalidVolumeError(
                "PNG slices form a volume only with competition names "
                "(slice_SSSS_W_H_PW_PH.png in a caseN_dayD folder, or caseN_dayD_slice_SSSS_W_H_PW_PH.png)."
            )
        named.append((path, name))
    return _read(named, max_voxels=max_voxels, decoded=decoded)


def _read(named: list[tuple[Path, SliceName]], *, max_voxels: int,
          decoded: Mapping[Path, np.ndarray] | None = None) -> ScanVolume:
    if not named:
        raise InvalidVolumeError("No competition-named PNG slices were found.")
    keys = {(n.case, n.day) for _, n in named}
    if len(keys) > 1:
        raise InvalidVolumeError(f"The slices belong to {len(keys)} case-days; send one case-day's slices.")
    sizes = {(n.height, n.width) for _, n in named}
    spacings = {n.spacing_mm for _, n in named}
    if len(sizes) > 1 or len(spacings) > 1:
        raise InvalidVolumeError("The slices differ in size or pixel spacing; send one case-day's slices.")
    named = sorted(named, key=lambda item: -item[1].slice)  # display order: feet first
    numbers = [n.slice for _, n in named]
    if len(set(numbers)) != len(numbers):
        raise InvalidVolumeError("Two files carry the same slice number.")
    (height, width), (row_mm, col_mm) = sizes.pop(), spacings.pop()
    check_voxels(len(named) * height * width, max_voxels)
    planes = []
    for path, name in named:
        if decoded is not None and path in decoded:
            pixels = decoded[path]
        else:
            try:
                pixels = decode_image(path).pixels
            except InvalidImageError as exc:
                raise InvalidVolumeError(f"Slice {name.slice}: {exc}") from None
        if pixels.shape != (height, width):
            raise InvalidVolumeError(f"Slice {name.slice} is {pixels.shape[1]} x {pixels.shape[0]}, not the {width} x {height} its name says.")
        planes.append(pixels)
    voxels = np.stack(planes)
    gaps = [a for a, b in zip(numbers, numbers[1:]) if a - b != 1]
    notes = () if not gaps else (f"slice numbers skip after {gaps[:5]}: slices stacked without the gaps",)
    spacing = (SLICE_THICKNESS_MM, row_mm, col_mm)
    return ScanVolume(
        voxels=voxels,
        spacing_mm=spacing,
        affine_lps=_affine(spacing),
        kind="png",
        source_orientation=_IDENTITY_ORIENTATION,
        source_shape=tuple(int(s) for s in voxels.shape),
        description=describe(voxels.shape, spacing, format="PNG slices"),
        notes=notes,
    )


def _affine(spacing: tuple[float, float, float]) -> np.ndarray:
    """(k, i, j) -> LPS: slices toward the head, rows toward posterior, columns toward the left;
    the origin at the first voxel (no patient coordinates are known)."""
    affine = np.zeros((4, 4))
    affine[2, 0], affine[1, 1], affine[0, 2], affine[3, 3] = spacing[0], spacing[1], spacing[2], 1.0
    return affine
