"""What ships inside the package: the demonstration weights and the example slices.

Both are package data, so an installed wheel has them. The weights live in this folder
(``model/``); the example slices live once, in the repository's top-level ``examples/`` folder,
which the build maps into the package as ``segapp/bundled/examples/`` (``setup.py``). The web
app, the command-line defaults, the benchmark and the scripts all find them through the
constants below, never through the repository's layout.

A second model folder, :data:`VOLUME_MODEL_DIR`, may ship next to the slice weights: a 2.5D
model that the web app's volume mode uses (2.5D models read neighbouring slices, so they serve
volumes better than single slices). It is optional; without it the volume mode uses the slice
weights.
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


def _examples_dir(here: Path) -> Path:
    """The example slices: inside the package in an installed wheel, else (a source checkout, an
    editable install, the Docker image, a Space) the checkout's top-level ``examples/``."""
    shipped = here / "examples"
    # Slices, not just the folder: a checkout may keep an empty folder from before the move.
    return shipped if any(shipped.glob("*.png")) else here.parents[1] / "examples"


EXAMPLES_DIR: Path = _examples_dir(_HERE)
"""Six competition-named phantom slices (8-bit PNG) that the page offers as examples."""

VOLUME_MODEL_DIR: Path = _HERE / "model-2.5d"
"""Where bundled weights for the volume mode go (a model folder as :data:`MODEL_DIR`); may be absent."""


def default_volume_source(folder: Path | None = None) -> Path | None:
    """The bundled volume-mode weights: ``folder`` (default :data:`VOLUME_MODEL_DIR`) when it
    holds a model (``config.json`` and ``model.safetensors``), else None: the volume mode then
    uses the slice model."""
    folder = VOLUME_MODEL_DIR if folder is None else folder
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    return None


__all__ = ["EXAMPLES_DIR", "MODEL_DIR", "VOLUME_MODEL_DIR", "default_volume_source"]
