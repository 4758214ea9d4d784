"""Controls both tabs show: the colour legend, the organ toggles and the overlay opacity."""

from __future__ import annotations

import gradio as gr

from segapp.labels import FOREGROUND
from segapp.ui.cards import legend_html


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
