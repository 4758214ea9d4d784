"""NIfTI volumes in (``.nii``, ``.nii.gz``, NIfTI-1 and -2), through nibabel.

The data are reordered (axis permutations and flips, never resampled) into the display
convention of :mod:`segapp.io.volume`; the header is kept so that a label map can be written
back on the input's own grid.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from segapp.io.files import atomic_path
from segapp.io.volume import (
    LPS_TO_RAS,
    InvalidVolumeError,
    ScanVolume,
    check_axial,
    check_voxels,
    describe,
    to_display_order,
)

SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: Path) -> bool:
    """Whether ``path`` is named like a NIfTI file (the reader then checks its content)."""
    name = path.name.lower()
    return path.is_file() and name.endswith(SUFFIXES)


def read_nifti(path: Path, *, volume_index: int | None = None, max_voxels: int) -> ScanVolume:
    """Read a 3D NIfTI image, or one volume of a 4D one.

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        volume_index: 0-based index of the volume to use from a 4D image; 4D images are
            refused without it.
        max_voxels: Largest accepted voxel count (checked from the header).

    Raises:
        InvalidVolumeError: Not NIfTI, damaged or short, 4D without an index, not axial, too large.
    """
    import nibabel as nib  # here: nibabel (0.4 s to import) stays out of start-up

    try:
        image = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for damaged files
        raise InvalidVolumeError(
            f"The file is not a readable NIfTI image ({type(exc).__name__}). Export it again."
        ) from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InvalidVolumeError("The file is not a NIfTI-1 or NIfTI-2 image.")
    shape = tuple(int(s) for s in image.shape)
    shape3 = _checked_shape(shape, volume_index)
    check_voxels(int(np.prod(shape3)), max_voxels)
    affine_lps = np.linalg.inv(LPS_TO_RAS) @ image.affine
    # The third voxel axis is the slice axis of a NIfTI volume.
    check_axial(affine_lps[:3, 2])
    data = _load_data(image, volume_index)
    voxels, affine, back = to_display_order(data, affine_lps)
    spacing = tuple(float(np.linalg.norm(affine[:3, a])) for a in range(3))
    return ScanVolume(
        voxels=voxels,
        spacing_mm=(spacing[0], spacing[1], spacing[2]),
        affine_lps=affine,
        kind="nifti",
        source_orientation=back,
        source_shape=shape3,
        nifti_header=image.header.copy(),
        description=describe(voxels.shape, spacing, format=f"NIfTI-{2 if isinstance(image, nib.Nifti2Image) else 1}"),
    )


def _checked_shape(shape: tuple[int, ...], volume_index: int | None) -> tuple[int, int, int]:
    # Trailing axes of length 1 (a 3D image stored as 4D with one volume) are not a 4th dimension.
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) == 3:
        if volume_index not in (None, 0):
            raise InvalidVolumeError(f"The image is 3D: there is no volume {volume_index}.")
        return shape[0], shape[1], shape[2]
    if len(shape) == 4:
        if volume_index is None:
            raise InvalidVolumeError(
                f"The image is 4D ({shape[3]} volumes of {shape[0]} x {shape[1]} x {shape[2]}); "
                "choose one volume (volume index 0 to {}).".format(shape[3] - 1)
            )
        if not 0 <= volume_index < shape[3]:
            raise InvalidVolumeError(f"Volume index {volume_index} is outside 0..{shape[3] - 1}.")
        return shape[0], shape[1], shape[2]
    raise InvalidVolumeError(f"The image has {len(shape)} dimensions; segapp reads 3D volumes (or one of a 4D series).")


def _load_data(image: object, volume_index: int | None) -> np.ndarray:
    """Decode the voxels (scaled by the header's slope/intercept) of the chosen 3D volume."""
    try:
        proxy = image.dataobj  # type: ignore[attr-defined]
        if len(proxy.shape) > 3:
            index = (slice(None),) * 3 + (volume_index or 0,) + (0,) * (len(proxy.shape) - 4)
            data = np.asarray(proxy[index])
        else:
            data = np.asarray(proxy)
    except (EOFError, OSError, ValueError, zlib.error, gzip.BadGzipFile) as exc:
        raise InvalidVolumeError(
            f"The NIfTI file holds less data than its header claims, or is damaged ({type(exc).__name__}). "
            "Export it again."
        ) from None
    data = data.reshape(data.shape[:3])
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise InvalidVolumeError("The volume contains values that are not numbers (NaN or infinite).")
    if data.dtype.kind not in "iuf" and data.dtype != np.bool_:
        raise InvalidVolumeError(f"Voxels of type {data.dtype} are not a scan (complex or RGB data).")
    return data


# ---------------------------------------------------------------------------
# Writing


def write_label_nifti(labels: np.ndarray, volume: ScanVolume, path: str | Path) -> Path:
    """Write a label volume as ``.nii.gz`` (uint8, class ids of :mod:`segapp.labels`).

    Args:
        labels: (Z, H, W) class ids on ``volume``'s grid (display order).
        volume: The scan the labels belong to. A NIfTI input gets the labels in its own voxel
            order with its own affine; any other input gets the display order transposed to
            (column, row, slice) with the RAS affine of its DICOM (or PNG) geometry.
        path: Destination (written atomically).

    Returns:
        The path. qform and sform are both set (code 1, scanner coordinates), so tools that read
        either agree.
    """
    import nibabel as nib  # here: nibabel (0.4 s to import) stays out of start-up

    if labels.shape != volume.shape:
        raise ValueError(f"labels {labels.shape} do not match the volume {volume.shape}")
    labels = labels.astype(np.uint8, copy=False)
    if volume.kind == "nifti" and volume.nifti_header is not None:
        data = volume.to_source_order(labels)
        affine = volume.nifti_header.get_best_affine()
    else:
        data = np.ascontiguousarray(np.transpose(labels, (2, 1, 0)))
        affine = volume.affine_ras[:, [2, 1, 0, 3]]
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = b"segapp label map"
    destination = Path(path)
    with atomic_path(destination, suffix=".nii.gz") as temp:
        nib.save(image, str(temp))
    return destination
