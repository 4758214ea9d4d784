"""Look of the page: the Gradio theme and the style sheet.

Fonts are IBM Plex Sans and Mono in the weights Gradio bundles (400, 600, 700 and
400, 600), so ``GoogleFont`` is served from the app's own static files and the page
never asks a font CDN: it must work inside a hospital network with no internet.
"""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr

from segapp.labels import LABELS, Label

# Weights Gradio ships in its static folder (checked against gradio 6.31). Asking for one
# it does not ship would make GoogleFont fall back to a fonts.googleapis.com link.
SANS_WEIGHTS = (400, 600, 700)
MONO_WEIGHTS = (400, 600)


def make_theme() -> gr.themes.Base:
    """Indigo / blue / slate theme with locally served IBM Plex fonts."""
    return gr.themes.Base(
        primary_hue=gr.themes.colors.indigo,
        secondary_hue=gr.themes.colors.blue,
        neutral_hue=gr.themes.colors.slate,
        radius_size=gr.themes.sizes.radius_md,
        font=(
            gr.themes.GoogleFont("IBM Plex Sans", weights=SANS_WEIGHTS),
            "ui-sans-serif",
            "system-ui",
            "sans-serif",
        ),
        font_mono=(
            gr.themes.GoogleFont("IBM Plex Mono", weights=MONO_WEIGHTS),
            "ui-monospace",
            "monospace",
        ),
    ).set(
        body_background_fill="*neutral_50",
        body_background_fill_dark="*neutral_950",
        block_radius="*radius_lg",
        block_shadow="0 1px 3px rgba(15, 23, 42, 0.06), 0 1px 2px rgba(15, 23, 42, 0.04)",
        block_border_color="*neutral_200",
        block_title_text_weight="600",
        button_primary_background_fill="linear-gradient(90deg, *primary_600, *secondary_600)",
        button_primary_background_fill_hover="linear-gradient(90deg, *primary_700, *secondary_700)",
        button_primary_text_color="white",
        button_primary_border_color="*primary_600",
        slider_color="*primary_600",
        checkbox_background_color_selected="*primary_600",
        checkbox_border_color_selected="*primary_600",
    )


def organ_css_color(label: Label) -> str:
    """The organ's colour in CSS: the page's colour-scheme variable ``--organ-<name>`` (set in the
    browser by :data:`segapp.ui.controls.SET_COLOURS_JS`), else the label table's colour."""
    return f"var(--organ-{label.name.replace('_', '-')}, {label.hex})"


def legend_css() -> str:
    """CSS that gives each class toggle its label colour (generated, so colours have one source)."""
    rules = []
    for position, label in enumerate(LABELS[1:], start=1):
        for toggles in ("#class-toggles", "#vol-class-toggles"):  # the slice tab's and the volume tab's
            rules.append(f"{toggles} label:nth-of-type({position})::before {{ background: {organ_css_color(label)}; }}")
    return "\n".join(rules) + "\n"


# The volume tab's planes: the axial slice large, the reformats beside it at their true
# proportions (the images are resampled to square pixels), the current slice a line across them.
VOLUME_CSS = """
.vol-views { display: flex; gap: 12px; align-items: flex-start; flex-wrap: wrap; }
.vol-views.vol-empty { min-height: 200px; align-items: center; justify-content: center; color: var(--body-text-color-subdued); }
.vol-plane { margin: 0; }
.vol-axial { flex: 3 1 300px; }
.vol-reformats { flex: 2 1 200px; display: flex; flex-direction: column; gap: 12px; }
.vol-frame { position: relative; line-height: 0; }
.vol-frame img { width: 100%; height: auto; image-rendering: pixelated; border-radius: 6px; background: #000; }
.vol-marker { position: absolute; left: 0; right: 0; height: 0; border-top: 2px solid #fbbf24; pointer-events: none; }
.vol-plane figcaption { font-size: 0.85em; color: var(--body-text-color-subdued); margin-top: 4px; }
"""


def load_css(path: str | os.PathLike[str] | None = None) -> str:
    """The page's style sheet: the file at ``path`` (if given) plus the generated legend rules.

    Raises:
        FileNotFoundError: ``path`` is given but does not exist.
    """
    css = Path(path).read_text(encoding="utf-8") if path is not None else ""
    return css + "\n" + legend_css() + VOLUME_CSS
