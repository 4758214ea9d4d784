"""File-name parsing for both data layouts, folder-derived case/day, and hostile names."""

from __future__ import annotations

from pathlib import Path, PureWindowsPath

import pytest

from segapp.io.naming import SliceName, format_slice_name, parse_slice_name, parse_spacing, slice_id


def test_prepared_layout_name() -> None:
    parsed = parse_slice_name("case123_day20_slice_0067_360_310_1.50_1.63.png")
    assert parsed == SliceName(
        case=123, day=20, slice=67, width=360, height=310, spacing_mm=(1.63, 1.50)
    )  # spacing is (row = pixel height, column = pixel width)
    assert parsed.id == "case123_day20_slice_0067"


def test_raw_name_takes_case_and_day_from_folders() -> None:
    path = Path("/data/train/case7/case7_day0/scans/slice_0001_266_266_1.50_1.50.png")
    parsed = parse_slice_name(path)
    assert parsed is not None
    assert (parsed.case, parsed.day, parsed.slice) == (7, 0, 1)
    assert parsed.id == "case7_day0_slice_0001"
    assert slice_id(str(path)) == "case7_day0_slice_0001"


def test_windows_path_parses_on_any_os() -> None:
    path = str(PureWindowsPath(r"C:\data\case42\case42_day3\scans\slice_0144_276_276_1.63_1.63.png"))
    assert slice_id(path) == "case42_day3_slice_0144"
    assert parse_spacing(path) == (1.63, 1.63)


def test_file_name_case_wins_over_folders() -> None:
    parsed = parse_slice_name("case1_day1/case9_day8_slice_0002_234_234_1.50_1.50.png")
    assert parsed is not None and (parsed.case, parsed.day) == (9, 8)


def test_bare_raw_name_has_no_id() -> None:
    parsed = parse_slice_name("slice_0067_266_266_1.50_1.50.png")
    assert parsed is not None
    assert parsed.case is None and parsed.day is None and parsed.id is None
    assert parsed.spacing_mm == (1.5, 1.5)


@pytest.mark.parametrize(
    ("name", "spacing"),
    [
        ("slice_0067_266_266_1.50_1.63", (1.63, 1.5)),  # no extension: ".63" is not one
        ("slice_0067_266_266_1.50_1.50.PNG", (1.5, 1.5)),
        ("slice_0067_266_266_1.50_1.50.tiff", (1.5, 1.5)),
        ("slice_0067_266_266_1.5_1.25.png", (1.25, 1.5)),
        ("slice_0067_266_266_2_3.png", (3.0, 2.0)),
    ],
)
def test_name_variants_parse(name: str, spacing: tuple[float, float]) -> None:
    parsed = parse_slice_name(name)
    assert parsed is not None and (parsed.slice, parsed.width, parsed.height) == (67, 266, 266)
    assert parsed.spacing_mm == spacing


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/",
        "image.png",
        "slice_0067.png",
        "slice_0067_266_266_1.50.png",  # one spacing missing
        "slice_0067_266_266_1.50_1.50_extra.png",
        "xslice_0067_266_266_1.50_1.50.png",
        "slice_0067_0_266_1.50_1.50.png",  # zero width
        "slice_0067_266_266_0.00_1.50.png",  # zero spacing
        "slice_٠٠٦٧_266_266_1.50_1.50.png",  # Arabic-Indic digits
        "slice_0067_266_266_1.50_1.50.png/",  # separator at the end: a folder
        "slice_0067_266_266_1.50_1.50 (1).png",
        "ünïcödé_😀.png",
        "case1_day2_" + "9" * 300 + ".png",
        "slice_" + "0" * 300 + "_266_266_1.50_1.50.png",
        "a" * 300,
        "slice_0067\x00_266_266_1.50_1.50.png",
    ],
)
def test_non_matching_names_give_none(name: str) -> None:
    assert parse_slice_name(name) is None
    assert parse_spacing(name) is None
    assert slice_id(name) is None


def test_folder_without_case_day_pattern_is_ignored() -> None:
    parsed = parse_slice_name("case7/day0/scans/slice_0001_266_266_1.50_1.50.png")
    assert parsed is not None and parsed.id is None


@pytest.mark.parametrize(
    "fields",
    [
        (123, 20, 67, 266, 266, (1.5, 1.5)),
        (0, 0, 1, 360, 310, (1.63, 1.5)),
        (85, 3, 12345, 234, 276, (1.25, 0.75)),
    ],
)
def test_format_is_the_inverse_of_parse(fields: tuple) -> None:
    case, day, number, width, height, spacing = fields
    stem = format_slice_name(case, day, number, width, height, spacing)
    parsed = parse_slice_name(stem + ".png")
    assert parsed == SliceName(case, day, number, width, height, spacing)
    assert parse_slice_name(stem) == parsed


def test_format_matches_the_data_set_names() -> None:
    # Hand-written from the prepared data set: width before height, pixel width before height.
    assert (
        format_slice_name(123, 20, 67, 360, 310, (1.63, 1.5)) == "case123_day20_slice_0067_360_310_1.50_1.63"
    )


@pytest.mark.parametrize(
    "args",
    [
        (-1, 0, 1, 266, 266, (1.5, 1.5)),
        (1, 0, 1, 0, 266, (1.5, 1.5)),
        (1, 0, 1, 266, 266, (0.0, 1.5)),
        (1, 0, 1, 266, 266, (float("nan"), 1.5)),
    ],
)
def test_format_refuses_bad_values(args: tuple) -> None:
    with pytest.raises(ValueError):
        format_slice_name(*args)
