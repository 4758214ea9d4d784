"""Weights & Biases tracking, offline (WANDB_MODE=offline): the run files a training run writes, the
resume into the same run, and the messages for a missing or wrong login. Never reaches the network:
WANDB_BASE_URL points at a closed loopback port. Skipped when wandb is not installed."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import free_port, torchrun_two_cpu

from segapp.train import main

wandb = pytest.importorskip("wandb")
# A well-formed key would be verified with the server; wandb's retries against an unreachable one
# hung a test run here once (minutes), so no test sends one, and none may block CI for long.
pytestmark = pytest.mark.timeout(300)
from wandb.proto import wandb_internal_pb2  # noqa: E402  (after the skip: only with wandb)

TINY_ARGS = ["--image-size", "64", "--batch-size", "2", "--grad-accum", "1", "--no-progress", "--log-every", "1",
             "--no-hausdorff", "--scheduler", "constant", "--tensorboard", "no"]


@pytest.fixture
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """wandb's own folders in tmp_path, no credentials, a W&B server URL nothing answers on; a fresh
    wandb process state before and after (it keeps its settings, WANDB_MODE included, per process)."""
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_DIR", "WANDB_PROJECT",
                 "WANDB_ENTITY", "WANDB_RUN_ID", "WANDB_RESUME"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "wandb-home"
    for name, sub in (("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data")):
        (home / sub).mkdir(parents=True)
        monkeypatch.setenv(name, str(home / sub))
    netrc = home / "netrc"  # a netrc without a W&B entry, in place of the user's
    netrc.write_text("machine example.org login user password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("WANDB_HTTP_TIMEOUT", "1")
    monkeypatch.setenv("WANDB_SILENT", "true")
    wandb.teardown()
    yield home
    wandb.teardown()


def records(path: Path) -> Iterator[Any]:
    """The protobuf records of an offline run file (``run-ID.wandb``): wandb's LevelDB-style log of
    32 KiB blocks, each record split into chunks (7-byte header: crc32, length, type) that never
    cross a block; types 1 (full) and 4 (last) end a record."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or (length == 0 and kind == 0):  # block trailer / padding
            pos += left
            continue
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def read_run(run_file: Path) -> dict[str, Any]:
    """The run, config, history rows, artifacts and exit code of an offline run file."""
    run: dict[str, Any] = {"history": [], "artifacts": [], "config": {}}
    for record in records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run["id"], run["project"] = record.run.run_id, record.run.project
            run["config"].update({item.key: json.loads(item.value_json) for item in record.run.config.update})
        elif kind == "history":
            run["history"].append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                                   for item in record.history.item})
        elif kind == "artifact":
            run["artifacts"].append((record.artifact.name, record.artifact.type, record.artifact.aliases,
                                     sorted(entry.path for entry in record.artifact.manifest.contents)))
        elif kind == "exit":
            run["exit_code"] = record.exit.exit_code
    return run


def _only(pattern: str, folder: Path) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, (pattern, found)
    return found[0]


def test_offline_run_files_and_resume(phantom_data: Path, tiny_model_dir: Path, tmp_path: Path, wandb_env: Path,
                                      monkeypatch, capsys) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_PROJECT", "UWM_Medical_Segmentation")  # the notebook's project, as wandb reads it
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    out = tmp_path / "run"
    assert main(["--data", str(phantom_data), "--out", str(out), "--base", str(tiny_model_dir), *TINY_ARGS,
                 "--report-to", "wandb", "--max-steps", "4"]) == 0
    wandb.teardown()  # wandb's service process writes the run file: wait for it to finish
    run_id = json.loads((out / "wandb_run.json").read_text())["id"]
    folder = _only(f"wandb/offline-run-*-{run_id}", tmp_path / "wandb-dir")  # under WANDB_DIR
    run = read_run(folder / f"run-{run_id}.wandb")
    assert run["project"] == "UWM_Medical_Segmentation" and run["exit_code"] == 0
    assert run["config"]["batch_size"] == 2 and run["config"]["report_to"] == "wandb"  # the TrainConfig
    train_rows = [row for row in run["history"] if "train/loss" in row]
    assert [row["step"] for row in train_rows] == [1, 2, 3, 4]
    assert all(row["train/lr"] > 0 and row["train/loss"] > 0 for row in train_rows)
    (valid,) = [row for row in run["history"] if "valid/mean_foreground_dice" in row]
    assert valid["step"] == 4 and valid["valid/loss"] > 0
    for organ in ("stomach", "small_bowel", "large_bowel"):
        assert 0 <= valid[f"valid/dice/{organ}"] <= 1 and 0 <= valid[f"valid/pooled_dice/{organ}"] <= 1
    (images,) = [row for row in run["history"] if "valid/overlays/filenames" in row]
    assert images["step"] == 4 and images["valid/overlays/count"] >= 1
    assert all((folder / "files" / name).is_file() for name in images["valid/overlays/filenames"])
    assert all(caption.startswith("validation slice ") for caption in images["valid/overlays/captions"])
    ((name, kind, aliases, files),) = run["artifacts"]  # best/ at the end
    assert (name, kind) == (f"model-{run_id}", "model") and "best" in aliases
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= set(files)

    # --resume continues the same W&B run (without WANDB_DIR: its files go to RUN_DIR/wandb/).
    monkeypatch.delenv("WANDB_DIR")
    monkeypatch.delenv("WANDB_PROJECT")
    assert main(["--out", str(out), "--resume", "--max-steps", "6"]) == 0
    wandb.teardown()
    assert json.loads((out / "wandb_run.json").read_text())["id"] == run_id
    resumed = read_run(_only(f"offline-run-*-{run_id}/run-{run_id}.wandb", out / "wandb"))
    assert resumed["id"] == run_id and resumed["project"] == "UWM_Medical_Segmentation"
    assert [row["step"] for row in resumed["history"] if "train/loss" in row] == [5, 6]
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(("api_key", "message"), [
    (None, "no W&B login was found"),  # no key, a netrc without W&B, no settings: not a prompt
    ("short", "API key must have 40+ characters"),  # a wrong key, refused before any request
])
def test_a_missing_or_wrong_login_stops_before_training(tmp_path: Path, wandb_env: Path, monkeypatch, capsys,
                                                        api_key: str | None, message: str) -> None:
    if api_key is not None:
        monkeypatch.setenv("WANDB_API_KEY", api_key)
    missing = tmp_path / "no-such-data"  # never read: the check comes first
    assert main(["--data", str(missing), "--out", str(tmp_path / "run"), "--report-to", "wandb"]) == 2
    err = capsys.readouterr().err
    assert message in err and "WANDB_MODE=offline" in err and "Training did not start" in err
    assert "Traceback" not in err and "no-such-data" not in err
    assert not (tmp_path / "run").exists()


def test_only_rank_0_logs_under_torchrun(phantom_data: Path, tiny_model_dir: Path, tmp_path: Path, wandb_env: Path,
                                         monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")  # torchrun's processes inherit the environment
    out = tmp_path / "ddp"
    result = torchrun_two_cpu("-m", "segapp.train", "--data", str(phantom_data), "--out", str(out), "--base",
                              str(tiny_model_dir), "--device", "cpu", "--max-steps", "2", *TINY_ARGS)
    assert result.returncode == 0, result.stderr[-3000:]
    run_id = json.loads((out / "wandb_run.json").read_text())["id"]  # auto: offline counts as configured
    run = read_run(_only("offline-run-*/run-*.wandb", out / "wandb"))  # one run, not one per process
    assert run["id"] == run_id and [row["step"] for row in run["history"] if "train/loss" in row] == [1, 2]
