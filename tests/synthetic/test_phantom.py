"""Tests for the phantom generator: determinism, image/mask agreement, layouts, CLI."""

from __future__ import annotations

import csv
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segapp.io.rle import rle_decode
from segapp.labels import LABEL2ID
from segapp.phantom import main
from segapp.synthetic import (
    ORGANS,
    PROTOCOLS,
    SLICES_PER_SCAN,
    dataset_slice,
    generate_dataset,
    generate_slice,
    make_case,
    minmax_uint8,
    render_slice,
)

NAME = re.compile(r"^case(\d+)_day(\d+)_slice_(\d{4})_(\d+)_(\d+)_(\d+\.\d\d)_(\d+\.\d\d)\.png$")
RAW_NAME = re.compile(r"^slice_(\d{4})_(\d+)_(\d+)_(\d+\.\d\d)_(\d+\.\d\d)\.png$")
SPACING = {(w, h): s for w, h, s in PROTOCOLS}


def _erode(mask: np.ndarray) -> np.ndarray:
    """4-neighbour erosion; outside the image counts as off."""
    p = np.pad(mask, 1)
    return p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def slices():
    """60 slices, one case each: the sample the statistical tests look at."""
    return [generate_slice(seed) for seed in range(60)]


# --- single slices


def test_minmax_uint8_matches_hand_computation():
    image = np.array([[10, 20], [30, 110]], dtype=np.uint16)
    # (20-10)/100*255 = 25.5 -> 26 (round half to even), (30-10)/100*255 = 51
    assert minmax_uint8(image).tolist() == [[0, 26], [51, 255]]
    assert minmax_uint8(np.full((3, 4), 7, np.uint16)).tolist() == [[0] * 4] * 3


def test_same_seed_same_slice_other_seed_other_slice():
    a, b, c = generate_slice(7), generate_slice(7), generate_slice(8)
    assert np.array_equal(a.image16, b.image16) and np.array_equal(a.mask, b.mask)
    assert all(np.array_equal(a.organ_masks[k], b.organ_masks[k]) for k in ORGANS)
    assert a.file_name == b.file_name
    assert a.image16.shape != c.image16.shape or not np.array_equal(a.image16, c.image16)


def test_slice_contract(slices):
    for sl in slices:
        height, width = sl.mask.shape
        assert sl.image16.dtype == np.uint16 and sl.image16.shape == (height, width)
        assert sl.mask.dtype == np.uint8 and set(np.unique(sl.mask)) <= {0, 1, 2, 3}
        assert sl.image8.dtype == np.uint8 and sl.image8.min() == 0 and sl.image8.max() == 255
        assert set(sl.organ_masks) == set(ORGANS)
        assert all(m.dtype == bool and m.shape == (height, width) for m in sl.organ_masks.values())
        assert sl.spacing_mm == (SPACING[(width, height)],) * 2
        w, h, pw, ph = NAME.match(sl.file_name).groups()[3:]
        assert (int(w), int(h), float(pw), float(ph)) == (width, height, *sl.spacing_mm)
        assert 1 <= sl.slice_index <= SLICES_PER_SCAN


def test_mask_is_the_highest_id_among_organ_masks(slices):
    for sl in slices:
        expected = np.zeros_like(sl.mask)
        for name in ORGANS:  # ids ascend, so a later one overwrites
            expected[sl.organ_masks[name]] = LABEL2ID[name]
        assert np.array_equal(sl.mask, expected)


def test_empty_share_is_about_half(slices):
    empty = sum(not sl.mask.any() for sl in slices)
    assert 0.3 <= empty / len(slices) <= 0.7


def test_organs_are_inside_the_body_and_brighter_than_air(slices):
    for sl in slices:
        image = sl.image16.astype(np.float64)
        air = np.concatenate([image[:8, :8].ravel(), image[:8, -8:].ravel()])
        # The body: per row and per column, from the first to the last clearly bright pixel.
        bright = image > air.mean() + 6 * air.std()
        rows, cols = np.nonzero(bright)
        for name in ORGANS:
            organ = sl.organ_masks[name]
            if organ.sum() < 30:
                continue
            # Gas makes parts dark as air (a gas-filled colon nearly all), but walls and
            # fluid are bright; stomach and small bowel are bright on average too.
            assert np.percentile(image[organ], 90) > 2 * air.mean(), (sl.id, name)
            if name != "large_bowel":
                assert image[organ].mean() > 2 * air.mean(), (sl.id, name)
            r, c = np.nonzero(organ)
            assert rows.min() <= r.min() and r.max() <= rows.max()
            assert cols.min() <= c.min() and c.max() <= cols.max()


def test_stomach_is_brighter_than_air():
    sl = next(
        s
        for s in (generate_slice(seed, empty=False) for seed in range(50))
        if s.organ_masks["stomach"].sum() > 200
    )
    image = sl.image16.astype(np.float64)
    assert np.median(image[sl.organ_masks["stomach"]]) > 3 * np.median(image[:10, :10])


def test_empty_flag_and_sizes():
    for i, (width, height, spacing) in enumerate(PROTOCOLS):
        full = generate_slice(100 + i, size=(width, height), empty=False)
        empty = generate_slice(100 + i, size=(width, height), empty=True)
        assert full.mask.shape == empty.mask.shape == (height, width)
        assert full.spacing_mm == (spacing, spacing)
        assert full.mask.any() and not empty.mask.any()
        assert not any(m.any() for m in empty.organ_masks.values())
    with pytest.raises(ValueError, match="not one of"):
        generate_slice(0, size=(256, 256))
    with pytest.raises(ValueError, match=">= 0"):
        generate_slice(-1)


def test_body_size_follows_pixel_spacing():
    # The same patient drawn at 1.50 mm and at 1.63 mm: fewer pixels across at 1.63 mm.
    small = make_case(np.random.default_rng(5), size=(276, 276))
    large = make_case(np.random.default_rng(5), size=(266, 266))
    assert small.body.a == pytest.approx(large.body.a)
    width = {}
    for case in (small, large):
        sl = render_slice(case, 60, np.random.default_rng(0))
        image = sl.image16.astype(np.float64)
        row = image[image.shape[0] // 2]
        on = np.flatnonzero(row > row.max() * 0.25)
        width[case.spacing_mm[1]] = on[-1] - on[0] + 1
    assert width[1.63] == pytest.approx(width[1.50] * 1.50 / 1.63, rel=0.06)


def test_a_case_on_two_days_is_one_patient_with_moved_bowel():
    day0 = make_case(np.random.default_rng(21), case_id=4, day=0)
    day9 = make_case(np.random.default_rng(21), case_id=4, day=9)
    assert day0.body == day9.body and (day0.width, day0.height) == (day9.width, day9.height)
    assert day0.layout.z_colon0 == day9.layout.z_colon0  # same colon route...
    assert not np.array_equal(day0.large_bowel.radii, day9.large_bowel.radii)  # ...other filling
    assert day0.small_bowel.points.shape != day9.small_bowel.points.shape or not np.array_equal(
        day0.small_bowel.points, day9.small_bowel.points
    )


def test_consecutive_slices_of_a_case_are_coherent():
    case = make_case(np.random.default_rng(11), size=(266, 266))
    masks = [render_slice(case, z, np.random.default_rng(z)).mask > 0 for z in range(20, 110)]
    ious = [
        (a & b).sum() / (a | b).sum() for a, b in zip(masks, masks[1:]) if a.sum() > 300 and b.sum() > 300
    ]
    assert len(ious) > 20
    assert np.median(ious) > 0.75 and min(ious) > 0.4


def test_organ_masks_overlap_only_on_a_rim():
    base = make_case(np.random.default_rng(3), size=(266, 266))
    for overlap in (False, True):
        case = dataclasses.replace(base, overlap=overlap)
        shared = 0
        for z in range(40, 100, 3):
            sl = render_slice(case, z, np.random.default_rng(z))
            for i, name in enumerate(ORGANS):
                later = np.zeros_like(sl.mask, dtype=bool)
                for other in ORGANS[i + 1 :]:
                    later |= sl.organ_masks[other]
                both = sl.organ_masks[name] & later
                shared += both.sum()
                assert not (both & _erode(later)).any()  # never deeper than the rim
        assert (shared > 0) == overlap


# --- data sets


def test_notebook_layout(tmp_path):
    summary = generate_dataset(tmp_path / "ds", train=20, valid=10, seed=3, progress=False)
    root = tmp_path / "ds"
    cases = {}
    for split, count in (("train", 20), ("valid", 10)):
        images = sorted(p.name for p in (root / split / "images").iterdir())
        masks = sorted(p.name for p in (root / split / "masks").iterdir())
        assert images == masks and len(images) == count
        cases[split] = {int(NAME.match(n).group(1)) for n in images}
        for name in images[:4]:
            case, _, _, w, h, pw, ph = NAME.match(name).groups()
            image, mask = (
                Image.open(root / split / "images" / name),
                Image.open(root / split / "masks" / name),
            )
            assert image.mode == "RGB" and mask.mode == "L"
            assert image.size == mask.size == (int(w), int(h))
            assert float(pw) == float(ph) == SPACING[(int(w), int(h))]
            rgb = np.asarray(image)
            assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
            assert set(np.unique(np.asarray(mask))) <= {0, 1, 2, 3}
    assert not cases["train"] & cases["valid"]
    assert cases["train"] == set(summary["train_cases"]) and cases["valid"] == set(summary["valid_cases"])
    assert summary["train"] == 20 and summary["valid"] == 10 and sum(summary["sizes"].values()) == 30


def test_written_files_match_the_slices(tmp_path):
    generate_dataset(tmp_path, train=6, valid=0, seed=9, progress=False)
    for path in sorted((tmp_path / "train" / "images").iterdir())[:3]:
        case, day, index = (int(v) for v in NAME.match(path.name).groups()[:3])
        sl = dataset_slice(9, case, day, index)
        assert sl.file_name == path.name
        assert np.array_equal(np.asarray(Image.open(path))[..., 0], sl.image8)
        assert np.array_equal(np.asarray(Image.open(tmp_path / "train" / "masks" / path.name)), sl.mask)


def test_dataset_is_byte_identical_per_seed(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        generate_dataset(tmp_path / name, train=8, valid=4, seed=seed, progress=False)
    a, b, c = (_files(tmp_path / n) for n in "abc")
    assert a == b
    assert a != c


def test_workers_do_not_change_the_files(tmp_path):
    generate_dataset(tmp_path / "one", train=10, valid=0, seed=2, raw=True, progress=False)
    generate_dataset(tmp_path / "two", train=10, valid=0, seed=2, raw=True, progress=False, workers=2)
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


def test_raw_layout(tmp_path):
    generate_dataset(tmp_path, train=45, valid=0, seed=4, raw=True, progress=False)
    scans = sorted((tmp_path / "train").rglob("*.png"))
    assert len(scans) == 45
    with (tmp_path / "train.csv").open(newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == ["id", "class", "segmentation"]
        rows = list(reader)
    assert len(rows) == 3 * 45
    by_id: dict[str, dict[str, str]] = {}
    for id_, cls, rle in rows:
        by_id.setdefault(id_, {})[cls] = rle
    assert all(set(v) == {"large_bowel", "small_bowel", "stomach"} for v in by_id.values())

    volumes: dict[Path, list[tuple[int, np.ndarray]]] = {}
    for path in scans:
        case_dir, day_dir = path.parents[2].name, path.parents[1].name
        assert day_dir.startswith(case_dir + "_day") and path.parent.name == "scans"
        index, w, h, pw, ph = RAW_NAME.match(path.name).groups()
        header = path.read_bytes()[16:26]  # PNG IHDR: width, height, bit depth, colour type
        assert header[8:10] == bytes([16, 0])  # 16-bit grayscale
        image = Image.open(path)
        assert image.size == (int(w), int(h))
        assert float(pw) == SPACING[(int(w), int(h))]
        id_ = f"{day_dir}_slice_{index}"
        masks = {cls: rle_decode(rle, (int(h), int(w))) for cls, rle in by_id[id_].items()}
        if len(volumes) < 2 and int(index) % 5 == 0:  # spot checks against the generator
            case, day = (int(v) for v in re.match(r"case(\d+)_day(\d+)", day_dir).groups())
            sl = dataset_slice(4, case, day, int(index))
            assert np.array_equal(np.asarray(image), sl.image16)
            assert all(np.array_equal(masks[cls], sl.organ_masks[cls]) for cls in masks)
        union = masks["stomach"] | masks["small_bowel"] | masks["large_bowel"]
        volumes.setdefault(path.parent, []).append((int(index), union))

    # Each case-day is a run of 20-40 consecutive slices (the last may be cut short), and
    # neighbours look alike.
    ious = []
    for volume in volumes.values():
        indices = [i for i, _ in volume]
        assert indices == list(range(indices[0], indices[0] + len(indices)))
        assert len(indices) <= 40
        for (_, a), (_, b) in zip(volume, volume[1:]):
            if a.sum() > 300 and b.sum() > 300:
                ious.append((a & b).sum() / (a | b).sum())
    assert [len(v) >= 20 for v in volumes.values()].count(False) <= 1
    assert len(ious) >= 5 and np.median(ious) > 0.7


def test_generate_dataset_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=">= 0"):
        generate_dataset(tmp_path / "x", train=-1, valid=0, seed=0, progress=False)
    with pytest.raises(ValueError, match="raw layout"):
        generate_dataset(tmp_path / "x", train=5, valid=5, seed=0, raw=True, progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        generate_dataset(tmp_path / "full", train=2, valid=0, seed=0, progress=False)


# --- command line


def test_cli_writes_refuses_and_overwrites(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["--out", str(out), "--train", "4", "--valid", "2", "--seed", "1", "--quiet"]) == 0
    assert "4 train + 2 valid" in capsys.readouterr().out
    assert len(list((out / "valid" / "masks").iterdir())) == 2

    assert main(["--out", str(out), "--train", "3", "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err

    (out / "notes.txt").write_text("mine")
    assert main(["--out", str(out), "--train", "3", "--quiet", "--overwrite"]) == 0
    assert len(list((out / "train" / "images").iterdir())) == 3
    assert not any((out / "valid" / "masks").iterdir())  # the old valid split is gone
    assert (out / "notes.txt").read_text() == "mine"

    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "neg"), "--train", "-3"])
    assert exc.value.code == 2
    assert "must be >= 0" in capsys.readouterr().err
