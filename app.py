"""GI-tract MRI segmentation web app: ``python app.py [--weights SOURCE] [--host H] [--port P] ...``.

Layout and wiring live in :mod:`segapp.ui`; this file only points them at the bundled
weights and examples (package data, :mod:`segapp.bundled`) and the style sheet. ``demo`` is
module-level for ``gradio app.py`` reload mode and Spaces; the model is loaded in ``main`` (or at
first use), not at import.
"""

from __future__ import annotations

from pathlib import Path

from segapp.bundled import EXAMPLES_DIR, MODEL_DIR
from segapp.ui import LazySegmenter, build_demo, default_source, main

ROOT = Path(__file__).resolve().parent
DEFAULT_WEIGHTS = MODEL_DIR
EXAMPLES = EXAMPLES_DIR
STYLE = ROOT / "assets" / "style.css"

segmenter = LazySegmenter(default_source(DEFAULT_WEIGHTS))
demo = build_demo(segmenter, examples_dir=EXAMPLES)

if __name__ == "__main__":
    raise SystemExit(main(demo, segmenter, css_path=STYLE))
