"""What a run keeps count of across its epochs, each with the state_dict a checkpoint carries.

EpochMetrics adds up the running epoch's training loss and accuracy and keeps the last epoch's metrics;
BestMetric remembers the best epoch by the monitored metric (best.pt follows it); EarlyStopping counts the
epochs without improvement; TrainingClock measures training time, pauses left out. Their state_dicts are
keys of a checkpoint's "trainer" section (see checkpoints._TrainerState): the format is theirs together.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from tui_trainer.config import EarlyStoppingConfig, metric_mode


class EpochMetrics:
    """The running epoch's sums (per-sample loss, correct answers, samples) and the last epoch's metrics."""

    def __init__(self, classification: bool) -> None:
        self.classification = classification
        self.totals: list[float] = [0.0, 0.0, 0]
        self.last_train: dict[str, float] = {}
        self.last_val: dict[str, float] = {}

    def add(self, loss_sum: float, correct: float, samples: float) -> None:
        """A progress window's sums (already read back from the device)."""
        self.totals[0] += loss_sum
        self.totals[1] += correct
        self.totals[2] += samples

    def end_training(self) -> dict[str, float]:
        """The epoch's training metrics, from every step's sums (also those of a run resumed mid-epoch)."""
        loss_sum, correct, samples = self.totals
        self.last_train = {"train_loss": loss_sum / max(1, samples)}
        if self.classification:
            self.last_train["train_accuracy"] = correct / max(1, samples)
        return self.last_train

    def next_epoch(self) -> None:
        self.totals = [0.0, 0.0, 0]

    @property
    def last(self) -> dict[str, float]:
        return {**self.last_train, **self.last_val}

    def state_dict(self) -> dict[str, Any]:
        return {"epoch_totals": list(self.totals), "last_train": dict(self.last_train),
                "last_val": dict(self.last_val)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.totals = list(state["epoch_totals"])
        self.last_train, self.last_val = state["last_train"], state["last_val"]


class BestMetric:
    """The best epoch so far by the monitored metric, with all of that epoch's metrics."""

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.metrics: dict[str, float] = {}
        self.value: float | None = None
        self.epoch: int | None = None

    def offer(self, epoch: int, train: dict[str, float], val: dict[str, float],
              weights_finite: Callable[[], bool]) -> bool:
        """Whether epoch is the new best; weights_finite is asked only of an epoch that would be."""
        value = val.get(self.monitor)
        if value is None or not math.isfinite(value) or not math.isfinite(val.get("val_loss", 0.0)):
            return False  # a model whose validation loss is NaN or infinite is never the best, whatever its accuracy
        better = self.value is None or (
            value < self.value if metric_mode(self.monitor) == "min" else value > self.value)
        if better and weights_finite():
            self.value, self.epoch = value, epoch
            self.metrics = {**train, **val}
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"best": dict(self.metrics), "best_value": self.value, "best_epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.metrics, self.value, self.epoch = state["best"], state["best_value"], state["best_epoch"]


class EarlyStopping:
    """Epochs since the monitored metric last improved by min_delta; none counted without a rule."""

    def __init__(self, rule: EarlyStoppingConfig | None) -> None:
        self.rule = rule
        self.best: float | None = None
        self.bad_epochs = 0

    def should_stop(self, val: dict[str, float]) -> bool:
        """Count this epoch; whether the run stops here."""
        rule = self.rule
        if rule is None:
            return False
        value = val.get(rule.monitor)
        mode = rule.mode or metric_mode(rule.monitor)
        if value is None or not math.isfinite(value):
            improved = False
        elif self.best is None:
            improved = True
        elif mode == "min":
            improved = value < self.best - rule.min_delta
        else:
            improved = value > self.best + rule.min_delta
        if improved:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= rule.patience

    @property
    def reason(self) -> str:
        rule = self.rule
        return f"early stopping: {rule.monitor} did not improve for {rule.patience} epochs" if rule else ""

    def state_dict(self) -> dict[str, Any]:
        return {"stopping_best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_epochs = state["stopping_best"], state["bad_epochs"]


class TrainingClock:
    """Seconds spent training in all, over every session of a run (a resume adds to the checkpoint's); time
    paused, also the pause under way, is not training."""

    def __init__(self) -> None:
        self.before = 0.0
        """Seconds of the sessions before this one (from the checkpoint resumed)."""
        self._started = time.perf_counter()
        self._paused_s = 0.0
        self._paused_since: float | None = None

    def start(self) -> None:
        """This session's training starts now (again, after a wait for the app that owns it)."""
        self._started = time.perf_counter()
        self._paused_s = 0.0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        self._paused_since = time.perf_counter()
        try:
            yield
        finally:
            self._paused_s += time.perf_counter() - self._paused_since
            self._paused_since = None

    def session_s(self) -> float:
        """Training seconds of this session alone."""
        now = time.perf_counter()
        pause = now - self._paused_since if self._paused_since is not None else 0.0
        return now - self._started - self._paused_s - pause

    def elapsed_s(self) -> float:
        return self.before + self.session_s()

    def state_dict(self) -> dict[str, Any]:
        return {"elapsed_s": self.elapsed_s()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.before = state["elapsed_s"]
