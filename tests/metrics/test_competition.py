"""The competition score: exact 3D Hausdorff, case-day volumes from names, hand-computed scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segapp.metrics.competition import (
    DICE_WEIGHT,
    HAUSDORFF_WEIGHT,
    VolumeError,
    competition_score,
    consecutive_volumes,
    group_volumes,
    hausdorff_distance,
    squared_distance_transform,
)


def slice_name(case: int, day: int, number: int, width: int = 10, height: int = 10) -> str:
    return f"case{case}_day{day}_slice_{number:04d}_{width}_{height}_1.50_1.50.png"


def brute_hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    pa, pb = np.argwhere(a).astype(float), np.argwhere(b).astype(float)
    d = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1))
    return max(d.min(1).max(), d.min(0).max())


def test_distance_transform_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    for shape in [(1,), (7,), (5, 9), (1, 6), (4, 7, 9), (3, 1, 5)]:
        mask = rng.random(shape) < 0.15
        mask.flat[rng.integers(mask.size)] = True
        points = np.argwhere(mask)
        grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(
            -1, len(shape)
        )
        expected = ((grid[:, None, :] - points[None, :, :]) ** 2).sum(-1).min(1).reshape(shape)
        assert np.array_equal(squared_distance_transform(mask), expected)
    # Slices at depths with gaps: as the dense volume with empty slices in the gaps.
    dense = np.zeros((9, 5, 6), bool)
    depths = [0, 3, 4, 8]
    dense[depths] = rng.random((4, 5, 6)) < 0.2
    dense[3, 2, 2] = True
    assert np.array_equal(
        squared_distance_transform(dense[depths], depths=depths), squared_distance_transform(dense)[depths]
    )
    pred = np.zeros_like(dense)
    pred[8, 0, 0] = pred[0, 4, 5] = True
    assert hausdorff_distance(pred[depths], dense[depths], depths=depths) == pytest.approx(
        brute_hausdorff(pred, dense)
    )


def test_hausdorff_distance_matches_brute_force_and_hand_cases() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        a, b = rng.random((4, 9, 11)) < 0.1, rng.random((4, 9, 11)) < 0.1
        a[0, 0, 0] = b[3, 8, 10] = True
        assert hausdorff_distance(a, b) == pytest.approx(brute_hausdorff(a, b), abs=1e-12)
    a, b = np.zeros((3, 10, 10), bool), np.zeros((3, 10, 10), bool)
    assert hausdorff_distance(a, b) == 0.0
    a[0, 1, 1] = True
    assert hausdorff_distance(a, b) == math.inf
    b[2, 1, 5] = True  # 2 slices deep, 4 columns across
    assert hausdorff_distance(a, b) == pytest.approx(math.sqrt(4 + 16))
    # Every voxel counts, not only surfaces: a filled disc against its ring.
    disc = np.zeros((1, 21, 21), bool)
    rows, cols = np.mgrid[:21, :21]
    disc[0] = (rows - 10) ** 2 + (cols - 10) ** 2 <= 64
    ring = disc & ~((rows - 10) ** 2 + (cols - 10) ** 2 <= 25)[None]
    assert hausdorff_distance(disc, ring) == pytest.approx(brute_hausdorff(disc, ring))
    assert hausdorff_distance(disc, ring) >= 3.0


def test_group_volumes() -> None:
    names = [
        "case2_day1_slice_0012_20_10_1.50_1.50.png",
        "case1_day3_slice_0005_20_10_1.50_1.50.png",
        "case2_day1_slice_0010_20_10_1.50_1.50.png",
    ]
    volumes = group_volumes(names, [(10, 20)] * 3)
    assert [v.name for v in volumes] == ["case1_day3", "case2_day1"]
    assert volumes[1].indices == (2, 0) and volumes[1].depths == (0, 2) and volumes[1].depth == 3
    assert volumes[1].diagonal == pytest.approx(math.sqrt(9 + 100 + 400))
    with pytest.raises(VolumeError, match="does not name its case"):
        group_volumes(["slice_0001_20_10_1.50_1.50.png"], [(10, 20)])
    with pytest.raises(VolumeError, match="mixes slice sizes"):
        group_volumes(names[:1] + names[2:], [(10, 20), (12, 20)])
    with pytest.raises(VolumeError, match="more than once"):
        group_volumes([names[0], "x/" + names[0]], [(10, 20)] * 2)


def test_competition_score_on_hand_built_volumes() -> None:
    names = [f"case1_day1_slice_{s:04d}_10_10_1.50_1.50.png" for s in (1, 2)]
    target = [np.zeros((10, 10), np.uint8) for _ in names]
    target[0][0, 0] = 1  # stomach, one voxel in slice 1
    target[0][5:8, 5:8] = 2
    target[1][5:8, 5:8] = 2
    perfect = competition_score([t.copy() for t in target], target, names)
    assert perfect["score"] == 1.0 and perfect["dice"] == 1.0 and perfect["hausdorff_3d"] == 0.0

    pred = [t.copy() for t in target]
    pred[0][0, 0] = 0
    pred[1][0, 3] = 1  # the stomach voxel moved one slice down and 3 columns right
    result = competition_score(pred, target, names)
    # Dice: the stomach scores 0 in both slices, the bowels 1: 4 of 6 (slice, organ) pairs.
    assert result["dice"] == pytest.approx(4 / 6)
    # 3D Hausdorff of the stomach: sqrt(1 + 9) voxels over the diagonal sqrt(2^2 + 10^2 + 10^2).
    stomach = math.sqrt(10) / math.sqrt(204)
    assert result["per_class"]["stomach"]["hausdorff_3d"] == pytest.approx(stomach)
    assert result["per_class"]["stomach"]["hausdorff_3d_px"] == pytest.approx(math.sqrt(10))
    assert result["per_class"]["small_bowel"]["hausdorff_3d"] == 0.0
    assert result["per_class"]["large_bowel"]["hausdorff_3d_px"] is None  # absent from both
    assert result["hausdorff_3d"] == pytest.approx(stomach / 3)
    assert result["score"] == pytest.approx(0.4 * 4 / 6 + 0.6 * (1 - stomach / 3))

    # An organ predicted where there is none scores the worst Hausdorff, 1.
    pred = [t.copy() for t in target]
    pred[1][9, 9] = 3
    assert competition_score(pred, target, names)["per_class"]["large_bowel"]["hausdorff_3d"] == 1.0


def test_an_organ_absent_from_both_scores_0_and_one_in_only_one_mask_scores_1() -> None:
    names = [slice_name(1, 1, n) for n in (1, 2)]
    target = [np.zeros((10, 10), np.uint8) for _ in names]
    pred = [np.zeros((10, 10), np.uint8) for _ in names]
    target[0][2:4, 2:4] = 3  # large bowel only in the truth
    pred[1][5, 5] = 2  # small bowel only in the prediction; no stomach anywhere
    result = competition_score(pred, target, names)
    per_class = result["per_class"]
    assert per_class["stomach"] == {"dice": 1.0, "hausdorff_3d": 0.0, "hausdorff_3d_px": None}
    assert per_class["small_bowel"]["hausdorff_3d"] == per_class["large_bowel"]["hausdorff_3d"] == 1.0
    assert per_class["small_bowel"]["hausdorff_3d_px"] is per_class["large_bowel"]["hausdorff_3d_px"] is None
    # Dice per (slice, organ): slice 1 scores 1, 1, 0 and slice 2 scores 1, 0, 1.
    assert per_class["small_bowel"]["dice"] == per_class["large_bowel"]["dice"] == 0.5
    assert result["dice"] == pytest.approx(4 / 6)
    assert result["hausdorff_3d"] == pytest.approx(2 / 3)  # (0 + 1 + 1) / 3 organs
    assert result["score"] == pytest.approx(0.4 * 4 / 6 + 0.6 * (1 - 2 / 3))


def test_a_slice_gap_keeps_its_depth_in_the_distance_and_the_diagonal() -> None:
    # Slices 3 and 6 of a 6 x 8 scan: the volume spans D = 4 slices, two of them missing.
    names = [slice_name(1, 1, n, width=8, height=6) for n in (3, 6)]
    target = [np.zeros((6, 8), np.uint8) for _ in names]
    target[0][1, 1] = 1
    pred = [t.copy() for t in target]
    pred[1][1, 5] = 1  # 3 slices deeper and 4 columns across: sqrt(3^2 + 4^2) = 5 voxels
    result = competition_score(pred, target, names)
    stomach = result["per_class"]["stomach"]
    assert stomach["hausdorff_3d_px"] == pytest.approx(5.0)
    # Closing the gap would give sqrt(1 + 16) over sqrt(2^2 + 6^2 + 8^2) instead.
    assert stomach["hausdorff_3d"] == pytest.approx(5 / math.sqrt(4**2 + 6**2 + 8**2))
    assert stomach["dice"] == 0.5  # slice 3 matches, slice 6 has a stomach only in the prediction
    assert result["dice"] == pytest.approx(5 / 6)
    assert result["hausdorff_3d"] == pytest.approx(5 / math.sqrt(116) / 3)
    assert result["score"] == pytest.approx(0.4 * 5 / 6 + 0.6 * (1 - 5 / math.sqrt(116) / 3))


def test_dice_and_hausdorff_terms_combine_as_0_4_and_0_6() -> None:
    assert (DICE_WEIGHT, HAUSDORFF_WEIGHT) == (0.4, 0.6)
    names = [slice_name(1, 1, 1)]
    target = [np.zeros((10, 10), np.uint8)]
    target[0][0:2, 0:2] = 1
    pred = [np.zeros((10, 10), np.uint8)]
    pred[0][0:1, 0:2] = 1  # half of the truth's stomach
    result = competition_score(pred, target, names)
    # Stomach Dice 2 * 2 / (2 + 4) = 2/3; the other organs are absent from both and score 1.
    assert result["per_class"]["stomach"]["dice"] == pytest.approx(2 / 3)
    assert result["dice"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    # The truth's row 1 is 1 voxel from the prediction; one slice: diagonal sqrt(1 + 100 + 100).
    hd_term = 1 / math.sqrt(201) / 3
    assert result["hausdorff_3d"] == pytest.approx(hd_term)
    assert result["score"] == pytest.approx(0.4 * (8 / 9) + 0.6 * (1 - hd_term))


def test_volumes_are_case_days_grouped_by_name_whatever_the_order() -> None:
    # Three case-days that share slice numbers, interleaved: grouping by case or by day
    # alone would put slice 1 twice into one volume.
    keys = [(1, 1, 2), (2, 1, 1), (1, 2, 3), (1, 1, 1), (1, 2, 1)]
    names = [slice_name(case, day, number) for case, day, number in keys]
    target = [np.zeros((10, 10), np.uint8) for _ in names]
    for mask in target:
        mask[4:6, 4:6] = 2
    target[1][0, 0] = 1  # a stomach voxel in case2_day1 only ...
    pred = [t.copy() for t in target]
    pred[1][0, 0] = 0  # ... that the prediction misses
    volumes = group_volumes(names, [t.shape for t in target])
    assert [(v.name, v.indices, v.depths) for v in volumes] == [
        ("case1_day1", (3, 0), (0, 1)),
        ("case1_day2", (4, 2), (0, 2)),
        ("case2_day1", (1,), (0,)),
    ]
    result = competition_score(pred, target, names)
    assert result["volumes"] == 3 and result["slices"] == 5
    # The stomach scores 1 in case2_day1 and 0 in the two others: 1/3; the term is 1 / (3 x 3).
    assert result["per_class"]["stomach"]["hausdorff_3d"] == pytest.approx(1 / 3)
    assert result["hausdorff_3d"] == pytest.approx(1 / 9)
    assert result["dice"] == pytest.approx(14 / 15)  # one (slice, organ) pair of 15 scores 0


def test_competition_score_refuses_unequal_or_empty_inputs() -> None:
    mask = np.zeros((10, 10), np.uint8)
    with pytest.raises(ValueError, match="equally many"):
        competition_score([mask], [mask, mask], [slice_name(1, 1, 1), slice_name(1, 1, 2)])
    with pytest.raises(ValueError, match="at least one"):
        competition_score([], [], [])


def test_whole_volumes_score_as_the_same_slices_named_as_case_days() -> None:
    rng = np.random.default_rng(3)
    depths = (4, 3)
    truth = [rng.integers(0, 4, size=(8, 9)).astype(np.uint8) for _ in range(sum(depths))]
    pred = [np.where(rng.random(t.shape) < 0.2, 0, t).astype(np.uint8) for t in truth]
    volumes = consecutive_volumes([("a", (4, 8, 9)), ("b", (3, 8, 9))])
    assert [(v.name, v.indices, v.depths, v.depth) for v in volumes] == [
        ("a", (0, 1, 2, 3), (0, 1, 2, 3), 4), ("b", (4, 5, 6), (0, 1, 2), 3)]
    names = [slice_name(1, 0, n, 9, 8) for n in range(1, 5)] + [slice_name(2, 0, n, 9, 8) for n in range(1, 4)]
    by_volume = competition_score(pred, truth, volumes=volumes)
    assert by_volume == competition_score(pred, truth, names)
    assert by_volume["volumes"] == 2 and by_volume["slices"] == 7
    with pytest.raises(ValueError, match="one of the two"):
        competition_score(pred, truth, names, volumes=volumes)
    with pytest.raises(ValueError, match="one of the two"):
        competition_score(pred, truth)
    with pytest.raises(ValueError, match="every slice exactly once"):
        competition_score(pred, truth, volumes=volumes[:1])
