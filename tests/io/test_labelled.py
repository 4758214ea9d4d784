"""Labelled volumes on disk: the three layouts found, the labels read on the scan's grid, bad pairs refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segapp.io.labelled import find_labelled_volumes, read_labelled_volume
from segapp.io.volume import InvalidVolumeError
from segapp.synthetic.volume import phantom_volume
from segapp.synthetic.volume_files import generate_volumes, write_nifti_pair


def test_the_three_layouts_are_found_and_strays_skipped(tmp_path: Path) -> None:
    generate_volumes(tmp_path, cases=1, seed=4, file_format="nifti", slices=3)  # case1_day0_image + _labels
    generate_volumes(tmp_path / "dcm", cases=1, seed=4, file_format="dicom", slices=3)
    shutil.move(tmp_path / "dcm" / "case1_day0", tmp_path / "series")  # NAME/ + NAME_labels.nii.gz
    shutil.move(tmp_path / "dcm" / "case1_day0_labels.nii.gz", tmp_path / "series_labels.nii.gz")
    for kind in ("imagesTr", "labelsTr"):
        (tmp_path / kind).mkdir()
    shutil.copy(tmp_path / "case1_day0_image.nii.gz", tmp_path / "imagesTr" / "nn_0000.nii.gz")
    shutil.copy(tmp_path / "case1_day0_labels.nii.gz", tmp_path / "labelsTr" / "nn.nii.gz")
    shutil.copy(tmp_path / "case1_day0_labels.nii.gz", tmp_path / "lonely_labels.nii.gz")  # no scan
    shutil.copy(tmp_path / "case1_day0_image.nii.gz", tmp_path / "unlabelled_image.nii.gz")  # no labels
    found = find_labelled_volumes(tmp_path)
    assert [(f.name, f.image.name, f.labels.name) for f in found] == [
        ("case1_day0", "case1_day0_image.nii.gz", "case1_day0_labels.nii.gz"),
        ("nn", "nn_0000.nii.gz", "nn.nii.gz"),
        ("series", "series", "series_labels.nii.gz"),
    ]
    assert find_labelled_volumes(tmp_path / "nothing") == []


@pytest.mark.parametrize("file_format", ["nifti", "dicom"])
def test_labels_come_back_voxel_for_voxel_with_the_scan(tmp_path: Path, file_format: str) -> None:
    # Transposed, flipped DICOM storage: the labels must still land on the display grid.
    generate_volumes(tmp_path, cases=1, seed=6, file_format=file_format, slices=4, orientation="transposed-flip-rows")
    (files,) = find_labelled_volumes(tmp_path)
    scan, labels = read_labelled_volume(files)
    truth = phantom_volume(6, 1, 0, first=71, count=4)
    assert labels.dtype == np.uint8 and labels.shape == scan.shape
    assert np.array_equal(labels, truth.labels) and labels.max() > 0


def test_bad_pairs_are_refused_with_the_reason(tmp_path: Path) -> None:
    image, labels = write_nifti_pair(phantom_volume(5, 1, 0, first=60, count=2), tmp_path, name="p")
    original = nib.load(labels)
    data = np.asarray(original.dataobj).copy()
    (files,) = find_labelled_volumes(tmp_path)
    data[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(data, original.affine), labels)
    with pytest.raises(InvalidVolumeError, match="class ids 0..3"):
        read_labelled_volume(files)
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 2), np.uint8), original.affine), labels)
    with pytest.raises(InvalidVolumeError, match="not on the scan's grid"):
        read_labelled_volume(files)
    labels.write_bytes(b"not a nifti")
    with pytest.raises(InvalidVolumeError):
        read_labelled_volume(files)
