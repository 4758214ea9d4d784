"""RT Structure Sets out and back (pydicom + scikit-image): what radiotherapy planning reads.

One ROI per organ (name, colour, SNOMED CT code), CLOSED_PLANAR contours in patient coordinates
(mm, LPS), each referencing its image; the structure set references the source series and frame of
reference and joins the source's study in a new series.

Contours follow pixel edges: marching squares at level 0.5 on the slice's mask puts every vertex
half-way between a pixel inside and one outside, so no pixel centre lies on a contour; holes are
contours of their own. Reading back fills pixel centres by the even-odd rule over a slice's
contours, which gives our own masks back exactly (tested). rt-utils is not used: it pulls OpenCV
(190 MB, libGL) and its files fail the DICOM validator (see NOTES-volumes.md).

An organ absent from the whole series has no ROI: it is left out of the structure set, the ROI
contours and the observations (ROI number = class id, so the others keep theirs), and the
structure set's description names it. An ROI without a ContourSequence is legal (Type 3), but
rt-utils and DicomRTTool raise on it, and an empty ContourSequence fails the validator.
Only when no organ is found at all are the three ROIs written without contours: a structure set
needs at least one ROI. (tests/io/test_interop_readers.py; docs/viewers.md.)
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np

# skimage loads its submodules on first use (lazy_loader): this import costs milliseconds, not start-up.
from skimage import draw, measure

from segapp.io.dicom_seg import Algorithm, require_dicom
from segapp.io.files import atomic_path
from segapp.io.volume import ScanVolume
from segapp.labels import FOREGROUND
from segapp.version import __version__

RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
# Copied from the images so the structure set joins their patient and study.
_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                  "StudyDate", "StudyTime", "StudyID", "ReferringPhysicianName", "AccessionNumber",
                  "StudyDescription")


def slice_contours(mask: np.ndarray) -> list[np.ndarray]:
    """Closed contours of a (H, W) bool mask as (N, 2) (row, column) pixel coordinates, vertices on
    pixel edges, collinear points removed; first vertex not repeated."""
    if not mask.any():
        return []
    padded = np.pad(mask.astype(np.float32), 1)
    contours = []
    for contour in measure.find_contours(padded, 0.5):
        contour = contour - 1.0  # undo the padding
        if np.allclose(contour[0], contour[-1]):
            contour = contour[:-1]
        contour = _drop_collinear(contour)
        if len(contour) >= 3:
            contours.append(contour)
    return contours


def _drop_collinear(polygon: np.ndarray) -> np.ndarray:
    """A closed polygon (N, 2) without the vertices that lie on the straight line through their
    neighbours: the same outline, a fraction of the points (marching squares puts a vertex on every
    pixel edge). Exact, unlike a simplification with a tolerance, which can cut corners of long
    near-straight edges."""
    if len(polygon) < 4:
        return polygon
    before, after = polygon - np.roll(polygon, 1, axis=0), np.roll(polygon, -1, axis=0) - polygon
    cross = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
    forward = (before * after).sum(axis=1) > 0
    keep = ~((np.abs(cross) < 1e-9) & forward)
    return polygon[keep]


def fill_contours(contours: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: pixel centres inside an odd number of contours (holes are separate contours)."""
    mask = np.zeros(shape, dtype=bool)
    for contour in contours:
        rows, cols = draw.polygon(contour[:, 0], contour[:, 1], shape)
        mask[rows, cols] ^= True
    return mask


def _to_patient(contour: np.ndarray, header: Any) -> np.ndarray:
    """(N, 2) (row, column) of one image -> (N, 3) LPS mm through its position and orientation."""
    iop = np.asarray(header.ImageOrientationPatient, dtype=np.float64)
    ipp = np.asarray(header.ImagePositionPatient, dtype=np.float64)
    row_mm, col_mm = (float(v) for v in header.PixelSpacing)
    return ipp + np.outer(contour[:, 1] * col_mm, iop[:3]) + np.outer(contour[:, 0] * row_mm, iop[3:])


def _to_pixels(points: np.ndarray, header: Any) -> np.ndarray:
    """(N, 3) LPS mm on an image's plane -> (N, 2) (row, column)."""
    iop = np.asarray(header.ImageOrientationPatient, dtype=np.float64)
    ipp = np.asarray(header.ImagePositionPatient, dtype=np.float64)
    row_mm, col_mm = (float(v) for v in header.PixelSpacing)
    offset = points - ipp
    return np.stack([offset @ iop[3:] / row_mm, offset @ iop[:3] / col_mm], axis=1)


def write_rtstruct(labels: np.ndarray, volume: ScanVolume, path: str | Path, *, algorithm: Algorithm,
                   series_number: int = 902) -> Path:
    """Write ``labels`` as an RT Structure Set referencing ``volume``'s images.

    Args:
        labels: (Z, H, W) class ids on the volume's grid (display order).
        volume: A DICOM volume.
        path: Destination (written atomically, Implicit VR Little Endian: explicit VR caps a
            contour's coordinates at 64 KB).
        algorithm: Written into the equipment module and the ROI generation description.
        series_number: Series Number of the new series.
    """
    from pydicom.dataset import FileMetaDataset  # here: pydicom (0.4 s to import) stays out of start-up
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ImplicitVRLittleEndian

    require_dicom(volume, "RTSTRUCT")
    if labels.shape != volume.shape:
        raise ValueError(f"labels {labels.shape} do not match the volume {volume.shape}")
    frames = volume.to_source_order(labels.astype(np.uint8, copy=False))  # frame k <-> headers[k]
    ds = _structure_set(volume.headers[0], algorithm, series_number)
    ds.ReferencedFrameOfReferenceSequence = _referenced_frames(volume.headers)
    _add_rois(ds, volume.headers, frames, algorithm)
    ds.ApprovalStatus = "UNAPPROVED"

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ImplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    destination = Path(path)
    with atomic_path(destination, suffix=".dcm") as temp:
        ds.save_as(temp, enforce_file_format=True, implicit_vr=True, little_endian=True)
    return destination


def _structure_set(first: Any, algorithm: Algorithm, series_number: int) -> Any:
    """The structure set's own modules: the images' patient and study (from their ``first``
    header), a new series, the equipment (the algorithm) and the structure set's name and time."""
    from pydicom.dataset import Dataset  # here: pydicom (0.4 s to import) stays out of start-up
    from pydicom.uid import generate_uid

    now = datetime.datetime.now()
    ds = Dataset()
    for keyword in _PATIENT_STUDY:
        ds.__setattr__(keyword, first.get(keyword, ""))
    ds.SOPClassUID = RT_STRUCTURE_SET_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDescription = "segapp GI organs"
    ds.OperatorsName = ""
    ds.InstanceNumber = 1
    ds.FrameOfReferenceUID = first.FrameOfReferenceUID
    ds.PositionReferenceIndicator = first.get("PositionReferenceIndicator", "")
    ds.Manufacturer = "segapp"
    ds.ManufacturerModelName = algorithm.name[:64]
    ds.SoftwareVersions = algorithm.software[:64]
    ds.DeviceSerialNumber = algorithm.weights_hash[:16]
    ds.StructureSetLabel = "segapp"
    ds.StructureSetName = "GI organs"
    ds.StructureSetDate, ds.StructureSetTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.InstanceCreationDate, ds.InstanceCreationTime = ds.StructureSetDate, ds.StructureSetTime
    ds.SpecificCharacterSet = first.get("SpecificCharacterSet", "ISO_IR 100")
    return ds


def _image_reference(header: Any) -> Any:
    """A reference to one image (its SOP class and instance)."""
    from pydicom.dataset import Dataset  # here: pydicom (0.4 s to import) stays out of start-up

    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = header.SOPClassUID, header.SOPInstanceUID
    return item


def _referenced_frames(headers: tuple[Any, ...]) -> Any:
    """ReferencedFrameOfReferenceSequence: the frame of reference -> study -> series -> every image."""
    from pydicom.dataset import Dataset  # here: pydicom (0.4 s to import) stays out of start-up
    from pydicom.sequence import Sequence

    first = headers[0]
    series_ref = Dataset()
    series_ref.SeriesInstanceUID = first.SeriesInstanceUID
    series_ref.ContourImageSequence = Sequence([_image_reference(header) for header in headers])
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (retired, required)
    study_ref.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study_ref.RTReferencedSeriesSequence = Sequence([series_ref])
    frame_ref = Dataset()
    frame_ref.FrameOfReferenceUID = first.FrameOfReferenceUID
    frame_ref.RTReferencedStudySequence = Sequence([study_ref])
    return Sequence([frame_ref])


def _add_rois(ds: Any, headers: tuple[Any, ...], frames: np.ndarray, algorithm: Algorithm) -> None:
    """One ROI per organ found: its name, its contours on each image (``frames[k]`` on
    ``headers[k]``), its colour and its observation (interpreted type, SNOMED CT code). Absent
    organs are left out (see the module's docstring)."""
    from pydicom.dataset import Dataset  # here: pydicom (0.4 s to import) stays out of start-up
    from pydicom.sequence import Sequence

    ds.StructureSetROISequence = Sequence()
    ds.ROIContourSequence = Sequence()
    ds.RTROIObservationsSequence = Sequence()
    contours_of = {label.id: _contour_items(frames == label.id, headers) for label in FOREGROUND}
    found = [label for label in FOREGROUND if contours_of[label.id]]
    absent = [label.display for label in FOREGROUND if not contours_of[label.id]]
    if found and absent:
        ds.StructureSetDescription = f"Not found in this series: {', '.join(absent)}"
    for label in found or FOREGROUND:  # none found: the ROIs without contours (at least one ROI is required)
        roi = Dataset()
        roi.ROINumber = label.id
        roi.ReferencedFrameOfReferenceUID = headers[0].FrameOfReferenceUID
        roi.ROIName = label.display
        roi.ROIGenerationAlgorithm = "AUTOMATIC"
        roi.ROIGenerationDescription = f"segapp {__version__}, {algorithm.name}"[:64]
        ds.StructureSetROISequence.append(roi)

        roi_contour = Dataset()
        roi_contour.ReferencedROINumber = label.id
        roi_contour.ROIDisplayColor = list(label.color)
        if contours_of[label.id]:
            roi_contour.ContourSequence = Sequence(contours_of[label.id])
        ds.ROIContourSequence.append(roi_contour)

        observation = Dataset()
        observation.ObservationNumber = label.id
        observation.ReferencedROINumber = label.id
        observation.RTROIInterpretedType = "ORGAN"
        observation.ROIInterpreter = ""
        if label.snomed is not None:
            code = Dataset()
            code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = label.snomed[0], "SCT", label.snomed[1]
            observation.RTROIIdentificationCodeSequence = Sequence([code])
        ds.RTROIObservationsSequence.append(observation)


def _contour_items(masks: np.ndarray, headers: tuple[Any, ...]) -> list[Any]:
    """The ContourSequence items of one organ: a CLOSED_PLANAR contour in LPS mm for each outline
    of ``masks[k]`` (bool, source order), referencing image ``headers[k]``."""
    from pydicom.dataset import Dataset  # here: pydicom (0.4 s to import) stays out of start-up
    from pydicom.sequence import Sequence

    items = []
    for header, mask in zip(headers, masks):
        for contour in slice_contours(mask):
            item = Dataset()
            item.ContourImageSequence = Sequence([_image_reference(header)])
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = len(contour)
            item.ContourData = _contour_data(_to_patient(contour, header))
            items.append(item)
    return items


def _contour_data(points: np.ndarray) -> str:
    """ContourData as one backslash-separated DS string, 4 decimals (0.1 µm), each value within
    DS's 16 characters."""
    return "\\".join(f"{v:.4f}" for v in points.reshape(-1))


def read_rtstruct_labels(path: str | Path, volume: ScanVolume) -> np.ndarray:
    """Read an RT Structure Set of ``volume``'s images back as a (Z, H, W) label volume (display
    order). ROIs are matched to labels by name; later labels win where ROIs overlap."""
    import pydicom  # here: pydicom (0.4 s to import) stays out of start-up

    ds = pydicom.dcmread(str(path))
    by_uid = {str(h.SOPInstanceUID): k for k, h in enumerate(volume.headers)}
    names = {roi.ROINumber: str(roi.ROIName) for roi in ds.StructureSetROISequence}
    ids = {label.display: label.id for label in FOREGROUND}
    source = np.zeros(volume.source_shape, dtype=np.uint8)
    for roi_contour in ds.ROIContourSequence:
        label_id = ids.get(names.get(roi_contour.ReferencedROINumber, ""))
        if label_id is None:
            continue
        per_slice: dict[int, list[np.ndarray]] = {}
        for item in roi_contour.get("ContourSequence", []):
            k = by_uid.get(str(item.ContourImageSequence[0].ReferencedSOPInstanceUID))
            if k is None:
                continue
            points = np.asarray(item.ContourData, dtype=np.float64).reshape(-1, 3)
            per_slice.setdefault(k, []).append(_to_pixels(points, volume.headers[k]))
        for k, contours in per_slice.items():
            source[k][fill_contours(contours, (source.shape[1], source.shape[2]))] = label_id
    return volume.from_source_order(source)
