"""What the volume tab's controls do, as plain functions (testable without a browser).

A volume upload (DICOM files, a folder, a .zip, one .nii / .nii.gz, one DICOM file) is read
with :func:`segapp.io.volume.read_volume`, segmented slice by slice with
:meth:`Segmenter.predict_volume`, and browsed through :class:`segapp.ui.views.VolumeView`.
Like :mod:`segapp.ui.callbacks`: readable :class:`gradio.Error` messages, result files in
per-request folders of :class:`~segapp.ui.callbacks.OutputFolders` (deleted with the uploads),
no file names or header fields in logs or on the page.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import json
import logging
import os
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import gradio as gr

from segapp.inference.pipeline import (
    VolumeError,
    VolumeResult,
    check_size,
    process_volume,
    read_source,
    segment_volume,
)
from segapp.io import casefolder, dicom
from segapp.io.files import atomic_file, atomic_path, write_bytes_atomic, write_text_atomic
from segapp.io.volume import InvalidVolumeError, ScanVolume
from segapp.labels import FOREGROUND, LABELS, Palette, organ_palette
from segapp.synthetic.volume import phantom_volume
from segapp.synthetic.volume_files import write_dicom_series
from segapp.ui.callbacks import Callbacks
from segapp.ui.cards import (
    empty_views_html,
    empty_volume_card,
    model_text,
    ready_volume_card,
    several_series_card,
    stamp,
    user_error,
    views_html,
    visible_classes,
    volume_card_html,
)
from segapp.ui.plots import distribution_updates
from segapp.ui.views import Mesh, VolumeView, glb_bytes, organ_meshes, recoloured
from segapp.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from segapp.inference.volume import VolumePrediction

log = logging.getLogger(__name__)

MAX_VOLUME_MB_ENV = "SEGAPP_MAX_VOLUME_MB"
DEFAULT_MAX_VOLUME_MB = 500  # a 1,000-slice uncompressed 512 x 512 series is about 520 MB
EXAMPLE_NAME = "phantom-series.zip"
# Slices per forward pass of a page volume: small, so progress moves often, Cancel stops within
# one batch, and a single-slice request waits for at most one batch of a running volume.
VOLUME_BATCH = 4


def max_volume_bytes() -> int:
    """The volume upload bound: ``$SEGAPP_MAX_VOLUME_MB`` MB, else 500 MB (a bad value is refused at start)."""
    text = os.environ.get(MAX_VOLUME_MB_ENV, "")
    megabytes = float(text) if text.strip() else DEFAULT_MAX_VOLUME_MB
    if not megabytes > 0:
        raise ValueError(f"{MAX_VOLUME_MB_ENV} must be a positive number of MB")
    return int(megabytes * 1024 * 1024)


class VolumeOutputs(NamedTuple):
    """Everything one segmented volume shows on the page (files are paths for the download buttons).

    Built with keywords; the page wires its components by field name.
    """

    views: str
    slider: Any  # a gr.Slider update: the volume's slice count, the shown slice
    card: str
    nifti: str | None
    seg: str | None
    rtstruct: str | None
    table: str | None
    mesh: str | None
    stats: dict[str, Any] | None
    state: VolumeView | None


# ---------------------------------------------------------------------------
# A volume result's files and statistics


def organ_table_csv(prediction: VolumePrediction, path: Path) -> Path:
    """Write the organ table: one row per organ (mL, voxels, slices 1-based, largest area, confidence)."""
    with atomic_file(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["organ", "volume_ml", "voxels", "first_slice", "last_slice", "max_area_mm2", "mean_confidence"])
        for label in FOREGROUND:
            organ = prediction.organs[label.name]
            first, last = ("", "") if organ.slices is None else (organ.slices[0] + 1, organ.slices[1] + 1)
            confidence = "" if organ.mean_confidence is None else round(organ.mean_confidence, 4)
            writer.writerow([label.name, round(organ.volume_ml, 3), organ.voxels, first, last,
                             round(organ.max_area_mm2, 1), confidence])
    return path


def volume_stats(prediction: VolumePrediction) -> dict[str, Any]:
    """The API's statistics: :meth:`VolumePrediction.stats_dict` plus spacing, size, labels, version."""
    stats = prediction.stats_dict()
    stats.update(
        spacing_mm=list(prediction.volume.spacing_mm),
        size=list(prediction.volume.shape),
        labels={label.name: label.id for label in LABELS},
        segapp_version=__version__,
    )
    return json.loads(json.dumps(stats))  # plain JSON types (tuples become lists)


def upload_paths(files: str | Sequence[str] | None) -> list[Path]:
    """The uploaded files of a gr.File (one path or several), that are still on the server.

    Raises:
        gradio.Error: Nothing uploaded, or the upload was already deleted.
    """
    if not files:
        raise user_error("No volume yet: upload a DICOM series (files, a folder or a .zip), a NIfTI file "
                         "or one DICOM file, or click the example.")
    paths = [Path(files)] if isinstance(files, (str, os.PathLike)) else [Path(f) for f in files]
    if not all(p.is_file() for p in paths):
        raise user_error("The upload is no longer on the server (uploads are deleted after a few minutes "
                         "for privacy). Upload it again.")
    return paths


def page_error(exc: VolumeError) -> gr.Error:
    """The page's message for a failure of the volume pipeline (its text has no patient data)."""
    if exc.reason == "cancelled":
        return gr.Error("Segmentation cancelled.", title="Cancelled", print_exception=False)
    if exc.reason == "model":
        return user_error(f"{exc} The server is still running: try again.")
    return user_error(str(exc))


# ---------------------------------------------------------------------------
# Callbacks


class VolumeCallbacks:
    """The volume tab's handlers, on the volume model and the output folders of the slice page's
    :class:`~segapp.ui.callbacks.Callbacks` (:meth:`~segapp.ui.callbacks.Callbacks.volume_segmenter`:
    the slice mode's Segmenter, or a model of its own such as a 2.5D one).

    At most one volume runs at a time (the page gives its events a concurrency limit of 1), and
    the slice mode keeps serving while it runs. A Segmenter runs one forward pass at a time, so
    with one model for both modes the volume goes :data:`VOLUME_BATCH` slices per pass and a
    single-slice request waits for at most one such batch. With a volume model of its own the
    two Segmenters do not wait for each other at all: a slice never queues behind a volume, and
    at most one volume batch runs beside the slice requests (sharing the CPU cores or the GPU),
    which bounds the extra memory too.
    """

    def __init__(self, callbacks: Callbacks, *, max_bytes: int | None = None, batch_size: int = VOLUME_BATCH) -> None:
        """Args:
            callbacks: The slice page's callbacks (segmenter, output folders).
            max_bytes: Largest accepted upload (all files together); default :func:`max_volume_bytes`.
            batch_size: Slices per forward pass.
        """
        self.callbacks = callbacks
        self.batch_size = batch_size
        self.max_bytes = max_volume_bytes() if max_bytes is None else max_bytes
        self._cancel: dict[str, threading.Event] = {}
        self._example: Path | None = None
        self._example_lock = threading.Lock()

    # Reading

    def _source(self, files: str | Sequence[str] | None) -> Path | list[Path]:
        paths = upload_paths(files)
        try:
            check_size(paths, self.max_bytes)
        except VolumeError as exc:
            raise page_error(exc) from None
        # One path: a zip, a NIfTI or a single DICOM file, read as that; several: a series' files.
        return paths[0] if len(paths) == 1 else paths

    def series_choices(self, files: str | Sequence[str] | None) -> list[tuple[str, str]]:
        """(label, SeriesInstanceUID) of each DICOM series in the upload; [] for a NIfTI, a
        case-day folder or one series. Labels: modality, description, slices, size.

        Raises:
            gradio.Error: The upload is not usable (the reader's message).
        """
        source = self._source(files)
        # One file that is not a zip (NIfTI, one DICOM file) or PNG slices: one volume, no choice.
        if isinstance(source, Path) and not zipfile.is_zipfile(source):
            return []
        if isinstance(source, list) and all(p.suffix.lower() == ".png" for p in source):
            return []
        try:
            if isinstance(source, Path) and casefolder.is_slice_zip(source):
                return []  # a zipped case-day folder
            found = dicom.list_series(source)
        except InvalidVolumeError as exc:
            raise user_error(str(exc)) from None
        if len(found) < 2:
            return []
        return [(f"{s.modality} · {s.description or 'no description'} · {s.slices} slices of "
                 f"{s.columns} × {s.rows}", s.uid) for s in found]

    def inspect(self, files: str | Sequence[str] | None) -> tuple[Any, str]:
        """After an upload: the series chooser (shown when there are several) and the card."""
        if not files:
            return gr.Dropdown(choices=[], value=None, visible=False), empty_volume_card()
        choices = self.series_choices(files)
        if choices:
            return gr.Dropdown(choices=choices, value=choices[0][1], visible=True), several_series_card(len(choices))
        return gr.Dropdown(choices=[], value=None, visible=False), ready_volume_card()

    def read(self, files: str | Sequence[str] | None, series: str | None = None) -> ScanVolume:
        """Read the upload as one volume (:func:`segapp.inference.pipeline.read_source`).

        Raises:
            gradio.Error: With the reader's readable message.
        """
        source = self._source(files)
        with self._running(None):
            return read_source(source, series=series or None)

    # Segmenting

    @contextlib.contextmanager
    def _running(self, session: str | None) -> Iterator[threading.Event | None]:
        """Around a pipeline step: the session's Cancel flag (None without a session), and every
        :class:`~segapp.inference.pipeline.VolumeError` as a readable :class:`gradio.Error`."""
        flag = self._cancel.setdefault(session, threading.Event()) if session else None
        if flag is not None:
            flag.clear()
        try:
            yield flag
        except VolumeError as exc:
            raise page_error(exc) from None
        finally:
            if session:
                self._cancel.pop(session, None)

    def predict(self, volume: ScanVolume, progress: Callable[[int, int], None] | None = None,
                session: str | None = None) -> VolumePrediction:
        """Segment ``volume``; ``progress(done, total)`` after each batch. A Cancel for ``session``
        stops it between batches.

        Raises:
            gradio.Error: Cancelled, or the model failed (readable message, server keeps running).
        """
        segmenter = self.callbacks.volume_segmenter()
        with self._running(session) as flag:
            return segment_volume(segmenter, volume, batch_size=self.batch_size, progress=progress, cancel=flag)

    def _process(self, volume: ScanVolume, *, every: bool, progress: Callable[[int, int], None] | None = None,
                 session: str | None = None) -> VolumeResult:
        """Segment ``volume`` and write its label files (every format that applies to it, else
        the NIfTI) into a new output folder."""
        segmenter = self.callbacks.volume_segmenter()
        with self._running(session) as flag:
            return process_volume(volume, segmenter, self.callbacks.outputs.new(), formats=["nifti"], every=every,
                                  batch_size=self.batch_size, progress=progress, cancel=flag)

    def cancel(self, session: str | None) -> None:
        """Ask the running volume of ``session`` to stop after its current batch."""
        if session and session in self._cancel:
            self._cancel[session].set()

    def segment(self, files: str | Sequence[str] | None, series: str | None = None, opacity: float = 0.5,
                classes: Sequence[str] | None = None, *, progress: Callable[[int, int], None] | None = None,
                session: str | None = None, colors: Sequence[str] | None = None) -> VolumeOutputs:
        """Read, segment and write every download of one volume; show its middle slice. ``colors``
        (one per organ; None: the label table's) colour the planes and the meshes; the label
        files keep the label table's colours.

        Raises:
            gradio.Error: With a readable message for every user error or failure.
        """
        volume = self.read(files, series)
        result = self._process(volume, every=True, progress=progress, session=session)
        prediction, written, folder = result.prediction, result.files, result.folder
        table = organ_table_csv(prediction, folder / f"segapp-organs-{stamp()}.csv")
        meshes = organ_meshes(prediction.labels, volume.affine_lps)
        palette = organ_palette(colors)
        mesh = _write_meshes(folder, meshes, palette)
        stats = volume_stats(prediction)
        write_text_atomic(folder / "statistics.json", json.dumps(stats, indent=2))
        view = VolumeView.of(volume.slices_uint8(), prediction.labels, volume.spacing_mm,
                             confidence=prediction.confidence, meshes=meshes)
        middle = _middle_of_organs(prediction, view.slices)
        visible = None if classes is None else visible_classes(classes)
        return VolumeOutputs(
            views=views_html(view, middle, opacity=opacity, visible=visible, palette=palette),
            # Gradio's slider needs maximum > minimum: a one-slice volume gets a still slider.
            slider=gr.Slider(minimum=1, maximum=max(2, view.slices), value=middle + 1, step=1,
                             interactive=view.slices > 1),
            card=volume_card_html(prediction, model_text(self.callbacks.volume_segmenter())),
            nifti=str(written["nifti"]),
            seg=str(written["dicom-seg"]) if "dicom-seg" in written else None,
            rtstruct=str(written["rtstruct"]) if "rtstruct" in written else None,
            table=str(table),
            mesh=str(mesh),
            stats=stats,
            state=view,
        )

    def segment_api(self, file: str | None, series: str | None = None) -> tuple[str, dict[str, Any]]:
        """The ``/segment_volume`` API: the NIfTI label map's path and the statistics dict."""
        result = self._process(self.read(file, series), every=False)
        return str(result.files["nifti"]), volume_stats(result.prediction)

    def show(self, view: VolumeView | None, slice_number: float, opacity: float,
             classes: Sequence[str] | None, *colors: str) -> Any:
        """The planes for slice ``slice_number`` (1-based, as the slider shows it) in ``colors`` (one
        per organ); nothing before a volume."""
        if view is None:
            return gr.skip()
        return views_html(view, int(round(slice_number)) - 1, opacity=opacity, visible=visible_classes(classes),
                          palette=organ_palette(colors or None))

    def recolour(self, view: VolumeView | None, *colors: str) -> Any:
        """The meshes in ``colors`` as a new .glb (for the 3D view and its download); nothing before a volume."""
        if view is None or not view.meshes:
            return gr.skip()
        return str(_write_meshes(self.callbacks.outputs.new(), view.meshes, organ_palette(colors or None)))

    def distribution(self, view: VolumeView | None, *colors: str) -> list[Any]:
        """The confidence distribution's plots (one per organ, over its voxels); empty before a volume."""
        palette = organ_palette(colors or None)
        if view is None:
            return distribution_updates(None, None, palette)
        return distribution_updates(view.labels, view.confidence, palette)

    def clear(self) -> VolumeOutputs:
        """Empty volume results."""
        return VolumeOutputs(views=empty_views_html(), slider=gr.Slider(minimum=1, maximum=2, value=1, interactive=False),
                             card=empty_volume_card(), nifti=None, seg=None, rtstruct=None, table=None,
                             mesh=None, stats=None, state=None)

    # The example

    def example(self) -> str:
        """A zip of the 144-slice phantom MR series (made once per process, about 2 s, in a
        temporary folder removed when the process exits; about 15 MB). A copy goes to a fresh
        output folder, so it is served and deleted like an upload."""
        with self._example_lock:
            if self._example is None or not self._example.is_file():
                folder = Path(tempfile.mkdtemp(prefix="segapp-example-"))
                atexit.register(shutil.rmtree, folder, True)
                self._example = make_example_zip(folder)
        copy = self.callbacks.outputs.new() / EXAMPLE_NAME
        with atomic_path(copy) as temp:
            shutil.copyfile(self._example, temp)
        return str(copy)


def make_example_zip(folder: Path, *, count: int = 144) -> Path:
    """Write the phantom series (seed 0, case 1, day 1; ``count`` slices) as ``folder/phantom-series.zip``."""
    series = folder / "series"
    files = write_dicom_series(phantom_volume(0, 1, 1, first=1, count=count), series)
    archive = folder / EXAMPLE_NAME
    with atomic_file(archive, "wb") as handle, zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED,
                                                               compresslevel=6) as out:
        for path in files:
            out.write(path, arcname=f"series/{path.name}")
    shutil.rmtree(series, ignore_errors=True)
    return archive


def _middle_of_organs(prediction: VolumePrediction, slices: int) -> int:
    """The slice halfway through the organs found (the volume's middle when none): a first view
    that shows something."""
    spans = [organ.slices for organ in prediction.organs.values() if organ.slices is not None]
    if not spans:
        return slices // 2
    return (min(s[0] for s in spans) + max(s[1] for s in spans)) // 2


def _write_meshes(folder: Path, meshes: Iterable[Mesh], palette: Palette | None) -> Path:
    """The organ meshes in ``palette``'s colours as a new ``.glb`` in ``folder`` (written atomically)."""
    path = folder / f"segapp-organs-{stamp()}.glb"
    write_bytes_atomic(path, glb_bytes(recoloured(meshes, palette)))
    return path
