"""predict_volume: the batched slice path over a volume, organ volumes in mL, the 3D clean-up."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segapp.inference.volume import organ_volumes, remove_small_components
from segapp.io.readers import read_volume

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"


def test_each_slice_gets_the_mask_it_gets_alone(tiny_segmenter, one_torch_thread) -> None:
    volume = read_volume(NIBABEL_DATA / "anatomical.nii")
    seen: list[tuple[int, int]] = []
    result = tiny_segmenter.predict_volume(volume, batch_size=4, progress=lambda done, total: seen.append((done, total)))
    assert result.labels.shape == volume.shape and result.labels.dtype == np.uint8
    assert result.confidence.dtype == np.float16
    slices = volume.slices_uint8()
    for k in (0, volume.shape[0] // 2, volume.shape[0] - 1):
        alone = tiny_segmenter.predict(slices[k])
        assert np.array_equal(result.labels[k], alone.mask)
    assert seen[-1] == (volume.shape[0], volume.shape[0]) and len(seen) == -(-volume.shape[0] // 4)
    stats = result.stats_dict()
    assert set(stats["organs"]) == {"stomach", "small_bowel", "large_bowel"}
    assert stats["volume"]["slices"] == volume.shape[0]


def test_organ_volumes_by_hand() -> None:
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[1, 0:2, 0:3] = 1  # 6 voxels on slice 1
    labels[2, 0:1, 0:2] = 1  # 2 voxels on slice 2
    labels[3, 4, 5] = 3
    confidence = np.full(labels.shape, 0.5, np.float16)
    confidence[1] = 1.0
    organs = organ_volumes(labels, confidence, (3.0, 1.5, 2.0))  # voxel = 9 mm³
    stomach = organs["stomach"]
    assert stomach.voxels == 8 and stomach.volume_ml == pytest.approx(8 * 9 / 1000)
    assert stomach.slices == (1, 2) and stomach.max_area_mm2 == pytest.approx(6 * 3.0)
    assert stomach.mean_confidence == pytest.approx((6 * 1.0 + 2 * 0.5) / 8)
    assert organs["small_bowel"] == type(stomach)(0, 0.0, None, 0.0, None)
    assert organs["large_bowel"].slices == (3, 3)


def test_3d_clean_up_is_26_connected_and_measured_in_ml() -> None:
    labels = np.zeros((5, 10, 10), np.uint8)
    labels[0:3, 0:3, 0:3] = 2  # 27 voxels
    labels[3, 3, 3] = 2  # touches the block only at a corner: same 26-connected component
    labels[4, 8, 8] = 2  # an island of one voxel
    labels[4, 0, 9] = 1  # another class, one voxel
    spacing = (1.0, 1.0, 1.0)  # 1 voxel = 0.001 mL
    cleaned = remove_small_components(labels, 0.005, spacing)
    assert cleaned[3, 3, 3] == 2 and cleaned[0, 0, 0] == 2
    assert cleaned[4, 8, 8] == 0 and cleaned[4, 0, 9] == 0
    assert labels[4, 8, 8] == 2  # input untouched
    assert np.array_equal(remove_small_components(labels, 0.0, spacing), labels)
    # Bigger voxels: the same island is now 0.008 mL and stays.
    assert remove_small_components(labels, 0.005, (2.0, 2.0, 2.0))[4, 8, 8] == 2
