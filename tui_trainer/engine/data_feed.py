"""The batches a run trains and validates on, this process's share of them.

Small in-memory datasets are batched by indexing tensors already on the device; a DataLoader (workers, pinned
memory) serves data that does not fit. Either way an epoch's order comes from epoch_order, so a run stopped
in the middle of an epoch and resumed sees the same batches. The DataLoaders are built once: their worker
processes live for the whole run, and each epoch only hands them that epoch's batches.

A batch is (inputs, targets): a pair, a longer tuple (the last item is the targets, the others the inputs), or a
dict with "targets" (inputs: its "inputs", or every other key). Every tensor in it moves to the device.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

from tui_trainer.catalog.data_import import sample_parts
from tui_trainer.catalog.datasets import DataBundle
from tui_trainer.config import ConfigError, RunConfig
from tui_trainer.engine.distributed import World

Batch = tuple[Any, torch.Tensor]
VAL_BATCH_MIN = 256


def to_device(value: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """value with every tensor in it (nested in tuples, lists and dicts) on device."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=non_blocking)
    if isinstance(value, dict):
        return {key: to_device(item, device, non_blocking) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(to_device(item, device, non_blocking) for item in value)
    return value


def rows(value: Any, index: torch.Tensor | slice) -> Any:
    """The rows `index` of a tensor, or of every tensor in a dict or tuple of them."""
    if isinstance(value, dict):
        return {key: rows(item, index) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(rows(item, index) for item in value)
    return value[index]


class _EpochBatches:
    """A batch sampler whose batches are set each epoch, so that one DataLoader (and its workers) serves them all."""

    def __init__(self, batches: list[list[Any]] | None = None) -> None:
        self.batches = batches or []

    def __iter__(self) -> Iterator[list[Any]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class DataFeed:
    def __init__(self, data: DataBundle, config: RunConfig, device: torch.device, world: World) -> None:
        """Raises ConfigError for a batch larger than this process's share of the training set."""
        self.data, self.device, self.world = data, device, world
        self.seed, self.batch_size, self.workers = config.seed, config.data.batch_size, config.data.num_workers
        self.pin_memory = device.type == "cuda" if config.data.pin_memory is None else config.data.pin_memory
        self.prefetch_factor = config.data.prefetch_factor
        self.weighted = config.data.sampler == "weighted"
        if data.user_loaders:
            self.steps_per_epoch = len(data.train)  # type: ignore[arg-type]
        else:
            share = world.shard_size(data.train_size)
            if self.batch_size > share:
                raise ConfigError("", "data.batch_size", f"{self.batch_size} is larger than the training set"
                                                         f"{world.share_text()} ({share} samples)")
            steps, remainder = divmod(share, self.batch_size)
            # A last batch of one sample breaks BatchNorm in training; it is dropped.
            self.steps_per_epoch = steps + (1 if remainder > 1 else 0)
        self.order = world.epoch_order(config.seed, config.data.shuffle)
        self.sample_weights = self._class_balancing_weights() if self.weighted else None
        self._loaders: dict[str, Any] = {}
        if data.in_memory:
            self.train_x, self.train_y = (to_device(part, device) for part in data.train)  # type: ignore[union-attr]
            self.val_x, self.val_y = (to_device(part, device) for part in data.val)  # type: ignore[union-attr]

    def train(self, epoch: int, position: int) -> Iterator[Batch]:
        """Epoch's batches from step position on (its order is drawn when the first one is asked for)."""
        if self.data.user_loaders:
            yield from self._from_user_loader(self.data.train, position, self.steps_per_epoch)
            return
        batch = self.batch_size
        order = self._epoch_order(epoch, position)
        starts = range(position * batch, self.steps_per_epoch * batch, batch)
        if self.data.in_memory:
            order = order.to(self.device)
            for start in starts:
                index = order[start:start + batch]
                yield rows(self.train_x, index), self.train_y[index]
            return
        batches: list[list[Any]] = [order[start:start + batch].tolist() for start in starts]
        if getattr(self.data.train, "wants_epoch", False):  # its random augmentation is drawn per (sample, epoch)
            batches = [[(index, epoch) for index in indices] for indices in batches]
        loader = self._loader("train", self.data.train, 0)
        loader.batch_sampler.batches = batches
        yield from self._on_device(loader)

    def val(self, epoch: int) -> Iterator[Batch]:
        """This process's share of the validation data, in order."""
        if self.data.user_loaders:
            yield from self._from_user_loader(self.data.val, 0, None)
            return
        batch = max(self.batch_size, VAL_BATCH_MIN)
        if self.data.in_memory:
            val_x, val_y = self.world.share(self.val_x), self.world.share(self.val_y)
            for start in range(0, len(val_y), batch):
                yield rows(val_x, slice(start, start + batch)), val_y[start:start + batch]
            return
        yield from self._on_device(self._loader("val", self.world.share(self.data.val), 1, batch))

    def next_epoch(self) -> None:
        self.order.next_epoch()

    def close(self) -> None:
        """End the DataLoaders' worker processes (they also end with this object)."""
        for loader in self._loaders.values():
            iterator = getattr(loader, "_iterator", None)
            if iterator is not None and hasattr(iterator, "_shutdown_workers"):
                iterator._shutdown_workers()
        self._loaders.clear()

    def _epoch_order(self, epoch: int, position: int) -> torch.Tensor:
        order = self.order.indices(self.data.train_size, epoch, position)
        if self.sample_weights is None:
            return order
        from torch.utils.data import WeightedRandomSampler

        # The draw is a function of (seed, epoch) alone, so a resumed epoch draws it again; epoch_order
        # then orders (and, under torchrun, shares out) the drawn samples as it would the plain ones.
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch + 7)
        drawn = torch.tensor(list(WeightedRandomSampler(self.sample_weights, len(self.sample_weights),
                                                        replacement=True, generator=generator)), dtype=torch.int64)
        return drawn[order]

    def _class_balancing_weights(self) -> torch.Tensor:
        """Each training sample's weight: one over the count of its class, so every class is drawn alike."""
        if self.data.user_loaders:
            raise ConfigError("", "data.sampler", "weighted needs Datasets or tensors; your DataLoaders bring their "
                                                  "own sampler")
        if self.data.in_memory:
            labels = self.data.train[1]  # type: ignore[index]
        elif self.data.train_labels is not None:
            labels = self.data.train_labels
        else:
            from tui_trainer.catalog.data_import import _targets_of

            labels = _targets_of(self.data.train)
        labels = torch.as_tensor(labels).long().reshape(-1).cpu()
        counts = torch.bincount(labels).double()
        return (1.0 / counts.clamp_min(1))[labels]

    def _loader(self, phase: str, dataset: Any, phase_index: int, batch_size: int | None = None) -> Any:
        """This phase's DataLoader, built on first use and kept (with its workers) for the whole run: a batch
        size for the validation data in order, else batches set each epoch."""
        if phase not in self._loaders:
            from torch.utils.data import DataLoader

            batching: dict[str, Any] = {"batch_size": batch_size} if batch_size else {"batch_sampler": _EpochBatches()}
            workers: dict[str, Any] = {}
            if self.workers:
                workers = {"persistent_workers": True, "prefetch_factor": self.prefetch_factor}
            self._loaders[phase] = DataLoader(dataset, num_workers=self.workers, pin_memory=self.pin_memory,
                                              generator=self._loader_generator(phase_index), **batching, **workers)
        return self._loaders[phase]

    def _from_user_loader(self, loader: Iterable[Any], position: int, steps: int | None) -> Iterator[Batch]:
        """The user's own DataLoader as it is; a resumed epoch skips the batches it had trained on."""
        for index, batch in enumerate(loader):
            if steps is not None and index >= steps:
                break
            if index >= position:
                yield self._split(batch)

    def _on_device(self, loader: Iterable[Any]) -> Iterator[Batch]:
        for batch in loader:
            yield self._split(batch)

    def _split(self, batch: Any) -> Batch:
        return sample_parts(to_device(batch, self.device, non_blocking=True))

    def _loader_generator(self, phase: int) -> torch.Generator:
        """A DataLoader draws its workers' base seed from this, not from the global generator, which
        dropout and the checkpointed RNG state own: a resumed run then draws the same numbers."""
        return torch.Generator().manual_seed(self.seed * 2 + phase)

    def state_dict(self) -> dict[str, Any]:
        return self.order.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order.load_state_dict(state)
