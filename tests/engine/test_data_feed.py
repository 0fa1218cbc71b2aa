"""The DataFeed: tuple and dict batches reach the device whole, DataLoader workers live for the whole run, a
weighted sampler balances the classes and draws the same again on resume, and an image folder with random
crops and flips, two workers and a weighted sampler resumes bit for bit."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from tests.engine.test_resume import compare_straight_and_resumed
from tui_trainer.catalog.datasets import DataBundle
from tui_trainer.engine.data_feed import DataFeed, rows, to_device
from tui_trainer.engine.distributed import World


class WorkerIds(Dataset):
    """Each sample is the id of the process that made it."""

    def __len__(self) -> int:
        return 32

    def __getitem__(self, index: int):
        return torch.tensor([float(os.getpid())]), index % 2


def bundle(train, val, in_memory: bool, **extra) -> DataBundle:
    return DataBundle(train=train, val=val, input_shape=(1,), num_outputs=2, num_classes=2, in_memory=in_memory,
                      **extra)


def test_nested_batches_move_whole_and_split_into_inputs_and_targets(make_config):
    batch = {"inputs": {"ids": torch.arange(4), "mask": torch.ones(4, dtype=torch.bool)}, "targets": torch.zeros(4)}
    moved = to_device(batch, torch.device("cpu"), non_blocking=True)
    assert moved["inputs"]["mask"].dtype == torch.bool and torch.equal(moved["inputs"]["ids"], torch.arange(4))
    picked = rows({"a": torch.arange(6), "b": (torch.arange(6), torch.arange(6) + 10)}, torch.tensor([1, 3]))
    assert picked["a"].tolist() == [1, 3] and picked["b"][1].tolist() == [11, 13]
    feed = DataFeed(bundle(WorkerIds(), WorkerIds(), False), make_config("digits-mlp", data__batch_size=8),
                    torch.device("cpu"), World())
    assert feed._split((torch.ones(2, 1), torch.ones(2, 1) * 2, torch.tensor([0, 1])))[0][1].tolist() == [[2.0]] * 2
    inputs, targets = feed._split({"a": torch.ones(2), "targets": torch.tensor([1, 0])})
    assert set(inputs) == {"a"} and targets.tolist() == [1, 0]


def test_dataloader_workers_live_for_the_whole_run(make_config):
    config = make_config("digits-mlp", data__batch_size=8, data__num_workers=2, data__prefetch_factor=1)
    feed = DataFeed(bundle(WorkerIds(), WorkerIds(), False), config, torch.device("cpu"), World())
    try:
        workers_by_epoch = []
        for epoch in range(3):
            ids = {int(pid) for inputs, _ in feed.train(epoch, 0) for pid in inputs.flatten().tolist()}
            ids |= {int(pid) for inputs, _ in feed.val(epoch) for pid in inputs.flatten().tolist()}
            feed.next_epoch()
            workers_by_epoch.append(ids)
        assert os.getpid() not in workers_by_epoch[0]
        assert len(workers_by_epoch[0]) == 3, "two for training, one (of two) for validation's single batch"
        assert workers_by_epoch[0] == workers_by_epoch[1] == workers_by_epoch[2], "no new workers per epoch"
    finally:
        feed.close()


def test_a_weighted_sampler_balances_classes_and_draws_the_same_on_resume(make_config):
    labels = torch.tensor([0] * 90 + [1] * 10)
    data = bundle((torch.arange(100.0).reshape(-1, 1), labels), (torch.zeros(4, 1), torch.zeros(4).long()), True)
    config = make_config("digits-mlp", data__batch_size=10, data__sampler="weighted")
    feed = DataFeed(data, config, torch.device("cpu"), World())
    epoch_targets = torch.cat([targets for _, targets in feed.train(0, 0)])
    assert 25 <= int(epoch_targets.sum()) <= 75, "the rare class is drawn about as often as the common one"
    feed.next_epoch()
    first = [inputs.flatten().tolist() for inputs, _ in feed.train(1, 0)]
    state = feed.state_dict()  # as a checkpoint in the middle of epoch 1 holds it
    again = DataFeed(data, config, torch.device("cpu"), World())
    again.load_state_dict(state)
    resumed = [inputs.flatten().tolist() for inputs, _ in again.train(1, 4)]
    assert resumed == first[4:]


@pytest.mark.slow
def test_an_image_folder_with_workers_and_augmentation_resumes_exactly(tmp_path, make_config):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for name, count in (("ants", 18), ("bees", 6)):
        (tmp_path / "images" / name).mkdir(parents=True)
        for index in range(count):
            Image.fromarray(rng.integers(0, 255, (10, 10, 3), dtype=np.uint8)).save(
                tmp_path / "images" / name / f"{index}.png")
    config = make_config("digits-cnn", {
        "data": {"source": "image_folder", "batch_size": 4, "num_workers": 2, "sampler": "weighted",
                 "options": {"path": str(tmp_path / "images"), "size": [10], "crop": 8, "flip": True}},
        "epochs": 2, "logging.every_steps": 1, "scheduler.warmup_steps": 2,
        "model.options.channels": [4], "model.options.hidden": 8})
    where = compare_straight_and_resumed(config, stop_at=7)
    assert where["position"] == 7 - where["steps_per_epoch"] > 0, "stopped in the middle of epoch 2"
