"""The one volume pipeline: a source -> :class:`~segapp.io.volume.ScanVolume` -> prediction -> the chosen files.

Every volume user (``python -m segapp.predict``, the page's volume tab and ``/segment_volume``,
``python -m segapp.dicomweb``) goes through here, step by step (:func:`read_source`,
:func:`segment_volume`, :func:`write_volume`) or in one call (:func:`process_volume`), and every
failure comes out as one exception type, :class:`VolumeError`, whose text is for the user and
carries no patient data (no file names, no header fields). Labels from elsewhere (corrected ones)
go to the same files through ``process_volume(..., labels=...)`` or :func:`write_volume`.

Typical use::

    result = process_volume(files, segmenter, out / "case1", formats=["nifti"], every=True)
    result.files["nifti"], result.prediction.organs["stomach"].volume_ml
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from segapp.inference.exports import algorithm_of, applicable_formats, volume_row, write_volume_outputs
from segapp.inference.volume import VolumePrediction, volume_prediction
from segapp.io.readers import read_volume
from segapp.io.volume import InvalidVolumeError, ScanVolume

if TYPE_CHECKING:  # pragma: no cover
    from segapp.inference.segmenter import Segmenter

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (slices done, total), after each batch
VolumeSource = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]  # what read_volume reads
Reason = Literal["unreadable", "too-large", "format", "model", "cancelled", "write"]
# The reasons that are the input's fault (a batch run skips the input; the others are failures).
INPUT_REASONS: frozenset[str] = frozenset({"unreadable", "too-large", "format"})
DICOM_FORMATS = frozenset({"dicom-seg", "rtstruct"})


class VolumeError(Exception):
    """A volume could not be read, segmented or written.

    ``str(error)`` is a readable sentence for the user, without patient data.

    Attributes:
        reason: ``unreadable`` (not a volume, or one the readers refuse), ``too-large`` (over the
            byte bound), ``format`` (an output that does not apply to the input, e.g. DICOM-SEG of
            a NIfTI), ``model`` (the segmentation failed), ``cancelled`` (the cancel hook was
            set), ``write`` (the files could not be written).
    """

    def __init__(self, message: str, reason: Reason) -> None:
        super().__init__(message)
        self.reason: Reason = reason


@dataclass(eq=False)
class VolumeResult:
    """What :func:`process_volume` did.

    Attributes:
        prediction: The labels and organ volumes (``prediction.volume`` is the scan).
        files: Format -> written path (plus ``labels`` for the label tables beside a NIfTI).
        folder: Where the files are.
        seconds: Step -> wall seconds (``read``, ``segment``, ``write``).
    """

    prediction: VolumePrediction
    files: dict[str, Path]
    folder: Path
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def volume(self) -> ScanVolume:
        return self.prediction.volume

    def row(self, name: str | None = None) -> dict[str, Any]:
        """Its ``volumes.csv`` row (:func:`segapp.inference.exports.volume_row`), named ``name``
        (default: the output folder's name)."""
        return volume_row(name or self.folder.name, self.prediction)


def source_bytes(source: VolumeSource) -> int:
    """The size of a source on disk: its files, or every file under a folder."""
    paths = [Path(source)] if isinstance(source, (str, os.PathLike)) else [Path(p) for p in source]
    total = 0
    for path in paths:
        if path.is_dir():
            total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            total += path.stat().st_size
    return total


def check_size(source: VolumeSource, max_bytes: int) -> None:
    """Refuse a source larger than ``max_bytes`` on disk.

    Raises:
        VolumeError: ``too-large``.
    """
    total = source_bytes(source)
    if total > max_bytes:
        raise VolumeError(f"The input is {total / 2**20:,.0f} MB; volumes up to {max_bytes / 2**20:,.0f} MB "
                          "are accepted. Send one series.", "too-large")


def read_source(source: VolumeSource | ScanVolume, *, series: str | None = None,
                max_bytes: int | None = None) -> ScanVolume:
    """Read a source as one volume (a :class:`ScanVolume` is returned as it is).

    Args:
        source: DICOM files, a DICOM folder, a zip (DICOM or a case-day folder of PNG slices), a
            NIfTI file, one DICOM file; a list of one path is that path.
        series: SeriesInstanceUID, for a source holding several series.
        max_bytes: Refuse a source larger than this on disk (None: no bound but the readers').

    Raises:
        VolumeError: ``unreadable`` or ``too-large``, with the reader's readable message.
    """
    if isinstance(source, ScanVolume):
        return source
    if not isinstance(source, (str, os.PathLike)) and len(source) == 1:
        source = source[0]  # one path: a zip, a NIfTI, a folder or one DICOM file, read as that
    if max_bytes is not None:
        check_size(source, max_bytes)
    try:
        return read_volume(source if isinstance(source, (str, os.PathLike)) else list(source), series=series)
    except InvalidVolumeError as exc:
        raise VolumeError(str(exc), "unreadable") from None
    except OSError as exc:  # gone or unreadable on disk; the text names no file
        raise VolumeError(f"The input cannot be read ({exc.strerror or type(exc).__name__}).", "unreadable") from None


class _Stop(Exception):
    """Raised inside the progress hook when the cancel hook is set."""


def segment_volume(segmenter: Segmenter, volume: ScanVolume, *, batch_size: int | None = None,
                   progress: Progress | None = None, cancel: threading.Event | None = None) -> VolumePrediction:
    """Segment every slice (:meth:`~segapp.inference.segmenter.Segmenter.predict_volume`, with the
    model folder's 3D clean-up).

    Args:
        segmenter: The model.
        volume: The scan.
        batch_size: Slices per forward pass (default: the segmenter's ``max_batch_size``).
        progress: Called with (slices done, total) after each batch.
        cancel: When set, the run stops after the current batch.

    Raises:
        VolumeError: ``cancelled``, or ``model`` for any failure of the model (logged by type
            only; the traceback at DEBUG).
    """

    def report(done: int, total: int) -> None:
        if cancel is not None and cancel.is_set():
            raise _Stop
        if progress is not None:
            progress(done, total)

    try:
        prediction = segmenter.predict_volume(volume, batch_size=batch_size, progress=report)
    except _Stop:
        raise VolumeError("Segmentation cancelled.", "cancelled") from None
    except Exception as exc:  # whoever called keeps running; no file names in the log
        log.debug("volume segmentation failed", exc_info=True)
        log.error("volume segmentation failed: %s", type(exc).__name__)
        raise VolumeError(f"Segmentation failed unexpectedly ({type(exc).__name__}).", "model") from exc
    z, h, w = volume.shape
    log.info("segmented a %dx%dx%d volume in %.1f s on %s", z, h, w,
             prediction.timings_ms["total"] / 1000, prediction.device)
    return prediction


def write_volume(prediction: VolumePrediction, folder: str | os.PathLike[str], formats: Iterable[str], *,
                 segmenter: Segmenter | None = None) -> dict[str, Path]:
    """Write the chosen formats (:data:`segapp.inference.exports.VOLUME_FORMATS`) into ``folder``.

    Args:
        prediction: The labels on the volume's grid (predicted, or handed in: :func:`labelled`).
        folder: Created if needed; files of the same names are replaced.
        formats: What to write; DICOM outputs need a DICOM input.
        segmenter: The model the labels came from, named in DICOM outputs (needed for them).

    Raises:
        VolumeError: ``format`` (an output that does not apply, before anything is written) or
            ``write`` (the disk refused).
    """
    formats = list(formats)
    algorithm = None
    if segmenter is not None and DICOM_FORMATS & set(formats):
        algorithm = algorithm_of(segmenter)  # hashes the weights: only when a DICOM output names them
    try:
        return write_volume_outputs(prediction, Path(folder), formats, algorithm=algorithm)
    except InvalidVolumeError as exc:
        raise VolumeError(str(exc), "format") from None
    except OSError as exc:
        raise VolumeError(f"Could not write the results ({exc.strerror or exc}).", "write") from None


def labelled(volume: ScanVolume, labels: np.ndarray) -> VolumePrediction:
    """Labels from elsewhere (e.g. corrected by hand) as a prediction to write: organ volumes, no
    confidence, no clean-up."""
    return volume_prediction(volume, np.asarray(labels, dtype=np.uint8), device="none (labels given)")


def process_volume(source: VolumeSource | ScanVolume, segmenter: Segmenter, folder: str | os.PathLike[str], *,
                   formats: Iterable[str] = ("nifti",), every: bool = False, series: str | None = None,
                   max_bytes: int | None = None, batch_size: int | None = None, progress: Progress | None = None,
                   cancel: threading.Event | None = None, labels: np.ndarray | None = None) -> VolumeResult:
    """Read, segment and write one volume.

    Args:
        source: See :func:`read_source`; or a :class:`ScanVolume` already read.
        segmenter: The model (named in DICOM outputs).
        folder: Where the files go (created).
        formats: Formats asked for; names that are not volume formats are ignored (a batch
            run's slice formats).
        every: Every format that applies to this input (DICOM outputs only for DICOM inputs),
            plus ``formats`` (:func:`segapp.inference.exports.applicable_formats`).
        series, max_bytes: See :func:`read_source`.
        batch_size, progress, cancel: See :func:`segment_volume`.
        labels: (Z, H, W) labels on the volume's grid to write instead of predicting them.

    Raises:
        VolumeError: Any step failed (see its ``reason``); nothing is written when reading or
            segmenting failed, or when an output does not apply.
    """
    seconds: dict[str, float] = {}
    with _timed(seconds, "read"):
        volume = read_source(source, series=series, max_bytes=max_bytes)
    with _timed(seconds, "segment"):
        if labels is not None:
            prediction = labelled(volume, labels)
        else:
            prediction = segment_volume(segmenter, volume, batch_size=batch_size, progress=progress, cancel=cancel)
    chosen = applicable_formats(volume.kind, formats, every=every)
    with _timed(seconds, "write"):
        files = write_volume(prediction, folder, chosen, segmenter=segmenter)
    return VolumeResult(prediction=prediction, files=files, folder=Path(folder), seconds=seconds)


@contextlib.contextmanager
def _timed(seconds: dict[str, float], step: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    seconds[step] = time.perf_counter() - start


@contextlib.contextmanager
def terminal_progress(description: str, *, enabled: bool = True) -> Iterator[Progress | None]:
    """A progress bar on stderr for :func:`process_volume`'s ``progress`` hook (None when not
    ``enabled``); it appears at the first batch, sized to the volume, and closes with the block."""
    if not enabled:
        yield None
        return
    bar: Any = None

    def advance(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            # Here, not at the top: tqdm is loaded only by the commands that draw a bar.
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc=description, unit="slice")
        bar.n = done
        bar.refresh()

    try:
        yield advance
    finally:
        if bar is not None:
            bar.close()


__all__ = ["INPUT_REASONS", "VolumeError", "VolumeResult", "check_size", "labelled", "process_volume", "read_source",
           "segment_volume", "terminal_progress", "write_volume"]
