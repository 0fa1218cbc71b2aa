"""Events: small frozen dataclasses, each one JSON object, rebuilt exactly by event_from_dict."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from tui_trainer.engine.events import (
    EVENT_TYPES,
    FINAL_STATES,
    RUN_STATES,
    CheckpointFailed,
    CheckpointSaved,
    EpochEnded,
    HyperparametersChanged,
    Progress,
    RunFailed,
    RunFinished,
    RunStarted,
    StateChanged,
    Warning,
    event_from_dict,
)

SAMPLES = [
    RunStarted(run_id="digits-cnn-20260101-000000", run_dir="/runs/x", preset="digits-cnn", task="classification",
               device="cpu", device_name="CPU (2 cores)", model="cnn", parameters=12345, train_samples=1437,
               val_samples=360, epochs=15, steps_per_epoch=23, total_steps=345, start_epoch=1, start_step=0,
               lr=0.003, config={"name": "digits-cnn", "optimizer": {"lr": 0.003, "betas": [0.9, 0.999]}},
               history=[{"type": "progress", "step": 1, "train_loss": 2.3}]),
    Progress(epoch=2, step=30, epoch_step=7, steps_per_epoch=23, total_steps=345, train_loss=0.5,
             train_accuracy=0.9, lr=0.001, samples_per_s=12000.5, elapsed_s=3.25, eta_s=None,
             devices=[{"device": "cuda:0", "allocated_bytes": 1024, "total_bytes": None}]),
    Progress(epoch=1, step=1, epoch_step=1, steps_per_epoch=1, total_steps=1, train_loss=1.0, train_accuracy=None,
             lr=0.1, samples_per_s=1.0, elapsed_s=0.0, eta_s=12.5),
    EpochEnded(epoch=3, step=69, train={"train_loss": 0.1}, val={"val_loss": 0.2, "val_r2": 0.97}, lr=0.01,
               elapsed_s=9.5, is_best=True),
    StateChanged("paused", "out of memory on cuda:0 at step 5: try a smaller batch size"),
    StateChanged("running"),
    HyperparametersChanged(step=10, epoch=1, changes={"lr": 0.01}, previous={"lr": 0.001}),
    CheckpointSaved(path="/runs/x/last.pt", size_bytes=2048, epoch=3, step=69, reason="last"),
    CheckpointFailed(path="/runs/x/best.pt", message="not saved: the disk is full", reason="best"),
    Warning("torch.compile unavailable; running eagerly"),
    RunFailed(message="training loss is nan at step 12", fault="non_finite", advice="lower the learning rate"),
    RunFinished(state="finished", epoch=16, step=345, elapsed_s=42.0, best={"val_accuracy": 0.99},
                last={"val_accuracy": 0.98, "val_loss": 0.05}, best_epoch=12, checkpoint="/runs/x/last.pt"),
    RunFinished(state="failed", epoch=1, step=0, elapsed_s=0.1, best={}, last={}, best_epoch=None, checkpoint=None,
                message="ValueError: boom"),
]


@pytest.mark.parametrize("event", SAMPLES, ids=lambda event: type(event).__name__)
def test_events_round_trip_through_json(event):
    data = json.loads(json.dumps(event.to_dict()))
    assert data["type"] == event.kind
    assert event_from_dict(data) == event


def test_every_event_type_is_registered_and_sampled():
    assert {type(event) for event in SAMPLES} == set(EVENT_TYPES.values())
    assert len({cls.kind for cls in EVENT_TYPES.values()}) == len(EVENT_TYPES)


def test_events_hold_plain_data_only():
    for event in SAMPLES:
        assert dataclasses.is_dataclass(event)
        with pytest.raises(dataclasses.FrozenInstanceError):
            event.step = 1  # type: ignore[misc]


def test_non_finite_numbers_survive_the_trip():
    event = Progress(epoch=1, step=5, epoch_step=5, steps_per_epoch=10, total_steps=10, train_loss=float("nan"),
                     train_accuracy=0.1, lr=0.1, samples_per_s=float("inf"), elapsed_s=1.0, eta_s=None)
    again = event_from_dict(json.loads(json.dumps(event.to_dict())))
    assert math.isnan(again.train_loss) and again.samples_per_s == math.inf


def test_states():
    assert set(FINAL_STATES) <= set(RUN_STATES)
    assert {"running", "paused", "stopping"} <= set(RUN_STATES) - set(FINAL_STATES)


@pytest.mark.parametrize(("epochs", "stop_at", "epoch", "complete"), [
    (3, None, 3, True),   # finished: the last epoch trained, not the next one
    (3, 4, 1, True),      # stopped right at the end of epoch 1 (4 steps an epoch)
    (3, 1, 1, False),     # stopped during epoch 1
])
def test_a_run_names_the_epoch_it_ended_in_as_its_checkpoints_do(make_config, run_trainer, epochs, stop_at, epoch,
                                                                  complete):
    from tui_trainer.engine.checkpoints import read_info

    def handler(event, trainer):
        if stop_at is not None and isinstance(event, Progress) and event.step == stop_at:
            trainer.controls.stop()

    config = make_config("iris-linear", epochs=epochs, data__batch_size=32, logging__every_steps=1)
    finished, _, trainer = run_trainer(config, handler=handler)
    assert (finished.epoch, finished.epoch_complete) == (epoch, complete)
    assert read_info(trainer.run_dir / "last.pt").epoch == epoch
    assert event_from_dict(finished.to_dict()).epoch == epoch  # what --json and the socket carry


def test_run_json_ends_on_the_epoch_the_run_ended_in(tmp_path):
    from tui_trainer.runs.registry import RunInfoWriter, read_run_info

    writer = RunInfoWriter()
    writer(RunStarted(run_id="r", run_dir=str(tmp_path), preset="p", task="classification", device="cpu",
                      device_name="CPU", model="mlp", parameters=1, train_samples=10, val_samples=2, epochs=40,
                      steps_per_epoch=10, total_steps=400, start_epoch=1, start_step=0, lr=0.1, config={}))
    writer(RunFinished(state="stopped", epoch=12, step=120, elapsed_s=1.0, best={}, last={}, best_epoch=None,
                       checkpoint=None))
    assert read_run_info(tmp_path).epoch == 12  # what `tui-trainer runs` shows, as the checkpoints do


def test_every_event_of_a_real_run_round_trips(make_config, run_trainer):
    def handler(event, trainer):
        if isinstance(event, Progress) and event.step == 4:
            trainer.controls.set_hyperparameters(lr=0.05)
            trainer.controls.save()

    finished, events, _ = run_trainer(make_config("iris-linear", epochs=2, logging__every_steps=2), handler=handler)
    kinds = {type(event) for event in events.events}
    assert {RunStarted, Progress, EpochEnded, StateChanged, HyperparametersChanged, CheckpointSaved,
            RunFinished} <= kinds
    for event in events.events:
        assert event_from_dict(json.loads(json.dumps(event.to_dict()))) == event
    assert all(event.state in RUN_STATES for event in events.of(StateChanged))
    assert finished.state in FINAL_STATES
