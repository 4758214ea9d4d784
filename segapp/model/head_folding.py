"""An exact, cheaper form of SegFormer's all-MLP decode head for inference.

The decode head projects each encoder stage i to D channels (a linear map P_i), upsamples
every map bilinearly to 1/4 resolution, concatenates them (4D channels) and mixes them with a
1x1 convolution W (4D -> D), then batch norm, ReLU and the classifier. Bilinear upsampling is
linear and acts on each channel alone, so it commutes with any channel mixing:

    W · concat_i(up(P_i x_i)) = sum_i up((W_i P_i) x_i)

where W_i is W's block for stage i. Folding W_i P_i (and the eval-mode batch norm) into one
small matrix per stage moves the big 1x1 convolution (about 60 % of SegFormer-B0's work at
288 x 288: 1024 -> 256 channels at 72 x 72) down to each stage's own resolution, with 32 to 256
input channels instead of 1024. The result equals the original head up to float rounding.

Two forms share that arithmetic:

- :func:`fold` (inference): W_i P_i and the eval-mode batch norm are computed once into fixed
  per-stage matrices; the model is not changed.
- :class:`FoldedTraining` (training): W_i P_i is recomputed from the head's own parameters on
  every forward (a few 256 x C_i products), so gradients reach P_i and W exactly as in the
  original head, batch norm keeps using batch statistics, and the saved weights keep the
  transformers layout. Same function, same gradients, about half the arithmetic per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any, Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn

# transformers' Segformer modules are untyped, and nn.Module's attribute lookup says only
# "Tensor | Module". These protocols name what the folding reads from them; the model is seen
# through them where it comes in (_segformer, _head).

_Layer = Callable[[torch.Tensor], torch.Tensor]


class _HeadConfig(Protocol):
    num_encoder_blocks: int
    decoder_hidden_size: int
    reshape_last_stage: bool | None


class _Linear(Protocol):  # nn.Linear with its bias
    weight: torch.Tensor  # (out, in)
    bias: torch.Tensor  # (out,)


class _Projection(Protocol):  # SegformerMLP: stage i's linear map P_i, C_i -> D
    proj: _Linear


class _BatchNorm(Protocol):  # nn.BatchNorm2d with its running statistics (always tracked here)
    weight: torch.Tensor
    bias: torch.Tensor
    running_mean: torch.Tensor
    running_var: torch.Tensor
    eps: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


class _DecodeHead(Protocol):  # SegformerDecodeHead
    config: _HeadConfig
    training: bool
    linear_projections: Sequence[_Projection]
    linear_fuse: nn.Conv2d  # W: 4D -> D, 1x1, no bias
    batch_norm: _BatchNorm
    activation: _Layer
    dropout: _Layer
    classifier: nn.Conv2d


class _Segformer(Protocol):  # SegformerForSemanticSegmentation
    segformer: nn.Module  # the encoder, SegformerModel
    decode_head: nn.Module  # a SegformerDecodeHead, seen through _head
    config: Any


def _head(head: nn.Module) -> _DecodeHead:
    return cast(_DecodeHead, head)


def _segformer(model: nn.Module) -> _Segformer:
    return cast(_Segformer, model)


def _mix_upsample_sum(
    states: tuple[torch.Tensor, ...], weights: list[torch.Tensor], reshape_last_stage: bool | None
) -> torch.Tensor:
    """sum_i up(conv1x1(states[i], weights[i])): stage features (B, C_i, H_i, W_i) and weights
    (D, C_i, 1, 1) -> (B, D, H_0, W_0), upsampled bilinearly (align_corners=False, as the head)."""
    size = states[0].shape[2:]
    batch = states[-1].shape[0]
    fused = None
    for state, weight in zip(states, weights):
        if reshape_last_stage is False and state.ndim == 3:
            side = int(math.sqrt(state.shape[1]))
            state = state.reshape(batch, side, side, -1).permute(0, 3, 1, 2)
        mixed = F.conv2d(state, weight)  # (B, D, H_i, W_i): mixing before upsampling
        if mixed.shape[2:] != size:
            mixed = F.interpolate(mixed, size=size, mode="bilinear", align_corners=False)
        fused = mixed if fused is None else fused + mixed
    assert fused is not None
    return fused


def _stage_products(head: _DecodeHead) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per-stage W_i P_i (D, C_i) and the summed projection bias sum_i W_i b_i (D,), from
    ``head``'s current parameters (differentiable)."""
    n, d = head.config.num_encoder_blocks, head.config.decoder_hidden_size
    fuse = head.linear_fuse.weight.flatten(1)  # (D, n*D); concatenation is in reverse stage order
    weights, bias = [], None
    for stage, projection in enumerate(head.linear_projections):
        block = fuse[:, (n - 1 - stage) * d : (n - stage) * d]  # (D, D)
        weights.append(block @ projection.proj.weight)
        term = block @ projection.proj.bias
        bias = term if bias is None else bias + term
    assert bias is not None
    return weights, bias


class FoldedDecodeHead(nn.Module):
    """The decode head with projection, fuse convolution and batch norm folded per stage."""

    def __init__(self, head: nn.Module) -> None:
        """Fold ``head`` (a transformers ``SegformerDecodeHead``, in eval mode) into this module."""
        super().__init__()
        decode = _head(head)
        if decode.training:
            raise ValueError("fold the decode head of a model in eval mode (batch norm statistics are folded)")
        d = decode.config.decoder_hidden_size
        products, projection_bias = _stage_products(decode)
        bn = decode.batch_norm
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (D,)
        bias = bn.bias - scale * bn.running_mean + scale * projection_bias
        weights = [scale[:, None] * w for w in products]  # batch norm folded in
        self.stage_weights = nn.ParameterList(
            [nn.Parameter(w[:, :, None, None].contiguous(), requires_grad=False) for w in weights]
        )
        self.bias = nn.Parameter(bias.view(1, d, 1, 1).contiguous(), requires_grad=False)
        self.classifier = decode.classifier
        self.reshape_last_stage = decode.config.reshape_last_stage

    def forward(self, encoder_hidden_states: tuple[torch.Tensor, ...], **kwargs: Any) -> torch.Tensor:
        """Stage features (B, C_i, H_i, W_i) -> logits (B, num_labels, H_0, W_0)."""
        fused = _mix_upsample_sum(encoder_hidden_states, list(self.stage_weights), self.reshape_last_stage)
        hidden = torch.relu(fused + self.bias)  # (B, D, H_0, W_0)
        return self.classifier(hidden)


class FoldedSegformer(nn.Module):
    """Inference wrapper: the model's own encoder with a :class:`FoldedDecodeHead`.

    Called like the transformers model (``model(pixel_values=x).logits``). The wrapped model is
    not modified, so a training loop can keep training it and fold again for each validation.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        parts = _segformer(model)
        self.segformer = parts.segformer
        self.decode_head = FoldedDecodeHead(parts.decode_head)
        self.config = parts.config

    def forward(self, pixel_values: torch.Tensor) -> SimpleNamespace:
        """``pixel_values`` (B, 3, H, W) -> ``.logits`` (B, num_labels, H/4, W/4)."""
        outputs = self.segformer(pixel_values, output_hidden_states=True, return_dict=True)
        return SimpleNamespace(logits=self.decode_head(outputs.hidden_states))


def fold(model: nn.Module) -> FoldedSegformer:
    """An exact, faster inference form of a ``SegformerForSemanticSegmentation`` in eval mode."""
    with torch.no_grad():
        return FoldedSegformer(model).eval()


class FoldedTraining(nn.Module):
    """Training form of a ``SegformerForSemanticSegmentation``: the same function and gradients
    with the decode head's fuse convolution moved before upsampling (see the module docstring).

    Holds the model itself (its parameters are this module's parameters), so an optimizer over
    ``model.parameters()``, DistributedDataParallel around this wrapper and ``save_model(model)``
    all work unchanged. Works in train and eval mode (batch norm as in the original head).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> SimpleNamespace:
        """``pixel_values`` (B, 3, H, W) -> ``.logits`` (B, num_labels, H/4, W/4)."""
        model = _segformer(self.model)
        head = _head(model.decode_head)
        outputs = model.segformer(pixel_values, output_hidden_states=True, return_dict=True)
        products, bias = _stage_products(head)
        weights = [w[:, :, None, None] for w in products]
        fused = _mix_upsample_sum(outputs.hidden_states, weights, head.config.reshape_last_stage)
        hidden = head.batch_norm(fused + bias.view(1, -1, 1, 1))
        return SimpleNamespace(logits=head.classifier(head.dropout(head.activation(hidden))))
