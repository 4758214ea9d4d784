"""A batch of slices in the slice tab: many slices (files or a .zip) through the batched path of
``python -m segapp.predict`` (:func:`segapp.inference.batch.predict_slices`), shown as a gallery
of overlays with a table of areas, downloadable as one CSV and one zip of every mask and overlay.

Bounded like the volume upload: at most :data:`MAX_BATCH_SLICES` slices, the volume tab's upload
size (:func:`segapp.ui.volume.max_volume_bytes`), :data:`BATCH_TIME_LIMIT_S` seconds of model time
(slices not reached by then are listed as not segmented). Zips go through the one safe unzipper
(:func:`segapp.io.dicom.unpacked`).

Names: upload names can carry patient data, so every slice gets a neutral name, ``slice-001``
in upload order, in the outputs, the table and the page. A name the competition's pattern matches
in full (``case123_day20_slice_0067_266_266_1.50_1.50.png``, digits and a fixed pattern: no patient
data) is kept, since it carries the pixel spacing and a 2.5D model's neighbours.
"""

from __future__ import annotations

import csv
import html
import logging
import os
import shutil
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pandas as pd  # type: ignore[import-untyped]

from segapp.inference.batch_inputs import InputFile
from segapp.inference.pipeline import source_bytes
from segapp.io.dicom import slice_png_name, unpacked
from segapp.io.files import atomic_file
from segapp.io.volume import InvalidVolumeError
from segapp.labels import FOREGROUND, organ_palette
from segapp.ui.callbacks import Callbacks, SegmentOutputs
from segapp.ui.cards import stamp, user_error
from segapp.ui.volume import max_volume_bytes, upload_paths

if TYPE_CHECKING:  # torch stays unimported until a batch runs
    from segapp.inference.tables import PredictSummary

log = logging.getLogger(__name__)

MAX_BATCH_SLICES = 100  # a page batch; more belongs to `python -m segapp.predict`
BATCH_TIME_LIMIT_S = 300.0  # model time for one batch; the rest is reported as not segmented
BATCH_SIZE = 8  # slices per forward pass, as the volume tab's small batches keep others served
FORMATS = {"png", "overlay"}


@dataclass(frozen=True)
class BatchState:
    """A batch's slices for opening one in the full view, kept per browser session.

    Attributes:
        slices: The staged copies (neutral names), in gallery order.
    """

    slices: tuple[str, ...]


class BatchOutputs(NamedTuple):
    """Everything one batch shows: gallery (overlay path, name) pairs, the areas table, the CSV
    and zip downloads, a summary line (skipped slices by name and why), and the state."""

    gallery: list[tuple[str, str]] | None
    table: pd.DataFrame | None
    csv: str | None
    zip: str | None
    summary: str
    state: BatchState | None


def neutral_name(original: str, index: int, taken: set[str]) -> str:
    """The name a batch slice is known by: a competition slice name kept as it is, else
    ``slice-NNN.png`` (``index`` 1-based); never one in ``taken`` (which it joins)."""
    name = slice_png_name(original) or f"slice-{index:03d}.png"
    if name in taken:
        name = f"slice-{index:03d}.png"
    taken.add(name)
    return name


def areas_table(stats_csv: Path) -> pd.DataFrame:
    """The page's table from ``stats.csv``: the slice's name, then per organ pixels and mm²
    (empty where the spacing is unknown)."""
    with stats_csv.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    columns = {"file": "slice"}
    for label in FOREGROUND:
        columns[f"{label.name}_pixels"] = f"{label.display} px"
        columns[f"{label.name}_area_mm2"] = f"{label.display} mm²"
    return pd.DataFrame([{title: row[key] for key, title in columns.items()} for row in rows],
                        columns=list(columns.values()))


def zip_results(out_dir: Path, archive: Path) -> Path:
    """``archive`` holding ``stats.csv``, ``masks/`` and ``overlays/`` of ``out_dir`` (PNGs
    stored as they are: they are compressed already)."""
    with atomic_file(archive, "wb") as handle, zipfile.ZipFile(handle, "w") as out:
        for path in sorted(out_dir.rglob("*")):
            if path.is_file() and path != archive:
                kind = zipfile.ZIP_DEFLATED if path.suffix == ".csv" else zipfile.ZIP_STORED
                out.write(path, arcname=path.relative_to(out_dir).as_posix(), compress_type=kind)
    return archive


class BatchCallbacks:
    """The batch's handlers, on the slice page's :class:`~segapp.ui.callbacks.Callbacks` (model,
    output folders)."""

    def __init__(self, callbacks: Callbacks, *, max_slices: int = MAX_BATCH_SLICES, max_bytes: int | None = None,
                 time_limit_s: float = BATCH_TIME_LIMIT_S) -> None:
        self.callbacks = callbacks
        self.max_slices = max_slices
        self.max_bytes = max_volume_bytes() if max_bytes is None else max_bytes
        self.time_limit_s = time_limit_s

    def stage(self, files: str | Sequence[str] | None, folder: Path) -> list[InputFile]:
        """Copy the uploaded slices (a zip unpacked) into ``folder`` under their batch names.

        Raises:
            gradio.Error: Nothing uploaded, over the size or count bound, or a zip refused.
        """
        paths = upload_paths(files)
        total = source_bytes(paths)
        if total > self.max_bytes:
            raise user_error(f"The upload is {total / 2**20:,.0f} MB; batches up to {self.max_bytes / 2**20:,.0f} MB "
                             "are accepted.")
        found: list[tuple[Path, str]] = []
        try:
            for path in paths:
                with unpacked(path) as members:  # a zip is unpacked, safely; any other file is itself
                    is_zip = members != [path]
                    for member in members:
                        name = member.name if is_zip else path.name
                        if len(found) >= self.max_slices:
                            raise user_error(f"A batch holds at most {self.max_slices} slices; this upload has more. "
                                             "Split it, or use `python -m segapp.predict` for whole folders.")
                        staged = folder / f"{len(found):04d}"
                        with atomic_file(staged, "wb") as out, member.open("rb") as src:
                            shutil.copyfileobj(src, out, length=1 << 20)
                        found.append((staged, name))
        except InvalidVolumeError as exc:  # the unzipper's refusals
            raise user_error(str(exc)) from None
        taken: set[str] = set()
        entries = []
        for index, (staged, name) in enumerate(found, start=1):
            target = staged.with_name(neutral_name(name, index, taken))
            staged.rename(target)
            entries.append(InputFile(target, target.name))
        return entries

    def run(self, files: str | Sequence[str] | None, colors: Sequence[str] | None = None
            ) -> tuple[Path, list[InputFile], PredictSummary]:
        """Stage, segment and write the batch: ``(its folder, the slices, the run's summary)``.

        Raises:
            gradio.Error: A user error (see :meth:`stage`), a failed model, or no slice segmented.
        """
        # Imported here: the batch path imports torch, which the page's start does without.
        from segapp.inference.batch import Reporter, predict_slices
        from segapp.inference.tables import PredictSummary, Tables

        folder = self.callbacks.outputs.new()
        inputs = folder / "inputs"
        inputs.mkdir()
        entries = self.stage(files, inputs)
        segmenter = self.callbacks.segmenter()
        out = folder / "results"
        summary = PredictSummary(out=out)
        tables = Tables()
        start = time.monotonic()
        deadline = start + self.time_limit_s
        try:
            predict_slices(entries, segmenter, FORMATS, out, tables, Reporter(summary, lambda line: None),
                           batch_size=BATCH_SIZE, progress=False, keep=False, palette=organ_palette(colors),
                           stop=lambda: time.monotonic() > deadline)
        except Exception as exc:  # keep serving; the server log names the type only
            log.debug("batch segmentation failed", exc_info=True)
            log.error("batch segmentation failed: %s", type(exc).__name__)
            raise user_error(f"Segmentation failed unexpectedly ({type(exc).__name__}). The server is still "
                             "running: try again.") from None
        tables.write(out, FORMATS, summary)  # counts summary.predicted
        if not summary.predicted:
            names = {os.fspath(entry.path): entry.relative for entry in entries}
            raise user_error("No slice of the batch could be segmented: " + _failures(summary, names, html_=False))
        summary.seconds = time.monotonic() - start
        log.info("segmented a batch of %d slices (%d skipped)", summary.predicted, len(summary.failed))
        return out, entries, summary

    def segment(self, files: str | Sequence[str] | None, colors: Sequence[str] | None = None) -> BatchOutputs:
        """The page's batch: gallery, table, downloads and summary.

        Raises:
            gradio.Error: With a readable message for every user error or failure.
        """
        out, entries, summary = self.run(files, colors)
        names = {os.fspath(entry.path): entry.relative for entry in entries}
        done = [entry for entry in entries if entry.output(out / "overlays").is_file()]
        archive = zip_results(out, out.parent / f"segapp-batch-{stamp()}.zip")
        stats = out / "stats.csv"
        return BatchOutputs(
            gallery=[(str(entry.output(out / "overlays")), entry.relative) for entry in done],
            table=areas_table(stats),
            csv=str(stats),
            zip=str(archive),
            summary=(f"<p class='batch-summary'>{len(done)} of {len(entries)} slices segmented in "
                     f"{summary.seconds:.1f} s.</p>" if not summary.failed else
                     f"<p class='batch-summary'>{len(done)} of {len(entries)} slices segmented. Not segmented: "
                     f"{_failures(summary, names)}</p>"),
            state=BatchState(tuple(os.fspath(entry.path) for entry in done)),
        )

    def segment_api(self, files: str | Sequence[str] | None) -> tuple[str, str]:
        """The ``/segment_batch`` API: the zip of masks and overlays, and ``stats.csv``."""
        out, _, _ = self.run(files)
        return str(zip_results(out, out.parent / f"segapp-batch-{stamp()}.zip")), str(out / "stats.csv")

    def open(self, state: BatchState | None, index: int, opacity: float, classes: Sequence[str] | None,
             colors: Sequence[str] | None = None) -> SegmentOutputs:
        """Slice ``index`` of the batch in the slice tab's full view (overlay, mask, confidence, card).

        Raises:
            gradio.Error: No batch, or an index outside it.
        """
        if state is None or not 0 <= index < len(state.slices):
            raise user_error("That slice is no longer available: segment the batch again.")
        return self.callbacks.segment(state.slices[index], "", opacity, classes, colors)

    def clear(self) -> BatchOutputs:
        """No batch."""
        return BatchOutputs(gallery=None, table=None, csv=None, zip=None, summary="", state=None)


def _failures(summary: PredictSummary, names: dict[str, str], *, html_: bool = True) -> str:
    """The skipped slices by their batch names, with the reasons."""
    text = "; ".join(f"{names.get(source, 'a slice')}: {reason}" for source, reason in summary.failed)
    return html.escape(text) if html_ else text
