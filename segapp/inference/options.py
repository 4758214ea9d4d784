"""How a :class:`~segapp.inference.segmenter.Segmenter` runs: its options, defined once.

Importable without torch (``--help`` and the web page's start stay fast). The commands build
the options from their parsed arguments with :meth:`SegmenterOptions.from_args`; code builds them
with keywords, or passes the same keywords to ``Segmenter`` / ``Segmenter.from_pretrained``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from segapp.model.runtime import COMPILE_MODES, RUNTIMES

if TYPE_CHECKING:  # pragma: no cover
    import torch

# Option name -> the argparse destination that carries it, where the two differ.
_ARGUMENT_NAMES = {"max_batch_size": "batch_size"}


@dataclass(frozen=True)
class SegmenterOptions:
    """The Segmenter's options, checked when made.

    Attributes:
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps`` (or a ``torch.device``).
        max_batch_size: Largest batch :meth:`~segapp.inference.segmenter.Segmenter.predict_batch`
            sends to the model at once (>= 1).
        warmup: Run one forward pass at creation, so the first request is not the slow one.
        fold_head: Run the decode head in its folded form (:mod:`segapp.model.head_folding`):
            the same logits up to float rounding, about half the arithmetic.
        min_region_px: Override the model folder's small-region clean-up
            (:func:`segapp.model.processing.remove_small_regions`); None keeps the folder's
            value, 0 turns it off.
        combine_requests: Let concurrent ``predict`` calls share forward passes.
        compile: ``off``, or a ``torch.compile`` mode (``default``, ``reduce-overhead`` for CUDA
            graphs, ``max-autotune``). Batches are padded to a power of two, so only a few shapes
            are compiled; with ``warmup`` all of them are compiled at creation (seconds to
            minutes) instead of at the first requests of each size.
        runtime: ``torch``, or ``onnx``: run the network with ONNX Runtime on the CPU
            (:mod:`segapp.model.onnx_runtime`; optional extra ``segapp[onnx]``; exported once
            per weights and cached). Pre- and post-processing stay the same.

    Raises:
        ValueError: A value out of range, an unknown compile mode or runtime, or ``onnx`` with
            ``compile`` (they are alternatives).
    """

    device: str | torch.device = "auto"
    max_batch_size: int = 16
    warmup: bool = True
    fold_head: bool = True
    min_region_px: int | None = None
    combine_requests: bool = True
    compile: str = "off"
    runtime: str = "torch"

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {self.max_batch_size}")
        if self.min_region_px is not None and self.min_region_px < 0:
            raise ValueError(f"min_region_px must be >= 0, got {self.min_region_px}")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {self.compile!r}")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        if self.runtime == "onnx" and self.compile != "off":
            raise ValueError("runtime 'onnx' and compile are alternatives: choose one of them")

    @classmethod
    def of(cls, options: SegmenterOptions | None = None, **overrides: Any) -> SegmenterOptions:
        """``options`` (default: the defaults) with ``overrides`` (option keywords) applied.

        Raises:
            TypeError: An unknown option name.
            ValueError: See the class.
        """
        return replace(options or cls(), **overrides) if overrides else options or cls()

    @classmethod
    def from_args(cls, args: argparse.Namespace, **overrides: Any) -> SegmenterOptions:
        """The options a command's parsed arguments carry (``--device``, ``--compile``,
        ``--runtime``, ``--min-region-px``, ``--batch-size``: those the command has), then
        ``overrides``; the others keep their defaults."""
        given = {}
        for option in fields(cls):
            name = _ARGUMENT_NAMES.get(option.name, option.name)
            if hasattr(args, name):
                given[option.name] = getattr(args, name)
        return cls(**{**given, **overrides})


__all__ = ["SegmenterOptions"]
