"""metrics.jsonl and the optional TensorBoard output of training runs (segapp.training.run_log, .tracking)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segapp.train import main
from segapp.training import tracking
from segapp.training.run_log import RunLog
from segapp.training.tracking import TensorBoardTracker, TrackingError, resolve_trackers, scalars


class FakeWriter:
    """Records what torch's SummaryWriter would be asked to write."""

    instances: list[FakeWriter] = []

    def __init__(self, log_dir: str, purge_step: int | None = None) -> None:
        self.log_dir, self.purge_step = log_dir, purge_step
        self.scalars: list[tuple[str, float, int]] = []
        self.images: list[tuple[str, tuple[int, ...], int, str]] = []
        self.closed = False
        FakeWriter.instances.append(self)

    def add_scalar(self, tag: str, value: float, global_step: int) -> None:
        self.scalars.append((tag, value, global_step))

    def add_image(self, tag: str, image: Any, global_step: int, dataformats: str) -> None:
        self.images.append((tag, image.shape, global_step, dataformats))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_tensorboard(monkeypatch) -> type[FakeWriter]:
    FakeWriter.instances = []
    monkeypatch.setattr(tracking, "_summary_writer_class", lambda: FakeWriter)
    return FakeWriter


@pytest.fixture
def no_tensorboard(monkeypatch) -> None:
    monkeypatch.setattr(tracking, "_summary_writer_class", lambda: None)


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_scalars_flatten_nested_metrics_and_skip_bookkeeping() -> None:
    record = {"type": "valid", "step": 7, "epoch": 2, "loss": 0.25, "slices": 30,
              "dice": {"stomach": 0.9, "small_bowel": 0.8}, "hd95_mm": {"stomach": float("nan")},
              "note": "text", "flag": True}
    assert scalars(record) == {"valid/loss": 0.25, "valid/slices": 30.0,
                               "valid/dice/stomach": 0.9, "valid/dice/small_bowel": 0.8}
    assert scalars({"type": "step", "step": 1, "loss": 1.5, "lr": 1e-4}) == {"train/loss": 1.5, "train/lr": 1e-4}


def _log(out: Path, tensorboard: str = "auto", resume_step: int | None = None) -> RunLog:
    """What training opens for ``--report-to auto --tensorboard <tensorboard>`` (W&B is off in these tests)."""
    trackers = tracking.open_trackers(resolve_trackers("auto", tensorboard), out, config={}, project=None,
                                      resume_step=resume_step)
    return RunLog(out, trackers, resume_step=resume_step)


def test_records_go_to_jsonl_and_tensorboard(tmp_path: Path, fake_tensorboard, capsys) -> None:
    log = _log(tmp_path)
    assert f"tensorboard --logdir {tmp_path / 'tensorboard'}" in capsys.readouterr().out
    assert log.wants_images
    log.write({"type": "step", "step": 5, "loss": 0.5})
    log.write({"type": "valid", "step": 5, "dice": {"stomach": 0.75}})
    log.write_images([("slice 0", np.zeros((8, 16, 3), np.uint8))], 5)
    log.close()
    assert _records(tmp_path / "metrics.jsonl") == [
        {"type": "step", "step": 5, "loss": 0.5}, {"type": "valid", "step": 5, "dice": {"stomach": 0.75}}]
    (writer,) = fake_tensorboard.instances
    assert writer.log_dir == str(tmp_path / "tensorboard") and writer.purge_step is None
    assert writer.scalars == [("train/loss", 0.5, 5), ("valid/dice/stomach", 0.75, 5)]
    assert writer.images == [("valid/overlays/0", (8, 16, 3), 5, "HWC")]
    assert writer.closed


def test_auto_without_tensorboard_writes_jsonl_only(tmp_path: Path, no_tensorboard) -> None:
    log = _log(tmp_path)
    log.write({"type": "step", "step": 1, "loss": 0.5})
    assert not log.wants_images and not (tmp_path / "tensorboard").exists()
    assert len(_records(tmp_path / "metrics.jsonl")) == 1
    with pytest.raises(TrackingError, match="pip install tensorboard"):
        resolve_trackers("auto", "yes")
    with pytest.raises(TrackingError, match="pip install tensorboard"):
        resolve_trackers("tensorboard")
    with pytest.raises(TrackingError, match="pip install tensorboard"):
        TensorBoardTracker(tmp_path)


def test_no_means_no_event_files_even_when_installed(tmp_path: Path, fake_tensorboard) -> None:
    _log(tmp_path, "no").write({"type": "step", "step": 1, "loss": 0.5})
    assert fake_tensorboard.instances == []
    with pytest.raises(TrackingError):
        _log(tmp_path, "maybe")


def test_resume_drops_records_logged_after_the_checkpoint(tmp_path: Path, fake_tensorboard) -> None:
    lines = [{"type": "step", "step": s, "loss": 1.0} for s in (1, 2, 3, 4)] + [{"type": "valid", "step": 4}]
    text = "".join(json.dumps(r) + "\n" for r in lines) + '{"type": "step", "st'  # cut short by a kill
    (tmp_path / "metrics.jsonl").write_text(text)
    _log(tmp_path, resume_step=2).write({"type": "step", "step": 3, "loss": 0.9})
    assert [(r["type"], r["step"]) for r in _records(tmp_path / "metrics.jsonl")] == [
        ("step", 1), ("step", 2), ("step", 3)]
    assert fake_tensorboard.instances[-1].purge_step == 2  # TensorBoard drops its later events too


def test_training_writes_tensorboard_scalars(phantom_data: Path, tiny_model_dir: Path, tmp_path: Path,
                                              fake_tensorboard, capsys) -> None:
    out = tmp_path / "run"
    args = ["--data", str(phantom_data), "--out", str(out), "--base", str(tiny_model_dir), "--image-size", "64",
            "--batch-size", "2", "--grad-accum", "1", "--no-progress", "--log-every", "1", "--no-hausdorff",
            "--scheduler", "constant"]
    assert main(args + ["--max-steps", "2"]) == 0
    assert f"tensorboard --logdir {out / 'tensorboard'}" in capsys.readouterr().out
    (writer,) = fake_tensorboard.instances
    tags = {(tag, step) for tag, _, step in writer.scalars}
    assert {("train/loss", 1), ("train/loss", 2), ("valid/mean_foreground_dice", 2),
            ("valid/dice/stomach", 2)} <= tags
    # Overlays of the validation slices (at their own size), truth | prediction side by side.
    assert 1 <= len(writer.images) <= 4
    for k, (tag, (height, width, channels), step, layout) in enumerate(writer.images):
        assert (tag, width, channels, step, layout) == (f"valid/overlays/{k}", 2 * height, 3, 2, "HWC")
    assert writer.closed
    # --resume may switch it off; the saved configuration records the choice.
    assert main(["--out", str(out), "--resume", "--max-steps", "3", "--tensorboard", "no"]) == 0
    assert len(fake_tensorboard.instances) == 1
    assert json.loads((out / "train_config.json").read_text())["tensorboard"] == "no"
    assert [r["step"] for r in _records(out / "metrics.jsonl") if r["type"] == "step"] == [1, 2, 3]


def test_tensorboard_yes_without_the_package_fails_before_loading_data(tmp_path: Path, no_tensorboard, capsys) -> None:
    missing = tmp_path / "no-such-data"  # never read: the check comes first
    assert main(["--data", str(missing), "--out", str(tmp_path / "run"), "--tensorboard", "yes"]) == 2
    err = capsys.readouterr().err
    assert "pip install tensorboard" in err and "no-such-data" not in err


def test_real_tensorboard_event_files(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = _log(tmp_path, "yes")
    for step, loss in ((1, 0.9), (2, 0.7)):
        log.write({"type": "step", "step": step, "loss": loss})
    log.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, round(e.value, 4)) for e in events.Scalars("train/loss")] == [(1, 0.9), (2, 0.7)]
