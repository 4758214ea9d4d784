"""metrics.jsonl and the optional TensorBoard output of training runs (segapp.training.run_log)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from segapp.train import main
from segapp.training import run_log
from segapp.training.run_log import RunLog, RunLogError, scalars


class FakeWriter:
    """Records what torch's SummaryWriter would be asked to write."""

    instances: list[FakeWriter] = []

    def __init__(self, log_dir: str, purge_step: int | None = None) -> None:
        self.log_dir, self.purge_step = log_dir, purge_step
        self.scalars: list[tuple[str, float, int]] = []
        self.closed = False
        FakeWriter.instances.append(self)

    def add_scalar(self, tag: str, value: float, global_step: int) -> None:
        self.scalars.append((tag, value, global_step))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_tensorboard(monkeypatch) -> type[FakeWriter]:
    FakeWriter.instances = []
    monkeypatch.setattr(run_log, "_summary_writer_class", lambda: FakeWriter)
    return FakeWriter


@pytest.fixture
def no_tensorboard(monkeypatch) -> None:
    monkeypatch.setattr(run_log, "_summary_writer_class", lambda: None)


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_scalars_flatten_nested_metrics_and_skip_bookkeeping() -> None:
    record = {"type": "valid", "step": 7, "epoch": 2, "loss": 0.25, "slices": 30,
              "dice": {"stomach": 0.9, "small_bowel": 0.8}, "hd95_mm": {"stomach": float("nan")},
              "note": "text", "flag": True}
    assert scalars(record) == {"valid/loss": 0.25, "valid/slices": 30.0,
                               "valid/dice/stomach": 0.9, "valid/dice/small_bowel": 0.8}
    assert scalars({"type": "step", "step": 1, "loss": 1.5, "lr": 1e-4}) == {"train/loss": 1.5, "train/lr": 1e-4}


def test_records_go_to_jsonl_and_tensorboard(tmp_path: Path, fake_tensorboard) -> None:
    log = RunLog(tmp_path, "auto")
    assert log.tensorboard_dir == tmp_path / "tensorboard"
    log.write({"type": "step", "step": 5, "loss": 0.5})
    log.write({"type": "valid", "step": 5, "dice": {"stomach": 0.75}})
    log.close()
    assert _records(tmp_path / "metrics.jsonl") == [
        {"type": "step", "step": 5, "loss": 0.5}, {"type": "valid", "step": 5, "dice": {"stomach": 0.75}}]
    (writer,) = fake_tensorboard.instances
    assert writer.log_dir == str(tmp_path / "tensorboard") and writer.purge_step is None
    assert writer.scalars == [("train/loss", 0.5, 5), ("valid/dice/stomach", 0.75, 5)]
    assert writer.closed


def test_auto_without_tensorboard_writes_jsonl_only(tmp_path: Path, no_tensorboard) -> None:
    log = RunLog(tmp_path, "auto")
    log.write({"type": "step", "step": 1, "loss": 0.5})
    assert log.tensorboard_dir is None and not (tmp_path / "tensorboard").exists()
    assert len(_records(tmp_path / "metrics.jsonl")) == 1
    with pytest.raises(RunLogError, match="pip install tensorboard"):
        RunLog(tmp_path, "yes")


def test_no_means_no_event_files_even_when_installed(tmp_path: Path, fake_tensorboard) -> None:
    RunLog(tmp_path, "no").write({"type": "step", "step": 1, "loss": 0.5})
    assert fake_tensorboard.instances == []
    with pytest.raises(ValueError):
        RunLog(tmp_path, "maybe")


def test_resume_drops_records_logged_after_the_checkpoint(tmp_path: Path, fake_tensorboard) -> None:
    lines = [{"type": "step", "step": s, "loss": 1.0} for s in (1, 2, 3, 4)] + [{"type": "valid", "step": 4}]
    text = "".join(json.dumps(r) + "\n" for r in lines) + '{"type": "step", "st'  # cut short by a kill
    (tmp_path / "metrics.jsonl").write_text(text)
    RunLog(tmp_path, "auto", resume_step=2).write({"type": "step", "step": 3, "loss": 0.9})
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

    log = RunLog(tmp_path, "yes")
    for step, loss in ((1, 0.9), (2, 0.7)):
        log.write({"type": "step", "step": step, "loss": loss})
    log.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, round(e.value, 4)) for e in events.Scalars("train/loss")] == [(1, 0.9), (2, 0.7)]
