"""The page: layout and event wiring of the Gradio app (the work is done in :mod:`segapp.ui.callbacks`).

:func:`build_demo` lays the page out from one builder per panel and wires it with one function per
group of events; the volume tab is :mod:`segapp.ui.volume_tab`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import gradio as gr
from gradio.components import Component

from segapp.io.image import InvalidImageError
from segapp.io.readers import read_image
from segapp.ui.batch import BatchCallbacks
from segapp.ui.batch_panel import build_batch_panel
from segapp.ui.callbacks import Callbacks, RenderOutputs, SegmentOutputs, find_examples
from segapp.ui.cards import (
    NOT_FOR_CLINICAL_USE,
    about_markdown,
    empty_card_html,
    model_badge_html,
)
from segapp.ui.controls import overlay_controls, palette_controls, wire_palette
from segapp.ui.plots import distribution_plots
from segapp.ui.volume import VolumeCallbacks
from segapp.ui.volume_tab import build_volume_tab

if TYPE_CHECKING:
    from segapp.inference.segmenter import Segmenter

log = logging.getLogger(__name__)

TITLE = "Medical Image Segmentation System"
SUBTITLE = "AI-Powered GI Tract Segmentation"
# Uploads and results leave Gradio's cache this long after they were written (checked every minute).
DELETE_CACHE = (60, 300)
# Our per-request folders live apart from Gradio's upload folders, so sweeping them stays cheap.
OUTPUT_SUBDIR = "segapp_outputs"
QUEUE_SIZE = 32  # requests waiting at most; more get Gradio's "queue is full" message
CONCURRENCY = 4  # handlers running at once off CUDA; the model step itself is serialised by the Segmenter
CUDA_CONCURRENCY = 16  # on a GPU: up to 16 concurrent requests share one forward pass (Segmenter.predict)
STATE_TTL_S = 1800  # a session's last prediction is dropped after this long without an update
IMAGE_HEIGHT = 440


def header_html(badges: str = "") -> str:
    """The gradient page header, with ``badges`` (HTML) under the subtitle."""
    return (
        '<div class="app-header"><div class="app-header-text">'
        f'<h1>{TITLE}</h1><p>{SUBTITLE}</p><div class="badges">{badges}</div></div>'
        '<div class="app-header-icon" aria-hidden="true">'
        '<svg viewBox="0 0 48 48" width="46" height="46"><circle cx="24" cy="24" r="21" fill="none" '
        'stroke="white" stroke-opacity=".55" stroke-width="2"/><path d="M15 17c4-5 14-5 17 1 2 5-3 8-8 '
        '8s-9 3-7 8c2 4 10 5 14 1" fill="none" stroke="white" stroke-width="3" stroke-linecap="round"/>'
        "</svg></div></div>"
    )


def _example_thumbnails(paths: list[Path]) -> tuple[list[Path], list[list[Any]]]:
    """Examples that can be read, with an 8-bit thumbnail each (16-bit scans look black as they are)."""
    usable, samples = [], []
    for path in paths:
        try:
            pixels = read_image(path).pixels
        except InvalidImageError as exc:
            log.warning("example %s skipped: %s", path.name, exc)
            continue
        usable.append(path)
        samples.append([pixels])
    return usable, samples


Shown = TypeVar("Shown", SegmentOutputs, RenderOutputs)

# The SegmentOutputs fields that are files behind a download button.
DOWNLOAD_FIELDS = ("mask_png", "overlay_png", "stats_file")


def overlay_from_file(outputs: Shown) -> Shown:
    """Show the overlay from the PNG already written for its download button.

    Gradio serves a file path as it is, where a numpy image would be PNG-encoded a second time
    (about 30 ms for a 266 x 266 slice on a 2-core CPU). A missing file (a preview) keeps the array.
    """
    if outputs.overlay_png is not None and outputs.overlay is not None:
        return outputs._replace(overlay=outputs.overlay_png)
    return outputs


def in_field_order(fields: Sequence[str], components: Mapping[str, Component]) -> list[Component]:
    """The event outputs for a NamedTuple's ``fields``: ``components`` (field name -> component)
    listed in the fields' order, so a handler can return the tuple's values as they are.

    Raises:
        ValueError: ``components`` does not name exactly the fields.
    """
    if set(components) != set(fields) or len(components) != len(fields):
        raise ValueError(f"components {sorted(components)} do not match the fields {sorted(fields)}")
    return [components[name] for name in fields]


def configure_queue(demo: gr.Blocks, concurrency: int) -> int:
    """Let ``concurrency`` handlers run at once and at least :data:`QUEUE_SIZE` more wait.

    Returns:
        The queue's size bound; requests beyond it get Gradio's "queue is full" answer.
    """
    max_size = max(QUEUE_SIZE, 2 * concurrency)
    # api_open=False: Gradio's default (outside Spaces) also serves every event at
    # POST /gradio_api/run/NAME, which skips the queue -- its size bound and concurrency limits --
    # so a flood of direct calls would run all at once. Every call goes through the queue.
    demo.queue(max_size=max_size, default_concurrency_limit=concurrency, api_open=False)
    return max_size


def build_demo(
    segmenter: Segmenter | Callable[[], Segmenter],
    *,
    volume_segmenter: Segmenter | Callable[[], Segmenter] | None = None,
    examples_dir: str | Path | None = None,
    output_root: str | Path | None = None,
) -> gr.Blocks:
    """Build the page (not launched, not loading the model).

    Args:
        segmenter: The Segmenter, or a callable that returns it (called at first use, so the
            page can be built at import time without loading weights).
        volume_segmenter: The volume mode's own model (Segmenter or callable, called at the
            first volume), e.g. a 2.5D one; None: the volume mode uses ``segmenter``.
        examples_dir: Folder of example slices for "Try These Examples"; missing or empty is fine.
        output_root: Where per-request download files go; defaults to a folder inside Gradio's
            cache folder, so ``delete_cache`` removes them with the uploads.

    Returns:
        The Blocks with a bounded queue. Launch it with :func:`segapp.ui.server.launch_options`
        (theme, CSS, privacy settings).
    """
    examples, samples = _example_thumbnails(find_examples(examples_dir))
    with gr.Blocks(title=f"{TITLE} · segapp", delete_cache=DELETE_CACHE, analytics_enabled=False) as demo:
        output_root = output_root or Path(demo.GRADIO_CACHE) / OUTPUT_SUBDIR
        callbacks = Callbacks(segmenter, volume_segmenter=volume_segmenter, output_root=output_root,
                              examples=examples)
        state = gr.State(None, time_to_live=STATE_TTL_S)
        header = gr.HTML(header_html(model_badge_html(None)), elem_id="app-header")
        colours = palette_controls()

        # Layout: the two modes as tabs, then the About panel (components appear in this order).
        with gr.Tabs(elem_id="modes"):
            with gr.Tab("Slice", id="mode-slice", elem_id="slice-tab"):
                with gr.Row(equal_height=False, elem_id="main-row"):
                    controls = _slice_input_panel()
                    views, plots = _slice_result_panel()
                    controls = replace(controls, distribution=plots)
                full_view = in_field_order(SegmentOutputs._fields, {**views, "state": state})
                batch_opened = build_batch_panel(
                    BatchCallbacks(callbacks), _download, [controls.opacity, controls.classes, *colours.pickers],
                    full_view, lambda outputs: list(overlay_from_file(outputs)))
                gallery = _examples_panel(samples)
            with gr.Tab("Volume", id="mode-volume", elem_id="volume-tab"):
                volume_runs = build_volume_tab(VolumeCallbacks(callbacks), _download, colours.pickers)
        about = _about_panel()

        # Wiring: the /segment API first, then the slice tab's events, then the About panel.
        _wire_segment_api(callbacks, controls)
        _wire_slice_tab(callbacks, controls, {**views, "state": state}, gallery, colours.pickers, batch_opened)
        wire_palette(demo, colours)
        _wire_about(demo, callbacks, about, header, volume_runs)

    configure_queue(demo, CONCURRENCY)
    guard_cache_sets(demo)
    return demo


@dataclass(frozen=True)
class SliceControls:
    """The slice tab's input panel: the upload and the display controls."""

    upload: gr.File
    spacing: gr.Textbox
    classes: gr.CheckboxGroup
    opacity: gr.Slider
    clear: gr.Button
    submit: gr.Button
    distribution: list[gr.BarPlot] | None = None  # the confidence distribution, set by the result panel


def _slice_input_panel() -> SliceControls:
    """Left column: upload, pixel spacing, legend, organ toggles, opacity, Clear and Submit."""
    with gr.Column(scale=4, min_width=300, elem_id="left-col"):
        upload = gr.File(
            label="MRI slice: PNG (8 or 16-bit), JPEG, TIFF, BMP, WebP, or one DICOM image",
            file_count="single",
            type="filepath",
            elem_id="upload",
            height=170,
        )
        spacing = gr.Textbox(
            label="Pixel spacing (mm), optional",
            placeholder="read from the file name, or e.g. 1.5 or 1.5 x 1.5",
            max_lines=1,
            elem_id="spacing",
        )
        classes, opacity = overlay_controls()
        with gr.Row(elem_id="buttons"):
            clear = gr.Button("Clear", variant="secondary", elem_id="clear")
            submit = gr.Button("Submit", variant="primary", elem_id="submit")
    return SliceControls(upload, spacing, classes, opacity, clear, submit)


def _slice_result_panel() -> tuple[dict[str, Component], list[gr.BarPlot]]:
    """Right column: the overlay, mask and confidence views (the confidence distribution under the
    map), the card, the downloads and the JSON.

    Returns:
        The components by the :class:`SegmentOutputs` field each shows (all but ``state``), and
        the confidence distribution's plots.
    """
    with gr.Column(scale=7, min_width=360, elem_id="right-col"):
        with gr.Tabs(elem_id="views"):
            with gr.Tab("Overlay", id="tab-overlay"):
                overlay_view = _image("Overlay", "overlay-view")
            with gr.Tab("Mask", id="tab-mask"):
                mask_view = _image("Mask", "mask-view")
            with gr.Tab("Confidence", id="tab-confidence"):
                confidence_view = _image("Confidence", "confidence-view")
                gr.HTML(
                    '<div class="colorbar"><span>low</span><span class="ramp"></span>'
                    "<span>high confidence</span></div>"
                )
                plots = distribution_plots()
        card = gr.HTML(empty_card_html(), label="Statistics card", elem_id="stats")
        with gr.Row(elem_id="downloads"):
            mask_button = _download("Mask PNG", "download-mask")
            overlay_button = _download("Overlay PNG", "download-overlay")
            stats_button = _download("Statistics JSON", "download-stats")
        with gr.Accordion("Statistics as JSON", open=False, elem_id="json-accordion"):
            stats_json = gr.JSON(label="Statistics", show_label=False)
    return {
        "mask_png": mask_button,
        "stats": stats_json,
        "overlay_png": overlay_button,
        "stats_file": stats_button,
        "overlay": overlay_view,
        "mask_view": mask_view,
        "confidence": confidence_view,
        "card": card,
    }, plots


def _examples_panel(samples: list[list[Any]]) -> gr.Dataset | None:
    """"Try These Examples": a gallery of the example slices, or a line saying there are none."""
    gr.HTML('<h2 class="section-title">Try These Examples</h2>', elem_id="examples-title")
    if not samples:
        gr.HTML(
            '<p class="examples-caption">No example slices are bundled with this installation '
            "(add PNG slices to the <code>examples/</code> folder).</p>"
        )
        return None
    return gr.Dataset(
        components=[gr.Image(format="png", render=False)],
        samples=samples,
        type="index",
        layout="gallery",
        samples_per_page=12,
        label="Click a slice to segment it",
        elem_id="examples",
    )


def _about_panel() -> gr.Markdown:
    """The About accordion (filled when the page loads) and the not-for-clinical-use footer."""
    with gr.Accordion("About", open=False, elem_id="about"):
        about = gr.Markdown(about_markdown(None, None), elem_id="about-text")
    gr.HTML(f'<footer class="app-footer">{NOT_FOR_CLINICAL_USE.replace("**", "")}</footer>')
    return about


def _wire_segment_api(callbacks: Callbacks, controls: SliceControls) -> None:
    """The ``/segment`` API: a lean event of its own on hidden components, so a program receives
    the mask file and the statistics without the page's rendered views (each file output is one
    more download for gradio_client)."""
    api_trigger = gr.Button(visible=False, elem_id="api-trigger")
    api_mask = gr.File(visible=False, label="Class-id mask PNG")
    api_stats = gr.JSON(visible=False, label="Statistics")

    # Parameter names and defaults are the API's: a client may send the image alone.
    def segment_api(image: str | None, spacing_mm: str | None = None) -> tuple[str, dict[str, Any]]:
        return callbacks.segment_api(image, spacing_mm)

    api_trigger.click(
        segment_api,
        inputs=[controls.upload, controls.spacing],
        outputs=[api_mask, api_stats],
        api_name="segment",
        api_description="Segment one MRI slice (image file or one single-frame DICOM image, up to 50 MB; "
        "optional pixel spacing in mm such as "
        "'1.5' or '1.5 x 1.63'). Returns the class-id mask PNG (0 background, 1 stomach, 2 small "
        "bowel, 3 large bowel; the training masks' format) and the statistics.",
        concurrency_id="model",
    )


def _wire_slice_tab(callbacks: Callbacks, controls: SliceControls, views: Mapping[str, Component],
                    gallery: gr.Dataset | None, pickers: Sequence[gr.ColorPicker], batch_opened: Any = None) -> None:
    """The slice tab's events. Each result component is named by its SegmentOutputs field and
    listed in the fields' order, so handlers pass the tuples' values on as they are. ``pickers``:
    the page's organ colours, an input of every drawing event; ``batch_opened``: the event that
    opens a batch slice in the full view (its downloads and distribution follow as after Submit)."""
    upload, spacing, opacity, classes = controls.upload, controls.spacing, controls.opacity, controls.classes
    plots = controls.distribution or []
    results = in_field_order(SegmentOutputs._fields, views)
    rerendered = [views[name] for name in RenderOutputs._fields]
    downloads = [views[name] for name in DOWNLOAD_FIELDS]

    def show(outputs: SegmentOutputs) -> list[Any]:
        # For the page's own events: download buttons are enabled only when they hold a file.
        values: dict[str, Any] = outputs._asdict()
        for name in DOWNLOAD_FIELDS:
            values[name] = gr.DownloadButton(value=values[name], interactive=values[name] is not None)
        return [values[name] for name in SegmentOutputs._fields]

    def enable_downloads():
        return [gr.DownloadButton(interactive=True)] * len(downloads)

    # The events return plain values (file paths, dict), not updates; the buttons are enabled
    # by a follow-up event.
    def segment(image: str | None, spacing_mm: str | None = None, opacity: float = 0.5,
                classes: list[str] | None = None, *colors: str) -> list[Any]:
        return list(overlay_from_file(callbacks.segment(image, spacing_mm, opacity, classes, colors)))

    def preview(file: str | None, spacing_text: str):
        return show(callbacks.preview(file, spacing_text))

    def clear_all():
        return [None, ""] + show(callbacks.clear())

    def rerender(view_state, opacity_value: float, shown: list[str], *colors: str):
        return list(overlay_from_file(callbacks.rerender(view_state, opacity_value, shown, colors)))

    def run_example(index: int, spacing_text: str, opacity_value: float, shown: list[str], *colors: str):
        path, outputs = callbacks.example(index, spacing_text, opacity_value, shown, colors)
        return [path, *overlay_from_file(outputs)]

    def distribution(view_state, *colors: str):
        return callbacks.distribution(view_state, colors)

    hidden: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}
    model: dict[str, Any] = {"api_visibility": "private", "concurrency_id": "model"}
    drawing = [opacity, classes, *pickers]
    state_and_colors = [views["state"], *pickers]
    segmented = controls.submit.click(segment, inputs=[upload, spacing, *drawing], outputs=results, **model)
    segmented.success(enable_downloads, outputs=downloads, **hidden)
    previewed = upload.upload(preview, inputs=[upload, spacing], outputs=results, **model)
    cleared = upload.clear(lambda: show(callbacks.clear()), outputs=results, **hidden)
    emptied = controls.clear.click(clear_all, outputs=[upload, spacing, *results], **hidden)
    gr.on([opacity.change, classes.change, *(p.change for p in pickers)], rerender,
          inputs=[views["state"], *drawing], outputs=rerendered, trigger_mode="always_last", **hidden)
    shown_anew = [segmented, previewed, cleared, emptied]
    if batch_opened is not None:
        batch_opened.success(enable_downloads, outputs=downloads, **hidden)
        shown_anew.append(batch_opened)
    if gallery is not None:
        example = gallery.click(run_example, inputs=[gallery, spacing, *drawing], outputs=[upload, *results], **model)
        example.success(enable_downloads, outputs=downloads, **hidden)
        shown_anew.append(example)
    if plots:  # the confidence distribution follows every new result and every colour change
        for event in shown_anew:
            event.then(distribution, inputs=state_and_colors, outputs=plots, **hidden)
        gr.on([p.change for p in pickers], distribution, inputs=state_and_colors, outputs=plots,
              trigger_mode="always_last", **hidden)


def _wire_about(demo: gr.Blocks, callbacks: Callbacks, about: gr.Markdown, header: gr.HTML,
                volume_runs: Sequence[Any]) -> None:
    """Fill the About panel and the header's badge when the page loads, and again after each
    volume run (a volume model of its own loads at the first volume; the About then names its device)."""
    def load_about():
        text, badges = callbacks.about()
        return text, header_html(badges)

    demo.load(load_about, outputs=[about, header], api_visibility="private", show_progress="hidden")
    for run in volume_runs:
        run.success(load_about, outputs=[about, header], api_visibility="private", show_progress="hidden")


class SnapshotSet(set):
    """A set that iterates over a copy of itself (the copy is one C call, atomic under the GIL).

    Gradio's cache cleaner walks the sets of cached file names in a worker thread while uploads
    and results add to them; with a plain set that walk fails with "Set changed size during
    iteration", and the failure ends the clean-up schedule for good, so from then on uploads
    stay on disk (found by a load test at short clean-up ages).
    """

    def __iter__(self):
        return set.__iter__(set.copy(self))


def guard_cache_sets(demo: gr.Blocks) -> None:
    """Replace every cached-file set of ``demo`` (uploads, each component's files) by a
    :class:`SnapshotSet` with the same contents, wherever Gradio holds it."""
    guarded: dict[int, SnapshotSet] = {}

    def guard(files: set) -> SnapshotSet:
        if isinstance(files, SnapshotSet):
            return files
        return guarded.setdefault(id(files), SnapshotSet(files))

    demo.upload_file_set = guard(demo.upload_file_set)
    for block in demo.blocks.values():
        if isinstance(getattr(block, "temp_files", None), set):
            block.temp_files = guard(block.temp_files)
    demo.temp_file_sets = [guard(files) for files in demo.temp_file_sets]


def _image(label: str, elem_id: str) -> gr.Image:
    return gr.Image(
        label=label,
        format="png",  # lossless; the default webp would blur class borders
        interactive=False,
        height=IMAGE_HEIGHT,
        buttons=["download", "fullscreen"],
        elem_id=elem_id,
        elem_classes=["result-view"],
    )


def _download(label: str, elem_id: str) -> gr.DownloadButton:
    return gr.DownloadButton(label, interactive=False, size="md", elem_id=elem_id)
