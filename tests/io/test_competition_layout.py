"""The competition-layout conversion: raw layout -> training layout; overlap rule, case split, bad rows, empties."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segapp.io.competition import choose_valid, prepare, resolve_overlaps
from segapp.io.competition_raw import PrepareError
from segapp.io.naming import parse_slice_name
from segapp.io.readers import read_image
from segapp.io.rle import rle_encode
from segapp.metrics.labelled_data import find_pairs, read_mask

H, W = 16, 20  # not square, so a swapped width and height cannot pass
ORGANS = ("large_bowel", "small_bowel", "stomach")  # the competition CSV's order


def box(top: int, left: int, height: int, width: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[top : top + height, left : left + width] = True
    return mask


def make_raw(
    root: Path, slices: list[tuple[int, int, int, dict[str, np.ndarray]]], seed: int = 0
) -> list[str]:
    """Write a raw competition layout; returns the CSV lines (header first)."""
    rng = np.random.default_rng(seed)
    lines = ["id,class,segmentation"]
    for case, day, number, organs in slices:
        folder = root / "train" / f"case{case}" / f"case{case}_day{day}" / "scans"
        folder.mkdir(parents=True, exist_ok=True)
        image = rng.integers(100, 3000, size=(H, W), dtype=np.uint16)
        Image.fromarray(image).save(folder / f"slice_{number:04d}_{W}_{H}_1.50_1.50.png")
        for organ in ORGANS:
            code = rle_encode(organs[organ]) if organ in organs else ""
            lines.append(f"case{case}_day{day}_slice_{number:04d},{organ},{code}")
    (root / "train.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def simple_raw(root: Path, cases: int = 4, per_case: int = 3, empty_every: int = 0) -> None:
    slices = []
    for case in range(1, cases + 1):
        for number in range(1, per_case + 1):
            empty = empty_every and number % empty_every == 0
            slices.append((case, 1, number, {} if empty else {"stomach": box(2, 3, 4, 5)}))
    make_raw(root, slices)


def test_overlap_rule_smaller_organ_wins() -> None:
    small = box(0, 0, 2, 2)  # 4 pixels
    large = box(1, 1, 5, 5)  # 25 pixels, shares (1, 1) with small
    mask, overlap = resolve_overlaps({3: small, 1: large})
    assert overlap == 1
    assert mask[1, 1] == 3  # the smaller organ (large bowel here) keeps the shared pixel
    assert mask[0, 0] == 3 and mask[5, 5] == 1 and mask[10, 10] == 0
    assert np.count_nonzero(mask == 1) == 24 and np.count_nonzero(mask == 3) == 4
    # Equal areas: the lower class id wins.
    mask, overlap = resolve_overlaps({2: box(0, 0, 2, 2), 3: box(1, 1, 2, 2)})
    assert overlap == 1 and mask[1, 1] == 2
    # Three organs on one pixel count once.
    mask, overlap = resolve_overlaps({1: box(0, 0, 3, 3), 2: box(0, 0, 2, 2), 3: box(0, 0, 1, 1)})
    assert overlap == 4 and mask[0, 0] == 3 and mask[1, 1] == 2 and mask[2, 2] == 1


def test_prepare_writes_the_training_layout(tmp_path: Path) -> None:
    stomach = box(2, 3, 4, 5)  # 20 pixels
    small_bowel = box(5, 6, 6, 8)  # 48 pixels; overlaps the stomach on 1 x 2 pixels
    raw = tmp_path / "raw"
    make_raw(
        raw,
        [
            (1, 3, 7, {"stomach": stomach, "small_bowel": small_bowel}),
            (1, 3, 8, {}),
            (2, 1, 7, {"large_bowel": box(0, 0, 3, 20)}),
        ],
    )
    summary = prepare(raw, tmp_path / "data", valid_fraction=0.4, seed=0, keep_empty=True, progress=False)
    assert summary["overlap_pixels"] == 2 and summary["overlap_slices"] == 1
    names = {p.image.name: p for split in ("train", "valid") for p in find_pairs(tmp_path / "data" / split)}
    name = "case1_day3_slice_0007_20_16_1.50_1.50.png"
    assert set(names) == {
        name,
        "case1_day3_slice_0008_20_16_1.50_1.50.png",
        "case2_day1_slice_0007_20_16_1.50_1.50.png",
    }
    pair = names[name]
    # Image: read_image's min-max conversion of the raw scan, stored as 3 equal 8-bit channels.
    scan = tmp_path / "raw/train/case1/case1_day3/scans/slice_0007_20_16_1.50_1.50.png"
    rgb = np.asarray(Image.open(pair.image))
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    assert all(np.array_equal(rgb[..., c], read_image(scan).pixels) for c in range(3))
    # Mask: class ids, the smaller stomach keeping the shared pixels.
    mask = read_mask(pair.mask, (H, W))
    expected = np.zeros((H, W), dtype=np.uint8)
    expected[small_bowel] = 2
    expected[stomach] = 1
    assert np.array_equal(mask, expected)
    assert parse_slice_name(pair.image.name).spacing_mm == (1.5, 1.5)
    written = json.loads((tmp_path / "data" / "prepare_summary.json").read_text())
    assert written["splits"] == summary["splits"]
    assert sum(s["slices"] for s in summary["splits"].values()) == 3


def test_case_split_keeps_each_patient_on_one_side(tmp_path: Path) -> None:
    simple_raw(tmp_path / "raw", cases=6, per_case=3)
    summary = prepare(tmp_path / "raw", tmp_path / "data", valid_fraction=0.3, seed=3, progress=False)
    train_cases = {parse_slice_name(p.image).case for p in find_pairs(tmp_path / "data" / "train")}
    valid_cases = {parse_slice_name(p.image).case for p in find_pairs(tmp_path / "data" / "valid")}
    assert train_cases and valid_cases and not train_cases & valid_cases
    assert train_cases | valid_cases == set(range(1, 7))
    # 18 slices, target 5.4: whole cases of 3, so the closest count is 6 (two cases).
    assert summary["splits"]["valid"]["slices"] == 6 and sorted(
        summary["splits"]["valid"]["cases"]
    ) == sorted(valid_cases)


def test_choose_valid_rules() -> None:
    cases = {f"case{c}_day1_slice_{s:04d}": c for c in range(1, 11) for s in range(1, 11)}
    first = choose_valid(cases, valid_fraction=0.2, seed=7)
    assert first == choose_valid(cases, valid_fraction=0.2, seed=7)  # deterministic
    assert len(first) == 20 and len({cases[i] for i in first}) == 2
    assert choose_valid(cases, valid_fraction=0.2, seed=8) != first
    # One huge case is never all of training or all of validation.
    lopsided = {"case1_day1_slice_0001": 1, **{f"case2_day1_slice_{s:04d}": 2 for s in range(1, 50)}}
    valid = choose_valid(lopsided, valid_fraction=0.9, seed=0)
    assert {lopsided[i] for i in valid} in ({1}, {2})
    by_slice = choose_valid(cases, valid_fraction=0.25, seed=0, split="slice")
    assert len(by_slice) == 25
    with pytest.raises(PrepareError, match="at least 2 cases"):
        choose_valid({"case1_day1_slice_0001": 1, "case1_day1_slice_0002": 1}, valid_fraction=0.5, seed=0)


def test_empty_slices_are_thinned_in_training_only(tmp_path: Path) -> None:
    simple_raw(tmp_path / "raw", cases=4, per_case=4, empty_every=2)  # 2 empty slices per case
    summary = prepare(
        tmp_path / "raw", tmp_path / "a", valid_fraction=0.25, seed=1, empty_fraction=0.5, progress=False
    )
    train, valid = summary["splits"]["train"], summary["splits"]["valid"]
    assert len(valid["cases"]) == 1 and valid["empty"] == 2  # validation keeps its empty slices
    assert train["empty"] == 3 and summary["dropped_empty"] == 3  # round(0.5 * 6) of 6 kept
    assert train["slices"] == 6 + 3 and train["classes"]["stomach"] == 6
    kept = prepare(
        tmp_path / "raw", tmp_path / "b", valid_fraction=0.25, seed=1, keep_empty=True, progress=False
    )
    assert kept["splits"]["train"]["empty"] == 6 and kept["dropped_empty"] == 0


def _bad_csv(tmp_path: Path, line_no: int, new_line: str) -> Path:
    raw = tmp_path / "raw"
    simple_raw(raw, cases=2, per_case=2)
    lines = (raw / "train.csv").read_text().splitlines()
    lines[line_no - 1] = new_line
    (raw / "train.csv").write_text("\n".join(lines) + "\n")
    return raw


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("case9_day1_slice_0001,stomach,", r"line 5: no scan for case9_day1_slice_0001"),
        (
            "case1_day1_slice_0002,large_bowel,1 2 3",
            r"line 5 \(case1_day1_slice_0002, large_bowel\): .*odd number",
        ),
        ("case1_day1_slice_0002,large_bowel,1 x", r"line 5 .*not an integer"),
        (f"case1_day1_slice_0002,large_bowel,{H * W - 2} 5", r"line 5 .*past the end of a 16 x 20 image"),
        ("case1_day1_slice_0002,liver,", r"line 5 .*unknown class 'liver'"),
        ("case1_day1_slice_0001,stomach,", r"line 5 .*already appeared on line 4"),
    ],
)
def test_bad_rows_name_the_line_and_leave_nothing(tmp_path: Path, line: str, match: str) -> None:
    raw = _bad_csv(tmp_path, 5, line)
    out = tmp_path / "out" / "data"
    with pytest.raises(PrepareError, match=match):
        prepare(raw, out, valid_fraction=0.5, progress=False)
    assert not out.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_failure_while_writing_leaves_nothing(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    simple_raw(raw, cases=2, per_case=3)
    (raw / "train/case2/case2_day1/scans/slice_0003_20_16_1.50_1.50.png").write_bytes(b"not a png")
    with pytest.raises(PrepareError, match=r"line \d+ \(case2_day1_slice_0003\): scan .*not an image"):
        prepare(raw, tmp_path / "data", valid_fraction=0.5, workers=2, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    simple_raw(tmp_path / "raw")
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(PrepareError, match="--overwrite"):
        prepare(tmp_path / "raw", out, progress=False)
    assert (out / "keep.txt").read_text() == "mine"
    prepare(tmp_path / "raw", out, overwrite=True, progress=False)
    assert not (out / "keep.txt").exists() and (out / "train" / "images").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "raw"]  # no leftovers


def test_an_empty_existing_output_is_used_without_overwrite(tmp_path: Path) -> None:
    simple_raw(tmp_path / "raw")
    (tmp_path / "data").mkdir()
    prepare(tmp_path / "raw", tmp_path / "data", progress=False)
    assert (tmp_path / "data" / "prepare_summary.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "raw"]


def test_a_run_killed_between_the_renames_is_put_back_before_the_overwrite_check(tmp_path: Path) -> None:
    simple_raw(tmp_path / "raw")
    out = tmp_path / "data"
    prepare(tmp_path / "raw", out, progress=False)
    summary = (out / "prepare_summary.json").read_text()
    # What a SIGKILL between the swap's two renames leaves: data.previous and the new temp folder.
    os.replace(out, tmp_path / "data.previous")
    (tmp_path / ".data.tmp-killed" / "train").mkdir(parents=True)
    with pytest.raises(PrepareError, match="--overwrite"):
        prepare(tmp_path / "raw", out, progress=False)
    assert (out / "prepare_summary.json").read_text() == summary
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "raw"]
    prepare(tmp_path / "raw", out, overwrite=True, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "raw"]
