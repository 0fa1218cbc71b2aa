"""Data-parallel training under torchrun: who this process is, sharding, and the per-event sync.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; with a world size above one the Trainer wraps its model
in DistributedDataParallel, shards each epoch's order like DistributedSampler, and meets the other ranks
once per progress event (never per step) to reduce metrics and agree on commands: rank 0 holds the
controls (signals, the control socket), any rank may ask to stop.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from tui_trainer.engine.controls import Command


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Distributed()


def from_environment(environ: dict[str, str] | None = None) -> Distributed:
    environ = os.environ if environ is None else environ
    try:
        world_size = int(environ.get("WORLD_SIZE", "1"))
        rank = int(environ.get("RANK", "0"))
        local_rank = int(environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        return SINGLE
    if world_size <= 1:
        return SINGLE
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank)


def device_for(context: Distributed) -> str:
    """Each rank on its own GPU (cuda:LOCAL_RANK), or all on the CPU."""
    import torch

    if torch.cuda.is_available():
        return f"cuda:{context.local_rank % torch.cuda.device_count()}"
    return "cpu"


def init_process_group(context: Distributed, device: torch.device) -> bool:
    """Join the group (nccl on CUDA, gloo on the CPU); returns whether this call created it."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(minutes=30))
    return True


def shard(order: torch.Tensor, context: Distributed) -> torch.Tensor:
    """This rank's share of an epoch's order, padded like DistributedSampler so every rank gets as many."""
    import torch

    size = len(order)
    per_rank = -(-size // context.world_size)
    padding = per_rank * context.world_size - size
    if padding:
        order = torch.cat([order, order[:padding]])
    return order[context.rank::context.world_size]


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_gather(value: Any, context: Distributed) -> list[Any]:
    import torch.distributed as dist

    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def sync_commands(commands: list[Command], context: Distributed) -> list[Command]:
    """Rank 0's commands go to every rank; a Stop asked on any rank (a signal) stops them all."""
    import torch.distributed as dist

    from tui_trainer.engine.controls import Stop, command_from_dict

    local_stop = next((command for command in commands if isinstance(command, Stop)), None)
    shared = [[command.to_dict() for command in commands] if context.is_main else None,
              local_stop.to_dict() if local_stop else None]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, shared)
    agreed = [command_from_dict(data) for data in gathered[0][0]]
    if not any(isinstance(command, Stop) for command in agreed):
        stop = next((entry[1] for entry in gathered if entry[1] is not None), None)
        if stop is not None:
            agreed.append(command_from_dict(stop))
    return agreed


def destroy() -> None:
    """Leave the group once every rank got here (rank 0 may still be writing last.pt)."""
    import torch.distributed as dist

    if dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()
