"""The Trainer: convergence of the shipped presets, controls at step boundaries, schedules, precision,
no per-step device reads, and faults (non-finite loss, out of memory) that pause or fail cleanly."""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

from tests.faulty_model import FAULTY
from tui_trainer.config import ConfigError, config_from_dict
from tui_trainer.engine.checkpoints import load_checkpoint
from tui_trainer.engine.controls import CommandError
from tui_trainer.engine.events import (
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
)
from tui_trainer.engine.metrics import read_metrics
from tui_trainer.engine.trainer import Trainer

WAIT_S = 60

# ---------------------------------------------------------------- convergence of the shipped presets

BARS = [
    # preset, metric, bar, slow
    ("digits-cnn", "val_accuracy", 0.95, True),
    ("digits-mlp", "val_accuracy", 0.95, False),
    ("spirals-mlp", "val_accuracy", 0.95, True),
    ("sine-regression", "val_r2", 0.95, True),
    ("diabetes-regression", "val_r2", 0.4, False),
    ("iris-linear", "val_accuracy", 0.9, False),
]


@pytest.mark.parametrize(("preset", "metric", "bar"), [
    pytest.param(preset, metric, bar, marks=[pytest.mark.slow] if slow else [], id=preset)
    for preset, metric, bar, slow in BARS
])
def test_shipped_preset_converges(preset, metric, bar, make_config, run_trainer):
    config = make_config(preset)
    finished, events, trainer = run_trainer(config)
    assert finished.state == "finished", finished.message
    epochs = events.of(EpochEnded)
    assert finished.last[metric] >= bar, [epoch.val[metric] for epoch in epochs]
    assert finished.best[metric] >= bar
    best = load_checkpoint(Path(trainer.run_dir) / "best.pt")
    assert best["meta"]["val"][metric] == finished.best[metric]
    assert len(epochs) <= config.epochs


# ---------------------------------------------------------------- events, run folder, metrics.jsonl


def test_a_run_reports_in_order_and_fills_its_folder(make_config, run_trainer, checkpoint_dir):
    config = make_config("iris-linear", epochs=3, logging__every_steps=3)
    finished, events, _trainer = run_trainer(config)
    kinds = [type(event).__name__ for event in events.events]
    assert kinds[0] == "StateChanged" and kinds[1] == "RunStarted" and kinds[-1] == "RunFinished"
    assert events.states() == ["starting", "running", "finished"]

    started = events.of(RunStarted)[0]
    assert started.preset == "iris-linear" and started.task == "classification" and started.device == "cpu"
    assert started.train_samples == 120 and started.val_samples == 30
    assert started.steps_per_epoch == 8 and started.total_steps == 24 and started.epochs == 3
    assert started.parameters == 4 * 3 + 3
    assert started.start_step == 0 and started.start_epoch == 1 and started.history == []
    assert started.config == config.to_dict()
    assert Path(started.run_dir) == checkpoint_dir / started.run_id
    assert started.run_id.startswith("iris-linear-")

    progress = events.of(Progress)
    assert progress[-1].step == 24 and all(event.total_steps == 24 for event in progress)
    assert all(0 <= event.train_accuracy <= 1 and event.samples_per_s > 0 for event in progress)
    assert [event.step for event in progress] == sorted(event.step for event in progress)
    assert progress[0].eta_s is not None and progress[0].eta_s > 0
    epochs = events.of(EpochEnded)
    assert [epoch.epoch for epoch in epochs] == [1, 2, 3]
    assert [epoch.step for epoch in epochs] == [8, 16, 24]
    assert set(epochs[0].val) == {"val_loss", "val_accuracy"} and set(epochs[0].train) == {"train_loss",
                                                                                           "train_accuracy"}
    assert finished.state == "finished" and finished.step == 24
    assert finished.best_epoch in (1, 2, 3) and finished.checkpoint == str(Path(started.run_dir) / "last.pt")

    run_dir = Path(started.run_dir)
    assert (run_dir.stat().st_mode & 0o777) == 0o700
    saved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    assert config_from_dict(saved) == config
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [record["type"] for record in records if record["type"] == "progress"] == ["progress"] * len(progress)
    assert [record["step"] for record in records if record["type"] == "progress"] == [event.step for event in progress]
    assert [record["epoch"] for record in records if record["type"] == "epoch_ended"] == [1, 2, 3]
    assert all("time" in record for record in records)
    assert len(records) == len(progress) + len(epochs)
    names = {path.name for path in run_dir.iterdir()}
    assert {"config.yaml", "metrics.jsonl", "last.pt", "best.pt"} <= names


def test_regression_metrics(make_config, run_trainer):
    _finished, events, _ = run_trainer(make_config("sine-regression", epochs=2))
    epoch = events.of(EpochEnded)[-1]
    assert set(epoch.val) == {"val_loss", "val_mae", "val_r2"} and set(epoch.train) == {"train_loss"}
    assert all(event.train_accuracy is None for event in events.of(Progress))
    assert epoch.val["val_mae"] > 0 and epoch.val["val_r2"] <= 1


def test_max_steps_ends_in_the_middle_of_an_epoch(make_config, run_trainer):
    finished, events, trainer = run_trainer(make_config("digits-mlp", epochs=5, max_steps=30))
    assert finished.state == "finished" and finished.step == 30
    assert events.of(RunStarted)[0].total_steps == 30
    assert events.of(Progress)[-1].step == 30
    last = load_checkpoint(Path(trainer.run_dir) / "last.pt")
    assert last["trainer"]["step"] == 30


def test_user_model_by_import(make_config, run_trainer, user_module):
    name = user_module("""
        from torch import nn

        def build(input_shape, num_outputs, width):
            return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], width), nn.Tanh(),
                                 nn.Linear(width, num_outputs))
    """)
    config = make_config("iris-linear", {"model": {"import": f"{name}:build", "options": {"width": 12}}}, epochs=5)
    finished, events, _ = run_trainer(config)
    assert finished.state == "finished"
    assert events.of(RunStarted)[0].model == f"{name}:build"
    assert events.of(RunStarted)[0].parameters == 4 * 12 + 12 + 12 * 3 + 3


def test_setup_errors_come_before_training(make_config, recorder, checkpoint_dir):
    with pytest.raises(ConfigError, match="device: 'cuda' given") if not torch.cuda.is_available() else \
            pytest.raises(ConfigError, match="cuda:999"):
        Trainer(make_config("iris-linear", device="cuda" if not torch.cuda.is_available() else "cuda:999"),
                recorder).run()
    with pytest.raises(ConfigError, match=r"data\.batch_size: 500 is larger than the training set"):
        Trainer(make_config("iris-linear", data__batch_size=500), recorder).run()
    blocker = checkpoint_dir / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match=r"checkpoint\.dir: cannot create"):
        Trainer(make_config("iris-linear", checkpoint__dir=str(blocker)), recorder).run()
    assert not recorder.of(Progress)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal of fp16")
def test_fp16_needs_cuda_even_on_auto(make_config, recorder):
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        Trainer(make_config("iris-linear", device="auto", precision="fp16"), recorder).run()


# ---------------------------------------------------------------- controls


def run_in_thread(trainer: Trainer) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def target() -> None:
        try:
            result["finished"] = trainer.run()
        except BaseException as error:  # surfaced by the test
            result["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


class Waiter:
    """Threading events set from the training thread's callback."""

    def __init__(self) -> None:
        self.flags: dict[str, threading.Event] = {}

    def __getitem__(self, name: str) -> threading.Event:
        return self.flags.setdefault(name, threading.Event())

    def wait(self, name: str) -> None:
        assert self[name].wait(WAIT_S), f"timed out waiting for {name}"


def test_pause_blocks_the_steps_and_resume_continues(make_config, recorder):
    config = make_config("digits-mlp", epochs=40, logging__every_steps=1)
    trainer = Trainer(config, recorder)
    waiter = Waiter()

    def handler(event):
        if isinstance(event, Progress) and event.step == 5:
            trainer.controls.pause()
        if isinstance(event, StateChanged) and event.state == "paused":
            waiter["paused"].set()
        if isinstance(event, StateChanged) and event.state == "running" and waiter["paused"].is_set():
            waiter["resumed"].set()

    recorder.handlers.append(handler)
    thread, result = run_in_thread(trainer)
    try:
        waiter.wait("paused")
        assert trainer.step == 5
        seen = len(recorder.events)
        time.sleep(0.4)
        assert trainer.step == 5, "no step while paused"
        assert not [event for event in recorder.events[seen:] if isinstance(event, Progress)]
        assert thread.is_alive()
        trainer.controls.resume()
        waiter.wait("resumed")
        deadline = time.monotonic() + WAIT_S
        while trainer.step < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert trainer.step >= 10, "steps go on after resume"
    finally:
        trainer.controls.stop()
        thread.join(WAIT_S)
    assert not thread.is_alive() and "error" not in result
    assert result["finished"].state == "stopped"
    assert recorder.states()[:4] == ["starting", "running", "paused", "running"]


def test_a_pause_mid_window_shows_and_saves_the_step_it_paused_at(make_config, recorder, tmp_path):
    """Progress goes out only at epoch ends here; pausing mid-epoch still reports the steps trained since, and
    a checkpoint saved while paused counts them in its epoch's totals (a resumed epoch averages over all)."""
    config = make_config("digits-mlp", epochs=40, logging__every_steps=1_000_000, logging__every_ms=3_600_000)
    trainer = Trainer(config, recorder)
    waiter = Waiter()
    recorder.handlers.append(lambda event: isinstance(event, StateChanged) and event.state == "paused"
                             and waiter["paused"].set())
    recorder.handlers.append(lambda event: isinstance(event, CheckpointSaved) and waiter["saved"].set())
    thread, result = run_in_thread(trainer)
    try:
        deadline = time.monotonic() + WAIT_S
        while trainer.step < 3 and time.monotonic() < deadline:
            time.sleep(0.001)
        trainer.controls.pause()
        waiter.wait("paused")
        paused_at = recorder.states().index("paused")
        before_pause = recorder.events[:[i for i, event in enumerate(recorder.events)
                                         if isinstance(event, StateChanged)][paused_at]]
        assert [event for event in before_pause if isinstance(event, Progress)][-1].step == trainer.step
        trainer.controls.save(str(tmp_path / "paused.pt"))
        waiter.wait("saved")
        state = load_checkpoint(tmp_path / "paused.pt")["trainer"]
        assert state["step"] == trainer.step
        assert state["epoch_totals"][2] == state["position"] * config.data.batch_size
    finally:
        trainer.controls.stop()
        thread.join(WAIT_S)
    assert not thread.is_alive() and "error" not in result


def test_pause_waits_without_spinning(make_config, recorder):
    trainer = Trainer(make_config("iris-linear", epochs=100), recorder, start_paused=True)
    waiter = Waiter()
    recorder.handlers.append(lambda event: isinstance(event, StateChanged) and event.state == "paused"
                             and waiter["paused"].set())
    thread, result = run_in_thread(trainer)
    try:
        waiter.wait("paused")
        wall, process = time.monotonic(), time.process_time()
        time.sleep(0.5)
        used = time.process_time() - process
        assert trainer.step == 0
        assert used < 0.25 * (time.monotonic() - wall), f"paused run used {used:.2f}s of CPU in 0.5s"
    finally:
        trainer.controls.stop()
        thread.join(WAIT_S)
    assert result["finished"].state == "stopped" and result["finished"].step == 0


def test_stop_saves_last_and_ends(make_config, run_trainer):
    def handler(event, trainer):
        if isinstance(event, Progress) and event.step == 7:
            trainer.controls.stop(reason="user asked")

    finished, events, trainer = run_trainer(make_config("digits-mlp", epochs=3, logging__every_steps=1),
                                            handler=handler)
    assert finished.state == "stopped" and finished.step == 7 and finished.message == "user asked"
    assert events.states()[-2:] == ["stopping", "stopped"]
    last = Path(trainer.run_dir) / "last.pt"
    assert finished.checkpoint == str(last)
    payload = load_checkpoint(last)
    assert payload["trainer"]["step"] == 7 and payload["meta"]["reason"] == "last"
    assert payload["meta"]["epoch_complete"] is False
    assert any(isinstance(event, CheckpointSaved) and event.reason == "last" for event in events.events)
    assert not events.of(EpochEnded)


def test_stop_without_saving(make_config, run_trainer):
    def handler(event, trainer):
        if isinstance(event, Progress) and event.step == 3:
            trainer.controls.stop(save=False)

    finished, _, trainer = run_trainer(make_config("digits-mlp", epochs=3, logging__every_steps=1), handler=handler)
    assert finished.state == "stopped" and finished.checkpoint is None
    assert not (Path(trainer.run_dir) / "last.pt").exists()


def test_save_while_paused_writes_at_once(make_config, recorder, tmp_path):
    trainer = Trainer(make_config("digits-mlp", epochs=40, logging__every_steps=1), recorder)
    waiter = Waiter()
    saved: list[CheckpointSaved] = []

    def handler(event):
        if isinstance(event, Progress) and event.step == 4:
            trainer.controls.pause()
        if isinstance(event, StateChanged) and event.state == "paused":
            waiter["paused"].set()
        if isinstance(event, CheckpointSaved):
            saved.append(event)
            waiter[f"saved-{len(saved)}"].set()

    recorder.handlers.append(handler)
    thread, result = run_in_thread(trainer)
    try:
        waiter.wait("paused")
        trainer.controls.save(str(tmp_path / "mine.pt"))
        waiter.wait("saved-1")
        assert trainer.state == "paused" and trainer.step == 4
        assert saved[0].path == str(tmp_path / "mine.pt") and saved[0].reason == "manual" and saved[0].step == 4
        assert load_checkpoint(tmp_path / "mine.pt")["trainer"]["step"] == 4
        trainer.controls.save()
        waiter.wait("saved-2")
        assert Path(saved[1].path).name == "manual-e1-s4.pt" and Path(saved[1].path).exists()
        trainer.controls.set_hyperparameters(lr=0.0005)
        deadline = time.monotonic() + WAIT_S
        while not recorder.of(HyperparametersChanged) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert trainer.optimizer.param_groups[0]["lr"] == 0.0005, "commands are served while paused"
        assert trainer.step == 4
    finally:
        trainer.controls.stop()
        thread.join(WAIT_S)
    assert result["finished"].state == "stopped"


def test_set_learning_rate_at_a_step_boundary(make_config, run_trainer):
    def handler(event, trainer):
        if isinstance(event, Progress) and event.step == 6:
            trainer.controls.set_hyperparameters(lr=0.0123)

    config = make_config("digits-mlp", epochs=2, logging__every_steps=1)
    _finished, events, trainer = run_trainer(config, handler=handler)
    changed = events.of(HyperparametersChanged)
    assert len(changed) == 1
    assert changed[0].step == 6 and changed[0].changes == {"lr": 0.0123} and changed[0].previous == {"lr": 0.002}
    lrs = {event.step: event.lr for event in events.of(Progress)}
    assert lrs[6] == 0.002 and lrs[7] == 0.0123 and lrs[46] == 0.0123
    assert all(group["lr"] == 0.0123 for group in trainer.optimizer.param_groups)
    records = read_metrics(Path(trainer.run_dir) / "metrics.jsonl")
    hyper = [record for record in records if record["type"] == "hyperparameters_changed"]
    assert hyper == [{"type": "hyperparameters_changed", "step": 6, "epoch": 1, "changes": {"lr": 0.0123},
                      "previous": {"lr": 0.002}, "time": hyper[0]["time"]}]
    assert load_checkpoint(Path(trainer.run_dir) / "last.pt")["optimizer"]["param_groups"][0]["lr"] == 0.0123


def test_set_weight_decay_momentum_and_refusals(make_config, run_trainer):
    refusals = []

    def handler(event, trainer):
        if isinstance(event, Progress) and event.step == 2:
            trainer.controls.set_hyperparameters(weight_decay=0.01, momentum=0.5)
            for bad in ({"lr": -1.0}, {"lr": float("nan")}, {"momentum": 1.5}, {"weight_decay": 1e308}):
                with pytest.raises(CommandError) as refused:
                    trainer.controls.set_hyperparameters(**bad)
                refusals.append(str(refused.value))

    config = make_config("iris-linear", epochs=1, logging__every_steps=1)
    finished, events, trainer = run_trainer(config, handler=handler)
    group = trainer.optimizer.param_groups[0]
    assert group["weight_decay"] == 0.01 and group["momentum"] == 0.5 and group["lr"] == 0.1
    changed = events.of(HyperparametersChanged)
    assert [event.changes for event in changed] == [{"weight_decay": 0.01, "momentum": 0.5}]
    assert changed[0].previous == {"weight_decay": 0.0, "momentum": 0.9}
    assert len(refusals) == 4 and "a number > 0 and <= 100" in refusals[0] and "<= 10" in refusals[3]
    assert finished.state == "finished"


def test_adam_has_no_momentum(make_config, run_trainer):
    def handler(event, trainer):
        if isinstance(event, Progress) and event.step == 1:
            trainer.controls.set_hyperparameters(momentum=0.9)

    _, events, _ = run_trainer(make_config("digits-mlp", epochs=1, logging__every_steps=1), handler=handler)
    assert not events.of(HyperparametersChanged)
    assert any("adam has no momentum" in event.message for event in events.of(Warning))


# ---------------------------------------------------------------- early stopping, schedules, clipping, precision


def test_early_stopping(make_config, run_trainer):
    config = make_config("iris-linear", epochs=30,
                         early_stopping={"monitor": "val_loss", "patience": 2, "min_delta": 1e9})
    finished, events, _ = run_trainer(config)
    assert finished.state == "finished"
    assert len(events.of(EpochEnded)) == 3, "the first epoch sets the mark; two without improvement stop"
    assert "early stopping: val_loss did not improve for 2 epochs" in finished.message


def test_early_stopping_max_mode_keeps_going_while_improving(make_config, run_trainer):
    config = make_config("iris-linear", epochs=4, early_stopping={"monitor": "val_accuracy", "patience": 4})
    finished, events, _ = run_trainer(config)
    assert len(events.of(EpochEnded)) == 4 and finished.message == ""


def lrs_by_step(events) -> dict[int, float]:
    return {event.step: event.lr for event in events.of(Progress)}


def test_cosine_with_warmup(make_config, run_trainer):
    config = make_config("digits-mlp", epochs=3, logging__every_steps=1,
                         scheduler={"name": "cosine", "warmup_steps": 10, "min_lr": 1e-4})
    _, events, _ = run_trainer(config)
    lrs = lrs_by_step(events)
    total = 69
    base = 0.002
    rising = [lrs[step] for step in range(1, 10)]
    assert rising == sorted(rising) and rising[0] < base * 0.25
    assert max(lrs.values()) == pytest.approx(base, rel=0.01)
    falling = [lrs[step] for step in range(10, total + 1)]
    assert falling == sorted(falling, reverse=True)
    assert lrs[total] == pytest.approx(1e-4, rel=1e-6)
    assert events.of(RunStarted)[0].lr == pytest.approx(base / 10)


def test_step_schedule_with_warmup(make_config, run_trainer):
    config = make_config("iris-linear", epochs=6, logging__every_steps=1,
                         scheduler={"name": "step", "step_size": 2, "gamma": 0.5, "warmup_steps": 4})
    _, events, _ = run_trainer(config)
    lrs = lrs_by_step(events)
    assert [lrs[step] for step in (1, 2, 3)] == pytest.approx([0.05, 0.075, 0.1])
    assert lrs[4] == pytest.approx(0.1) and lrs[15] == pytest.approx(0.1)
    assert lrs[16] == pytest.approx(0.05) and lrs[31] == pytest.approx(0.05)
    assert lrs[32] == pytest.approx(0.025) and lrs[47] == pytest.approx(0.025)


def test_onecycle(make_config, run_trainer):
    config = make_config("digits-mlp", epochs=2, logging__every_steps=1,
                         scheduler={"name": "onecycle", "max_lr": 0.01})
    _, events, _ = run_trainer(config)
    lrs = lrs_by_step(events)
    peak = max(lrs, key=lrs.get)
    assert 5 <= peak <= 20 and lrs[peak] == pytest.approx(0.01, rel=0.02)
    assert lrs[46] < 0.0001 and lrs[1] < 0.001


def test_plateau_decays_when_the_metric_stalls(make_config, run_trainer):
    config = make_config("iris-linear", epochs=4, optimizer={"name": "sgd", "lr": 1e-6},
                         scheduler={"name": "plateau", "factor": 0.5, "patience": 0},
                         checkpoint={"monitor": "val_loss"})
    _, events, _ = run_trainer(config)
    assert [epoch.lr for epoch in events.of(EpochEnded)] == pytest.approx([1e-6, 5e-7, 2.5e-7, 1.25e-7])


def test_live_lr_change_keeps_the_schedule_shape(make_config, run_trainer):
    def handler(event, trainer):
        if isinstance(event, Progress) and event.step == 30:
            trainer.controls.set_hyperparameters(lr=0.004)

    config = make_config("digits-mlp", epochs=3, logging__every_steps=1, scheduler={"name": "cosine"})
    _, events, _trainer = run_trainer(config, handler=handler)
    lrs = lrs_by_step(events)

    def cosine(step):
        return 0.5 * (1 + math.cos(math.pi * step / 69))

    assert lrs[30] == pytest.approx(0.002 * cosine(30))
    assert lrs[31] == pytest.approx(0.004 * cosine(31))
    assert lrs[60] == pytest.approx(0.004 * cosine(60))
    assert events.of(HyperparametersChanged)[0].previous == {"lr": 0.002}


def test_gradient_clipping_bounds_each_update(make_config, run_trainer):
    config = make_config("iris-linear", max_steps=1, optimizer={"name": "sgd", "lr": 1.0}, grad_clip=1e-3,
                         checkpoint={"save_best": False})
    before = {}

    def handler(event, trainer):
        if isinstance(event, RunStarted):
            before.update({name: value.detach().clone() for name, value in trainer.model.named_parameters()})

    _, _, trainer = run_trainer(config, handler=handler)
    moved = torch.sqrt(sum(((value - before[name]) ** 2).sum() for name, value in trainer.model.named_parameters()))
    assert 0 < moved <= 1e-3 * 1.0001

    unclipped = make_config("iris-linear", max_steps=1, optimizer={"name": "sgd", "lr": 1.0})
    before.clear()
    _, _, trainer = run_trainer(unclipped, handler=handler)
    moved = torch.sqrt(sum(((value - before[name]) ** 2).sum() for name, value in trainer.model.named_parameters()))
    assert moved > 0.01


def test_bf16_autocast_on_cpu(make_config, run_trainer, user_module):
    name = user_module("""
        import torch
        from torch import nn

        SEEN = []

        class Probe(nn.Module):
            def __init__(self, input_shape, num_outputs):
                super().__init__()
                self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, num_outputs))

            def forward(self, x):
                out = self.body(x)
                SEEN.append((torch.is_autocast_enabled("cpu"), out.dtype))
                return out

        def build(input_shape, num_outputs):
            return Probe(input_shape, num_outputs)
    """)
    config = make_config("digits-mlp", {"model": {"import": f"{name}:build"}}, epochs=4, precision="bf16")
    finished, _, trainer = run_trainer(config)
    assert finished.state == "finished"
    assert finished.last["val_accuracy"] > 0.85
    seen = __import__(name).SEEN
    assert seen and all(seen_item == (True, torch.bfloat16) for seen_item in seen)
    assert all(parameter.dtype == torch.float32 for parameter in trainer.model.parameters())


def test_fp32_runs_without_autocast(make_config, run_trainer, user_module):
    name = user_module("""
        import torch
        from torch import nn

        SEEN = []

        def build(input_shape, num_outputs):
            class Probe(nn.Linear):
                def forward(self, x):
                    SEEN.append(torch.is_autocast_enabled("cpu"))
                    return super().forward(x)
            return Probe(input_shape[0], num_outputs)
    """)
    run_trainer(make_config("iris-linear", {"model": {"import": f"{name}:build"}}, epochs=1))
    assert __import__(name).SEEN and not any(__import__(name).SEEN)


def test_compile_falls_back_to_eager(make_config, run_trainer, monkeypatch):
    def broken_compile(model, *args, **kwargs):
        raise RuntimeError("no backend here")

    monkeypatch.setattr(torch, "compile", broken_compile)
    finished, events, _ = run_trainer(make_config("iris-linear", epochs=1, compile=True))
    assert finished.state == "finished"
    assert any("torch.compile unavailable" in event.message for event in events.of(Warning))


def test_compiled_forward_that_fails_falls_back_to_eager(make_config, run_trainer, monkeypatch):
    def failing_compile(model, *args, **kwargs):
        def forward(inputs):
            raise RuntimeError("inductor exploded")
        return forward

    monkeypatch.setattr(torch, "compile", failing_compile)
    finished, events, _ = run_trainer(make_config("iris-linear", epochs=2, compile=True))
    assert finished.state == "finished" and finished.step == 16
    assert sum("torch.compile failed" in event.message for event in events.of(Warning)) == 1


def _conv_weights(model):
    """Those whose layout tells (a weight of one input channel is in both layouts at once)."""
    return [module.weight for module in model.modules()
            if isinstance(module, torch.nn.Conv2d) and module.in_channels > 1]


def test_the_catalog_cnn_trains_in_channels_last_and_its_checkpoint_loads_into_a_plain_model(make_config,
                                                                                               run_trainer):
    from tui_trainer.catalog.models import build_model

    config = make_config("digits-cnn", epochs=1, max_steps=3)
    finished, _, trainer = run_trainer(config)
    assert finished.state == "finished"
    weights = _conv_weights(trainer.model)
    assert weights and all(weight.is_contiguous(memory_format=torch.channels_last) for weight in weights)
    plain = build_model("cnn", None, config.model.options, trainer.data.input_shape, trainer.data.num_outputs)
    plain.load_state_dict(load_checkpoint(trainer.run_dir / "last.pt")["model"])
    assert all(torch.equal(plain.state_dict()[key], value) for key, value in trainer.model.state_dict().items())


def test_channels_last_is_off_when_the_preset_says_so_and_for_a_model_of_your_own(make_config, run_trainer,
                                                                                  user_module):
    _, _, trainer = run_trainer(make_config("digits-cnn", epochs=1, max_steps=2, channels_last=False))
    assert _conv_weights(trainer.model)
    assert not any(weight.is_contiguous(memory_format=torch.channels_last) for weight in _conv_weights(trainer.model))
    name = user_module("""
        from torch import nn

        def build(input_shape, num_outputs):
            channels, height, width = input_shape
            return nn.Sequential(nn.Conv2d(channels, 4, 3), nn.Conv2d(4, 4, 3), nn.Flatten(),
                                 nn.Linear(4 * (height - 4) * (width - 4), num_outputs))
    """)
    config = make_config("digits-cnn", {"model": {"import": f"{name}:build"}}, epochs=1, max_steps=2)
    _, _, trainer = run_trainer(config)
    assert _conv_weights(trainer.model)
    assert not any(weight.is_contiguous(memory_format=torch.channels_last) for weight in _conv_weights(trainer.model))


# ---------------------------------------------------------------- no per-step device reads

READS = ("item", "tolist", "cpu", "numpy")
IMPLICIT = ("__bool__", "__float__", "__int__", "__index__")


@pytest.mark.parametrize("every_steps", [1000, 100, 25])
def test_no_per_step_host_device_sync(every_steps, make_config, monkeypatch):
    config = make_config("sine-regression", epochs=1, data__batch_size=4, model__options__hidden=[8],
                         data__options__samples=5000, optimizer={"name": "sgd", "lr": 0.01},
                         scheduler={"name": "none"}, logging={"every_steps": every_steps, "every_ms": 3_600_000},
                         checkpoint={"every_epochs": 0, "save_best": False})
    counts: Counter[str] = Counter()
    training = threading.Event()
    for name in READS + IMPLICIT:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            if training.is_set():
                counts[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)

    def on_event(event):
        if isinstance(event, RunStarted):
            training.set()
        elif isinstance(event, RunFinished):
            training.clear()

    trainer = Trainer(config, on_event)
    finished = trainer.run()
    assert finished.step == 1000
    explicit = sum(counts[name] for name in READS)
    assert explicit <= 1000 // every_steps + 3, counts
    parameter_tensors = len(list(trainer.model.parameters()))
    assert sum(counts[name] for name in IMPLICIT) <= 2 * parameter_tensors, counts


# ---------------------------------------------------------------- faults




@pytest.fixture
def faulty(make_config, user_module):
    name = user_module(FAULTY)

    def config(fault, at=5, **dotted):
        return make_config("iris-linear", {"model": {"import": f"{name}:build", "options": {"fault": fault, "at": at}},
                                           "optimizer": {"name": "sgd", "lr": 0.1}},
                           **{"logging__every_steps": 1, **dotted})

    return config


def assert_no_bad_checkpoint(run_dir: Path) -> None:
    for path in run_dir.glob("*.pt"):
        payload = load_checkpoint(path)
        assert all(torch.isfinite(value).all() for value in payload["model"].values()), path


def test_huge_lr_fails_headless_with_non_finite(make_config, run_trainer):
    config = make_config("sine-regression", epochs=3, optimizer={"name": "sgd", "lr": 100.0},
                         scheduler={"name": "none"})
    finished, events, trainer = run_trainer(config)
    assert finished.state == "failed"
    failed = events.of(RunFailed)
    assert len(failed) == 1 and failed[0].fault == "non_finite"
    assert "loss is" in failed[0].message and "learning rate" in failed[0].advice
    assert finished.message == failed[0].message
    assert any(isinstance(event, CheckpointFailed) and "not finite" in event.message for event in events.events)
    assert not (Path(trainer.run_dir) / "last.pt").exists()
    assert_no_bad_checkpoint(Path(trainer.run_dir))


def test_nan_after_some_steps_fails_headless_and_keeps_the_good_checkpoint(faulty, run_trainer):
    finished, events, trainer = run_trainer(faulty("nan", at=12, epochs=3), pause_on_fault=False)
    assert finished.state == "failed" and finished.step == 12
    assert events.of(RunFailed)[0].fault == "non_finite"
    assert "training loss is nan at step 12" in finished.message
    run_dir = Path(trainer.run_dir)
    assert (run_dir / "best.pt").exists() and not (run_dir / "last.pt").exists()
    assert load_checkpoint(run_dir / "best.pt")["trainer"]["step"] == 8
    assert_no_bad_checkpoint(run_dir)
    assert events.states()[-1] == "failed"


def test_nan_validation_is_never_best(faulty, run_trainer):
    finished, events, trainer = run_trainer(faulty("nan-eval", epochs=2))
    assert finished.state == "failed" and "validation loss is nan after epoch 1" in finished.message
    assert [epoch.is_best for epoch in events.of(EpochEnded)] == [False]
    assert not (Path(trainer.run_dir) / "best.pt").exists()
    assert finished.best == {} and finished.best_epoch is None
    assert_no_bad_checkpoint(Path(trainer.run_dir))


def test_nan_pauses_with_pause_on_fault_and_stop_ends_it(faulty, run_trainer):
    paused = []

    def handler(event, trainer):
        if isinstance(event, StateChanged) and event.state == "paused":
            paused.append(event)
            assert trainer.step == 5
            trainer.controls.save()
            trainer.controls.stop()

    finished, events, trainer = run_trainer(faulty("nan", at=5, epochs=3), handler=handler, pause_on_fault=True)
    assert len(paused) == 1 and "training loss is nan at step 5" in paused[0].reason
    assert "learning rate" in paused[0].reason
    assert events.of(RunFailed)[0].fault == "non_finite"
    assert finished.state == "stopped" and finished.step == 5
    refused = events.of(CheckpointFailed)
    assert [event.reason for event in refused] == ["manual", "last"]
    assert all("weights are not finite" in event.message for event in refused)
    assert not (Path(trainer.run_dir) / "last.pt").exists() and not list(Path(trainer.run_dir).glob("manual-*"))
    assert_no_bad_checkpoint(Path(trainer.run_dir))


@pytest.mark.parametrize("fault", ["oom", "oom-text"])
def test_out_of_memory_pauses_with_advice_and_resume_completes(fault, faulty, run_trainer):
    def handler(event, trainer):
        if isinstance(event, StateChanged) and event.state == "paused":
            trainer.controls.resume()

    finished, events, _ = run_trainer(faulty(fault, at=3, epochs=2), handler=handler, pause_on_fault=True)
    failed = events.of(RunFailed)
    assert len(failed) == 1 and failed[0].fault == "out_of_memory"
    assert "batch size" in failed[0].advice and "16" in failed[0].advice
    paused = [event for event in events.of(StateChanged) if event.state == "paused"]
    assert len(paused) == 1 and "batch size" in paused[0].reason and "out of memory" in paused[0].reason
    assert finished.state == "finished" and finished.step == 16
    assert [event.step for event in events.of(Progress)] == list(range(1, 17)), "the failed step is retried"


@pytest.mark.parametrize("fault", ["oom", "oom-text"])
def test_out_of_memory_fails_headless_with_the_message(fault, faulty, run_trainer):
    finished, events, trainer = run_trainer(faulty(fault, at=3, epochs=2), pause_on_fault=False)
    assert finished.state == "failed" and finished.step == 2
    assert finished.message == "out of memory on cpu at step 2"
    failed = events.of(RunFailed)[0]
    assert failed.fault == "out_of_memory" and "smaller batch size (now 16)" in failed.advice
    assert load_checkpoint(Path(trainer.run_dir) / "last.pt")["trainer"]["step"] == 2


def test_out_of_memory_in_validation_pauses_too(faulty, run_trainer):
    def handler(event, trainer):
        if isinstance(event, StateChanged) and event.state == "paused":
            trainer.controls.resume()

    finished, events, _ = run_trainer(faulty("oom-eval", at=1, epochs=2), handler=handler, pause_on_fault=True)
    assert [event.fault for event in events.of(RunFailed)] == ["out_of_memory"]
    assert "batch size" in events.of(RunFailed)[0].advice
    assert finished.state == "finished" and [epoch.epoch for epoch in events.of(EpochEnded)] == [1, 2]
    assert all(math.isfinite(epoch.val["val_loss"]) for epoch in events.of(EpochEnded))


def test_out_of_memory_in_validation_fails_headless_with_the_message(faulty, run_trainer):
    finished, events, trainer = run_trainer(faulty("oom-eval", at=1, epochs=2))
    assert finished.state == "failed" and finished.message == "out of memory on cpu at step 8"
    assert events.of(RunFailed)[0].fault == "out_of_memory"
    assert load_checkpoint(Path(trainer.run_dir) / "last.pt")["trainer"]["step"] == 8


def test_an_unexpected_error_fails_the_run_and_saves(make_config, run_trainer, user_module):
    name = user_module("""
        from torch import nn

        class Broken(nn.Linear):
            calls = 0

            def forward(self, x):
                Broken.calls += 1
                if Broken.calls == 4:
                    raise ValueError("shapes do not fit")
                return super().forward(x)

        def build(input_shape, num_outputs):
            return Broken(input_shape[0], num_outputs)
    """)
    finished, events, trainer = run_trainer(make_config("iris-linear", {"model": {"import": f"{name}:build"}}))
    assert finished.state == "failed" and finished.message == "ValueError: shapes do not fit"
    assert events.of(RunFailed)[0].fault == "error"
    assert (Path(trainer.run_dir) / "last.pt").exists()


# ---------------------------------------------------------------- saving fails: training goes on


def test_a_failing_save_is_reported_and_training_goes_on(make_config, run_trainer, monkeypatch):
    from tui_trainer.engine import checkpoints

    real_save = checkpoints.save_checkpoint

    def full_disk(path, payload):
        if Path(path).name.startswith("epoch-"):
            raise checkpoints.CheckpointError(path, "not saved: the disk is full; the previous checkpoint is untouched")
        return real_save(path, payload)

    monkeypatch.setattr(checkpoints, "save_checkpoint", full_disk)
    finished, events, trainer = run_trainer(make_config("iris-linear", epochs=3, checkpoint={"every_epochs": 1}))
    failed = events.of(CheckpointFailed)
    assert len(failed) == 3 and all("disk is full" in event.message for event in failed)
    assert finished.state == "finished" and finished.step == 24
    assert (Path(trainer.run_dir) / "last.pt").exists()


# ---------------------------------------------------------------- data that does not fit in memory


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_path_trains(workers, fake_torchvision, make_config, run_trainer):
    config = make_config("mnist-cnn", {"data.options.download": False, "data.num_workers": workers,
                                       "data.batch_size": 16, "epochs": 3, "scheduler.name": "none",
                                       "model.options.channels": [8], "model.options.hidden": 16})
    finished, events, trainer = run_trainer(config)
    assert not trainer.data.in_memory
    started = events.of(RunStarted)[0]
    assert started.train_samples == 96 and started.val_samples == 48 and started.steps_per_epoch == 6
    assert finished.state == "finished" and finished.step == 18
    assert finished.last["val_accuracy"] >= 0.5
