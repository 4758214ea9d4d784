"""Which trackers a run opens: --report-to, --tensorboard, and the W&B defaults (segapp.training.tracking).

None of these tests imports wandb; test_wandb.py runs it offline.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from segapp.train import main
from segapp.training import tracking
from segapp.training.config import config_from_args
from segapp.training.tracking import TrackingError, requested, resolve_trackers


@pytest.mark.parametrize(("report_to", "tensorboard", "required", "optional"), [
    ("auto", "auto", set(), {"tensorboard", "wandb"}),
    ("all", "auto", set(), {"tensorboard", "wandb"}),
    ("none", "auto", set(), set()),
    ("none", "no", set(), set()),
    ("wandb", "auto", {"wandb"}, set()),
    (" WandB , tensorboard ", "auto", {"wandb", "tensorboard"}, set()),
    ("tensorboard", "yes", {"tensorboard"}, set()),
    ("wandb", "no", {"wandb"}, set()),
    ("auto", "yes", {"tensorboard"}, {"wandb"}),  # --tensorboard yes as before: required
    ("auto", "no", set(), {"wandb"}),
    ("all", "no", set(), {"wandb"}),
])
def test_report_to_and_tensorboard_combine(report_to: str, tensorboard: str, required: set, optional: set) -> None:
    assert requested(report_to, tensorboard) == (required, optional)


@pytest.mark.parametrize(("report_to", "tensorboard", "message"), [
    ("none", "yes", "contradicts"),
    ("tensorboard", "no", "contradicts"),
    ("wandb", "yes", "contradicts"),  # --report-to lists exactly the trackers
    ("comet", "auto", "comma list"),
    ("all,wandb", "auto", "comma list"),
    ("", "auto", "comma list"),
    ("auto", "maybe", "--tensorboard must be"),
])
def test_bad_or_contradictory_choices_are_refused(report_to: str, tensorboard: str, message: str) -> None:
    with pytest.raises(TrackingError, match=message):
        requested(report_to, tensorboard)


def test_the_command_line_refuses_a_contradiction_before_anything_else(tmp_path: Path, capsys) -> None:
    assert main(["--data", str(tmp_path / "none"), "--out", str(tmp_path / "run"), "--report-to", "none",
                 "--tensorboard", "yes"]) == 2
    err = capsys.readouterr().err
    assert "--tensorboard yes contradicts --report-to none" in err and "Traceback" not in err
    assert config_from_args(["--report-to", "tensorboard,wandb"]).report_to == "tensorboard,wandb"


@pytest.fixture
def wandb_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """W&B installed (as far as the resolution can tell), TensorBoard not, and no W&B login anywhere."""
    monkeypatch.setattr(tracking, "_wandb_installed", lambda: True)
    monkeypatch.setattr(tracking, "_summary_writer_class", lambda: None)
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine example.org login user password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    return netrc


def test_auto_takes_wandb_only_when_installed_and_configured(wandb_home: Path, monkeypatch) -> None:
    assert resolve_trackers("auto") == ()  # installed, not configured: no login prompt mid-run
    assert resolve_trackers("all") == ("wandb",)  # all: every installed one (the login check then says)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_trackers("auto") == ("wandb",)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_trackers("auto") == ()
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_trackers("auto") == ("wandb",)
    monkeypatch.delenv("WANDB_API_KEY")
    # What `wandb login` writes: a netrc entry for the W&B host.
    wandb_home.write_text("machine api.wandb.ai login user password " + "k" * 40 + "\n")
    assert resolve_trackers("auto") == ("wandb",)
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")  # a private server: its own entry
    assert resolve_trackers("auto") == ()
    assert resolve_trackers("auto", "no") == ()


def test_missing_wandb_package_stops_before_reading_data(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(tracking, "_wandb_installed", lambda: False)
    assert resolve_trackers("all", "no") == ()
    missing = tmp_path / "no-such-data"
    assert main(["--data", str(missing), "--out", str(tmp_path / "run"), "--report-to", "wandb"]) == 2
    err = capsys.readouterr().err
    assert 'pip install "segapp[wandb]"' in err and "no-such-data" not in err
