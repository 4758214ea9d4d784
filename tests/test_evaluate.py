"""evaluate: the shared scoring path, per-slice rows, the competition score or why it was skipped, the CLI."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from segapp.evaluate import evaluate, format_table, main
from segapp.labels import FOREGROUND
from segapp.metrics.labelled_data import load_valid_set
from segapp.metrics.scoring import evaluate_slices

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_evaluate_uses_the_shared_scoring_path(phantom_data: Path, tiny_segmenter) -> None:
    result = evaluate(phantom_data / "valid", segmenter=tiny_segmenter, per_slice=True, progress=False)
    valid = load_valid_set(phantom_data / "valid")
    shared = evaluate_slices(tiny_segmenter, valid.scans, valid.masks)
    for key in ("dice", "iou", "hd95_px", "hd95_mm"):
        assert result[key] == pytest.approx(shared[key])
    # Per-slice rows average to the dataset figures.
    rows = result["per_slice"]
    assert [r["name"] for r in rows] == valid.names
    for label in FOREGROUND:
        assert np.mean([r[f"{label.name}_dice"] for r in rows]) == pytest.approx(result["dice"][label.name])
        assert np.mean([r[f"{label.name}_hd95_mm"] for r in rows]) == pytest.approx(
            result["hd95_mm"][label.name]
        )
    competition = result["competition"]
    assert competition["dice"] == pytest.approx(result["mean_foreground_dice"])
    assert 0 <= competition["score"] <= 1 and competition["slices"] == len(rows)
    table = format_table(result)
    assert "competition score" in table and "hd3d_norm" in table and "stomach" in table


def test_competition_is_skipped_when_names_do_not_form_volumes(
    phantom_data: Path, tiny_segmenter, tmp_path: Path
) -> None:
    split = tmp_path / "valid"
    for kind in ("images", "masks"):
        (split / kind).mkdir(parents=True)
        for i, path in enumerate(sorted((phantom_data / "valid" / kind).iterdir())):
            shutil.copy(path, split / kind / f"scan{i}.png")
    result = evaluate(split, segmenter=tiny_segmenter, progress=False)
    assert "does not name its case" in result["competition"]["skipped"]
    assert "competition score: not computed" in format_table(result)
    fast = evaluate(split, segmenter=tiny_segmenter, hausdorff=False, progress=False)
    assert "hd95_px" not in fast and "Hausdorff" in fast["competition"]["skipped"]


def test_cli_writes_json_and_per_slice_csv(
    phantom_data: Path, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, out_csv = tmp_path / "r.json", tmp_path / "slices.csv"
    argv = ["--data", str(phantom_data / "valid"), "--weights", str(tiny_model_dir), "--device", "cpu"]
    assert main([*argv, "--json", str(out_json), "--per-slice", str(out_csv), "--no-progress"]) == 0
    assert "competition score" in capsys.readouterr().out
    saved = json.loads(out_json.read_text())
    assert saved["slices"] == 4 and "score" in saved["competition"] and len(saved["per_slice"]) == 4
    with out_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and float(rows[0]["stomach_dice"]) == pytest.approx(
        saved["per_slice"][0]["stomach_dice"]
    )
    assert main(["--data", str(tmp_path / "missing"), "--no-progress"]) == 2
    assert "Missing folder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def segmenter_2_5d(tmp_path_factory: pytest.TempPathFactory):
    from helpers import save_tiny_model

    from segapp.inference.segmenter import Segmenter

    folder = save_tiny_model(tmp_path_factory.mktemp("models") / "ctx", context=(-1, 0, 1), seed=2)
    return Segmenter.from_pretrained(folder, device="cpu", max_batch_size=8)


def test_evaluate_on_volumes_with_a_2_5d_model(segmenter_2_5d, tmp_path: Path) -> None:
    from segapp.evaluate import evaluate_volumes
    from segapp.io.readers import read_volume
    from segapp.metrics.volume import volume_metrics
    from segapp.synthetic.volume import phantom_volume
    from segapp.synthetic.volume_files import write_nifti_pair

    image, labels = write_nifti_pair(phantom_volume(4, 9, 1, first=66, count=6), tmp_path, axcodes="RAS", name="v")
    result = evaluate_volumes(tmp_path, segmenter=segmenter_2_5d, progress=False, hausdorff=False)
    scan, truth = read_volume(image), read_volume(labels).voxels.astype(np.uint8)
    # Scored on predict_volume's masks, which read each slice with its neighbours.
    pred = segmenter_2_5d.predict_volume(scan).labels
    expected = volume_metrics(pred, truth, scan.spacing_mm, hausdorff=False)
    assert result["volumes_3d"]["per_volume"][0]["dice"] == expected["dice"]
    # Pooled 2D Dice over all slices of one volume is its 3D Dice.
    assert result["pooled_dice"] == pytest.approx(expected["dice"] | {"background": result["pooled_dice"]["background"]})
    assert result["slices"] == 6


def test_evaluate_on_named_slices_feeds_a_2_5d_model_their_neighbours(segmenter_2_5d, tmp_path: Path) -> None:
    from PIL import Image

    from segapp.io.casefolder import read_png_slices
    from segapp.io.image import save_mask_png
    from segapp.metrics.evaluation import per_slice_results
    from segapp.metrics.scoring import predict_slices
    from segapp.synthetic import generate_dataset

    generate_dataset(tmp_path / "raw", train=20, valid=0, seed=3, raw=True, progress=False)
    scans = sorted(sorted((tmp_path / "raw").rglob("scans"))[0].glob("*.png"))[:8]
    split = tmp_path / "split"
    for kind in ("images", "masks"):
        (split / kind).mkdir(parents=True)
    case_day = scans[0].parent.parent.name
    for path in scans:
        name = f"{case_day}_{path.name}"  # the prepared layout's name
        shutil.copy(path, split / "images" / name)
        save_mask_png(np.asarray(Image.open(path)).astype(np.uint16) % 4, split / "masks" / name)
    valid = load_valid_set(split)
    preds = predict_slices(segmenter_2_5d, valid.scans, places=valid.places)
    # The same masks as the case-day read as a volume (display order: highest slice number first).
    volume = read_png_slices(sorted((split / "images").iterdir()), max_voxels=10**8)
    labels = segmenter_2_5d.predict_volume(volume).labels[::-1]
    assert all(np.array_equal(p, v) for p, v in zip(preds, labels, strict=True))
    alone = predict_slices(segmenter_2_5d, valid.scans)  # no places: every slice by itself
    assert any(not np.array_equal(p, a) for p, a in zip(preds, alone))
    result = evaluate(split, segmenter=segmenter_2_5d, per_slice=True, progress=False, hausdorff=False)
    spacings = [scan.spacing_mm for scan in valid.scans]
    assert result["per_slice"] == per_slice_results(valid.names, preds, valid.masks, spacings, hausdorff=False)


def test_evaluate_on_volumes_gives_the_competition_score_of_the_volume_mode(segmenter_2_5d, tmp_path: Path,
                                                                             capsys) -> None:
    from segapp.evaluate import evaluate_volumes, main
    from segapp.io.readers import read_volume
    from segapp.metrics.competition import competition_score, consecutive_volumes
    from segapp.synthetic.volume_files import generate_volumes

    generate_volumes(tmp_path, cases=2, seed=8, file_format="dicom", slices=5)  # series folders + label NIfTIs
    result = evaluate_volumes(tmp_path, segmenter=segmenter_2_5d, progress=False)
    preds, truths, shapes = [], [], []
    for name in ("case1_day0", "case2_day0"):
        scan = read_volume(tmp_path / name)
        pred = segmenter_2_5d.predict_volume(scan).labels  # neighbours by index in the series
        preds += list(pred)
        truths += list(read_volume(tmp_path / f"{name}_labels.nii.gz").voxels.astype(np.uint8))
        shapes.append((name, pred.shape))
    assert result["competition"] == competition_score(preds, truths, volumes=consecutive_volumes(shapes))
    assert result["competition"]["volumes"] == 2 and 0 <= result["competition"]["score"] <= 1
    assert evaluate_volumes(tmp_path, segmenter=segmenter_2_5d, progress=False, hausdorff=False,
                            competition=True)["competition"] == {"skipped": "needs the Hausdorff distance (drop --no-hausdorff)"}
    out = tmp_path / "r.json"
    weights = str(segmenter_2_5d.loaded.source)
    assert main(["--data", str(tmp_path), "--weights", weights, "--device", "cpu", "--no-progress", "--json", str(out)]) == 0
    assert "competition score" in capsys.readouterr().out
    assert json.loads(out.read_text())["competition"]["score"] == pytest.approx(result["competition"]["score"])
    assert main(["--data", str(tmp_path), "--weights", weights, "--device", "cpu", "--no-progress", "--no-competition",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["competition"] == {"skipped": "not asked for"}
