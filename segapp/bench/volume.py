"""Part 6 of ``python -m segapp.bench``: a whole DICOM series, read -> segment -> write, each stage timed.

A 144-slice 266 x 266 phantom MR series (``--quick``: 24 slices) is written once to a temporary
folder; then, round after round, it is read with :func:`segapp.read_volume`, segmented with
:meth:`Segmenter.predict_volume` and written as NIfTI, DICOM-SEG and RTSTRUCT. Target on the CPU:
everything but the model at most 25 % of the model's time.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from segapp.inference.exports import algorithm_of, write_volume_outputs
from segapp.inference.segmenter import Segmenter
from segapp.io.readers import read_volume
from segapp.model.runtime import synchronize
from segapp.synthetic.volume import phantom_volume
from segapp.synthetic.volume_files import write_dicom_series


def _timed(fn: Callable[[], Any], sync: Callable[[], None] | None = None) -> tuple[Any, float]:
    """(fn's result, milliseconds), the device synchronised around it when ``sync`` is given."""
    if sync is not None:
        sync()
    start = time.perf_counter()
    value = fn()
    if sync is not None:
        sync()
    return value, (time.perf_counter() - start) * 1000


def bench_volume(segmenter: Segmenter, *, slices: int = 144, repeats: int = 3) -> dict[str, Any]:
    """Median milliseconds per stage over ``repeats`` rounds (after one warm-up round).

    Returns:
        ``slices``, ``size``, per-stage ``*_ms`` (``read``, ``model`` = the slices' forward passes
        with their pre/post-processing, ``nifti``, ``dicom_seg``, ``rtstruct``), ``total_ms``
        and ``non_model_share`` (everything but ``model`` over ``model``).
    """
    sync = partial(synchronize, segmenter.device)
    volume = phantom_volume(11, 1, 0, first=1 + (144 - slices) // 2, count=slices, size=(266, 266))
    algorithm = algorithm_of(segmenter)
    formats = {"nifti": "nifti", "dicom_seg": "dicom-seg", "rtstruct": "rtstruct"}
    stages: dict[str, list[float]] = {k: [] for k in ("read", "model", *formats)}
    with tempfile.TemporaryDirectory(prefix="segapp-bench-volume-") as tmp:
        series = Path(tmp) / "series"
        write_dicom_series(volume, series)
        for round_ in range(repeats + 1):
            scan, read_ms = _timed(partial(read_volume, series))
            prediction, model_ms = _timed(partial(segmenter.predict_volume, scan), sync)
            figures = {"read": read_ms, "model": model_ms}
            for stage, fmt in formats.items():
                write = partial(write_volume_outputs, prediction, Path(tmp) / f"out-{stage}", [fmt], algorithm=algorithm)
                figures[stage] = _timed(write)[1]
            if round_:  # the first round warms caches and imports
                for stage, ms in figures.items():
                    stages[stage].append(ms)
    result: dict[str, Any] = {"slices": slices, "size": [266, 266]}
    for stage, values in stages.items():
        result[f"{stage}_ms"] = statistics.median(values)
    result["total_ms"] = sum(result[f"{s}_ms"] for s in stages)
    result["non_model_share"] = (result["total_ms"] - result["model_ms"]) / result["model_ms"]
    return result
