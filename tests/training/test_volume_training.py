"""Training on labelled volumes: slices fed as the volume mode feeds them, 2.5D neighbours by index in
the volume, NIfTI pairs and DICOM series alike, and the trained 2.5D model evaluated on volumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import save_tiny_model

from segapp.io.readers import read_volume
from segapp.metrics.labelled_data import DataError, is_volume_split, load_valid_set
from segapp.model.processing import ProcessingConfig, resize_gray
from segapp.synthetic.volume_files import generate_volumes
from segapp.train import main
from segapp.training.data import load_train_set


@pytest.fixture(scope="module")
def volume_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/: two NIfTI pairs of 5 slices; valid/: one DICOM series of 4 slices with its label NIfTI."""
    root = tmp_path_factory.mktemp("volumes")
    generate_volumes(root / "train", cases=2, seed=12, file_format="nifti", slices=5)
    generate_volumes(root / "valid", cases=1, seed=13, file_format="dicom", slices=4, orientation="flip-rows")
    return root


def test_every_slice_is_stored_once_with_neighbours_by_index(volume_data: Path) -> None:
    config = ProcessingConfig(height=32, width=32, context_offsets=(-2, 0, 1))
    assert is_volume_split(volume_data / "train") and not is_volume_split(volume_data / "nothing")
    train = load_train_set(volume_data / "train", config)
    assert train.images.shape == (10, 32, 32) and train.masks.shape == (10, 32, 32)
    # Volume after volume; offsets count in display order, clamped at each volume's ends.
    expected = [[max(0, k - 2), k, min(4, k + 1)] for k in range(5)]
    assert train.neighbours.tolist() == expected + [[5 + a, 5 + b, 5 + c] for a, b, c in expected]
    # Each slice is what the volume mode feeds the model: slices_uint8, then the one resize.
    scan = read_volume(volume_data / "train" / "case1_day0_image.nii.gz")
    plane = scan.slices_uint8()[3]
    want = resize_gray([plane], config)[0, 0].round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(train.images[3], want)
    labels = read_volume(volume_data / "train" / "case1_day0_labels.nii.gz").voxels.astype(np.uint8)
    assert train.masks[:5].sum() > 0 and set(np.unique(train.masks[:5].numpy())) <= set(np.unique(labels))


def test_validation_slices_keep_their_size_and_place(volume_data: Path) -> None:
    valid = load_valid_set(volume_data / "valid")
    scan = read_volume(volume_data / "valid" / "case1_day0")
    labels = read_volume(volume_data / "valid" / "case1_day0_labels.nii.gz").voxels
    assert len(valid) == 4 and valid.names == [f"case1_day0:{k}" for k in range(4)]
    assert valid.places == [("case1_day0", k) for k in range(4)]
    for k in range(4):
        assert np.array_equal(valid.scans[k].pixels, scan.slices_uint8()[k])
        assert np.array_equal(valid.masks[k], labels[k])
        assert valid.scans[k].spacing_mm == pytest.approx(scan.spacing_mm[1:])


def test_a_bad_volume_is_named_in_the_error(tmp_path: Path) -> None:
    generate_volumes(tmp_path, cases=1, seed=2, file_format="nifti", slices=2)
    (tmp_path / "case1_day0_labels.nii.gz").write_bytes(b"broken")
    with pytest.raises(DataError, match="Volume case1_day0: "):
        load_valid_set(tmp_path)
    with pytest.raises(DataError, match="or labelled volumes"):
        load_train_set(tmp_path / "empty", ProcessingConfig(16, 16))


def test_train_2_5d_on_volumes_then_evaluate_on_volumes(volume_data: Path, tmp_path: Path, capsys) -> None:
    from segapp.evaluate import evaluate_volumes

    base = save_tiny_model(tmp_path / "base")
    out = tmp_path / "run"
    argv = ["--data", str(volume_data), "--out", str(out), "--base", str(base), "--context", "-1,0,1",
            "--image-size", "64", "--batch-size", "4", "--grad-accum", "1", "--max-steps", "2", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "data: 10 training slices" in printed and "4 validation slices" in printed
    assert "10 of 10 training slices have a neighbour" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["last_validation"]["slices"] == 4
    assert json.loads((out / "best" / "preprocessor_config.json").read_text())["segapp_context_offsets"] == [-1, 0, 1]
    result = evaluate_volumes(volume_data / "valid", weights=str(out / "best"), device="cpu", progress=False)
    assert result["slices"] == 4 and result["volumes_3d"]["volumes"] == 1 and "score" in result["competition"]
    # Validation during training scored the slices as the volume mode segments them (neighbours included).
    assert summary["last_validation"]["mean_foreground_dice"] == pytest.approx(result["mean_foreground_dice"])
