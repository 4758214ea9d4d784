"""The volume tab: layout and wiring (the work is done in :mod:`segapp.ui.volume`).

Built inside the page's :class:`gradio.Blocks` by :func:`segapp.ui.page.build_demo`, in the
slice tab's design: legend, organ toggles, opacity, stats card, download buttons.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from segapp.ui.cards import empty_views_html, empty_volume_card
from segapp.ui.controls import overlay_controls
from segapp.ui.plots import distribution_plots
from segapp.ui.volume import VolumeCallbacks, VolumeOutputs

STATE_TTL_S = 1800  # as the slice tab's state: dropped after this long without an update
# The VolumeOutputs fields that are files behind a download button.
DOWNLOAD_FIELDS = ("nifti", "seg", "rtstruct", "table", "mesh")
BROWSE_CONCURRENCY = 8  # slice steps are a few ms of drawing each; many sessions may browse at once

# Arrow keys and Page Up / Down move the slice slider while the volume tab is shown and no text
# field has the focus. The slider's own input event is dispatched, so Gradio sends the new value
# through the same event as a drag. Served inline by the app (no outside script).
KEYBOARD_JS = """
() => {
  const steps = {ArrowUp: 1, ArrowRight: 1, ArrowDown: -1, ArrowLeft: -1, PageUp: 10, PageDown: -10};
  document.addEventListener('keydown', (event) => {
    if (!(event.key in steps)) return;
    const panel = document.querySelector('#volume-tab');
    const range = document.querySelector('#vol-slice input[type=range]');
    if (!panel || !range || panel.offsetParent === null || range.disabled) return;
    const target = event.target;
    const typing = target && ((target.tagName === 'INPUT' && target.type !== 'range') ||
                              target.tagName === 'TEXTAREA' || target.isContentEditable);
    if (typing) return;
    event.preventDefault();
    const value = Math.min(Number(range.max), Math.max(Number(range.min), Number(range.value) + steps[event.key]));
    if (value === Number(range.value)) return;
    range.value = String(value);
    range.dispatchEvent(new Event('input', {bubbles: true}));
    range.dispatchEvent(new Event('change', {bubbles: true}));
  }, true);
}
"""


def build_volume_tab(volume: VolumeCallbacks, download: Callable[[str, str], gr.DownloadButton],
                     pickers: Sequence[gr.ColorPicker]) -> list[Any]:
    """Lay out and wire the volume tab inside the current Blocks and Tab.

    Args:
        volume: The handlers.
        download: The page's download-button maker (label, elem_id), for one look.
        pickers: The page's organ colours (:func:`segapp.ui.controls.palette_controls`).

    Returns:
        The page's two volume runs (the button's and the example's), for the page to chain on.
    """
    state = gr.State(None, time_to_live=STATE_TTL_S)
    with gr.Row(equal_height=False, elem_id="vol-row"):
        controls = _input_panel()
        components, mesh_view, plots = _result_panel(download)
    api = _api_components()
    components["state"] = state
    runs = _wire_volume_tab(volume, controls, components, mesh_view, list(pickers))
    _wire_colours(volume, components, mesh_view, plots, runs, list(pickers))
    _wire_segment_volume_api(volume, api)
    return runs


@dataclass(frozen=True)
class VolumeControls:
    """The volume tab's input panel: the uploads, the series choice, display controls, the example."""

    files: gr.File
    folder: gr.File
    series: gr.Dropdown
    classes: gr.CheckboxGroup
    opacity: gr.Slider
    cancel: gr.Button
    submit: gr.Button
    example: gr.Dataset


def _input_panel() -> VolumeControls:
    """Left column: files or a folder, the series, legend, organ toggles, opacity, buttons, the example."""
    with gr.Column(scale=4, min_width=300, elem_id="vol-left"):
        files = gr.File(
            label="DICOM series (files or a .zip), NIfTI (.nii / .nii.gz), one DICOM file, or a .zip of a case-day folder",
            file_count="multiple", type="filepath", elem_id="vol-upload", height=150,
        )
        folder = gr.File(label="Or a folder: a DICOM series or a case-day folder", file_count="directory",
                         type="filepath", elem_id="vol-folder", height=110)
        series = gr.Dropdown(label="Series", choices=[], visible=False, elem_id="vol-series")
        classes, opacity = overlay_controls("vol-")
        with gr.Row(elem_id="vol-buttons"):
            cancel = gr.Button("Cancel", variant="secondary", elem_id="vol-cancel")
            submit = gr.Button("Segment volume", variant="primary", elem_id="vol-submit")
        gr.HTML('<h2 class="section-title">Try the example</h2>')
        example = gr.Dataset(
            components=[gr.Textbox(render=False)],
            samples=[["Phantom MR series: 144 axial slices, DICOM (zip)"]],
            type="index", label="Click to segment it", elem_id="vol-examples",
        )
    return VolumeControls(files, folder, series, classes, opacity, cancel, submit, example)


def _result_panel(download: Callable[[str, str], gr.DownloadButton]
                  ) -> tuple[dict[str, Any], gr.Model3D, list[gr.BarPlot]]:
    """Right column: the slice slider, the planes, the card, the confidence distribution, the
    downloads, the 3D view, the JSON.

    Returns:
        The components by the :class:`VolumeOutputs` field each shows (all but ``state``), the 3D
        view, and the confidence distribution's plots.
    """
    with gr.Column(scale=7, min_width=360, elem_id="vol-right"):
        slider = gr.Slider(1, 2, value=1, step=1, interactive=False, elem_id="vol-slice",
                           label="Slice (arrow keys, Page Up / Page Down)")
        views = gr.HTML(empty_views_html(), elem_id="vol-views")
        card = gr.HTML(empty_volume_card(), elem_id="vol-card")
        with gr.Accordion("Confidence distribution (the model's confidence over each organ's voxels)",
                          open=True, elem_id="vol-confidence"):
            plots = distribution_plots("vol-")
        with gr.Row(elem_id="vol-downloads"):
            buttons = {
                "nifti": download("NIfTI labels", "vol-download-nifti"),
                "seg": download("DICOM-SEG", "vol-download-seg"),
                "rtstruct": download("RTSTRUCT", "vol-download-rtstruct"),
                "table": download("Organ table CSV", "vol-download-csv"),
                "mesh": download("Meshes (.glb)", "vol-download-glb"),
            }
        with gr.Accordion("3D view of the organs", open=True, elem_id="vol-3d"):
            mesh_view = gr.Model3D(label="Organs (patient mm)", clear_color=(0.97, 0.98, 0.99, 1.0),
                                   height=360, elem_id="vol-mesh")
        with gr.Accordion("Statistics as JSON", open=False):
            stats = gr.JSON(label="Statistics", show_label=False)
    return {"views": views, "slider": slider, "card": card, "stats": stats, **buttons}, mesh_view, plots


def _api_components() -> dict[str, Any]:
    """Hidden components of the /segment_volume API event."""
    return {
        "trigger": gr.Button(visible=False, elem_id="vol-api-trigger"),
        "file": gr.File(visible=False, label="Volume file"),
        "series": gr.Textbox(visible=False, label="Series UID"),
        "labels": gr.File(visible=False, label="NIfTI label map"),
        "stats": gr.JSON(visible=False, label="Statistics"),
    }


def _wire_volume_tab(volume: VolumeCallbacks, controls: VolumeControls, components: dict[str, Any],
                     mesh_view: gr.Model3D, pickers: list[gr.ColorPicker]) -> list[Any]:
    """The volume tab's events; returns the events that change the shown volume (the button's run, the
    example's run, clearing the upload), each of which the confidence distribution follows."""
    files, folder, series, opacity, classes = (controls.files, controls.folder, controls.series,
                                               controls.opacity, controls.classes)
    # The mesh file goes to both its download button and the 3D view.
    results = [components[name] for name in VolumeOutputs._fields] + [mesh_view]

    def shown(outputs: VolumeOutputs) -> list[Any]:
        values: dict[str, Any] = outputs._asdict()
        for name in DOWNLOAD_FIELDS:
            values[name] = gr.DownloadButton(value=values[name], interactive=values[name] is not None)
        return [values[name] for name in VolumeOutputs._fields] + [outputs.mesh]

    def chosen(upload: Sequence[str] | None, upload_folder: Sequence[str] | None) -> Sequence[str] | None:
        return upload or upload_folder or None

    def inspect(upload: Sequence[str] | None, upload_folder: Sequence[str] | None) -> tuple[Any, str]:
        return volume.inspect(chosen(upload, upload_folder))

    def run(upload: Sequence[str] | None, upload_folder: Sequence[str] | None, series_uid: str | None,
            opacity_value: float, shown_classes: list[str], stomach: str, small_bowel: str, large_bowel: str,
            request: gr.Request, progress: gr.Progress = gr.Progress()) -> list[Any]:  # noqa: B008 - Gradio's marker
        # One parameter per organ colour (FOREGROUND order): Gradio hands over the request by the
        # parameter's annotation, which cannot follow a *colors parameter.
        colors = [stomach, small_bowel, large_bowel]
        def report(done: int, total: int) -> None:
            progress((done, total), desc="Segmenting", unit="slices")

        progress((0, 1), desc="Reading the upload")
        return shown(volume.segment(chosen(upload, upload_folder), series_uid, opacity_value, shown_classes,
                                    progress=report, session=request.session_hash, colors=colors))

    def stop(request: gr.Request) -> None:
        volume.cancel(request.session_hash)

    runs: dict[str, Any] = {"api_visibility": "private", "concurrency_id": "volume", "concurrency_limit": 1}
    for source in (files, folder):
        source.upload(inspect, inputs=[files, folder], outputs=[series, components["card"]], api_visibility="private")
    cleared = files.clear(lambda: shown(volume.clear()) + [gr.Dropdown(visible=False)], outputs=[*results, series],
                api_visibility="private", show_progress="hidden")
    drawing = [opacity, classes, *pickers]
    running = controls.submit.click(run, inputs=[files, folder, series, *drawing], outputs=results, **runs)
    controls.cancel.click(stop, api_visibility="private", show_progress="hidden", cancels=[running])
    from_example = controls.example.click(
        lambda _: [volume.example()], inputs=[controls.example], outputs=[files], api_visibility="private",
        show_progress="hidden",
    ).then(run, inputs=[files, folder, series, *drawing], outputs=results, **runs)
    gr.on([control.change for control in (components["slider"], opacity, classes, *pickers)], volume.show,
          inputs=[components["state"], components["slider"], *drawing], outputs=[components["views"]],
          api_visibility="private", show_progress="hidden", trigger_mode="always_last", concurrency_id="browse",
          concurrency_limit=BROWSE_CONCURRENCY)
    return [running, from_example, cleared]  # each is followed by the distribution's redraw


def _wire_colours(volume: VolumeCallbacks, components: dict[str, Any], mesh_view: gr.Model3D,
                  plots: list[gr.BarPlot], runs: list[Any], pickers: list[gr.ColorPicker]) -> None:
    """The confidence distribution after each volume run, and the meshes and the distribution
    redrawn in new colours (the planes follow through :meth:`VolumeCallbacks.show`)."""
    hidden: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}
    inputs = [components["state"], *pickers]
    for run in runs:
        run.then(volume.distribution, inputs=inputs, outputs=plots, **hidden)
    if pickers:
        gr.on([p.change for p in pickers], volume.distribution, inputs=inputs, outputs=plots,
              trigger_mode="always_last", **hidden)
        gr.on([p.change for p in pickers], volume.recolour, inputs=inputs, outputs=[mesh_view, components["mesh"]],
              trigger_mode="always_last", **hidden)


def _wire_segment_volume_api(volume: VolumeCallbacks, api: dict[str, Any]) -> None:
    """The ``/segment_volume`` API on its hidden components: the label map and the statistics."""
    def segment_volume(file: str | None, series_uid: str | None = None) -> tuple[str, dict[str, Any]]:
        return volume.segment_api(file, series_uid)

    api["trigger"].click(
        segment_volume, inputs=[api["file"], api["series"]], outputs=[api["labels"], api["stats"]],
        api_name="segment_volume", concurrency_id="volume", concurrency_limit=1,
        api_description="Segment a volume (a zip of a DICOM series or of a case-day folder of competition-named PNG slices, "
        "a .nii / .nii.gz, or one DICOM file; "
        "optional SeriesInstanceUID when the zip holds several). Returns the NIfTI label map (0 background, "
        "1 stomach, 2 small bowel, 3 large bowel, on the input's grid) and the statistics.",
    )
