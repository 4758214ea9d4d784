"""The one atomic writer: files and folders that readers and crashes see whole or not at all.

Every tool that writes a result goes through here, so a kill at any moment leaves the old file
or the new one, never a part of one: files through :func:`atomic_file` / :func:`atomic_path`,
folders (a saved model, a prepared data set) through :func:`atomic_folder`.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)


def _temp_sibling(path: Path, suffix: str = ".tmp") -> Path:
    # Same folder, so os.replace is a rename on one file system. Only the name's start is kept:
    # a destination name near the 255-byte limit must still get a temporary name.
    return path.with_name(f".{path.name[:32]}.{uuid.uuid4().hex}{suffix}")


def fsync_folder(folder: str | os.PathLike[str]) -> None:
    """Make renames inside ``folder`` durable (POSIX; folders cannot be opened so on Windows)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that wants a file name (e.g. an
    exporter); when the block ends without error the file there replaces ``path``, otherwise
    it is removed. ``suffix`` keeps the extension some writers insist on."""
    destination = Path(os.fsdecode(path))
    destination.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_sibling(destination, suffix)
    try:
        yield temp
        os.replace(temp, destination)
    finally:
        temp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], mode: str = "wb", *, durable: bool = False,
                encoding: str | None = None, newline: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing (``mode`` "wb" or "w"); when the block
    ends without error it replaces ``path``, otherwise it is removed.

    Args:
        path: Destination; its folder is created if needed.
        mode: "wb" (binary) or "w" (text; ``encoding`` defaults to UTF-8).
        durable: fsync the file and its folder, so the new content survives a power cut
            (costs milliseconds; results shown once and thrown away do not need it).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_file writes new files: mode 'wb' or 'w', got {mode!r}")
    with atomic_path(path) as temp:
        # os.open with 0o666 lets the umask decide permissions, as for any ordinary new file.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        if mode == "w":
            handle: IO = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline=newline)
        else:
            handle = os.fdopen(fd, "wb")
        with handle:
            yield handle
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
    if durable:
        fsync_folder(Path(os.fsdecode(path)).parent)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_file(path, "w") as handle:
        handle.write(text)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, *, durable: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (``durable``: see :func:`atomic_file`)."""
    with atomic_file(path, "wb", durable=durable) as handle:
        handle.write(data)


# ---------------------------------------------------------------------------
# Folders

_TEMP_MARK = ".tmp-"  # a folder being written is ".<name>.tmp-<random>", beside its target


def previous_path(target: str | os.PathLike[str]) -> Path:
    """Where :func:`atomic_folder` keeps the old ``target`` during a swap: ``<target>.previous``."""
    path = Path(os.fsdecode(target))
    return path.with_name(path.name + ".previous")


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike[str], *, durable: bool = True) -> Iterator[Path]:
    """Yield a new, empty folder beside ``target`` to fill; when the block ends without error it
    takes ``target``'s place, otherwise it is removed and ``target`` stays as it was.

    The swap is two renames: ``target`` -> ``<target>.previous``, then the new folder ->
    ``target``; the previous one is removed after. A kill between the two renames leaves only
    ``<target>.previous``, which :func:`recover_interrupted_swap` puts back (every swap calls it
    first; so should a reader that must not miss the folder). The new folder is made by a plain
    mkdir, so its permissions follow the umask like any other new folder's (a server running as
    another user can read it).

    Args:
        target: The folder to create or replace (a file there is replaced too); its parent is
            created if needed.
        durable: fsync every file and folder in the new tree before it becomes visible, and
            the parent after the swap, so the new folder survives a power cut.
    """
    destination = Path(os.fsdecode(target))
    destination.parent.mkdir(parents=True, exist_ok=True)
    recover_interrupted_swap(destination)
    temp = destination.with_name(f".{destination.name}{_TEMP_MARK}{uuid.uuid4().hex[:8]}")
    temp.mkdir()
    try:
        yield temp
        if durable:
            _fsync_tree(temp)
        _swap(temp, destination)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        recover_interrupted_swap(destination)  # the old folder back if it had been moved aside
        raise
    if durable:
        fsync_folder(destination.parent)


def _swap(new: Path, target: Path) -> None:
    previous = previous_path(target)
    if os.path.lexists(previous):  # stale: left beside a complete target by an earlier swap
        _remove(previous)
    if os.path.lexists(target):
        os.replace(target, previous)
    os.replace(new, target)
    # The new folder is in place and complete: an old copy that cannot be removed now is not a
    # failure (the next swap removes it, and readers only use it when the target is missing).
    with contextlib.suppress(OSError):
        _remove(previous)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def recover_interrupted_swap(target: str | os.PathLike[str]) -> bool:
    """Clean up after :func:`atomic_folder` swaps that were killed: remove their unfinished
    temporary folders, and when one stopped between its two renames (only
    ``<target>.previous`` exists), rename that back to ``target``.

    Returns:
        Whether the previous folder was put back.
    """
    destination = Path(os.fsdecode(target))
    for stale in destination.parent.glob(f".{glob.escape(destination.name)}{_TEMP_MARK}*"):
        shutil.rmtree(stale, ignore_errors=True)  # never complete, so never read
    previous = previous_path(destination)
    if os.path.lexists(destination) or not os.path.lexists(previous):
        return False
    try:
        os.replace(previous, destination)
    except FileNotFoundError:  # another process (a DDP rank) put it back first
        return False
    log.warning("restored %s from %s, left by an interrupted save", destination, previous)
    return True


def _fsync_tree(folder: Path) -> None:
    """Flush every file below ``folder``, and the folders' entries, before a rename makes them
    visible: otherwise a power cut just after the rename can publish empty files."""
    for root, _folders, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())
        fsync_folder(root)
