"""The shared pre/post-processing path."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from segapp.model.processing import ProcessingConfig, normalize, postprocess, preprocess, resize_gray


def _smooth(shape: tuple[int, int]) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((np.sin(yy / 9) + np.cos(xx / 7) + 2) * 60).astype(np.uint8)


def test_normalize_is_imagenet_per_channel() -> None:
    config = ProcessingConfig()
    gray = torch.full((1, 1, 2, 2), 128.0)
    out = normalize(gray, config)
    assert out.shape == (1, 3, 2, 2)
    for c in range(3):
        expected = (128 / 255 - config.image_mean[c]) / config.image_std[c]
        assert torch.allclose(out[0, c], torch.full((2, 2), expected))


def test_preprocess_mixed_sizes_batch() -> None:
    images = [_smooth((266, 266)), _smooth((310, 360)), _smooth((288, 288))]
    out = preprocess(images, ProcessingConfig())
    assert out.shape == (3, 3, 288, 288) and out.dtype == torch.float32
    # A slice already at the model size is not resampled at all.
    direct = normalize(torch.from_numpy(images[2]).float()[None, None], ProcessingConfig())
    assert torch.equal(out[2:3], direct)


@pytest.mark.parametrize("shape", [(266, 266), (310, 360), (234, 234)])
def test_preprocess_agrees_with_transformers_image_processor(shape: tuple[int, int]) -> None:
    # Same input size and normalisation as the HF recipe at 288; PIL rounds its resize to
    # uint8, so agreement is within about one grey level (1/255/0.225 = 0.017).
    from transformers import SegformerImageProcessor

    image = _smooth(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        processor = SegformerImageProcessor(size={"height": 288, "width": 288})
    ref = processor(images=np.stack([image] * 3, -1), return_tensors="pt")["pixel_values"]
    ours = preprocess([image], ProcessingConfig())
    assert (ref - ours).abs().max() < 0.03


def test_tensor_batch_equals_list_path() -> None:
    images = [_smooth((266, 266)), _smooth((266, 266))]
    config = ProcessingConfig()
    as_list = resize_gray(images, config)
    as_tensor = resize_gray(torch.from_numpy(np.stack(images)), config)
    assert torch.equal(as_list, as_tensor)


def test_postprocess_upsamples_and_argmaxes() -> None:
    logits = torch.zeros(2, 4, 4, 4)
    logits[0, 2, :, :2] = 5.0  # left half small bowel
    logits[0, 3, :, 2:] = 5.0  # right half large bowel
    logits[1, 1] = 1.0
    masks, conf = postprocess(logits, [(16, 16), (10, 20)])
    assert masks[0].shape == (16, 16) and masks[0].dtype == torch.uint8
    assert masks[1].shape == (10, 20)
    assert (masks[0][:, :6] == 2).all() and (masks[0][:, 10:] == 3).all()
    assert (masks[1] == 1).all()
    expected = np.exp(1) / (np.exp(1) + 3)
    assert torch.allclose(conf[1], torch.full((10, 20), float(expected)), atol=1e-6)
    assert all(((c >= 0) & (c <= 1)).all() for c in conf)


def test_postprocess_rejects_mismatched_sizes() -> None:
    with pytest.raises(ValueError, match="do not match"):
        postprocess(torch.zeros(2, 4, 4, 4), [(8, 8)])


def test_config_round_trip_and_hf_forms(tmp_path) -> None:
    config = ProcessingConfig(height=256, width=320, image_mean=(0.5, 0.5, 0.5), image_std=(0.25, 0.25, 0.25))
    config.save(tmp_path)
    assert ProcessingConfig.from_folder(tmp_path) == config
    assert ProcessingConfig.from_dict({"size": 512}).height == 512
    assert ProcessingConfig.from_folder(tmp_path / "missing") == ProcessingConfig()
    data = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert data["image_processor_type"] == "SegformerImageProcessor"
    with pytest.raises(ValueError, match="input size"):
        ProcessingConfig.from_dict({"size": {"longest": 3}})
