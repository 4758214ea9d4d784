"""Training data on tiny folders written here: pairing by name, the refusals (each naming its file),
the loaded tensors, and the inference path's reader and resize.

test_train.py covers the same refusals on copies of the phantom set and the preprocess() parity;
these build each case from a few hand-made slices.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segapp.io.image import save_mask_png, save_png
from segapp.io.readers import read_image
from segapp.metrics.labelled_data import DataError, Pair, find_pairs, load_valid_set, read_mask
from segapp.model.processing import ProcessingConfig, resize_gray
from segapp.training.data import load_train_set

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RNG = np.random.default_rng(0)


def _write_split(split: Path, slices: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> Path:
    """``split/images/NAME`` and, unless None, ``split/masks/NAME`` for each (image, mask)."""
    (split / "images").mkdir(parents=True, exist_ok=True)
    (split / "masks").mkdir(parents=True, exist_ok=True)
    for name, (image, mask) in slices.items():
        save_png(image, split / "images" / name, durable=False)
        if mask is not None:
            save_mask_png(mask, split / "masks" / name, durable=False)
    return split


def _image(height: int = 16, width: int = 16) -> np.ndarray:
    return RNG.integers(0, 256, (height, width), dtype=np.uint8)


def _mask(height: int = 16, width: int = 16) -> np.ndarray:
    return RNG.integers(0, 4, (height, width), dtype=np.uint8)


def test_pairs_match_by_name_sorted_ignoring_other_files(tmp_path: Path) -> None:
    split = _write_split(tmp_path / "train", {n: (_image(), _mask()) for n in ("b.png", "a.png", "c.png")})
    (split / "images" / "notes.txt").write_text("not an image")
    (split / "masks" / "notes.txt").write_text("not a mask")
    pairs = find_pairs(split)
    assert [p.image.name for p in pairs] == ["a.png", "b.png", "c.png"]
    assert all(isinstance(p, Pair) and p.mask == split / "masks" / p.image.name for p in pairs)
    assert all(p.image == split / "images" / p.image.name for p in pairs)


def test_a_mask_may_have_another_image_suffix(tmp_path: Path) -> None:
    split = _write_split(tmp_path / "train", {"a.png": (_image(), None)})
    Image.fromarray(_mask()).save(split / "masks" / "a.tif")
    (pair,) = find_pairs(split)
    assert pair.mask.name == "a.tif"


def test_an_image_without_a_mask_is_named(tmp_path: Path) -> None:
    split = _write_split(
        tmp_path / "train",
        {"a.png": (_image(), _mask()), "b.png": (_image(), None), "c.png": (_image(), None)},
    )
    with pytest.raises(DataError, match=r"2 image\(s\) .* have no mask of the same name .*: b\.png, c\.png$"):
        find_pairs(split)


def test_more_than_five_missing_masks_are_cut_short(tmp_path: Path) -> None:
    split = _write_split(tmp_path / "train", {f"s{i}.png": (_image(), None) for i in range(7)})
    shown = r": s0\.png, s1\.png, s2\.png, s3\.png, s4\.png \.\.\.$"
    with pytest.raises(DataError, match=r"^7 image\(s\).*" + shown):
        find_pairs(split)


def test_missing_folders_and_an_empty_folder_are_named(tmp_path: Path) -> None:
    split = tmp_path / "valid"
    with pytest.raises(DataError, match=re.escape(f"Missing folder {split}.")):
        find_pairs(split)
    (split / "images").mkdir(parents=True)
    with pytest.raises(DataError, match=re.escape(f"Missing folder {split / 'masks'}.")):
        find_pairs(split)
    (split / "masks").mkdir()
    with pytest.raises(DataError, match=re.escape(f"No images in {split / 'images'} ")):
        find_pairs(split)
    with pytest.raises(DataError, match="No images"):
        load_train_set(split, ProcessingConfig(16, 16))
    with pytest.raises(DataError, match="No images"):
        load_valid_set(split)


@pytest.mark.parametrize("loader", ["train", "valid"])
def test_a_mask_value_outside_the_class_ids_is_named(tmp_path: Path, loader: str) -> None:
    split = _write_split(tmp_path / loader, {"a.png": (_image(), _mask()), "b.png": (_image(), None)})
    bad = _mask()
    bad[3, 5] = 4
    Image.fromarray(bad).save(split / "masks" / "b.png")  # save_mask_png would refuse it
    with pytest.raises(DataError, match=r"^Mask b\.png has values \[4\] outside the class ids 0\.\.3"):
        load_train_set(split, ProcessingConfig(16, 16)) if loader == "train" else load_valid_set(split)


@pytest.mark.parametrize("loader", ["train", "valid"])
def test_a_mask_of_another_size_is_named_with_both_sizes(tmp_path: Path, loader: str) -> None:
    split = _write_split(tmp_path / loader, {"a.png": (_image(16, 20), _mask(16, 20))})
    save_mask_png(_mask(16, 18), split / "masks" / "a.png", durable=False)
    message = r"^Mask a\.png is 18 x 16 pixels but its image is 20 x 16; .* must have the same size"
    with pytest.raises(DataError, match=message):
        load_train_set(split, ProcessingConfig(16, 16)) if loader == "train" else load_valid_set(split)


def test_colour_and_unreadable_masks_and_unreadable_images_are_named(tmp_path: Path) -> None:
    split = _write_split(tmp_path / "valid", {"a.png": (_image(), _mask())})
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(split / "masks" / "a.png")
    with pytest.raises(DataError, match=r"^Mask a\.png has mode RGB"):
        load_valid_set(split)
    (split / "masks" / "a.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"^Mask a\.png cannot be read"):
        load_valid_set(split)
    save_mask_png(_mask(), split / "masks" / "a.png", durable=False)
    (split / "images" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError, match=r"^Image a\.png: "):
        load_valid_set(split)


def test_read_mask_takes_single_channel_class_ids_of_any_depth(tmp_path: Path) -> None:
    mask = _mask(12, 10)
    save_png(mask.astype(np.uint16), tmp_path / "deep.png", durable=False)  # 16-bit PNG
    palette = Image.frombytes("P", (10, 12), mask.tobytes())
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    palette.save(tmp_path / "palette.png")
    Image.fromarray(mask > 1).save(tmp_path / "binary.png")  # mode "1"
    for name, expected in (("deep.png", mask), ("palette.png", mask), ("binary.png", mask > 1)):
        read = read_mask(tmp_path / name, (12, 10))
        assert read.dtype == np.uint8 and read.shape == (12, 10)
        assert np.array_equal(read, expected), name


def test_train_set_at_the_model_size_is_the_slices_themselves(tmp_path: Path) -> None:
    slices = {n: (_image(), _mask()) for n in ("b.png", "a.png")}
    split = _write_split(tmp_path / "train", slices)
    train = load_train_set(split, ProcessingConfig(16, 16))
    assert len(train) == 2 and train.nbytes == 2 * 2 * 16 * 16
    assert train.images.dtype == torch.uint8 and train.images.shape == (2, 16, 16)
    assert train.masks.dtype == torch.uint8 and train.masks.shape == (2, 16, 16)
    for index, name in enumerate(["a.png", "b.png"]):  # in name order
        image, mask = slices[name]
        assert np.array_equal(train.images[index].numpy(), image)
        assert np.array_equal(train.masks[index].numpy(), mask)


def test_train_masks_are_resized_by_nearest_neighbour(tmp_path: Path) -> None:
    # Upsampling by exactly 2 with nearest repeats every pixel twice each way; downsampling by 2
    # keeps the even rows and columns. Never a value between two class ids.
    small, large = _mask(8, 12), _mask(32, 48)
    slices = {"a.png": (_image(8, 12), small), "b.png": (_image(32, 48), large)}
    split = _write_split(tmp_path / "train", slices)
    train = load_train_set(split, ProcessingConfig(16, 24))
    assert np.array_equal(train.masks[0].numpy(), small.repeat(2, 0).repeat(2, 1))
    assert np.array_equal(train.masks[1].numpy(), large[::2, ::2])


def test_train_images_go_through_the_inference_reader_and_resize(tmp_path: Path) -> None:
    # A 16-bit slice: the reader scales it to 0..255, then the one bilinear resize of inference.
    deep = RNG.integers(0, 4096, (24, 20), dtype=np.uint16)
    split = _write_split(tmp_path / "train", {"a.png": (deep, _mask(24, 20))})
    config = ProcessingConfig(16, 16)
    train = load_train_set(split, config)
    served = resize_gray([read_image(split / "images" / "a.png").pixels], config)  # (1, 1, 16, 16)
    assert torch.equal(train.images[0], served[0, 0].round().clamp(0, 255).to(torch.uint8))
    assert (train.images[0].float() - served[0, 0]).abs().max() <= 0.5


def test_valid_set_keeps_each_slice_at_its_own_size(tmp_path: Path) -> None:
    slices = {"a.png": (_image(16, 20), _mask(16, 20)), "b.png": (_image(24, 12), _mask(24, 12))}
    split = _write_split(tmp_path / "valid", slices)
    valid = load_valid_set(split)
    assert len(valid) == 2 and valid.names == ["a.png", "b.png"]
    for scan, mask, name in zip(valid.scans, valid.masks, valid.names):
        image, truth = slices[name]
        assert scan.size == image.shape and scan.name == name
        assert np.array_equal(scan.pixels, image)
        assert np.array_equal(scan.pixels, read_image(split / "images" / name).pixels)
        assert mask.dtype == np.uint8 and np.array_equal(mask, truth)
