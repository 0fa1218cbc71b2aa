"""The parts a Trainer is built from, each on its own: the process world, the epoch order and the trackers, with
the state_dicts a checkpoint carries (a round trip gives the same behaviour)."""

from __future__ import annotations

import math

import pytest
import torch

from tui_trainer.config import EarlyStoppingConfig
from tui_trainer.engine.controls import Controls, Pause, Save
from tui_trainer.engine.distributed import Distributed, Torchrun, World, world_for
from tui_trainer.engine.epoch_order import EpochOrder, ShardedOrder
from tui_trainer.engine.trackers import BestMetric, EarlyStopping, EpochMetrics

# ---------------------------------------------------------------- the process world


def test_one_process_is_the_whole_world_and_sums_nothing_more():
    world = world_for(Distributed())
    assert type(world) is World and world.is_main and (world.rank, world.world_size) == (0, 1)
    values = torch.arange(6.0)
    assert world.share(values) is values and world.shard_size(101) == 101 and world.share_text() == ""
    assert world.reduce_sums(torch.tensor([1.5, 2.0]), 7) == ([1.5, 2.0], 7.0)
    assert world.gather([{"memory_used_bytes": 1}]) == [{"memory_used_bytes": 1}]
    assert world.progress_every_s(250) == 0.25
    model = torch.nn.Linear(2, 2)
    assert world.wrap(model, torch.device("cpu")) is model
    assert isinstance(world.epoch_order(0, True), EpochOrder)


def test_one_process_serves_commands_before_the_step_they_arrive_at():
    world, controls = World(), Controls()
    assert world.commands_before_step(controls) is None, "nothing to serve: no work"
    controls.send(Pause())
    controls.send(Save())
    assert world.commands_before_step(controls) == [Pause(), Save()]
    assert world.commands_before_step(controls) is None
    controls.send(Pause())
    assert world.commands_at_progress(controls) is None, "a progress event is no meeting point in one process"
    assert world.wait_for_commands(controls, 0.01) == [Pause()]
    assert world.wait_for_commands(controls, 0.01) == []


def test_a_torchrun_rank_shares_the_data_and_times_progress_by_steps_only():
    world = world_for(Distributed(rank=1, world_size=3, local_rank=1))
    assert isinstance(world, Torchrun) and not world.is_main
    assert world.shard_size(10) == 4 and "one of 3 processes" in world.share_text()
    assert world.share(torch.arange(10)).tolist() == [1, 4, 7]
    assert [int(item) for item in world.share(list(range(10)))] == [1, 4, 7]
    assert world.progress_every_s(250) == math.inf
    controls = Controls()
    controls.send(Pause())
    assert world.commands_before_step(controls) is None, "ranks agree on commands at progress events only"
    assert isinstance(world.epoch_order(0, True), ShardedOrder)


# ---------------------------------------------------------------- the epoch order


def test_an_epoch_order_drawn_again_from_its_state_is_the_same():
    order = EpochOrder(seed=3, shuffle=True)
    first = order.indices(50, epoch=1, position=0)
    saved = order.state_dict()
    again = EpochOrder(seed=99, shuffle=True)
    again.load_state_dict(saved)
    assert torch.equal(again.indices(50, epoch=1, position=7), first), "resumed mid-epoch: the same order"
    order.next_epoch()
    assert not torch.equal(order.indices(50, epoch=2, position=0), first)
    assert torch.equal(EpochOrder(seed=0, shuffle=False).indices(5, 1, 0), torch.arange(5))


def test_ranks_split_an_epoch_between_them_and_each_epoch_anew():
    shares = [ShardedOrder(0, True, rank, 2).indices(9, epoch=1, position=0) for rank in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 5 and set(torch.cat(shares).tolist()) == set(range(9))
    assert not torch.equal(ShardedOrder(0, True, 0, 2).indices(9, epoch=2, position=0), shares[0])


# ---------------------------------------------------------------- trackers


def test_epoch_metrics_average_every_step_of_the_epoch_also_across_a_resume():
    metrics = EpochMetrics(classification=True)
    metrics.add(6.0, 3.0, 4.0)
    resumed = EpochMetrics(classification=True)
    resumed.load_state_dict(metrics.state_dict())
    resumed.add(2.0, 1.0, 4.0)
    assert resumed.end_training() == {"train_loss": 1.0, "train_accuracy": 0.5}
    resumed.next_epoch()
    assert resumed.state_dict()["epoch_totals"] == [0.0, 0.0, 0]
    assert EpochMetrics(classification=False).end_training() == {"train_loss": 0.0}


@pytest.mark.parametrize("monitor, values, best_epoch", [
    ("val_loss", [0.5, 0.7, 0.4, 0.45], 3),
    ("val_accuracy", [0.5, 0.7, 0.4, 0.45], 2),
    ("val_r2", [0.1, math.nan, 0.3, 0.2], 3),
])
def test_the_best_epoch_follows_its_metrics_direction(monitor, values, best_epoch):
    best = BestMetric(monitor)
    for epoch, value in enumerate(values, start=1):
        best.offer(epoch, {"train_loss": 1.0}, {"val_loss": 0.5, monitor: value}, lambda: True)
    assert best.epoch == best_epoch and best.metrics["train_loss"] == 1.0
    copy = BestMetric(monitor)
    copy.load_state_dict(best.state_dict())
    assert copy.state_dict() == best.state_dict()


def test_no_best_from_a_non_finite_loss_or_weights():
    best = BestMetric("val_accuracy")
    assert not best.offer(1, {}, {"val_loss": math.inf, "val_accuracy": 0.9}, lambda: True)
    assert not best.offer(2, {}, {"val_loss": 0.3, "val_accuracy": 0.9}, lambda: False)
    assert best.offer(3, {}, {"val_loss": 0.3, "val_accuracy": 0.9}, lambda: True) and best.epoch == 3


def test_early_stopping_counts_epochs_without_improvement_and_resumes_its_count():
    rule = EarlyStoppingConfig(monitor="val_loss", patience=2, min_delta=0.1)
    stopping = EarlyStopping(rule)
    assert not stopping.should_stop({"val_loss": 1.0})
    assert not stopping.should_stop({"val_loss": 0.95}), "less than min_delta is no improvement"
    resumed = EarlyStopping(rule)
    resumed.load_state_dict(stopping.state_dict())
    assert resumed.should_stop({"val_loss": math.nan})
    assert "val_loss did not improve for 2 epochs" in resumed.reason
    never = EarlyStopping(None)
    assert not any(never.should_stop({"val_loss": 1.0}) for _ in range(10)) and never.reason == ""
