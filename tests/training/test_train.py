"""Training: smoke run, resume, data errors, augmentation alignment, preprocessing parity, DDP."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import torchrun_two_cpu
from PIL import Image

from segapp.inference.segmenter import Segmenter
from segapp.io.readers import read_image
from segapp.metrics.labelled_data import DataError, find_pairs, load_valid_set, read_mask
from segapp.model.processing import ProcessingConfig, normalize, preprocess
from segapp.model.weights import load_model
from segapp.train import main
from segapp.training.augment import AugmentConfig, augment
from segapp.training.config import TrainingError, config_from_args
from segapp.training.data import load_train_set
from segapp.training.loss import segmentation_loss

TINY_ARGS = ["--image-size", "64", "--batch-size", "2", "--grad-accum", "1", "--no-progress", "--log-every", "1"]


def _train(data: Path, out: Path, base: Path, *extra: str) -> int:
    return main(["--data", str(data), "--out", str(out), "--base", str(base), *TINY_ARGS, *extra])


def test_smoke_run_writes_a_servable_model(phantom_data: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _train(phantom_data, out, tiny_model_dir, "--max-steps", "2") == 0
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "README.md"):
        assert (out / "best" / name).is_file() and (out / "last" / name).is_file()
    assert (out / "last" / "training_state.pt").is_file()
    assert not (out / "best" / "training_state.pt").exists()
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["type"] == "step"] == [1, 2]
    valid = [r for r in lines if r["type"] == "valid"]
    assert len(valid) == 1 and 0 <= valid[0]["mean_foreground_dice"] <= 1 and valid[0]["loss"] > 0
    assert set(valid[0]["dice"]) == {"background", "stomach", "small_bowel", "large_bowel"}
    card = (out / "best" / "README.md").read_text()
    assert "--max-steps 2" in card and "| stomach |" in card
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["train_images_per_s"] > 0 and summary["best_epoch"] == 1
    assert json.loads((out / "train_config.json").read_text())["batch_size"] == 2
    # The best folder is what the app serves: it loads and predicts at the slice's size.
    segmenter = Segmenter.from_pretrained(out / "best", device="cpu")
    assert segmenter.processing.height == 64
    image = next((phantom_data / "valid" / "images").iterdir())
    assert segmenter.predict(image).mask.shape == read_image(image).size


def test_resume_matches_an_uninterrupted_run(phantom_data: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    common = ["--scheduler", "constant", "--no-hausdorff"]
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert _train(phantom_data, straight, tiny_model_dir, "--epochs", "2", *common) == 0
    assert _train(phantom_data, interrupted, tiny_model_dir, "--epochs", "1", *common) == 0
    state = torch.load(interrupted / "last" / "training_state.pt", weights_only=True)
    assert state["step"] == 6 and state["epoch"] == 1
    assert main(["--out", str(interrupted), "--resume", "--epochs", "2"]) == 0
    resumed = torch.load(interrupted / "last" / "training_state.pt", weights_only=True)
    assert resumed["step"] == 12
    assert resumed["optimizer"]["state"][0]["step"].item() == 12  # AdamW moments continued
    a = load_model(straight / "last").model.state_dict()
    b = load_model(interrupted / "last").model.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_resume_refuses_changed_settings(phantom_data: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _train(phantom_data, out, tiny_model_dir, "--max-steps", "1", "--no-hausdorff") == 0
    with pytest.raises(TrainingError, match="lr"):
        config_from_args(["--out", str(out), "--resume", "--lr", "0.1"])


def test_resume_refuses_a_different_onecycle_length(phantom_data: Path, tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert _train(phantom_data, out, tiny_model_dir, "--max-steps", "2", "--no-hausdorff") == 0
    before = (out / "last" / "training_state.pt").read_bytes()
    assert main(["--out", str(out), "--resume", "--max-steps", "5"]) == 2
    assert "OneCycle schedule is 2 steps long" in capsys.readouterr().err
    assert (out / "last" / "training_state.pt").read_bytes() == before  # nothing overwritten


def _copy_data(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_bad_data_folders_give_clear_messages(phantom_data: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(DataError, match="Missing folder"):
        find_pairs(tmp_path / "nothing" / "train")
    empty = tmp_path / "empty" / "train"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    with pytest.raises(DataError, match="No images"):
        find_pairs(empty)

    data = _copy_data(phantom_data, tmp_path / "nomask")
    victim = sorted((data / "train" / "masks").iterdir())[0]
    victim.unlink()
    with pytest.raises(DataError, match=f"have no mask.*{victim.name}"):
        find_pairs(data / "train")

    data = _copy_data(phantom_data, tmp_path / "values")
    mask_path = sorted((data / "train" / "masks").iterdir())[0]
    mask = np.asarray(Image.open(mask_path)).copy()
    mask[0, 0] = 255
    Image.fromarray(mask).save(mask_path)
    with pytest.raises(DataError, match=r"values \[255\] outside the class ids"):
        load_train_set(data / "train", ProcessingConfig(64, 64))

    data = _copy_data(phantom_data, tmp_path / "size")
    mask_path = sorted((data / "valid" / "masks").iterdir())[0]
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(mask_path)
    with pytest.raises(DataError, match="same size"):
        load_valid_set(data / "valid")
    # Through the command: exit status 2 and the message, no traceback.
    assert main(["--data", str(data), "--out", str(tmp_path / "o"), "--base", "scratch", "--no-progress"]) == 2
    assert "same size" in capsys.readouterr().err


def test_augmentation_keeps_image_and_mask_aligned() -> None:
    # Known pattern: the image is a pure function of the mask (grey = 60 x class id + 20).
    masks = torch.zeros(8, 64, 64, dtype=torch.uint8)
    masks[:, 10:30, 12:40] = 1
    masks[:, 34:54, 20:50] = 2
    masks[:, 20:44, 44:60] = 3
    images = masks * 60 + 20
    generator = torch.Generator().manual_seed(0)
    x, y = augment(images, masks, AugmentConfig(), generator, intensity=False)
    assert x.shape == (8, 1, 64, 64) and y.shape == (8, 64, 64) and y.dtype == torch.long
    assert set(torch.unique(y).tolist()) <= {0, 1, 2, 3}  # nearest: never an in-between label
    assert not torch.equal(y, masks.long())  # the warp did move things
    # Where the image is on the mask's plateau, the mask says the same class.
    inside = (y > 0) & ((x[:, 0] - (y * 60 + 20).float()).abs() < 1)
    agree = inside.sum() / (y > 0).sum()
    assert agree > 0.9
    # Photometric changes leave the masks alone and keep images in range.
    x2, y2 = augment(images, masks, AugmentConfig(), torch.Generator().manual_seed(0), geometric=False)
    assert torch.equal(y2, masks.long()) and x2.min() >= 0 and x2.max() <= 255


def test_no_left_right_flip_in_augmentation() -> None:
    # A mark on the image's left stays on the left half whatever the draw.
    masks = torch.zeros(64, 64, 64, dtype=torch.uint8)
    masks[:, 28:36, 4:14] = 1
    _, y = augment(masks * 100, masks, AugmentConfig(), torch.Generator().manual_seed(1), intensity=False)
    cols = torch.nonzero(y == 1)[:, 2].float()
    assert cols.max() < 32


def test_training_and_inference_preprocess_the_same_png(phantom_data: Path) -> None:
    config = ProcessingConfig(64, 64)
    path = sorted((phantom_data / "valid" / "images").iterdir())[0]
    served = preprocess([read_image(path).pixels], config)  # what Segmenter feeds the model
    valid = load_valid_set(phantom_data / "valid")
    index = valid.names.index(path.name)
    assert torch.equal(preprocess([valid.scans[index].pixels], config), served)  # validation: identical
    # Training keeps the resized slice as uint8: within half a grey level of the served input.
    train_set = load_train_set(phantom_data / "valid", config)
    trained = normalize(train_set.images[index : index + 1, None].float(), config)
    assert (trained - served).abs().max() <= 0.5 / 255 / min(config.image_std) + 1e-5


def test_loss_is_low_for_perfect_logits() -> None:
    labels = torch.randint(0, 4, (2, 16, 16))
    perfect = torch.nn.functional.one_hot(labels, 4).permute(0, 3, 1, 2).float() * 30
    wrong = torch.roll(perfect, 1, dims=1)
    assert segmentation_loss(perfect, labels) < 0.01 < segmentation_loss(wrong, labels)


def test_read_mask_accepts_training_masks(phantom_data: Path) -> None:
    path = sorted((phantom_data / "train" / "masks").iterdir())[0]
    mask = read_mask(path)
    assert mask.dtype == np.uint8 and mask.max() <= 3


def test_ddp_two_cpu_processes(phantom_data: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    result = torchrun_two_cpu(
        "-m", "segapp.train", "--data", str(phantom_data), "--out", str(out), "--base", str(tiny_model_dir),
        "--device", "cpu", "--max-steps", "2", "--no-hausdorff", *TINY_ARGS,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 2
    assert (out / "best" / "model.safetensors").is_file()


# Runs training on each rank, then reports the threads left in the process. gloo's threads
# ("gloo_tcp_loop", "pt_gloo_runloop") still running when the interpreter shuts down abort it
# now and then (SIGABRT, "terminate called without an active exception").
TEARDOWN_WORKER = """
import json, os, sys
from pathlib import Path
from segapp.train import main
status = main(sys.argv[1:])
threads = sorted(open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task"))
report = Path(sys.argv[0]).with_name(f"threads-{os.environ['RANK']}.json")  # one file per rank: stdout is shared
report.write_text(json.dumps({"status": status, "threads": threads}))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="lists threads through /proc (Linux)")
def test_ddp_training_leaves_no_process_group_threads(phantom_data: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    worker = tmp_path / "worker.py"
    worker.write_text(TEARDOWN_WORKER)
    result = torchrun_two_cpu(
        str(worker), "--data", str(phantom_data), "--out", str(tmp_path / "ddp"), "--base", str(tiny_model_dir),
        "--device", "cpu", "--max-steps", "2", "--no-hausdorff", "--tensorboard", "no", *TINY_ARGS,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads((tmp_path / f"threads-{rank}.json").read_text()) for rank in (0, 1)]
    assert all(r["status"] == 0 for r in reports)
    for report in reports:
        assert not [t for t in report["threads"] if "gloo" in t], report


def test_compile_and_fold_head_options_reach_the_training_step(phantom_data: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """--compile wraps the (folded) training forward; inductor itself is too slow for 2 cores,
    so torch.compile is replaced by a recorder that runs the module eagerly."""
    from segapp.model.head_folding import FoldedTraining

    compiled = []

    def fake_compile(module, **options):
        compiled.append((type(module), options))
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    assert _train(phantom_data, tmp_path / "c", tiny_model_dir, "--max-steps", "2", "--compile", "max-autotune") == 0
    assert compiled == [(FoldedTraining, {"mode": "max-autotune", "dynamic": False})]
    assert json.loads((tmp_path / "c" / "train_config.json").read_text())["compile"] == "max-autotune"
    compiled.clear()
    assert _train(phantom_data, tmp_path / "plain", tiny_model_dir, "--max-steps", "2", "--no-fold-head") == 0
    assert compiled == []
    assert Segmenter.from_pretrained(tmp_path / "plain" / "best", device="cpu").predict(
        next((phantom_data / "valid" / "images").iterdir())
    ).mask.ndim == 2
