"""A 2.5D model started from 2D weights: the first convolution folded into the centre channel computes
what the 2D model computed with the slice in every channel."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import make_tiny_model

from segapp.model.inflate import centre_channel, centre_channel_init, first_convolution
from segapp.model.processing import ProcessingConfig, preprocess


def test_the_centre_is_offset_zero_or_the_nearest() -> None:
    assert centre_channel((-2, 0, 2)) == 1 and centre_channel((0, 1, 2)) == 0
    assert centre_channel((-3, 2, 1)) == 2 and centre_channel((1, -1, 3)) == 0


@pytest.mark.parametrize("offsets", [(-1, 0, 1), (0, 2, 4)])
def test_folded_model_reads_the_slice_as_the_2d_model_did(offsets: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    flat = make_tiny_model(seed=3).eval()
    folded = copy.deepcopy(flat)
    processing = ProcessingConfig(height=64, width=64, context_offsets=offsets)
    centre = centre_channel_init(folded, processing)
    assert centre == centre_channel(offsets)
    gray = torch.randint(0, 256, (2, 64, 64), dtype=torch.uint8).numpy()
    neighbours = torch.randint(0, 256, (2, 2, 64, 64), dtype=torch.uint8).numpy()
    stacks = []
    for b in range(2):
        others = iter(neighbours[b])
        stacks.append(torch.stack([torch.from_numpy(gray[b] if c == centre else next(others)) for c in range(3)]).numpy())
    conv_flat, conv_folded = first_convolution(flat), first_convolution(folded)
    with torch.no_grad():
        out_flat = conv_flat(preprocess(list(gray), ProcessingConfig(height=64, width=64), "cpu"))
        out_folded = conv_folded(preprocess(stacks, processing, "cpu"))
    # The outer channels no longer count; inside the zero-padded ring the outputs are the 2D model's.
    assert torch.count_nonzero(conv_folded.weight[:, [c for c in range(3) if c != centre]]) == 0
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    assert torch.allclose(out_folded[inner], out_flat[inner], atol=1e-4)
    assert not torch.allclose(out_folded, out_flat, atol=1e-4)  # the ring: padding meets the offsets
