"""The inputs of a batch prediction: slice files found in files, folders and glob patterns, and
the volume sources among them (:mod:`segapp.inference.batch`)."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from segapp.io.dicom import has_dicom_magic
from segapp.io.image import IMAGE_SUFFIXES
from segapp.io.naming import parse_slice_name, slice_id

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class InputFile:
    """One slice file to segment.

    Attributes:
        path: Where to read it.
        relative: Its name below the output folder (POSIX separators, original extension).
    """

    path: Path
    relative: str

    @property
    def id(self) -> str:
        """Competition id from the path, else the relative path without extension."""
        return slice_id(self.path) or self.relative.rsplit(".", 1)[0]

    def output(self, folder: Path) -> Path:
        """``folder/REL`` with the extension ``.png``."""
        return folder / Path(self.relative).with_suffix(".png")



def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _glob_base(pattern: str) -> Path:
    """The leading folders of a pattern that hold no wildcard."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if _GLOB_CHARS & set(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def collect_inputs(
    inputs: Sequence[str | os.PathLike], *, exclude: str | os.PathLike | None = None
) -> tuple[list[InputFile], list[tuple[str, str]]]:
    """Expand files, folders and glob patterns into the slice files to segment.

    Args:
        inputs: Paths of files or folders, or glob patterns (``**`` searches sub-folders).
        exclude: A folder whose files are never inputs (the output folder, so a second run
            over the same folder does not segment the first run's results).

    Returns:
        (files in input order, folders and patterns sorted by path, without duplicates;
        problems as (input, reason): missing paths, folders or patterns without images,
        two inputs that would write the same output).
    """
    skip = Path(exclude).resolve() if exclude is not None else None
    found: list[InputFile] = []
    problems: list[tuple[str, str]] = []
    for item in inputs:
        text = os.fspath(item)
        path = Path(text)
        if path.is_file():
            candidates = [(path, path.name)]
        elif path.is_dir():
            candidates = [
                (p, p.relative_to(path).as_posix()) for p in sorted(path.rglob("*")) if _is_image(p)
            ]
            if not candidates:
                problems.append((text, f"no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder"))
        elif _GLOB_CHARS & set(text):
            base = _glob_base(text)
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            candidates = [(p, p.relative_to(base).as_posix()) for p in matches if _is_image(p)]
            if not candidates:
                problems.append((text, "no image file matches this pattern"))
        else:
            problems.append((text, "no such file or folder"))
            continue
        for file, relative in candidates:
            if skip is not None and skip in file.resolve().parents:
                continue
            found.append(InputFile(file, relative))
    # One output per file: drop repeats of a file, refuse two files that map to one output.
    unique: list[InputFile] = []
    seen_files: set[Path] = set()
    outputs: dict[str, InputFile] = {}
    for entry in found:
        resolved = entry.path.resolve()
        if resolved in seen_files:
            continue
        seen_files.add(resolved)
        key = Path(entry.relative).with_suffix(".png").as_posix()
        if key in outputs:
            problems.append(
                (
                    str(entry.path),
                    f"its output {key} is already that of {outputs[key].path}; rename one of them",
                )
            )
            continue
        outputs[key] = entry
        unique.append(entry)
    return unique, problems


def is_volume_source(path: Path) -> bool:
    """Whether an input is read as a volume: a NIfTI file, a zip, a DICOM file, or a folder of
    DICOM files. A folder holding slice images stays a folder of slices (a stray DICOM file in
    it is skipped, as any other file that is not an image)."""
    if path.is_file():
        name = path.name.lower()
        return name.endswith((".nii", ".nii.gz", ".zip")) or has_dicom_magic(path)
    if path.is_dir():
        found_dicom = False
        for index, candidate in enumerate(p for p in path.rglob("*") if p.is_file()):
            if _is_image(candidate):
                return False
            found_dicom = found_dicom or has_dicom_magic(candidate)
            if found_dicom and index >= 200:  # enough seen: a DICOM folder, not every header read
                break
        return found_dicom
    return False


def volume_name(path: Path, taken: set[str]) -> str:
    """The output folder name of a volume input: its own file or folder name without the
    format's extension, made unique among this run's volumes (``-2``, ``-3``, ...)."""
    name = path.resolve().name
    for suffix in (".nii.gz", ".nii", ".zip", ".dcm"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).strip("._") or "volume"
    unique, number = name, 1
    while unique in taken:
        number += 1
        unique = f"{name}-{number}"
    taken.add(unique)
    return unique




def case_day(entry: InputFile) -> str | None:
    """``caseN_dayD`` of a slice named in the competition's way, else None."""
    name = parse_slice_name(entry.path)
    if name is None or name.case is None or name.day is None:
        return None
    return f"case{name.case}_day{name.day}"
