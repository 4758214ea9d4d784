"""Phantom volumes as DICOM series and NIfTI pairs: every geometry reads back to the same organs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from segapp.io.readers import read_volume
from segapp.synthetic import dataset_slice
from segapp.synthetic.volume import phantom_volume
from segapp.synthetic.volume_files import ORIENTATIONS, write_dicom_series, write_nifti_pair


@pytest.fixture(scope="module")
def volume():
    return phantom_volume(3, 7, 2, first=60, count=5)


def test_a_phantom_volume_is_the_data_set_slices_feet_first(volume) -> None:
    assert volume.image16.shape[0] == 5 and volume.slice_numbers == (64, 63, 62, 61, 60)
    for k, number in enumerate(volume.slice_numbers):
        alone = dataset_slice(3, 7, 2, number)
        assert np.array_equal(volume.image16[k], alone.image16) and np.array_equal(volume.labels[k], alone.mask)
    assert volume.labels.any()
    with pytest.raises(ValueError, match="outside 1..144"):
        phantom_volume(3, 7, 2, first=140, count=10)


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
@pytest.mark.parametrize("reverse", [False, True])
def test_every_dicom_geometry_reads_back_to_the_display_volume(volume, tmp_path: Path, orientation: str, reverse: bool) -> None:
    write_dicom_series(volume, tmp_path, orientation=orientation, reverse=reverse)
    scan = read_volume(tmp_path)
    assert np.array_equal(scan.voxels, volume.image16)
    assert scan.spacing_mm == pytest.approx(volume.spacing_mm)
    # Patient coordinates: display voxel (k, i, j) at (j dx, i dy, k dz) in LPS, whatever the storage.
    expected = np.diag([*volume.spacing_mm, 1.0])[[2, 1, 0, 3]]
    assert np.allclose(scan.affine_lps, expected, atol=1e-3)


@pytest.mark.parametrize("axcodes", ["LPS", "RAS", "LAS", "PLS", "RPI"])
def test_every_nifti_axis_order_reads_back_to_the_display_volume(volume, tmp_path: Path, axcodes: str) -> None:
    image, labels = write_nifti_pair(volume, tmp_path, axcodes=axcodes)
    assert np.array_equal(read_volume(image).voxels, volume.image16)
    assert np.array_equal(read_volume(labels).voxels, volume.labels)


@pytest.mark.parametrize("style", ["bssfp", "t2", "t1"])
def test_the_series_passes_the_dicom_validator(tmp_path: Path, style: str) -> None:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    volume = phantom_volume(3, 7, 2, first=60, count=2, style=style)
    files = write_dicom_series(volume, tmp_path, orientation="transposed-rotated-180", reverse=True)
    result = subprocess.run(["dciodvfy", str(files[0])], capture_output=True, text=True, timeout=60)
    assert [line for line in result.stderr.splitlines() if line.startswith(("Error", "Warning"))] == []


def test_the_series_header_names_the_contrast_family(tmp_path: Path) -> None:
    import pydicom

    headers = {}
    for style in ("bssfp", "t2", "t1"):
        volume = phantom_volume(3, 7, 2, first=60, count=1, style=style)
        assert volume.style == style
        (path,) = write_dicom_series(volume, tmp_path / style)
        headers[style] = pydicom.dcmread(path)
    assert headers["bssfp"].SeriesDescription.startswith("T2 TRUFI")
    assert headers["t2"].SeriesDescription.startswith("T2 HASTE") and headers["t2"].ScanningSequence == "SE"
    assert headers["t1"].SeriesDescription.startswith("T1 VIBE") and float(headers["t1"].FlipAngle) < 20


def test_the_made_up_patient_never_reaches_the_description(volume, tmp_path: Path) -> None:
    write_dicom_series(volume, tmp_path)
    scan = read_volume(tmp_path)
    assert scan.headers[0].PatientName == "Phantom^Case7"  # the export carries it, as real ones do
    text = repr(scan.description) + repr(scan.notes)
    assert "Phantom^" not in text and "PH00007" not in text and str(scan.headers[0].PatientBirthDate) not in text


def test_phantom_command_writes_volumes(tmp_path: Path, capsys) -> None:
    from segapp.phantom import main

    assert main(["--out", str(tmp_path / "d"), "--format", "dicom", "--cases", "2", "--slices", "3",
                 "--orientation", "mixed", "--seed", "1"]) == 0
    for case in (1, 2):
        scan = read_volume(tmp_path / "d" / f"case{case}_day0")
        labels = read_volume(tmp_path / "d" / f"case{case}_day0_labels.nii.gz")
        truth = phantom_volume(1, case, 0, first=71, count=3)
        assert np.array_equal(scan.voxels, truth.image16) and np.array_equal(labels.voxels, truth.labels)
    assert main(["--out", str(tmp_path / "n"), "--format", "nifti", "--cases", "1", "--slices", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "n").iterdir()) == ["case1_day0_image.nii.gz", "case1_day0_labels.nii.gz"]
    assert main(["--out", str(tmp_path / "n"), "--format", "nifti", "--cases", "1"]) == 2  # not empty
    assert "wrote 2 phantom volume(s) as dicom" in capsys.readouterr().out


@pytest.mark.parametrize("orientation", ["standard", "transposed-flip-rows"])
def test_an_enhanced_multi_frame_file_reads_like_the_series(volume, tmp_path: Path, orientation: str) -> None:
    from segapp.synthetic.volume_files import write_enhanced_mr

    path = write_enhanced_mr(volume, tmp_path / "enhanced.dcm", orientation=orientation, frame_order=[3, 0, 4, 1, 2])
    scan = read_volume(path)
    assert np.array_equal(scan.voxels, volume.image16) and scan.description["multi_frame"] is True
    assert scan.spacing_mm == pytest.approx(volume.spacing_mm)
    # DICOM outputs need one source image per frame: refused clearly for now.
    from segapp.io.dicom_seg import Algorithm, write_dicom_seg
    from segapp.io.volume import InvalidVolumeError

    with pytest.raises(InvalidVolumeError, match="enhanced multi-frame"):
        write_dicom_seg(volume.labels, scan, tmp_path / "seg.dcm", algorithm=Algorithm("m", "0", "0"))
