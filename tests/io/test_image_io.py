"""read_image / save_png / save_mask_png: every fixture is made here with PIL, numpy, struct and zlib."""

from __future__ import annotations

import io
import os
import struct
import threading
import time
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segapp.io.image import DEFAULT_MAX_PIXELS, InvalidImageError, ScanImage, save_mask_png, save_png
from segapp.io.readers import read_image

# A 16-bit scan with four levels and their hand-computed 8-bit values under
# (x - min) / (max - min) * 255, rounded to nearest: min 100, max 1100, span 1000.
#   100 -> 0;  140 -> 10.2 -> 10;  350 -> 63.75 -> 64;  1100 -> 255
LEVELS_16 = {100: 0, 140: 10, 350: 64, 1100: 255}


def scan16(height: int = 16, width: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint16 scan and its expected uint8 conversion."""
    raw = np.array(list(LEVELS_16), dtype=np.uint16)
    index = (np.arange(height)[:, None] + 2 * np.arange(width)[None, :]) % len(raw)
    expected = np.array(list(LEVELS_16.values()), dtype=np.uint8)
    return raw[index], expected[index]


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def gray8(height: int = 20, width: int = 30, seed: int = 0) -> np.ndarray:
    # 10..200 on purpose: a min-max rescale would change these values.
    return np.random.default_rng(seed).integers(10, 201, (height, width)).astype(np.uint8)


def png_header(width: int, height: int) -> bytes:
    """A minimal 8-bit gray PNG whose IHDR claims ``width`` x ``height``; almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


# ---------------------------------------------------------------------------
# Pixel conversion


def test_16bit_png_scan_is_min_max_scaled(tmp_path: Path) -> None:
    raw, expected = scan16()
    path = tmp_path / "slice_0067_24_16_1.50_1.63.png"
    Image.fromarray(raw).save(path)

    scan = read_image(path)

    np.testing.assert_array_equal(scan.pixels, expected)
    assert scan.pixels.dtype == np.uint8
    assert (scan.bit_depth, scan.original_mode) == (16, "I;16")
    assert scan.name == path.name
    assert scan.spacing_mm == (1.63, 1.50)  # (row, column) = (PH, PW)
    assert scan.size == (16, 24) == (scan.height, scan.width)
    assert scan.notes == ()


def test_half_way_value_rounds_to_nearest() -> None:
    # 0, 1, 2 -> 0, 127.5, 255: round half to even gives 128 (as OpenCV's normalize does).
    array = np.tile(np.array([0, 1, 2], dtype=np.uint16), (8, 3))
    assert sorted(set(read_image(array).pixels.ravel().tolist())) == [0, 128, 255]


@pytest.mark.parametrize(
    ("dtype", "mode", "bits"),
    [(np.uint16, "I;16", 16), (np.int32, "I", 32), (np.float32, "F", 32)],
)
def test_wide_tiff_is_min_max_scaled(tmp_path: Path, dtype: type, mode: str, bits: int) -> None:
    raw, expected = scan16()
    path = tmp_path / "scan.tiff"
    Image.fromarray(raw.astype(dtype)).save(path)
    scan = read_image(path)
    np.testing.assert_array_equal(scan.pixels, expected)
    assert (scan.original_mode, scan.bit_depth) == (mode, bits)


def test_int32_pil_image_is_scaled_like_a_raw_scan() -> None:
    raw, expected = scan16()
    image = Image.fromarray(raw.astype(np.int32))
    assert image.mode == "I"
    scan = read_image(image)
    np.testing.assert_array_equal(scan.pixels, expected)
    assert scan.bit_depth == 32


def test_float_scaling_is_shift_and_scale_invariant() -> None:
    raw, expected = scan16()
    for array in (raw * 0.001 - 7.5, raw.astype(np.float64) * -1.0 * -3.0, raw.astype(np.int64) - 10**12):
        np.testing.assert_array_equal(read_image(array).pixels, expected)


def test_float_range_wider_than_float64_does_not_overflow() -> None:
    big = np.finfo(np.float64).max
    array = np.zeros((8, 8))
    array[0, 0], array[0, 1] = -big, big
    pixels = read_image(array).pixels
    assert (pixels[0, 0], pixels[0, 1]) == (0, 255)
    assert pixels[1, 1] == 128  # 0 sits half-way: 127.5 rounds to even


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "GIF"])
def test_8bit_gray_is_kept_as_is(fmt: str) -> None:
    array = gray8()
    scan = read_image(encode(Image.fromarray(array), fmt))
    np.testing.assert_array_equal(scan.pixels, array)
    assert scan.bit_depth == 8


@pytest.mark.parametrize(("fmt", "params"), [("PNG", {}), ("BMP", {}), ("WEBP", {"lossless": True})])
def test_equal_rgb_channels_give_that_channel_exactly(fmt: str, params: dict) -> None:
    # The prepared data set stores gray slices as 3 equal channels.
    array = gray8()
    scan = read_image(encode(Image.fromarray(np.dstack([array] * 3)), fmt, **params))
    np.testing.assert_array_equal(scan.pixels, array)
    assert scan.original_mode == "RGB"
    assert scan.notes == ()


def test_true_colour_becomes_itu_601_luminance() -> None:
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[:8, :8] = (255, 0, 0)
    rgb[:8, 8:] = (0, 255, 0)
    rgb[8:, :8] = (0, 0, 255)
    rgb[8:, 8:] = (100, 100, 100)
    scan = read_image(encode(Image.fromarray(rgb), "PNG"))
    # 0.299 * 255 = 76.2, 0.587 * 255 = 149.7, 0.114 * 255 = 29.1, gray stays gray.
    assert (scan.pixels[0, 0], scan.pixels[0, 15], scan.pixels[15, 0], scan.pixels[15, 15]) == (
        76,
        150,
        29,
        100,
    )
    assert any("luminance" in note for note in scan.notes)


def test_random_colours_match_pil_l_conversion_within_rounding() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (12, 12, 3)).astype(np.uint8)
    pixels = read_image(rgb).pixels.astype(np.float64)
    weights = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(pixels - weights).max() <= 1.0


def test_rgba_alpha_is_dropped_with_a_note_only_when_transparent() -> None:
    array = gray8()
    rgba = np.dstack([array, array, array, np.full_like(array, 255)])
    opaque = read_image(encode(Image.fromarray(rgba), "PNG"))
    np.testing.assert_array_equal(opaque.pixels, array)
    assert opaque.notes == ()

    rgba[:5, :5, 3] = 0
    see_through = read_image(encode(Image.fromarray(rgba), "PNG"))
    np.testing.assert_array_equal(see_through.pixels, array)  # colours as stored, not blackened
    assert any("transparency" in note for note in see_through.notes)


def test_la_mode_uses_the_gray_channel() -> None:
    array = gray8()
    image = Image.merge("LA", [Image.fromarray(array), Image.fromarray(np.full_like(array, 255))])
    scan = read_image(encode(image, "PNG"))
    np.testing.assert_array_equal(scan.pixels, array)
    assert scan.original_mode == "LA"


def test_palette_goes_through_its_colours() -> None:
    index = (np.arange(16 * 16).reshape(16, 16) % 64).astype(np.uint8)
    image = Image.frombytes("P", (16, 16), index.tobytes())
    # Gray palette running backwards: a pixel's index is not its intensity.
    image.putpalette([level for i in range(64) for level in (255 - 3 * i,) * 3])
    scan = read_image(encode(image, "PNG"))
    np.testing.assert_array_equal(scan.pixels, 255 - 3 * index.astype(int))
    assert scan.original_mode == "P"


def test_one_bit_becomes_0_and_255() -> None:
    mask = np.zeros((16, 16), dtype=bool)
    mask[4:12, 2:9] = True
    for source in (encode(Image.fromarray(mask), "PNG"), mask):
        scan = read_image(source)
        np.testing.assert_array_equal(scan.pixels, mask.astype(np.uint8) * 255)
        assert scan.bit_depth == 1


def test_gray_jpeg_is_close_to_the_original() -> None:
    array = np.repeat(np.linspace(20, 230, 32), 32).reshape(32, 32).astype(np.uint8)
    scan = read_image(encode(Image.fromarray(array), "JPEG", quality=95))
    assert np.abs(scan.pixels.astype(int) - array).max() <= 3


def test_cmyk_jpeg_is_converted_through_rgb() -> None:
    black = np.zeros((32, 32), dtype=np.uint8)
    black[:, 16:] = 200  # key (black) ink on the right half only
    none = np.zeros_like(black)
    image = Image.merge("CMYK", [Image.fromarray(c) for c in (none, none, none, black)])
    scan = read_image(encode(image, "JPEG", quality=95))
    assert scan.original_mode == "CMYK"
    # No ink is white, 200 of 255 black ink leaves 55.
    assert abs(int(scan.pixels[:, :12].mean()) - 255) <= 4
    assert abs(int(scan.pixels[:, 20:].mean()) - 55) <= 4


def test_exif_orientation_is_applied() -> None:
    stored = np.full((16, 32), 230, dtype=np.uint8)  # H 16, W 32
    stored[:, :16] = 20  # dark left half
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    scan = read_image(encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif))
    # Turning clockwise brings the left edge to the top.
    assert scan.size == (32, 16)
    assert scan.pixels[:14].mean() < 40 and scan.pixels[18:].mean() > 210
    assert any("orientation 6" in note for note in scan.notes)


def test_animated_gif_uses_the_first_frame_with_a_note() -> None:
    frames = [Image.fromarray(gray8(seed=k)) for k in range(3)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    scan = read_image(data)
    np.testing.assert_array_equal(scan.pixels, np.array(frames[0]))
    assert "multi-frame file: frame 1 of 3 used" in scan.notes


def test_pil_image_uses_its_current_frame() -> None:
    frames = [Image.fromarray(gray8(seed=k)) for k in range(3)]
    image = Image.open(io.BytesIO(encode(frames[0], "GIF", save_all=True, append_images=frames[1:])))
    image.seek(1)
    scan = read_image(image)
    np.testing.assert_array_equal(scan.pixels, np.array(frames[1]))
    assert "multi-frame file: frame 2 of 3 used" in scan.notes


def test_multi_page_16bit_tiff_uses_the_first_page_with_a_note() -> None:
    raw, expected = scan16()
    pages = [Image.fromarray(raw), Image.fromarray(raw[::-1].copy())]
    scan = read_image(encode(pages[0], "TIFF", save_all=True, append_images=pages[1:]))
    np.testing.assert_array_equal(scan.pixels, expected)
    assert "multi-frame file: frame 1 of 2 used" in scan.notes


# ---------------------------------------------------------------------------
# Sources, names and spacing


def test_every_source_kind_gives_the_same_pixels(tmp_path: Path) -> None:
    raw, expected = scan16()
    path = tmp_path / "slice_0001_24_16_1.50_1.50.png"
    Image.fromarray(raw).save(path)
    data = path.read_bytes()
    with path.open("rb") as fp:
        from_file = read_image(fp)
    sources = [
        str(path),
        path,
        data,
        bytearray(data),
        memoryview(data),
        io.BytesIO(data),
        Image.open(path),
        raw,
    ]
    for scan in [read_image(source) for source in sources] + [from_file]:
        np.testing.assert_array_equal(scan.pixels, expected)
    assert from_file.spacing_mm == (1.5, 1.5)  # name taken from the file object


@pytest.mark.parametrize("shape", [(16, 24, 1), (16, 24, 3)])
def test_array_channel_layouts(shape: tuple[int, ...]) -> None:
    raw, expected = scan16()
    array = np.repeat(raw[..., None], shape[2], axis=2)
    np.testing.assert_array_equal(read_image(array).pixels, expected)


def test_array_with_rgba_channels() -> None:
    array = gray8()
    rgba = np.dstack([array, array, array, np.full_like(array, 255)])
    scan = read_image(rgba)
    np.testing.assert_array_equal(scan.pixels, array)
    assert scan.original_mode == "uint8" and scan.bit_depth == 8


def test_signed_8bit_array_is_scaled() -> None:
    array = np.tile(np.array([-128, 0, 127], dtype=np.int8), (8, 3))
    pixels = read_image(array).pixels
    # -128 -> 0, 0 -> 128 / 255 * 255 = 128, 127 -> 255
    assert pixels[0, :3].tolist() == [0, 128, 255]


def test_pixels_do_not_alias_the_callers_array() -> None:
    array = gray8()
    scan = read_image(array)
    array[:] = 0
    assert scan.pixels.max() > 0


def test_spacing_from_raw_layout_path_and_explicit_values(tmp_path: Path) -> None:
    raw, _ = scan16()
    folder = tmp_path / "case7" / "case7_day0" / "scans"
    folder.mkdir(parents=True)
    path = folder / "slice_0001_24_16_1.63_1.50.png"
    Image.fromarray(raw).save(path)
    assert read_image(path).spacing_mm == (1.50, 1.63)
    assert read_image(path, spacing_mm=(0.8, 0.9)).spacing_mm == (0.8, 0.9)  # explicit wins
    assert read_image(path.read_bytes()).spacing_mm is None
    named = read_image(path.read_bytes(), name="case1_day2_slice_0003_24_16_2.00_2.50.png")
    assert (named.spacing_mm, named.name) == ((2.5, 2.0), "case1_day2_slice_0003_24_16_2.00_2.50.png")


@pytest.mark.parametrize("spacing", [(0.0, 1.0), (1.0,), (float("nan"), 1.0), "ab"])
def test_bad_spacing_argument_is_a_value_error(spacing: object) -> None:
    with pytest.raises(ValueError, match="spacing_mm"):
        read_image(gray8(), spacing_mm=spacing)  # type: ignore[arg-type]


def test_scan_image_contract() -> None:
    with pytest.raises(ValueError):
        ScanImage(pixels=np.zeros((8, 8), dtype=np.float32), spacing_mm=None, bit_depth=8, original_mode="F")
    with pytest.raises(ValueError):
        ScanImage(
            pixels=np.zeros((8, 8, 3), dtype=np.uint8), spacing_mm=None, bit_depth=8, original_mode="RGB"
        )


# ---------------------------------------------------------------------------
# Refusals: each is an InvalidImageError with a message that says what is wrong


def refused(source: object, match: str, **kwargs) -> InvalidImageError:
    with pytest.raises(InvalidImageError, match=match) as info:
        read_image(source, **kwargs)  # type: ignore[arg-type]
    return info.value


def test_missing_path_and_folder(tmp_path: Path) -> None:
    refused(tmp_path / "nope.png", "no file at")
    refused(tmp_path, "folder, not an image")


def test_empty_file_and_bytes(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    refused(path, "empty")
    refused(b"", "empty")
    refused(io.BytesIO(b""), "empty")


@pytest.mark.parametrize(
    ("content", "looks_like"),
    [
        (b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body></body></html>", "HTML"),
        ("Befund: Magen unauffällig\nnächste Zeile\n".encode(), "text"),
        (b"\x93NUMPY\x01\x00v\x00{'descr': '<u2'}" + b"\x00" * 40, "NumPy"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "PDF"),
    ],
)
def test_non_images_say_what_they_look_like(tmp_path: Path, content: bytes, looks_like: str) -> None:
    path = tmp_path / "slice.png"  # the extension lies
    path.write_bytes(content)
    message = str(refused(path, looks_like))
    assert "PNG" in message  # says what to upload or export instead


def test_zip_archive_is_recognised() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("slice.png", b"not really")
    refused(buffer.getvalue(), "ZIP archive")


def test_unrecognised_binary() -> None:
    refused(bytes(range(256)) * 4, "not an image")


@pytest.mark.timeout(10)
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF"])
def test_truncated_files_are_refused(fmt: str) -> None:
    noise = np.random.default_rng(2).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    data = encode(Image.fromarray(noise), fmt)
    refused(data[: len(data) * 6 // 10], "damaged or incomplete")


def test_header_only_png_is_damaged() -> None:
    refused(b"\x89PNG\r\n\x1a\n" + b"\x00" * 8, "PNG file is damaged")


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL warns on some truncated TIFF reads
def test_corrupted_files_never_leak_other_exceptions() -> None:
    rng = np.random.default_rng(3)
    originals = [
        encode(Image.fromarray(gray8(32, 32)), "PNG"),
        encode(Image.fromarray(gray8(32, 32)), "JPEG"),
        encode(Image.fromarray(scan16()[0]), "TIFF"),
        encode(Image.fromarray(gray8(32, 32)), "GIF"),
    ]
    for original in originals:
        for _ in range(40):
            data = bytearray(original)
            for position in rng.integers(0, len(data), 4):
                data[position] = int(rng.integers(0, 256))
            try:
                scan = read_image(bytes(data))
            except InvalidImageError as error:
                assert str(error)
            else:
                assert scan.pixels.dtype == np.uint8 and scan.pixels.ndim == 2


def test_zero_size_images() -> None:
    refused(png_header(0, 16), "no pixels")
    refused(np.zeros((0, 16), dtype=np.uint8), "no pixels")
    refused(Image.new("L", (16, 0)), "no pixels")


@pytest.mark.parametrize("size", [(4, 4), (100, 5), (7, 300)])
def test_too_small_to_be_a_slice(size: tuple[int, int]) -> None:
    refused(np.arange(size[0] * size[1], dtype=np.uint8).reshape(size), "too small")


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("width", "height", "max_pixels"),
    [
        (8000, 8000, DEFAULT_MAX_PIXELS),  # over our limit, under PIL's
        (100_000, 100_000, DEFAULT_MAX_PIXELS),  # decompression bomb
        (100_000, 100_000, 10**12),  # PIL's guard holds even when ours is lifted
    ],
)
def test_huge_headers_are_refused_before_decoding(width: int, height: int, max_pixels: int) -> None:
    start = time.perf_counter()
    message = str(refused(png_header(width, height), "too large", max_pixels=max_pixels))
    assert time.perf_counter() - start < 1.0  # nothing the size of the claim was decoded
    assert "MRI slice" in message


def test_max_pixels_applies_to_every_source() -> None:
    array = gray8(40, 40)
    for source in (array, Image.fromarray(array), encode(Image.fromarray(array), "PNG")):
        refused(source, "too large", max_pixels=40 * 40 - 1)
        assert read_image(source, max_pixels=40 * 40).size == (40, 40)


def test_nan_and_inf_are_refused(tmp_path: Path) -> None:
    array = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    for bad in (np.nan, np.inf, -np.inf):
        broken = array.copy()
        broken[3, 4] = bad
        refused(broken, "NaN or infinite")
    broken = array.copy()
    broken[0, :2] = np.nan
    path = tmp_path / "nan.tiff"
    Image.fromarray(broken).save(path)
    refused(path, r"2 pixel\(s\)")


def test_constant_images_are_refused() -> None:
    refused(np.full((16, 16), 7, dtype=np.uint8), r"same value \(7\)")
    refused(encode(Image.fromarray(np.full((16, 16), 1000, dtype=np.uint16)), "PNG"), r"same value \(1000\)")
    refused(np.zeros((16, 16, 3), dtype=np.float64), "nothing to segment")


@pytest.mark.parametrize(
    "source",
    [
        np.zeros((3, 16, 16, 2), dtype=np.uint8),
        np.zeros((16, 16, 5), dtype=np.uint8),
        np.zeros((16, 16), dtype=np.complex64),
        np.array([["a"] * 16] * 16),
        12345,
    ],
)
def test_unusable_python_objects(source: object) -> None:
    refused(source, ".")


def test_text_mode_file_object(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("hello", encoding="utf-8")
    with path.open("r", encoding="utf-8") as fp:
        refused(fp, "binary mode")


# ---------------------------------------------------------------------------
# Threads


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_parallel_reads_of_the_same_bytes_agree(fmt: str) -> None:
    raw, _ = scan16(64, 64)
    image = Image.fromarray(raw) if fmt == "PNG" else Image.fromarray(gray8(64, 64))
    data = encode(image, fmt)
    reference = read_image(data).pixels
    barrier = threading.Barrier(8)

    def worker(_: int) -> np.ndarray:
        barrier.wait()  # start together so the decodes really overlap
        return np.stack([read_image(data).pixels for _ in range(10)])

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(worker, range(8)))
    for stack in results:
        for pixels in stack:
            np.testing.assert_array_equal(pixels, reference)


# ---------------------------------------------------------------------------
# Writing


@pytest.mark.parametrize(
    ("array", "mode"),
    [
        (gray8(), "L"),
        (np.dstack([gray8(seed=1), gray8(seed=2), gray8(seed=3)]), "RGB"),
        (scan16()[0] * 50, "I;16"),
    ],
)
def test_save_png_round_trip(tmp_path: Path, array: np.ndarray, mode: str) -> None:
    path = tmp_path / "new" / "deeper" / "out.png"
    save_png(array, path)
    with Image.open(path) as image:
        assert image.mode == mode
        np.testing.assert_array_equal(np.array(image), array)
    assert os.listdir(path.parent) == ["out.png"]  # no temp file left behind


def test_save_png_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "out.png"
    path.write_bytes(b"old content")
    save_png(gray8(), path)
    np.testing.assert_array_equal(np.array(Image.open(path)), gray8())
    assert os.listdir(tmp_path) == ["out.png"]


def test_save_png_failure_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.png"
    save_png(gray8(seed=5), path)
    before = path.read_bytes()

    def half_write(self: Image.Image, fp: io.BufferedWriter, *args: object, **kwargs: object) -> None:
        fp.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", half_write)
    with pytest.raises(OSError, match="disk full"):
        save_png(gray8(seed=6), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.png"]


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((8, 8), dtype=np.float32),
        np.zeros((8, 8, 4), dtype=np.uint8),
        np.zeros((8, 8, 3), dtype=np.uint16),
        np.zeros((0, 8), dtype=np.uint8),
        np.zeros((8,), dtype=np.uint8),
    ],
)
def test_save_png_refuses_unsupported_arrays(tmp_path: Path, array: np.ndarray) -> None:
    with pytest.raises(ValueError, match="save_png takes"):
        save_png(array, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_save_mask_png_writes_class_ids(tmp_path: Path) -> None:
    mask = (np.arange(12 * 10).reshape(12, 10) % 4).astype(np.int64)
    path = tmp_path / "masks" / "case1_day2_slice_0003_10_12_1.50_1.50.png"
    save_mask_png(mask, path)
    with Image.open(path) as image:
        assert image.mode == "L"
        np.testing.assert_array_equal(np.array(image), mask)


@pytest.mark.parametrize(
    "mask",
    [
        np.full((8, 8), 4, dtype=np.uint8),
        np.full((8, 8), -1, dtype=np.int32),
        np.zeros((8, 8), dtype=np.float32),
        np.zeros((8, 8, 3), dtype=np.uint8),
    ],
)
def test_save_mask_png_refuses_non_class_ids(tmp_path: Path, mask: np.ndarray) -> None:
    with pytest.raises(ValueError, match="mask"):
        save_mask_png(mask, tmp_path / "m.png")
    assert not (tmp_path / "m.png").exists()


def test_running_out_of_memory_is_reported_not_leaked(monkeypatch: pytest.MonkeyPatch) -> None:
    import segapp.io.image as image_io

    def no_memory(image: Image.Image) -> np.ndarray:
        raise MemoryError

    monkeypatch.setattr(image_io, "_pil_to_array", no_memory)
    refused(encode(Image.fromarray(gray8()), "PNG"), "memory available")
