"""The three tools chained on the phantom's raw competition layout: prepare -> train -> predict -> evaluate."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from segapp.evaluate import main as evaluate_main
from segapp.io.naming import parse_slice_name, slice_id
from segapp.io.rle import rle_decode
from segapp.metrics.labelled_data import find_pairs, read_mask
from segapp.predict import main as predict_main
from segapp.prepare import main as prepare_main
from segapp.synthetic import generate_dataset
from segapp.train import main as train_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_prepare_train_predict_evaluate(tmp_path: Path, tiny_model_dir: Path) -> None:
    # 40 raw slices: two patients with one scan day each (seed 0), every slice with organs.
    raw = tmp_path / "raw"
    generate_dataset(raw, train=40, valid=0, seed=0, raw=True, progress=False)
    with (raw / "train.csv").open() as f:
        truth = {(row["id"], row["class"]): row["segmentation"] for row in csv.DictReader(f)}

    # Prepare: one patient per side; the masks are the CSV's codes as class ids.
    data = tmp_path / "data"
    assert (
        prepare_main(["--raw", str(raw), "--out", str(data), "--valid-fraction", "0.5", "--no-progress"]) == 0
    )
    summary = json.loads((data / "prepare_summary.json").read_text())
    train_cases, valid_cases = (set(summary["splits"][s]["cases"]) for s in ("train", "valid"))
    assert train_cases and valid_cases and not train_cases & valid_cases
    valid_pairs = find_pairs(data / "valid")
    assert {parse_slice_name(p.image.name).case for p in valid_pairs} == valid_cases
    for pair in valid_pairs[::4]:
        mask = read_mask(pair.mask)
        codes = {
            class_id: rle_decode(truth[(slice_id(pair.image.name), organ)], mask.shape)
            for class_id, organ in ((1, "stomach"), (2, "small_bowel"), (3, "large_bowel"))
        }
        claims = sum(code.astype(int) for code in codes.values())
        assert np.all(mask[claims == 0] == 0)
        for class_id, code in codes.items():  # pixels of one organ only: that organ's id
            assert np.all(mask[code & (claims == 1)] == class_id)

    # Train two steps from the tiny model
    run = tmp_path / "run"
    argv = ["--data", str(data), "--out", str(run), "--base", str(tiny_model_dir), "--image-size", "64"]
    assert (
        train_main([*argv, "--max-steps", "2", "--no-progress", "--no-hausdorff", "--batch-size", "2"]) == 0
    )
    weights = run / "best"

    # Predict on the validation images: masks, submission, stats
    out = tmp_path / "pred"
    common = ["--weights", str(weights), "--device", "cpu", "--no-progress"]
    assert predict_main([str(data / "valid" / "images"), "--out", str(out), "--format", "all", *common]) == 0
    masks = sorted((out / "masks").iterdir())
    assert [p.name for p in masks] == [p.image.name for p in valid_pairs]
    with (out / "submission.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * len(valid_pairs)
    assert {row["id"] for row in rows} == {slice_id(p.image.name) for p in valid_pairs}
    first = read_mask(masks[0])
    first_rows = [r for r in rows if r["id"] == slice_id(masks[0].name)]
    for row in first_rows:
        class_id = {"stomach": 1, "small_bowel": 2, "large_bowel": 3}[row["class"]]
        assert np.array_equal(rle_decode(row["predicted"], first.shape), first == class_id)

    # Evaluate: the same masks, scored per class and with the competition score over one volume
    report = tmp_path / "eval.json"
    assert evaluate_main(["--data", str(data / "valid"), *common, "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["slices"] == len(valid_pairs)
    assert result["competition"]["volumes"] == len(valid_cases)
    assert 0.0 <= result["competition"]["score"] <= 1.0
    assert result["competition"]["dice"] == pytest.approx(result["mean_foreground_dice"])
