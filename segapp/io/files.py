"""The one atomic writer: files that readers and crashes see whole or not at all.

Every tool that writes a result goes through here, so a kill at any moment leaves the old file
or the new one, never a part of one.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO


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
