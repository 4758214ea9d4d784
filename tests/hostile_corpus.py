"""A corpus of hostile, broken and odd files, each with what reading it must give.

Used by ``tests/test_reliability.py`` and ``scripts/load_test.py``: every file goes through
:func:`segapp.read_image`, the app's ``/segment`` API and ``segapp.predict``, which must
return the :attr:`HostileFile.expected` pixels or refuse with a message matching
:attr:`HostileFile.error`, and nothing else.

The files are made in memory from one synthetic slice (no phantom, no model, numpy and
pillow only; equal seeds give equal bytes). Expected pixels are computed here
independently of :mod:`segapp.io.image`: per-image min-max to 0..255 for wider-than-8-bit
data, PIL's integer ITU-R 601-2 luma for colour, the stored values for 8-bit gray.

Usage::

    from hostile_corpus import hostile_corpus, write_corpus
    for item in hostile_corpus(max_pixels=4096 * 4096):
        ...
    paths = write_corpus(tmp_path)   # key -> file on disk
"""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 96, 80  # (H, W) of the base slice: not square, so a transposition shows
NAME_MAX_BYTES = 255  # longest file name most file systems store
# The name of the base slice, competition style (width first, spacing 1.5 mm).
SLICE_NAME = f"case7_day3_slice_0042_{WIDTH}_{HEIGHT}_1.50_1.50.png"


@dataclass(frozen=True, eq=False)
class HostileFile:
    """One corpus file and the outcome reading it must have.

    Attributes:
        key: Short unique identifier, safe as a file name stem.
        filename: The name the file travels under (upload, ``read_image(name=...)``); may hold
            path separators, unicode or be longer than a file system allows.
        data: The file's bytes.
        expected: (H, W) uint8 pixels a correct reader returns, or None when the file must be
            refused.
        error: Regex (case-insensitive) the refusal's message must match; None for valid files.
        tolerance: Largest mean absolute difference to ``expected`` allowed (lossy formats).
        note: Regex one of the reader's notes must match, or None.
        description: What the file is, for reports.
        predict_error: Regex for ``python -m segapp.predict``'s refusal where it differs: predict
            reads DICOM, zip and NIfTI files as volumes (the slice reader reads one DICOM image
            and refuses zips and NIfTI files as slices).
    """

    key: str
    filename: str
    data: bytes
    expected: np.ndarray | None
    error: str | None
    tolerance: float = 0.0
    note: str | None = None
    description: str = ""
    predict_error: str | None = None

    @property
    def valid(self) -> bool:
        """Whether a correct reader returns pixels (else it must refuse the file)."""
        return self.expected is not None

    @property
    def disk_name(self) -> str:
        """A name to store the file under: ``filename`` when it is a plain name that fits,
        else its last component cut to fit (unicode kept), else ``key`` with its suffix."""
        name = self.filename.replace("\\", "/").rsplit("/", 1)[-1]
        suffix = Path(name).suffix
        if name in ("", ".", "..") or not suffix:
            return f"{self.key}{suffix or '.bin'}"
        while len(name.encode("utf-8")) > NAME_MAX_BYTES - 16:  # room for temp-file prefixes
            name = name[: len(name) - len(suffix) - 1] + suffix
        return name


# ---------------------------------------------------------------------------- pixel helpers


def base_slice(seed: int = 0) -> np.ndarray:
    """The synthetic slice every valid file shows: (HEIGHT, WIDTH) uint16, about 100..3300.

    A body ellipse with three bright "organs", a gradient and noise: no constant region
    large enough to look blank, every 8-bit level well apart from the next.
    """
    rng = np.random.default_rng([seed, 0xBAD])
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    image = 100.0 + 4.0 * x + 2.0 * y
    body = ((y - HEIGHT / 2) / (HEIGHT * 0.42)) ** 2 + ((x - WIDTH / 2) / (WIDTH * 0.45)) ** 2 < 1
    image[body] += 900
    for cy, cx, r, level in ((30, 28, 10, 1600), (58, 50, 12, 1100), (70, 25, 8, 2000)):
        image[(y - cy) ** 2 + (x - cx) ** 2 < r * r] += level
    image += rng.normal(0, 40, image.shape)
    return np.clip(np.rint(image), 0, 65535).astype(np.uint16)


def minmax_uint8(values: np.ndarray) -> np.ndarray:
    """Per-image ``round((x - min) / (max - min) * 255)`` as uint8 (the notebook's scaling)."""
    data = np.asarray(values, dtype=np.float64)
    low, high = float(data.min()), float(data.max())
    return np.rint((data - low) / (high - low) * 255.0).astype(np.uint8)


def luma(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) uint8, ITU-R 601-2 in PIL's fixed-point form."""
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def _encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_gray8(height: int, width: int, rows: np.ndarray | None = None) -> bytes:
    """A valid 8-bit gray PNG of any size, written row by row (no full image in memory).

    ``rows``: one (width,) uint8 row repeated, or None for a gradient row.
    """
    row = rows if rows is not None else (np.arange(width) % 251).astype(np.uint8)
    line = b"\x00" + row.tobytes()  # filter type 0 (none)
    compressor = zlib.compressobj(1)
    chunks = []
    block = line * 64
    for _ in range(height // 64):
        chunks.append(compressor.compress(block))
    chunks.append(compressor.compress(line * (height % 64)))
    chunks.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", b"".join(chunks))
        + _png_chunk(b"IEND", b"")
    )


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` followed by a few bytes of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _jpeg_claiming(width: int, height: int, real: bytes) -> bytes:
    """A real JPEG whose start-of-frame header is patched to claim another size."""
    data = bytearray(real)
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at != -1:
            data[at + 5 : at + 9] = struct.pack(">HH", height, width)
            return bytes(data)
    raise ValueError("no SOF marker")  # pragma: no cover - PIL always writes one


def _tiff(arrays: list[np.ndarray]) -> bytes:
    images = [Image.fromarray(a) for a in arrays]
    return _encode(images[0], "TIFF", save_all=len(images) > 1, append_images=images[1:])


def _dicom_like(pixels: np.ndarray) -> bytes:
    """128-byte preamble, ``DICM``, a few explicit-VR tags and 16-bit pixel data."""

    def tag(group: int, element: int, vr: bytes, value: bytes) -> bytes:
        if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT"):
            return (
                struct.pack("<HH", group, element) + vr + b"\x00\x00" + struct.pack("<I", len(value)) + value
            )
        return struct.pack("<HH", group, element) + vr + struct.pack("<H", len(value)) + value

    height, width = pixels.shape
    body = (
        tag(0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1\x00")
        + tag(0x0008, 0x0060, b"CS", b"MR")
        + tag(0x0010, 0x0010, b"PN", b"DOE^JANE")
        + tag(0x0028, 0x0010, b"US", struct.pack("<H", height))
        + tag(0x0028, 0x0011, b"US", struct.pack("<H", width))
        + tag(0x0028, 0x0100, b"US", struct.pack("<H", 16))
        + tag(0x7FE0, 0x0010, b"OW", pixels.astype("<u2").tobytes())
    )
    return b"\x00" * 128 + b"DICM" + body


def _exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def _hostile_name(suffix: str) -> str:
    """300 characters: path separators of both kinds, a drive letter, unicode, control-free."""
    head = "../../etc/..\\..\\C:\\Windows\\"
    stem = "Bauch-MRT Ü 日本語 ✓ "
    name = head + (stem * 40)
    return name[: 300 - len(suffix)] + suffix


def _unicode_long_name(suffix: str) -> str:
    """300 characters of mixed scripts (accents, CJK, an emoji), about 500 bytes in UTF-8."""
    filler = "Ωmega-ÿ-漢字-😀-" * 40
    return filler[: 300 - len(suffix)] + suffix


# ---------------------------------------------------------------------------- the corpus


@lru_cache(maxsize=4)
def _over_limit_png(max_pixels: int) -> tuple[bytes, int, int]:
    width = math.isqrt(max_pixels) + 1
    height = max_pixels // width + 1  # height x width > max_pixels >= (height - 1) x width
    return _png_gray8(height, width), width, height


def hostile_corpus(*, seed: int = 0, max_pixels: int = 50_000_000) -> list[HostileFile]:
    """Every corpus file with its expected outcome (at least 30; currently 48).

    Args:
        seed: Decides the base slice and the random bytes.
        max_pixels: The reader's size limit; one file is a valid image just over it.

    Returns:
        The files; keys are unique.
    """
    rng = np.random.default_rng([seed, 0xC0FFEE])
    raw = base_slice(seed)  # (H, W) uint16
    gray = minmax_uint8(raw)  # what a correct reader gives for raw
    files: list[HostileFile] = []

    def ok(key, filename, data, expected, *, tolerance=0.0, note=None, description=""):
        files.append(HostileFile(key, filename, data, expected, None, tolerance, note, description))

    def bad(key, filename, data, error, description="", predict_error=None):
        files.append(HostileFile(key, filename, data, None, error, 0.0, None, description, predict_error))

    png8 = _encode(Image.fromarray(gray), "PNG")
    jpeg = _encode(Image.fromarray(gray), "JPEG", quality=95)

    # Ordinary slices, the control group
    ok("png8", SLICE_NAME, png8, gray, description="8-bit gray PNG, competition name")
    ok("png16", "slice16.png", _encode(Image.fromarray(raw), "PNG"), gray, description="16-bit gray PNG")

    # Not images at all, or not images of ours
    bad("zero_bytes", "scan.png", b"", r"empty \(0 bytes\)", "zero bytes")
    bad("text", "notes.png", b"Patient list\nline two\n" * 20, r"not an image.*text", "text renamed .png")
    html = b"<!DOCTYPE html><html><head><title>Login</title></head><body>Session expired</body></html>"
    bad("html", "download.png", html, r"not an image.*HTML", "HTML page renamed .png")
    bad(
        "svg",
        "drawing.png",
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>',
        r"SVG",
        "SVG renamed .png",
    )
    bad("pdf", "report.png", b"%PDF-1.7\n1 0 obj << >> endobj\n%%EOF\n", r"PDF", "PDF renamed .png")
    # The slice reader reads DICOM files; this one has no SOP Class and no pixel description.
    bad("dicom_like", "IM_0001.dcm", _dicom_like(raw), r"DICOM file is damaged or incomplete", "damaged DICOM file",
        predict_error=r"no DICOM image series \(skipped: 1 damaged or incomplete DICOM file\)")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("scan.png", png8)  # a competition name would make it a one-slice volume
    bad("zip", "slices.zip", zipped.getvalue(), r"ZIP archive", "zip holding a PNG",
        predict_error=r"ZIP archive holds no DICOM image series.*competition name")
    bad("zip_as_png", "zipped.png", zipped.getvalue(), r"ZIP archive", "zip renamed .png")
    bad(
        "gzip_nifti",
        "volume.nii.gz",
        gzip.compress(b"\x5c\x01\x00\x00" + b"\x00" * 344, mtime=0),
        r"gzip",
        "gzip-compressed NIfTI-like volume",
        predict_error=r"not a readable NIfTI image",
    )
    npy = io.BytesIO()
    np.save(npy, raw)
    bad("npy", "array.npy", npy.getvalue(), r"NumPy", "numpy .npy array")
    bad("nul_bytes", "zeros.png", b"\x00" * 4096, r"format is not recognised", "4 KiB of zero bytes")
    bad(
        "random_bytes",
        "random.bin",
        rng.integers(1, 256, 4096, dtype=np.uint8).tobytes(),
        r"not an image",
        "4 KiB of random bytes",
    )

    # Damaged image files
    bad(
        "truncated_png",
        "cut-png.png",
        png8[: len(png8) // 2],
        r"PNG file is damaged or incomplete",
        "PNG cut in half",
    )
    bad("png_signature_only", "sig.png", png8[:8], r"PNG file is damaged", "PNG signature only")
    corrupt = bytearray(png8)
    idat = corrupt.find(b"IDAT") + 4
    corrupt[idat + 2 : idat + 40] = bytes(38)  # zeroed compressed data: zlib cannot inflate it
    bad("corrupt_png_data", "bits.png", bytes(corrupt), r"PNG file is damaged", "PNG with zeroed IDAT bytes")
    bad("truncated_jpeg", "cut-jpeg.jpg", jpeg[: len(jpeg) // 2], r"JPEG file is damaged", "JPEG cut in half")
    tiff16 = _tiff([raw])
    bad(
        "truncated_tiff",
        "cut-tiff.tif",
        tiff16[: len(tiff16) // 3],
        r"TIFF file is damaged",
        "TIFF cut to a third",
    )
    bad("zero_size_png", "none.png", _png_header_only(0, 10), r"declares no pixels", "PNG header 0 x 10")

    # Sizes
    bad(
        "bomb_png",
        "bomb.png",
        _png_header_only(100_000, 100_000),
        r"too large",
        "PNG header claiming 100,000 x 100,000 (decompression bomb)",
    )
    bad(
        "bomb_jpeg",
        "bomb-jpeg.jpg",
        _jpeg_claiming(65_000, 65_000, jpeg),
        r"too large",
        "JPEG header claiming 65,000 x 65,000",
    )
    huge, huge_w, huge_h = _over_limit_png(max_pixels)
    bad(
        "over_limit",
        "huge.png",
        huge,
        r"too large",
        f"valid {huge_w} x {huge_h} PNG, just over {max_pixels:,} pixels",
    )
    bad(
        "one_pixel",
        "dot.png",
        _encode(Image.fromarray(np.array([[7]], np.uint8)), "PNG"),
        r"too small",
        "1 x 1",
    )
    strip = (np.arange(2 * 2000) % 256).astype(np.uint8).reshape(2, 2000)
    bad("strip_2x2000", "strip.png", _encode(Image.fromarray(strip), "PNG"), r"too small", "2 x 2000 strip")

    # Bit depths and sample types
    ok("tiff_uint16", "slice16-tiff.tif", tiff16, gray, description="16-bit TIFF")
    big_endian = _encode(Image.fromarray(raw.astype(">u2")), "TIFF")
    ok("tiff_uint16_be", "slice16be.tif", big_endian, gray, description="16-bit big-endian TIFF")
    signed = raw.astype(np.int32) * 40_000 - 70_000_000  # beyond 16 bits, negative too
    ok(
        "tiff_int32",
        "slice32.tif",
        _tiff([signed]),
        minmax_uint8(signed),
        description="32-bit signed integer TIFF",
    )
    floats = raw.astype(np.float32) / 1000 - 1.5
    ok("tiff_float32", "float.tif", _tiff([floats]), minmax_uint8(floats), description="32-bit float TIFF")
    with_nan = floats.copy()
    with_nan[10:12, 20:23] = np.nan
    bad(
        "tiff_float_nan",
        "nan.tif",
        _tiff([with_nan]),
        r"not numbers \(NaN or infinite\)",
        "float TIFF with NaN",
    )
    with_inf = floats.copy()
    with_inf[40, 40], with_inf[41, 41] = np.inf, -np.inf
    bad(
        "tiff_float_inf",
        "inf.tif",
        _tiff([with_inf]),
        r"not numbers \(NaN or infinite\)",
        "float TIFF with +-inf",
    )
    binary = gray > 128
    ok(
        "one_bit_png",
        "bilevel.png",
        _encode(Image.fromarray(binary), "PNG"),
        binary.astype(np.uint8) * 255,
        description="1-bit PNG",
    )

    # Colour models and channels
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    rgba[:8, :8, 3] = 0  # a transparent corner
    ok(
        "rgba_png",
        "rgba.png",
        _encode(Image.fromarray(rgba, "RGBA"), "PNG"),
        gray,
        note=r"transparency ignored",
        description="RGBA PNG, gray colour, transparent corner",
    )
    la = np.dstack([gray, np.full_like(gray, 255)])
    ok(
        "la_png",
        "la.png",
        _encode(Image.fromarray(la, "LA"), "PNG"),
        gray,
        description="gray + opaque alpha PNG",
    )
    palette = Image.fromarray(255 - gray, "L").convert("P")  # identity palette of the inverted values
    palette.putpalette([v for i in range(256) for v in (255 - i,) * 3])  # index i shows 255 - i
    ok(
        "palette_png",
        "palette.png",
        _encode(palette, "PNG"),
        gray,
        description="palette PNG, reversed palette",
    )
    colour = np.dstack([gray, np.roll(gray, 7, axis=1), 255 - gray])
    ok(
        "rgb_colour_png",
        "colour.png",
        _encode(Image.fromarray(colour, "RGB"), "PNG"),
        luma(colour),
        note=r"colour image",
        description="true-colour RGB PNG",
    )
    cmyk = Image.fromarray(gray, "L").convert("CMYK")
    ok(
        "cmyk_jpeg",
        "cmyk.jpg",
        _encode(cmyk, "JPEG", quality=95),
        gray,
        tolerance=3.0,
        description="CMYK JPEG",
    )
    stored = np.rot90(gray, 1)  # orientation 6 displays the stored image turned 90 degrees clockwise
    rotated = _encode(
        Image.fromarray(np.ascontiguousarray(stored)), "JPEG", quality=95, exif=_exif_orientation(6)
    )
    ok(
        "exif_rotated_jpeg",
        "rotated.jpg",
        rotated,
        gray,
        tolerance=3.0,
        note=r"EXIF orientation 6",
        description="JPEG stored on its side, EXIF orientation 6",
    )
    ok("jpeg_as_png", "photo.png", jpeg, gray, tolerance=3.0, description="JPEG renamed .png")
    ok("bmp", "slice-bmp.bmp", _encode(Image.fromarray(gray), "BMP"), gray, description="8-bit BMP")
    ok(
        "webp_lossless",
        "slice-webp.webp",
        _encode(Image.fromarray(gray), "WEBP", lossless=True),
        gray,
        description="lossless WebP",
    )

    # Several frames
    frames = [Image.fromarray(gray), Image.fromarray(255 - gray), Image.fromarray(np.roll(gray, 9, axis=0))]
    gif = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    ok("animated_gif", "cine.gif", gif, gray, note=r"frame 1 of 3", description="animated GIF, 3 frames")
    ok(
        "multipage_tiff",
        "stack.tif",
        _tiff([raw, raw[::-1], raw[:, ::-1]]),
        gray,
        note=r"frame 1 of 3",
        description="3-page 16-bit TIFF",
    )

    # Names
    ok(
        "hostile_name",
        _hostile_name(".png"),
        png8,
        gray,
        description="300-character name with path separators, a drive letter and unicode",
    )
    ok(
        "unicode_long_name",
        _unicode_long_name(".png"),
        png8,
        gray,
        description="300-character unicode name (about 500 UTF-8 bytes)",
    )

    # Valid but odd slices
    bad(
        "all_black",
        "black.png",
        _encode(Image.fromarray(np.zeros_like(gray)), "PNG"),
        r"same value \(0\)",
        "all black",
    )
    bad(
        "all_white",
        "white.png",
        _encode(Image.fromarray(np.full_like(gray, 255)), "PNG"),
        r"same value \(255\)",
        "all white",
    )
    bad(
        "constant_16bit",
        "flat16.png",
        _encode(Image.fromarray(np.full_like(raw, 1234)), "PNG"),
        r"same value \(1234\)",
        "constant 16-bit",
    )
    noise = rng.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)
    ok("noise", "noise.png", _encode(Image.fromarray(noise), "PNG"), noise, description="pure noise")
    ok(
        "two_levels",
        "two.png",
        _encode(Image.fromarray(binary.astype(np.uint8) * 3), "PNG"),
        binary.astype(np.uint8) * 3,
        description="8-bit with only the values 0 and 3 (kept as stored)",
    )

    keys = [f.key for f in files]
    assert len(keys) == len(set(keys)), "corpus keys must be unique"
    # Unique stems too: tools that write one output per input name (segapp.predict) see no clash.
    stems = [Path(f.disk_name).stem.lower() for f in files]
    assert len(stems) == len(set(stems)), "corpus file stems must be unique"
    return files


def write_corpus(folder: str | os.PathLike[str], corpus: list[HostileFile] | None = None) -> dict[str, Path]:
    """Write the corpus into ``folder`` (each file under its :attr:`HostileFile.disk_name`).

    Returns:
        key -> path of the written file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for item in corpus if corpus is not None else hostile_corpus():
        path = folder / item.disk_name
        if path.exists():  # two items with the same plain name: keep both
            path = folder / f"{item.key}-{item.disk_name}"
        path.write_bytes(item.data)
        paths[item.key] = path
    return paths


if __name__ == "__main__":  # python tests/hostile_corpus.py OUT_DIR: write the files to look at
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-corpus")
    for key, path in write_corpus(out).items():
        print(f"{key:20s} {path.stat().st_size:>10,d}  {path.name[:60]}")
