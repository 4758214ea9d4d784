"""What the command-line fronts share: one definition and one help text per common option.

Importable without torch, so ``--help`` and the web page's start stay fast.
"""

from __future__ import annotations

import argparse

from segapp.bundled import MODEL_DIR
from segapp.model.runtime import COMPILE_HELP, COMPILE_MODES, DEVICE_HELP, RUNTIME_HELP, RUNTIMES

# The bundled demonstration weights (package data), the default of every tool that needs a model.
DEFAULT_WEIGHTS = str(MODEL_DIR)

WEIGHTS_HELP = "model folder, .safetensors, Lightning .ckpt or hub id"


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_weights_option(parser: argparse.ArgumentParser, *, default: str | None = DEFAULT_WEIGHTS,
                       required: bool = False, note: str = "") -> None:
    """``--weights SOURCE``; ``note`` adds to the shared help text (e.g. where the default comes from)."""
    if not note:
        note = "the bundled demonstration weights" if default == DEFAULT_WEIGHTS else str(default)
    default_text = "" if required else f" (default: {note})"
    parser.add_argument("--weights", default=default, required=required, help=WEIGHTS_HELP + default_text)


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda|cuda:N|mps``."""
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)


def add_compile_option(parser: argparse.ArgumentParser, *, help: str = COMPILE_HELP) -> None:
    """``--compile off|default|reduce-overhead|max-autotune``."""
    parser.add_argument("--compile", default="off", choices=COMPILE_MODES, help=help)


def add_runtime_option(parser: argparse.ArgumentParser, *, help: str = RUNTIME_HELP) -> None:
    """``--runtime torch|onnx``."""
    parser.add_argument("--runtime", default="torch", choices=RUNTIMES, help=help)


def add_min_region_option(parser: argparse.ArgumentParser) -> None:
    """``--min-region-px N``: override the model folder's small-region clean-up (None: keep it)."""
    parser.add_argument("--min-region-px", type=non_negative_int, default=None,
                        help="override the weights' small-region clean-up (0: off; default: the folder's value)")
