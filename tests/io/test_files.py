"""The one atomic writer: files and folder swaps (segapp.io.files)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import segapp.io.files as files
from segapp.io.files import (
    atomic_file,
    atomic_folder,
    previous_path,
    recover_interrupted_swap,
    write_bytes_atomic,
    write_text_atomic,
)


def _folder(path: Path, content: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    for name, text in content.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    return path


def _read(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------- files


def test_atomic_file_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "summary.json"
    write_text_atomic(path, "old")
    write_bytes_atomic(path, b"new", durable=True)
    assert path.read_bytes() == b"new"
    assert os.listdir(path.parent) == ["summary.json"]


def test_a_failing_file_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "result.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="writer failed"), atomic_file(path, "w") as handle:
        handle.write("half")
        raise RuntimeError("writer failed")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["result.txt"]


# ---------------------------------------------------------------------------- folders


def test_atomic_folder_swaps_the_new_folder_in_whole(tmp_path: Path) -> None:
    target = _folder(tmp_path / "best", {"model.safetensors": "old", "stale.txt": "x"})
    with atomic_folder(target) as temp:
        assert temp.parent == tmp_path and temp.name.startswith(".best.tmp-")
        assert not any(temp.iterdir())  # a fresh, empty folder
        (temp / "model.safetensors").write_text("new")
        (temp / "train" / "images").mkdir(parents=True)
        (temp / "train" / "images" / "a.png").write_text("png")
        assert _read(target) == {"model.safetensors": "old", "stale.txt": "x"}  # not visible yet
    assert _read(target) == {"model.safetensors": "new", "train/images/a.png": "png"}
    assert os.listdir(tmp_path) == ["best"]


def test_atomic_folder_creates_a_missing_target_and_its_parents(tmp_path: Path) -> None:
    target = tmp_path / "runs" / "one" / "data"
    with atomic_folder(target, durable=False) as temp:
        (temp / "prepare_summary.json").write_text("{}")
    assert _read(target) == {"prepare_summary.json": "{}"}
    assert os.listdir(target.parent) == ["data"]


def test_the_new_folder_has_the_permissions_of_a_normal_mkdir(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        with atomic_folder(tmp_path / "shared") as temp:
            (temp / "sub").mkdir()
            (temp / "sub" / "file").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "shared").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "shared" / "sub").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "shared" / "sub" / "file").stat().st_mode & 0o777 == 0o640


def test_a_failure_mid_write_keeps_the_old_folder(tmp_path: Path) -> None:
    target = _folder(tmp_path / "data", {"keep.txt": "mine"})
    with pytest.raises(KeyboardInterrupt), atomic_folder(target) as temp:
        (temp / "half.png").write_text("half")
        raise KeyboardInterrupt  # an interrupt too, not only errors
    assert _read(target) == {"keep.txt": "mine"}
    assert os.listdir(tmp_path) == ["data"]


def test_a_failure_without_an_old_folder_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="disk full"), atomic_folder(tmp_path / "data") as temp:
        (temp / "a").write_text("a")
        raise OSError(errno.ENOSPC, "disk full")
    assert os.listdir(tmp_path) == []


def test_a_failing_flush_keeps_the_old_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = _folder(tmp_path / "best", {"w": "old"})
    flushed: list[Path] = []

    def full(folder: Path) -> None:
        flushed.append(folder)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files, "_fsync_tree", full)
    with pytest.raises(OSError, match="No space left"), atomic_folder(target) as temp:
        (temp / "w").write_text("new")
    assert flushed and flushed[0].name.startswith(".best.tmp-")
    assert _read(target) == {"w": "old"} and os.listdir(tmp_path) == ["best"]
    # Not durable: no flush at all, so the same swap succeeds.
    with atomic_folder(target, durable=False) as temp:
        (temp / "w").write_text("new")
    assert _read(target) == {"w": "new"} and len(flushed) == 1


def test_a_crash_between_the_two_renames_puts_the_old_folder_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = _folder(tmp_path / "best", {"w": "old"})
    real_replace = os.replace
    calls: list[str] = []

    def crash_on_second(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append(os.fspath(dst))
        if len(calls) == 2:  # best -> best.previous done, new -> best fails
            raise OSError(errno.EIO, "simulated crash")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_second)
    with pytest.raises(OSError, match="simulated crash"), atomic_folder(target) as temp:
        (temp / "w").write_text("new")
    monkeypatch.undo()
    assert calls[0] == str(previous_path(target))
    assert _read(target) == {"w": "old"} and os.listdir(tmp_path) == ["best"]


def test_an_interrupted_swap_is_recovered(tmp_path: Path) -> None:
    # What a SIGKILL between the two renames leaves: only best.previous and the new temp folder.
    _folder(tmp_path / "best.previous", {"w": "old"})
    _folder(tmp_path / ".best.tmp-killed", {"w": "half"})
    target = tmp_path / "best"
    assert recover_interrupted_swap(target) is True
    assert _read(target) == {"w": "old"} and os.listdir(tmp_path) == ["best"]
    assert recover_interrupted_swap(target) is False  # nothing more to do
    assert _read(target) == {"w": "old"}


def test_the_next_swap_recovers_an_interrupted_one_first(tmp_path: Path) -> None:
    _folder(tmp_path / "best.previous", {"w": "old"})
    with atomic_folder(tmp_path / "best") as temp:
        assert _read(tmp_path / "best") == {"w": "old"}  # put back before the new one is written
        (temp / "w").write_text("new")
    assert _read(tmp_path / "best") == {"w": "new"} and os.listdir(tmp_path) == ["best"]


def test_temp_folders_of_killed_runs_are_removed(tmp_path: Path) -> None:
    target = _folder(tmp_path / "data", {"w": "complete"})
    _folder(tmp_path / ".data.tmp-1a2b3c4d", {"train/images/a.png": "half"})
    _folder(tmp_path / ".data.tmp-deadbeef", {})
    others = [_folder(tmp_path / name, {"x": "theirs"}) for name in (".data2.tmp-1", ".other.tmp-1")]
    assert recover_interrupted_swap(target) is False  # the target is complete: nothing put back
    assert sorted(os.listdir(tmp_path)) == sorted(["data", ".data2.tmp-1", ".other.tmp-1"])
    assert _read(target) == {"w": "complete"}
    assert all(_read(folder) == {"x": "theirs"} for folder in others)  # other targets' are theirs


def test_a_stale_previous_beside_a_complete_target_is_replaced(tmp_path: Path) -> None:
    # A swap whose last step (removing best.previous) did not happen: best is the newest.
    target = _folder(tmp_path / "best", {"w": "newest"})
    _folder(tmp_path / "best.previous", {"w": "older"})
    assert recover_interrupted_swap(target) is False
    assert _read(target) == {"w": "newest"}
    with atomic_folder(target) as temp:
        (temp / "w").write_text("next")
    assert _read(target) == {"w": "next"} and os.listdir(tmp_path) == ["best"]


def test_a_file_at_the_target_is_replaced_by_the_folder(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file")
    with atomic_folder(tmp_path / "out") as temp:
        (temp / "w").write_text("new")
    assert _read(tmp_path / "out") == {"w": "new"} and os.listdir(tmp_path) == ["out"]
