"""The inference service: load once, warm up, segment slices from any thread.

Typical use::

    segmenter = Segmenter.from_pretrained(MODEL_DIR)  # segapp.bundled.MODEL_DIR      # CUDA, else MPS, else CPU
    prediction = segmenter.predict("case1_day2_slice_0060_266_266_1.50_1.50.png")
    prediction.mask          # (H, W) uint8 class ids at the slice's own size
    prediction.stats["stomach"].area_mm2

A 2.5D model (neighbouring slices as its input channels, :mod:`segapp.model.context`) reads whole
volumes through :meth:`Segmenter.predict_volume`, or slices with their stacks through
``predict_batch(..., stacks=...)``; a lone slice fills every channel and ``prediction.notice`` says so.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from segapp.inference.options import SegmenterOptions
from segapp.inference.volume import VolumePrediction, volume_prediction
from segapp.io.image import ScanImage
from segapp.io.readers import read_image
from segapp.labels import LABELS
from segapp.model.context import context_indices, context_stack, single_slice_notice
from segapp.model.head_folding import fold
from segapp.model.processing import postprocess, preprocess, remove_small_regions
from segapp.model.runtime import pick_device, synchronize
from segapp.model.weights import LoadedModel, load_model, model_summary

if TYPE_CHECKING:
    from segapp.io.volume import ScanVolume
    from segapp.model.onnx_runtime import OnnxLogits

log = logging.getLogger(__name__)

ImageSource = ScanImage | str | os.PathLike | bytes | np.ndarray | Any


@dataclass(frozen=True)
class ClassStats:
    """Per-class figures of one prediction.

    Attributes:
        pixels: Number of pixels assigned to the class.
        fraction: ``pixels`` / all pixels of the slice, 0..1.
        area_mm2: ``pixels`` x row spacing x column spacing; None when the spacing is unknown.
        mean_confidence: Mean winning-class probability over those pixels, 0..1; None for 0 pixels.
    """

    pixels: int
    fraction: float
    area_mm2: float | None
    mean_confidence: float | None


@dataclass
class Prediction:
    """The result of segmenting one slice.

    Attributes:
        mask: (H, W) uint8 class ids (0..3) at the input's size.
        confidence: (H, W) float32 in [0, 1], the model's probability for the class it chose
            (before any small-region clean-up, which only turns pixels into background).
        stats: Class name -> :class:`ClassStats`, every label including background.
        timings_ms: ``preprocess``, ``model``, ``postprocess`` wall times in milliseconds.
        device: Where the model ran (``cpu``, ``cuda:0`` ...).
        image: The slice that was segmented (grayscale, spacing, name).
        notice: For the user, or None: set when a 2.5D model (one that reads neighbouring
            slices) was given this slice alone, so the slice filled every channel.
    """

    mask: np.ndarray
    confidence: np.ndarray
    stats: dict[str, ClassStats]
    timings_ms: dict[str, float]
    device: str
    image: ScanImage
    notice: str | None = None

    @property
    def spacing_mm(self) -> tuple[float, float] | None:
        return self.image.spacing_mm

    def stats_dict(self) -> dict[str, Any]:
        """JSON-ready statistics: per-class figures plus size, spacing, timings and device."""
        return {
            "height": int(self.mask.shape[0]),
            "width": int(self.mask.shape[1]),
            "spacing_mm": list(self.spacing_mm) if self.spacing_mm else None,
            "classes": {name: asdict(s) for name, s in self.stats.items()},
            "timings_ms": dict(self.timings_ms),
            "device": self.device,
            "notice": self.notice,
        }


def class_stats(
    mask: np.ndarray, confidence: np.ndarray, spacing_mm: tuple[float, float] | None
) -> dict[str, ClassStats]:
    """Per-class pixel counts, share, area and mean confidence of a class-id mask.

    Args:
        mask: (H, W) uint8 class ids.
        confidence: (H, W) float in [0, 1].
        spacing_mm: (row, column) pixel spacing in mm, or None.
    """
    total = mask.size
    ids = mask.ravel().astype(np.int64)
    counts = np.bincount(ids, minlength=len(LABELS))
    conf_sums = np.bincount(ids, weights=confidence.ravel().astype(np.float64), minlength=len(LABELS))
    pixel_area = spacing_mm[0] * spacing_mm[1] if spacing_mm else None
    stats = {}
    for label in LABELS:
        n = int(counts[label.id])
        stats[label.name] = ClassStats(
            pixels=n,
            fraction=n / total if total else 0.0,
            area_mm2=n * pixel_area if pixel_area is not None else None,
            mean_confidence=float(conf_sums[label.id] / n) if n else None,
        )
    return stats


class Segmenter:
    """A loaded SegFormer ready to segment slices; create once and share.

    Calls from several threads are safe: the model step is serialised by a lock
    (one device, one stream), while reading and post-processing run in the callers'
    threads. Concurrent :meth:`predict` calls are combined into batches (see
    :meth:`predict`), so a busy server runs one forward pass for many requests.
    """

    def __init__(self, loaded: LoadedModel, options: SegmenterOptions | None = None, **overrides: Any) -> None:
        """Wrap a loaded model.

        Args:
            loaded: From :func:`segapp.model.weights.load_model`.
            options: How it runs (:class:`~segapp.inference.options.SegmenterOptions`; default:
                the defaults).
            **overrides: Option keywords applied on top of ``options`` (``device="cpu"``, ...).

        Raises:
            ValueError: Options that do not fit together or with the device (``onnx`` off the CPU).
        """
        options = SegmenterOptions.of(options, **overrides)
        self.options = options
        device, compile, runtime = options.device, options.compile, options.runtime
        self.device = pick_device(device)
        self.loaded = loaded
        self.model = loaded.model.to(self.device).eval()  # one move; no-op when already there
        # What runs: the folded inference form, built from the weights as they are now.
        self.network = fold(self.model) if options.fold_head else self.model
        self.compile = compile
        self.runtime = runtime
        self._logits: Callable[[torch.Tensor], torch.Tensor] = self._eager_logits
        self.onnx: OnnxLogits | None = None
        if runtime == "onnx":
            if self.device.type != "cpu":
                raise ValueError(
                    f"runtime 'onnx' runs on the CPU (ONNX Runtime's CPU provider); the device here is "
                    f"{self.device}. Use --device cpu, or the default torch runtime on {self.device.type}."
                )
            # Here, not at the top: onnxruntime is an optional extra, imported only when asked for.
            from segapp.model.onnx_runtime import OnnxLogits

            self.onnx = OnnxLogits(self.network, loaded.processing.height, loaded.processing.width)
            self._logits = self.onnx
        self._model_thread: ThreadPoolExecutor | None = None
        if compile != "off":
            # Fixed shapes (dynamic=False): one specialised graph per batch bucket, and with
            # reduce-overhead one CUDA graph each, which removes the per-kernel launch cost.
            compiled = torch.compile(self._eager_logits, mode=compile, dynamic=False)
            # Compiled calls all run on one thread of their own. PyTorch keeps CUDA graph trees
            # per thread: before 2.12 a compiled call from any thread but the one that first
            # recorded graphs fails an assertion (pytorch#123177), and since then each thread
            # records its own graphs in its own memory pool. Callers of predict are a web
            # server's pool of threads; this way the graphs recorded at warm-up are the ones
            # every request replays.
            self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segapp-model")
            self._logits = functools.partial(self._on_model_thread, compiled)
        self.processing = loaded.processing
        if options.min_region_px is not None:
            self.processing = replace(self.processing, min_region_px=int(options.min_region_px))
        self.max_batch_size = int(options.max_batch_size)  # lowered when a batch runs out of device memory
        self._lock = threading.Lock()
        self.combine_requests = options.combine_requests
        self._pending: collections.deque[_Ticket] = collections.deque()
        self._pending_lock = threading.Lock()
        self._leader_lock = threading.Lock()
        self.load_seconds = 0.0
        self.warmup_seconds = 0.0
        if options.warmup:
            start = time.perf_counter()
            probe = np.tile(np.arange(self.processing.width, dtype=np.uint8), (self.processing.height, 1))
            for bucket in self._buckets() if compile != "off" else [1]:
                self._forward([probe] * bucket)
            self.warmup_seconds = time.perf_counter() - start

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike[str], options: SegmenterOptions | None = None,
                        **overrides: Any) -> Segmenter:
        """Load weights from any source :func:`segapp.load_model` accepts, straight onto the device.

        ``options`` and ``overrides`` as for :class:`Segmenter`. Records ``load_seconds`` and
        ``warmup_seconds``.
        """
        options = SegmenterOptions.of(options, **overrides)
        target = pick_device(options.device)
        start = time.perf_counter()
        loaded = load_model(source, device=target)
        load_seconds = time.perf_counter() - start
        segmenter = cls(loaded, replace(options, device=target))
        segmenter.load_seconds = load_seconds
        return segmenter

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def _forward(self, pixels: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
        """(H, W) uint8 slices or (3, H, W) channel stacks -> (masks, confidences, timings). The
        core of every prediction."""
        timings: dict[str, float] = {}
        sizes = [tuple(p.shape[-2:]) for p in pixels]
        with self._lock:
            start = time.perf_counter()
            pixel_values = preprocess(pixels, self.processing, self.device)  # (B, 3, h, w)
            synchronize(self.device)
            timings["preprocess"] = (time.perf_counter() - start) * 1000
            start = time.perf_counter()
            batch = pixel_values.shape[0]
            if self.compile != "off":  # pad to the bucket size: no new compilation per batch size
                bucket = next(b for b in self._buckets() if b >= batch)
                if bucket > batch:
                    pixel_values = torch.cat([pixel_values, pixel_values[-1:].expand(bucket - batch, -1, -1, -1)])
            with self._autocast():
                logits = self._logits(pixel_values)[:batch]  # (B, C, h/4, w/4)
            synchronize(self.device)
            timings["model"] = (time.perf_counter() - start) * 1000
            start = time.perf_counter()
            masks, confidence = postprocess(logits, sizes)
            masks_np = [m.cpu().numpy() for m in masks]
            conf_np = [c.cpu().numpy() for c in confidence]
        # CPU-only clean-up outside the model lock, so it never holds up the next batch.
        if self.processing.min_region_px > 1:
            masks_np = [remove_small_regions(m, self.processing.min_region_px) for m in masks_np]
        timings["postprocess"] = (time.perf_counter() - start) * 1000
        return masks_np, conf_np, timings

    def _eager_logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.network(pixel_values=pixel_values).logits

    def _on_model_thread(self, fn: Callable[[torch.Tensor], torch.Tensor], pixel_values: torch.Tensor) -> torch.Tensor:
        """Run ``fn`` on the model thread and wait for it (exceptions are re-raised here)."""
        assert self._model_thread is not None

        def run() -> torch.Tensor:
            # Inference mode and autocast are per thread: set them where the model runs.
            with torch.inference_mode(), self._autocast():
                return fn(pixel_values)

        return self._model_thread.submit(run).result()

    def _buckets(self) -> list[int]:
        """Batch sizes compiled for: powers of two up to ``max_batch_size`` (and it)."""
        sizes = [1 << i for i in range(self.max_batch_size.bit_length()) if 1 << i < self.max_batch_size]
        return [*sizes, self.max_batch_size]

    def _forward_fitting(self, pixels: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
        """:meth:`_forward`, halving the batch on device out-of-memory until it fits (then
        remembering the size that fit for later batches)."""
        try:
            return self._forward(pixels)
        except torch.OutOfMemoryError:
            if len(pixels) == 1:
                raise
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            half = (len(pixels) + 1) // 2
            self.max_batch_size = min(self.max_batch_size, half)
            log.warning("out of device memory at batch %d; continuing with batches of %d", len(pixels), half)
            first = self._forward_fitting(pixels[:half])
            second = self._forward_fitting(pixels[half:])
            return first[0] + second[0], first[1] + second[1], first[2]

    @staticmethod
    def _as_scan(image: ImageSource) -> ScanImage:
        return image if isinstance(image, ScanImage) else read_image(image)

    def predict(self, image: ImageSource) -> Prediction:
        """Segment one slice.

        Concurrent calls are combined: each call queues its slice, and whichever caller finds
        the model free runs everything queued (up to ``max_batch_size``) as one batch and hands
        each caller its own result. A lone call runs at once, with no waiting for company; under
        load, slices that arrived while the model was busy share the next forward pass.

        Args:
            image: A :class:`ScanImage`, or anything :func:`segapp.read_image` reads.

        Returns:
            The :class:`Prediction` at the slice's own size.

        Raises:
            segapp.InvalidImageError: the input is not a usable image.
        """
        scan = self._as_scan(image)
        if not self.combine_requests:
            return self.predict_batch([scan])[0]
        ticket = _Ticket(scan)
        with self._pending_lock:
            self._pending.append(ticket)
        while not ticket.done:
            with self._leader_lock:  # callers queue here while a batch runs
                if ticket.done:  # a previous leader served this call
                    break
                with self._pending_lock:
                    batch = [self._pending.popleft() for _ in range(min(len(self._pending), self.max_batch_size))]
                self._serve(batch)
        if ticket.error is not None:
            raise ticket.error
        assert ticket.result is not None
        return ticket.result

    def _serve(self, batch: list[_Ticket]) -> None:
        """Run one combined batch and give every ticket its result (or the batch's error)."""
        try:
            results = self.predict_batch([ticket.scan for ticket in batch])
        except BaseException as exc:  # every waiting caller gets the failure, none hangs
            for ticket in batch:
                ticket.error, ticket.done = exc, True
            if not isinstance(exc, Exception):
                raise
            return
        for ticket, result in zip(batch, results):
            ticket.result, ticket.done = result, True

    def predict_batch(self, images: Sequence[ImageSource], *,
                      stacks: Sequence[np.ndarray] | None = None) -> list[Prediction]:
        """Segment many slices, ``max_batch_size`` at a time; sizes may differ.

        Timings of each prediction are those of the batch it ran in.

        Args:
            images: The slices.
            stacks: For a 2.5D model (``processing.is_2_5d``), each slice's (3, H, W) uint8 channel
                stack of it and its neighbours (:func:`segapp.model.context.context_stack`), in the
                order of ``images``. Without them a 2.5D model gets each slice in every channel,
                and each prediction carries a ``notice`` saying so. Ignored by 2D models, whose
                channels are the slice itself anyway.
        """
        scans = [self._as_scan(image) for image in images]
        notice = None
        if not self.processing.is_2_5d:
            inputs: Sequence[np.ndarray] = [scan.pixels for scan in scans]
        elif stacks is None:
            inputs = [scan.pixels for scan in scans]  # broadcast to the channels: the slice alone
            notice = single_slice_notice(self.processing.context_offsets)
        else:
            if len(stacks) != len(scans):
                raise ValueError(f"{len(stacks)} channel stacks for {len(scans)} slices")
            for scan, stack in zip(scans, stacks):
                if stack.shape != (3, *scan.pixels.shape):
                    raise ValueError(f"a channel stack is {stack.shape}, not (3, {scan.height}, {scan.width})")
            inputs = stacks
        predictions: list[Prediction] = []
        for first in range(0, len(scans), self.max_batch_size):
            chunk = scans[first : first + self.max_batch_size]
            masks, confidences, timings = self._forward_fitting(inputs[first : first + self.max_batch_size])
            for scan, mask, conf in zip(chunk, masks, confidences):
                stats = class_stats(mask, conf, scan.spacing_mm)
                predictions.append(Prediction(mask, conf, stats, dict(timings), str(self.device), scan, notice))
        return predictions

    def predict_volume(self, volume: ScanVolume, *, batch_size: int | None = None,
                       progress: Callable[[int, int], None] | None = None,
                       min_component_ml: float | None = None) -> VolumePrediction:
        """Segment every slice of a :class:`~segapp.io.volume.ScanVolume` through :meth:`predict_batch`.

        With a 2D model slice k gets exactly the mask it would get alone. A 2.5D model gets each
        slice with its neighbours in the input channels (:func:`segapp.model.context.context_indices`
        over the volume's slices: at the ends, the nearest slice there is).

        Args:
            volume: The scan; its slices are fed as the slice reader makes them (8-bit, per slice).
            batch_size: Slices per forward pass (default: ``max_batch_size``).
            progress: Called with (slices done, total) after each batch; an exception it raises
                stops the run.
            min_component_ml: The 3D clean-up (:func:`segapp.inference.volume.remove_small_components`):
                None: the model folder's; 0: off.
        """
        start = time.perf_counter()
        slices = volume.slices_uint8()
        spacing = (volume.spacing_mm[1], volume.spacing_mm[2])
        step = max(1, batch_size or self.max_batch_size)
        labels = np.empty(volume.shape, dtype=np.uint8)
        confidence = np.empty(volume.shape, dtype=np.float16)
        total = volume.shape[0]
        offsets = self.processing.context_offsets
        neighbours = context_indices(range(total), offsets) if self.processing.is_2_5d else None
        for first in range(0, total, step):
            rows = range(first, min(total, first + step))
            chunk = [ScanImage(pixels=slices[k], spacing_mm=spacing, bit_depth=8, original_mode=volume.kind)
                     for k in rows]
            stacks = None if neighbours is None else [context_stack(slices, neighbours, k) for k in rows]
            for offset, prediction in enumerate(self.predict_batch(chunk, stacks=stacks)):
                labels[first + offset] = prediction.mask
                confidence[first + offset] = prediction.confidence
            if progress is not None:
                progress(min(total, first + step), total)
        if min_component_ml is None:
            min_component_ml = self.processing.min_component_ml
        return volume_prediction(volume, labels, confidence, device=str(self.device),
                                 min_component_ml=min_component_ml, started=start)

    def describe(self) -> dict[str, Any]:
        """Model, device and start-up figures for pages and logs."""
        info = model_summary(self.loaded)
        info.update(
            device=str(self.device),
            runtime="onnxruntime (cpu)" if self.onnx is not None else "torch",
            load_seconds=round(self.load_seconds, 3),
            warmup_seconds=round(self.warmup_seconds, 3),
        )
        if self.onnx is not None:
            info.update(onnx_file=str(self.onnx.path), onnx_exported=self.onnx.exported,
                        onnx_prepare_seconds=round(self.onnx.prepare_seconds, 3))
        return info


@dataclass(eq=False)
class _Ticket:
    """One queued :meth:`Segmenter.predict` call (written by the leader under its lock)."""

    scan: ScanImage
    result: Prediction | None = None
    error: BaseException | None = None
    done: bool = False


__all__ = ["ClassStats", "Prediction", "Segmenter", "class_stats"]
