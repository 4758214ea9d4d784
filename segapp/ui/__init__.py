"""The web application: page, callbacks, theme and start-up (Gradio).

The page's names are imported lazily, so importing ``segapp.ui`` costs nothing until one is
used. Importing the page imports Gradio but not torch, and loads no model. The pictures it shows
(overlays, colour masks) are drawn by :mod:`segapp.inference.render`, which the command-line
tools share.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# Before Gradio is imported: no analytics or version-check calls to outside hosts (these are
# patient images). setdefault leaves an explicit opt-in alone.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

_EXPORTS = {
    "build_demo": "segapp.ui.page",
    "LazySegmenter": "segapp.ui.server",
    "default_source": "segapp.ui.server",
    "launch_options": "segapp.ui.server",
    "main": "segapp.ui.server",
    "volume_source": "segapp.ui.server",
}

__all__ = ["LazySegmenter", "build_demo", "default_source", "launch_options", "main", "volume_source"]

if TYPE_CHECKING:  # pragma: no cover
    from segapp.ui.page import build_demo
    from segapp.ui.server import LazySegmenter, default_source, launch_options, main, volume_source


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'segapp.ui' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
