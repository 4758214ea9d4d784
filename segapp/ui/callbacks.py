"""What the page's buttons do, as plain functions over the Segmenter (testable without a browser).

The page wires these to Gradio events; they take and return plain values (file paths,
numbers, numpy images, HTML strings), raise :class:`gradio.Error` with a message for the
person at the screen, and never log file names, which can carry patient ids. The HTML and
markdown they return is made in :mod:`segapp.ui.cards`.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import gradio as gr
import numpy as np

from segapp.inference.render import color_mask, confidence_map, overlay
from segapp.io.files import write_bytes_atomic, write_text_atomic
from segapp.io.image import IMAGE_SUFFIXES, InvalidImageError, ScanImage, save_mask_png, save_png
from segapp.io.readers import read_image
from segapp.labels import organ_palette
from segapp.ui.cards import (
    about_markdown,
    empty_card_html,
    model_badge_html,
    ready_card_html,
    stamp,
    stats_card_html,
    stats_payload,
    user_error,
    visible_classes,
    weights_name,
)
from segapp.ui.plots import distribution_updates

if TYPE_CHECKING:  # torch stays unimported until a model is needed
    from segapp.inference.segmenter import Prediction, Segmenter

log = logging.getLogger(__name__)

# An MRI slice is a few hundred pixels a side; this bounds memory per request and per session.
APP_MAX_PIXELS = 4096 * 4096
# A slice file is well under 1 MB. The server's own upload bound is the volume tab's (hundreds
# of MB, Gradio has one bound per app), so the slice tab and /segment refuse bigger files here.
MAX_SLICE_MB = 50
MAX_SPACING_MM = 50.0  # beyond any MRI pixel; a typo such as "15" for "1.5" still passes
OUTPUT_PREFIX = "segapp-"


@dataclass(frozen=True, eq=False)
class ViewState:
    """What re-rendering needs from the last prediction, kept per browser session.

    Attributes:
        gray: (H, W) uint8 slice as segmented.
        mask: (H, W) uint8 class ids.
        confidence: (H, W) float winning-class probabilities, for the confidence distribution.
    """

    gray: np.ndarray
    mask: np.ndarray
    confidence: np.ndarray | None = None


class SegmentOutputs(NamedTuple):
    """Everything one segmentation shows on the page.

    ``mask_png``, ``overlay_png`` and ``stats_file`` are paths of files to download; ``stats``
    is the same statistics as a dict. Images are (H, W, 3) uint8; the page shows the overlay
    from ``overlay_png`` instead, where that file exists (:func:`segapp.ui.page.overlay_from_file`).
    Built with keywords, and the page wires its components by field name, so the order is free.
    """

    mask_png: str | None
    stats: dict[str, Any] | None
    overlay_png: str | None
    stats_file: str | None
    overlay: np.ndarray | str | None
    mask_view: np.ndarray | None
    confidence: np.ndarray | None
    card: str
    state: ViewState | None


class RenderOutputs(NamedTuple):
    """A re-render after an opacity or class-toggle change: the overlay (file and image), the mask view."""

    overlay_png: str | None
    overlay: np.ndarray | str | None
    mask_view: np.ndarray | None



# ---------------------------------------------------------------------------
# Pure helpers


_NUMBER = r"([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?)"
_SPACING_RE = re.compile(rf"\s*{_NUMBER}(?:\s*[x×*]\s*{_NUMBER}|\s+{_NUMBER})?\s*(?:mm)?\s*", re.IGNORECASE)


def parse_spacing_text(text: str | None) -> tuple[float, float] | None:
    """Pixel spacing typed by the user -> (row, column) in mm; empty text -> None.

    Accepts one number (square pixels) or two separated by ``x``, ``×`` or spaces, optionally
    followed by ``mm``: ``"1.5"``, ``"1.5 x 1.6"``, ``"1.5 1.6 mm"``. A comma is a decimal
    comma (``"1,5"`` is 1.5 mm), never a separator, so no European entry is misread.

    Raises:
        gradio.Error: Not one or two numbers in (0, 50] mm.
    """
    if text is None or not str(text).strip():
        return None
    match = _SPACING_RE.fullmatch(str(text).replace(",", "."))
    values = [float(v) for v in match.groups() if v is not None] if match else []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or not all(math.isfinite(v) and 0 < v <= MAX_SPACING_MM for v in values):
        raise user_error(
            f"Pixel spacing '{text}' is not understood. Enter one or two positive numbers in mm, "
            "e.g. 1.5 or 1.5 x 1.5, or leave the field empty."
        )
    return values[0], values[1]


def described(segmenter: Segmenter) -> dict[str, Any]:
    """:meth:`Segmenter.describe` plus the channels' slice offsets (``context_offsets``)."""
    return {**segmenter.describe(), "context_offsets": list(segmenter.processing.context_offsets)}


def find_examples(folder: str | Path | None) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; [] when it is missing or empty."""
    if folder is None:
        return []
    path = Path(folder)
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


class OutputFolders:
    """Fresh per-request folders under one root, with a rate-limited sweep of empty leftovers.

    Folder names are random, never derived from the upload. Gradio's ``delete_cache`` removes
    the files inside (they are in its cache folder, so it serves them without copying) but not
    the folders; :meth:`new` removes folders left empty for ``grace_s`` seconds, at most once
    every ``sweep_every_s`` seconds. Sweeping on every request cost a directory listing per
    request, which grows with traffic (60 ms per request at 32,000 entries); the grace period
    keeps a sweep from removing a folder that another request has made and not yet filled.
    Safe to share between threads.
    """

    def __init__(self, root: str | Path, *, sweep_every_s: float = 60.0, grace_s: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.root = Path(root)
        self.sweep_every_s = sweep_every_s
        self.grace_s = grace_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_sweep = -math.inf

    def new(self) -> Path:
        """Create and return an empty folder ``root/segapp-<random hex>``."""
        self.root.mkdir(parents=True, exist_ok=True)
        now = self._clock()
        with self._lock:
            due = now - self._last_sweep >= self.sweep_every_s
            if due:
                self._last_sweep = now
        if due:
            self.sweep(now)
        folder = self.root / f"{OUTPUT_PREFIX}{uuid.uuid4().hex}"
        folder.mkdir()
        return folder

    def sweep(self, now: float | None = None) -> int:
        """Remove this root's ``segapp-*`` folders that are empty and older than the grace period.

        Returns:
            How many folders were removed.
        """
        now = self._clock() if now is None else now
        removed = 0
        with os.scandir(self.root) as entries:
            for entry in entries:
                if not entry.name.startswith(OUTPUT_PREFIX) or not entry.is_dir(follow_symlinks=False):
                    continue
                try:
                    if now - entry.stat(follow_symlinks=False).st_mtime < self.grace_s:
                        continue
                    os.rmdir(entry.path)  # only succeeds for empty folders
                    removed += 1
                except OSError:
                    pass
        return removed


def _loaded_or_error(model: Segmenter | Callable[[], Segmenter], what: str) -> Segmenter:
    """``model`` itself, or what its factory returns; a load failure becomes a :class:`gradio.Error`."""
    try:
        return model() if callable(model) else model
    except Exception as exc:  # ModelLoadError and anything else the loader raises
        log.error("%s could not be loaded: %s", what.lower(), exc)
        raise gr.Error(
            html.escape(f"{what} could not be loaded: {exc}", quote=False),
            title="Model unavailable",
            print_exception=False,
        ) from None


def _if_loaded(model: Segmenter | Callable[[], Segmenter]) -> Segmenter | None:
    """The Segmenter behind ``model`` when it exists already, else None (nothing is loaded):
    a factory counts as loaded when its ``loaded`` says so (:class:`~segapp.ui.server.LazySegmenter`)."""
    if not callable(model):
        return model
    return model() if getattr(model, "loaded", False) is True else None


def _folder_offsets(source: str) -> tuple[int, int, int] | None:
    """A local model folder's channel offsets, read from its preprocessing file; None otherwise."""
    if not Path(source).is_dir():
        return None
    # Imported here: it imports torch, which the page's start does without.
    from segapp.model.processing import ProcessingConfig

    try:
        return ProcessingConfig.from_folder(source).context_offsets
    except (OSError, ValueError):  # an unreadable file: the load at the first volume says why
        return None


def _spacing_origin(scan: ScanImage) -> str | None:
    """Where a read slice's spacing came from: a DICOM file's header, else the file name."""
    if scan.spacing_mm is None:
        return None
    return "from the DICOM header" if scan.original_mode.startswith("DICOM") else "from the file name"


# ---------------------------------------------------------------------------
# Callbacks


class Callbacks:
    """The page's event handlers around the shared Segmenter (and the volume mode's, when it has its own).

    Holds no per-user data: what a user's later events need travels in :class:`ViewState`.
    """

    def __init__(
        self,
        segmenter: Segmenter | Callable[[], Segmenter],
        *,
        volume_segmenter: Segmenter | Callable[[], Segmenter] | None = None,
        output_root: str | Path,
        examples: Sequence[str | Path] = (),
        max_pixels: int = APP_MAX_PIXELS,
    ) -> None:
        """Set up the handlers.

        Args:
            segmenter: The Segmenter, or a callable returning it (created on first use).
            volume_segmenter: The volume mode's Segmenter or callable (e.g. a 2.5D model, loaded
                at the first volume); None: the volume mode uses ``segmenter``.
            output_root: Where per-request download files are written (Gradio's cache folder).
            examples: Example files, in the order the page lists them.
            max_pixels: Largest accepted H * W of an upload.
        """
        self._segmenter = segmenter
        self._volume_segmenter = segmenter if volume_segmenter is None else volume_segmenter
        self.output_root = Path(output_root)
        self.outputs = OutputFolders(self.output_root)
        self.examples = [Path(p) for p in examples]
        self.max_pixels = max_pixels

    def _load(self) -> Segmenter:
        return self._segmenter() if callable(self._segmenter) else self._segmenter

    def segmenter(self) -> Segmenter:
        """The shared Segmenter; loads it on first use when given a factory.

        Raises:
            gradio.Error: The weights cannot be loaded.
        """
        return _loaded_or_error(self._segmenter, "The model")

    def volume_segmenter(self) -> Segmenter:
        """The volume mode's Segmenter (the slice one unless it has its own); loads it on first use.

        Raises:
            gradio.Error: The weights cannot be loaded.
        """
        return _loaded_or_error(self._volume_segmenter, "The volume model")

    def volume_about(self, slice_model: Segmenter | None) -> str:
        """The About panel's "Volume mode" line; loads nothing (a second model costs memory only
        once a volume is segmented). Before loading, a local folder's offsets are read from its
        ``preprocessor_config.json``."""
        # The same model: one factory for both modes, or a LazySegmenter whose source is "same".
        shared = self._volume_segmenter is self._segmenter or getattr(self._volume_segmenter, "shares_model", False)
        ready = None if shared else _if_loaded(self._volume_segmenter)
        if shared or (ready is not None and ready is slice_model):
            return "the slice mode's weights"
        if ready is not None:
            info = described(ready)
            return (weights_name(str(info["source"]), str(info["kind"]), info["context_offsets"])
                    + f"; SegFormer-{str(info['variant']).upper()}, {int(info['parameters']):,} parameters, "
                    f"on `{info['device']}`")
        source = getattr(self._volume_segmenter, "source", None)
        if source is None:
            return "own weights, loaded at the first volume"
        return weights_name(str(source), None, _folder_offsets(str(source))) + "; loaded at the first volume"

    def read(self, file: str | None, spacing_text: str | None) -> tuple[ScanImage, str | None]:
        """Read an uploaded file into a slice, applying a typed spacing.

        Returns:
            The slice and where its spacing came from (``"entered"``, ``"from the DICOM header"``,
            ``"from the file name"``, None).

        Raises:
            gradio.Error: No file, a file no longer on the server, over :data:`MAX_SLICE_MB`, or an
                unusable image.
        """
        if not file:
            raise user_error("No slice yet: upload an image file (or click one of the examples).")
        path = Path(file)
        if not path.is_file():
            raise user_error(
                "The uploaded file is no longer on the server (uploads are deleted after a few "
                "minutes for privacy). Upload it again."
            )
        size = path.stat().st_size
        if size > MAX_SLICE_MB * 2**20:
            raise user_error(
                f"The file is {size / 2**20:,.0f} MB; single slices up to {MAX_SLICE_MB} MB are accepted (a "
                "slice is well under 1 MB). For a whole series use the Volume tab (or /segment_volume)."
            )
        spacing = parse_spacing_text(spacing_text)
        try:
            scan = read_image(path, spacing_mm=spacing, max_pixels=self.max_pixels)
        except InvalidImageError as exc:
            raise user_error(str(exc)) from None
        source = "entered" if spacing is not None else _spacing_origin(scan)
        return scan, source

    def preview(self, file: str | None, spacing_text: str | None) -> SegmentOutputs:
        """After an upload: show the slice as read (16-bit scans windowed to 8-bit) and clear old results."""
        if not file:
            return self.clear()
        scan, source = self.read(file, spacing_text)
        gray_rgb = np.repeat(scan.pixels[..., None], 3, axis=2)
        return self.clear()._replace(overlay=gray_rgb, card=ready_card_html(scan, source))

    def segment(
        self,
        file: str | None,
        spacing_text: str | None = "",
        opacity: float = 0.5,
        classes: Sequence[str] | None = None,
        colors: Sequence[str] | None = None,
    ) -> SegmentOutputs:
        """Segment one uploaded slice.

        Args:
            file: Path of the uploaded image.
            spacing_text: Optional pixel spacing in mm (see :func:`parse_spacing_text`); overrides
                the file name's.
            opacity: Overlay opacity, 0..1.
            classes: Organ names to draw; None draws all.
            colors: One colour per organ (the page's pickers); None: the label table's.

        Raises:
            gradio.Error: With a readable message for every user error or failure.
        """
        prediction, source = self._predict(file, spacing_text)
        return self._outputs(prediction, source, opacity, classes, colors)

    def segment_api(self, file: str | None, spacing_text: str | None = "") -> tuple[str, dict[str, Any]]:
        """The ``/segment`` API: only what a program needs, so the web path stays light.

        Returns:
            The class-id mask PNG's path (training-mask format) and the statistics dict.

        Raises:
            gradio.Error: With a readable message for every user error or failure.
        """
        prediction, source = self._predict(file, spacing_text)
        mask_path = self.outputs.new() / f"segapp-mask-{stamp()}.png"
        # A temporary download removed by delete_cache: no fsync needed.
        save_mask_png(prediction.mask, mask_path, durable=False)
        return str(mask_path), stats_payload(prediction, spacing_source=source)

    def _predict(self, file: str | None, spacing_text: str | None) -> tuple[Prediction, str | None]:
        """Read and segment one upload; every failure becomes a readable :class:`gradio.Error`."""
        scan, source = self.read(file, spacing_text)
        segmenter = self.segmenter()
        try:
            prediction = segmenter.predict(scan)
        except InvalidImageError as exc:
            raise user_error(str(exc)) from None
        except Exception as exc:  # keep serving; details stay in the server log, without the name
            log.debug("segmentation failed", exc_info=True)
            log.error("segmentation failed: %s", type(exc).__name__)
            raise user_error(
                f"Segmentation failed unexpectedly ({type(exc).__name__}). The server is still "
                "running: try again, or try another slice."
            ) from None
        log.info(
            "segmented a %dx%d slice in %.0f ms on %s",
            scan.width,
            scan.height,
            sum(prediction.timings_ms.values()),
            prediction.device,
        )
        return prediction, source

    def _outputs(
        self,
        prediction: Prediction,
        spacing_source: str | None,
        opacity: float,
        classes: Sequence[str] | None,
        colors: Sequence[str] | None = None,
    ) -> SegmentOutputs:
        visible = None if classes is None else visible_classes(classes)
        gray, mask = prediction.image.pixels, prediction.mask
        palette = organ_palette(colors)
        blended = overlay(gray, mask, opacity=opacity, visible=visible, palette=palette)
        folder = self.outputs.new()
        made = stamp()
        mask_path = folder / f"segapp-mask-{made}.png"
        overlay_path = folder / f"segapp-overlay-{made}.png"
        stats_path = folder / f"segapp-stats-{made}.json"
        save_mask_png(mask, mask_path, durable=False)
        save_png(blended, overlay_path, durable=False, compress_level=1)  # made per request
        stats = stats_payload(prediction, spacing_source=spacing_source)
        write_text_atomic(stats_path, json.dumps(stats, indent=2))
        return SegmentOutputs(
            mask_png=str(mask_path),
            stats=stats,
            overlay_png=str(overlay_path),
            stats_file=str(stats_path),
            overlay=blended,
            mask_view=color_mask(mask, visible, palette=palette),
            confidence=confidence_map(prediction.confidence),
            card=stats_card_html(prediction, spacing_source=spacing_source),
            state=ViewState(gray=gray, mask=mask, confidence=prediction.confidence),
        )

    def rerender(
        self, state: ViewState | None, opacity: float, classes: Sequence[str] | None,
        colors: Sequence[str] | None = None,
    ) -> RenderOutputs:
        """Redraw overlay and mask for new opacity, class toggles or colours, without running the model."""
        if state is None:
            return RenderOutputs(overlay_png=gr.skip(), overlay=gr.skip(), mask_view=gr.skip())
        visible = visible_classes(classes)
        palette = organ_palette(colors)
        blended = overlay(state.gray, state.mask, opacity=opacity, visible=visible, palette=palette)
        path = self.outputs.new() / f"segapp-overlay-{stamp()}.png"
        save_png(blended, path, durable=False, compress_level=1)  # a temporary download, as in segment
        return RenderOutputs(overlay_png=str(path), overlay=blended,
                             mask_view=color_mask(state.mask, visible, palette=palette))

    def distribution(self, state: ViewState | None, colors: Sequence[str] | None = None) -> list[Any]:
        """The confidence distribution's plots (one per organ) for the shown slice; empty without one."""
        if state is None:
            return distribution_updates(None, None, organ_palette(colors))
        return distribution_updates(state.mask, state.confidence, organ_palette(colors))

    def example(
        self, index: int, spacing_text: str | None, opacity: float, classes: Sequence[str] | None,
        colors: Sequence[str] | None = None,
    ) -> tuple[str, SegmentOutputs]:
        """Click on example ``index``: put a copy in the upload field and segment it.

        The copy lives in the output folder (Gradio's cache), so Gradio serves it whatever the
        working directory, and it is cleaned up like an upload. Its name is kept (it carries the
        spacing).

        Raises:
            gradio.Error: Unknown index, or the example cannot be segmented.
        """
        if not isinstance(index, int) or not 0 <= index < len(self.examples):
            raise user_error("That example is not available.")
        source = self.examples[index]
        copy = self.outputs.new() / source.name
        write_bytes_atomic(copy, source.read_bytes())  # an example slice: well under 1 MB
        return str(copy), self.segment(str(copy), spacing_text, opacity, classes, colors)

    def about(self) -> tuple[str, str]:
        """The About text and the header badge; loads the slice model if needed (never the
        volume mode's own), never raises."""
        try:
            segmenter = self._load()
        except Exception as exc:  # shown in the page; segment() reports it again as an error
            return (about_markdown(None, None, error=str(exc), volume=self.volume_about(None)),
                    model_badge_html(None))
        info = described(segmenter)
        return (about_markdown(info, segmenter.loaded.card, volume=self.volume_about(segmenter)),
                model_badge_html(info))

    def clear(self) -> SegmentOutputs:
        """Empty results (the page also empties the upload and spacing fields)."""
        return SegmentOutputs(
            mask_png=None,
            stats=None,
            overlay_png=None,
            stats_file=None,
            overlay=None,
            mask_view=None,
            confidence=None,
            card=empty_card_html(),
            state=None,
        )
