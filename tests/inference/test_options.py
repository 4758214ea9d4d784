"""SegmenterOptions: the Segmenter's options, their checks, and the one way commands build them."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from segapp.cli import add_compile_option, add_device_option, add_min_region_option, add_runtime_option
from segapp.inference.options import SegmenterOptions
from segapp.inference.segmenter import Segmenter


def test_bad_values_are_refused_when_made() -> None:
    for bad, message in (({"max_batch_size": 0}, "max_batch_size"), ({"min_region_px": -1}, "min_region_px"),
                         ({"compile": "fast"}, "compile must be one of"), ({"runtime": "tensorrt"}, "runtime must be"),
                         ({"runtime": "onnx", "compile": "default"}, "alternatives")):
        with pytest.raises(ValueError, match=message):
            SegmenterOptions(**bad)
    with pytest.raises(TypeError):
        SegmenterOptions.of(None, colour="red")
    assert SegmenterOptions.of(SegmenterOptions(device="cpu"), compile="default") == SegmenterOptions(
        device="cpu", compile="default")


def test_from_args_takes_the_options_a_command_has() -> None:
    parser = argparse.ArgumentParser()
    for add in (add_device_option, add_compile_option, add_runtime_option, add_min_region_option):
        add(parser)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(["--device", "cpu", "--min-region-px", "5", "--batch-size", "3"])
    assert SegmenterOptions.from_args(args, warmup=False) == SegmenterOptions(
        device="cpu", min_region_px=5, max_batch_size=3, warmup=False)
    assert SegmenterOptions.from_args(argparse.Namespace(device="cpu")) == SegmenterOptions(device="cpu")


def test_the_segmenter_runs_with_its_options(tiny_segmenter) -> None:
    options = SegmenterOptions(device="cpu", max_batch_size=3, warmup=False, min_region_px=0)
    segmenter = Segmenter(tiny_segmenter.loaded, options)
    assert segmenter.options == options and segmenter.max_batch_size == 3
    assert segmenter.processing.min_region_px == 0 and segmenter.warmup_seconds == 0.0
    # Keywords on top of the options, as before.
    assert Segmenter(tiny_segmenter.loaded, options, max_batch_size=5).max_batch_size == 5


def test_importing_the_options_leaves_torch_out() -> None:
    code = "import sys, segapp.inference.options; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
