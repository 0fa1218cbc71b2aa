"""The batches a run trains and validates on, this process's share of them.

Small in-memory datasets are batched by indexing tensors already on the device; a DataLoader (workers, pinned
memory) serves data that does not fit. Either way an epoch's order comes from epoch_order, so a run stopped
in the middle of an epoch and resumed sees the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from tui_trainer.catalog.datasets import DataBundle
from tui_trainer.config import ConfigError, RunConfig
from tui_trainer.engine.distributed import World

Batch = tuple[torch.Tensor, torch.Tensor]
VAL_BATCH_MIN = 256


class DataFeed:
    def __init__(self, data: DataBundle, config: RunConfig, device: torch.device, world: World) -> None:
        """Raises ConfigError for a batch larger than this process's share of the training set."""
        self.data, self.device, self.world = data, device, world
        self.seed, self.batch_size, self.workers = config.seed, config.data.batch_size, config.data.num_workers
        share = world.shard_size(data.train_size)
        if self.batch_size > share:
            raise ConfigError("", "data.batch_size", f"{self.batch_size} is larger than the training set"
                                                     f"{world.share_text()} ({share} samples)")
        steps, remainder = divmod(share, self.batch_size)
        # A last batch of one sample breaks BatchNorm in training; it is dropped.
        self.steps_per_epoch = steps + (1 if remainder > 1 else 0)
        self.order = world.epoch_order(config.seed, config.data.shuffle)
        if data.in_memory:
            self.train_x, self.train_y = (tensor.to(device) for tensor in data.train)
            self.val_x, self.val_y = (tensor.to(device) for tensor in data.val)

    def train(self, epoch: int, position: int) -> Iterator[Batch]:
        """Epoch's batches from step position on (its order is drawn when the first one is asked for)."""
        batch = self.batch_size
        order = self.order.indices(self.data.train_size, epoch, position)
        starts = range(position * batch, self.steps_per_epoch * batch, batch)
        if self.data.in_memory:
            order = order.to(self.device)
            for start in starts:
                index = order[start:start + batch]
                yield self.train_x[index], self.train_y[index]
            return
        from torch.utils.data import DataLoader

        batches = [order[start:start + batch].tolist() for start in starts]
        loader = DataLoader(self.data.train, batch_sampler=batches, num_workers=self.workers,
                            pin_memory=self.device.type == "cuda", generator=self._loader_generator(epoch, 0))
        yield from self._on_device(loader)

    def val(self, epoch: int) -> Iterator[Batch]:
        """This process's share of the validation data, in order."""
        batch = max(self.batch_size, VAL_BATCH_MIN)
        if self.data.in_memory:
            val_x, val_y = self.world.share(self.val_x), self.world.share(self.val_y)
            for start in range(0, len(val_x), batch):
                yield val_x[start:start + batch], val_y[start:start + batch]
            return
        from torch.utils.data import DataLoader

        loader = DataLoader(self.world.share(self.data.val), batch_size=batch, num_workers=self.workers,
                            pin_memory=self.device.type == "cuda", generator=self._loader_generator(epoch, 1))
        yield from self._on_device(loader)

    def next_epoch(self) -> None:
        self.order.next_epoch()

    def _on_device(self, loader: Any) -> Iterator[Batch]:
        for inputs, targets in loader:
            yield inputs.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)

    def _loader_generator(self, epoch: int, phase: int) -> torch.Generator:
        """A DataLoader draws its workers' base seed from this, not from the global generator, which
        dropout and the checkpointed RNG state own: a resumed run then draws the same numbers."""
        return torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 2 + phase)

    def state_dict(self) -> dict[str, Any]:
        return self.order.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order.load_state_dict(state)
