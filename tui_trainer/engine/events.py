"""What the engine tells its listeners: small frozen dataclasses, each one JSON object.

Events hold numbers, strings, lists and dicts only, so they cross a process boundary as
`json.dumps(event.to_dict())` and come back with `event_from_dict`. Metric names follow the task:
classification has loss and accuracy; regression has loss, mae and r2.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tui_trainer.engine.states import ENGINE_STATES as RUN_STATES  # noqa: F401  (one definition: engine.states)
from tui_trainer.engine.states import FINAL_STATES as FINAL_STATES


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        # Shallow on purpose: events are never mutated, and asdict's deep copy costs the training thread.
        return {"type": self.kind, **{field.name: getattr(self, field.name) for field in dataclasses.fields(self)}}


@dataclass(frozen=True)
class RunStarted(Event):
    """The run is set up and about to train (also after a resume: start_step > 0, history filled)."""

    kind: ClassVar[str] = "run_started"
    run_id: str
    run_dir: str
    preset: str
    task: str
    device: str
    device_name: str
    model: str
    parameters: int
    train_samples: int
    val_samples: int
    epochs: int
    steps_per_epoch: int
    total_steps: int
    start_epoch: int
    start_step: int
    lr: float
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    """Earlier progress, epoch and hyperparameter records of a resumed run, as in metrics.jsonl."""
    world_size: int = 1
    """Processes training together (torchrun); 1 without it."""
    threads: dict[str, Any] | None = None
    """torch's thread counts for the run and why (runs.cpu_share.ThreadChoice: intra_op, inter_op,
    loader_worker, cpus, busy, ranks, set_by); None from a host that did not say."""


@dataclass(frozen=True)
class Progress(Event):
    """Training metrics averaged over the steps since the last Progress event."""

    kind: ClassVar[str] = "progress"
    epoch: int
    """1-based epoch in progress."""
    step: int
    """Global optimizer steps done."""
    epoch_step: int
    steps_per_epoch: int
    total_steps: int
    train_loss: float
    train_accuracy: float | None
    lr: float
    samples_per_s: float
    elapsed_s: float
    eta_s: float | None
    devices: list[dict[str, Any]] = field(default_factory=list)
    """The training process's own figures per device (torch.cuda memory), when on a GPU."""


@dataclass(frozen=True)
class EpochEnded(Event):
    kind: ClassVar[str] = "epoch_ended"
    epoch: int
    step: int
    train: dict[str, float]
    val: dict[str, float]
    """Validation metrics: val_loss and val_accuracy, or val_loss, val_mae and val_r2."""
    lr: float
    elapsed_s: float
    is_best: bool


@dataclass(frozen=True)
class StateChanged(Event):
    kind: ClassVar[str] = "state_changed"
    state: str
    reason: str = ""


@dataclass(frozen=True)
class HyperparametersChanged(Event):
    kind: ClassVar[str] = "hyperparameters_changed"
    step: int
    epoch: int
    changes: dict[str, float]
    """The new values, e.g. {"lr": 0.001}."""
    previous: dict[str, float]


@dataclass(frozen=True)
class CheckpointSaved(Event):
    kind: ClassVar[str] = "checkpoint_saved"
    path: str
    size_bytes: int
    epoch: int
    step: int
    reason: str
    """manual, last, best, epoch."""


@dataclass(frozen=True)
class CheckpointFailed(Event):
    kind: ClassVar[str] = "checkpoint_failed"
    path: str
    message: str
    reason: str


@dataclass(frozen=True)
class Warning(Event):
    kind: ClassVar[str] = "warning"
    message: str


@dataclass(frozen=True)
class RunFailed(Event):
    """Training hit a fault. With pause-on-fault the run waits paused; otherwise RunFinished follows."""

    kind: ClassVar[str] = "run_failed"
    message: str
    fault: str
    """non_finite, out_of_memory, data, error."""
    advice: str = ""


@dataclass(frozen=True)
class RunFinished(Event):
    kind: ClassVar[str] = "run_finished"
    state: str
    """finished, stopped or failed."""
    epoch: int
    """The epoch the run ended in, as its checkpoints and run.json name it: at an epoch's end (epoch_complete)
    the one just completed (40 for a finished 40-epoch run), else the one under way."""
    step: int
    elapsed_s: float
    best: dict[str, float]
    last: dict[str, float]
    best_epoch: int | None
    checkpoint: str | None
    """The last checkpoint written, if any."""
    message: str = ""
    unsaved: list[str] = field(default_factory=list)
    """Checkpoints asked for but not written (each had its CheckpointFailed), unless a later save of the same
    file landed: a full disk or a read-only folder does not stop a run, and its end says what is missing."""

    @property
    def last_unsaved(self) -> bool:
        """last.pt was asked for and could not be written: the run's end is not on disk."""
        return any(Path(path).name == "last.pt" for path in self.unsaved)

    def unsaved_note(self) -> str:
        """One sentence naming the checkpoints not written; empty if all were."""
        if not self.unsaved:
            return ""
        names = ", ".join(self.unsaved)
        return f"not saved: {names}" + (" (the run's end is not on disk)" if self.last_unsaved else "")
    epoch_complete: bool = True
    """The run ended at an epoch's end (not partway through `epoch`)."""

    def where(self) -> str:
        """Where in the run it ended: "after epoch 12 (step 1,536)" or "during epoch 13, at step 1,540"."""
        if self.epoch_complete:
            return f"after epoch {self.epoch} (step {self.step:,})"
        return f"during epoch {self.epoch}, at step {self.step:,}"


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (RunStarted, Progress, EpochEnded, StateChanged, HyperparametersChanged, CheckpointSaved,
                CheckpointFailed, Warning, RunFailed, RunFinished)
}


def event_from_dict(data: dict[str, Any]) -> Event:
    data = dict(data)
    cls = EVENT_TYPES[data.pop("type")]
    return cls(**data)
