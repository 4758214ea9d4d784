"""The benchmark runs end to end and produces well-formed JSON (speed is not asserted)."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

from segapp.bench.core import BenchOptions, run_benchmarks
from segapp.bench.training import bench_augment, bench_training


def _quick(weights: Path, skip: str, **options: str) -> tuple[dict, list[str]]:
    lines: list[str] = []
    result = run_benchmarks(
        BenchOptions(weights=str(weights), device="cpu", quick=True, skip=frozenset(skip.split(",")), **options),
        echo=lines.append,
    )
    assert json.loads(json.dumps(result)) == result  # all of it fits JSON as it is
    return result, lines


def test_bench_quick_figures_and_lines(tiny_model_dir: Path) -> None:
    result, lines = _quick(tiny_model_dir, "training,web,startup,volume")
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
    assert [line.split(" ")[0] for line in lines] == ["segapp.bench", "1.", "2.", "2b."]
    assert lines[3].startswith("2b. 4 concurrent callers: combined ")


def test_bench_command_prints_and_writes_the_figures(tiny_model_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """``python -m segapp.bench`` (run in this process): a line per part, then the JSON that --json also writes."""
    out = tmp_path / "bench.json"
    argv = ["--quick", "--device", "cpu", "--weights", str(tiny_model_dir), "--skip", "training,web,startup,volume",
            "--json", str(out)]
    monkeypatch.setattr(sys, "argv", ["python -m segapp.bench", *argv])
    monkeypatch.delitem(sys.modules, "segapp.bench.__main__", raising=False)  # runpy runs it afresh
    with pytest.raises(SystemExit) as exited:
        runpy.run_module("segapp.bench", run_name="__main__")
    assert exited.value.code == 0
    stdout = capsys.readouterr().out.strip().splitlines()
    assert stdout[0].startswith("segapp.bench on cpu (") and stdout[1].startswith("1. single slice: segapp ")
    written = json.loads(out.read_text())
    assert json.loads(stdout[-1]) == written
    assert written["weights"] == str(tiny_model_dir) and written["quick"] is True and "web" not in written


def test_bench_compiled_section(tiny_model_dir: Path, monkeypatch) -> None:
    """A compile mode adds the compiled-vs-eager figures (torch.compile stands in as a pass-through:
    inductor takes minutes on 2 cores)."""
    import torch

    monkeypatch.setattr(torch, "compile", lambda fn, **options: fn)
    result, lines = _quick(tiny_model_dir, "training,web,startup,volume", compile="reduce-overhead")
    compiled = result["compiled"]
    assert compiled["mode"] == "reduce-overhead" and compiled["batch"] == 4
    assert compiled["compiled_ms"] > 0 and compiled["compiled_batch_slices_per_s"] > 0
    assert compiled["pixel_agreement"] == 1.0  # the same eager model underneath
    # Concurrent callers on the compiled Segmenter, at its own batch limit (no new shapes).
    assert compiled["concurrency"]["clients"] == 4 and compiled["concurrency"]["combined_slices_per_s"] > 0
    assert lines[-1].startswith("2c. compiled (reduce-overhead, ")


@pytest.mark.slow
def test_bench_quick_web_and_startup(tiny_model_dir: Path) -> None:
    from segapp.bench.browser import page_available

    result, lines = _quick(tiny_model_dir, "training")
    assert result["web"]["web_request_ms"] > 0 and result["web"]["gradio_echo_ms"] > 0
    assert result["web"]["web_8_clients_requests_per_s"] > 0
    assert result["startup"]["startup_to_first_prediction_s"] > 0
    if page_available() is None:  # the page parts, 3b and 3c, run where Chromium is
        volume = result["web"]["volume_page"]
        assert volume["steps"] == 20 and volume["volume_result_ms"] > 0 and volume["step_ms_p95"] > 0
        assert any(line.split("\n")[-1].startswith("3c. the volume tab in Chromium: ") for line in lines)


def test_bench_volume_page_part_and_its_report_line(tiny_segmenter, tmp_path: Path) -> None:
    """Part 3c as ``python -m segapp.bench`` runs it (its own Chromium), on a small example, and
    the report's line for it (the whole quick run is the slow test above)."""
    from helpers import served_page

    from segapp.bench import report
    from segapp.bench.browser import bench_volume_page, page_available
    from segapp.ui.volume import make_example_zip

    missing = page_available()
    if missing:
        pytest.skip(missing)
    with served_page(tiny_segmenter, None) as url:
        volume = bench_volume_page(url, make_example_zip(tmp_path, count=6), steps=2)
    assert volume["steps"] == 4 and volume["volume_result_ms"] > 0
    assert 0 < volume["step_ms_p50"] <= volume["step_ms_p95"] <= volume["step_ms_max"]
    line = report.page({"page": {"page_submit_ms": 1.0, "baseline_ms": 1.0, "overhead": 0.0},
                        "volume_page": volume, "page_skipped": None})
    assert line.splitlines()[-1].startswith("3c. the volume tab in Chromium: Segment volume to result ")
    assert "(keyboard, 4 steps) p50 " in line


def test_training_bench_compares_both_pipelines(phantom_data: Path, tiny_model_dir: Path) -> None:
    result = bench_training(phantom_data, device="cpu", steps=12, plain_steps=2, batch_size=2, grad_accum=1,
                            precision="fp32", image_size=64, base=str(tiny_model_dir))
    assert result["segapp_images_per_s"] > 0 and result["plain_images_per_s"] > 0
    assert result["ratio"] == result["segapp_images_per_s"] / result["plain_images_per_s"]
    assert result["peak_gpu_memory_mib"] is None and result["precision"] == "fp32" and result["compile"] == "off"
    json.dumps(result)


def test_augment_cost_is_timed_per_preset_against_the_step(tiny_model_dir: Path) -> None:
    result = bench_augment(device="cpu", batch_size=2, image_size=64, repeats=1, base=str(tiny_model_dir))
    assert set(result["augment_ms"]) == {"classic", "domain"} and result["step_ms"] > 0
    for name, ms in result["augment_ms"].items():
        assert ms > 0 and result["augment_share"][name] == ms / result["step_ms"]
    json.dumps(result)


def test_bench_volume_part(tiny_model_dir: Path) -> None:
    """Part 6: a DICOM series read, segmented and written in every volume format, each stage timed."""
    from segapp.bench.volume import bench_volume
    from segapp.inference.segmenter import Segmenter

    result = bench_volume(Segmenter.from_pretrained(tiny_model_dir, device="cpu"), slices=3, repeats=1)
    stages = ("read", "model", "nifti", "dicom_seg", "rtstruct")
    assert result["slices"] == 3 and all(result[f"{s}_ms"] > 0 for s in stages)
    assert result["total_ms"] == pytest.approx(sum(result[f"{s}_ms"] for s in stages))
    assert result["non_model_share"] == pytest.approx((result["total_ms"] - result["model_ms"]) / result["model_ms"])
    from segapp.bench import report

    assert report.volume(result).startswith("6. volume (3 slices of 266 x 266, DICOM in): read ")


def test_bench_runs_a_2_5d_model(tmp_path: Path) -> None:
    """A model folder with neighbouring slices as channels benchmarks like a 2D one: single slices,
    each in every channel (the volume part, each slice with its neighbours, takes half a minute
    here: predict_volume's 2.5D path is tested in tests/inference/test_context_serving.py)."""
    from helpers import save_tiny_model

    weights = save_tiny_model(tmp_path / "ctx", context=(-2, 0, 2))
    result, _ = _quick(weights, "training,web,startup,volume")
    assert result["latency"]["segapp_ms"] > 0 and result["throughput"]["batch_4_slices_per_s"] > 0
    assert 0 <= result["latency"]["pixel_agreement_vs_notebook"] <= 1
