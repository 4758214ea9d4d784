"""The inference service on a tiny random model: shapes, ranges, stats, threads."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segapp.inference.segmenter import Segmenter, class_stats
from segapp.io.image import InvalidImageError
from segapp.io.readers import read_image
from segapp.model.processing import postprocess, preprocess
from segapp.model.runtime import pick_device


def _slice(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    body = ((yy - h / 2) / (0.4 * h)) ** 2 + ((xx - w / 2) / (0.45 * w)) ** 2 < 1
    return (body * 120 + rng.integers(0, 40, (h, w))).astype(np.uint8)


def test_predict_shapes_ranges_and_stats(tiny_segmenter: Segmenter, tmp_path: Path) -> None:
    path = tmp_path / "case7_day1_slice_0042_360_310_1.50_1.63.png"
    Image.fromarray(_slice(310, 360)).save(path)
    prediction = tiny_segmenter.predict(path)
    assert prediction.mask.shape == (310, 360) and prediction.mask.dtype == np.uint8
    assert prediction.mask.max() <= 3
    assert prediction.confidence.dtype == np.float32
    assert prediction.confidence.min() >= 0.25 - 1e-6 and prediction.confidence.max() <= 1.0
    assert prediction.spacing_mm == (1.63, 1.50)
    total = sum(s.pixels for s in prediction.stats.values())
    assert total == 310 * 360
    assert set(prediction.timings_ms) == {"preprocess", "model", "postprocess"}
    assert prediction.device == "cpu"
    assert prediction.stats_dict()["classes"]["stomach"]["pixels"] == prediction.stats["stomach"].pixels


def test_predict_is_the_shared_pipeline(tiny_segmenter: Segmenter) -> None:
    image = _slice(266, 266)
    with torch.inference_mode():
        logits = tiny_segmenter.network(pixel_values=preprocess([image], tiny_segmenter.processing)).logits
    masks, conf = postprocess(logits, [(266, 266)])
    prediction = tiny_segmenter.predict(image)
    assert np.array_equal(prediction.mask, masks[0].numpy())
    assert np.allclose(prediction.confidence, conf[0].numpy(), atol=1e-6)


def test_class_stats_against_hand_computed_values() -> None:
    mask = np.zeros((4, 5), np.uint8)
    mask[0, :2] = 1  # 2 px stomach
    mask[1:3, 0:3] = 3  # 6 px large bowel
    conf = np.full((4, 5), 0.5, np.float32)
    conf[0, 0] = 1.0
    stats = class_stats(mask, conf, (1.5, 2.0))
    assert stats["stomach"].pixels == 2
    assert stats["stomach"].fraction == pytest.approx(2 / 20)
    assert stats["stomach"].area_mm2 == pytest.approx(2 * 3.0)
    assert stats["stomach"].mean_confidence == pytest.approx(0.75)
    assert stats["large_bowel"].area_mm2 == pytest.approx(18.0)
    assert stats["small_bowel"].pixels == 0 and stats["small_bowel"].mean_confidence is None
    assert class_stats(mask, conf, None)["stomach"].area_mm2 is None


def test_batch_matches_single_and_mixed_sizes(tiny_segmenter: Segmenter) -> None:
    images = [_slice(266, 266, 1), _slice(310, 360, 2), _slice(234, 234, 3)]
    batch = tiny_segmenter.predict_batch(images)
    for image, prediction in zip(images, batch):
        single = tiny_segmenter.predict(image)
        assert prediction.mask.shape == image.shape
        # Batched and single runs may differ in the last float bits: compare confidences loosely.
        assert np.mean(prediction.mask == single.mask) > 0.999
        assert np.allclose(prediction.confidence, single.confidence, atol=1e-4)


def test_thread_safety_same_results(tiny_segmenter: Segmenter) -> None:
    images = [_slice(266, 266, s) for s in range(6)]
    expected = [tiny_segmenter.predict(im).mask for im in images]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda im: tiny_segmenter.predict(im).mask, images * 3))
    for index, mask in enumerate(results):
        assert np.array_equal(mask, expected[index % 6])


def test_bad_input_raises_invalid_image(tiny_segmenter: Segmenter) -> None:
    with pytest.raises(InvalidImageError):
        tiny_segmenter.predict(b"<html>not an image</html>")


def test_from_pretrained_records_timings_and_describes(tiny_model_dir: Path) -> None:
    segmenter = Segmenter.from_pretrained(tiny_model_dir, device="cpu")
    assert segmenter.load_seconds > 0 and segmenter.warmup_seconds > 0
    info = segmenter.describe()
    assert info["device"] == "cpu" and info["input_size"] == [64, 64] and info["kind"] == "folder"
    assert not segmenter.model.training


def test_pick_device() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else None
    if expected:
        assert pick_device("auto").type == "cuda"


def test_read_image_and_predict_agree_for_16_bit(tiny_segmenter: Segmenter, tmp_path: Path) -> None:
    raw = (_slice(266, 266).astype(np.uint16) * 97 + 100).astype(np.uint16)
    path = tmp_path / "slice_0001_266_266_1.50_1.50.png"
    Image.fromarray(raw).save(path)
    scan = read_image(path)
    assert scan.bit_depth == 16
    assert np.array_equal(tiny_segmenter.predict(path).mask, tiny_segmenter.predict(scan).mask)


def test_out_of_memory_falls_back_to_smaller_batches(tiny_model_dir: Path, monkeypatch) -> None:
    segmenter = Segmenter.from_pretrained(tiny_model_dir, device="cpu", max_batch_size=8)
    real = segmenter._forward
    sizes: list[int] = []

    def limited(pixels):
        sizes.append(len(pixels))
        if len(pixels) > 2:  # pretend anything above 2 slices exhausts device memory
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(pixels)

    monkeypatch.setattr(segmenter, "_forward", limited)
    images = [_slice(100, 120, s) for s in range(7)]
    predictions = segmenter.predict_batch(images)
    assert len(predictions) == 7
    for image, prediction in zip(images, predictions):
        assert prediction.mask.shape == image.shape
        assert np.array_equal(prediction.mask, real([image])[0][0])
    assert sizes[0] == 7 and max(sizes[1:]) <= 4 and segmenter.max_batch_size <= 2


def _count_batches(segmenter: Segmenter, monkeypatch, delay: float = 0.0) -> list[int]:
    """Record the size of every forward pass (optionally slowed, so calls pile up)."""
    import time

    sizes: list[int] = []
    forward = segmenter._forward

    def counting(pixels):
        sizes.append(len(pixels))
        time.sleep(delay)
        return forward(pixels)

    monkeypatch.setattr(segmenter, "_forward", counting)
    return sizes


def test_concurrent_calls_share_forward_passes_and_keep_their_own_results(tiny_model_dir: Path, monkeypatch) -> None:
    segmenter = Segmenter.from_pretrained(tiny_model_dir, device="cpu", max_batch_size=8)
    images = [_slice(64 + 8 * (s % 3), 64, s) for s in range(16)]  # three sizes, one batch
    expected = [segmenter.predict_batch([im])[0] for im in images]
    sizes = _count_batches(segmenter, monkeypatch, delay=0.05)
    import threading

    barrier = threading.Barrier(len(images))

    def call(image):
        barrier.wait()
        return segmenter.predict(image)

    with ThreadPoolExecutor(max_workers=len(images)) as pool:
        results = list(pool.map(call, images))
    for image, want, got in zip(images, expected, results):
        assert got.mask.shape == image.shape
        assert np.array_equal(got.mask, want.mask)
        assert got.stats["background"].pixels == want.stats["background"].pixels
    assert sum(sizes) == len(images)
    assert max(sizes) > 1 and max(sizes) <= 8, sizes  # combined, within max_batch_size
    assert len(sizes) < len(images)


def test_a_lone_call_runs_alone_and_combining_can_be_switched_off(tiny_model_dir: Path, monkeypatch) -> None:
    segmenter = Segmenter.from_pretrained(tiny_model_dir, device="cpu")
    sizes = _count_batches(segmenter, monkeypatch)
    segmenter.predict(_slice(64, 64))
    assert sizes == [1]
    plain = Segmenter.from_pretrained(tiny_model_dir, device="cpu", combine_requests=False)
    plain_sizes = _count_batches(plain, monkeypatch, delay=0.02)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(plain.predict, [_slice(64, 64, s) for s in range(4)]))
    assert plain_sizes == [1, 1, 1, 1]


def test_a_failing_combined_batch_fails_every_waiting_call_and_the_next_call_works(tiny_model_dir: Path, monkeypatch) -> None:
    import threading
    import time

    segmenter = Segmenter.from_pretrained(tiny_model_dir, device="cpu")
    forward = segmenter._forward
    broken = threading.Event()
    broken.set()

    def flaky(pixels):
        time.sleep(0.05)
        if broken.is_set():
            raise RuntimeError("device lost")
        return forward(pixels)

    monkeypatch.setattr(segmenter, "_forward", flaky)
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(segmenter.predict, _slice(64, 64, s)) for s in range(6)]
        errors = [f.exception(timeout=30) for f in futures]
    assert all(isinstance(e, RuntimeError) and "device lost" in str(e) for e in errors)
    broken.clear()
    assert segmenter.predict(_slice(64, 64)).mask.shape == (64, 64)


def test_compiled_mode_pads_batches_to_a_few_shapes_and_warms_them_all(tiny_model_dir: Path, monkeypatch) -> None:
    """The plumbing around torch.compile (buckets, padding, slicing, warm-up); inductor itself
    takes minutes on 2 cores, so it stands in here as a shape recorder (real compile: slow test)."""
    shapes: list[int] = []

    def fake_compile(fn, **options):
        assert options == {"mode": "reduce-overhead", "dynamic": False}

        def run(pixel_values):
            shapes.append(pixel_values.shape[0])
            return fn(pixel_values)

        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    compiled = Segmenter.from_pretrained(tiny_model_dir, device="cpu", compile="reduce-overhead", max_batch_size=6)
    assert compiled._buckets() == [1, 2, 4, 6]
    assert shapes == [1, 2, 4, 6], "warm-up compiles every bucket before serving"
    shapes.clear()
    eager = Segmenter.from_pretrained(tiny_model_dir, device="cpu", max_batch_size=6)
    images = [_slice(64, 64, s) for s in range(5)]
    for count in (1, 3, 5):
        got = compiled.predict_batch(images[:count])
        want = eager.predict_batch(images[:count])
        assert len(got) == count
        for g, w in zip(got, want):
            assert np.array_equal(g.mask, w.mask)
    assert shapes == [1, 4, 6]  # 3 -> 4 and 5 -> 6: padded, then cut back
    with pytest.raises(ValueError, match="compile must be one of"):
        Segmenter.from_pretrained(tiny_model_dir, device="cpu", compile="fast")


def test_compiled_calls_all_run_on_one_model_thread(tiny_model_dir: Path, monkeypatch) -> None:
    """CUDA graph trees are per thread in PyTorch: warm-up and every request from a server's
    thread pool must reach the compiled model on the same thread, in inference mode."""
    calls: list[tuple[int, bool]] = []
    fail = []

    def fake_compile(fn, **options):
        def run(pixel_values):
            calls.append((threading.get_ident(), torch.is_inference_mode_enabled()))
            if fail:
                raise RuntimeError("CUDA error: an illegal memory access")
            return fn(pixel_values)

        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    compiled = Segmenter.from_pretrained(tiny_model_dir, device="cpu", compile="reduce-overhead", max_batch_size=4)
    with ThreadPoolExecutor(max_workers=8) as pool:
        masks = list(pool.map(lambda seed: compiled.predict(_slice(64, 64, seed)).mask, range(16)))
    assert len(masks) == 16 and len(calls) >= 4 + 4  # warm-up buckets, then at least 4 batches of 4
    threads = {thread for thread, _ in calls}
    assert len(threads) == 1 and threading.get_ident() not in threads
    assert all(inference for _, inference in calls)
    eager = Segmenter.from_pretrained(tiny_model_dir, device="cpu")
    assert np.array_equal(masks[3], eager.predict(_slice(64, 64, 3)).mask)
    fail.append(True)  # an error on the model thread reaches the caller, and the next call works
    with pytest.raises(RuntimeError, match="illegal memory access"):
        compiled.predict(_slice(64, 64))
    fail.clear()
    assert compiled.predict(_slice(64, 64)).mask.shape == (64, 64)


@pytest.mark.slow
def test_real_torch_compile_gives_the_same_masks(tiny_model_dir: Path) -> None:
    compiled = Segmenter.from_pretrained(tiny_model_dir, device="cpu", compile="default", max_batch_size=2)
    eager = Segmenter.from_pretrained(tiny_model_dir, device="cpu", max_batch_size=2)
    images = [_slice(70, 60, s) for s in range(3)]
    for g, w in zip(compiled.predict_batch(images), eager.predict_batch(images)):
        assert np.mean(g.mask == w.mask) > 0.999
        assert np.allclose(g.confidence, w.confidence, atol=1e-4)
