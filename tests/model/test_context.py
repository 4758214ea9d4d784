"""2.5D input: the channel offsets in the model folder, the neighbours of each slice, the stack."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from segapp.model.context import check_offsets, context_indices, context_stack, named_context_indices
from segapp.model.processing import CONTEXT_KEY, PREPROCESSOR_FILE, ProcessingConfig, preprocess, resize_gray


def test_offsets_are_saved_and_loaded(tmp_path: Path) -> None:
    config = ProcessingConfig(height=64, width=64, context_offsets=(-2, 0, 2))
    config.save(tmp_path)
    stored = json.loads((tmp_path / PREPROCESSOR_FILE).read_text())
    assert stored[CONTEXT_KEY] == [-2, 0, 2]
    loaded = ProcessingConfig.from_folder(tmp_path)
    assert loaded == config and loaded.is_2_5d and loaded.context_offsets == (-2, 0, 2)


def test_the_2d_default_writes_nothing_and_reads_back_flat(tmp_path: Path) -> None:
    ProcessingConfig().save(tmp_path)
    assert CONTEXT_KEY not in json.loads((tmp_path / PREPROCESSOR_FILE).read_text())
    loaded = ProcessingConfig.from_folder(tmp_path)
    assert loaded.context_offsets == (0, 0, 0) and not loaded.is_2_5d


@pytest.mark.parametrize("bad", [[-2, 2], [0, 0, 0, 0], [0, 1.5, 0], [True, 0, 0], "-2,0,2", None])
def test_bad_offsets_in_the_folder_are_named(tmp_path: Path, bad: object) -> None:
    ProcessingConfig().save(tmp_path)
    data = json.loads((tmp_path / PREPROCESSOR_FILE).read_text())
    data[CONTEXT_KEY] = bad
    (tmp_path / PREPROCESSOR_FILE).write_text(json.dumps(data))
    if bad == "-2,0,2":  # the command line's spelling is read too
        assert ProcessingConfig.from_folder(tmp_path).context_offsets == (-2, 0, 2)
        return
    with pytest.raises(ValueError, match=f"{CONTEXT_KEY} must be three whole numbers"):
        ProcessingConfig.from_folder(tmp_path)


def test_check_offsets_reads_the_command_line_form() -> None:
    assert check_offsets("-1, 0,1") == (-1, 0, 1)
    with pytest.raises(ValueError, match="such as -2,0,2; got 'a,b,c'"):
        check_offsets("a,b,c")
    with pytest.raises(ValueError, match="got '1,2'"):
        check_offsets("1,2")


def test_volume_neighbours_stop_at_the_edges() -> None:
    rows = context_indices(range(6), (-2, 0, 2))
    assert rows.tolist() == [[0, 0, 2], [0, 1, 3], [0, 2, 4], [1, 3, 5], [2, 4, 5], [3, 5, 5]]
    assert context_indices(range(3), (0, 0, 0)).tolist() == [[0, 0, 0], [1, 1, 1], [2, 2, 2]]
    assert context_indices([7], (-1, 0, 1)).tolist() == [[0, 0, 0]]  # one slice: itself everywhere


def test_a_gap_acts_as_the_end_of_the_volume() -> None:
    # Positions 3 and 4 are missing; the input order is shuffled.
    positions = [6, 0, 5, 2, 1]
    rows = context_indices(positions, (-2, 0, 2))
    by_position = {positions[i]: [positions[j] for j in row] for i, row in enumerate(rows)}
    assert by_position == {
        0: [0, 0, 2],
        1: [0, 1, 2],  # +2 -> 3 is missing: the nearest present on the way is 2
        2: [0, 2, 2],  # +2 -> 4 is missing, and so is 3: the slice itself
        5: [5, 5, 6],  # -2 -> 3 is missing, and so is 4
        6: [5, 6, 6],  # -2 -> 4 is missing: 5
    }


def test_two_slices_at_one_position_are_refused() -> None:
    with pytest.raises(ValueError, match="share one position"):
        context_indices([0, 1, 1], (-1, 0, 1))


def test_named_neighbours_per_case_day_toward_the_head() -> None:
    names = [
        "case1_day2_slice_0011_266_266_1.50_1.50.png",
        "case9_day0_slice_0011_266_266_1.50_1.50.png",  # another case-day, same number
        "case1_day2_slice_0010_266_266_1.50_1.50.png",
        "plain.png",  # no competition name: on its own
        "case1_day2_slice_0012_266_266_1.50_1.50.png",
        "case1_day2_slice_0014_266_266_1.50_1.50.png",  # 0013 missing
    ]
    rows = named_context_indices(names, (-1, 0, 1))
    # +1 is one slice toward the head, which is slice number - 1 (numbers grow toward the feet).
    assert rows[0].tolist() == [4, 0, 2]
    assert rows[2].tolist() == [0, 2, 2]  # the lowest number is the head end
    assert rows[1].tolist() == [1, 1, 1] and rows[3].tolist() == [3, 3, 3]
    assert rows[4].tolist() == [4, 4, 0]  # 0013 missing: that side is the edge
    assert rows[5].tolist() == [5, 5, 5]
    # Paths in the raw layout carry case and day in their folders.
    raw = ["case3/case3_day1/scans/slice_0002_266_266_1.50_1.50.png", "case3/case3_day1/scans/slice_0001_266_266_1.50_1.50.png"]
    assert named_context_indices(raw, (1, 0, -1)).tolist() == [[1, 0, 0], [1, 1, 0]]


def test_the_stack_holds_the_neighbours_and_a_misfit_becomes_the_slice() -> None:
    planes = [np.full((4, 5), 10 * k, dtype=np.uint8) for k in range(5)]
    planes[4] = np.zeros((3, 3), dtype=np.uint8)  # wrongly named as part of this volume
    rows = context_indices(range(5), (-1, 0, 1))
    stack = context_stack(planes, rows, 1)
    assert stack.shape == (3, 4, 5) and stack.dtype == np.uint8
    assert [int(stack[c, 0, 0]) for c in range(3)] == [0, 10, 20]
    assert [int(v) for v in context_stack(planes, rows, 3)[:, 0, 0]] == [20, 30, 30]
    volume = np.stack(planes[:4])
    assert np.array_equal(context_stack(volume, rows, 0), volume[[0, 0, 1]])


def test_preprocess_normalises_each_channel_of_a_stack() -> None:
    config = ProcessingConfig(height=8, width=8, context_offsets=(-1, 0, 1))
    slice_ = np.arange(64, dtype=np.uint8).reshape(8, 8)
    # A stack of three equal planes is the 2D input exactly (the 2D path resizes one plane).
    flat = preprocess([slice_], config)
    assert torch.equal(preprocess([np.stack([slice_] * 3)], config), flat)
    stack = np.stack([slice_, slice_ + 50, slice_ + 100])
    out = preprocess([stack], config)
    for c in range(3):
        expected = (torch.from_numpy(stack[c]).float() / 255 - config.image_mean[c]) / config.image_std[c]
        assert torch.allclose(out[0, c], expected)
    resized = resize_gray([np.zeros((3, 20, 16), np.uint8)], config)
    assert resized.shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="either slices or channel stacks"):
        resize_gray([slice_, stack], config)
    with pytest.raises(ValueError, match="channel stack"):
        resize_gray([np.zeros((2, 8, 8), np.uint8)], config)
