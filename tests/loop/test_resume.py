"""A script's run continues from its checkpoint: the step count, the epoch, the metric history, its own state."""

from __future__ import annotations

import pytest
import torch

import tui_trainer as tt
from tui_trainer.engine.checkpoints import CheckpointError
from tui_trainer.engine.metrics import read_metrics

from .conftest import Task


def train(run, task, epochs):
    for batch in run.steps(task.loader, epochs=epochs):
        run.log(loss=task.train_step(batch))


def test_resume_last_continues_the_step_count_the_metrics_and_the_extra_state(runs_dir):
    first = Task()
    schedule = torch.optim.lr_scheduler.StepLR(first.optimizer, step_size=5, gamma=0.5)
    run = tt.init(model=first.model, optimizer=first.optimizer, scheduler=schedule, name="again", dir=runs_dir,
                  quiet=True, every_steps=4, extra={"seen": 0})
    for batch in run.steps(first.loader, epochs=2):
        run.log(loss=first.train_step(batch))
        schedule.step()
        run.extra["seen"] += 1
    run.finish()
    folder = run.run_dir

    second = Task()
    second_schedule = torch.optim.lr_scheduler.StepLR(second.optimizer, step_size=5, gamma=0.5)
    extra = {"seen": -1}
    resumed = tt.init(model=second.model, optimizer=second.optimizer, scheduler=second_schedule, name="again",
                      dir=runs_dir, resume="last", quiet=True, every_steps=4, extra=extra)
    assert resumed.run_dir == folder  # its own folder, continued
    assert (resumed.global_step, resumed.epoch, extra) == (16, 3, {"seen": 16})
    assert torch.equal(second.model.weight, first.model.weight)
    assert second_schedule.last_epoch == schedule.last_epoch
    assert second.optimizer.state_dict()["state"][0]["momentum_buffer"].equal(
        first.optimizer.state_dict()["state"][0]["momentum_buffer"])
    train(resumed, second, epochs=3)
    assert resumed.finish().step == 24
    records = read_metrics(folder / "metrics.jsonl")
    assert [record["step"] for record in records if record["type"] == "progress"] == [4, 8, 12, 16, 20, 24]
    assert [record["epoch"] for record in records if record["type"] == "epoch_ended"] == [1, 2, 3]


def test_a_stop_mid_epoch_resumes_mid_epoch(runs_dir):
    task = Task()
    run = tt.init(model=task.model, optimizer=task.optimizer, name="half", dir=runs_dir, quiet=True)
    for batch in run.steps(task.loader, epochs=1):
        run.log(loss=task.train_step(batch))
        if run.global_step == 4:
            run.controls.stop()
    assert run.finish().step == 5
    again = Task()
    resumed = tt.init(model=again.model, optimizer=again.optimizer, name="half", dir=runs_dir,
                      resume=run.run_dir / "last.pt", quiet=True)
    assert (resumed.global_step, resumed.epoch, resumed.position) == (5, 1, 5)
    pulled = 0
    for batch in resumed.steps(again.loader, epochs=1):
        pulled += 1
        resumed.log(loss=again.train_step(batch))
    finished = resumed.finish()
    assert (pulled, finished.step, finished.epoch, finished.epoch_complete) == (3, 8, 1, True)


def test_resume_last_without_a_checkpoint_starts_afresh(task, runs_dir):
    run = tt.init(model=task.model, optimizer=task.optimizer, name="new", dir=runs_dir, resume="last", quiet=True)
    assert run.global_step == 0
    run.finish()


def test_a_checkpoint_that_does_not_fit_is_one_clear_error(task, runs_dir):
    run = tt.init(model=task.model, optimizer=task.optimizer, name="fit", dir=runs_dir, quiet=True)
    train(run, task, epochs=1)
    run.finish()
    other = torch.nn.Linear(3, 1)
    with pytest.raises(CheckpointError, match="does not fit this script's model or optimizer: the model's weights"):
        tt.init(model=other, optimizer=torch.optim.SGD(other.parameters(), lr=0.1), name="fit", dir=runs_dir,
                resume=run.run_dir / "last.pt", quiet=True)
    assert sorted(path.name for path in runs_dir.iterdir()) == [run.run_dir.name]  # no folder for it


def test_a_grad_scalers_state_is_saved_and_continued(runs_dir):
    task = Task()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=3)
    run = tt.init(model=task.model, optimizer=task.optimizer, scaler=scaler, name="scaled", dir=runs_dir, quiet=True)
    for inputs, targets in run.steps(task.loader):
        loss = torch.nn.functional.mse_loss(task.model(inputs), targets)
        scaler.scale(loss).backward()
        scaler.step(task.optimizer)
        scaler.update()
        task.optimizer.zero_grad()
        run.log(loss=loss)
    run.finish()
    assert scaler.get_scale() != 1024.0
    again = Task()
    fresh = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=3)
    tt.init(model=again.model, optimizer=again.optimizer, scaler=fresh, name="scaled", dir=runs_dir,
            resume="last", quiet=True).finish()
    assert fresh.state_dict() == scaler.state_dict()
