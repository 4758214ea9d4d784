"""The whole benchmark of ``python -m segapp.bench``: every part in turn, all figures in one dict.

The parts live in :mod:`segapp.bench.inference` (1, 2), :mod:`segapp.bench.web` (3, 5) and
:mod:`segapp.bench.training` (4); :mod:`segapp.bench.report` words each part's summary line.
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from segapp.bench import report
from segapp.bench.inference import bench_batches, bench_compiled, bench_concurrency, bench_latency, bench_onnx
from segapp.bench.measure import phantom_slices
from segapp.bench.web import APP, bench_startup, bench_web
from segapp.inference.segmenter import Segmenter
from segapp.model.runtime import pick_device

SKIPPABLE = ("web", "training", "startup", "volume")


@dataclass(frozen=True)
class BenchOptions:
    """What to run.

    Attributes:
        weights: Any source :func:`segapp.load_model` accepts.
        device: ``auto``, ``cpu``, ``cuda``, ...
        quick: Few repeats and small batches (a smoke run).
        skip: Parts not to run, of :data:`SKIPPABLE`.
        compile: A ``torch.compile`` mode to time against the eager model; ``off`` skips that part.
        runtime: ``onnx`` also times ONNX Runtime against PyTorch (CPU only; needs ``segapp[onnx]``).
    """

    weights: str
    device: str = "auto"
    quick: bool = False
    skip: frozenset[str] = frozenset()
    compile: str = "off"
    runtime: str = "torch"


def _say(line: str) -> None:
    print(line, flush=True)


def run_benchmarks(options: BenchOptions, echo: Callable[[str], None] = _say) -> dict[str, Any]:
    """Run every part not skipped, passing ``echo`` a summary line as each one ends.

    Returns:
        ``device``, ``device_name``, ``torch``, ``weights``, ``quick``, then the figures of each
        part that ran: ``latency``, ``throughput``, ``concurrency``, ``compiled`` (with a compile
        mode), ``onnx`` (runtime onnx on the CPU), ``volume``, ``web``, ``training``, ``startup``.
    """
    quick = options.quick
    repeats = 3 if quick else 11
    segmenter = Segmenter.from_pretrained(options.weights, device=options.device, max_batch_size=64)
    device = segmenter.device
    results: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "torch": torch.__version__, "weights": options.weights, "quick": quick,
    }
    slices = phantom_slices(2 if quick else 8)
    echo(report.header(results))

    # 1. Single-slice latency against the recipes
    results["latency"] = bench_latency(segmenter, slices, repeats)
    echo(report.latency(results["latency"]))

    # 2. Throughput: batches, concurrent callers, a compiled Segmenter, ONNX Runtime
    batch_sizes = ([1, 16, 64, 256] if device.type == "cuda" else [1, 4, 16]) if not quick else [1, 4]
    results["throughput"] = bench_batches(segmenter, slices, batch_sizes, 0.5 if quick else 3.0)
    echo(report.throughput(results["throughput"]))
    clients = 4 if quick else 16
    results["concurrency"] = bench_concurrency(segmenter, slices, clients, per_client=2 if quick else 16)
    echo(report.concurrency(results["concurrency"]))
    if options.compile != "off":
        results["compiled"] = bench_compiled(segmenter, slices, options.compile, repeats, quick=quick)
        echo(report.compiled(results["compiled"]))
    if options.runtime == "onnx":
        if device.type != "cpu":
            echo(report.ONNX_SKIPPED)
        else:
            results["onnx"] = bench_onnx(segmenter, slices, repeats, quick=quick)
            echo(report.onnx(results["onnx"]))

    # 6 (before the web and training parts: the model is warm). A whole DICOM series in and out
    missing = [name for name in ("pydicom", "nibabel", "highdicom") if importlib.util.find_spec(name) is None]
    if "volume" not in options.skip and missing:
        echo(f"6. volume: skipped, needs {', '.join(missing)} (pip install -r requirements.txt)")
    elif "volume" not in options.skip:
        # Imported only now: the DICOM and NIfTI stack may be missing (checked just above).
        from segapp.bench.volume import bench_volume

        results["volume"] = bench_volume(segmenter, slices=24 if quick else 144, repeats=1 if quick else 3)
        echo(report.volume(results["volume"]))

    # 3. The web path and the page
    if "web" not in options.skip:
        # The volume tab's part (3c) times the 144-slice example; a quick run a 24-slice one.
        results["web"] = bench_web(segmenter, slices, repeats=2 if quick else 8, volume_slices=24 if quick else 144)
        echo(report.web(results["web"]))
        echo(report.page(results["web"]))
    # 4. Training
    if "training" not in options.skip:
        results["training"] = bench_train(options.device, quick)
        echo(report.training(results["training"]))
    # 5. Start-up of the app
    if "startup" not in options.skip and not APP.is_file():
        echo(f"5. start-up: skipped, no {APP.name} here (it is in a source checkout, not in the package)")
    elif "startup" not in options.skip:
        results["startup"] = bench_startup(options.weights, options.device)
        echo(report.startup(results["startup"]))
    return results


def bench_train(device: str, quick: bool) -> dict[str, Any]:
    """Training images/s against a plain DataLoader (:func:`segapp.bench.training.bench_training`)
    on fresh phantom data, with step counts that fit the device."""
    # The training code and the phantom generator load only for this part (inference-only runs start faster).
    from segapp.bench.training import bench_training
    from segapp.synthetic import generate_dataset

    with tempfile.TemporaryDirectory(prefix="segapp-bench-data-") as tmp:
        generate_dataset(Path(tmp), train=48 if quick else 240, valid=4, seed=9, progress=False)
        on_gpu = pick_device(device).type == "cuda"
        steps = (30 if quick else 300) if on_gpu else (12 if quick else 30)
        return bench_training(tmp, device=device, steps=steps, plain_steps=steps // 3 if on_gpu else 3)
