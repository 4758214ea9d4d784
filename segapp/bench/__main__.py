"""``python -m segapp.bench``: segapp against the usual recipes, in one process, same weights and inputs.

    python -m segapp.bench [--device auto|cpu|cuda] [--weights SOURCE] [--json FILE] [--quick]
                           [--skip web,training,startup,volume] [--compile reduce-overhead] [--runtime onnx]

Measures (warm-up, repeats, medians):

1. single-slice latency of ``Segmenter.predict`` vs (a) the transformers documentation recipe
   (``SegformerImageProcessor`` defaults, i.e. 512 x 512, + model + ``post_process_semantic_segmentation``)
   and (b) the notebook's path (PIL resize to 288, numpy normalisation, fp32 eager model, upsample and
   argmax on the CPU), with the share of pixels on which our masks agree with (b);
2. ``predict_batch`` throughput at several batch sizes; 16 threads calling ``predict`` at once,
   combined into shared forward passes vs one by one; with ``--compile MODE``, a compiled
   Segmenter against the eager one (latency, batch throughput, agreement, concurrent callers
   reaching it from many threads); with ``--runtime onnx``,
   the ONNX Runtime path against PyTorch on the CPU (export and cached start-up, latency, batch
   throughput, agreement);
3. the web path: one ``/segment`` request vs ``predict`` alone, both through Gradio's plain HTTP
   API (what curl or any language uses; :mod:`segapp.rest_client`) and through ``gradio_client`` (whose
   event polling adds a floor of its own), each next to a no-op endpoint's floor; throughput with
   8 concurrent clients of each kind; and, where Playwright and Chromium are installed, the page
   itself: a click on Submit until the overlay has decoded (:mod:`segapp.bench.browser`), and the
   volume tab (3c): Segment volume to the result for the 144-slice example (24 with ``--quick``),
   and the keyboard slice-step latency p50 / p95 / max;
4. training images/s vs a plain per-sample DataLoader (:mod:`segapp.bench.training`);
5. start-up: seconds from launching ``python app.py`` to the first served prediction.

Inputs are phantom slices of the real sizes. CPU timings are only meaningful as ratios within
one run; GPU timings are absolute for the named card.

This is the command line; :func:`segapp.bench.core.run_benchmarks` runs the parts.
"""

from __future__ import annotations

import argparse
import json
import sys

from segapp.bench.core import BenchOptions, run_benchmarks
from segapp.cli import add_compile_option, add_device_option, add_runtime_option, add_weights_option
from segapp.io.files import write_text_atomic
from segapp.model.onnx_runtime import ONNX_MISSING, onnx_available


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m segapp.bench`` command line."""
    parser = argparse.ArgumentParser(prog="python -m segapp.bench", description=__doc__.splitlines()[0])
    add_device_option(parser)
    add_weights_option(parser)
    parser.add_argument("--json", help="write all figures to this file")
    parser.add_argument("--quick", action="store_true", help="few repeats (smoke run)")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: web,training,startup,volume")
    add_compile_option(parser, help="also time a torch.compile'd Segmenter in this mode against the eager one")
    add_runtime_option(parser, help="onnx: also time the ONNX Runtime path against PyTorch (CPU; needs segapp[onnx])")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print a line per part and then all figures as JSON.

    Returns:
        0, or 2 when ``--runtime onnx`` is asked for without ONNX Runtime installed.
    """
    args = build_parser().parse_args(argv)
    if args.runtime == "onnx" and not onnx_available():
        print(f"error: {ONNX_MISSING}", file=sys.stderr)  # before minutes of other parts
        return 2
    options = BenchOptions(
        weights=args.weights,
        device=args.device,
        quick=args.quick,
        skip=frozenset(s.strip() for s in args.skip.split(",") if s.strip()),
        compile=args.compile,
        runtime=args.runtime,
    )
    results = run_benchmarks(options)
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
