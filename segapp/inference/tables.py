"""The tables of a batch prediction: ``stats.csv``, ``submission.csv`` and ``volumes.csv``, and the
run's summary. Rows are collected per process and written once at the end, sorted, by rank 0."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.distributed as tdist

from segapp.inference.batch_inputs import InputFile
from segapp.inference.segmenter import Prediction
from segapp.io.files import write_text_atomic
from segapp.io.naming import slice_id
from segapp.labels import FOREGROUND
from segapp.model.distributed import Dist

SUBMISSION_NAME = "submission.csv"
STATS_NAME = "stats.csv"
VOLUMES_NAME = "volumes.csv"
# The competition's CSV lists the classes of a slice in alphabetical order.
SUBMISSION_CLASSES = tuple(sorted(FOREGROUND, key=lambda label: label.name))


@dataclass
class PredictSummary:
    """What a :func:`predict` run did.

    Attributes:
        out: The output folder.
        predicted: Slices segmented.
        failed: (input, reason) for every input that was skipped.
        seconds: Wall time from the first read to the last write.
        files: Output kind (``masks``, ``overlays``, ``submission``, ``stats``, ``volumes``) -> path.
        volumes: Volumes segmented (volume inputs and assembled case-days).
        volume_files: Volume name -> its written files (format -> path).
    """

    out: Path
    predicted: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    files: dict[str, str] = field(default_factory=dict)
    volumes: int = 0
    volume_files: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        """Slices per second, reading and writing included."""
        return self.predicted / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """True when no input failed."""
        return not self.failed


def stats_row(entry: InputFile, prediction: Prediction) -> dict[str, Any]:
    """The ``stats.csv`` row of one slice: size, spacing, and per organ pixels, mm² and confidence."""
    spacing = prediction.spacing_mm
    row: dict[str, Any] = {
        "file": entry.relative,
        "id": slice_id(entry.path) or "",
        "height": prediction.mask.shape[0],
        "width": prediction.mask.shape[1],
        "row_mm": spacing[0] if spacing else "",
        "col_mm": spacing[1] if spacing else "",
    }
    for label in FOREGROUND:
        stats = prediction.stats[label.name]
        row[f"{label.name}_pixels"] = stats.pixels
        row[f"{label.name}_area_mm2"] = "" if stats.area_mm2 is None else round(stats.area_mm2, 3)
        row[f"{label.name}_confidence"] = (
            "" if stats.mean_confidence is None else round(stats.mean_confidence, 4)
        )
    return row


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a CSV atomically (temporary file, then rename)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


@dataclass
class Tables:
    """The run's CSV rows, written once at the end (by rank 0, from every rank's rows)."""

    stats: list[dict[str, Any]] = field(default_factory=list)
    submission: list[list[str]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    failed: list[list[str]] = field(default_factory=list)

    def gathered(self, out_dir: Path, dist: Dist) -> Tables:
        """Every rank's rows (on rank 0; others get their own back): each rank writes its rows to
        a hidden shard file, all wait, rank 0 reads and removes them."""
        shards = out_dir / ".segapp-shards"
        shards.mkdir(exist_ok=True)
        write_text_atomic(shards / f"rank{dist.rank}.json", json.dumps(vars(self)))
        tdist.barrier()
        if not dist.main:
            return self
        merged = Tables()
        for rank in range(dist.world):
            part = json.loads((shards / f"rank{rank}.json").read_text(encoding="utf-8"))
            for key, rows in part.items():
                getattr(merged, key).extend(rows)
        shutil.rmtree(shards, ignore_errors=True)
        return merged

    def write(self, out_dir: Path, chosen: set[str], summary: PredictSummary) -> None:
        """The CSVs, sorted so reruns (and any number of processes) give identical files."""
        if self.stats:
            self.stats.sort(key=lambda row: row["file"])
            header = list(self.stats[0])
            _write_csv(out_dir / STATS_NAME, header, ([row[k] for k in header] for row in self.stats))
            summary.files["stats"] = str(out_dir / STATS_NAME)
        if "rle" in chosen:
            order = {label.name: i for i, label in enumerate(SUBMISSION_CLASSES)}
            self.submission.sort(key=lambda row: (row[0], order[row[1]]))
            _write_csv(out_dir / SUBMISSION_NAME, ("id", "class", "predicted"), self.submission)
            summary.files["submission"] = str(out_dir / SUBMISSION_NAME)
        if "png" in chosen:
            summary.files["masks"] = str(out_dir / "masks")
        if "overlay" in chosen:
            summary.files["overlays"] = str(out_dir / "overlays")
        if self.volumes:
            self.volumes.sort(key=lambda row: row["volume"])
            header = list(self.volumes[0])
            _write_csv(out_dir / VOLUMES_NAME, header, ([row[k] for k in header] for row in self.volumes))
            summary.files["volumes"] = str(out_dir / VOLUMES_NAME)
        summary.predicted = len(self.stats)
        summary.volumes = len(self.volumes)
