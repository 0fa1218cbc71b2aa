"""Commands reach a script's loop through its control socket and apply between steps: pause holds the script
before the next batch is pulled, a new lr survives the script's scheduler, save and stop write checkpoints."""

from __future__ import annotations

import threading

import pytest
import torch

import tui_trainer as tt
from tui_trainer.detached.client import RunClient
from tui_trainer.engine.checkpoints import load_checkpoint
from tui_trainer.engine.controls import Pause, Resume, Save, SetHyperparameters, Stop
from tui_trainer.engine.events import CheckpointSaved, HyperparametersChanged, RunFinished, StateChanged
from tui_trainer.runs.registry import load_run_info


class CountingBatches:
    """The task's batches, counting each one pulled."""

    def __init__(self, loader) -> None:
        self.loader, self.pulled = loader, 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            self.pulled += 1
            yield batch


def wait_for(events, kind, **fields):
    for event in events:
        if isinstance(event, kind) and all(getattr(event, key) == value for key, value in fields.items()):
            return event
    raise AssertionError(f"no {kind.__name__} {fields}")


def test_pause_lr_save_resume_and_stop_through_the_socket(task, runs_dir):
    run = tt.init(model=task.model, optimizer=task.optimizer, dir=runs_dir, quiet=True, every_steps=1000)
    batches = CountingBatches(task.loader)
    at_step_three, go_on = threading.Event(), threading.Event()
    ended: list[RunFinished] = []

    def train() -> None:
        for batch in run.steps(batches, epochs=50):
            run.log(loss=task.train_step(batch))
            if run.global_step == 3:  # the fourth step, held until the commands are on their way
                at_step_three.set()
                go_on.wait(30)
        ended.append(run.finish())

    thread = threading.Thread(target=train)
    thread.start()
    try:
        assert at_step_three.wait(30)
        client = RunClient(load_run_info(run.run_dir))
        events = client.events()
        for command in (Pause(), SetHyperparameters(lr=0.01), Save()):
            assert client.send(command)
        pause_arrived = threading.Event()
        while not run.controls.has_pending():  # the socket's reader has queued the pause (the rest may follow)
            pause_arrived.wait(0.01)
        go_on.set()
        wait_for(events, StateChanged, state="paused")
        tweak = wait_for(events, HyperparametersChanged)
        saved = wait_for(events, CheckpointSaved, reason="manual")
        # All at the boundary after the fourth step; the fifth batch is not pulled while paused.
        assert (tweak.step, tweak.changes, tweak.previous) == (4, {"lr": 0.01}, {"lr": 0.05})
        assert saved.step == 4 and saved.path.endswith("manual-e1-s4.pt")
        assert batches.pulled == 4 and run.global_step == 4
        assert task.optimizer.param_groups[0]["lr"] == 0.01
        assert load_run_info(run.run_dir).state == "paused"
        assert client.send(Resume())
        wait_for(events, StateChanged, state="running")
        assert client.send(Stop(reason="test"))
        last = wait_for(events, CheckpointSaved, reason="last")
        finished = wait_for(events, RunFinished)
        client.close()
    finally:
        go_on.set()
        if thread.is_alive() and not ended:
            run.controls.stop(save=False, reason="the test failed")
        thread.join(60)
    assert not thread.is_alive()
    assert finished.state == "stopped" and finished.message == "test" and ended[0].state == "stopped"
    assert last.step == finished.step > 4
    assert load_checkpoint(last.path)["meta"]["step"] == finished.step
    assert load_run_info(run.run_dir).state == "stopped"


def _onecycle(optimizer):
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=40)


def _cosine(optimizer):
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=40)


def _lambda(optimizer):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.95 ** step)


@pytest.mark.parametrize("make_scheduler", [_onecycle, _cosine, _lambda])
def test_a_new_lr_survives_the_scripts_scheduler(make_scheduler, task, runs_dir):
    """The schedule goes on along its own shape from the new value: half the lr, half of every later value."""
    reference_model = torch.nn.Linear(4, 1)
    reference = torch.optim.SGD(reference_model.parameters(), lr=0.1)
    reference_schedule = make_scheduler(reference)
    expected = []
    for _ in range(12):
        reference.step()
        reference_schedule.step()
        expected.append(reference.param_groups[0]["lr"])

    optimizer = torch.optim.SGD(task.model.parameters(), lr=0.1)
    schedule = make_scheduler(optimizer)
    run = tt.init(model=task.model, optimizer=optimizer, scheduler=schedule, dir=runs_dir, quiet=True)
    seen = []
    while run.step():
        if run.global_step == 6:
            run.controls.set_hyperparameters(lr=run_base(optimizer, schedule) / 2)
        optimizer.step()
        schedule.step()
        seen.append(optimizer.param_groups[0]["lr"])
        if len(seen) == 12:
            break
    run.finish()
    torch.testing.assert_close(seen[:6], expected[:6])
    # Changed at the boundary before the eighth step (after the seventh scheduler step): from then on, half.
    torch.testing.assert_close(seen[7:], [value / 2 for value in expected[7:]])


def run_base(optimizer, scheduler) -> float:
    from tui_trainer.loop.state import base_lr

    return base_lr(optimizer, scheduler)
