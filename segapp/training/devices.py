"""Where training runs: the device's precision, what stays on it, and rank 0's say under torchrun.

Joining and leaving the torchrun process group is :mod:`segapp.model.distributed` (batch prediction
uses it too).
"""

from __future__ import annotations

import torch
import torch.distributed as tdist

from segapp.model.distributed import Dist
from segapp.training.data import TrainSet


def agree_with_rank0(flag: bool, dist: Dist, device: torch.device) -> bool:
    """Rank 0's ``flag``, on every rank (a collective: every rank must call it)."""
    value = torch.tensor([int(flag)], device=device)
    if dist.world > 1:
        tdist.broadcast(value, 0)
    return bool(value.item())


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for the forward pass, or None for fp32."""
    if device.type != "cuda":
        if precision in ("fp16", "bf16"):
            print(f"note: --precision {precision} applies on CUDA only; training in fp32 on {device}")
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": None}[precision]


def keep_data_on_device(train_set: TrainSet, device: torch.device, mode: str) -> bool:
    """Whether the decoded training set goes to the GPU: ``mode`` yes / no / auto (under a quarter of free memory)."""
    if device.type != "cuda" or mode == "no":
        return False
    if mode == "yes":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return train_set.nbytes < 0.25 * free  # leave the rest to the model
