"""Batch prediction of many inputs: slice files (files, folders, glob patterns) and volumes, written
as masks, overlays, a competition ``submission.csv``, ``stats.csv`` and volume files with
``volumes.csv`` (:mod:`segapp.predict` is its command line and documents the outputs).

Slices of one size are batched through :meth:`Segmenter.predict_batch` while threads read ahead
and write behind; a 2.5D model gets each slice's neighbours among the inputs (:class:`_Neighbours`).
Under ``torchrun`` every process takes its share of the inputs and rank 0 writes the tables.
"""

from __future__ import annotations

import os
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from segapp.bundled import MODEL_DIR
from segapp.inference.batch_inputs import InputFile, case_day, collect_inputs, is_volume_source, volume_name
from segapp.inference.exports import (
    VOLUME_FORMATS,
    volume_row,
)
from segapp.inference.pipeline import (
    INPUT_REASONS,
    VolumeError,
    process_volume,
    terminal_progress,
    write_volume,
)
from segapp.inference.render import overlay
from segapp.inference.segmenter import Prediction, Segmenter
from segapp.inference.tables import SUBMISSION_CLASSES, PredictSummary, Tables, stats_row
from segapp.inference.volume import volume_prediction
from segapp.io.casefolder import read_png_slices
from segapp.io.image import InvalidImageError, ScanImage, save_mask_png, save_png
from segapp.io.naming import parse_slice_name
from segapp.io.readers import read_image
from segapp.io.rle import rle_encode
from segapp.io.volume import DEFAULT_MAX_VOXELS, InvalidVolumeError
from segapp.labels import Palette
from segapp.model.context import context_stack, named_context_indices, single_slice_notice
from segapp.model.distributed import Dist, leave_distributed, setup_distributed
from segapp.model.onnx_runtime import OnnxError

SLICE_FORMATS = ("png", "overlay", "rle")
FORMATS = (*SLICE_FORMATS, *VOLUME_FORMATS)


class PredictError(ValueError):
    """A problem that stops the whole run (no input at all, unusable options)."""


def _chosen_formats(formats: Iterable[str]) -> tuple[set[str], bool]:
    """(formats named, whether ``all`` was asked for)."""
    chosen: set[str] = set()
    every = False
    for name in formats:
        if name == "all":
            every = True
            chosen.update(SLICE_FORMATS)
        elif name in FORMATS:
            chosen.add(name)
        else:
            raise PredictError(f"unknown format {name!r}; choose from {', '.join(FORMATS)} or all")
    return chosen, every


class Reporter:
    """Collects failures into the summary and prints each as one line (through the bar if any,
    or to ``log``, which may drop the line: the page shows failures by neutral names instead)."""

    def __init__(self, summary: PredictSummary, log: Callable[[str], None] | None) -> None:
        self.summary, self.log = summary, log
        self.bar: Any = None  # a tqdm bar while one is shown

    def fail(self, source: str | os.PathLike, reason: str, verb: str = "skipped") -> None:
        self.summary.failed.append((os.fspath(source), reason))
        self._print(f"{verb} {os.fspath(source)}: {reason}")

    def note(self, source: str | os.PathLike, text: str) -> None:
        """A remark that is no failure (e.g. a volume's skipped non-image files)."""
        self._print(f"note {os.fspath(source)}: {text}")

    def _print(self, line: str) -> None:
        if self.log is not None:
            self.log(line)
        elif self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)


def predict(
    inputs: Sequence[str | os.PathLike],
    *,
    out: str | os.PathLike,
    weights: str | os.PathLike = MODEL_DIR,
    formats: Iterable[str] = ("png",),
    batch_size: int = 16,
    device: str = "auto",
    segmenter: Segmenter | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    min_region_px: int | None = None,
    compile: str = "off",
    runtime: str = "torch",
    series: str | None = None,
) -> PredictSummary:
    """Segment every slice and volume found in ``inputs`` and write the chosen outputs under ``out``.

    Args:
        inputs: Files, folders or glob patterns (see :func:`collect_inputs`), and volumes (see
            :func:`is_volume_source`).
        out: Output folder, created if needed; existing files of the same names are replaced.
        weights: Any source :func:`segapp.load_model` accepts (ignored when ``segmenter`` is given);
            by default the bundled demonstration weights.
        formats: Any of ``png``, ``overlay``, ``rle`` (slices), ``nifti``, ``dicom-seg``,
            ``rtstruct`` (volumes), or ``all``; ``stats.csv`` / ``volumes.csv`` are always written.
        batch_size: Slices per forward pass (slices of one size only).
        device: ``auto``, ``cpu``, ``cuda``, ``mps``...
        segmenter: An already loaded model to use instead of loading ``weights``.
        progress: Show a progress bar.
        log: Called with one line per skipped or failed input (default: print to stderr).
        min_region_px: Override the weights' small-region clean-up (None: the folder's value;
            0: off). Ignored when ``segmenter`` is given.
        compile: ``torch.compile`` mode (:class:`~segapp.inference.segmenter.Segmenter`); pays off for
            large folders on a GPU. Ignored when ``segmenter`` is given.
        runtime: ``torch``, or ``onnx`` (ONNX Runtime on the CPU; optional extra). Ignored
            when ``segmenter`` is given.
        series: SeriesInstanceUID to read from DICOM inputs that hold several series.

    Returns:
        The :class:`PredictSummary`; ``failed`` lists every skipped input with the reason.

    Raises:
        PredictError: Unknown format, ``batch_size`` below 1, no readable input at all
            listed (every input missing or empty), or a runtime that cannot run here.
        segapp.ModelLoadError: The weights cannot be loaded.
    """
    chosen, every = _chosen_formats(formats)
    if batch_size < 1:
        raise PredictError(f"batch size must be at least 1, got {batch_size}")
    out_dir = Path(out)
    entries, volume_inputs, problems = _sorted_inputs(inputs, out_dir)
    summary = PredictSummary(out=out_dir)
    report = Reporter(summary, log)
    names = _volume_names(entries, volume_inputs)
    dist, run_device = _join_processes(device)
    if dist.main:
        for source, reason in problems:
            report.fail(source, reason)
    if dist.world > 1:  # torchrun: each process takes its share of the inputs, each input exactly once
        entries, volume_inputs = _share(entries, volume_inputs, dist)
    try:
        if segmenter is None:
            try:
                segmenter = Segmenter.from_pretrained(
                    weights, device=run_device, max_batch_size=batch_size, min_region_px=min_region_px,
                    compile=compile, runtime=runtime,
                )
            except (ValueError, OnnxError) as exc:  # option combinations, missing extra
                raise PredictError(str(exc)) from None
        out_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        tables = Tables()
        if entries:
            keep = "nifti" in chosen or every
            kept = predict_slices(entries, segmenter, chosen, out_dir, tables, report, batch_size=batch_size,
                                   progress=progress, keep=keep)
            if keep:
                tables.volumes += _case_day_volumes(kept, segmenter, out_dir, report)
        for path in volume_inputs:
            row = _predict_volume(path, names[path], segmenter, chosen, every, out_dir, report,
                                  batch_size=batch_size, progress=progress, series=series)
            if row is not None:
                tables.volumes.append(row)
        _write_tables(tables, summary, out_dir, chosen, dist)
        summary.seconds = time.perf_counter() - start
    finally:
        leave_distributed(dist, together=sys.exc_info()[0] is None)
    return summary


def _sorted_inputs(inputs: Sequence[str | os.PathLike], out_dir: Path
                   ) -> tuple[list[InputFile], list[Path], list[tuple[str, str]]]:
    """(slice files, volume inputs, problems as (input, reason)); PredictError when nothing is left."""
    is_volume = [is_volume_source(Path(os.fspath(i))) for i in inputs]  # reads headers: once per input
    volume_inputs = [Path(os.fspath(i)) for i, volume in zip(inputs, is_volume) if volume]
    slice_inputs = [i for i, volume in zip(inputs, is_volume) if not volume]
    entries, problems = collect_inputs(slice_inputs, exclude=out_dir) if slice_inputs else ([], [])
    if not entries and not volume_inputs:
        raise PredictError("no image to segment: " + "; ".join(f"{s}: {r}" for s, r in problems))
    return entries, volume_inputs, problems


def _volume_names(entries: Sequence[InputFile], volume_inputs: Sequence[Path]) -> dict[Path, str]:
    """Output folder names for every volume, decided before the inputs are shared out, so two
    processes can never pick the same name (case-days among the slices keep their own)."""
    taken = {key for key in map(case_day, entries) if key is not None}
    return {path: volume_name(path, taken) for path in volume_inputs}


def _write_tables(tables: Tables, summary: PredictSummary, out_dir: Path, chosen: set[str], dist: Dist) -> None:
    """The CSVs, by rank 0 from every process's rows; the failures of every process into ``summary``."""
    if dist.world > 1:
        tables.failed = [list(item) for item in summary.failed]
        tables = tables.gathered(out_dir, dist)
        if dist.main:
            summary.failed = [(source, reason) for source, reason in tables.failed]
    if dist.main:
        tables.write(out_dir, chosen, summary)


def _join_processes(device: str) -> tuple[Dist, str]:
    """Under torchrun: join the process group (gloo or NCCL) and take this process's device;
    a plain run is rank 0 of 1 on ``device``."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return Dist(), device
    dist, run_device = setup_distributed(device)
    return dist, str(run_device)


def _share(entries: list[InputFile], volume_inputs: list[Path], dist: Dist) -> tuple[list[InputFile], list[Path]]:
    """This process's inputs: units (a case-day's slices together, each other slice, each volume)
    dealt round-robin in a sorted order every process computes alike."""
    def unit(entry: InputFile) -> str:
        return "slices:" + (case_day(entry) or entry.relative)

    units = sorted({unit(e) for e in entries} | {f"volume:{p.resolve()}" for p in volume_inputs})
    mine = {u for i, u in enumerate(units) if i % dist.world == dist.rank}
    return ([e for e in entries if unit(e) in mine], [p for p in volume_inputs if f"volume:{p.resolve()}" in mine])


def _read(entry: InputFile) -> ScanImage | str:
    """The decoded slice, or the reason it cannot be used."""
    try:
        return read_image(entry.path)
    except InvalidImageError as exc:
        return str(exc)


def _batches(
    entries: Sequence[InputFile],
    batch_size: int,
    pool: ThreadPoolExecutor,
    on_failure: Callable[[InputFile, str], None],
) -> Iterator[list[tuple[InputFile, ScanImage]]]:
    """Read ahead in threads and yield batches of same-size slices, holding at most a few batches."""
    window = 4 * batch_size
    waiting: dict[tuple[int, int], list[tuple[InputFile, ScanImage]]] = {}
    for start in range(0, len(entries), window):
        chunk = entries[start : start + window]
        for entry, scan in zip(chunk, pool.map(_read, chunk)):
            if isinstance(scan, str):
                on_failure(entry, scan)
                continue
            group = waiting.setdefault(scan.size, [])
            group.append((entry, scan))
            if len(group) == batch_size:
                yield waiting.pop(scan.size)
    yield from (group for group in waiting.values() if group)


def predict_slices(entries: Sequence[InputFile], segmenter: Segmenter, chosen: set[str], out_dir: Path,
                   tables: Tables, report: Reporter, *, batch_size: int, progress: bool, keep: bool,
                   palette: Palette | None = None, stop: Callable[[], bool] | None = None,
                   ) -> dict[InputFile, Prediction]:
    """The slice inputs: masks and overlays written, stats and submission rows added to ``tables``;
    returns the predictions of case-day slices when ``keep`` (for their NIfTI volumes).

    Overlays are drawn in ``palette`` (None: the label table's colours). ``stop`` is asked between
    batches; once it says True the slices not yet segmented are reported as failed (a time limit).
    """
    if progress:
        report.bar = tqdm(total=len(entries), desc="segmenting", unit="slice")
    bar = report.bar

    seen: set[InputFile] = set()

    def unreadable(entry: InputFile, reason: str) -> None:
        seen.add(entry)
        report.fail(entry.path, reason)
        if bar is not None:
            bar.update(1)

    stats_rows: list[dict[str, Any]] = []
    submission: list[tuple[str, str, str]] = []
    pending: deque[tuple[InputFile, Future]] = deque()
    broken: set[str] = set()
    kept: dict[InputFile, Prediction] = {}

    def settle(limit: int) -> None:
        """Collect finished writes, waiting while more than ``limit`` are outstanding."""
        while pending and (len(pending) > limit or pending[0][1].done()):
            entry, job = pending.popleft()
            try:
                job.result()
            except OSError as exc:  # disk full, permissions: report it, keep going
                if entry.relative not in broken:
                    broken.add(entry.relative)
                    report.fail(entry.path, f"could not write its output ({exc.strerror or exc})", "failed")

    context = _Neighbours(entries, segmenter.processing.context_offsets, 4 * batch_size) \
        if segmenter.processing.is_2_5d else None
    # Threads read ahead and write behind while the model runs (PNG coding releases the GIL);
    # outstanding writes are bounded so memory stays flat over thousands of slices.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for batch in _batches(entries, batch_size, pool, unreadable):
            if stop is not None and stop():
                break
            seen.update(entry for entry, _ in batch)
            stacks = None if context is None else context.stacks(batch)
            predictions = segmenter.predict_batch([scan for _, scan in batch], stacks=stacks)
            for (entry, scan), prediction in zip(batch, predictions):
                mask = prediction.mask
                if "png" in chosen:
                    pending.append((entry, pool.submit(save_mask_png, mask, entry.output(out_dir / "masks"))))
                if "overlay" in chosen:
                    target = entry.output(out_dir / "overlays")
                    pending.append((entry, pool.submit(_save_overlay, scan.pixels, mask, target, palette)))
                if "rle" in chosen:
                    submission += [
                        (entry.id, lb.name, rle_encode(mask == lb.id)) for lb in SUBMISSION_CLASSES
                    ]
                stats_rows.append(stats_row(entry, prediction))
                if keep and case_day(entry) is not None:
                    kept[entry] = prediction
            if bar is not None:
                bar.update(len(batch))
            settle(4 * batch_size)
        settle(0)
    for entry in entries:
        if entry not in seen:  # stopped: the rest was never segmented
            report.fail(entry.path, "not segmented: the time limit was reached", "failed")
    if bar is not None:
        bar.close()
        report.bar = None

    if context is not None and context.alone:
        report.note(f"{context.alone} slice(s)", "no neighbouring slice among the inputs (no caseN_dayD_slice_SSSS "
                    "name, or alone in its case-day). " + single_slice_notice(segmenter.processing.context_offsets))
    tables.stats += stats_rows
    tables.submission += [list(row) for row in submission]
    return kept


class _Neighbours:
    """A 2.5D model's channel stacks for slice inputs: neighbours found by their competition names
    among the inputs (:func:`segapp.model.context.named_context_indices`), their pixels read
    through a small cache (inputs come sorted, so each file is read about once more at most)."""

    def __init__(self, entries: Sequence[InputFile], offsets: Sequence[int], cache_size: int) -> None:
        self.entries = entries
        self.position = {entry: i for i, entry in enumerate(entries)}
        self.rows = named_context_indices([os.fspath(e.path) for e in entries], offsets)
        self.cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.cache_size = max(8, cache_size)
        self.alone = 0  # slices with no neighbour: their stack is the slice three times

    def _pixels(self, index: int) -> np.ndarray | None:
        if index in self.cache:
            self.cache.move_to_end(index)
            return self.cache[index]
        try:
            pixels = read_image(self.entries[index].path).pixels
        except InvalidImageError:
            return None  # the channel takes the slice itself (context_stack's rule for a misfit)
        self._keep(index, pixels)
        return pixels

    def _keep(self, index: int, pixels: np.ndarray) -> None:
        self.cache[index] = pixels
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)

    def stacks(self, batch: Sequence[tuple[InputFile, ScanImage]]) -> list[np.ndarray]:
        """(3, H, W) stacks of the batch's slices, in its order."""
        out = []
        for entry, scan in batch:
            index = self.position[entry]
            self._keep(index, scan.pixels)
            row = self.rows[index]
            self.alone += bool((row == index).all())
            planes = {index: scan.pixels}
            for j in map(int, row):
                if j != index:
                    pixels = self._pixels(j)
                    planes[j] = scan.pixels if pixels is None else pixels
            out.append(context_stack(planes, self.rows, index))
        return out


def _case_day_volumes(kept: dict[InputFile, Prediction], segmenter: Segmenter, out_dir: Path,
                      report: Reporter) -> list[dict[str, Any]]:
    """NIfTI volumes of the case-days among the slice inputs, from their slice predictions."""
    groups: dict[str, list[InputFile]] = {}
    for entry in kept:
        groups.setdefault(case_day(entry) or "", []).append(entry)
    rows = []
    for key, group in sorted(groups.items()):
        try:
            volume = read_png_slices([e.path for e in group], max_voxels=DEFAULT_MAX_VOXELS,
                                     decoded={e.path: kept[e].image.pixels for e in group})  # no second read
        except InvalidVolumeError as exc:
            report.fail(key, f"not written as a volume: {exc}")
            continue
        # read_png_slices orders slices feet first (highest slice number first): the same here.
        ordered = sorted(group, key=lambda e: -parse_slice_name(e.path).slice)  # type: ignore[union-attr]
        # The model's 3D clean-up, as for volume inputs.
        prediction = volume_prediction(volume, np.stack([kept[e].mask for e in ordered]),
                                       np.stack([kept[e].confidence for e in ordered]).astype(np.float16),
                                       device=str(kept[group[0]].device),
                                       min_component_ml=segmenter.processing.min_component_ml)
        try:
            write_volume(prediction, out_dir / key, ["nifti"])
        except VolumeError as exc:
            report.fail(key, str(exc), "failed")
            continue
        rows.append(volume_row(key, prediction))
    return rows


def _predict_volume(path: Path, name: str, segmenter: Segmenter, chosen: set[str], every: bool, out_dir: Path,
                    report: Reporter, *, batch_size: int, progress: bool,
                    series: str | None) -> dict[str, Any] | None:
    """One volume input through the volume pipeline: its volumes.csv row, or None when it failed
    (the reason reported: bad input is skipped, a failed model or disk is a failure)."""
    with terminal_progress(f"segmenting {path.name}", enabled=progress) as bar:
        try:
            result = process_volume(path, segmenter, out_dir / name, formats=chosen, every=every,
                                    series=series, batch_size=batch_size, progress=bar)
        except VolumeError as exc:
            report.fail(path, str(exc), "skipped" if exc.reason in INPUT_REASONS else "failed")
            return None
    for note in result.volume.notes:
        report.note(path, note)
    report.summary.volume_files[name] = {kind: str(file) for kind, file in result.files.items()}
    return result.row(name)


def _save_overlay(gray: np.ndarray, mask: np.ndarray, path: Path, palette: Palette | None = None) -> None:
    save_png(overlay(gray, mask, palette=palette), path)
