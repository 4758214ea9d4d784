"""DICOM Segmentation objects out (highdicom, BINARY): what imaging archives and viewers keep.

One segment per organ with its SNOMED CT code; the algorithm identified by segapp's version, the
model's name and a hash of its weights; each frame referencing its source image; in the source's
study, in a new series. BINARY is the interoperable segmentation type (LABELMAP is the 2024 SOP
class that the Debian validator and many viewers do not know yet).

Each segment carries its display colour (RecommendedDisplayCIELabValue, from the label table's
RGB), so 3D Slicer (dcmqi) and OHIF show each organ in the colour the page and the other exports
use; without it dcmqi gives every segment the same default green.

Segment number = class id, always all three: an organ absent from the whole series keeps its
segment, with empty frames. The standard numbers segments 1, 2, 3... without gaps, so leaving one
out would renumber the others; highdicom, dcmqi and the DICOM validator read an empty segment
(tested in tests/io/test_interop_readers.py; docs/viewers.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segapp.io.files import atomic_path
from segapp.io.volume import InvalidVolumeError, ScanVolume
from segapp.labels import FOREGROUND


@dataclass(frozen=True)
class Algorithm:
    """What made the segmentation, as written into DICOM exports.

    Attributes:
        name: Model name (e.g. the weights folder's or hub id's last part).
        version: segapp's version.
        weights_hash: Short hash of the weights file, so a result names exactly what made it.
    """

    name: str
    version: str
    weights_hash: str

    @property
    def software(self) -> str:
        """Software Versions value."""
        return f"segapp {self.version}; model {self.name}; weights sha256:{self.weights_hash}"


def require_dicom(volume: ScanVolume, what: str) -> None:
    """DICOM exports attach to the source's study and images: refuse other inputs clearly."""
    if volume.kind != "dicom" or not volume.headers:
        raise InvalidVolumeError(
            f"{what} needs a DICOM input (it references the source images); this input is "
            f"{volume.description.get('format', volume.kind)}. Use the NIfTI output instead."
        )
    if len({id(h) for h in volume.headers}) != len(volume.headers):
        raise InvalidVolumeError(
            f"{what} from an enhanced multi-frame source is not supported yet; use the NIfTI output."
        )


def write_dicom_seg(labels: np.ndarray, volume: ScanVolume, path: str | Path, *, algorithm: Algorithm,
                    series_number: int = 901) -> Path:
    """Write ``labels`` as a BINARY DICOM Segmentation of ``volume``'s source images.

    Args:
        labels: (Z, H, W) class ids on the volume's grid (display order).
        volume: A DICOM volume (its ``headers`` are the source images).
        path: Destination file (written atomically).
        algorithm: Identification written into each segment and the equipment module.
        series_number: Series Number of the new series.

    Raises:
        InvalidVolumeError: The volume is not a DICOM series.
    """
    import highdicom as hd  # here: highdicom (0.6 s to import) stays out of start-up
    from pydicom.sr.codedict import codes

    require_dicom(volume, "DICOM-SEG")
    if labels.shape != volume.shape:
        raise ValueError(f"labels {labels.shape} do not match the volume {volume.shape}")
    frames = volume.to_source_order(labels.astype(np.uint8, copy=False))  # frame k <-> headers[k]
    identification = hd.AlgorithmIdentificationSequence(
        name=algorithm.name[:64], version=f"{algorithm.version} ({algorithm.weights_hash})"[:64],
        family=codes.cid7162.ArtificialIntelligence,
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=label.id,
            segment_label=label.display,
            segmented_property_category=codes.cid7150.AnatomicalStructure,
            segmented_property_type=_snomed(label.snomed),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=identification,
            tracking_uid=hd.UID(),
            tracking_id=f"segapp {label.name}",
            display_color=hd.color.CIELabColor.from_rgb(*label.color),
        )
        for label in FOREGROUND
    ]
    segmentation = hd.seg.Segmentation(
        source_images=list(volume.headers),
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="segapp",
        manufacturer_model_name=algorithm.name[:64],
        software_versions=algorithm.software[:64],
        device_serial_number=algorithm.weights_hash[:16],
        series_description="segapp GI organs"[:64],
        omit_empty_frames=False,
    )
    destination = Path(path)
    with atomic_path(destination, suffix=".dcm") as temp:
        segmentation.save_as(temp)
    return destination


def _snomed(code: tuple[str, str] | None) -> Any:
    from pydicom.sr.coding import Code  # here: pydicom (0.4 s to import) stays out of start-up

    if code is None:
        raise ValueError("a foreground label without a SNOMED code")
    return Code(code[0], "SCT", code[1])


def read_dicom_seg_labels(path: str | Path, volume: ScanVolume) -> np.ndarray:
    """Read a segapp DICOM-SEG back as a (Z, H, W) label volume on ``volume``'s grid (display order)."""
    import highdicom as hd  # here: highdicom (0.6 s to import) stays out of start-up

    seg = hd.seg.segread(str(path))
    uids = [str(h.SOPInstanceUID) for h in volume.headers]
    frames = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids,
        segment_numbers=[label.id for label in FOREGROUND],
        combine_segments=True,
        relabel=False,
    )
    return volume.from_source_order(np.asarray(frames, dtype=np.uint8))
