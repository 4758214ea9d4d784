"""3D Dice and HD95 in mm with the true voxel spacing, and evaluate on labelled volumes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from segapp.evaluate import evaluate, evaluate_volumes, main
from segapp.metrics.volume import case_day_metrics, dice_3d, hd95_mm, volume_metrics
from segapp.synthetic.volume import phantom_volume
from segapp.synthetic.volume_files import write_nifti_pair


def test_hd95_counts_the_slice_spacing() -> None:
    true = np.zeros((10, 8, 8), bool)
    true[2, 2:6, 2:6] = True
    pred = np.zeros_like(true)
    pred[5, 2:6, 2:6] = True  # the same square three slices up
    # Every surface voxel is 3 slices from its twin: 3 x 2.5 mm, whatever the in-plane spacing.
    assert hd95_mm(pred, true, (2.5, 1.0, 1.0)) == pytest.approx(7.5)
    assert hd95_mm(pred, true, (1.0, 0.5, 0.5)) == pytest.approx(3.0)
    assert hd95_mm(true, true, (3.0, 1.5, 1.5)) == 0.0


def test_empty_conventions() -> None:
    empty = np.zeros((4, 5, 6), bool)
    some = empty.copy()
    some[1, 1, 1] = True
    assert hd95_mm(empty, empty, (3, 2, 1)) == 0.0 and dice_3d(empty, empty) == 1.0
    assert hd95_mm(some, empty, (3, 2, 1)) == pytest.approx(math.sqrt(12**2 + 10**2 + 6**2))
    assert dice_3d(some, empty) == 0.0


def test_volume_metrics_by_hand() -> None:
    true = np.zeros((3, 4, 4), np.uint8)
    true[1, :2, :2] = 1  # 4 voxels
    pred = true.copy()
    pred[1, 2, 2] = 1  # one extra
    result = volume_metrics(pred, true, (3.0, 1.0, 2.0))
    assert result["dice"]["stomach"] == pytest.approx(2 * 4 / 9)
    assert result["dice"]["small_bowel"] == 1.0  # absent from both
    assert result["volume_ml"]["stomach"] == {"pred": pytest.approx(5 * 0.006), "true": pytest.approx(4 * 0.006)}
    with pytest.raises(ValueError, match="differ in shape"):
        volume_metrics(pred[:2], true, (1, 1, 1))


def test_case_day_stacking_keeps_gaps() -> None:
    names = [f"case1_day2_slice_{n:04d}_8_8_1.00_1.00.png" for n in (10, 13)]
    square = np.zeros((8, 8), np.uint8)
    square[2:6, 2:6] = 1
    preds, masks = [square, np.zeros_like(square)], [np.zeros_like(square), square]
    result = case_day_metrics(preds, masks, names, [(1.0, 1.0)] * 2, slice_mm=3.0)
    assert result["volumes"] == 1 and result["hd95_mm"]["stomach"] == pytest.approx(9.0)  # 3 slices x 3 mm


def test_evaluate_reports_3d_beside_2d(tiny_segmenter, phantom_data: Path) -> None:
    result = evaluate(phantom_data / "valid", segmenter=tiny_segmenter, progress=False)
    assert "dice" in result and result["volumes_3d"]["volumes"] >= 1
    assert set(result["volumes_3d"]["hd95_mm"]) == {"stomach", "small_bowel", "large_bowel"}


def test_evaluate_on_labelled_nifti_volumes(tiny_segmenter, tmp_path: Path, capsys) -> None:
    for case in (1, 2):
        write_nifti_pair(phantom_volume(5, case, 0, first=60, count=3), tmp_path, axcodes="RAS", name=f"p{case}")
    result = evaluate_volumes(tmp_path, segmenter=tiny_segmenter, progress=False)
    assert result["slices"] == 6 and result["volumes_3d"]["volumes"] == 2
    assert [v["name"] for v in result["volumes_3d"]["per_volume"]] == ["p1", "p2"]
    # A perfect predictor would score 1: check the scoring itself on the truth.
    truth = phantom_volume(5, 1, 0, first=60, count=3)
    assert volume_metrics(truth.labels, truth.labels, truth.spacing_mm)["dice"]["stomach"] == 1.0
    assert main(["--data", str(tmp_path), "--weights", str(tiny_segmenter.loaded.source), "--device", "cpu",
                 "--no-progress", "--json", str(tmp_path / "r.json")]) == 0
    assert "3D, 2 volume(s)" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["volumes_3d"]["volumes"] == 2


def test_a_label_volume_off_the_image_grid_is_refused(tiny_segmenter, tmp_path: Path) -> None:
    import nibabel as nib

    write_nifti_pair(phantom_volume(5, 1, 0, first=60, count=2), tmp_path, name="p")
    labels = nib.load(tmp_path / "p_labels.nii.gz")
    affine = labels.affine.copy()
    affine[0, 3] += 5  # 5 mm off
    nib.save(nib.Nifti1Image(np.asarray(labels.dataobj), affine), tmp_path / "p_labels.nii.gz")
    from segapp.metrics.labelled_data import DataError

    with pytest.raises(DataError, match="not on the scan's grid"):
        evaluate_volumes(tmp_path, segmenter=tiny_segmenter, progress=False)
