"""Controls both tabs share: the colour legend, the organ toggles, the overlay opacity, and the
page's colour scheme (a scheme, one colour picker per organ, remembered in the browser)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from segapp.labels import DEFAULT_SCHEME, FOREGROUND, SCHEMES, Palette, hex_color, organ_palette, scheme
from segapp.ui.cards import legend_html

CUSTOM = "custom"  # the scheme radio's value once a colour was picked by hand
STORAGE_KEY = "segapp-colours"  # the browser's local storage entry; nothing is kept on the server

# Sets the CSS variables the legends, the toggles and the cards' swatches read
# (segapp.ui.theme.organ_css_color), so they recolour in the browser without a round trip.
SET_COLOURS_JS = (
    "(...colors) => { const names = ["
    + ", ".join(f"'{label.name.replace('_', '-')}'" for label in FOREGROUND)
    + "]; names.forEach((name, i) => { if (colors[i]) document.documentElement.style"
    ".setProperty('--organ-' + name, colors[i]); }); }"
)


def overlay_controls(prefix: str = "") -> tuple[gr.CheckboxGroup, gr.Slider]:
    """The legend, then the organ toggles (every organ shown) and the opacity slider (0..1, 0.5).

    Args:
        prefix: Put before each ``elem_id`` (``legend``, ``class-toggles``, ``opacity``), so the
            tabs' controls stay apart in the page (``vol-`` for the volume tab).

    Returns:
        (the toggles, the opacity slider), to wire to the tab's views.
    """
    gr.HTML(legend_html(), elem_id=f"{prefix}legend")
    classes = gr.CheckboxGroup(
        choices=[(label.display, label.name) for label in FOREGROUND],
        value=[label.name for label in FOREGROUND],
        label="Show on the overlay",
        elem_id=f"{prefix}class-toggles",
    )
    opacity = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity", elem_id=f"{prefix}opacity")
    return classes, opacity


@dataclass(frozen=True)
class PaletteControls:
    """The colour scheme's controls: the scheme radio, one picker per organ (``FOREGROUND`` order;
    their values are the palette every drawing event takes), and the browser's stored choice."""

    scheme: gr.Radio
    pickers: list[gr.ColorPicker]
    stored: gr.BrowserState


def palette_controls() -> PaletteControls:
    """The "Colours" accordion: a scheme (Okabe-Ito by default, the label table's colours) and a
    colour picker per organ; wired by :func:`wire_palette`."""
    default = scheme(DEFAULT_SCHEME)
    with gr.Accordion("Colours", open=False, elem_id="colours"):
        radio = gr.Radio(
            choices=[(s.title, s.key) for s in SCHEMES] + [("Custom", CUSTOM)], value=DEFAULT_SCHEME,
            label="Colour scheme (overlays, legends, 3D view and downloaded overlays; exported label files "
            "keep the label table's colours)", elem_id="colour-scheme",
        )
        with gr.Row(elem_id="colour-pickers"):
            pickers = [gr.ColorPicker(hex_color(default.colors[label.id]), label=label.display,
                                      elem_id=f"colour-{label.name.replace('_', '-')}", min_width=100)
                       for label in FOREGROUND]
    stored = gr.BrowserState({"scheme": DEFAULT_SCHEME, "colors": None}, storage_key=STORAGE_KEY)
    return PaletteControls(radio, pickers, stored)


def scheme_colors(key: str) -> list[Any]:
    """The pickers' values for scheme ``key``; "custom" leaves them as they are."""
    if key == CUSTOM:
        return [gr.skip()] * len(FOREGROUND)
    colors = scheme(key).colors
    return [hex_color(colors[label.id]) for label in FOREGROUND]


def restored(stored: dict[str, Any] | None) -> list[Any]:
    """The scheme and pickers from the browser's stored choice (a damaged value: the default)."""
    stored = stored if isinstance(stored, dict) else {}
    key = stored.get("scheme")
    key = key if key == CUSTOM or any(s.key == key for s in SCHEMES) else DEFAULT_SCHEME
    colors = stored.get("colors") if key == CUSTOM else None
    palette = organ_palette(colors if isinstance(colors, list) else None) if key == CUSTOM else scheme(key).colors
    return [key, *(hex_color(palette[label.id]) for label in FOREGROUND)]


def picked(colors: list[str] | tuple[str, ...] | None) -> Palette:
    """The palette (one RGB per class id) from the pickers' values."""
    return organ_palette(list(colors) if colors else None)


def wire_palette(demo: gr.Blocks, controls: PaletteControls) -> None:
    """Scheme -> pickers; a picked colour -> "Custom"; pickers -> the page's CSS colours and the
    browser's stored choice; the page's load -> the stored choice back."""
    hidden: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden", "queue": False}
    controls.scheme.input(scheme_colors, inputs=[controls.scheme], outputs=controls.pickers, **hidden)
    for picker in controls.pickers:
        picker.input(lambda: CUSTOM, outputs=[controls.scheme], **hidden)
    gr.on([p.change for p in controls.pickers], None, inputs=controls.pickers, js=SET_COLOURS_JS, **hidden)
    gr.on([controls.scheme.change, *(p.change for p in controls.pickers)],
          lambda key, *colors: {"scheme": key, "colors": list(colors)},
          inputs=[controls.scheme, *controls.pickers], outputs=[controls.stored], trigger_mode="always_last", **hidden)
    demo.load(restored, inputs=[controls.stored], outputs=[controls.scheme, *controls.pickers], **hidden)
