"""The confidence distribution beside the confidence map: one small bar chart per organ (Gradio's
own :class:`gradio.BarPlot` from a pandas table), for a slice's pixels or a volume's voxels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from segapp.inference.render import CONFIDENCE_EDGES, confidence_histogram
from segapp.labels import FOREGROUND, RGB, hex_color

COLUMNS = ("confidence", "share", "organ")


def distribution_tables(labels: np.ndarray | None, confidence: np.ndarray | None) -> list[pd.DataFrame]:
    """Per organ (``FOREGROUND`` order), its histogram as a table: ``confidence`` (the bin's lower
    edge, 0.95 for 0.95..1.00), ``share`` (% of the organ's pixels in the bin), ``organ`` (display
    name). An absent organ, or no prediction, has an empty table."""
    if labels is None:
        return [pd.DataFrame(columns=list(COLUMNS)) for _ in FOREGROUND]
    counts = confidence_histogram(labels, confidence)
    tables = []
    for label in FOREGROUND:
        total = int(counts[label.name].sum())
        if total == 0:
            tables.append(pd.DataFrame(columns=list(COLUMNS)))
            continue
        tables.append(pd.DataFrame({
            "confidence": np.round(CONFIDENCE_EDGES[:-1], 2),
            "share": np.round(100.0 * counts[label.name] / total, 2),
            "organ": label.display,
        }))
    return tables


def distribution_updates(labels: np.ndarray | None, confidence: np.ndarray | None,
                         palette: Sequence[RGB] | None = None) -> list[Any]:
    """The plots' new values: :func:`distribution_tables`, each drawn in its organ's ``palette``
    colour (one RGB per class id; None: the label table's)."""
    colors = [hex_color(palette[label.id]) if palette is not None else label.hex for label in FOREGROUND]
    return [gr.BarPlot(value=table, color_map={label.display: color})
            for table, label, color in zip(distribution_tables(labels, confidence), FOREGROUND, colors)]


def distribution_plots(prefix: str = "") -> list[gr.BarPlot]:
    """One small bar chart per organ, in a row (``elem_id`` ``{prefix}confidence-<organ>``)."""
    plots = []
    with gr.Row(elem_id=f"{prefix}confidence-distribution"):
        for label in FOREGROUND:
            plots.append(gr.BarPlot(
                pd.DataFrame(columns=list(COLUMNS)), x="confidence", y="share", color="organ",
                # A numeric x binned at the histogram's own step: bars over a confidence axis
                # with a few round ticks, not one crowded label per bin. No legend: the title names the organ.
                color_map={label.display: label.hex}, colors_in_legend=[], title=label.display,
                x_title="confidence", x_bin=float(CONFIDENCE_EDGES[1] - CONFIDENCE_EDGES[0]), y_aggregate="sum",
                x_lim=[float(CONFIDENCE_EDGES[0]), float(CONFIDENCE_EDGES[-1])],
                y_title="% of the organ", y_lim=[0, 100], height=190, min_width=150, show_label=False, elem_id=f"{prefix}confidence-{label.name.replace('_', '-')}",
                elem_classes=["confidence-plot"],
            ))
    return plots
