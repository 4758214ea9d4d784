"""The reader registry: it picks the reader by what the file is; the contracts import no reader."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from segapp.io.image import Decoded, InvalidImageError, SliceDecoder, decode_array, decode_image
from segapp.io.readers import read_image

MR_SLICE = Path(get_testdata_file("MR_small.dcm"))  # one 64 x 64 MR slice


def test_a_dicom_slice_is_picked_by_the_registry_not_by_the_image_decoder() -> None:
    read = read_image(MR_SLICE)
    assert read.original_mode == "DICOM MR" and read.size == (64, 64) and read.spacing_mm is not None
    # The same bytes through the registry (the first bytes pick the reader, not the name).
    assert np.array_equal(read_image(MR_SLICE.read_bytes()).pixels, read.pixels)
    # The image decoder alone reads what PIL reads and knows nothing of DICOM (this file's
    # preamble happens to start like a TIFF, so PIL finds it damaged).
    with pytest.raises(InvalidImageError, match="damaged|not an image"):
        decode_image(MR_SLICE)


def test_the_image_decoder_uses_the_picked_decoder(tmp_path: Path) -> None:
    path = tmp_path / "odd.bin"
    path.write_bytes(b"ODD!" + bytes(100))
    seen = []

    def odd(fp, max_pixels: int) -> Decoded:  # a format of its own: 16-bit ramp
        return decode_array(np.arange(64, dtype=np.uint16).reshape(8, 8), max_pixels)

    def pick(head: bytes) -> SliceDecoder | None:
        seen.append(head[:4])
        return odd if head.startswith(b"ODD!") else None

    read = decode_image(path, decoder_for=pick)
    assert seen == [b"ODD!"] and read.size == (8, 8) and read.name == "odd.bin"
    assert read.pixels[0, 0] == 0 and read.pixels[-1, -1] == 255


def test_contracts_and_registry_keep_slow_libraries_out_of_start_up() -> None:
    code = (
        "import sys\n"
        "import segapp.io.image, segapp.io.volume\n"
        "print(sorted(m for m in ('segapp.io.dicom', 'segapp.io.nifti', 'segapp.io.casefolder',"
        " 'segapp.io.readers') if m in sys.modules))\n"
        "import segapp.io.readers, segapp.io.rtstruct, segapp.io.dicom_seg, segapp.io.competition\n"
        "print(sorted(m for m in ('pydicom', 'nibabel', 'highdicom', 'requests') if m in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(root)}, cwd=root).stdout.splitlines()
    assert out == ["[]", "[]"]
