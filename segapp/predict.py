"""Segment many slices: ``python -m segapp.predict INPUT... --out OUT_DIR``.

INPUT: image files, folders (searched recursively) or glob patterns (``"scans/**/*.png"``).
Every input file keeps its name below ``OUT_DIR``: a file given directly by its name, a file
found in a folder or by a pattern by its path relative to that folder (or to the pattern's
fixed leading part). With ``.png`` as extension:

- ``png``: ``OUT_DIR/masks/REL.png``, class-id masks (0 background, 1 stomach, 2 small bowel,
  3 large bowel), the training masks' format;
- ``overlay``: ``OUT_DIR/overlays/REL.png``, the organs' colours blended onto the slice;
- ``rle``: ``OUT_DIR/submission.csv``, competition style: ``id,class,predicted``, three rows
  per slice (``large_bowel``, ``small_bowel``, ``stomach``), ``predicted`` the run-length code
  (:mod:`segapp.io.rle`). Ids ``caseN_dayD_slice_SSSS`` come from the file names or their
  folders; other files use their relative path without extension.
- always ``OUT_DIR/stats.csv``: one row per slice, pixels, area in mm² (when the name gives
  the pixel spacing) and mean confidence per organ.

Volumes are inputs too, told apart by content: a DICOM folder (any folder holding DICOM files),
a ``.zip`` of one, a DICOM file (a single slice or an enhanced multi-frame image), a ``.nii`` /
``.nii.gz`` file. Each is read whole (:func:`segapp.read_volume`), segmented slice by slice through
the same batched path, and written to ``OUT_DIR/<volume name>/`` in the volume formats:

- ``nifti``: ``segmentation.nii.gz`` (uint8 label map on the input's grid) with ``labels.json``,
  ``labels.itksnap.txt`` and ``labels.ctbl`` beside it;
- ``dicom-seg``: ``seg.dcm``; ``rtstruct``: ``rtstruct.dcm`` (DICOM inputs only);
- always one row per volume in ``OUT_DIR/volumes.csv``: geometry and, per organ, mL, voxels,
  slice range, largest area in mm² and mean confidence.

``nifti`` also assembles the slices of each competition case-day found among the slice inputs
(``caseN_dayD`` names) into ``OUT_DIR/caseN_dayD/``. ``all`` means every format that applies to
each input. The volume name is the input's own file or folder name (never anything read from
DICOM headers).

Slices of the same size are batched together (on the GPU when there is one). Files that
cannot be read are reported and skipped; the exit status is 1 when anything failed.

A 2.5D model (``segapp_context_offsets`` in its folder) gets each slice input with its neighbours
of the same case-day among the inputs, found by their competition names; slices without any are
segmented with themselves in every channel, and one ``note`` line counts them.
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import os
import shutil
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segapp.cli import (
    DEFAULT_WEIGHTS,
    add_compile_option,
    add_device_option,
    add_min_region_option,
    add_runtime_option,
    add_weights_option,
)
from segapp.inference.exports import VOLUME_FORMATS
from segapp.inference.render import overlay
from segapp.inference.segmenter import Prediction, Segmenter
from segapp.io.dicom import has_dicom_magic
from segapp.io.files import write_text_atomic
from segapp.io.image import IMAGE_SUFFIXES, InvalidImageError, ScanImage, save_mask_png, save_png
from segapp.io.naming import parse_slice_name, slice_id
from segapp.io.readers import read_image
from segapp.io.rle import rle_encode
from segapp.io.volume import DEFAULT_MAX_VOXELS
from segapp.labels import FOREGROUND
from segapp.model.context import context_stack, named_context_indices, single_slice_notice
from segapp.model.onnx_runtime import OnnxError
from segapp.model.weights import ModelLoadError
from segapp.training.devices import Dist, leave_distributed, setup_distributed

SLICE_FORMATS = ("png", "overlay", "rle")
FORMATS = (*SLICE_FORMATS, *VOLUME_FORMATS)
SUBMISSION_NAME = "submission.csv"
STATS_NAME = "stats.csv"
VOLUMES_NAME = "volumes.csv"
# The competition's CSV lists the classes of a slice in alphabetical order.
SUBMISSION_CLASSES = tuple(sorted(FOREGROUND, key=lambda label: label.name))
_GLOB_CHARS = frozenset("*?[")


class PredictError(ValueError):
    """A problem that stops the whole run (no input at all, unusable options)."""


@dataclass(frozen=True)
class InputFile:
    """One slice file to segment.

    Attributes:
        path: Where to read it.
        relative: Its name below the output folder (POSIX separators, original extension).
    """

    path: Path
    relative: str

    @property
    def id(self) -> str:
        """Competition id from the path, else the relative path without extension."""
        return slice_id(self.path) or self.relative.rsplit(".", 1)[0]

    def output(self, folder: Path) -> Path:
        """``folder/REL`` with the extension ``.png``."""
        return folder / Path(self.relative).with_suffix(".png")


@dataclass
class PredictSummary:
    """What a :func:`predict` run did.

    Attributes:
        out: The output folder.
        predicted: Slices segmented.
        failed: (input, reason) for every input that was skipped.
        seconds: Wall time from the first read to the last write.
        files: Output kind (``masks``, ``overlays``, ``submission``, ``stats``, ``volumes``) -> path.
        volumes: Volumes segmented (volume inputs and assembled case-days).
        volume_files: Volume name -> its written files (format -> path).
    """

    out: Path
    predicted: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    files: dict[str, str] = field(default_factory=dict)
    volumes: int = 0
    volume_files: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        """Slices per second, reading and writing included."""
        return self.predicted / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """True when no input failed."""
        return not self.failed


# ---------------------------------------------------------------------------------------------
# Inputs


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _glob_base(pattern: str) -> Path:
    """The leading folders of a pattern that hold no wildcard."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if _GLOB_CHARS & set(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def collect_inputs(
    inputs: Sequence[str | os.PathLike], *, exclude: str | os.PathLike | None = None
) -> tuple[list[InputFile], list[tuple[str, str]]]:
    """Expand files, folders and glob patterns into the slice files to segment.

    Args:
        inputs: Paths of files or folders, or glob patterns (``**`` searches sub-folders).
        exclude: A folder whose files are never inputs (the output folder, so a second run
            over the same folder does not segment the first run's results).

    Returns:
        (files in input order, folders and patterns sorted by path, without duplicates;
        problems as (input, reason): missing paths, folders or patterns without images,
        two inputs that would write the same output).
    """
    skip = Path(exclude).resolve() if exclude is not None else None
    found: list[InputFile] = []
    problems: list[tuple[str, str]] = []
    for item in inputs:
        text = os.fspath(item)
        path = Path(text)
        if path.is_file():
            candidates = [(path, path.name)]
        elif path.is_dir():
            candidates = [
                (p, p.relative_to(path).as_posix()) for p in sorted(path.rglob("*")) if _is_image(p)
            ]
            if not candidates:
                problems.append((text, f"no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder"))
        elif _GLOB_CHARS & set(text):
            base = _glob_base(text)
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            candidates = [(p, p.relative_to(base).as_posix()) for p in matches if _is_image(p)]
            if not candidates:
                problems.append((text, "no image file matches this pattern"))
        else:
            problems.append((text, "no such file or folder"))
            continue
        for file, relative in candidates:
            if skip is not None and skip in file.resolve().parents:
                continue
            found.append(InputFile(file, relative))
    # One output per file: drop repeats of a file, refuse two files that map to one output.
    unique: list[InputFile] = []
    seen_files: set[Path] = set()
    outputs: dict[str, InputFile] = {}
    for entry in found:
        resolved = entry.path.resolve()
        if resolved in seen_files:
            continue
        seen_files.add(resolved)
        key = Path(entry.relative).with_suffix(".png").as_posix()
        if key in outputs:
            problems.append(
                (
                    str(entry.path),
                    f"its output {key} is already that of {outputs[key].path}; rename one of them",
                )
            )
            continue
        outputs[key] = entry
        unique.append(entry)
    return unique, problems


# ---------------------------------------------------------------------------------------------
# Running


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


def _stats_row(entry: InputFile, prediction: Prediction) -> dict[str, Any]:
    spacing = prediction.spacing_mm
    row: dict[str, Any] = {
        "file": entry.relative,
        "id": slice_id(entry.path) or "",
        "height": prediction.mask.shape[0],
        "width": prediction.mask.shape[1],
        "row_mm": spacing[0] if spacing else "",
        "col_mm": spacing[1] if spacing else "",
    }
    for label in FOREGROUND:
        stats = prediction.stats[label.name]
        row[f"{label.name}_pixels"] = stats.pixels
        row[f"{label.name}_area_mm2"] = "" if stats.area_mm2 is None else round(stats.area_mm2, 3)
        row[f"{label.name}_confidence"] = (
            "" if stats.mean_confidence is None else round(stats.mean_confidence, 4)
        )
    return row


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a CSV atomically (temporary file, then rename)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


def is_volume_source(path: Path) -> bool:
    """Whether an input is read as a volume: a NIfTI file, a zip, a DICOM file, or a folder of
    DICOM files. A folder holding slice images stays a folder of slices (a stray DICOM file in
    it is skipped, as any other file that is not an image)."""
    if path.is_file():
        name = path.name.lower()
        return name.endswith((".nii", ".nii.gz", ".zip")) or has_dicom_magic(path)
    if path.is_dir():
        found_dicom = False
        for index, candidate in enumerate(p for p in path.rglob("*") if p.is_file()):
            if _is_image(candidate):
                return False
            found_dicom = found_dicom or has_dicom_magic(candidate)
            if found_dicom and index >= 200:  # enough seen: a DICOM folder, not every header read
                break
        return found_dicom
    return False


def volume_name(path: Path, taken: set[str]) -> str:
    """The output folder name of a volume input: its own file or folder name without the
    format's extension, made unique among this run's volumes (``-2``, ``-3``, ...)."""
    name = path.resolve().name
    for suffix in (".nii.gz", ".nii", ".zip", ".dcm"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).strip("._") or "volume"
    unique, number = name, 1
    while unique in taken:
        number += 1
        unique = f"{name}-{number}"
    taken.add(unique)
    return unique


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


class _Reporter:
    """Collects failures into the summary and prints each as one line (through the bar if any)."""

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
    weights: str | os.PathLike = DEFAULT_WEIGHTS,
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
        weights: Any source :func:`segapp.load_model` accepts (ignored when ``segmenter`` is given).
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
    is_volume = [is_volume_source(Path(os.fspath(i))) for i in inputs]  # reads headers: once per input
    volume_inputs = [Path(os.fspath(i)) for i, volume in zip(inputs, is_volume) if volume]
    slice_inputs = [i for i, volume in zip(inputs, is_volume) if not volume]
    entries, problems = collect_inputs(slice_inputs, exclude=out_dir) if slice_inputs else ([], [])
    if not entries and not volume_inputs:
        raise PredictError("no image to segment: " + "; ".join(f"{s}: {r}" for s, r in problems))
    summary = PredictSummary(out=out_dir)
    report = _Reporter(summary, log)
    # Output folder names for every volume, decided before the inputs are shared out, so two
    # processes can never pick the same name.
    case_days = {key for key in map(_case_day, entries) if key is not None}
    taken = set(case_days)
    names = {path: volume_name(path, taken) for path in volume_inputs}
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
        tables = _Tables()
        if entries:
            keep = "nifti" in chosen or every
            kept = _predict_slices(entries, segmenter, chosen, out_dir, tables, report, batch_size=batch_size,
                                   progress=progress, keep=keep)
            if keep:
                tables.volumes += _case_day_volumes(kept, segmenter, out_dir, report)
        for path in volume_inputs:
            row = _predict_volume(path, names[path], segmenter, chosen, every, out_dir, report,
                                  batch_size=batch_size, progress=progress, series=series)
            if row is not None:
                tables.volumes.append(row)
        if dist.world > 1:
            tables.failed = [list(item) for item in summary.failed]
            tables = tables.gathered(out_dir, dist)
            if dist.main:
                summary.failed = [(source, reason) for source, reason in tables.failed]
        if dist.main:
            tables.write(out_dir, chosen, summary)
        summary.seconds = time.perf_counter() - start
    finally:
        leave_distributed(dist, together=sys.exc_info()[0] is None)
    return summary


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
        return "slices:" + (_case_day(entry) or entry.relative)

    units = sorted({unit(e) for e in entries} | {f"volume:{p.resolve()}" for p in volume_inputs})
    mine = {u for i, u in enumerate(units) if i % dist.world == dist.rank}
    return ([e for e in entries if unit(e) in mine], [p for p in volume_inputs if f"volume:{p.resolve()}" in mine])


@dataclass
class _Tables:
    """The run's CSV rows, written once at the end (by rank 0, from every rank's rows)."""

    stats: list[dict[str, Any]] = field(default_factory=list)
    submission: list[list[str]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    failed: list[list[str]] = field(default_factory=list)

    def gathered(self, out_dir: Path, dist: Dist) -> _Tables:
        """Every rank's rows (on rank 0; others get their own back): each rank writes its rows to
        a hidden shard file, all wait, rank 0 reads and removes them."""
        import json

        import torch.distributed as tdist

        shards = out_dir / ".segapp-shards"
        shards.mkdir(exist_ok=True)
        write_text_atomic(shards / f"rank{dist.rank}.json", json.dumps(vars(self)))
        tdist.barrier()
        if not dist.main:
            return self
        merged = _Tables()
        for rank in range(dist.world):
            part = json.loads((shards / f"rank{rank}.json").read_text(encoding="utf-8"))
            for key, rows in part.items():
                getattr(merged, key).extend(rows)
        shutil.rmtree(shards, ignore_errors=True)
        return merged

    def write(self, out_dir: Path, chosen: set[str], summary: PredictSummary) -> None:
        """The CSVs, sorted so reruns (and any number of processes) give identical files."""
        if self.stats:
            self.stats.sort(key=lambda row: row["file"])
            header = list(self.stats[0])
            _write_csv(out_dir / STATS_NAME, header, ([row[k] for k in header] for row in self.stats))
            summary.files["stats"] = str(out_dir / STATS_NAME)
        if "rle" in chosen:
            order = {label.name: i for i, label in enumerate(SUBMISSION_CLASSES)}
            self.submission.sort(key=lambda row: (row[0], order[row[1]]))
            _write_csv(out_dir / SUBMISSION_NAME, ("id", "class", "predicted"), self.submission)
            summary.files["submission"] = str(out_dir / SUBMISSION_NAME)
        if "png" in chosen:
            summary.files["masks"] = str(out_dir / "masks")
        if "overlay" in chosen:
            summary.files["overlays"] = str(out_dir / "overlays")
        if self.volumes:
            self.volumes.sort(key=lambda row: row["volume"])
            header = list(self.volumes[0])
            _write_csv(out_dir / VOLUMES_NAME, header, ([row[k] for k in header] for row in self.volumes))
            summary.files["volumes"] = str(out_dir / VOLUMES_NAME)
        summary.predicted = len(self.stats)
        summary.volumes = len(self.volumes)


def _predict_slices(entries: Sequence[InputFile], segmenter: Segmenter, chosen: set[str], out_dir: Path,
                    tables: _Tables, report: _Reporter, *, batch_size: int, progress: bool,
                    keep: bool) -> dict[InputFile, Prediction]:
    """The slice inputs: masks and overlays written, stats and submission rows added to ``tables``;
    returns the predictions of case-day slices when ``keep`` (for their NIfTI volumes)."""
    if progress:
        from tqdm.auto import tqdm

        report.bar = tqdm(total=len(entries), desc="segmenting", unit="slice")
    bar = report.bar

    def unreadable(entry: InputFile, reason: str) -> None:
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
            stacks = None if context is None else context.stacks(batch)
            predictions = segmenter.predict_batch([scan for _, scan in batch], stacks=stacks)
            for (entry, scan), prediction in zip(batch, predictions):
                mask = prediction.mask
                if "png" in chosen:
                    pending.append((entry, pool.submit(save_mask_png, mask, entry.output(out_dir / "masks"))))
                if "overlay" in chosen:
                    target = entry.output(out_dir / "overlays")
                    pending.append((entry, pool.submit(_save_overlay, scan.pixels, mask, target)))
                if "rle" in chosen:
                    submission += [
                        (entry.id, lb.name, rle_encode(mask == lb.id)) for lb in SUBMISSION_CLASSES
                    ]
                stats_rows.append(_stats_row(entry, prediction))
                if keep and _case_day(entry) is not None:
                    kept[entry] = prediction
            if bar is not None:
                bar.update(len(batch))
            settle(4 * batch_size)
        settle(0)
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


def _case_day(entry: InputFile) -> str | None:
    name = parse_slice_name(entry.path)
    if name is None or name.case is None or name.day is None:
        return None
    return f"case{name.case}_day{name.day}"


def _case_day_volumes(kept: dict[InputFile, Prediction], segmenter: Segmenter, out_dir: Path,
                      report: _Reporter) -> list[dict[str, Any]]:
    """NIfTI volumes of the case-days among the slice inputs, from their slice predictions."""
    from segapp.inference.exports import volume_row, write_volume_outputs
    from segapp.inference.volume import VolumePrediction, organ_volumes, remove_small_components
    from segapp.io.casefolder import read_png_slices
    from segapp.io.volume import InvalidVolumeError

    groups: dict[str, list[InputFile]] = {}
    for entry in kept:
        groups.setdefault(_case_day(entry) or "", []).append(entry)
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
        labels = np.stack([kept[e].mask for e in ordered])
        if segmenter.processing.min_component_ml > 0:  # the model's 3D clean-up, as for volume inputs
            labels = remove_small_components(labels, segmenter.processing.min_component_ml, volume.spacing_mm)
        confidence = np.stack([kept[e].confidence for e in ordered]).astype(np.float16)
        prediction = VolumePrediction(labels, confidence, organ_volumes(labels, confidence, volume.spacing_mm),
                                      {}, str(kept[group[0]].device), volume)
        write_volume_outputs(prediction, out_dir / key, ["nifti"], algorithm=None)
        rows.append(volume_row(key, prediction))
    return rows


def _predict_volume(path: Path, name: str, segmenter: Segmenter, chosen: set[str], every: bool, out_dir: Path,
                    report: _Reporter, *, batch_size: int, progress: bool,
                    series: str | None) -> dict[str, Any] | None:
    """One volume input: read, segment, write its formats; its volumes.csv row, or None on failure."""
    from segapp.inference.exports import algorithm_of, applicable_formats, volume_row, write_volume_outputs
    from segapp.io.readers import read_volume
    from segapp.io.volume import InvalidVolumeError

    try:
        volume = read_volume(path, series=series)
    except InvalidVolumeError as exc:
        report.fail(path, str(exc))
        return None
    formats = applicable_formats(volume.kind, chosen, every=every)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=volume.shape[0], desc=f"segmenting {path.name}", unit="slice")

    def advance(done: int, total: int) -> None:
        if bar is not None:
            bar.n = done
            bar.refresh()
    try:
        prediction = segmenter.predict_volume(volume, batch_size=batch_size, progress=advance)
    finally:
        if bar is not None:
            bar.close()
    algorithm = algorithm_of(segmenter) if {"dicom-seg", "rtstruct"} & set(formats) else None
    try:
        written = write_volume_outputs(prediction, out_dir / name, formats, algorithm=algorithm)
    except InvalidVolumeError as exc:
        report.fail(path, str(exc))
        return None
    except OSError as exc:
        report.fail(path, f"could not write its outputs ({exc.strerror or exc})", "failed")
        return None
    for note in volume.notes:
        report.note(path, note)
    report.summary.volume_files[name] = {kind: str(p) for kind, p in written.items()}
    return volume_row(name, prediction)


def _save_overlay(gray: np.ndarray, mask: np.ndarray, path: Path) -> None:
    save_png(overlay(gray, mask), path)


# ---------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m segapp.predict",
        description="Segment slices (files, folders, glob patterns) and write masks, overlays, "
        "a competition submission.csv and stats.csv.",
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image file, folder (recursive) or glob pattern"
    )
    parser.add_argument("--out", required=True, help="output folder")
    add_weights_option(parser)
    parser.add_argument("--batch-size", type=int, default=16, help="slices per forward pass (default 16)")
    parser.add_argument(
        "--format",
        dest="formats",
        action="extend",
        type=_format_list,
        help="comma-separated, repeatable. Slices: png (class-id masks, the default), overlay, rle "
        "(submission.csv). Volumes: nifti (segmentation.nii.gz + label tables), dicom-seg (seg.dcm), "
        "rtstruct (rtstruct.dcm; both DICOM inputs only). all: every format that applies to each input",
    )
    add_device_option(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_min_region_option(parser)
    add_compile_option(parser)
    add_runtime_option(parser)
    parser.add_argument("--series", metavar="UID", default=None,
                        help="SeriesInstanceUID to read from DICOM inputs holding several series")
    return parser


def _format_list(text: str) -> list[str]:
    """argparse type of --format: comma-separated names, each checked."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    for name in names:
        if name not in (*FORMATS, "all"):
            raise argparse.ArgumentTypeError(f"unknown format {name!r}; choose from {', '.join(FORMATS)} or all")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = predict(
            args.inputs,
            out=args.out,
            weights=args.weights,
            formats=args.formats or ("png",),
            batch_size=args.batch_size,
            device=args.device,
            progress=not args.no_progress,
            min_region_px=args.min_region_px,
            compile=args.compile,
            runtime=args.runtime,
            series=args.series,
        )
    except (PredictError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports for every process
        return 1 if summary.failed else 0
    outputs = ", ".join(f"{kind}: {path}" for kind, path in summary.files.items())
    done = f"{summary.predicted} slices segmented ({summary.images_per_s:.1f} slices/s)"
    if summary.volumes:
        done += f", {summary.volumes} volume(s)"
    print(f"{done}; {outputs}")
    if summary.failed:
        print(f"{len(summary.failed)} input(s) skipped or failed (listed above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
