"""DICOM series in: folders, zips, uploads, enhanced multi-frame files, single slices (pydicom).

pydicom reads files; the series logic is ours (see ``NOTES-volumes.md``): files are grouped by
SeriesInstanceUID, one orientation is required, slices are sorted by the projection of
ImagePositionPatient on the slice normal (never by InstanceNumber or SliceLocation), and the
slice step comes from those positions, not from SliceThickness.

Policies:
- Non-image objects (RTSTRUCT, SEG, SR, presentation states, encapsulated PDF, DICOMDIR) and
  files that are not DICOM are skipped and counted in the notes.
- Several series: refused with a list of them unless ``series=`` picks one.
- Uneven slice steps (a missing file, a gap): refused, naming the positions around each gap,
  since organ volumes in mL and the NIfTI geometry would be wrong.
- Not MR: accepted with a note (the model was trained on MR).
Patient data (names, ids, birth dates, file names) never appear in a message or description.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np

from segapp.io.files import atomic_file
from segapp.io.naming import parse_slice_name
from segapp.io.volume import (
    MAX_FILES,
    InvalidVolumeError,
    ScanVolume,
    check_axial,
    check_voxels,
    describe,
    plane_name,
    to_display_order,
)

ORIENTATION_TOLERANCE = 1e-3  # direction cosines of one series agree to this
STEP_TOLERANCE = 0.01  # relative: slice steps may differ from the median by 1 %
MAX_ZIP_ENTRIES = 20_000
MAX_ZIP_BYTES = 4 * 2**30  # uncompressed total
MAX_ZIP_RATIO = 200  # uncompressed / compressed, per archive: zip bombs exceed this

# Storage SOP classes that hold no image to segment.
_NON_IMAGE_MODALITIES = {"RTSTRUCT", "SEG", "SR", "PR", "DOC", "KO", "RTPLAN", "RTDOSE", "REG"}
_DECODER_HINT = {
    "1.2.840.10008.1.2.4.57": "JPEG Lossless: pip install pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless: pip install pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.80": "JPEG-LS: pip install pyjpegls",
    "1.2.840.10008.1.2.4.81": "JPEG-LS: pip install pyjpegls",
    "1.2.840.10008.1.2.4.90": "JPEG 2000: pip install pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.91": "JPEG 2000: pip install pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.201": "HTJ2K: pip install pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.202": "HTJ2K: pip install pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "HTJ2K: pip install pylibjpeg pylibjpeg-openjpeg",
}


@dataclass
class _Slice:
    """One 2D frame of a series: where it is and how to get its pixels."""

    path: Path
    frame: int | None  # frame index in a multi-frame file, None for single-frame files
    position: np.ndarray  # ImagePositionPatient, LPS mm
    orientation: np.ndarray  # ImageOrientationPatient (6,)
    spacing: tuple[float, float]  # PixelSpacing (row, column) mm
    rows: int
    columns: int
    header: Any  # the dataset without pixel data


def read_dicom_series(
    source: Path | Sequence[str | os.PathLike[str]],
    *,
    series: str | None = None,
    max_voxels: int,
) -> ScanVolume:
    """Read one DICOM series as a :class:`ScanVolume` (display convention, LPS affine).

    Args:
        source: A folder (recursive), a ``.zip``, one file, or a list of files.
        series: SeriesInstanceUID to pick when several series are present.
        max_voxels: Largest accepted voxel count, checked from the headers.

    Raises:
        InvalidVolumeError: See the module docstring's policies.
    """
    with unpacked(source) as paths:
        by_series, skipped = _found_series(paths, source)
        chosen = _pick_series(by_series, series)
        slices = sorted(chosen, key=lambda s: float(np.dot(s.position, _normal(s.orientation))))
        _check_consistent(slices)
        step = _slice_step(slices)
        check_voxels(len(slices) * slices[0].rows * slices[0].columns, max_voxels)
        stack = _decode(slices)
    return _assemble(slices, stack, step, skipped)


@dataclass(frozen=True)
class SeriesSummary:
    """One image series found in a DICOM source, as a chooser lists it (no patient data).

    Attributes:
        uid: SeriesInstanceUID (what ``read_dicom_series(series=...)`` takes).
        modality: e.g. "MR".
        description: SeriesDescription (at most 64 characters), "" when absent.
        slices: Image frames in the series.
        rows: Rows of its first frame.
        columns: Columns of its first frame.
    """

    uid: str
    modality: str
    description: str
    slices: int
    rows: int
    columns: int


def list_series(source: Path | Sequence[str | os.PathLike[str]]) -> list[SeriesSummary]:
    """The image series of a DICOM source (headers only, no pixel data), in the order found.

    Args:
        source: As for :func:`read_dicom_series`.

    Raises:
        InvalidVolumeError: Nothing usable (the same messages as :func:`read_dicom_series`).
    """
    with unpacked(source) as paths:
        by_series, _ = _found_series(paths, source)
    return [
        SeriesSummary(uid=uid, modality=str(frames[0].header.get("Modality", "?")),
                      description=str(frames[0].header.get("SeriesDescription", "") or "")[:64],
                      slices=len(frames), rows=frames[0].rows, columns=frames[0].columns)
        for uid, frames in by_series.items()
    ]


@dataclass(frozen=True, eq=False)
class DicomSlice:
    """One DICOM image read as a slice (the slice mode), in the display convention.

    Attributes:
        pixels: (H, W) stored values, rescale applied, rows and columns reordered as
            :func:`read_dicom_series` would (see :mod:`segapp.io.volume`) when the header has a
            position and orientation, else as stored.
        spacing_mm: PixelSpacing as (row, column) mm in that order, None without one.
        bits_stored: BitsStored (16 for a 16-bit MR).
        modality: e.g. "MR" ("" when absent).
        notes: Non-fatal remarks (a modality other than MR). Never patient data.
    """

    pixels: np.ndarray
    spacing_mm: tuple[float, float] | None
    bits_stored: int
    modality: str
    notes: tuple[str, ...]


def read_dicom_slice(source: Path | IO[bytes], *, max_pixels: int) -> DicomSlice:
    """Read one single-frame DICOM image as a 2D slice, with the series reader's header checks,
    decoding and geometry.

    Args:
        source: A file path or a binary file object (read from its start).
        max_pixels: Largest accepted rows x columns, checked from the header before decoding.

    Raises:
        InvalidVolumeError: A damaged or incomplete file, a non-image object (SEG, RTSTRUCT,
            ...), a multi-frame file (a volume: the message points to the volume readers), a
            slice that is not axial, too many pixels, undecodable or colour pixel data.
    """
    import pydicom  # here: pydicom (0.4 s to import) stays out of start-up

    try:
        ds = pydicom.dcmread(source)
        ds.SOPClassUID  # noqa: B018 - every DICOM object has one; a file without it is incomplete
    except Exception:  # pydicom raises many types on damaged headers
        raise InvalidVolumeError(
            "The DICOM file is damaged or incomplete (its header lacks required fields or cannot be "
            "parsed): it may have been cut off during copying. Export the image from the scanner or "
            "viewer again."
        ) from None
    reason = _non_image_reason(ds)
    if reason:
        raise InvalidVolumeError(f"The DICOM file is a {reason}, not an image to segment. Send the MR image itself.")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise InvalidVolumeError(
            f"The DICOM file holds {frames} frames: it is a volume, not a single slice. Segment it as a "
            "volume: the app's Volume tab, its /segment_volume API, or python -m segapp.predict."
        )
    rows, columns = int(ds.Rows), int(ds.Columns)
    if rows * columns > max_pixels:
        raise InvalidVolumeError(f"The image has {rows} x {columns} pixels; at most {max_pixels:,} are accepted.")
    values, _ = _pixel_values(ds, ds)
    if values.ndim != 2:
        raise InvalidVolumeError("The DICOM image is not a grayscale image (colour or wrong shape).")
    modality = str(ds.get("Modality", "") or "")
    bits = int(ds.get("BitsStored", 16) or 16)
    try:
        plane = next(_frames_of(Path("slice"), ds))
    except (AttributeError, KeyError, ValueError, TypeError, IndexError):
        plane = None  # no usable position or orientation: the pixels as stored
    if plane is not None:
        check_axial(_normal(plane.orientation))
        volume = _assemble([plane], values[None], _slice_step([plane]), {})
        _, row_mm, col_mm = volume.spacing_mm
        return DicomSlice(pixels=volume.voxels[0], spacing_mm=(row_mm, col_mm), bits_stored=bits,
                          modality=modality, notes=volume.notes)
    try:
        spacing: tuple[float, float] | None = _spacing(ds.PixelSpacing)
    except (AttributeError, KeyError, ValueError, TypeError):
        spacing = None
    notes = () if modality == "MR" else (f"modality {modality or 'unknown'}: the model was trained on MR",)
    return DicomSlice(pixels=values, spacing_mm=spacing, bits_stored=bits, modality=modality, notes=notes)


def _found_series(paths: Sequence[Path], source: Path | Sequence[str | os.PathLike[str]]
                  ) -> tuple[dict[str, list[_Slice]], dict[str, int]]:
    """The image series among ``paths`` (see :func:`_scan_headers`); refuses a source without one."""
    by_series, skipped = _scan_headers(paths)
    if not by_series:
        is_zip = isinstance(source, Path) and source.is_file() and zipfile.is_zipfile(source)
        raise InvalidVolumeError(_nothing_found(skipped, is_zip=is_zip))
    return by_series, skipped


# ---------------------------------------------------------------------------
# Finding the files


@contextlib.contextmanager
def unpacked(source: Path | Sequence[str | os.PathLike[str]]) -> Iterator[list[Path]]:
    """The candidate files of a source (a folder walked, a list of files, one file); a zip is
    unpacked by :func:`_unzip` into a temporary folder that is removed on leaving."""
    if isinstance(source, Path) and source.is_file() and zipfile.is_zipfile(source):
        folder = Path(tempfile.mkdtemp(prefix="segapp-zip-"))
        try:
            _unzip(source, folder)
            yield _walk(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    elif isinstance(source, Path) and source.is_dir():
        yield _walk(source)
    elif isinstance(source, Path):
        yield [source]
    else:
        paths = [Path(p) for p in source]
        if len(paths) > MAX_FILES:
            raise InvalidVolumeError(f"{len(paths):,} files were given; at most {MAX_FILES:,} are read.")
        yield [p for p in paths if p.is_file()]


def _walk(folder: Path) -> list[Path]:
    paths: list[Path] = []
    for root, _dirs, names in os.walk(folder):
        for name in names:
            paths.append(Path(root) / name)
            if len(paths) > MAX_FILES:
                raise InvalidVolumeError(
                    f"The folder holds more than {MAX_FILES:,} files; send one series."
                )
    return sorted(paths)


def zip_member_names(archive: Path) -> list[str]:
    """The names (paths inside the archive) of the files :func:`unpacked` would extract from a
    zip: no folders, no macOS metadata. Reads the zip's directory only.

    Raises:
        InvalidVolumeError: The zip is damaged.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            return [entry.filename for entry in _members(zf)]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise InvalidVolumeError(f"The zip file is damaged ({type(exc).__name__}).") from None


def _members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The file entries worth extracting: folders and macOS metadata (``__MACOSX/``, ``._*``
    resource forks, which look like files of the same names) are left out."""
    return [entry for entry in zf.infolist() if not entry.is_dir()
            and not entry.filename.startswith("__MACOSX/")
            and not PurePosixPath(entry.filename.replace("\\", "/")).name.startswith("._")]


def slice_png_name(entry_name: str) -> str | None:
    """The name a competition-named PNG slice is extracted under, else None.

    The case-folder reader needs the slice's name (slice number, size, spacing, case and day).
    Only a name the competition pattern matches in full is kept (digits, letters, ``_`` and
    ``.``: it cannot leave the folder or carry patient data); case and day from a
    ``caseN_dayD`` folder of the entry are put in front of it, as the prepared layout names it.
    """
    parsed = parse_slice_name(entry_name)
    base = PurePosixPath(entry_name.replace("\\", "/")).name
    if parsed is None or not base.lower().endswith(".png"):
        return None
    own = parse_slice_name(base)
    if parsed.case is None or (own is not None and own.case is not None):
        return base
    return f"case{parsed.case}_day{parsed.day}_{base}"


def _unzip(archive: Path, folder: Path) -> None:
    """Extract a zip safely: bounded entry count, size and compression ratio; no entry may
    leave ``folder`` (absolute paths, ``..``, links).

    Entries get neutral names (``folder/000042``): file names can carry patient data and odd
    characters. Competition-named PNG slices are the exception: each goes into a folder of its
    own under the name :func:`slice_png_name` gives (``folder/000042/case7_day3_slice_...png``).
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            entries = _members(zf)
            if len(entries) > MAX_ZIP_ENTRIES:
                raise InvalidVolumeError(f"The zip holds {len(entries):,} files; at most {MAX_ZIP_ENTRIES:,} are read.")
            total = sum(e.file_size for e in entries)
            packed = max(1, sum(e.compress_size for e in entries))
            if total > MAX_ZIP_BYTES or total / packed > MAX_ZIP_RATIO:
                raise InvalidVolumeError(
                    f"The zip would unpack to {total / 2**20:,.0f} MiB ({total / packed:,.0f} times its "
                    "compressed size): refused as a possible zip bomb. Send the series uncompressed or as a plain zip."
                )
            for index, entry in enumerate(entries):
                parts = PurePosixPath(entry.filename.replace("\\", "/")).parts
                if entry.filename.startswith(("/", "\\")) or ".." in parts or ":" in entry.filename:
                    raise InvalidVolumeError("The zip contains a path leading outside its folder: refused.")
                if (entry.external_attr >> 16) & 0o170000 == 0o120000:
                    continue  # symbolic link: never followed
                target = folder / f"{index:06d}"
                slice_name = slice_png_name(entry.filename)
                if slice_name is not None:
                    target.mkdir()
                    target = target / slice_name
                with zf.open(entry) as src, atomic_file(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, length=1 << 20)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise InvalidVolumeError(f"The zip file is damaged ({type(exc).__name__}).") from None


# ---------------------------------------------------------------------------
# Headers


def _scan_headers(paths: Sequence[Path]) -> tuple[dict[str, list[_Slice]], dict[str, int]]:
    """Read every file's header (no pixel data); group image frames by SeriesInstanceUID.

    Returns:
        (series uid -> frames, counts of skipped files by reason).
    """
    import pydicom  # here: pydicom (0.4 s to import) stays out of start-up
    from pydicom.errors import InvalidDicomError

    by_series: dict[str, list[_Slice]] = {}
    skipped: dict[str, int] = {}
    for path in paths:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=_bare_dataset(path))
            ds.SOPClassUID  # noqa: B018 - a forced read of a non-DICOM file has none
        except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, KeyError, AttributeError):
            unreadable = "damaged or incomplete DICOM file" if has_dicom_magic(path) else "not DICOM"
            skipped[unreadable] = skipped.get(unreadable, 0) + 1
            continue
        reason = _non_image_reason(ds)
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        try:
            frames = list(_frames_of(path, ds))
        except (AttributeError, KeyError, ValueError, TypeError, IndexError):
            skipped["image without a usable position or orientation"] = (
                skipped.get("image without a usable position or orientation", 0) + 1
            )
            continue
        by_series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).extend(frames)
    return by_series, skipped


def is_dicom_head(head: bytes) -> bool:
    """Whether a file's first bytes are the 128-byte preamble and "DICM": a DICOM file, however damaged."""
    return head[128:132] == b"DICM"


def has_dicom_magic(path: Path) -> bool:
    """Whether the file at ``path`` starts as a DICOM file does (:func:`is_dicom_head`)."""
    try:
        with open(path, "rb") as handle:
            return is_dicom_head(handle.read(132))
    except OSError:
        return False


def _bare_dataset(path: Path) -> bool:
    """Whether a file without the 128-byte preamble and "DICM" starts like a DICOM data set
    (older files do): its first tag is in group 0x0008, implicit little endian. Only those are
    read with pydicom's ``force``, which would otherwise parse any file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return not is_dicom_head(head) and head[:2] == b"\x08\x00"


def _non_image_reason(ds: Any) -> str | None:
    if "DirectoryRecordSequence" in ds:
        return "DICOMDIR"
    modality = str(ds.get("Modality", "")).upper()
    if modality in _NON_IMAGE_MODALITIES:
        return f"{modality} object"
    if "Rows" not in ds or "Columns" not in ds:
        return "non-image object"
    return None


def _frames_of(path: Path, ds: Any) -> Iterator[_Slice]:
    """The frames of one file: one for a classic image, NumberOfFrames for an enhanced one."""
    rows, columns = int(ds.Rows), int(ds.Columns)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if "PerFrameFunctionalGroupsSequence" in ds:
        shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
        for index, group in enumerate(ds.PerFrameFunctionalGroupsSequence[:frames]):
            def find(name: str, group: Any = group) -> Any:
                for source in (group, shared):
                    if source is not None and name in source:
                        return source[name].value[0]
                raise KeyError(name)
            yield _Slice(
                path=path, frame=index,
                position=np.array(find("PlanePositionSequence").ImagePositionPatient, dtype=np.float64),
                orientation=np.array(find("PlaneOrientationSequence").ImageOrientationPatient, dtype=np.float64),
                spacing=_spacing(find("PixelMeasuresSequence").PixelSpacing),
                rows=rows, columns=columns, header=ds,
            )
        return
    if frames != 1:
        raise ValueError("multi-frame image without per-frame positions")
    yield _Slice(
        path=path, frame=None,
        position=np.array(ds.ImagePositionPatient, dtype=np.float64),
        orientation=np.array(ds.ImageOrientationPatient, dtype=np.float64),
        spacing=_spacing(ds.PixelSpacing),
        rows=rows, columns=columns, header=ds,
    )


def _spacing(value: Any) -> tuple[float, float]:
    row, column = (float(v) for v in value)
    if not (row > 0 and column > 0):
        raise ValueError("pixel spacing must be positive")
    return row, column


def _normal(orientation: np.ndarray) -> np.ndarray:
    normal = np.cross(orientation[:3], orientation[3:])
    return normal / np.linalg.norm(normal)


def _nothing_found(skipped: dict[str, int], *, is_zip: bool) -> str:
    where = "The ZIP archive holds" if is_zip else "The files hold"
    if not skipped:
        return f"{where} no files. Send a folder or zip of one DICOM series, or a NIfTI file."
    counts = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))
    advice = (" (a zip of PNG slices is read as a volume when every file in it has a competition name: "
              "caseN_dayD_slice_SSSS_W_H_PW_PH.png, or slice_... in a caseN_dayD folder)") if is_zip else ""
    return f"{where} no DICOM image series (skipped: {counts}). Send the image series itself{advice}."


def _series_line(uid_index: int, frames: list[_Slice]) -> str:
    first = frames[0]
    description = str(first.header.get("SeriesDescription", "") or "no description")[:64]
    modality = str(first.header.get("Modality", "?"))
    planes = sorted({plane_name(_normal(f.orientation)) for f in frames})
    plane = planes[0] if len(planes) == 1 else f"mixed planes ({', '.join(planes)})"
    return (f"  {uid_index}. {modality} '{description}': {len(frames)} slices of {first.columns} x {first.rows}, "
            f"{plane}; series UID {first.header.get('SeriesInstanceUID', '?')}")


def _pick_series(by_series: dict[str, list[_Slice]], series: str | None) -> list[_Slice]:
    if series is not None:
        if series not in by_series:
            raise InvalidVolumeError(
                f"Series {series} is not in the files. Present:\n"
                + "\n".join(_series_line(i + 1, f) for i, f in enumerate(by_series.values()))
            )
        return by_series[series]
    if len(by_series) > 1:
        raise InvalidVolumeError(
            f"The files hold {len(by_series)} series; choose one (series=UID, or --series UID):\n"
            + "\n".join(_series_line(i + 1, f) for i, f in enumerate(by_series.values()))
        )
    return next(iter(by_series.values()))


def _check_consistent(slices: Sequence[_Slice]) -> None:
    first = slices[0]
    for s in slices[1:]:
        if (s.rows, s.columns) != (first.rows, first.columns):
            raise InvalidVolumeError(
                f"The series mixes image sizes ({first.columns} x {first.rows} and {s.columns} x {s.rows}): "
                "send one series of equal slices."
            )
        if np.max(np.abs(s.orientation - first.orientation)) > ORIENTATION_TOLERANCE:
            raise InvalidVolumeError(
                "The series mixes slice orientations (e.g. localizers with the axial slices): send the axial series alone."
            )
        if not np.allclose(s.spacing, first.spacing, rtol=1e-3):
            raise InvalidVolumeError("The series mixes pixel spacings: send one series of equal slices.")
    check_axial(_normal(first.orientation))


def _slice_step(slices: Sequence[_Slice]) -> float:
    """The slice step in mm from the positions; refuses duplicates and uneven steps."""
    if len(slices) == 1:
        header = slices[0].header
        for name in ("SpacingBetweenSlices", "SliceThickness"):
            value = header.get(name)
            if value is not None and float(value) > 0:
                return float(value)
        return 1.0
    normal = _normal(slices[0].orientation)
    positions = np.array([float(np.dot(s.position, normal)) for s in slices])
    steps = np.diff(positions)
    if np.any(steps < 1e-3):
        where = float(positions[int(np.argmin(steps))])
        raise InvalidVolumeError(
            f"Two slices share the position {where:.2f} mm: the series holds duplicates "
            "(e.g. two copies of a file, or two acquisitions). Send each slice once."
        )
    step = float(np.median(steps))
    uneven = np.flatnonzero(np.abs(steps - step) > STEP_TOLERANCE * step)
    if uneven.size:
        gaps = ", ".join(f"{positions[i]:.2f} -> {positions[i + 1]:.2f} mm" for i in uneven[:5])
        raise InvalidVolumeError(
            f"The slice positions are unevenly spaced (usual step {step:.2f} mm; {uneven.size} uneven: {gaps}"
            f"{', ...' if uneven.size > 5 else ''}). A slice may be missing: send the complete series."
        )
    return step


# ---------------------------------------------------------------------------
# Pixels


def _decode(slices: Sequence[_Slice]) -> np.ndarray:
    """(Z, rows, columns) stored values, rescale applied, in the sorted order."""
    import pydicom  # here: pydicom (0.4 s to import) stays out of start-up

    cache: dict[Path, np.ndarray] = {}  # a multi-frame file is decoded once
    planes = []
    rescaled = False
    for s in slices:
        if s.path not in cache:
            try:
                ds = pydicom.dcmread(s.path)
            except Exception as exc:  # a file changed or cut since its header was read
                raise InvalidVolumeError(_decode_message(s.header, exc)) from None
            out, scaled = _pixel_values(ds, s.header)
            rescaled = rescaled or scaled
            if s.frame is None and out.ndim != 2 or s.frame is not None and out.ndim not in (2, 3):
                raise InvalidVolumeError("A slice's pixel data is not a grayscale image (colour or wrong shape).")
            cache = {s.path: out}  # keep only the current file: memory stays one file deep
        array = cache[s.path]
        planes.append(array if s.frame is None or array.ndim == 2 else array[s.frame])
    stack = np.stack(planes)
    return stack.astype(np.float32) if rescaled else stack


def _pixel_values(ds: Any, header: Any) -> tuple[np.ndarray, bool]:
    """A dataset's pixel array with rescale slope and intercept applied, and whether they were.

    Raises:
        InvalidVolumeError: The pixel data cannot be decoded (naming the decoder to install).
    """
    from pydicom.pixels import apply_rescale  # here: pydicom (0.4 s to import) stays out of start-up

    try:
        array = ds.pixel_array
        out = apply_rescale(array, ds) if "RescaleSlope" in ds or "RescaleIntercept" in ds else array
    except Exception as exc:  # decoders raise many types (ValueError, RuntimeError, ...)
        raise InvalidVolumeError(_decode_message(header, exc)) from None
    return out, out is not array


def _decode_message(header: Any, exc: Exception) -> str:
    syntax = str(getattr(getattr(header, "file_meta", None), "TransferSyntaxUID", ""))
    hint = _DECODER_HINT.get(syntax)
    if hint and ("decod" in str(exc).lower() or "plugin" in str(exc).lower() or "handler" in str(exc).lower()):
        return f"A slice is compressed in a format this installation cannot decode ({hint})."
    return f"A slice's pixel data cannot be read ({type(exc).__name__}): the file may be truncated or damaged."


def _assemble(slices: Sequence[_Slice], stack: np.ndarray, step: float, skipped: dict[str, int]) -> ScanVolume:
    """Build the volume in display order from the sorted stack and its geometry."""
    first = slices[0]
    row_cos, col_cos = first.orientation[:3], first.orientation[3:]
    normal = _normal(first.orientation)
    # Source voxel order (k, i, j) = (sorted slice, row, column); LPS affine per the notes.
    affine = np.eye(4)
    affine[:3, 0] = normal * step
    affine[:3, 1] = col_cos * first.spacing[0]
    affine[:3, 2] = row_cos * first.spacing[1]
    affine[:3, 3] = first.position
    voxels, display_affine, back = to_display_order(stack, affine)
    spacing = tuple(float(np.linalg.norm(display_affine[:3, a])) for a in range(3))
    headers = tuple(s.header for s in slices)  # source order: slice k of to_source_order()
    notes = []
    modality = str(first.header.get("Modality", ""))
    if modality != "MR":
        notes.append(f"modality {modality or 'unknown'}: the model was trained on MR")
    if skipped:
        notes.append("skipped: " + ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items())))
    return ScanVolume(
        voxels=voxels,
        spacing_mm=(spacing[0], spacing[1], spacing[2]),
        affine_lps=display_affine,
        kind="dicom",
        source_orientation=back,
        source_shape=tuple(int(s) for s in stack.shape),
        headers=headers,
        description=describe(
            voxels.shape, spacing, format="DICOM", modality=modality or None,
            series_description=str(first.header.get("SeriesDescription", "") or "")[:64] or None,
            multi_frame=first.frame is not None,
        ),
        notes=tuple(notes),
    )
