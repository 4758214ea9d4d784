"""A training run's metrics: ``RUN_DIR/metrics.jsonl`` always, and the experiment trackers asked for.

``metrics.jsonl`` holds one JSON object per line (``{"type": "step" | "valid", "step": N, ...}``);
it is the record the run summary, the model card and scripts read. The same records go to each
:class:`segapp.training.tracking.Tracker` of the run (TensorBoard, Weights & Biases; chosen with
``--report-to``), flattened into tags by :func:`segapp.training.tracking.scalars`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segapp.io.files import write_text_atomic
from segapp.training.tracking import Overlay, Tracker, scalars


class RunLog:
    """Appends metrics records to ``out/metrics.jsonl`` and hands them to the run's trackers.

    Args:
        out: run folder (created by the caller).
        trackers: Open trackers (:func:`segapp.training.tracking.open_trackers`); closed by :meth:`close`.
        resume_step: the optimizer step the run resumes from, or None for a new run. Records
            logged after it by the interrupted run are dropped from metrics.jsonl (the resumed run
            logs those steps again).
    """

    def __init__(self, out: Path, trackers: Sequence[Tracker] = (), resume_step: int | None = None) -> None:
        self.path = Path(out) / "metrics.jsonl"
        if resume_step is not None:
            _drop_records_after(self.path, resume_step)
        self.trackers = list(trackers)

    @property
    def wants_images(self) -> bool:
        """True when a tracker would show validation overlays (so they are worth computing)."""
        return bool(self.trackers)

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (JSON-serialisable; ``step`` is the trackers' x axis)."""
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        values = scalars(record)
        for tracker in self.trackers:
            tracker.log_scalars(values, int(record.get("step", 0)))

    def write_images(self, images: Sequence[Overlay], step: int) -> None:
        """Hand validation overlays to the trackers (metrics.jsonl keeps numbers only)."""
        for tracker in self.trackers:
            tracker.log_images(images, step)

    def close(self, model_dir: Path | None = None, *, failed: bool = False) -> None:
        """Close the trackers; ``model_dir``: the model folder to keep with the run (best/), if any."""
        trackers, self.trackers = self.trackers, []
        for tracker in trackers:
            tracker.close(model_dir, failed=failed)


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
