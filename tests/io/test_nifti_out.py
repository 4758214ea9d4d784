"""Label volumes out as NIfTI, with their tables: the same world coordinates as the scan."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segapp.io.label_table import write_label_tables
from segapp.io.nifti import write_label_nifti
from segapp.io.readers import read_volume
from segapp.labels import LABELS

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"


def _labels_for(volume) -> np.ndarray:
    """A label volume that differs along every axis: class = (k + i + 2 j) mod 4."""
    k, i, j = np.indices(volume.shape)
    return ((k + i + 2 * j) % 4).astype(np.uint8)


def _world_of_every_voxel(image: nib.Nifti1Image) -> dict[tuple, int]:
    data = np.asarray(image.dataobj)
    index = np.indices(data.shape).reshape(3, -1)
    world = (image.affine @ np.vstack([index, np.ones(index.shape[1])]))[:3]
    return {tuple(np.round(w, 3)): int(v) for w, v in zip(world.T, data.reshape(-1))}


@pytest.mark.parametrize("name", ["anatomical.nii", "reoriented_anat_moved.nii"])
def test_nifti_in_nifti_out_keeps_the_input_grid(tmp_path: Path, name: str) -> None:
    source = nib.load(NIBABEL_DATA / name)
    volume = read_volume(NIBABEL_DATA / name)
    labels = _labels_for(volume)
    out = write_label_nifti(labels, volume, tmp_path / "seg.nii.gz")
    written = nib.load(out)
    assert written.shape == source.shape[:3] and written.get_data_dtype() == np.uint8
    assert np.allclose(written.affine, source.affine)
    assert int(written.header["qform_code"]) == 1 and int(written.header["sform_code"]) == 1
    # Reading the written labels back gives the same display-order volume.
    assert np.array_equal(read_volume(out).voxels, labels)


def test_dicom_in_nifti_out_puts_each_label_at_its_patient_position(tmp_path: Path) -> None:
    from test_volume import _series  # the series writer of the reader's tests

    _series(tmp_path / "series", slices=4, flip_rows=True, reverse=True)
    volume = read_volume(tmp_path / "series")
    labels = _labels_for(volume)
    written = nib.load(write_label_nifti(labels, volume, tmp_path / "seg.nii.gz"))
    world = _world_of_every_voxel(written)
    rng = np.random.default_rng(0)
    for _ in range(50):
        k, i, j = (int(rng.integers(0, s)) for s in volume.shape)
        ras = volume.affine_ras @ [k, i, j, 1]
        assert world[tuple(np.round(ras[:3], 3))] == labels[k, i, j]


def test_label_shape_must_match(tmp_path: Path) -> None:
    volume = read_volume(NIBABEL_DATA / "standard.nii.gz")
    with pytest.raises(ValueError, match="do not match"):
        write_label_nifti(np.zeros((1, 2, 3), np.uint8), volume, tmp_path / "x.nii.gz")
    assert not list(tmp_path.iterdir())


def test_label_tables(tmp_path: Path) -> None:
    paths = write_label_tables(tmp_path)
    table = json.loads((tmp_path / "labels.json").read_text())
    assert [entry["name"] for entry in table["labels"]] == [label.name for label in LABELS]
    assert table["labels"][1]["snomed"] == {"code": "69695003", "meaning": "Stomach"}
    rows = [line.split() for line in (tmp_path / "labels.itksnap.txt").read_text().splitlines() if not line.startswith("#")]
    assert [(int(r[0]), tuple(map(int, r[1:4]))) for r in rows] == [(label.id, label.color) for label in LABELS]
    assert rows[0][4] == "0" and rows[1][4] == "1"  # background transparent
    slicer = [line.split() for line in (tmp_path / "labels.ctbl").read_text().splitlines() if not line.startswith("#")]
    assert [r[1] for r in slicer] == [label.name for label in LABELS]
    assert len(paths) == 3
