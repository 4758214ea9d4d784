"""Scan volumes: one geometry contract for DICOM series, NIfTI files and case-day folders.

Every format reader returns a :class:`ScanVolume` (the registry,
:func:`segapp.io.readers.read_volume`, picks the reader by what the source holds) whose slices are in the display convention of the UW-Madison PNGs, the phantoms and the bundled
model, whatever order the source stored them in:

- array ``voxels`` of shape (Z, H, W): axial slices; in each slice the patient's right is on the
  image's left (column index grows toward the patient's left) and anterior is at the top (row
  index grows toward posterior); slice index 0 is the most inferior (feet) slice and Z grows
  toward the head;
- ``affine_lps`` maps a voxel index ``(k, i, j, 1)`` of ``voxels`` (slice, row, column) to patient
  coordinates in mm, DICOM's LPS frame (x toward the patient's left, y toward posterior, z toward
  the head); ``affine_ras`` is the same in the RAS frame NIfTI uses;
- ``spacing_mm`` is (slice, row, column) in mm, the slice step taken from the slice positions;
- :meth:`ScanVolume.to_source_order` puts a label volume back in the source's own voxel order
  (for a NIfTI written on the input's grid).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segapp.io.image import minmax_uint8

# Limits for uploads and folders (the slice reader has its own); every reader checks them
# before decoding pixel data.
DEFAULT_MAX_VOXELS = 300_000_000  # e.g. 1,000 slices of 548 x 548
MAX_FILES = 5_000
AXIAL_TOLERANCE_DEG = 15.0  # the slice normal may tilt this far from the head-foot axis

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# nibabel's axis codes (RAS world) of the display convention: slice axis toward S(uperior),
# rows toward P(osterior), columns toward L(eft).
DISPLAY_AXCODES = ("S", "P", "L")


class InvalidVolumeError(ValueError):
    """The source cannot be used as a scan volume; the message is meant for the person who
    supplied it and carries no patient data."""


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class ScanVolume:
    """A scan volume in the display convention (see the module docstring).

    Attributes:
        voxels: (Z, H, W) stored values, rescale slope/intercept applied (float32 when the source
            rescales, else the source's integer type).
        spacing_mm: (slice, row, column) mm.
        affine_lps: 4 x 4, voxel index (k, i, j, 1) -> LPS mm.
        kind: "dicom", "nifti" or "png".
        source_orientation: nibabel orientation array (3 x 2) mapping the display order back to the
            source's voxel order; with ``source_shape`` it drives :meth:`to_source_order`.
        source_shape: Shape of the source's own voxel array.
        headers: Per-slice DICOM headers (datasets without pixel data) in the source order: header
            k describes slice k of :meth:`to_source_order`'s result (the files sorted along their
            own slice normal, rows and columns as stored), which is what DICOM exports reference
            frame by frame; empty for other kinds.
        nifti_header: The source NIfTI header (for writing on the input's grid), else None.
        description: What may be shown and logged: modality, series description, sizes,
            spacing, orientation, slice count. Never patient data.
        notes: Non-fatal remarks for the user (e.g. "modality CT: the model was trained on MR").
    """

    voxels: np.ndarray
    spacing_mm: tuple[float, float, float]
    affine_lps: np.ndarray
    kind: str
    source_orientation: np.ndarray
    source_shape: tuple[int, ...]
    headers: tuple[Any, ...] = ()
    nifti_header: Any = None
    description: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.voxels.ndim != 3 or 0 in self.voxels.shape:
            raise ValueError(f"voxels must be (Z, H, W), got shape {self.voxels.shape}")
        if self.affine_lps.shape != (4, 4):
            raise ValueError(f"affine_lps must be 4 x 4, got {self.affine_lps.shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """(Z, H, W)."""
        z, h, w = self.voxels.shape
        return int(z), int(h), int(w)

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL (mm³ / 1000)."""
        return float(np.prod(self.spacing_mm)) / 1000.0

    @property
    def affine_ras(self) -> np.ndarray:
        """4 x 4, voxel index (k, i, j, 1) -> RAS mm (NIfTI's frame)."""
        return LPS_TO_RAS @ self.affine_lps

    def slices_uint8(self) -> np.ndarray:
        """(Z, H, W) uint8: each slice min-max scaled to 0..255 as the slice reader and the data
        preparation do (a constant slice becomes all zeros: nothing to scale)."""
        out = np.zeros(self.voxels.shape, dtype=np.uint8)
        for k, plane in enumerate(self.voxels):
            if plane.min() != plane.max():
                out[k] = minmax_uint8(plane)
        return out

    def to_source_order(self, array: np.ndarray) -> np.ndarray:
        """A (Z, H, W) array on this volume's grid -> the same voxels in the source's order."""
        import nibabel.orientations as ornt  # here: nibabel (0.4 s to import) stays out of start-up

        if array.shape != self.voxels.shape:
            raise ValueError(f"array shape {array.shape} is not the volume's {self.voxels.shape}")
        return np.ascontiguousarray(ornt.apply_orientation(array, self.source_orientation))

    def from_source_order(self, array: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`to_source_order`: source voxel order -> display order."""
        import nibabel.orientations as ornt  # here: nibabel (0.4 s to import) stays out of start-up

        # source_orientation row a = (source axis, flip) of display axis a; invert the permutation.
        inverse = np.empty_like(self.source_orientation)
        for display_axis, (source_axis, flip) in enumerate(self.source_orientation):
            inverse[int(source_axis)] = (display_axis, flip)
        result = np.ascontiguousarray(ornt.apply_orientation(array, inverse))
        if result.shape != self.voxels.shape:
            raise ValueError(f"array shape {array.shape} is not the source's {self.source_shape}")
        return result


# ---------------------------------------------------------------------------
# Geometry shared by the readers


def to_display_order(data: np.ndarray, affine_lps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reorder a 3D voxel array so its axes follow the display convention.

    Args:
        data: 3D array in the source's voxel order.
        affine_lps: 4 x 4, source voxel index -> LPS mm.

    Returns:
        (data in display order, its LPS affine, the orientation that maps display order back
        to the source order). Only axis permutations and flips: no resampling.
    """
    import nibabel.orientations as ornt  # here: nibabel (0.4 s to import) stays out of start-up

    source = ornt.io_orientation(LPS_TO_RAS @ affine_lps)
    display = ornt.axcodes2ornt(DISPLAY_AXCODES)
    forward = ornt.ornt_transform(source, display)
    reordered = ornt.apply_orientation(data, forward)
    # inv_ornt_aff: display voxel index -> source voxel index.
    affine = affine_lps @ ornt.inv_ornt_aff(forward, data.shape)
    back = ornt.ornt_transform(display, source)
    return np.ascontiguousarray(reordered), affine, back


def plane_name(normal: Sequence[float] | np.ndarray) -> str:
    """"axial", "coronal" or "sagittal" for the patient axis nearest to a slice normal (LPS),
    "oblique" when it is more than :data:`AXIAL_TOLERANCE_DEG` from each."""
    n = np.abs(np.asarray(normal, dtype=np.float64))
    n /= np.linalg.norm(n)
    axis = int(np.argmax(n))
    if math.degrees(math.acos(min(1.0, float(n[axis])))) > AXIAL_TOLERANCE_DEG:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def check_axial(normal: Sequence[float] | np.ndarray) -> None:
    """Refuse slices that are not axial: the model was trained on axial slices."""
    plane = plane_name(normal)
    if plane != "axial":
        n = np.asarray(normal, dtype=np.float64) / np.linalg.norm(normal)
        tilt = math.degrees(math.acos(min(1.0, abs(float(n[2])))))
        raise InvalidVolumeError(
            f"The slices are {plane} ({tilt:.0f} degrees from axial); segapp segments axial slices "
            f"(at most {AXIAL_TOLERANCE_DEG:.0f} degrees tilt), as the model was trained on. "
            "Export the axial series, or reformat the volume to axial first."
        )


def check_voxels(count: int, max_voxels: int) -> None:
    """Refuse a volume above the voxel limit before any pixel is decoded."""
    if count > max_voxels:
        raise InvalidVolumeError(
            f"The volume has {count:,} voxels, more than the {max_voxels:,} accepted. "
            "Send one series of one scan."
        )


def describe(voxels_shape: Sequence[int], spacing_mm: Sequence[float], **extra: Any) -> dict[str, Any]:
    """The patient-free description every reader fills in."""
    z, h, w = (int(v) for v in voxels_shape)
    return {
        "slices": z,
        "rows": h,
        "columns": w,
        "spacing_mm": [round(float(s), 4) for s in spacing_mm],
        "orientation": "axial",
        **extra,
    }
