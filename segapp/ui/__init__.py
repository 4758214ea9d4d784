"""The web application: page, callbacks, theme and start-up (Gradio).

Importing this package imports Gradio but not torch, and loads no model.
"""

from __future__ import annotations

import os

# Before Gradio is imported: no analytics or version-check calls to outside hosts (these are
# patient images). setdefault leaves an explicit opt-in alone.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from segapp.ui.page import build_demo  # noqa: E402
from segapp.ui.server import LazySegmenter, default_source, launch_options, main  # noqa: E402

__all__ = ["LazySegmenter", "build_demo", "default_source", "launch_options", "main"]
