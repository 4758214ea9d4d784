"""The model and the Segmenter against the usual recipes: latency, batches, concurrent callers,
a compiled Segmenter, ONNX Runtime (parts 1 and 2 of ``python -m segapp.bench``).

Every function takes a loaded :class:`~segapp.inference.segmenter.Segmenter` and phantom slices
(:func:`segapp.bench.measure.phantom_slices`) and returns a dict of figures (ms, slices/s, ratios,
shares of agreeing pixels), ready for JSON.
"""

from __future__ import annotations

import functools
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from segapp.bench.measure import concurrent_rate, interleaved_ms
from segapp.inference.segmenter import Segmenter
from segapp.model.runtime import synchronize


def recipe_transformers(model: torch.nn.Module, device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
    """(a) The transformers documentation recipe with its defaults (512 x 512)."""
    from transformers import SegformerImageProcessor  # seconds to import: only for this comparison

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        processor = SegformerImageProcessor()

    @torch.inference_mode()
    def run(gray: np.ndarray) -> np.ndarray:
        inputs = processor(images=np.stack([gray] * 3, -1), return_tensors="pt").to(device)
        outputs = model(**inputs)
        mask = processor.post_process_semantic_segmentation(outputs, target_sizes=[gray.shape])[0]
        return mask.cpu().numpy().astype(np.uint8)

    return run


def recipe_notebook(model: torch.nn.Module, device: torch.device, size: int = 288) -> Callable[[np.ndarray], np.ndarray]:
    """(b) The notebook's path: PIL resize, numpy normalisation, fp32 eager, CPU upsample + argmax."""
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]

    @torch.inference_mode()
    def run(gray: np.ndarray) -> np.ndarray:
        resized = np.asarray(Image.fromarray(gray).convert("RGB").resize((size, size), Image.Resampling.BILINEAR), np.float32)
        x = (resized.transpose(2, 0, 1) / 255.0 - mean) / std
        logits = model(pixel_values=torch.from_numpy(x)[None].to(device)).logits.float().cpu()
        up = F.interpolate(logits, size=gray.shape, mode="bilinear", align_corners=False)
        return up.argmax(1)[0].numpy().astype(np.uint8)

    return run


def bench_latency(segmenter: Segmenter, slices: list[np.ndarray], repeats: int) -> dict[str, Any]:
    """Single-slice latency of ``Segmenter.predict`` vs the two recipes, same model, and how far
    our masks agree with the notebook's.

    Returns:
        ``segapp_ms``, ``transformers_recipe_ms``, ``notebook_ms`` (medians over slices of each
        slice's median), the speed-ups over both recipes, ``pixel_agreement_vs_notebook`` (mean
        share of equal pixels) and ``pixel_agreement_vs_notebook_min`` (the worst slice).
    """
    model, device = segmenter.model, segmenter.device
    sync = functools.partial(synchronize, device)

    def ours(gray: np.ndarray) -> np.ndarray:
        return segmenter.predict(gray).mask

    paths: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "segapp": ours,
        "transformers_recipe": recipe_transformers(model, device),
        "notebook": recipe_notebook(model, device),
    }
    per_slice: dict[str, list[float]] = {name: [] for name in paths}
    for gray in slices:
        timed = interleaved_ms({name: functools.partial(run, gray) for name, run in paths.items()}, repeats, sync)
        for name, value in timed.items():
            per_slice[name].append(value)
    agree = [float(np.mean(segmenter.predict(g).mask == paths["notebook"](g))) for g in slices]
    result = {f"{name}_ms": statistics.median(times) for name, times in per_slice.items()}
    result["speedup_vs_transformers_recipe"] = result["transformers_recipe_ms"] / result["segapp_ms"]
    result["speedup_vs_notebook"] = result["notebook_ms"] / result["segapp_ms"]
    result["pixel_agreement_vs_notebook"] = float(np.mean(agree))
    result["pixel_agreement_vs_notebook_min"] = float(np.min(agree))
    return result


def bench_batches(segmenter: Segmenter, slices: list[np.ndarray], sizes: list[int], seconds: float) -> dict[str, float]:
    """``predict_batch`` throughput at each batch size in ``sizes``, for at least ``seconds`` each.

    Returns:
        ``batch_{size}_slices_per_s`` per size. The Segmenter's batch limit is left at ``max(sizes)``.
    """
    result = {}
    for batch in sizes:
        segmenter.max_batch_size = batch
        group = [slices[i % len(slices)] for i in range(batch)]
        segmenter.predict_batch(group)  # warm-up for this shape
        start, done = time.perf_counter(), 0
        while time.perf_counter() - start < seconds or done == 0:
            segmenter.predict_batch(group)
            done += batch
        result[f"batch_{batch}_slices_per_s"] = done / (time.perf_counter() - start)
    segmenter.max_batch_size = max(sizes)
    return result


def bench_concurrency(segmenter: Segmenter, slices: list[np.ndarray], clients: int, per_client: int) -> dict[str, Any]:
    """``clients`` threads calling ``predict`` at once: combined (the service's default) vs one
    by one (``combine_requests`` off), same Segmenter; plus a lone call's latency in both modes.

    The Segmenter's batch limit is set to ``clients`` meanwhile (for a compiled one, pass its
    ``max_batch_size``, so no new shapes are compiled).
    """
    saved = segmenter.max_batch_size, segmenter.combine_requests
    segmenter.max_batch_size = clients
    result: dict[str, Any] = {"clients": clients}

    def lone(combine: bool) -> None:
        segmenter.combine_requests = combine
        segmenter.predict(slices[0])

    try:
        for name, combine in (("one_by_one", False), ("combined", True)):
            segmenter.combine_requests = combine
            segmenter.predict(slices[0])  # warm-up
            result[f"{name}_slices_per_s"] = concurrent_rate(
                lambda client, index: segmenter.predict(slices[(client + index) % len(slices)]), clients, per_client
            )
        result["lone_request_ms"] = interleaved_ms(
            {"one_by_one": functools.partial(lone, False), "combined": functools.partial(lone, True)},
            11,
            functools.partial(synchronize, segmenter.device),
        )
    finally:
        segmenter.max_batch_size, segmenter.combine_requests = saved
    result["speedup"] = result["combined_slices_per_s"] / result["one_by_one_slices_per_s"]
    return result


def _against(candidate: Segmenter, reference: Segmenter, slices: list[np.ndarray], names: tuple[str, str],
             batch: int, repeats: int, *, quick: bool) -> dict[str, Any]:
    """Two Segmenters on the same slices: single-slice latency (round-robin), throughput at
    ``batch``, and the share of pixels on which their masks agree.

    Returns:
        ``{A}_ms``, ``{B}_ms``, ``{A}_batch_slices_per_s``, ``{B}_batch_slices_per_s``, ``batch``,
        ``pixel_agreement`` (mean over slices) and ``worst_slice_agreement``, where ``names``
        is ``(A, B)`` for (candidate, reference).
    """
    a, b = names
    sync = functools.partial(synchronize, reference.device)
    saved = reference.max_batch_size
    reference.max_batch_size = batch
    try:
        ms = interleaved_ms(
            {a: functools.partial(candidate.predict, slices[0]), b: functools.partial(reference.predict, slices[0])},
            repeats,
            sync,
        )
        seconds = 0.5 if quick else 3.0
        rates = {name: bench_batches(target, slices, [batch], seconds)[f"batch_{batch}_slices_per_s"]
                 for name, target in ((a, candidate), (b, reference))}
    finally:
        reference.max_batch_size = saved
    agree = [float(np.mean(candidate.predict(g).mask == reference.predict(g).mask)) for g in slices]
    return {f"{a}_ms": ms[a], f"{b}_ms": ms[b], "batch": batch,
            f"{a}_batch_slices_per_s": rates[a], f"{b}_batch_slices_per_s": rates[b],
            "pixel_agreement": float(np.mean(agree)), "worst_slice_agreement": float(np.min(agree))}


def bench_compiled(segmenter: Segmenter, slices: list[np.ndarray], mode: str, repeats: int, *, quick: bool) -> dict[str, Any]:
    """A ``torch.compile``'d Segmenter (same loaded model) against the eager one."""
    batch = 4 if quick else 16
    start = time.perf_counter()
    compiled = Segmenter(segmenter.loaded, device=segmenter.device, max_batch_size=batch, compile=mode)
    compile_seconds = time.perf_counter() - start
    result = _against(compiled, segmenter, slices, ("compiled", "eager"), batch, repeats, quick=quick)
    # The app's case: request threads of a server reaching the compiled model (on its own thread).
    concurrency = bench_concurrency(compiled, slices, clients=batch, per_client=2 if quick else 16)
    return {"mode": mode, "compile_seconds": compile_seconds, **result, "concurrency": concurrency}


def bench_onnx(segmenter: Segmenter, slices: list[np.ndarray], repeats: int, *, quick: bool) -> dict[str, Any]:
    """The ONNX Runtime path (:mod:`segapp.model.onnx_runtime`) against PyTorch, same loaded model, on the CPU.

    The first Segmenter exports into a fresh cache folder (what a first start costs); the second
    finds the export there (what every later start costs).
    """
    batch = 4 if quick else 16
    with tempfile.TemporaryDirectory(prefix="segapp-bench-onnx-") as cache:
        saved = os.environ.get("SEGAPP_CACHE_DIR")
        os.environ["SEGAPP_CACHE_DIR"] = cache
        try:
            start = time.perf_counter()
            Segmenter(segmenter.loaded, device="cpu", max_batch_size=batch, runtime="onnx")
            first_seconds = time.perf_counter() - start
            start = time.perf_counter()
            onnx = Segmenter(segmenter.loaded, device="cpu", max_batch_size=batch, runtime="onnx")
            cached_seconds = time.perf_counter() - start
        finally:
            if saved is None:
                os.environ.pop("SEGAPP_CACHE_DIR", None)
            else:
                os.environ["SEGAPP_CACHE_DIR"] = saved
    result = _against(onnx, segmenter, slices, ("onnx", "torch"), batch, repeats, quick=quick)
    return {"first_start_seconds": first_seconds, "cached_start_seconds": cached_seconds,
            "speedup": result["torch_ms"] / result["onnx_ms"], **result}
