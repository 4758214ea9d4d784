"""Serving a 2.5D model: volumes get each slice's neighbours, a lone slice gets itself and a notice."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import save_tiny_model

from segapp.inference.segmenter import Segmenter
from segapp.io.readers import read_volume
from segapp.model.context import context_indices, context_stack

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"


@pytest.fixture(scope="module")
def segmenter_2_5d(tmp_path_factory: pytest.TempPathFactory) -> Segmenter:
    folder = save_tiny_model(tmp_path_factory.mktemp("models") / "ctx", context=(-2, 0, 2), seed=3)
    return Segmenter.from_pretrained(folder, device="cpu", max_batch_size=4)


def _smooth(shape: tuple[int, int], phase: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((np.sin(yy / 5 + phase) + np.cos(xx / 4 - phase) + 2) * 60).astype(np.uint8)


def test_a_single_slice_fills_every_channel_and_says_so(segmenter_2_5d: Segmenter, tiny_segmenter) -> None:
    slice_ = _smooth((40, 48), 0.0)
    prediction = segmenter_2_5d.predict(slice_)
    assert prediction.notice is not None and "offsets -2,0,2" in prediction.notice
    assert "used in every channel" in prediction.notice and "Volume tab" in prediction.notice
    assert prediction.stats_dict()["notice"] == prediction.notice
    # The slice in every channel is exactly the stack of three copies.
    stacked = segmenter_2_5d.predict_batch([slice_], stacks=[np.stack([slice_] * 3)])[0]
    assert stacked.notice is None and np.array_equal(stacked.mask, prediction.mask)
    assert np.array_equal(stacked.confidence, prediction.confidence)
    # A 2D model has nothing to say.
    assert tiny_segmenter.predict(slice_).notice is None
    assert tiny_segmenter.predict(slice_).stats_dict()["notice"] is None


def test_a_stack_of_the_wrong_shape_is_refused(segmenter_2_5d: Segmenter) -> None:
    slice_ = _smooth((40, 48), 0.0)
    with pytest.raises(ValueError, match="channel stack"):
        segmenter_2_5d.predict_batch([slice_], stacks=[np.stack([slice_] * 2)])
    with pytest.raises(ValueError, match="1 channel stacks for 2 slices"):
        segmenter_2_5d.predict_batch([slice_, slice_], stacks=[np.stack([slice_] * 3)])


def test_a_volume_feeds_each_slice_with_its_neighbours(segmenter_2_5d: Segmenter, monkeypatch, one_torch_thread) -> None:
    volume = read_volume(NIBABEL_DATA / "anatomical.nii")
    fed: list[np.ndarray] = []
    forward = segmenter_2_5d._forward

    def spy(pixels):
        fed.extend(pixels)
        return forward(pixels)

    monkeypatch.setattr(segmenter_2_5d, "_forward", spy)
    result = segmenter_2_5d.predict_volume(volume, batch_size=4)
    slices = volume.slices_uint8()
    rows = context_indices(range(volume.shape[0]), (-2, 0, 2))
    assert len(fed) == volume.shape[0]
    for k in (0, 1, volume.shape[0] // 2, volume.shape[0] - 1):
        assert np.array_equal(fed[k], context_stack(slices, rows, k))
    assert np.array_equal(fed[0], slices[[0, 0, 2]]) and np.array_equal(fed[-1], slices[[-3, -1, -1]])
    # Slice k's mask is that of its stack, not of the slice alone.
    k = volume.shape[0] // 2
    alone_stack = segmenter_2_5d.predict_batch([slices[k]], stacks=[fed[k]])[0]
    assert np.array_equal(result.labels[k], alone_stack.mask)


def test_the_page_card_and_the_api_stats_carry_the_notice(segmenter_2_5d: Segmenter) -> None:
    from segapp.ui.cards import stats_card_html, stats_payload

    prediction = segmenter_2_5d.predict(_smooth((40, 48), 0.0))
    assert "This model reads neighbouring slices" in stats_card_html(prediction)
    assert stats_payload(prediction)["notice"] == prediction.notice
