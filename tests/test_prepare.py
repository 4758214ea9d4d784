"""python -m segapp.prepare: the command over segapp.io.competition (options, report, exit status)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from segapp.io.competition import format_summary
from segapp.prepare import main
from segapp.synthetic import generate_dataset


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Phantom case-days in the competition's raw layout (train.csv + 16-bit scans)."""
    root = tmp_path_factory.mktemp("raw") / "raw"
    generate_dataset(root, train=40, valid=0, seed=1, raw=True, progress=False)
    return root


def test_cli_reports_counts_and_errors(raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--raw", str(raw), "--out", str(tmp_path / "d"), "--keep-empty", "--no-progress"]) == 0
    report = capsys.readouterr().out
    assert re.search(r"overlapping labels: \d+ pixels", report) and "split by case" in report
    # The report is the written summary's, and names the output folder.
    summary = json.loads((tmp_path / "d" / "prepare_summary.json").read_text())
    assert report == format_summary(summary) + "\n" and summary["dropped_empty"] == 0
    assert main(["--raw", str(tmp_path / "nowhere"), "--out", str(tmp_path / "e"), "--no-progress"]) == 2
    assert "train.csv" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()
    with pytest.raises(SystemExit):  # mutually exclusive
        main(["--raw", "r", "--out", "o", "--keep-empty", "--empty-fraction", "0.3"])


def test_cli_options_are_checked_before_any_work(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--raw", "r", "--out", "o", "--valid-fraction", "1.5"])
    assert exit_info.value.code == 2 and "must lie in 0..1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    for option in ("--raw", "--out", "--valid-fraction", "--seed", "--split", "--keep-empty",
                   "--empty-fraction", "--workers", "--overwrite", "--no-progress"):
        assert option in shown
