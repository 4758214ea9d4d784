"""Starting a 2.5D model from 2D weights.

A 2D model was trained with the same slice in all three input channels, so its first convolution
only ever saw equal channels: the response to neighbours in the outer channels is untrained. Fed a
stack as it is, it computes something between its own 2D function and a blur along the scan
(``copy``, what plain loading gives). :func:`centre_channel_init` instead folds the three
channels' kernels into the centre channel (offset 0) and zeroes the others, with the bias
corrected for the per-channel normalisation: the 2.5D model then starts as exactly the 2D model
(up to the outermost ring of the first feature map, where the convolution's zero padding meets
the normalisation's offsets), and training learns what the neighbours add.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from segapp.model.processing import ProcessingConfig


def first_convolution(model: torch.nn.Module) -> torch.nn.Conv2d:
    """The model's first 3-channel convolution (SegFormer's first patch embedding)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d) and module.in_channels == 3:
            return module
    raise ValueError("the model has no convolution over 3 input channels")


def centre_channel(offsets: Sequence[int]) -> int:
    """The channel nearest the slice itself: offset 0, else the smallest |offset| (first on ties)."""
    return min(range(3), key=lambda c: abs(int(offsets[c])))


@torch.no_grad()
def centre_channel_init(model: torch.nn.Module, processing: ProcessingConfig) -> int:
    """Rewrite a 2D model's first convolution in place so that, with the slice in the centre channel,
    it computes what the 2D model computed with the slice in all three.

    With inputs ``x_c = (g / 255 - mean_c) / std_c`` for the same gray ``g`` in every channel, the
    kernels ``W_c`` become ``W'_j = std_j * sum_c W_c / std_c`` in the centre channel ``j`` and 0
    elsewhere, and the bias takes the constant terms: ``b' = b - sum_c (mean_c / std_c) sum W_c
    + (mean_j / std_j) sum W'_j`` (sums over the kernel's taps).

    Returns:
        The centre channel's index.
    """
    conv = first_convolution(model)
    centre = centre_channel(processing.context_offsets)
    mean = torch.tensor(processing.image_mean, dtype=conv.weight.dtype, device=conv.weight.device)
    std = torch.tensor(processing.image_std, dtype=conv.weight.dtype, device=conv.weight.device)
    weight = conv.weight  # (C_out, 3, k, k)
    folded = std[centre] * (weight / std[None, :, None, None]).sum(dim=1)  # (C_out, k, k)
    constant = ((mean / std)[None, :] * weight.sum(dim=(2, 3))).sum(dim=1)  # (C_out,)
    new_weight = torch.zeros_like(weight)
    new_weight[:, centre] = folded
    if conv.bias is None:
        raise ValueError("the first convolution has no bias to take the normalisation's offsets")
    conv.bias.add_(-constant + (mean[centre] / std[centre]) * folded.sum(dim=(1, 2)))
    weight.copy_(new_weight)
    return centre


__all__ = ["centre_channel", "centre_channel_init", "first_convolution"]
