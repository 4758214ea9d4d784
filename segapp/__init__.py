"""segapp: stomach, small bowel and large bowel segmentation in abdominal MRI.

The public names below are imported lazily, so ``import segapp`` stays cheap
(no torch or transformers until a model is needed).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "read_image": "segapp.image_io",
    "ScanImage": "segapp.image_io",
    "InvalidImageError": "segapp.image_io",
    "LABELS": "segapp.labels",
    "NUM_LABELS": "segapp.labels",
    "ID2LABEL": "segapp.labels",
    "LABEL2ID": "segapp.labels",
    "ProcessingConfig": "segapp.processing",
    "preprocess": "segapp.processing",
    "postprocess": "segapp.processing",
    "load_model": "segapp.modeling",
    "save_model": "segapp.modeling",
    "LoadedModel": "segapp.modeling",
    "ModelLoadError": "segapp.modeling",
    "Segmenter": "segapp.segmenter",
    "Prediction": "segapp.segmenter",
}

__all__ = [  # noqa: RUF022 - grouped as _EXPORTS
    "read_image", "ScanImage", "InvalidImageError",
    "LABELS", "NUM_LABELS", "ID2LABEL", "LABEL2ID",
    "ProcessingConfig", "preprocess", "postprocess",
    "load_model", "save_model", "LoadedModel", "ModelLoadError",
    "Segmenter", "Prediction",
    "__version__",
]

if TYPE_CHECKING:  # pragma: no cover
    from segapp.image_io import InvalidImageError, ScanImage, read_image
    from segapp.labels import ID2LABEL, LABEL2ID, LABELS, NUM_LABELS
    from segapp.modeling import LoadedModel, ModelLoadError, load_model, save_model
    from segapp.processing import ProcessingConfig, postprocess, preprocess
    from segapp.segmenter import Prediction, Segmenter


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'segapp' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
