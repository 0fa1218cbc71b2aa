"""What the dashboard shows of one run, built from the engine's events in the UI thread.

No Textual here: `RunView.apply(event)` updates plain fields and bounded series and returns the lines
for the event log. The widgets read the view when the app redraws them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tui_trainer.engine.events import (
    FINAL_STATES,
    CheckpointFailed,
    CheckpointSaved,
    EpochEnded,
    Event,
    HyperparametersChanged,
    Progress,
    RunFailed,
    RunFinished,
    RunStarted,
    StateChanged,
    Warning,
)
from tui_trainer.runs.registry import LIVE_STATES
from tui_trainer.ui import format as fmt
from tui_trainer.ui.series import Series

ENDED_STATES = (*FINAL_STATES, "lost", "detached")
"""States after which the view hears nothing more of the run: lost, and "detached" (shown as Detached: the app
let go of the run, which trains on without this view)."""
SERIES_POINTS = 1024
SMOOTHING = 0.6
MAX_TWEAK_MARKS = 50
TWEAK_DIGITS = 6
"""Significant digits of a hyperparameter in the tweak panel and the log (0.002935 reads as typed)."""


@dataclass(frozen=True)
class LogLine:
    text: str
    level: str = "info"
    """info, good, warning or error."""


@dataclass(frozen=True)
class Tweak:
    step: int
    changes: dict[str, float]

    @property
    def label(self) -> str:
        return " ".join(f"{_short_name(key)}={value:.3g}" for key, value in self.changes.items())


def _short_name(key: str) -> str:
    return {"weight_decay": "wd", "momentum": "mom"}.get(key, key)


@dataclass
class RunView:
    """The latest figures of a run, its chart series and tweak marks."""

    config: dict[str, Any] = field(default_factory=dict)
    task: str = "classification"
    run_id: str = ""
    run_dir: str = ""
    preset: str = ""
    model: str = ""
    device: str = ""
    device_name: str = ""
    parameters: int = 0
    world_size: int = 1
    threads: dict[str, Any] | None = None
    """torch's thread counts for the run (RunStarted.threads); None until it starts, or from an older engine."""
    state: str = "starting"
    reason: str = ""
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    total_steps: int = 0
    epoch_step: int = 0
    steps_per_epoch: int = 0
    samples_per_s: float | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    hyperparameters: dict[str, float] = field(default_factory=dict)
    train_loss: float | None = None
    train_accuracy: float | None = None
    val: dict[str, float] = field(default_factory=dict)
    fault: RunFailed | None = None
    finished: RunFinished | None = None
    engine_devices: list[dict[str, Any]] = field(default_factory=list)
    last_checkpoint: str | None = None
    saves: int = 0
    """Checkpoints written so far (the status line names a new one for a few seconds)."""
    epoch_end_step: int | None = None
    """The step at which an epoch last ended (or the run started at an epoch's start): there the engine's
    epoch counter has already moved on to the next epoch."""
    tweaks: list[Tweak] = field(default_factory=list)
    chart_version: int = 0
    """Moves whenever a chart's data or marks change."""

    def __post_init__(self) -> None:
        self.loss = Series(SERIES_POINTS)
        """Training loss per progress event, smoothed."""
        self.val_loss = Series(SERIES_POINTS)
        self.train_metric = Series(SERIES_POINTS)
        """Training accuracy (classification); empty for regression."""
        self.val_metric = Series(SERIES_POINTS)
        """Validation accuracy, or R² for regression."""
        self._smoothed: float | None = None

    # ------------------------------------------------------------ derived

    @property
    def metric_name(self) -> str:
        return "accuracy" if self.task == "classification" else "R²"

    @property
    def val_metric_key(self) -> str:
        return "val_accuracy" if self.task == "classification" else "val_r2"

    @property
    def active(self) -> bool:
        return self.state not in ENDED_STATES

    @property
    def optimizer_name(self) -> str:
        return str(self.config.get("optimizer", {}).get("name", ""))

    # ------------------------------------------------------------ events

    def apply(self, event: Event) -> list[LogLine]:
        """Take one event in; returns what the event log should say about it."""
        handler = _HANDLERS.get(type(event))
        return handler(self, event) if handler else []

    def _started(self, event: RunStarted) -> list[LogLine]:
        self.config = event.config
        self.task, self.run_id, self.run_dir, self.preset = event.task, event.run_id, event.run_dir, event.preset
        self.model, self.device, self.device_name = event.model, event.device, event.device_name
        self.parameters, self.epochs, self.total_steps = event.parameters, event.epochs, event.total_steps
        self.world_size, self.threads = event.world_size, event.threads
        self.steps_per_epoch, self.epoch, self.step = event.steps_per_epoch, event.start_epoch, event.start_step
        self.epoch_step = max(0, event.start_step - (event.start_epoch - 1) * event.steps_per_epoch)
        optimizer = event.config.get("optimizer", {})
        self.hyperparameters = {key: optimizer[key] for key in ("weight_decay", "momentum")
                                if optimizer.get(key) is not None}
        self.hyperparameters["lr"] = event.lr
        for record in event.history:
            self._replay(record)
        # Its history's epochs say whether it starts at an epoch's end; without any, the engine's count does.
        ended = [record.get("step") for record in event.history if record.get("type") == "epoch_ended"]
        at_epoch_end = event.start_step in ended if ended else self.epoch_step == 0
        if self.epoch_end_step is None and at_epoch_end:
            self.epoch_end_step = event.start_step  # started at an epoch's start, with no epoch in its history
        start_epoch = event.start_epoch - 1 if at_epoch_end and event.start_step else event.start_epoch
        if self.epoch_end_step == event.start_step and event.start_step:
            # Resumed at an epoch's end, nothing trained since: show that epoch as done, as its checkpoint does.
            self.epoch, self.epoch_step = start_epoch, event.steps_per_epoch
        where = event.device_name if event.world_size == 1 else f"{event.world_size} processes ({event.device_name})"
        line = (f"Run {event.run_id}: {event.preset}, {event.model} ({event.parameters:,} parameters) on "
                f"{where}; {event.train_samples:,} training and {event.val_samples:,} validation "
                f"samples, {event.epochs} epochs of {event.steps_per_epoch} steps")
        lines = [LogLine(line)]
        if event.start_step:
            lines.append(LogLine(f"Resumed at epoch {start_epoch}, step {event.start_step:,}, with "
                                 f"{len(event.history):,} records of history"))
        return lines

    def _replay(self, record: dict[str, Any]) -> None:
        kind = record.get("type")
        if kind == "progress":
            self.train_loss, self.train_accuracy = record["train_loss"], record.get("train_accuracy")
            self.elapsed_s = record.get("elapsed_s", self.elapsed_s)
            self._add_progress(record["step"], record["train_loss"], record.get("train_accuracy"))
        elif kind == "epoch_ended":
            self.val = dict(record.get("val", {}))
            self.epoch_end_step = record["step"]
            self._add_epoch(record["step"], self.val)
        elif kind == "hyperparameters_changed":
            self._add_tweak(record["step"], record.get("changes", {}))

    def _add_progress(self, step: int, loss: float, accuracy: float | None) -> None:
        if math.isfinite(loss):
            self._smoothed = loss if self._smoothed is None else (
                SMOOTHING * self._smoothed + (1 - SMOOTHING) * loss)
            self.loss.append(step, self._smoothed)
        if accuracy is not None:
            self.train_metric.append(step, accuracy)
        self.chart_version += 1

    def _add_epoch(self, step: int, val: dict[str, float]) -> None:
        if "val_loss" in val:
            self.val_loss.append(step, val["val_loss"])
        metric = val.get(self.val_metric_key)
        if metric is not None:
            self.val_metric.append(step, metric)
        self.chart_version += 1

    def _add_tweak(self, step: int, changes: dict[str, float]) -> None:
        self.tweaks.append(Tweak(step, dict(changes)))
        del self.tweaks[:-MAX_TWEAK_MARKS]
        self.chart_version += 1

    def _progress(self, event: Progress) -> list[LogLine]:
        self.epoch, self.step, self.epoch_step = event.epoch, event.step, event.epoch_step
        self.steps_per_epoch, self.total_steps = event.steps_per_epoch, event.total_steps
        self.samples_per_s, self.elapsed_s, self.eta_s = event.samples_per_s, event.elapsed_s, event.eta_s
        self.train_loss, self.train_accuracy = event.train_loss, event.train_accuracy
        self.hyperparameters["lr"] = event.lr
        self.engine_devices = event.devices
        self._add_progress(event.step, event.train_loss, event.train_accuracy)
        return []

    def _epoch_ended(self, event: EpochEnded) -> list[LogLine]:
        self.val = dict(event.val)
        self.epoch_end_step = event.step
        self.elapsed_s = event.elapsed_s
        self._add_epoch(event.step, event.val)
        train = event.train
        parts = [f"Epoch {event.epoch}/{self.epochs}: train loss {fmt.number(train.get('train_loss'))}"]
        if "train_accuracy" in train:
            parts.append(f"acc {fmt.percent(train['train_accuracy'])}")
        parts.append(f"| val loss {fmt.number(event.val.get('val_loss'))}")
        if "val_accuracy" in event.val:
            parts.append(f"acc {fmt.percent(event.val['val_accuracy'])}")
        if "val_r2" in event.val:
            parts.append(f"R² {fmt.number(event.val['val_r2'], 3)} MAE {fmt.number(event.val.get('val_mae'))}")
        if event.is_best:
            parts.append("(best)")
        return [LogLine(" ".join(parts), "good" if event.is_best else "info")]

    def _state_changed(self, event: StateChanged) -> list[LogLine]:
        previous, self.state, self.reason = self.state, event.state, event.reason
        if event.state == "running":
            self.fault = None
            return [LogLine(f"Resumed at step {self.step:,}")] if previous == "paused" else []
        if event.state == "paused":
            return [] if self.fault else [LogLine(f"Paused at step {self.step:,} (space resumes)")]
        if event.state == "stopping":
            return [LogLine(f"Stopping{': ' + event.reason if event.reason else ''}; saving last.pt")]
        return []

    def _hyperparameters(self, event: HyperparametersChanged) -> list[LogLine]:
        changes = ", ".join(self._change_text(key, event.previous.get(key), value)
                            for key, value in event.changes.items())
        self.hyperparameters.update(event.changes)
        self._add_tweak(event.step, event.changes)
        return [LogLine(f"Step {event.step:,}: {changes}", "good")]

    def _change_text(self, key: str, old: float | None, new: float) -> str:
        """A change as typed (the tweak panel's digits, not the status line's). A schedule's run changes the
        base lr, which the engine reports as the old value, while the status line showed this step's lr."""
        text = f"{key} {fmt.number(old, TWEAK_DIGITS)} -> {fmt.number(new, TWEAK_DIGITS)}"
        now = self.hyperparameters.get(key)
        if key == "lr" and old is not None and now is not None and not math.isclose(old, now, rel_tol=1e-6):
            return f"base {text} (the schedule had this step's lr at {fmt.number(now, TWEAK_DIGITS)})"
        return text

    def _checkpoint_saved(self, event: CheckpointSaved) -> list[LogLine]:
        self.last_checkpoint = event.path
        self.saves += 1
        if event.reason in ("epoch", "best"):
            return []  # periodic saves show in the status line; one log line per epoch is enough
        return [LogLine(f"Saved {event.reason} checkpoint {event.path} ({fmt.size(event.size_bytes)})", "good")]

    def _checkpoint_failed(self, event: CheckpointFailed) -> list[LogLine]:
        return [LogLine(f"Checkpoint not saved: {event.path}: {event.message}", "error")]

    def _warning(self, event: Warning) -> list[LogLine]:
        return [LogLine(f"Warning: {event.message}", "warning")]

    def _failed(self, event: RunFailed) -> list[LogLine]:
        self.fault = event
        advice = f" Advice: {event.advice}." if event.advice else ""
        return [LogLine(f"Fault: {event.message}.{advice}", "error")]

    def _finished(self, event: RunFinished) -> list[LogLine]:
        self.finished = event
        self.state, self.elapsed_s, self.eta_s = event.state, event.elapsed_s, None
        self.last_checkpoint = event.checkpoint or self.last_checkpoint
        self.epoch, self.step = event.epoch, event.step  # named as its checkpoints name it
        monitor = self.config.get("checkpoint", {}).get("monitor", "val_loss")
        text = (f"Run {event.state} at epoch {self.epoch}, step {event.step:,} "
                f"after {fmt.duration(event.elapsed_s)}")
        if event.best_epoch is not None and monitor in event.best:
            best = event.best[monitor]
            shown = fmt.percent(best) if monitor.endswith("accuracy") else fmt.number(best)
            text += f"; best {monitor} {shown} (epoch {event.best_epoch})"
        if event.message:
            text += f"; {event.message}"
        if event.unsaved:
            text += f"; {event.unsaved_note()}"
        return [LogLine(text, "error" if event.state == "failed" or event.last_unsaved else "good")]


    def connection_ended(self, state: str, reason: str = "", exit_status: str | None = None,
                         last_checkpoint: str | None = None) -> list[LogLine]:
        """A detached run's socket closed without a RunFinished: show what its run.json says (lost, with
        the exit status; or a final state the socket did not deliver)."""
        self.state, self.eta_s = state, None
        self.reason = exit_status or reason
        self.last_checkpoint = last_checkpoint or self.last_checkpoint
        checkpoint = f"; last checkpoint: {self.last_checkpoint}" if self.last_checkpoint else "; no checkpoint"
        if state == "lost":
            why = f"the engine process {exit_status}" if exit_status else (reason or "its process is gone")
            return [LogLine(f"Run lost at step {self.step:,}: {why}{checkpoint}", "error")]
        if state in LIVE_STATES:
            return [LogLine(f"The connection to the run closed; it is still {state} (r lists runs to attach again)",
                            "warning")]
        detail = f": {reason}" if reason else ""
        return [LogLine(f"Run {state} at step {self.step:,}{detail}{checkpoint}",
                        "error" if state == "failed" else "info")]

    def released(self) -> list[LogLine]:
        """The app let go of the run (the user detached it): it trains on without this view."""
        self.state, self.eta_s = "detached", None
        return [LogLine(f"Detached at step {self.step:,}: the run goes on in the background", "good")]


_HANDLERS = {
    RunStarted: RunView._started,
    Progress: RunView._progress,
    EpochEnded: RunView._epoch_ended,
    StateChanged: RunView._state_changed,
    HyperparametersChanged: RunView._hyperparameters,
    CheckpointSaved: RunView._checkpoint_saved,
    CheckpointFailed: RunView._checkpoint_failed,
    Warning: RunView._warning,
    RunFailed: RunView._failed,
    RunFinished: RunView._finished,
}
