"""GI-tract MRI segmentation web app: ``python app.py [--weights SOURCE] [--volume-weights SOURCE] ...``.

Layout and wiring live in :mod:`segapp.ui`; this file only points them at the bundled
weights and examples (package data, :mod:`segapp.bundled`) and the style sheet. ``demo`` is
module-level for ``gradio app.py`` reload mode and Spaces; the model is loaded in ``main`` (or at
first use), not at import. The volume mode's model (the bundled 2.5D weights when installed, else
the slice model: :func:`segapp.ui.server.volume_source`) loads at the first volume.
"""

from __future__ import annotations

from pathlib import Path

from segapp.bundled import EXAMPLES_DIR
from segapp.cli import DEFAULT_WEIGHTS
from segapp.ui import LazySegmenter, build_demo, default_source, main, volume_source

ROOT = Path(__file__).resolve().parent
EXAMPLES = EXAMPLES_DIR
STYLE = ROOT / "assets" / "style.css"

segmenter = LazySegmenter(default_source(DEFAULT_WEIGHTS))
volume_segmenter = LazySegmenter(volume_source(segmenter.source), same_as=segmenter)
demo = build_demo(segmenter, volume_segmenter=volume_segmenter, examples_dir=EXAMPLES)

if __name__ == "__main__":
    raise SystemExit(main(demo, segmenter, css_path=STYLE, volume_segmenter=volume_segmenter))
