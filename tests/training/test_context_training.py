"""Training a 2.5D model: --context, neighbours by name gathered at batch time, channels augmented
together, the offsets saved into the model folder and its card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import save_tiny_model
from PIL import Image

from segapp.inference.segmenter import Segmenter
from segapp.model.processing import ProcessingConfig
from segapp.train import main
from segapp.training.augment import AugmentConfig, augment
from segapp.training.config import TrainingError, config_from_args
from segapp.training.data import load_train_set


@pytest.fixture(scope="module")
def raw_prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Coherent phantom case-days (the raw layout) converted by segapp.prepare, every slice kept."""
    from segapp.io.competition import prepare
    from segapp.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("raw")
    generate_dataset(root / "raw", train=40, valid=0, seed=1, raw=True, progress=False)  # two case-days
    prepare(root / "raw", root / "data", valid_fraction=0.3, seed=0, keep_empty=True, progress=False)
    return root / "data"


def test_context_parses_as_the_issue_writes_it(tmp_path: Path) -> None:
    base = ["--data", "d", "--out", "o"]
    assert config_from_args([*base, "--context", "-2,0,2"]).context == [-2, 0, 2]
    assert config_from_args([*base, "--context=-1,0,1"]).context == [-1, 0, 1]
    assert config_from_args([*base, "--context", "0,0,1"]).context == [0, 0, 1]
    assert config_from_args(base).context == [0, 0, 0]
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"context": [-1, 0, 1]}))
    assert config_from_args(["--config", str(path), *base]).context == [-1, 0, 1]
    path.write_text(json.dumps({"context": [-1, 1]}))
    with pytest.raises(TrainingError, match="context must be three whole numbers"):
        config_from_args(["--config", str(path), *base])


def test_a_bad_context_stops_with_the_value(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        config_from_args(["--context", "-2,0"])
    assert "--context must be three whole numbers such as -2,0,2; got '-2,0'" in capsys.readouterr().err


def test_slices_are_stored_once_and_stacks_gathered_by_name(raw_prepared: Path) -> None:
    config = ProcessingConfig(height=32, width=32, context_offsets=(-1, 0, 1))
    train = load_train_set(raw_prepared / "train", config)
    names = sorted(p.name for p in (raw_prepared / "train" / "images").iterdir())
    assert train.images.shape == (len(names), 32, 32) and train.neighbours.shape == (len(names), 3)
    # Neighbours are the slices one number away in the same case-day: offset +1 is one slice toward
    # the head, which is slice number - 1 (the numbers grow toward the feet).
    from segapp.io.naming import parse_slice_name

    parsed = [parse_slice_name(n) for n in names]
    index = {(p.case, p.day, p.slice): i for i, p in enumerate(parsed)}
    inner = 0
    for i, p in enumerate(parsed):
        up, down = index.get((p.case, p.day, p.slice - 1), i), index.get((p.case, p.day, p.slice + 1), i)
        assert train.neighbours[i].tolist() == [down, i, up]
        inner += up != i and down != i
    assert inner > len(names) // 2
    batch = torch.tensor([0, 3, 5])
    stacks = train.inputs(batch, config)
    assert stacks.shape == (3, 3, 32, 32) and stacks.dtype == torch.uint8
    for row, i in enumerate(batch.tolist()):
        for c in range(3):
            assert torch.equal(stacks[row, c], train.images[train.neighbours[i, c]])
    assert train.inputs(batch, ProcessingConfig(height=32, width=32)).shape == (3, 32, 32)  # 2D: the slices


def test_augmentation_moves_the_channels_together() -> None:
    gen = torch.Generator().manual_seed(0)
    plane = (torch.arange(32 * 32) % 251).to(torch.uint8).view(1, 32, 32)
    masks = (plane // 64).to(torch.uint8)
    stack = torch.stack([plane[0], plane[0], plane[0]])[None].repeat(2, 1, 1, 1)  # (2, 3, 32, 32)
    quiet = AugmentConfig(noise_std=0.0)
    images, labels = augment(stack, masks.repeat(2, 1, 1), quiet, gen)
    assert images.shape == (2, 3, 32, 32) and labels.shape == (2, 32, 32)
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 1], images[:, 2])
    # Distinct channels get the same warp: each is the warp its own plane gets under the same draw.
    distinct = torch.stack([plane[0], 255 - plane[0], plane[0] // 2])[None]
    warped, _ = augment(distinct, masks, quiet, torch.Generator().manual_seed(1), intensity=False)
    for c in range(3):
        alone, _ = augment(distinct[:, c], masks, quiet, torch.Generator().manual_seed(1), intensity=False)
        assert torch.allclose(warped[:, c], alone[:, 0])


def test_smoke_run_with_context_saves_a_2_5d_model(raw_prepared: Path, tmp_path: Path, capsys) -> None:
    base = save_tiny_model(tmp_path / "base")
    out = tmp_path / "run"
    argv = ["--data", str(raw_prepared), "--out", str(out), "--base", str(base), "--context", "-2,0,2",
            "--image-size", "64", "--batch-size", "4", "--grad-accum", "1", "--max-steps", "2", "--no-progress",
            "--no-hausdorff"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "2.5D input: channels at slice offsets [-2, 0, 2]" in printed
    assert "2.5D from 2D weights: first convolution folded into channel 1 (offset 0)" in printed
    for folder in (out / "best", out / "last"):
        assert json.loads((folder / "preprocessor_config.json").read_text())["segapp_context_offsets"] == [-2, 0, 2]
        card = (folder / "README.md").read_text()
        assert "2.5D: channels = slices at offsets -2,0,2" in card and "--context -2,0,2" in card
    assert json.loads((out / "train_config.json").read_text())["context"] == [-2, 0, 2]
    segmenter = Segmenter.from_pretrained(out / "best", device="cpu")
    assert segmenter.processing.context_offsets == (-2, 0, 2)
    image = next((raw_prepared / "valid" / "images").iterdir())
    assert segmenter.predict(image).mask.shape == Image.open(image).size[::-1]
    # A resumed run keeps its offsets; changing them is refused.
    with pytest.raises(TrainingError, match="context"):
        config_from_args([*argv[:6], "--resume", "--context", "-1,0,1"])


def test_context_init_copy_keeps_the_loaded_weights(raw_prepared: Path, tmp_path: Path, capsys) -> None:
    from segapp.model.inflate import first_convolution
    from segapp.model.weights import load_model

    base = save_tiny_model(tmp_path / "base")
    argv = ["--data", str(raw_prepared), "--base", str(base), "--context", "-1,0,1", "--image-size", "64",
            "--batch-size", "4", "--grad-accum", "1", "--max-steps", "1", "--no-progress", "--no-hausdorff",
            "--lr", "1e-12", "--scheduler", "constant", "--no-augment"]
    assert main([*argv, "--out", str(tmp_path / "copy"), "--context-init", "copy"]) == 0
    assert "folded" not in capsys.readouterr().out
    assert json.loads((tmp_path / "copy" / "train_config.json").read_text())["context_init"] == "copy"
    assert main([*argv, "--out", str(tmp_path / "centre")]) == 0
    # With a negligible learning rate the saved first convolutions are the loaded one and the folded one.
    start = first_convolution(load_model(base).model).weight
    copied = first_convolution(load_model(tmp_path / "copy" / "last").model).weight
    folded = first_convolution(load_model(tmp_path / "centre" / "last").model).weight
    assert torch.allclose(copied, start, atol=1e-6)
    assert folded[:, [0, 2]].abs().max() < 1e-9 and not torch.allclose(folded, start, atol=1e-3)
