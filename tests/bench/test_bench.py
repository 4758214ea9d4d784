"""The benchmark commands run end to end and produce well-formed JSON (speed is not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segapp.bench.__main__ import main as bench_main
from segapp.bench.training import bench_training


def _quick(weights: Path, out: Path, skip: str) -> dict:
    assert bench_main(["--quick", "--device", "cpu", "--weights", str(weights), "--skip", skip, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_bench_quick_writes_json(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = _quick(tiny_model_dir, tmp_path / "bench.json", "training,web,startup")
    assert result["device"] == "cpu" and "web" not in result
    latency = result["latency"]
    for key in ("segapp_ms", "transformers_recipe_ms", "notebook_ms"):
        assert latency[key] > 0
    assert 0 <= latency["pixel_agreement_vs_notebook"] <= 1
    assert latency["speedup_vs_notebook"] == latency["notebook_ms"] / latency["segapp_ms"]
    assert set(result["throughput"]) == {"batch_1_slices_per_s", "batch_4_slices_per_s"}
    concurrency = result["concurrency"]
    assert concurrency["clients"] == 4 and concurrency["combined_slices_per_s"] > 0
    assert concurrency["speedup"] == concurrency["combined_slices_per_s"] / concurrency["one_by_one_slices_per_s"]
    assert set(concurrency["lone_request_ms"]) == {"combined", "one_by_one"}
    assert "compiled" not in result


def test_bench_compiled_section(tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """--compile adds the compiled-vs-eager figures (torch.compile stands in as a pass-through:
    inductor takes minutes on 2 cores)."""
    import torch

    monkeypatch.setattr(torch, "compile", lambda fn, **options: fn)
    out = tmp_path / "bench.json"
    assert bench_main(["--quick", "--device", "cpu", "--weights", str(tiny_model_dir), "--skip", "training,web,startup",
                       "--compile", "reduce-overhead", "--json", str(out)]) == 0
    compiled = json.loads(out.read_text())["compiled"]
    assert compiled["mode"] == "reduce-overhead" and compiled["batch"] == 4
    assert compiled["compiled_ms"] > 0 and compiled["compiled_batch_slices_per_s"] > 0
    assert compiled["pixel_agreement"] == 1.0  # the same eager model underneath
    # Concurrent callers on the compiled Segmenter, at its own batch limit (no new shapes).
    assert compiled["concurrency"]["clients"] == 4 and compiled["concurrency"]["combined_slices_per_s"] > 0


@pytest.mark.slow
def test_bench_quick_web_and_startup(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = _quick(tiny_model_dir, tmp_path / "bench.json", "training")
    assert result["web"]["web_request_ms"] > 0 and result["web"]["gradio_echo_ms"] > 0
    assert result["web"]["web_8_clients_requests_per_s"] > 0
    assert result["startup"]["startup_to_first_prediction_s"] > 0


def test_training_bench_compares_both_pipelines(phantom_data: Path, tiny_model_dir: Path) -> None:
    result = bench_training(phantom_data, device="cpu", steps=12, plain_steps=2, batch_size=2, grad_accum=1,
                            precision="fp32", image_size=64, base=str(tiny_model_dir))
    assert result["segapp_images_per_s"] > 0 and result["plain_images_per_s"] > 0
    assert result["ratio"] == result["segapp_images_per_s"] / result["plain_images_per_s"]
    assert result["peak_gpu_memory_mib"] is None and result["precision"] == "fp32" and result["compile"] == "off"
    json.dumps(result)
