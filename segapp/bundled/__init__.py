"""What ships inside the package: the demonstration weights and the example slices.

Both are package data (``pyproject.toml``), so an installed wheel has them exactly where a
source checkout does. The web app, the command-line defaults, the benchmark and the scripts
all find them through the two constants below, never through the repository's layout.
"""

from __future__ import annotations

from pathlib import Path

# Anchored on this file rather than on the repository root, so the same path holds in a source
# checkout, an editable install, a wheel in site-packages, the Docker image and a Space. A plain
# path is enough: pip installs wheels unpacked, and loading a model needs real files anyway.
_HERE = Path(__file__).resolve().parent

MODEL_DIR: Path = _HERE / "model"
"""The bundled demonstration weights: a model folder (``config.json``, ``model.safetensors``,
``preprocessor_config.json`` and the model card ``README.md``)."""

EXAMPLES_DIR: Path = _HERE / "examples"
"""Six competition-named phantom slices (8-bit PNG) that the page offers as examples."""

__all__ = ["EXAMPLES_DIR", "MODEL_DIR"]
