"""Labelled volumes on disk: a scan and a label volume of class ids on the same grid.

Three layouts are found in one folder (what ``python -m segapp.phantom --format nifti|dicom``
writes, and what nnU-Net users have):

* ``NAME_image.nii[.gz]`` + ``NAME_labels.nii[.gz]`` side by side;
* ``NAME/`` (a DICOM series folder, or anything else :func:`segapp.io.readers.read_volume` reads
  as a folder) + ``NAME_labels.nii[.gz]`` on the series' grid (``segapp.predict`` writes such
  label files, and so does the phantom's DICOM format);
* nnU-Net's ``imagesTr/NAME_0000.nii[.gz]`` + ``labelsTr/NAME.nii[.gz]``.

Evaluation, post-processing tuning and training all read labelled volumes through
:func:`find_labelled_volumes` and :func:`read_labelled_volume`, so they agree on what a pair is
and on what makes one unusable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segapp.io.readers import read_volume
from segapp.io.volume import DEFAULT_MAX_VOXELS, InvalidVolumeError, ScanVolume
from segapp.labels import NUM_LABELS

LAYOUTS = ("NAME_image.nii.gz + NAME_labels.nii.gz, NAME/ (a DICOM series) + NAME_labels.nii.gz, "
           "or imagesTr/NAME_0000.nii.gz + labelsTr/NAME.nii.gz")


@dataclass(frozen=True)
class LabelledVolumeFiles:
    """One scan and its labels.

    Attributes:
        name: The pair's ``NAME`` (the user's own naming; it keys results, never a log line).
        image: The scan: a NIfTI file or a series folder.
        labels: The label NIfTI: class ids 0..3 on the scan's grid.
    """

    name: str
    image: Path
    labels: Path


def _stem(path: Path, marker: str) -> tuple[str, str] | None:
    """(NAME, extension) of ``NAME{marker}.nii[.gz]``, else None."""
    if marker + ".nii" not in path.name:
        return None
    stem, ext = path.name.rsplit(marker + ".nii", 1)
    return (stem, ext) if ext in ("", ".gz") and stem else None


def find_labelled_volumes(folder: str | Path) -> list[LabelledVolumeFiles]:
    """The labelled volumes in ``folder`` (see the module docstring), sorted by name.

    A labels file without its scan, and a scan without labels, are not pairs and are skipped.
    """
    folder = Path(folder)
    pairs = []
    for labels in sorted(folder.glob("*_labels.nii*")):
        parts = _stem(labels, "_labels")
        if parts is None:
            continue
        stem = parts[0]
        images = [folder / f"{stem}_image{ext}" for ext in (".nii.gz", ".nii")]
        images = [image for image in images if image.is_file()]
        if images:
            pairs.append(LabelledVolumeFiles(stem, images[0], labels))
        elif (folder / stem).is_dir():
            pairs.append(LabelledVolumeFiles(stem, folder / stem, labels))
    for image in sorted((folder / "imagesTr").glob("*_0000.nii*")):
        parts = _stem(image, "_0000")
        if parts is None:
            continue
        labels = folder / "labelsTr" / f"{parts[0]}.nii{parts[1]}"
        if labels.is_file():
            pairs.append(LabelledVolumeFiles(parts[0], image, labels))
    return sorted(pairs, key=lambda p: p.name)


def read_labelled_volume(files: LabelledVolumeFiles, *, max_voxels: int = DEFAULT_MAX_VOXELS
                         ) -> tuple[ScanVolume, np.ndarray]:
    """The scan and its labels, both in the display order of :class:`segapp.io.volume.ScanVolume`.

    Returns:
        (scan, labels): ``labels`` is (Z, H, W) uint8 class ids, voxel for voxel with ``scan.voxels``.

    Raises:
        InvalidVolumeError: Either file unreadable (the reader's message), the labels not on the
            scan's grid (shape or affine differ by more than 1 micrometre), or label values that
            are not class ids 0..3.
    """
    scan = read_volume(files.image, max_voxels=max_voxels)
    truth = read_volume(files.labels, max_voxels=max_voxels)
    if truth.shape != scan.shape or not np.allclose(truth.affine_lps, scan.affine_lps, atol=1e-3):
        raise InvalidVolumeError(
            f"the label volume is not on the scan's grid ({truth.shape} voxels against the scan's "
            f"{scan.shape}, or another position or orientation); labels must be written on the scan's grid"
        )
    values = truth.voxels
    if (values.dtype.kind == "f" and not np.array_equal(values, np.round(values))) or values.min() < 0 \
            or values.max() >= NUM_LABELS:
        raise InvalidVolumeError(
            f"label values must be class ids 0..{NUM_LABELS - 1} (0 background, 1 stomach, 2 small "
            "bowel, 3 large bowel)"
        )
    return scan, values.astype(np.uint8)


__all__ = ["LAYOUTS", "LabelledVolumeFiles", "find_labelled_volumes", "read_labelled_volume"]
