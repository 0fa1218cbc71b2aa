"""Which samples each step of an epoch trains on, drawn so that a resumed run sees the same batches.

An epoch's order is drawn from a generator of its own (seeded from the run's seed), not from the global one
that dropout and the checkpointed RNG state own. The generator's state at the epoch's start is what a
checkpoint keeps: a run stopped in the middle of an epoch draws the same order again and goes on from its
position in it.
"""

from __future__ import annotations

from typing import Any

import torch


class EpochOrder:
    """The whole epoch in this process: a shuffled (or plain) order of every training sample."""

    def __init__(self, seed: int, shuffle: bool) -> None:
        self.shuffle = shuffle
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.epoch_state = self.generator.get_state()
        """The generator state this epoch's order is drawn from (the next epoch's, after an epoch ends), also
        when a stop or a save comes after the order was drawn but before the epoch's first step."""

    def indices(self, size: int, epoch: int, position: int) -> torch.Tensor:
        """The order of this epoch's samples; position 0 draws a new one, a later position draws the same again."""
        if position == 0:
            self.epoch_state = self.generator.get_state()
        else:
            self.generator.set_state(self.epoch_state)
        return torch.randperm(size, generator=self.generator) if self.shuffle else torch.arange(size)

    def next_epoch(self) -> None:
        self.epoch_state = self.generator.get_state()

    def state_dict(self) -> dict[str, Any]:
        return {"epoch_order_state": self.epoch_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch_state = state["epoch_order_state"]
        self.generator.set_state(self.epoch_state)


class ShardedOrder(EpochOrder):
    """One rank's share of the epoch, from a DistributedSampler (set_epoch each epoch), for data on the device
    and DataLoader data alike: a function of the epoch, so resuming needs no generator state (it is kept all
    the same, so that the checkpoint resumes in one process too)."""

    def __init__(self, seed: int, shuffle: bool, rank: int, world_size: int) -> None:
        super().__init__(seed, shuffle)
        self.seed, self.rank, self.world_size = seed, rank, world_size

    def indices(self, size: int, epoch: int, position: int) -> torch.Tensor:
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(range(size), num_replicas=self.world_size, rank=self.rank,
                                     shuffle=self.shuffle, seed=self.seed)
        sampler.set_epoch(epoch)
        return torch.tensor(list(sampler), dtype=torch.int64)
