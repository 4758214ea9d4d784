"""The 3D clean-up travels with the model like the 2D one, and is tuned on labelled volumes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from segapp.inference.segmenter import Segmenter
from segapp.model.processing import MIN_COMPONENT_KEY, ProcessingConfig
from segapp.synthetic.volume import phantom_volume
from segapp.synthetic.volume_files import write_nifti_pair
from segapp.tune_postprocessing import main, tune_volumes


def test_min_component_round_trips_and_is_checked(tmp_path: Path) -> None:
    ProcessingConfig(min_component_ml=1.5).save(tmp_path)
    assert json.loads((tmp_path / "preprocessor_config.json").read_text())[MIN_COMPONENT_KEY] == 1.5
    assert ProcessingConfig.from_folder(tmp_path).min_component_ml == 1.5
    assert MIN_COMPONENT_KEY not in ProcessingConfig().to_dict()  # off: not written
    for bad in (-1, "2", True):
        with pytest.raises(ValueError, match=MIN_COMPONENT_KEY):
            ProcessingConfig.from_dict({MIN_COMPONENT_KEY: bad})


def test_tune_on_volumes_and_write(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    data = tmp_path / "volumes"
    for case in (1, 2):
        write_nifti_pair(phantom_volume(6, case, 0, first=64, count=3), data, name=f"v{case}")
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    result = tune_volumes(str(model), data, candidates=[0, 0.5, 1e6], device="cpu")
    assert result["volumes"] == 2 and [r["min_component_ml"] for r in result["results"]] == [0, 0.5, 1e6]
    assert result["best"] in (0, 0.5, 1e6) and result["current"] == 0
    # 1e6 mL removes every component: an organ's 3D Dice is then 1 where the truth lacks it too, else 0.
    from segapp.labels import FOREGROUND

    truths = [phantom_volume(6, case, 0, first=64, count=3).labels for case in (1, 2)]
    for label in FOREGROUND:
        expected = np.mean([0.0 if (t == label.id).any() else 1.0 for t in truths])
        assert result["results"][2]["dice"][label.name] == pytest.approx(expected)
    assert main(["--weights", str(model), "--data", str(data), "--volumes", "--candidates", "0,1",
                 "--device", "cpu", "--write"]) == 0
    out = capsys.readouterr().out
    assert "min component mL" in out and "wrote min_component_ml=" in out
    best = float(out.split("wrote min_component_ml=")[1].split()[0])
    segmenter = Segmenter.from_pretrained(model, device="cpu")
    assert segmenter.processing.min_component_ml == best


def test_predict_volume_applies_the_stored_clean_up(tiny_model_dir: Path, tmp_path: Path) -> None:
    from segapp.io.readers import read_volume

    write_nifti_pair(phantom_volume(6, 1, 0, first=64, count=3), tmp_path, name="v")
    volume = read_volume(tmp_path / "v_image.nii.gz")
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    plain = Segmenter.from_pretrained(model, device="cpu").predict_volume(volume).labels
    from dataclasses import replace

    replace(ProcessingConfig.from_folder(model), min_component_ml=1e6).save(model)
    cleaned = Segmenter.from_pretrained(model, device="cpu").predict_volume(volume).labels
    assert not cleaned.any()  # every component is under 1e6 mL
    assert plain.any()
    assert np.array_equal(Segmenter.from_pretrained(model, device="cpu").predict_volume(volume, min_component_ml=0).labels, plain)


def test_the_2d_clean_up_is_tuned_on_the_slices_of_volumes(tiny_model_dir: Path, tmp_path: Path) -> None:
    from segapp.metrics.labelled_data import load_valid_set
    from segapp.metrics.scoring import score_slices
    from segapp.tune_postprocessing import tune

    for case in (1, 2):
        write_nifti_pair(phantom_volume(7, case, 0, first=60, count=3), tmp_path, name=f"v{case}")
    result = tune(str(tiny_model_dir), tmp_path, candidates=[0, 10**6], device="cpu")
    assert result["slices"] == 6 and [r["min_region_px"] for r in result["results"]] == [0, 10**6]
    # Size 10**6 removes every region, so that row scores all-background masks against the truth.
    valid = load_valid_set(tmp_path)
    empty = [np.zeros_like(m) for m in valid.masks]
    expected = score_slices(empty, valid.masks, [s.spacing_mm for s in valid.scans], hausdorff=False)
    assert result["results"][1]["mean_foreground_dice"] == pytest.approx(expected["mean_foreground_dice"])
