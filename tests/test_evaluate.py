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
from segapp.metrics.scoring import evaluate_slices
from segapp.training.data import load_valid_set

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
