"""Small-region clean-up: the rule, where it is stored, who applies it, and how it is tuned."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from segapp.model.processing import MIN_REGION_KEY, PREPROCESSOR_FILE, ProcessingConfig, remove_small_regions


def _pattern() -> np.ndarray:
    mask = np.zeros((40, 40), dtype=np.uint8)
    mask[2:12, 2:12] = 1  # 100 px stomach
    mask[20:23, 20:23] = 1  # 9 px stomach island
    mask[30, 30] = 2  # 1 px + diagonal neighbour = one 2 px region (8-connected)
    mask[31, 31] = 2
    mask[12:16, 2:12] = 3  # 40 px large bowel touching the stomach: judged on its own
    return mask


def test_small_regions_become_background_per_class_with_8_connectivity() -> None:
    mask = _pattern()
    before = mask.copy()
    out = remove_small_regions(mask, 10)
    assert np.array_equal(mask, before), "the input is not modified"
    assert out.dtype == np.uint8 and out.shape == mask.shape
    assert (out[20:23, 20:23] == 0).all()  # 9 px < 10: removed
    assert (out[30, 30] == 0) and (out[31, 31] == 0)  # 2 px diagonal pair: removed together
    assert (out[2:12, 2:12] == 1).all() and (out[12:16, 2:12] == 3).all()
    # Exactly the removed regions changed, and only to background.
    changed = out != mask
    assert changed.sum() == 9 + 2 and (out[changed] == 0).all()
    # The diagonal pair counts as one 2 px region: size 2 keeps it, 3 removes it.
    assert remove_small_regions(mask, 2)[31, 31] == 2
    assert remove_small_regions(mask, 3)[31, 31] == 0
    # 40 px bowel: kept at 40, removed at 41 even though it touches the 100 px stomach.
    assert (remove_small_regions(mask, 40)[12:16, 2:12] == 3).all()
    assert (remove_small_regions(mask, 41)[12:16, 2:12] == 0).all()
    for off in (0, 1):
        assert np.array_equal(remove_small_regions(mask, off), mask)
    assert not remove_small_regions(np.zeros((5, 5), np.uint8), 10).any()


def test_the_setting_round_trips_through_the_folder_and_transformers_still_reads_it(tmp_path) -> None:
    ProcessingConfig(min_region_px=75).save(tmp_path)
    saved = json.loads((tmp_path / PREPROCESSOR_FILE).read_text())
    assert saved[MIN_REGION_KEY] == 75
    assert ProcessingConfig.from_folder(tmp_path).min_region_px == 75
    # Off: the key is left out, so folders without the feature stay byte-identical.
    ProcessingConfig().save(tmp_path)
    assert MIN_REGION_KEY not in json.loads((tmp_path / PREPROCESSOR_FILE).read_text())
    ProcessingConfig(min_region_px=75).save(tmp_path)
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(tmp_path)
    assert processor.size == {"height": 288, "width": 288}


@pytest.mark.parametrize("bad", [-1, 2.5, "50", True])
def test_a_bad_stored_value_is_refused_clearly(bad) -> None:
    with pytest.raises(ValueError, match=MIN_REGION_KEY):
        ProcessingConfig.from_dict({"size": 288, MIN_REGION_KEY: bad})


@pytest.fixture()
def cleaned_model_dir(tiny_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    return folder


def test_the_segmenter_applies_the_folders_value_and_an_override(cleaned_model_dir, one_torch_thread) -> None:
    from segapp.inference.segmenter import Segmenter
    from segapp.synthetic import generate_slice

    image = generate_slice(3, empty=False).image16
    raw = Segmenter.from_pretrained(cleaned_model_dir, device="cpu").predict(image).mask
    assert raw.any(), "the random tiny model predicts some foreground"
    # A region limit bigger than the slice removes every region.
    config = ProcessingConfig.from_folder(cleaned_model_dir)
    huge = raw.size + 1
    ProcessingConfig(config.height, config.width, min_region_px=huge).save(cleaned_model_dir)
    stored = Segmenter.from_pretrained(cleaned_model_dir, device="cpu")
    assert stored.processing.min_region_px == huge
    prediction = stored.predict(image)
    assert not prediction.mask.any()
    assert prediction.stats["background"].pixels == raw.size
    # The override wins over the folder, both ways.
    assert np.array_equal(Segmenter.from_pretrained(cleaned_model_dir, device="cpu", min_region_px=0).predict(image).mask, raw)
    with pytest.raises(ValueError, match="min_region_px"):
        Segmenter.from_pretrained(cleaned_model_dir, device="cpu", min_region_px=-5)


def test_tuning_scores_match_evaluate_and_write_keeps_the_rest(cleaned_model_dir, phantom_data, one_torch_thread, capsys) -> None:
    from segapp.evaluate import evaluate
    from segapp.tune_postprocessing import main, tune

    split = phantom_data / "valid"
    result = tune(str(cleaned_model_dir), split, candidates=[0, 20, 10**7], device="cpu")
    scores = {row["min_region_px"]: row["mean_foreground_dice"] for row in result["results"]}
    assert list(scores) == [0, 20, 10**7] and result["slices"] == 4 and result["current"] == 0
    assert scores[result["best"]] == max(scores.values())
    # The same figures as segapp.evaluate with the override: one scoring path.
    for size in (0, 10**7):
        direct = evaluate(split, weights=str(cleaned_model_dir), device="cpu", min_region_px=size,
                          hausdorff=False, competition=False, progress=False)
        assert direct["mean_foreground_dice"] == pytest.approx(scores[size], abs=1e-9)
    before = json.loads((cleaned_model_dir / PREPROCESSOR_FILE).read_text())
    assert main(["--weights", str(cleaned_model_dir), "--data", str(split), "--candidates", "0,20,10000000",
                 "--device", "cpu", "--write", "--no-progress"]) == 0
    after = json.loads((cleaned_model_dir / PREPROCESSOR_FILE).read_text())
    assert after.get(MIN_REGION_KEY, 0) == result["best"]
    assert {k: v for k, v in after.items() if k != MIN_REGION_KEY} == before
    assert "<- best" in capsys.readouterr().out


def test_tuning_refuses_bad_requests(cleaned_model_dir, phantom_data, tmp_path, capsys) -> None:
    from segapp.tune_postprocessing import main

    split = str(phantom_data / "valid")
    assert main(["--weights", str(cleaned_model_dir), "--data", split, "--candidates", "10,-3"]) == 2
    assert "whole numbers >= 0" in capsys.readouterr().err
    assert main(["--weights", str(cleaned_model_dir), "--data", split, "--candidates", "ten"]) == 2
    assert main(["--weights", str(cleaned_model_dir), "--data", str(tmp_path / "nothing")]) == 2
    weights_file = tmp_path / "model.safetensors"
    shutil.copy(cleaned_model_dir / "model.safetensors", weights_file)
    assert main(["--weights", str(weights_file), "--data", split, "--write", "--device", "cpu", "--no-progress"]) == 2
    assert "needs a model folder" in capsys.readouterr().err
