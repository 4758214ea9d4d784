"""Fine-tune SegFormer on GI-tract slices: ``python -m segapp.train --data DIR --out RUN_DIR``.

Defaults are the notebook's "8 GB settings" (SegFormer-B0 base, 288 x 288, batch 6 with
gradient accumulation 2, AdamW 3e-4 / 1e-4, 100 epochs, 16-bit mixed precision on CUDA).
The data set is decoded once into memory (on the GPU when it fits) and augmented in
batches on the device, so no DataLoader worker process is needed on any OS.

Run folder::

    RUN_DIR/train_config.json   effective configuration
    RUN_DIR/metrics.jsonl       one line per logged step and per validation
    RUN_DIR/summary.json        final figures
    RUN_DIR/best/               model folder of the best validation score (what the app serves)
    RUN_DIR/last/               model folder + training_state.pt, for --resume

Multi-GPU: ``torchrun --nproc_per_node=N -m segapp.train ...`` (DDP; NCCL on GPUs, gloo on CPU).

This module is the command line only: the options are :class:`segapp.training.config.TrainConfig`,
the loop is :func:`segapp.training.loop.train`.
"""

from __future__ import annotations

import shlex
import sys

from segapp.metrics.labelled_data import DataError
from segapp.model.weights import ModelLoadError
from segapp.training.config import TrainingError, config_from_args
from segapp.training.loop import train
from segapp.training.tracking import TrackingError


def main(argv: list[str] | None = None) -> int:
    """Parse the options, train; returns the exit status (0, 2 on an error with its message, 130 on Ctrl-C)."""
    try:
        config = config_from_args(argv)
        command = "python -m segapp.train " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
        train(config, command=command)
    except (DataError, ModelLoadError, TrainingError, TrackingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, read-only or vanished folder
        print(
            f"error: a file could not be read or written: {exc}. Training stopped; best/ and last/ "
            "keep their last complete versions (free space or fix permissions, then --resume).",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last checkpoint in RUN_DIR/last is intact; continue with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
