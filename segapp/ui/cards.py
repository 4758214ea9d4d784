"""What the page shows as text: the slice and volume statistics cards, the volume tab's planes, the
About card, the legend, the badges, and the formatting they share.

Plain functions from values to HTML or markdown strings; nothing here reads files or runs a model.
Every text that comes from outside (file notes, model cards, errors) is escaped.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from segapp.io.image import ScanImage
from segapp.labels import FOREGROUND, LABELS, Palette
from segapp.model.context import FLAT, format_offsets
from segapp.ui.theme import organ_css_color
from segapp.ui.views import VolumeView, png_data_uri
from segapp.version import __version__

if TYPE_CHECKING:  # torch stays unimported until a model is needed
    from segapp.inference.segmenter import Prediction, Segmenter
    from segapp.inference.volume import VolumePrediction


def user_error(message: str) -> gr.Error:
    """A :class:`gradio.Error` for the page: text escaped (Gradio renders it as HTML), not logged."""
    return gr.Error(html.escape(message, quote=False), title="Cannot segment", print_exception=False)

def fmt_int(value: int) -> str:
    """A count with thousands separators."""
    return f"{value:,}"

def fmt_area(area_mm2: float | None) -> str:
    """An area in mm² (whole numbers from 100 up), or a dash when unknown."""
    if area_mm2 is None:
        return "—"
    return f"{area_mm2:,.0f} mm²" if area_mm2 >= 100 else f"{area_mm2:.1f} mm²"

def _fmt_share(fraction: float) -> str:
    percent = fraction * 100
    if percent == 0:
        return "0 %"
    return f"{percent:.1f} %" if percent >= 0.1 else "&lt;0.1 %"

def fmt_conf(confidence: float | None) -> str:
    """A mean confidence 0..1 as a whole percentage, or a dash when unknown."""
    return "—" if confidence is None else f"{confidence * 100:.0f} %"

def _fmt_spacing(spacing: tuple[float, float] | None) -> str:
    if spacing is None:
        return "spacing unknown"
    row, col = spacing
    return f"pixel {row:.2f} × {col:.2f} mm"

def legend_html() -> str:
    """Colour legend of every class, background included: a square and the display name each."""
    items = "".join(
        f'<span class="legend-item"><span class="swatch" style="background:{organ_css_color(lab)}"></span>'
        f"{html.escape(lab.display)}</span>"
        for lab in LABELS
    )
    return f'<div class="legend" role="list" aria-label="Colour legend">{items}</div>'

def empty_card_html() -> str:
    """The statistics card before anything was segmented."""
    return (
        '<div class="stats-card stats-empty">'
        '<div class="stats-title">Results</div>'
        "<p>Upload an MRI slice (or click an example below) and press <b>Submit</b>. "
        "Each organ's pixel count, share of the slice, area and the model's confidence appear here.</p>"
        "</div>"
    )

def ready_card_html(scan: ScanImage, spacing_source: str | None) -> str:
    """Card shown after an upload, before segmentation: what was read from the file."""
    depth = f"{scan.bit_depth}-bit" if scan.bit_depth != 8 else "8-bit"
    spacing = _fmt_spacing(scan.spacing_mm)
    if spacing_source:
        spacing += f" ({spacing_source})"
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in scan.notes)
    return (
        '<div class="stats-card stats-empty">'
        '<div class="stats-title">Ready to segment</div>'
        f"<p>{scan.width} × {scan.height} px · {depth} · {html.escape(spacing)}. Press <b>Submit</b>.</p>"
        + (f'<ul class="stats-notes">{notes}</ul>' if notes else "")
        + "</div>"
    )

def stats_card_html(prediction: Prediction, *, spacing_source: str | None = None) -> str:
    """The statistics card: per organ pixels, share, area (mm², when the spacing is known), confidence.

    Args:
        prediction: The result to describe.
        spacing_source: Where the spacing came from (``"from the file name"``, ``"entered"``), shown
            next to it.
    """
    rows = []
    for label in LABELS:
        s = prediction.stats[label.name]
        muted = ' class="muted"' if label.id == 0 else ""
        rows.append(
            f"<tr{muted}><td class='organ'><span class='swatch' style='background:{organ_css_color(label)}'></span>"
            f"{html.escape(label.display)}</td>"
            f"<td>{fmt_int(s.pixels)}</td><td>{_fmt_share(s.fraction)}</td>"
            f"<td>{fmt_area(s.area_mm2)}</td><td>{fmt_conf(s.mean_confidence)}</td></tr>"
        )
    scan = prediction.image
    spacing = _fmt_spacing(prediction.spacing_mm)
    if prediction.spacing_mm is not None and spacing_source:
        spacing += f" ({spacing_source})"
    total_ms = sum(prediction.timings_ms.values())
    model_ms = prediction.timings_ms.get("model", 0.0)
    hint = (
        ""
        if prediction.spacing_mm is not None
        else "<p class='stats-hint'>Enter the pixel spacing to get areas in mm².</p>"
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in (*scan.notes, *filter(None, [prediction.notice])))
    return (
        '<div class="stats-card">'
        '<div class="stats-head"><span class="stats-title">Segmentation results</span>'
        f'<span class="stats-meta">{scan.width} × {scan.height} px · {html.escape(spacing)}</span></div>'
        '<table class="stats-table"><thead><tr><th>Organ</th><th>Pixels</th><th>Share</th>'
        "<th>Area</th><th>Confidence</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + hint
        + (f'<ul class="stats-notes">{notes}</ul>' if notes else "")
        + '<div class="stats-foot">'
        f"<span>Inference {total_ms:.0f} ms (model {model_ms:.0f} ms)</span>"
        f"<span>Device {html.escape(prediction.device)}</span>"
        f"<span>{scan.bit_depth}-bit input</span></div></div>"
    )

def stats_payload(prediction: Prediction, *, spacing_source: str | None = None) -> dict[str, Any]:
    """The statistics JSON: :meth:`Prediction.stats_dict` plus input facts; never the file name."""
    payload = prediction.stats_dict()
    payload.update(
        spacing_source=spacing_source if prediction.spacing_mm is not None else None,
        bit_depth=prediction.image.bit_depth,
        notes=list(prediction.image.notes),
        labels={label.name: label.id for label in LABELS},
        segapp_version=__version__,
    )
    return payload

def visible_classes(selected: Iterable[str] | None) -> list[str]:
    """Class toggles -> names of the organs to draw (unknown names dropped)."""
    known = {label.name for label in FOREGROUND}
    return [name for name in (selected or []) if name in known]

def _strip_front_matter(card: str) -> str:
    if card.startswith("---"):
        end = card.find("\n---", 3)
        if end != -1:
            card = card[end + 4 :]
    return card.strip()

def _demote_headings(markdown: str, levels: int = 3) -> str:
    # The card's own title must sit below the About section's headings.
    return re.sub(
        r"^(#{1,4}) ", lambda m: "#" * (len(m.group(1)) + levels) + " ", markdown, flags=re.MULTILINE
    )

def _shown_source(source: str) -> str:
    # A local path would tell every visitor the server's folder layout; its last parts are enough.
    path = Path(source)
    return Path(*path.parts[-2:]).as_posix() if path.is_absolute() or path.exists() else source

def weights_name(source: str, kind: str | None, offsets: Sequence[int] | None, *, markdown: bool = True) -> str:
    """How the page names weights: the source's last parts (no server paths; as code in
    ``markdown``), its kind, and whether it is 2D or 2.5D with its channels' slice offsets
    (None: not known yet)."""
    name = _shown_source(source)
    text = (f"`{name}`" if markdown else name) + (f" ({kind})" if kind else "")
    if offsets is None:
        return text
    if tuple(offsets) == FLAT:
        return f"{text}, 2D"
    return f"{text}, 2.5D, channels at slice offsets {format_offsets(offsets)}"

NOT_FOR_CLINICAL_USE = (
    "**Not for clinical use.** This is a research demonstration, not a medical device. Its outlines "
    "and areas must not be used for diagnosis, treatment planning or any other clinical decision."
)

def about_markdown(info: dict[str, Any] | None, card: str | None, error: str | None = None, *,
                   volume: str | None = None) -> str:
    """The "About" section: the model, the weights in use (from their card), the notice, own weights.

    Args:
        info: :func:`described` of the loaded slice model, or None when it is not loaded.
        card: The weights' model card (markdown, front matter allowed), or None.
        error: Why the model could not be loaded, if it could not.
        volume: Which weights the volume mode uses (markdown), or None to leave it out.
    """
    parts = [
        "### What this is",
        "A SegFormer (a transformer for semantic segmentation) outlines the **stomach**, **small bowel** "
        "and **large bowel** in axial abdominal MRI slices, as in the UW-Madison GI Tract data. Each pixel "
        "gets a class and a confidence (the probability of that class). Areas in mm² need the pixel "
        "spacing, read from competition-style file names (`..._266_266_1.50_1.50.png`) or typed in.",
        "",
        "> " + NOT_FOR_CLINICAL_USE,
        "",
        "### Weights in use",
    ]
    if info is not None:
        offsets = info.get("context_offsets")
        single = "; a single slice fills every channel" if offsets is not None and tuple(offsets) != FLAT else ""
        parts += [
            "- Slice mode: " + weights_name(str(info.get("source", "?")), str(info.get("kind", "?")), offsets) + single,
            f"- Model: SegFormer-{str(info.get('variant', '?')).upper()}, "
            f"{int(info.get('parameters', 0)):,} parameters, input "
            + " × ".join(str(v) for v in info.get("input_size", []))
            + " px",
            f"- Running on: `{info.get('device', '?')}`"
            + (f" with {info['runtime']}" if info.get("runtime", "torch") != "torch" else ""),
        ]
    elif error:
        parts.append(f"The model could not be loaded: {html.escape(error, quote=False)}")
    else:
        parts.append("The model loads with the first segmentation.")
    if volume is not None:
        parts.append(f"- Volume mode: {volume}")
        if "2.5D" in volume:
            parts.append("  (a second model: it reads each slice together with its neighbours above and below, "
                         "which segments a whole series better; a single slice goes to the slice model)")
    if card:
        parts += ["", "### Model card", "", _demote_headings(_strip_front_matter(card))]
    parts += [
        "",
        "### Your own weights",
        "Start the app with any weights the loader reads: a model folder written by training, a "
        "`.safetensors` file, a Lightning `.ckpt`, or a HuggingFace hub id:",
        "",
        "```bash",
        "python app.py --weights runs/my-run/best        # or: SEGAPP_WEIGHTS=org/name python app.py",
        "python app.py --volume-weights runs/my-2.5d/best  # the volume mode's own (e.g. 2.5D) weights",
        "```",
        "",
        "### Privacy",
        "Uploads and results are deleted from the server within minutes and are not stored elsewhere; "
        "file names are never logged; nothing is sent to other hosts.",
    ]
    return "\n".join(parts)

def model_badge_html(info: dict[str, Any] | None) -> str:
    """Small header badge: model and device, or that the model is not loaded."""
    if info is None:
        text = "model not loaded"
    else:
        text = f"SegFormer-{str(info.get('variant', '?')).upper()} · {info.get('device', '?')}"
    return f'<span class="badge">{html.escape(text)}</span><span class="badge badge-warn">Research use only</span>'

def stamp() -> str:
    """Local time as ``YYYYmmdd-HHMMSS``, for the names of download files."""
    return time.strftime("%Y%m%d-%H%M%S")


# ---------------------------------------------------------------------------
# The volume tab


def empty_volume_card() -> str:
    """The volume card before anything was segmented."""
    return (
        '<div class="stats-card stats-empty"><div class="stats-title">Volume results</div>'
        "<p>Upload a DICOM series (files, a folder or a .zip), a NIfTI file, one DICOM file or a .zip of a "
        "case-day folder of PNG slices, or click the example, and press <b>Segment volume</b>. Each organ's volume in mL, the slices "
        "it spans, its largest area and the model's confidence appear here.</p></div>"
    )


def several_series_card(count: int) -> str:
    """The volume card after an upload holding ``count`` series: choose one."""
    return ('<div class="stats-card stats-empty"><div class="stats-title">Several series</div>'
            f"<p>The upload holds {count} series: choose one above, then press <b>Segment volume</b>.</p></div>")


def ready_volume_card() -> str:
    """The volume card after an upload holding one volume."""
    return ('<div class="stats-card stats-empty"><div class="stats-title">Ready</div>'
            "<p>Press <b>Segment volume</b>.</p></div>")


def model_text(segmenter: Segmenter) -> str:
    """The weights a volume was segmented with, for its card: name (no server path), 2D or 2.5D
    with the channels' slice offsets."""
    return weights_name(str(segmenter.loaded.source), None, segmenter.processing.context_offsets, markdown=False)


def volume_card_html(prediction: VolumePrediction, model: str | None = None) -> str:
    """The volume card: per organ mL, slice span (1-based, feet first), largest area, confidence;
    then size, spacing, orientation, inference time, device and ``model`` (:func:`model_text`).
    Nothing from the file's header that could identify the patient."""
    rows = []
    for label in FOREGROUND:
        organ = prediction.organs[label.name]
        span = "—" if organ.slices is None else f"{organ.slices[0] + 1}–{organ.slices[1] + 1}"
        rows.append(
            f"<tr><td class='organ'><span class='swatch' style='background:{organ_css_color(label)}'></span>"
            f"{html.escape(label.display)}</td><td>{organ.volume_ml:,.1f} mL</td><td>{span}</td>"
            f"<td>{fmt_area(organ.max_area_mm2 if organ.voxels else None)}</td>"
            f"<td>{fmt_conf(organ.mean_confidence)}</td><td>{fmt_int(organ.voxels)}</td></tr>"
        )
    volume = prediction.volume
    z, h, w = volume.shape
    sz, sr, sc = volume.spacing_mm
    orientation = str(volume.description.get("orientation", "axial"))
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in volume.notes)
    return (
        '<div class="stats-card" id="volume-card-body">'
        '<div class="stats-head"><span class="stats-title">Volume results</span>'
        f'<span class="stats-meta">{z} slices of {w} × {h} px · {sr:.2f} × {sc:.2f} mm, '
        f"slice step {sz:.2f} mm · {html.escape(orientation)} · {html.escape(volume.kind.upper())}</span></div>"
        '<table class="stats-table"><thead><tr><th>Organ</th><th>Volume</th><th>Slices</th>'
        "<th>Largest area</th><th>Confidence</th><th>Voxels</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + (f'<ul class="stats-notes">{notes}</ul>' if notes else "")
        + '<div class="stats-foot">'
        f"<span>Inference {prediction.timings_ms.get('total', 0.0) / 1000:.1f} s for {z} slices</span>"
        f"<span>Device {html.escape(prediction.device)}</span>"
        + (f'<span class="stats-model">Model {html.escape(model)}</span>' if model else "")
        + "</div></div>"
    )


def views_html(view: VolumeView, index: int, *, opacity: float, visible: Sequence[str] | None,
               palette: Palette | None = None) -> str:
    """The three planes: the axial slice ``index`` (0-based) and the coronal and sagittal
    reformats with that slice marked. ``data-slice`` carries the shown index (1-based)."""
    k = view.clamp(index)
    axial = png_data_uri(view.axial(k, opacity=opacity, visible=visible, palette=palette))
    marker = f"{view.marker_percent(k):.3f}%"
    planes = "".join(
        f'<figure class="vol-plane vol-{plane}"><div class="vol-frame">'
        f'<img src="{view.reformat_uri(plane, opacity=opacity, visible=visible, palette=palette)}" alt="{plane} reformat">'
        f'<div class="vol-marker" style="top:{marker}"></div></div><figcaption>{plane.capitalize()}</figcaption></figure>'
        for plane in ("coronal", "sagittal")
    )
    return (
        f'<div class="vol-views" data-slice="{k + 1}" data-slices="{view.slices}">'
        f'<figure class="vol-plane vol-axial"><div class="vol-frame"><img src="{axial}" alt="axial slice {k + 1}">'
        f"</div><figcaption>Axial · slice {k + 1} of {view.slices} (1 = feet)</figcaption></figure>"
        f'<div class="vol-reformats">{planes}</div></div>'
    )


def empty_views_html() -> str:
    """The planes area before a volume is segmented."""
    return '<div class="vol-views vol-empty" data-slice="0"><p>The slices appear here.</p></div>'
