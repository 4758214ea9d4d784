"""The training loss: cross-entropy plus soft Dice over the foreground classes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segapp.labels import NUM_LABELS


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy + soft Dice over the foreground classes.

    Args:
        logits: (B, C, h, w) at 1/4 resolution; upsampled to the labels' size first, as
            transformers' SegFormer loss does.
        labels: (B, H, W) long class ids.

    Returns:
        A scalar: mean cross-entropy plus the mean of (1 - Dice) over classes 1..C-1.
    """
    logits = F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)
    ce = F.cross_entropy(logits, labels)
    probs = logits.softmax(dim=1)[:, 1:]  # (B, C-1, H, W)
    onehot = F.one_hot(labels, NUM_LABELS).permute(0, 3, 1, 2)[:, 1:].float()
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    denom = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    dice = (2 * inter + 1.0) / (denom + 1.0)  # +1 smoothing: a class absent from batch and prediction scores ~1
    return ce + (1 - dice).mean()
