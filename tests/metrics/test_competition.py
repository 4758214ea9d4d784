"""The competition score: exact 3D Hausdorff, case-day volumes from names, hand-built volumes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segapp.metrics.competition import (
    VolumeError,
    competition_score,
    group_volumes,
    hausdorff_distance,
    squared_distance_transform,
)


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
    assert [(v.case, v.day) for v in volumes] == [(1, 3), (2, 1)]
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
