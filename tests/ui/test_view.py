"""The app's plain-Python parts: the run view built from events, the form check, the throttle, ticks."""

from __future__ import annotations

import math

from tui_trainer import presets
from tui_trainer.config import config_from_dict
from tui_trainer.engine.events import (
    CheckpointSaved,
    EpochEnded,
    HyperparametersChanged,
    Progress,
    RunFailed,
    RunFinished,
    RunStarted,
    StateChanged,
)
from tui_trainer.ui import form
from tui_trainer.ui import format as fmt
from tui_trainer.ui.run_view import RunView
from tui_trainer.ui.throttle import Throttle
from tui_trainer.ui.widgets.charts import nice_ticks


def started(**changes) -> RunStarted:
    fields = dict(run_id="r1", run_dir="/tmp/r1", preset="p", task="classification", device="cpu",
                  device_name="CPU", model="mlp", parameters=10, train_samples=100, val_samples=20, epochs=5,
                  steps_per_epoch=10, total_steps=50, start_epoch=1, start_step=0, lr=0.1,
                  config={"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}})
    return RunStarted(**{**fields, **changes})


def progress(step: int, loss: float = 1.0) -> Progress:
    return Progress(epoch=1, step=step, epoch_step=step, steps_per_epoch=10, total_steps=50, train_loss=loss,
                    train_accuracy=0.5, lr=0.1, samples_per_s=100.0, elapsed_s=1.0, eta_s=2.0)


def test_view_follows_a_run_and_logs_what_matters():
    view = RunView()
    lines = view.apply(started())
    assert view.run_id == "r1" and view.hyperparameters == {"momentum": 0.9, "lr": 0.1}
    assert "r1" in lines[0].text
    for step in range(1, 6):
        assert view.apply(progress(step, loss=float(step))) == []
    assert view.step == 5 and len(view.loss) == 5 and len(view.train_metric) == 5
    smoothed = view.loss.view(100)[1]
    assert smoothed[0] == 1.0 and smoothed[-1] < 5.0  # smoothed, not raw
    lines = view.apply(EpochEnded(epoch=1, step=10, train={"train_loss": 1.0, "train_accuracy": 0.5},
                                  val={"val_loss": 0.9, "val_accuracy": 0.6}, lr=0.1, elapsed_s=2, is_best=True))
    assert "Epoch 1/5" in lines[0].text and "(best)" in lines[0].text and lines[0].level == "good"
    assert len(view.val_loss) == 1 and len(view.val_metric) == 1
    version = view.chart_version
    lines = view.apply(HyperparametersChanged(step=10, epoch=2, changes={"lr": 0.01}, previous={"lr": 0.1}))
    assert view.hyperparameters["lr"] == 0.01 and view.tweaks[-1].step == 10 and view.chart_version > version
    assert "lr 0.1 -> 0.01" in lines[0].text
    assert view.apply(CheckpointSaved("/tmp/r1/epoch-0001.pt", 100, 1, 10, "epoch")) == []
    assert "manual" in view.apply(CheckpointSaved("/tmp/r1/m.pt", 2048, 1, 10, "manual"))[0].text
    view.apply(RunFailed("training loss is nan at step 12", "non_finite", "lower the learning rate"))
    assert view.fault is not None
    view.apply(StateChanged("running"))
    assert view.fault is None
    lines = view.apply(RunFinished(state="stopped", epoch=2, step=12, elapsed_s=3.0, best={}, last={},
                                   best_epoch=None, checkpoint="/tmp/r1/last.pt"))
    assert not view.active and view.last_checkpoint == "/tmp/r1/last.pt" and "stopped" in lines[0].text


def test_the_finish_line_gives_the_best_metric_in_its_own_terms():
    for monitor, best, shown in (("val_accuracy", 0.9667, "best val_accuracy 96.7% (epoch 6)"),
                                 ("val_loss", 0.03341, "best val_loss 0.03341 (epoch 6)")):
        view = RunView()
        view.apply(started(config={"checkpoint": {"monitor": monitor}}))
        lines = view.apply(RunFinished(state="finished", epoch=6, step=60, elapsed_s=0.4, best={monitor: best},
                                       last={}, best_epoch=6, checkpoint="/tmp/r1/last.pt"))
        assert lines[0].text.startswith("Run finished at epoch 6, step 60 after 0:00:00.4")
        assert shown in lines[0].text


def test_resumed_run_fills_the_charts_from_its_history():
    history = [
        {"type": "progress", "step": 10, "train_loss": 2.0, "train_accuracy": 0.3},
        {"type": "epoch_ended", "step": 10, "val": {"val_loss": 1.5, "val_accuracy": 0.4}},
        {"type": "hyperparameters_changed", "step": 12, "changes": {"lr": 0.05}},
        {"type": "progress", "step": 20, "train_loss": 1.0, "train_accuracy": 0.6},
    ]
    view = RunView()
    lines = view.apply(started(start_step=20, start_epoch=3, history=history))
    assert len(view.loss) == 2 and len(view.val_loss) == 1 and [t.step for t in view.tweaks] == [12]
    assert view.train_loss == 1.0 and view.val["val_accuracy"] == 0.4
    assert any("Resumed at epoch 3" in line.text for line in lines)


def test_regression_charts_r2():
    view = RunView()
    view.apply(started(task="regression"))
    view.apply(EpochEnded(epoch=1, step=10, train={"train_loss": 1.0}, val={"val_loss": 0.5, "val_r2": 0.7,
                                                                            "val_mae": 0.2},
                          lr=0.1, elapsed_s=1, is_best=False))
    assert view.metric_name == "R²" and set(view.val_metric.view(10)[1]) == {0.7}


def test_form_flags_every_wrong_field_with_the_config_error_text():
    _, raw = presets.load("iris-linear")
    values = form.values_from(config_from_dict(raw))
    result = form.check(raw, {**values, "lr": "abc", "epochs": "0"})
    assert not result.ok and result.config is None
    assert result.errors["lr"] == "optimizer.lr: input should be a valid number; given 'abc'"
    assert result.errors["epochs"].startswith("epochs: input should be greater than or equal to 1")
    assert form.check(raw, {**values, "lr": "0"}).errors["lr"].startswith("optimizer.lr: input should be greater")
    too_big = form.check(raw, {**values, "batch_size": "500"}, train_size=120)
    assert too_big.errors == {"batch_size": "data.batch_size: 500 is larger than the training set (120 samples)"}
    fp16 = form.check(raw, {**values, "precision": "fp16", "device": "cpu"})
    assert "fp16 needs a CUDA device" in fp16.errors["precision"]
    good = form.check(raw, {**values, "optimizer": "adam", "lr": "1e-3"})
    assert good.ok and good.config.optimizer.name == "adam" and good.config.optimizer.momentum is None


def test_form_choices_fit_the_task_and_data():
    _, raw = presets.load("sine-regression")
    choices = form.choices(config_from_dict(raw))
    assert set(choices["loss"]) == {"mse", "l1", "smooth_l1", "huber"}
    assert "cnn" not in choices["model"]
    _, raw = presets.load("digits-cnn")
    assert "cnn" in form.choices(config_from_dict(raw))["model"]
    assert form.field_for("optimizer.lr") == "lr" and form.field_for("scheduler.name") == form.GENERAL
    assert form.field_for("model.options.hidden") == "model", "the model choice shows its options' errors"


class FakeTimers:
    def __init__(self):
        self.scheduled = []

    def set_timer(self, delay, callback):
        self.scheduled.append((delay, callback))

        class Handle:
            def stop(self):
                pass

        return Handle()


def test_throttle_folds_requests_and_keeps_its_interval():
    host, calls = FakeTimers(), []
    throttle = Throttle(host, 10.0, lambda: calls.append(1))
    throttle.request()
    throttle.request()
    assert len(host.scheduled) == 1 and host.scheduled[0][0] < 0.1
    host.scheduled[0][1]()
    throttle.request()
    assert calls == [1] and len(host.scheduled) == 2 and host.scheduled[1][0] > 9


def test_ticks_and_formats():
    assert nice_ticks(0, 1000) == [0, 250, 500, 750, 1000]
    assert nice_ticks(5, 5) == [5]
    assert fmt.duration(3725) == "1:02:05" and fmt.duration(None) == "n/a"
    assert fmt.duration(0.07) == "0:00:00.1" and fmt.duration(9.34) == "0:00:09.3" and fmt.duration(10) == "0:00:10"
    assert fmt.size(2048) == "2.0 KiB" and fmt.size(None) == "n/a"
    assert fmt.compact_int(1500) == "1.5k" and fmt.compact_int(2_000_000) == "2M"
    assert fmt.bar(0.5, 4) == "██░░" and fmt.bar(None, 2) == "··"
    assert fmt.number(math.nan) == "nan"


async def test_event_log_shows_the_newest_lines_and_scrolls_back():
    from textual.app import App

    from tui_trainer.ui.run_view import LogLine
    from tui_trainer.ui.widgets.event_log import EventLog

    class LogApp(App[None]):
        def compose(self):
            yield EventLog(id="log")

    app = LogApp()
    async with app.run_test(size=(60, 5)) as pilot:
        log = app.query_one(EventLog)
        log.add([LogLine(f"line {number}") for number in range(20)])
        await pilot.pause()
        shown = str(log.render())
        assert "line 19" in shown and "line 10" not in shown
        log.focus()
        await pilot.press("up", "up")
        assert "line 17" in str(log.render()).splitlines()[-1] and "2 newer below" in log.border_subtitle
        await pilot.press("end")
        assert "line 19" in str(log.render()).splitlines()[-1]
        assert log.texts[0] == "line 0" and len(log.texts) == 20


async def test_device_panel_reads_n_a_for_what_a_machine_cannot_give():
    from textual.app import App

    from tui_trainer.engine.devices import DeviceSample
    from tui_trainer.ui.widgets.gauges import DevicePanel

    class PanelApp(App[None]):
        def compose(self):
            yield DevicePanel(id="devices")

    app = PanelApp()
    async with app.run_test(size=(40, 12)) as pilot:
        panel = app.query_one(DevicePanel)
        panel.show([DeviceSample("cuda:0", "Some GPU", memory_allocated_bytes=2**30, memory_reserved_bytes=2**31,
                                 memory_total_bytes=2**33)])
        await pilot.pause()
        text = str(panel.render())
        assert "cuda:0 Some GPU" in text and "2.0 / 8.0 GiB" in text
        assert "peak n/a" in text and "all procs n/a" in text and "util n/a" in text and "temp n/a" in text
        panel.show([DeviceSample("cpu", "CPU (2 cores)")])
        await pilot.pause()
        text = str(panel.render())
        assert "process memory n/a" in text and "process CPU n/a" in text


def test_a_run_handle_wakes_the_app_once_per_batch_and_bounds_its_queue(monkeypatch):
    from tui_trainer import presets as preset_files
    from tui_trainer.ui import handle as session_module

    calls = []
    session = session_module.ThreadHandle(preset_files.load_config("iris-linear"), notify=lambda: calls.append(1))
    session.on_event(started())
    session.on_event(progress(1))
    assert calls == [1] and session.training.is_set()
    assert [type(event).__name__ for event in session.take()] == ["RunStarted", "Progress"]
    session.on_event(progress(2))
    assert calls == [1, 1]
    monkeypatch.setattr(session_module, "MAX_PENDING", 3)
    for step in range(3, 10):
        session.on_event(progress(step))
    session.on_event(StateChanged("paused"))
    kinds = [type(event).__name__ for event in session.take()]
    assert kinds == ["Progress", "Progress", "Progress", "StateChanged"]
