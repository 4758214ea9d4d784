"""The label table that travels beside a label volume: JSON for programs, colour tables for viewers.

- ``labels.json``: ``{"labels": [{"id", "name", "display", "color": [r, g, b], "snomed": {...}}]}``;
- ``labels.itksnap.txt``: ITK-SNAP's label description file (also read by 3D Slicer's
  "Import labels" and by MRIcroGL);
- ``labels.ctbl``: 3D Slicer's colour table (``index name r g b a``).
"""

from __future__ import annotations

import json
from pathlib import Path

from segapp.io.files import write_text_atomic
from segapp.labels import LABELS


def label_table() -> dict[str, object]:
    """The label set as JSON-ready data."""
    return {
        "labels": [
            {
                "id": label.id,
                "name": label.name,
                "display": label.display,
                "color": list(label.color),
                "snomed": None if label.snomed is None else {"code": label.snomed[0], "meaning": label.snomed[1]},
            }
            for label in LABELS
        ]
    }


def itksnap_table() -> str:
    """ITK-SNAP label description text: ``index r g b alpha visible mesh "label"``."""
    lines = ["# ITK-SnAP Label Description File (segapp)", "# Columns = Index R G B A VIS MSH \"LABEL\""]
    for label in LABELS:
        alpha, visible = (0, 0) if label.id == 0 else (1, 1)
        r, g, b = label.color
        lines.append(f"{label.id:5d} {r:5d} {g:5d} {b:5d} {alpha:8d} {visible:2d} {visible:2d}    \"{label.display}\"")
    return "\n".join(lines) + "\n"


def slicer_table() -> str:
    """3D Slicer colour table text: ``index name r g b a``."""
    lines = ["# segapp labels: 3D Slicer colour table", "# index name r g b a"]
    for label in LABELS:
        r, g, b = label.color
        lines.append(f"{label.id} {label.name} {r} {g} {b} {0 if label.id == 0 else 255}")
    return "\n".join(lines) + "\n"


def write_label_tables(folder: str | Path) -> list[Path]:
    """Write the three tables into ``folder``; returns their paths."""
    folder = Path(folder)
    outputs = {
        folder / "labels.json": json.dumps(label_table(), indent=2) + "\n",
        folder / "labels.itksnap.txt": itksnap_table(),
        folder / "labels.ctbl": slicer_table(),
    }
    for path, text in outputs.items():
        write_text_atomic(path, text)
    return list(outputs)
