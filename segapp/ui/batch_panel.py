"""The slice tab's "Batch of slices" panel: layout and wiring (the work is done in :mod:`segapp.ui.batch`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr
from gradio.components import Component

from segapp.ui.batch import BatchCallbacks, BatchOutputs

STATE_TTL_S = 1800  # as the slice tab's state


def build_batch_panel(batch: BatchCallbacks, download: Callable[[str, str], gr.DownloadButton],
                      drawing: Sequence[Component], results: Sequence[Component],
                      show: Callable[[Any], list[Any]]) -> Any:
    """Lay out the panel (inside the slice tab) and wire it, with the ``/segment_batch`` API.

    Args:
        batch: The handlers.
        download: The page's download-button maker (label, elem_id).
        drawing: The opacity slider, the organ toggles and the organ colour pickers, in that order.
        results: The slice tab's result components in :class:`SegmentOutputs` field order (the full view).
        show: Turns :class:`SegmentOutputs` into the values of ``results``.

    Returns:
        The event that opens a gallery slice in the full view, for the page to chain on.
    """
    state = gr.State(None, time_to_live=STATE_TTL_S)
    with gr.Accordion("Batch of slices", open=False, elem_id="batch"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=300):
                upload = gr.File(label=f"Several slices or a .zip of them (up to {batch.max_slices}); names are "
                                 "replaced by slice-001, slice-002, ... unless in the competition's pattern",
                                 file_count="multiple", type="filepath", elem_id="batch-upload", height=130)
                submit = gr.Button("Segment batch", variant="primary", elem_id="batch-submit")
                summary = gr.HTML("", elem_id="batch-summary")
                with gr.Row(elem_id="batch-downloads"):
                    csv = download("Areas CSV", "batch-download-csv")
                    archive = download("Masks and overlays (.zip)", "batch-download-zip")
            with gr.Column(scale=7, min_width=360):
                gallery = gr.Gallery(label="Overlays: click one to open it in the full view above", columns=5,
                                     height="auto", format="png", allow_preview=False, object_fit="contain",
                                     elem_id="batch-gallery")
        table = gr.Dataframe(label="Areas per slice", interactive=False, wrap=True, elem_id="batch-table")
    outputs = {"gallery": gallery, "table": table, "csv": csv, "zip": archive, "summary": summary, "state": state}

    def shown(values: BatchOutputs) -> list[Any]:
        fields: dict[str, Any] = values._asdict()
        for name in ("csv", "zip"):
            fields[name] = gr.DownloadButton(value=fields[name], interactive=fields[name] is not None)
        return [fields[name] for name in BatchOutputs._fields]

    def run(files: Sequence[str] | None, *colors: str) -> list[Any]:
        return shown(batch.segment(files, colors or None))

    # Gradio hands the click over by the parameter's annotation, which a *colors parameter cannot
    # be followed by: one parameter per organ colour (FOREGROUND order).
    def open_slice(batch_state, opacity: float, classes: list[str], stomach: str, small_bowel: str,
                   large_bowel: str, evt: gr.SelectData) -> list[Any]:
        colors = [stomach, small_bowel, large_bowel]
        return show(batch.open(batch_state, int(evt.index), opacity, classes, colors))

    ordered = [outputs[name] for name in BatchOutputs._fields]
    private: dict[str, Any] = {"api_visibility": "private", "concurrency_id": "batch", "concurrency_limit": 1}
    submit.click(run, inputs=[upload, *drawing[2:]], outputs=ordered, **private)
    upload.clear(lambda: shown(batch.clear()), outputs=ordered, api_visibility="private", show_progress="hidden")
    _wire_segment_batch_api(batch)
    return gallery.select(open_slice, inputs=[state, *drawing], outputs=list(results), api_visibility="private",
                          concurrency_id="model")


def _wire_segment_batch_api(batch: BatchCallbacks) -> None:
    """The ``/segment_batch`` API on hidden components: the zip of masks and overlays, and the table."""
    trigger = gr.Button(visible=False, elem_id="batch-api-trigger")
    files = gr.File(visible=False, file_count="multiple", label="Slices")
    archive = gr.File(visible=False, label="Masks and overlays (zip)")
    table = gr.File(visible=False, label="Areas per slice (CSV)")

    def segment_batch(slices: list[str] | None) -> tuple[str, str]:
        return batch.segment_api(slices)

    trigger.click(
        segment_batch, inputs=[files], outputs=[archive, table], api_name="segment_batch",
        concurrency_id="batch", concurrency_limit=1,
        api_description=f"Segment a batch of slices (image files or single DICOM images, or a zip of them; at most "
        f"{batch.max_slices}). Returns a zip (masks/ as class-id PNGs, overlays/, stats.csv) and stats.csv: per "
        "slice its size, spacing, and per organ pixels, area in mm² and mean confidence. Slices are named "
        "slice-001, ... in upload order unless their names follow the competition's pattern.",
    )
