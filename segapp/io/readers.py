"""The reader registry: the one place that picks a reader by what the file is.

- :func:`read_image` reads one slice: a file with the DICOM preamble goes to the DICOM reader
  (:func:`segapp.io.dicom.read_dicom_slice`: one single-frame image, rescale applied, rows and
  columns in the display convention, min-max scaled to 8 bits like any wide-range image, the
  pixel spacing from its header; multi-frame files are volumes and are refused with a message
  pointing to the volume readers); everything else to the image decoder
  (:func:`segapp.io.image.decode_image`, whose docstring holds the slice policies).
- :func:`read_volume` reads a scan volume: NIfTI, a competition case-day folder or zip of
  PNG slices, else DICOM (a series folder, zip, upload or one file).

The contracts live below this module (:mod:`segapp.io.image`, :mod:`segapp.io.volume`) and the
format readers import only them, so nothing imports back.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from segapp.io import casefolder, dicom, nifti
from segapp.io.image import (
    DEFAULT_MAX_PIXELS,
    Decoded,
    InvalidImageError,
    ScanImage,
    SliceDecoder,
    Source,
    decode_array,
    decode_image,
)
from segapp.io.volume import DEFAULT_MAX_VOXELS, InvalidVolumeError, ScanVolume


def read_image(
    source: Source,
    *,
    name: str | None = None,
    spacing_mm: tuple[float, float] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ScanImage:
    """Read one slice as 8-bit grayscale, whatever format it is in.

    Args:
        source: A file path, the file's bytes, a binary file-like object (read from its
            current position), a PIL image (its current frame is used), or an array of
            shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) of any integer, float or
            bool dtype.
        name: File name to report and to read the spacing from; defaults to the
            path's (or the file object's) file name.
        spacing_mm: Pixel spacing (row, column) in mm; overrides what a DICOM header or the
            name says (a DICOM header's spacing overrides the name's).
        max_pixels: Largest accepted H * W, checked before decoding.

    Returns:
        The slice: uint8 pixels, uint8 sources kept as they are, anything wider
        min-max scaled to 0..255 per image, rounded to nearest.

    Raises:
        InvalidImageError: The input is missing, not an image, damaged, too large,
            too small, constant or contains NaN/inf. Never a PIL or numpy exception.
        ValueError: ``spacing_mm`` is not two positive finite numbers.
    """
    return decode_image(source, name=name, spacing_mm=spacing_mm, max_pixels=max_pixels,
                        decoder_for=_slice_decoder)


def _slice_decoder(head: bytes) -> SliceDecoder | None:
    """The decoder of a slice format PIL does not read, picked from the file's first bytes."""
    return _dicom_slice if dicom.is_dicom_head(head) else None


def _dicom_slice(fp: IO[bytes], max_pixels: int) -> Decoded:
    """One DICOM image through :func:`segapp.io.dicom.read_dicom_slice`; its refusals become
    InvalidImageError with the same message."""
    try:
        read = dicom.read_dicom_slice(fp, max_pixels=max_pixels)
    except InvalidVolumeError as exc:
        raise InvalidImageError(str(exc)) from None
    pixels, _, _, notes, _ = decode_array(read.pixels, max_pixels)  # checks and the 8-bit scaling
    return Decoded(pixels, read.bits_stored, f"DICOM {read.modality}".strip(), [*read.notes, *notes],
                   read.spacing_mm)


def read_volume(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    series: str | None = None,
    volume_index: int | None = None,
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> ScanVolume:
    """Read a scan volume from whatever holds one.

    Args:
        source: A folder of DICOM files (recursive), a ``.zip`` of one, a list of files (a
            browser upload), one DICOM file (enhanced multi-frame or a single slice),
            a ``.nii`` / ``.nii.gz`` file, or a competition case-day folder / folder of
            competition-named PNG slices of one case-day, or a ``.zip`` of either.
        series: SeriesInstanceUID to pick when the DICOM source holds several series.
        volume_index: For 4D NIfTI: which volume (0-based); 4D is refused without it.
        max_voxels: Largest accepted Z * H * W, checked before decoding.

    Returns:
        The volume in the display convention of :mod:`segapp.io.volume`.

    Raises:
        InvalidVolumeError: Unusable source; the message says why and what to do.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise InvalidVolumeError("The file or folder does not exist.")
        if nifti.is_nifti(path):
            return nifti.read_nifti(path, volume_index=volume_index, max_voxels=max_voxels)
        if path.is_dir() and casefolder.is_case_folder(path):
            return casefolder.read_case_folder(path, max_voxels=max_voxels)
        if path.is_file() and zipfile.is_zipfile(path) and casefolder.is_slice_zip(path):
            return casefolder.read_slice_zip(path, max_voxels=max_voxels)
        files: Sequence[str | os.PathLike[str]] | Path = path
    else:
        files = list(source)
        if len(files) == 1 and nifti.is_nifti(Path(files[0])):
            return nifti.read_nifti(Path(files[0]), volume_index=volume_index, max_voxels=max_voxels)
        pngs = [Path(f) for f in files if Path(f).suffix.lower() == ".png"]
        if pngs and len(pngs) == len(files):
            return casefolder.read_png_slices(pngs, max_voxels=max_voxels)
    return dicom.read_dicom_series(files, series=series, max_voxels=max_voxels)
