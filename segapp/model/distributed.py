"""The torchrun process group: join it, leave it (training and batch prediction share these).

A plain run is rank 0 of a world of 1 and never touches ``torch.distributed``. Under ``torchrun``
every process joins one group (NCCL on GPUs, gloo on the CPU) in :func:`setup_distributed` and
leaves it with :func:`leave_distributed`.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist

from segapp.model.runtime import pick_device


@dataclass
class Dist:
    """Process-group facts (a single process is rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Join the torchrun process group when launched by torchrun; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(), pick_device(device_name)
    # torch.distributed.nn binds ``group.WORLD`` as default arguments when it is imported, and
    # DistributedDataParallel imports it lazily (through torch._dynamo). Imported after the group
    # exists, those defaults keep the group alive for good: destroy_process_group cannot free it,
    # and gloo's worker threads are still running when the interpreter shuts down, which aborts
    # the process now and then ("terminate called without an active exception"). Imported now,
    # they hold None. (Here, not at the top: a plain run has no use for it.)
    import torch.distributed.nn  # noqa: F401

    dist = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = pick_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    tdist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist, device


def leave_distributed(dist: Dist, *, together: bool = True) -> None:
    """Leave the process group (nothing for a single process).

    Call it once nothing refers to the group any more: a DistributedDataParallel wrapper holds
    it through its reducer, and a group still alive here keeps its backend threads running into
    interpreter shutdown. ``together``: wait for every rank first (the normal end), so no rank
    tears its connections down while another still communicates; False on an error, where the
    other ranks may never arrive.
    """
    if dist.world == 1:
        return
    if together:
        tdist.barrier()
    gc.collect()  # modules and autograd hooks form reference cycles: free the wrapper now, not at exit
    tdist.destroy_process_group()
