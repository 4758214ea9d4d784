"""The optional ONNX Runtime path (segapp.model.onnx_runtime): same masks as PyTorch, cached exports,
clear errors. The packages come with requirements-dev.txt (extra ``segapp[onnx]`` for users)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from segapp.inference.segmenter import Segmenter
from segapp.io.readers import read_image
from segapp.model import onnx_runtime
from segapp.model.onnx_runtime import OnnxLogits, OnnxUnavailableError
from segapp.model.weights import load_model


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory):
    """A cache folder holding the tiny model's export (SEGAPP_CACHE_DIR for this module)."""
    folder = tmp_path_factory.mktemp("onnx-cache")
    saved = os.environ.get("SEGAPP_CACHE_DIR")
    os.environ["SEGAPP_CACHE_DIR"] = str(folder)
    yield folder
    if saved is None:
        os.environ.pop("SEGAPP_CACHE_DIR", None)
    else:
        os.environ["SEGAPP_CACHE_DIR"] = saved


@pytest.fixture(scope="module")
def onnx_segmenter(tiny_model_dir: Path, onnx_cache: Path) -> Segmenter:
    return Segmenter.from_pretrained(tiny_model_dir, device="cpu", runtime="onnx", max_batch_size=3)


def _images(phantom_data: Path) -> list[Path]:
    return sorted((phantom_data / "valid" / "images").iterdir())


def test_onnx_runtime_gives_the_torch_masks(onnx_segmenter: Segmenter, tiny_segmenter: Segmenter, phantom_data: Path) -> None:
    assert onnx_segmenter.onnx is not None and onnx_segmenter.onnx.exported
    info = onnx_segmenter.describe()
    assert info["runtime"] == "onnxruntime (cpu)" and info["onnx_exported"] and info["onnx_prepare_seconds"] > 0
    assert info["onnx_file"] == str(onnx_segmenter.onnx.path)
    from segapp.ui.cards import about_markdown

    assert "Running on: `cpu` with onnxruntime (cpu)" in about_markdown(info, None)
    assert "Running on: `cpu`\n" in about_markdown(tiny_segmenter.describe(), None) + "\n"
    assert tiny_segmenter.describe()["runtime"] == "torch"
    images = _images(phantom_data)
    # Batches of 3 then 1 (max_batch_size 3): the exported graph takes any batch size.
    for got, want in zip(onnx_segmenter.predict_batch(images), tiny_segmenter.predict_batch(images)):
        assert got.mask.shape == want.mask.shape == read_image(images[0]).size
        assert np.mean(got.mask == want.mask) > 0.999  # ties in a random model may flip a pixel
        np.testing.assert_allclose(got.confidence, want.confidence, atol=1e-4)
    single = onnx_segmenter.predict(images[0])
    assert np.array_equal(single.mask, onnx_segmenter.predict_batch(images[:1])[0].mask)


def test_exports_are_cached_by_content(onnx_segmenter: Segmenter, tiny_model_dir: Path, onnx_cache: Path) -> None:
    again = Segmenter.from_pretrained(tiny_model_dir, device="cpu", runtime="onnx")
    assert again.onnx is not None and not again.onnx.exported  # same weights: no second export
    assert again.onnx.path == onnx_segmenter.onnx.path and again.onnx.path.parent == onnx_cache / "onnx"
    # Other weights never reuse that graph.
    loaded = load_model(tiny_model_dir)
    with torch.no_grad():
        next(loaded.model.parameters()).add_(0.5)
    changed = Segmenter(loaded, device="cpu", runtime="onnx")
    assert changed.onnx is not None and changed.onnx.exported and changed.onnx.path != again.onnx.path
    assert not [p for p in (onnx_cache / "onnx").iterdir() if p.name.endswith(".tmp.onnx")]


def test_a_damaged_cache_file_is_exported_again(onnx_segmenter: Segmenter, tmp_path: Path, phantom_data: Path) -> None:
    assert onnx_segmenter.onnx is not None
    damaged = tmp_path / onnx_segmenter.onnx.path.name
    damaged.write_bytes(onnx_segmenter.onnx.path.read_bytes()[:1000])  # cut short, as by a full disk
    logits = OnnxLogits(onnx_segmenter.network, 64, 64, cache_dir=tmp_path)
    assert logits.exported and logits.path == damaged and damaged.stat().st_size > 1000
    pixels = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        want = onnx_segmenter.network(pixel_values=pixels).logits
    torch.testing.assert_close(logits(pixels), want, atol=1e-4, rtol=1e-4)


def test_unwritable_cache_falls_back_to_the_temporary_folder(onnx_segmenter: Segmenter, tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setattr(onnx_runtime.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    assert onnx_segmenter.onnx is not None
    fallback = tmp_path / "tmp" / f"segapp-onnx-{os.getuid()}"
    fallback.mkdir(parents=True)
    shutil.copy(onnx_segmenter.onnx.path, fallback)  # as left by an earlier start: no export needed
    logits = OnnxLogits(onnx_segmenter.network, 64, 64, cache_dir=blocker / "onnx")
    assert logits.path.parent == fallback and not logits.exported


def test_bad_runtime_choices_are_refused(tiny_model_dir: Path) -> None:
    with pytest.raises(ValueError, match="runtime must be one of"):
        Segmenter.from_pretrained(tiny_model_dir, device="cpu", runtime="tensorrt")
    with pytest.raises(ValueError, match="alternatives"):
        Segmenter.from_pretrained(tiny_model_dir, device="cpu", runtime="onnx", compile="default")


def test_missing_packages_say_what_to_install(tiny_model_dir: Path, phantom_data: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    def missing():
        raise OnnxUnavailableError(onnx_runtime.ONNX_MISSING)

    monkeypatch.setattr(onnx_runtime, "_import_onnxruntime", missing)
    assert not onnx_runtime.onnx_available()
    with pytest.raises(OnnxUnavailableError, match=r'pip install "segapp\[onnx\]"'):
        Segmenter.from_pretrained(tiny_model_dir, device="cpu", runtime="onnx")
    from segapp.predict import main as predict_main

    assert predict_main([str(phantom_data / "valid" / "images"), "--out", str(tmp_path / "out"), "--weights",
                         str(tiny_model_dir), "--runtime", "onnx", "--no-progress"]) == 2
    assert "segapp[onnx]" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing half-written
    from segapp.bench.__main__ import main as bench_main

    assert bench_main(["--quick", "--device", "cpu", "--weights", str(tiny_model_dir), "--runtime", "onnx",
                       "--json", str(tmp_path / "bench.json")]) == 2
    assert "segapp[onnx]" in capsys.readouterr().err and not (tmp_path / "bench.json").exists()


def test_predict_command_with_onnx_writes_the_torch_masks(onnx_segmenter: Segmenter, tiny_model_dir: Path,
                                                          phantom_data: Path, tmp_path: Path) -> None:
    from segapp.predict import main as predict_main

    folder = phantom_data / "valid" / "images"
    for runtime in ("torch", "onnx"):
        assert predict_main([str(folder), "--out", str(tmp_path / runtime), "--weights", str(tiny_model_dir),
                             "--runtime", runtime, "--no-progress"]) == 0
    from PIL import Image

    for mask in sorted((tmp_path / "torch").rglob("*.png")):
        other = tmp_path / "onnx" / mask.relative_to(tmp_path / "torch")
        assert np.mean(np.array(Image.open(mask)) == np.array(Image.open(other))) > 0.999


def test_bench_onnx_section(onnx_segmenter: Segmenter, tiny_model_dir: Path, tmp_path: Path) -> None:
    from segapp.bench.__main__ import main as bench_main

    out = tmp_path / "bench.json"
    assert bench_main(["--quick", "--device", "cpu", "--weights", str(tiny_model_dir), "--skip", "web,training,startup,volume",
                       "--runtime", "onnx", "--json", str(out)]) == 0
    onnx = json.loads(out.read_text())["onnx"]
    assert onnx["onnx_ms"] > 0 and onnx["torch_ms"] > 0 and onnx["speedup"] == onnx["torch_ms"] / onnx["onnx_ms"]
    assert onnx["first_start_seconds"] > onnx["cached_start_seconds"] > 0  # the export is paid once
    assert 0.999 < onnx["pixel_agreement"] <= 1 and onnx["batch"] == 4


def test_evaluate_with_onnx_scores_like_torch(onnx_segmenter: Segmenter, tiny_model_dir: Path, phantom_data: Path,
                                              tmp_path: Path, monkeypatch, capsys) -> None:
    from segapp.evaluate import main as evaluate_main

    scores = {}
    for runtime in ("torch", "onnx"):
        out = tmp_path / f"{runtime}.json"
        assert evaluate_main(["--data", str(phantom_data / "valid"), "--weights", str(tiny_model_dir), "--runtime", runtime,
                              "--no-progress", "--no-competition", "--json", str(out)]) == 0
        result = json.loads(out.read_text())
        assert result["runtime"] == runtime
        scores[runtime] = result["mean_foreground_dice"]
    assert scores["onnx"] == pytest.approx(scores["torch"], abs=1e-3)
    # Without the optional packages: a message, not a traceback.
    def missing():
        raise OnnxUnavailableError(onnx_runtime.ONNX_MISSING)

    monkeypatch.setattr(onnx_runtime, "_import_onnxruntime", missing)
    capsys.readouterr()
    assert evaluate_main(["--data", str(phantom_data / "valid"), "--weights", str(tiny_model_dir), "--runtime", "onnx",
                          "--no-progress"]) == 2
    assert "segapp[onnx]" in capsys.readouterr().err
