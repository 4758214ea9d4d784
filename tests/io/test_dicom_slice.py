"""One DICOM file as a slice: read_image dispatches files with the DICOM preamble to the one DICOM
reader (segapp.io.dicom.read_dicom_slice); spacing from the header, refusals readable, no patient data."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from segapp.io.image import InvalidImageError, minmax_uint8
from segapp.io.readers import read_image, read_volume

MR_SMALL = get_testdata_file("MR_small.dcm")  # a real 64 x 64 MR slice, PixelSpacing 0.3125 mm
PATIENT = "Doe^Jane"


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from segapp.synthetic.volume import phantom_volume
    from segapp.synthetic.volume_files import write_dicom_series, write_enhanced_mr

    root = tmp_path_factory.mktemp("dicom-slice")
    volume = phantom_volume(5, 2, 1, first=70, count=3)
    return {
        "standard": write_dicom_series(volume, root / "standard")[1],
        "rotated": write_dicom_series(volume, root / "rotated", orientation="transposed-rotated-180")[1],
        "enhanced": write_enhanced_mr(volume, root / "enhanced.dcm"),
    }


def test_a_real_mr_file_reads_with_its_header_spacing() -> None:
    scan = read_image(MR_SMALL)
    stored = pydicom.dcmread(MR_SMALL).pixel_array
    assert np.array_equal(scan.pixels, minmax_uint8(stored))
    assert scan.spacing_mm == (0.3125, 0.3125) and scan.bit_depth == 16 and scan.original_mode == "DICOM MR"
    # bytes and file objects take the same path; a typed spacing still overrides the header's.
    assert np.array_equal(read_image(Path(MR_SMALL).read_bytes()).pixels, scan.pixels)
    with open(MR_SMALL, "rb") as stream:
        assert read_image(stream).spacing_mm == (0.3125, 0.3125)
    assert read_image(MR_SMALL, spacing_mm=(1.0, 2.0)).spacing_mm == (1.0, 2.0)


@pytest.mark.parametrize("orientation", ["standard", "rotated"])
def test_a_phantom_slice_is_the_volume_readers_slice(phantom_files, orientation: str) -> None:
    """However the file stores its rows and columns, the slice is the series reader's display slice."""
    path = phantom_files[orientation]
    scan = read_image(path)
    volume = read_volume(path)
    assert np.array_equal(scan.pixels, volume.slices_uint8()[0])
    assert scan.spacing_mm == pytest.approx(volume.spacing_mm[1:])
    header = pydicom.dcmread(path, stop_before_pixels=True)
    assert sorted(scan.spacing_mm) == pytest.approx(sorted(float(v) for v in header.PixelSpacing))


def test_a_multi_frame_file_is_sent_to_the_volume_readers(phantom_files) -> None:
    with pytest.raises(InvalidImageError, match=r"3 frames.*Volume tab"):
        read_image(phantom_files["enhanced"])


def test_damaged_and_non_image_dicom_are_refused_without_patient_data(tmp_path: Path) -> None:
    ds = pydicom.dcmread(MR_SMALL)
    ds.PatientName = PATIENT
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    whole = buffer.getvalue()
    messages = []
    # Cut in the pixel data: the header reads, the pixels do not.
    with pytest.raises(InvalidImageError, match="pixel data cannot be read") as cut:
        read_image(whole[: len(whole) - 1000])
    messages.append(str(cut.value))
    # Cut in the header, just after the preamble.
    with pytest.raises(InvalidImageError, match="DICOM file is damaged or incomplete") as header:
        read_image(whole[:140])
    messages.append(str(header.value))
    # A segmentation object holds no image to segment.
    ds.Modality = "SEG"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(InvalidImageError, match="SEG object, not an image") as seg:
        read_image(buffer.getvalue())
    messages.append(str(seg.value))
    assert not any("Doe" in m or "Jane" in m for m in messages)


def test_a_slice_that_is_not_axial_is_refused() -> None:
    ds = pydicom.dcmread(MR_SMALL)
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]  # sagittal
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(InvalidImageError, match="sagittal"):
        read_image(buffer.getvalue())


def test_a_file_without_geometry_reads_as_stored() -> None:
    ds = pydicom.dcmread(MR_SMALL)
    del ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    scan = read_image(buffer.getvalue(), name="case1_day1_slice_0001_64_64_1.50_1.50.png")
    assert np.array_equal(scan.pixels, minmax_uint8(ds.pixel_array))
    assert scan.spacing_mm == (1.5, 1.5)  # no header spacing: the name's
