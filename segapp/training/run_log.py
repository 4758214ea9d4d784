"""A training run's metrics: ``RUN_DIR/metrics.jsonl`` always, TensorBoard event files when asked.

``metrics.jsonl`` holds one JSON object per line (``{"type": "step" | "valid", "step": N, ...}``);
it is the record the run summary, the model card and scripts read. TensorBoard is optional: with
``tensorboard="auto"`` the same records are also written under ``RUN_DIR/tensorboard/`` when the
``tensorboard`` package is installed (``pip install tensorboard``), and silently skipped otherwise.
No remote logging service is involved.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from segapp.io.files import write_text_atomic

TENSORBOARD_CHOICES = ("auto", "yes", "no")
TENSORBOARD_MISSING = "TensorBoard logging was asked for (--tensorboard yes) but the tensorboard package is not installed: pip install tensorboard, or use --tensorboard auto"


class RunLogError(RuntimeError):
    """TensorBoard logging was required but cannot be provided."""


def _summary_writer_class() -> Callable[..., Any] | None:
    """torch's SummaryWriter, or None when the tensorboard package is missing."""
    try:  # optional: imported here so that a missing tensorboard only turns logging off
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises ImportError naming tensorboard when it is absent
        return None
    return SummaryWriter


def tensorboard_writer_class(choice: str) -> Callable[..., Any] | None:
    """The SummaryWriter class to use for a ``--tensorboard`` choice, or None for no event files.

    Raises:
        ValueError: ``choice`` is not one of :data:`TENSORBOARD_CHOICES`.
        RunLogError: ``choice`` is "yes" and the tensorboard package is missing.
    """
    if choice not in TENSORBOARD_CHOICES:
        raise ValueError(f"tensorboard must be one of {TENSORBOARD_CHOICES}, got {choice!r}")
    if choice == "no":
        return None
    writer_class = _summary_writer_class()
    if writer_class is None and choice == "yes":
        raise RunLogError(TENSORBOARD_MISSING)
    return writer_class


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """TensorBoard tags -> values for one metrics record.

    ``{"type": "valid", "loss": .3, "dice": {"stomach": .9}}`` ->
    ``{"valid/loss": .3, "valid/dice/stomach": .9}``. Non-numbers, bools, NaN/inf values and the
    bookkeeping keys ``type``, ``step`` and ``epoch`` are left out.
    """
    prefix = "train" if record.get("type") == "step" else str(record.get("type", "run"))
    out: dict[str, float] = {}

    def visit(key: str, value: Any) -> None:
        if isinstance(value, dict):
            for name, inner in value.items():
                visit(f"{key}/{name}", inner)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = float(value)

    for key, value in record.items():
        if key not in ("type", "step", "epoch"):
            visit(f"{prefix}/{key}", value)
    return out


class RunLog:
    """Appends metrics records to ``out/metrics.jsonl`` and, optionally, to TensorBoard.

    Args:
        out: run folder (created by the caller).
        tensorboard: "auto" (write event files when tensorboard is installed), "yes" (required:
            RunLogError if it is missing), "no".
        resume_step: the optimizer step the run resumes from, or None for a new run. Records
            logged after it by the interrupted run are dropped from metrics.jsonl (the resumed run
            logs those steps again) and TensorBoard purges its events after it.
    """

    def __init__(self, out: Path, tensorboard: str = "auto", resume_step: int | None = None) -> None:
        writer_class = tensorboard_writer_class(tensorboard)
        self.path = Path(out) / "metrics.jsonl"
        if resume_step is not None:
            _drop_records_after(self.path, resume_step)
        self.writer: Any = None
        if writer_class is not None:
            self.writer = writer_class(log_dir=str(Path(out) / "tensorboard"), purge_step=resume_step)

    @property
    def tensorboard_dir(self) -> Path | None:
        """Where event files go, or None when TensorBoard is off."""
        return self.path.parent / "tensorboard" if self.writer is not None else None

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (JSON-serialisable; ``step`` gives the TensorBoard x axis)."""
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            step = int(record.get("step", 0))
            for tag, value in scalars(record).items():
                self.writer.add_scalar(tag, value, global_step=step)
            self.writer.flush()  # a killed run keeps its curves up to the last record

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _drop_records_after(path: Path, step: int) -> None:
    """Rewrite ``path`` (atomically) without the records whose step is beyond ``step``.

    A line cut short by a kill, or otherwise unreadable, is dropped too: the file stays valid JSON lines.
    """
    if not path.is_file():
        return
    kept: list[str] = []
    changed = False
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
            keep = isinstance(record, dict) and int(record.get("step", 0)) <= step
        except (ValueError, TypeError):
            keep = False
        if keep:
            kept.append(line)
        else:
            changed = True
    if changed:
        write_text_atomic(path, "".join(line + "\n" for line in kept))
