"""The processes a run trains in: one, or data-parallel ranks under torchrun.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; with a world size above one the Trainer wraps its model
in DistributedDataParallel, shards each epoch's order like DistributedSampler, and meets the other ranks
once per progress event (never per step) to reduce metrics and agree on commands: rank 0 holds the
controls (signals, the control socket), any rank may ask to stop.

The Trainer sees this through one `World` (see `world_for`): `World` itself is the run in one process,
where every reduction, share and agreement is the identity; `Torchrun` is the same interface across ranks.
The training loop calls the same methods either way and never asks which one it has.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from tui_trainer.engine.controls import Command, Controls
    from tui_trainer.engine.epoch_order import EpochOrder


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


class World:
    """A run in this one process: all of it is this process's share, and what it sums it has already summed.

    Commands are served at the step boundary they arrive at; progress may also be timed (every_ms).
    """

    def __init__(self, place: Distributed = SINGLE) -> None:
        self.place = place

    @property
    def rank(self) -> int:
        return self.place.rank

    @property
    def world_size(self) -> int:
        return self.place.world_size

    @property
    def is_main(self) -> bool:
        """This process speaks for the run: it emits the events and writes the run folder."""
        return self.place.is_main

    def device(self, wanted: str) -> torch.device:
        """The device to train on; raises DeviceError for one this machine lacks."""
        import torch

        from tui_trainer.engine.devices import resolve_device

        return torch.device(resolve_device(wanted))

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The module the training steps call (the model itself, or one that syncs its gradients)."""
        return model

    def shard_size(self, size: int) -> int:
        """This process's samples of size (an epoch's, say)."""
        return -(-size // self.world_size)

    def share_text(self) -> str:
        """What shard_size is a share of, for a message ("" in one process)."""
        return ""

    def epoch_order(self, seed: int, shuffle: bool) -> EpochOrder:
        from tui_trainer.engine.epoch_order import EpochOrder

        return EpochOrder(seed, shuffle)

    def share(self, values: Any) -> Any:
        """This process's share of validation data: a tensor's rows or a dataset's samples."""
        return values

    def reduce_sums(self, sums: torch.Tensor, count: int) -> tuple[list[float], float]:
        """The whole world's sums and count (one device read)."""
        return sums.tolist(), float(count)

    def gather(self, figures: list[Any]) -> list[Any]:
        """Every process's figures (device memory, say), rank by rank."""
        return figures

    def progress_every_s(self, every_ms: float) -> float:
        """Seconds after which a progress event is due whatever the step count."""
        return every_ms / 1000

    def commands_before_step(self, controls: Controls) -> list[Command] | None:
        """The commands to apply before the next step, or None when there are none to serve."""
        return controls.drain() if controls.has_pending() else None

    def commands_at_progress(self, controls: Controls) -> list[Command] | None:
        """The commands to apply right after a progress event, or None when they wait for the next step."""
        return None

    def wait_for_commands(self, controls: Controls, timeout_s: float) -> list[Command]:
        """While paused: block (no CPU) until a command comes or timeout_s pass."""
        command = controls.wait(timeout_s)
        return [command] if command is not None else []

    def close(self) -> None:
        """At the run's end, once its last checkpoint is written."""


class Torchrun(World):
    """One rank of several: each trains on its share, and all of them meet once per progress event (never per
    step) to sum metrics and agree on commands. Progress therefore comes by step count only."""

    def __init__(self, place: Distributed) -> None:
        super().__init__(place)
        self._owns_group = False

    def device(self, wanted: str) -> torch.device:
        import torch

        device = torch.device(device_for(self.place))
        self._owns_group = init_process_group(self.place, device)
        return device

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def share_text(self) -> str:
        return f" share of one of {self.world_size} processes"

    def epoch_order(self, seed: int, shuffle: bool) -> EpochOrder:
        from tui_trainer.engine.epoch_order import ShardedOrder

        return ShardedOrder(seed, shuffle, self.rank, self.world_size)

    def share(self, values: Any) -> Any:
        import torch
        from torch.utils.data import Subset

        if isinstance(values, torch.Tensor):
            return values[self.rank::self.world_size]
        return Subset(values, range(self.rank, len(values), self.world_size))

    def reduce_sums(self, sums: torch.Tensor, count: int) -> tuple[list[float], float]:
        import torch

        totals = all_reduce_sum(torch.cat([sums, torch.tensor([float(count)], device=sums.device)])).tolist()
        return totals[:-1], totals[-1]

    def gather(self, figures: list[Any]) -> list[Any]:
        if not figures:  # no CUDA figures on this rank, nor on the others (all train on the same kind)
            return figures
        return [figure for rank in all_gather(figures, self.place) for figure in rank]

    def progress_every_s(self, every_ms: float) -> float:
        return float("inf")  # ranks must meet at the same steps

    def commands_before_step(self, controls: Controls) -> list[Command] | None:
        return None

    def commands_at_progress(self, controls: Controls) -> list[Command] | None:
        return sync_commands(controls.drain(), self.place)

    def wait_for_commands(self, controls: Controls, timeout_s: float) -> list[Command]:
        # Rank 0 waits on its controls; the others wait in the collective, and all apply the same.
        waited_for = controls.wait(timeout_s) if self.is_main else None
        return sync_commands(([waited_for] if waited_for else []) + controls.drain(), self.place)

    def close(self) -> None:
        if self._owns_group:
            destroy()


def world_for(place: Distributed) -> World:
    """The world of this process's place: Torchrun with a world size above one, else one process."""
    return Torchrun(place) if place.enabled else World(place)
