"""A volume prediction's files: NIfTI label map, DICOM-SEG, RTSTRUCT, the label tables, a CSV row.

What each format needs from the input is checked before anything is written: DICOM outputs need
a DICOM input (they reference its images). No output name or CSV cell carries patient data.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segapp.inference.volume import VolumePrediction
from segapp.io.dicom_seg import Algorithm, require_dicom, write_dicom_seg
from segapp.io.label_table import write_label_tables
from segapp.io.nifti import write_label_nifti
from segapp.io.rtstruct import write_rtstruct
from segapp.labels import FOREGROUND
from segapp.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from segapp.inference.segmenter import Segmenter

VOLUME_FORMATS = ("nifti", "dicom-seg", "rtstruct")
FILE_NAMES = {"nifti": "segmentation.nii.gz", "dicom-seg": "seg.dcm", "rtstruct": "rtstruct.dcm"}


def algorithm_of(segmenter: Segmenter) -> Algorithm:
    """What a DICOM export names as its maker: segapp's version, the weights' name and hash."""
    # Here, not at the top: segapp.model.weights imports torch, which writing a label file does without.
    from segapp.model.weights import weights_fingerprint

    source = str(segmenter.loaded.source).rstrip("/\\")
    name = Path(source).name or source
    return Algorithm(name=name, version=__version__, weights_hash=weights_fingerprint(segmenter.loaded.model))


def applicable_formats(kind: str, asked: Iterable[str], *, every: bool) -> list[str]:
    """The volume formats to write for an input of ``kind`` ("dicom", "nifti", "png").

    Args:
        kind: The volume's kind.
        asked: Formats named explicitly.
        every: ``--format all``: every format that applies to this input (DICOM outputs only for
            DICOM inputs); formats named explicitly are always attempted (and refused clearly).
    """
    chosen = [f for f in VOLUME_FORMATS if f in set(asked)]
    if every:
        chosen = [f for f in VOLUME_FORMATS if kind == "dicom" or f == "nifti"]
    return chosen


def write_volume_outputs(prediction: VolumePrediction, folder: str | Path, formats: Iterable[str], *,
                         algorithm: Algorithm | None) -> dict[str, Path]:
    """Write the chosen formats of one volume into ``folder``.

    Args:
        prediction: The volume's prediction.
        folder: ``OUT/<volume name>/`` (created).
        formats: Any of :data:`VOLUME_FORMATS`.
        algorithm: Identification for DICOM outputs (needed when one is asked for).

    Returns:
        Format -> written path (plus ``labels`` for the label tables beside a NIfTI).

    Raises:
        InvalidVolumeError: A DICOM output for a non-DICOM input (before anything is written).
    """
    formats = list(formats)
    volume, labels = prediction.volume, prediction.labels
    for name in formats:
        if name in ("dicom-seg", "rtstruct"):
            require_dicom(volume, "DICOM-SEG" if name == "dicom-seg" else "RTSTRUCT")
            if algorithm is None:
                raise ValueError("DICOM outputs need the algorithm's identification")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if "nifti" in formats:
        written["nifti"] = write_label_nifti(labels, volume, folder / FILE_NAMES["nifti"])
        written["labels"] = write_label_tables(folder)[0]
    if "dicom-seg" in formats:
        assert algorithm is not None
        written["dicom-seg"] = write_dicom_seg(labels, volume, folder / FILE_NAMES["dicom-seg"], algorithm=algorithm)
    if "rtstruct" in formats:
        assert algorithm is not None
        written["rtstruct"] = write_rtstruct(labels, volume, folder / FILE_NAMES["rtstruct"], algorithm=algorithm)
    return written


def volume_row(name: str, prediction: VolumePrediction) -> dict[str, Any]:
    """One ``volumes.csv`` row: the output name, geometry and per-organ figures (no patient data)."""
    volume = prediction.volume
    z, h, w = volume.shape
    row: dict[str, Any] = {
        "volume": name, "kind": volume.kind, "slices": z, "rows": h, "columns": w,
        "slice_mm": round(volume.spacing_mm[0], 4), "row_mm": round(volume.spacing_mm[1], 4),
        "column_mm": round(volume.spacing_mm[2], 4),
    }
    for label in FOREGROUND:
        organ = prediction.organs[label.name]
        row[f"{label.name}_ml"] = round(organ.volume_ml, 3)
        row[f"{label.name}_voxels"] = organ.voxels
        row[f"{label.name}_slices"] = "" if organ.slices is None else f"{organ.slices[0]}-{organ.slices[1]}"
        row[f"{label.name}_max_area_mm2"] = round(organ.max_area_mm2, 1)
        row[f"{label.name}_mean_confidence"] = "" if organ.mean_confidence is None else round(organ.mean_confidence, 4)
    return row
