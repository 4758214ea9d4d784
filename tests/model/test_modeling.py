"""The one loader and saver: every source kind, atomic writes, clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from helpers import make_tiny_model

from segapp.labels import ID2LABEL
from segapp.model.processing import ProcessingConfig
from segapp.model.weights import (
    ModelLoadError,
    config_from_state_dict,
    load_model,
    save_model,
    scratch_config,
    variant_name,
)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _legacy_state(folder: Path) -> dict[str, torch.Tensor]:
    # save_pretrained writes transformers-4.x names, as the notebook's checkpoint has them.
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def test_saved_folder_has_the_contract_files(tiny_model_dir: Path) -> None:
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= names
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert {int(k): v for k, v in config["id2label"].items()} == ID2LABEL
    assert config["label2id"]["large_bowel"] == 3
    pre = json.loads((tiny_model_dir / "preprocessor_config.json").read_text())
    assert pre["size"] == {"height": 64, "width": 64}


def test_folder_round_trip_keeps_weights_and_processing(tiny_model_dir: Path) -> None:
    loaded = load_model(tiny_model_dir)
    assert loaded.kind == "folder"
    assert loaded.processing == ProcessingConfig(height=64, width=64)
    assert _same_weights(loaded.model, make_tiny_model())
    assert loaded.card and "GI-tract" in loaded.card
    assert not loaded.model.training


def test_bare_safetensors_file_infers_architecture(tiny_model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file(_legacy_state(tiny_model_dir), path)
    loaded = load_model(path)
    assert loaded.kind == "safetensors"
    assert list(loaded.model.config.hidden_sizes) == [16, 32, 40, 64]
    assert _same_weights(loaded.model, make_tiny_model())


def test_lightning_checkpoint_with_model_prefix(tiny_model_dir: Path, tmp_path: Path) -> None:
    state = {f"model.{k}": v for k, v in _legacy_state(tiny_model_dir).items()}
    path = tmp_path / "epoch=3-val_f1=0.85.ckpt"
    torch.save({"state_dict": state, "epoch": 3, "global_step": 120}, path)
    loaded = load_model(path)
    assert loaded.kind == "lightning"
    assert _same_weights(loaded.model, make_tiny_model())


def test_lightning_checkpoint_with_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"cfg": Path("x")}}, path)
    with pytest.raises(ModelLoadError, match="arbitrary code"):
        load_model(path)


def test_b0_variant_inferred_from_shapes() -> None:
    from transformers import SegformerForSemanticSegmentation

    model = SegformerForSemanticSegmentation(scratch_config("b0"))
    config = config_from_state_dict(model.state_dict())  # current (5.x) names
    assert variant_name(config) == "b0"
    assert list(config.sr_ratios) == [8, 4, 2, 1]
    assert config.num_labels == 4


def test_scratch_is_b0_with_our_labels() -> None:
    loaded = load_model("scratch")
    assert loaded.variant == "b0"
    assert loaded.model.config.id2label == ID2LABEL


def test_scratch_takes_the_published_sizes() -> None:
    loaded = load_model("scratch:b1")
    assert loaded.variant == "b1" and loaded.model.config.id2label == ID2LABEL
    assert sum(p.numel() for p in loaded.model.parameters()) > 13_000_000  # B1: 13.7 M, B0: 3.7 M
    with pytest.raises(ModelLoadError, match="scratch:b1"):
        load_model("scratch:b9")


def test_other_label_count_is_refused_or_reset(tmp_path: Path) -> None:
    folder = tmp_path / "ade"
    model = make_tiny_model(num_labels=150)
    model.save_pretrained(folder)
    with pytest.raises(ModelLoadError, match="150 classes"):
        load_model(folder)
    loaded = load_model(folder, reset_head=True)
    assert loaded.model.config.num_labels == 4
    assert loaded.model.decode_head.classifier.out_channels == 4


def test_unreachable_hub_id_names_offline_alternatives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"(?s)nvidia/no-such-model.*scratch"):
        load_model("nvidia/no-such-model")


def test_missing_path_and_non_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(tmp_path / "nope" / "deeper")
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(tmp_path)


def test_truncated_safetensors_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = (tiny_model_dir / "model.safetensors").read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        load_model(path)


def test_save_replaces_atomically_and_survives_a_crash(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "best"
    save_model(make_tiny_model(seed=1), folder)
    before = (folder / "model.safetensors").read_bytes()

    import segapp.io.files as files

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(files, "_fsync_tree", crash)
    with pytest.raises(OSError, match="disk full"):
        save_model(make_tiny_model(seed=2), folder)
    # The good folder is untouched and no temporary folder is left behind.
    assert (folder / "model.safetensors").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["best"]
    monkeypatch.undo()
    save_model(make_tiny_model(seed=2), folder)
    assert (folder / "model.safetensors").read_bytes() != before
    assert sorted(os.listdir(tmp_path)) == ["best"]


def test_model_card_has_metrics_and_command(tmp_path: Path) -> None:
    metrics = {"per_class": {"stomach": {"dice": 0.91}}, "mean_foreground_dice": 0.9}
    save_model(make_tiny_model(), tmp_path / "m", command="python -m segapp.train --x", metrics=metrics)
    card = (tmp_path / "m" / "README.md").read_text()
    assert "python -m segapp.train --x" in card
    assert "| stomach | 0.9100 |" in card
    assert "mean_foreground_dice: 0.9000" in card


def test_saved_folder_is_readable_by_others(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        folder = save_model(make_tiny_model(), tmp_path / "shared")
    finally:
        os.umask(old)
    assert folder.stat().st_mode & 0o777 == 0o755
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in folder.iterdir())
