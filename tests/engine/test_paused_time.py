"""Time paused is not training time: a checkpoint saved while paused (by the user, at the start, or for a fault)
holds the training time up to the pause, and a run resumed from it goes on from there."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.faulty_model import FAULTY
from tui_trainer.engine import trackers
from tui_trainer.engine.checkpoints import load_checkpoint
from tui_trainer.engine.events import CheckpointSaved, Progress, StateChanged
from tui_trainer.engine.trackers import TrainingClock

PAUSE_S = 0.4


def save_after_a_pause(target: Path, pause_when=None):
    """A run_trainer handler: pause_when(event) pauses; PAUSE_S into the pause it saves to target, then stops."""
    def handler(event, trainer):
        if pause_when is not None and pause_when(event):
            trainer.controls.pause()
        if isinstance(event, StateChanged) and event.state == "paused":
            threading.Timer(PAUSE_S, trainer.controls.save, [str(target)]).start()
        if isinstance(event, CheckpointSaved) and event.reason == "manual":
            trainer.controls.stop()

    return handler


def elapsed_in(path: Path) -> float:
    return load_checkpoint(path)["trainer"]["elapsed_s"]


def test_a_save_while_the_user_paused_leaves_the_pause_out(make_config, run_trainer, tmp_path):
    target = tmp_path / "paused.pt"
    handler = save_after_a_pause(target, lambda event: isinstance(event, Progress) and event.step == 3)
    finished, events, _ = run_trainer(make_config("iris-linear", epochs=5, logging__every_steps=1), handler=handler)
    assert finished.state == "stopped" and finished.step == 3
    trained = next(event for event in events.of(Progress) if event.step == 3).elapsed_s
    assert elapsed_in(target) - trained < PAUSE_S / 2, "the pause counted as training time"
    assert finished.elapsed_s - trained < PAUSE_S / 2


def test_a_save_while_paused_at_the_start_leaves_the_pause_out(make_config, run_trainer, tmp_path):
    target = tmp_path / "paused.pt"
    finished, _, _ = run_trainer(make_config("iris-linear", epochs=5), handler=save_after_a_pause(target),
                                 start_paused=True)
    assert finished.state == "stopped" and finished.step == 0
    assert elapsed_in(target) < PAUSE_S / 2


def test_a_save_while_paused_for_a_fault_leaves_the_pause_out(make_config, run_trainer, user_module, tmp_path):
    name = user_module(FAULTY)
    config = make_config("iris-linear", {"model": {"import": f"{name}:build", "options": {"fault": "oom", "at": 4}}},
                         epochs=5, logging__every_steps=1)
    target = tmp_path / "paused.pt"
    finished, events, _ = run_trainer(config, handler=save_after_a_pause(target), pause_on_fault=True)
    assert finished.state == "stopped"
    assert elapsed_in(target) - events.of(Progress)[-1].elapsed_s < PAUSE_S / 2


def test_a_run_resumed_from_a_save_made_while_paused_goes_on_from_its_training_time(make_config, run_trainer,
                                                                                     tmp_path):
    target = tmp_path / "paused.pt"
    config = make_config("iris-linear", epochs=2, logging__every_steps=1)
    run_trainer(config, handler=save_after_a_pause(target), start_paused=True)
    saved = elapsed_in(target)
    _, events, _ = run_trainer(config, resume_from=target)
    first = events.of(Progress)[0]
    assert first.step == 1 and saved <= first.elapsed_s < PAUSE_S / 2, "one step of training, not the pause"


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture
def fake_time(monkeypatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(trackers, "time", fake)
    return fake


def test_the_clock_stands_still_during_a_pause_and_after_it(fake_time):
    clock = TrainingClock()
    clock.load_state_dict({"elapsed_s": 7.0})
    clock.start()
    fake_time.now += 2.0
    with clock.paused():
        fake_time.now += 30.0
        assert clock.elapsed_s() == 9.0 and clock.state_dict() == {"elapsed_s": 9.0}, "during the pause"
        assert clock.session_s() == 2.0
    assert clock.elapsed_s() == 9.0, "after it"
    fake_time.now += 1.0
    assert clock.elapsed_s() == 10.0 and clock.session_s() == 3.0


def test_a_restart_of_the_clock_leaves_out_the_wait_before_training(fake_time):
    """An engine process waits for its app before the first step: that is not training either."""
    clock = TrainingClock()
    clock.start()
    fake_time.now += 60.0
    clock.start()
    fake_time.now += 0.5
    assert clock.elapsed_s() == 0.5
