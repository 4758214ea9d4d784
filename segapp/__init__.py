"""segapp: stomach, small bowel and large bowel segmentation in abdominal MRI.

The public names below are imported lazily, so ``import segapp`` stays cheap
(no torch or transformers until a model is needed).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from segapp.version import __version__

_EXPORTS = {
    "read_image": "segapp.io.readers",
    "ScanImage": "segapp.io.image",
    "InvalidImageError": "segapp.io.image",
    "LABELS": "segapp.labels",
    "NUM_LABELS": "segapp.labels",
    "ID2LABEL": "segapp.labels",
    "LABEL2ID": "segapp.labels",
    "ProcessingConfig": "segapp.model.processing",
    "preprocess": "segapp.model.processing",
    "postprocess": "segapp.model.processing",
    "load_model": "segapp.model.weights",
    "save_model": "segapp.model.weights",
    "LoadedModel": "segapp.model.weights",
    "ModelLoadError": "segapp.model.weights",
    "Segmenter": "segapp.inference.segmenter",
    "SegmenterOptions": "segapp.inference.options",
    "Prediction": "segapp.inference.segmenter",
    "read_volume": "segapp.io.readers",
    "ScanVolume": "segapp.io.volume",
    "InvalidVolumeError": "segapp.io.volume",
    "VolumePrediction": "segapp.inference.volume",
}

__all__ = [  # noqa: RUF022 - grouped as _EXPORTS
    "read_image", "ScanImage", "InvalidImageError",
    "LABELS", "NUM_LABELS", "ID2LABEL", "LABEL2ID",
    "ProcessingConfig", "preprocess", "postprocess",
    "load_model", "save_model", "LoadedModel", "ModelLoadError",
    "Segmenter", "SegmenterOptions", "Prediction",
    "read_volume", "ScanVolume", "InvalidVolumeError", "VolumePrediction",
    "__version__",
]

if TYPE_CHECKING:  # pragma: no cover
    from segapp.inference.options import SegmenterOptions
    from segapp.inference.segmenter import Prediction, Segmenter
    from segapp.inference.volume import VolumePrediction
    from segapp.io.image import InvalidImageError, ScanImage
    from segapp.io.readers import read_image, read_volume
    from segapp.io.volume import InvalidVolumeError, ScanVolume
    from segapp.labels import ID2LABEL, LABEL2ID, LABELS, NUM_LABELS
    from segapp.model.processing import ProcessingConfig, postprocess, preprocess
    from segapp.model.weights import LoadedModel, ModelLoadError, load_model, save_model


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'segapp' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
