"""DICOM-SEG and RTSTRUCT out: they read back to the same labels and pass the DICOM validator."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from scipy import ndimage
from test_volume import _series  # the series writer of the reader's tests

from segapp.inference.volume import organ_volumes
from segapp.io.dicom_seg import Algorithm, read_dicom_seg_labels, write_dicom_seg
from segapp.io.readers import read_volume
from segapp.io.rtstruct import fill_contours, read_rtstruct_labels, slice_contours, write_rtstruct
from segapp.io.volume import InvalidVolumeError

ALGORITHM = Algorithm("tiny-test", "0.1.0", "0123456789abcdef")
NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"


def _validator_lines(path: Path) -> list[str]:
    """dciodvfy's Error and Warning lines (its exit code is unreliable)."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith(("Error", "Warning"))]


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """A flipped, reversed series and organ-like labels: blobs, a ring with a hole, empty slices."""
    folder = tmp_path_factory.mktemp("series")
    _series(folder, slices=6, flip_rows=True, flip_cols=True, reverse=True)
    volume = read_volume(folder)
    rng = np.random.default_rng(0)
    labels = np.zeros(volume.shape, np.uint8)
    for label in (1, 2, 3):
        labels[ndimage.gaussian_filter(rng.random(volume.shape), (0.5, 3, 3)) > 0.53] = label
    labels[2, 20:40, 20:40] = 1
    labels[2, 25:30, 25:30] = 0
    labels[5] = 0
    return volume, labels


def test_dicom_seg_round_trip_and_validator(scan, tmp_path: Path) -> None:
    volume, labels = scan
    path = write_dicom_seg(labels, volume, tmp_path / "seg.dcm", algorithm=ALGORITHM)
    assert np.array_equal(read_dicom_seg_labels(path, volume), labels)
    seg = pydicom.dcmread(path)
    first = volume.headers[0]
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert seg.StudyInstanceUID == first.StudyInstanceUID and seg.SeriesInstanceUID != first.SeriesInstanceUID
    assert seg.FrameOfReferenceUID == first.FrameOfReferenceUID
    codes = [s.SegmentedPropertyTypeCodeSequence[0].CodeValue for s in seg.SegmentSequence]
    assert codes == ["69695003", "30315005", "14742008"]
    assert "0123456789abcdef" in str(seg.SoftwareVersions)
    # Every frame references a source image.
    sources = {str(h.SOPInstanceUID) for h in volume.headers}
    referenced = {str(f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
                  for f in seg.PerFrameFunctionalGroupsSequence}
    assert referenced <= sources and len(referenced) == len(sources)
    assert [line for line in _validator_lines(path) if line.startswith("Error")] == []


def test_rtstruct_round_trip_volume_and_validator(scan, tmp_path: Path) -> None:
    volume, labels = scan
    path = write_rtstruct(labels, volume, tmp_path / "rtstruct.dcm", algorithm=ALGORITHM)
    back = read_rtstruct_labels(path, volume)
    assert np.array_equal(back, labels)
    mask_ml = organ_volumes(labels, None, volume.spacing_mm)
    contour_ml = organ_volumes(back, None, volume.spacing_mm)
    for name, organ in mask_ml.items():
        assert contour_ml[name].volume_ml == pytest.approx(organ.volume_ml, rel=0.02)
    rt = pydicom.dcmread(path)
    first = volume.headers[0]
    assert rt.Modality == "RTSTRUCT" and rt.StudyInstanceUID == first.StudyInstanceUID
    assert [r.ROIName for r in rt.StructureSetROISequence] == ["Stomach", "Small bowel", "Large bowel"]
    assert [list(c.ROIDisplayColor) for c in rt.ROIContourSequence] == [[230, 159, 0], [86, 180, 233], [204, 121, 167]]
    assert rt.RTROIObservationsSequence[0].RTROIIdentificationCodeSequence[0].CodeValue == "69695003"
    series = rt.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == first.SeriesInstanceUID
    assert all(c.ContourGeometricType == "CLOSED_PLANAR" for roi in rt.ROIContourSequence for c in roi.ContourSequence)
    assert _validator_lines(path) == []


def test_contours_give_the_mask_back_exactly() -> None:
    rng = np.random.default_rng(3)
    for _ in range(30):
        mask = ndimage.gaussian_filter(rng.random((40, 50)), 2) > 0.5
        mask[rng.integers(0, 40), rng.integers(0, 50)] ^= True  # single pixels and holes too
        mask[0, :5] = True  # touching the border
        assert np.array_equal(fill_contours(slice_contours(mask), mask.shape), mask)
    diagonal = np.eye(6, dtype=bool)  # pixels touching only at corners
    assert np.array_equal(fill_contours(slice_contours(diagonal), diagonal.shape), diagonal)
    assert slice_contours(np.zeros((4, 4), bool)) == []


@pytest.mark.parametrize("writer", [write_dicom_seg, write_rtstruct])
def test_dicom_outputs_need_a_dicom_input(writer, tmp_path: Path) -> None:
    volume = read_volume(NIBABEL_DATA / "standard.nii.gz")
    with pytest.raises(InvalidVolumeError, match="needs a DICOM input.*NIfTI"):
        writer(np.zeros(volume.shape, np.uint8), volume, tmp_path / "x.dcm", algorithm=ALGORITHM)
    assert not list(tmp_path.iterdir())
