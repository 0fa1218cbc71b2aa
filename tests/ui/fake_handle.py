"""Drive the app with scripted runs: no training, no engine process, no sleeps.

`ScriptedRun` is a RunHandle whose worker plays the events a test gives it and answers commands the way an
engine does (pause, resume, save, live changes, stop with last.pt). `ScriptedHandles` hands the app these
instead of real runs, so a test opens the app with `TrainerApp(options, handles=ScriptedHandles())` and
presses keys exactly as with a real run.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_trainer.config import RunConfig
from tui_trainer.engine.controls import Controls, Pause, Resume, Save, SetHyperparameters, Stop
from tui_trainer.engine.events import (
    CheckpointSaved,
    EpochEnded,
    Event,
    HyperparametersChanged,
    Progress,
    RunFinished,
    RunStarted,
    StateChanged,
)
from tui_trainer.runs.registry import RunInfo
from tui_trainer.ui.handle import Handles, Notify, RunHandle
from tui_trainer.ui.run_view import RunView

STEPS_PER_EPOCH = 10
EPOCHS = 5


def run_started(run_id: str = "iris-linear-20261201-120000", run_dir: str = "/runs/iris-linear-20261201-120000",
                **changes: Any) -> RunStarted:
    fields = dict(run_id=run_id, run_dir=run_dir, preset="iris-linear", task="classification", device="cpu",
                  device_name="CPU (2 cores)", model="linear", parameters=15, train_samples=120, val_samples=30,
                  epochs=EPOCHS, steps_per_epoch=STEPS_PER_EPOCH, total_steps=EPOCHS * STEPS_PER_EPOCH,
                  start_epoch=1, start_step=0, lr=0.1,
                  config={"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0}})
    return RunStarted(**{**fields, **changes})


def progress(step: int, loss: float | None = None, accuracy: float = 0.5) -> Progress:
    epoch = (step - 1) // STEPS_PER_EPOCH + 1
    return Progress(epoch=epoch, step=step, epoch_step=step - (epoch - 1) * STEPS_PER_EPOCH,
                    steps_per_epoch=STEPS_PER_EPOCH, total_steps=EPOCHS * STEPS_PER_EPOCH,
                    train_loss=loss if loss is not None else 1.5 / (1 + step / 10), train_accuracy=accuracy, lr=0.1,
                    samples_per_s=1200.0, elapsed_s=step * 0.1, eta_s=(EPOCHS * STEPS_PER_EPOCH - step) * 0.1)


def epoch_ended(epoch: int, *, best: bool = True) -> EpochEnded:
    loss = 1.2 / epoch
    return EpochEnded(epoch=epoch, step=epoch * STEPS_PER_EPOCH, train={"train_loss": loss, "train_accuracy": 0.6},
                      val={"val_loss": loss * 1.1, "val_accuracy": 0.55 + epoch * 0.05}, lr=0.1,
                      elapsed_s=epoch * 1.0, is_best=best)


def steps(first: int, last: int) -> list[Event]:
    """Progress for steps first..last, with an EpochEnded at each epoch's end."""
    events: list[Event] = []
    for step in range(first, last + 1):
        events.append(progress(step))
        if step % STEPS_PER_EPOCH == 0:
            events.append(epoch_ended(step // STEPS_PER_EPOCH))
    return events


@dataclass
class Engine:
    """What the scripted engine knows of its run: where it is, and what it was told."""

    run_dir: str
    run_id: str
    step: int = 0
    epoch: int = 1
    paused: bool = False
    commands: list[Any] = field(default_factory=list)
    hyperparameters: dict[str, float] = field(default_factory=lambda: {"lr": 0.1, "momentum": 0.9,
                                                                       "weight_decay": 0.0})

    def finished(self, state: str, checkpoint: str | None) -> RunFinished:
        return RunFinished(state=state, epoch=self.epoch, step=self.step, elapsed_s=self.step * 0.1, best={},
                           last={"train_loss": 0.5}, best_epoch=None, checkpoint=checkpoint)


class ScriptedRun(RunHandle):
    """A run that plays what the test queues (`play`) and answers commands as an engine would."""

    def __init__(self, *, notify: Notify, name: str = "iris-linear", run_dir: str = "",
                 ends_with_app: bool = True, can_go_on_alone: bool = False, start_paused: bool = False,
                 checkpoint_dir: str = "/runs", started: RunStarted | None = None) -> None:
        run_dir = run_dir or str(Path(checkpoint_dir) / f"{name}-20261201-120000")
        super().__init__(RunView(preset=name), Controls(), notify=notify, paused=start_paused)
        self.ends_with_app = ends_with_app
        self.can_go_on_alone = can_go_on_alone
        self.verb = "attach" if can_go_on_alone else "start"
        self.engine = Engine(run_dir=run_dir, run_id=Path(run_dir).name, paused=start_paused)
        self._name = name
        self._checkpoint_dir = checkpoint_dir
        self._started = started or run_started(run_id=self.engine.run_id, run_dir=run_dir, preset=name)
        self._script: queue.SimpleQueue[Event | BaseException | None] = queue.SimpleQueue()
        self._released = threading.Event()
        self.error: BaseException | None = None
        """Raised by the worker instead of starting (a setup error, say)."""
        self.shown_calls = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def checkpoint_dir(self) -> str:
        return self._checkpoint_dir

    @property
    def run_dir(self) -> str:
        return self.engine.run_dir

    @property
    def released(self) -> bool:
        return self._released.is_set()

    @property
    def goes_on(self) -> bool:
        return self.released and self.result is None and not self.stop_requested

    @property
    def waits_to_be_shown(self) -> bool:
        return self.ends_with_app and self.can_go_on_alone

    def shown(self) -> None:
        self.shown_calls += 1

    # ------------------------------------------------------------ the test's side

    def play(self, *events: Event) -> None:
        """Deliver these events from the run's worker, in order."""
        for event in events:
            self._script.put(event)

    def fail(self, error: BaseException) -> None:
        """The worker raises this (as a run whose setup failed)."""
        self._script.put(error)

    def finish(self, state: str = "finished", checkpoint: str | None = None) -> None:
        """The run ends by itself (its last epoch, or a failure)."""
        self._script.put(self.engine.finished(state, checkpoint or f"{self.engine.run_dir}/last.pt"))

    def release(self) -> None:
        self.ends_with_app = False
        self._released.set()
        self._script.put(None)

    # ------------------------------------------------------------ the worker

    def run(self) -> RunFinished | None:
        thread = threading.current_thread()
        pool_name, thread.name = thread.name, f"trainer scripted {self._name}"
        try:
            if self.error is not None:
                raise self.error
            self.on_event(self._started)
            self.on_event(StateChanged("paused" if self.engine.paused else "running"))
            while True:
                for command in self.controls.drain():
                    if self._obey(command):
                        return self.result
                try:
                    item = self._script.get(timeout=0.02)
                except queue.Empty:
                    continue
                if item is None:  # released: the run goes on without the app
                    return None
                if isinstance(item, BaseException):
                    raise item
                self._advance(item)
                self.on_event(item)
                if isinstance(item, RunFinished):
                    self.result = item
                    return item
        finally:
            thread.name = pool_name
            self._ended()

    def _advance(self, event: Event) -> None:
        if isinstance(event, Progress):
            self.engine.step, self.engine.epoch = event.step, event.epoch

    def _obey(self, command: Any) -> bool:
        """Answer one command as the engine would; True when the run ends."""
        engine = self.engine
        engine.commands.append(command)
        if isinstance(command, Pause) and not engine.paused:
            engine.paused = True
            self.on_event(StateChanged("paused", "paused by the user"))
        elif isinstance(command, Resume) and engine.paused:
            engine.paused = False
            self.on_event(StateChanged("running"))
        elif isinstance(command, SetHyperparameters):
            previous = {key: engine.hyperparameters.get(key, 0.0) for key in command.changes()}
            engine.hyperparameters.update(command.changes())
            self.on_event(HyperparametersChanged(step=engine.step, epoch=engine.epoch, changes=command.changes(),
                                                 previous=previous))
        elif isinstance(command, Save):
            path = command.path or f"{engine.run_dir}/manual-e{engine.epoch}-s{engine.step}.pt"
            self.on_event(CheckpointSaved(path, 4096, engine.epoch, engine.step, "manual"))
        elif isinstance(command, Stop):
            checkpoint = f"{engine.run_dir}/last.pt" if command.save else None
            if checkpoint:
                self.on_event(CheckpointSaved(checkpoint, 4096, engine.epoch, engine.step, "stop"))
            self.result = engine.finished("stopped", checkpoint)
            self.on_event(self.result)
            return True
        return False


class ScriptedHandles(Handles):
    """Handles that give the app scripted runs; each one made is kept in `made`, newest last."""

    def __init__(self, checkpoint_dir: str = "/runs") -> None:
        self.checkpoint_dir = checkpoint_dir
        self.made: list[ScriptedRun] = []
        self.started: list[Any] = []
        """The Launch of each run started in processes of its own."""
        self.stopped: list[RunInfo] = []
        self.start_error: BaseException | None = None
        """Raised by start_process (a preset the engine refuses, say)."""
        self.gate: threading.Event | None = None
        """When set: start_process waits on it (a run still starting)."""

    @property
    def last(self) -> ScriptedRun:
        return self.made[-1]

    def train_here(self, config: RunConfig, *, notify: Notify, resume_from: str | None = None,
                   start_paused: bool = False) -> RunHandle:
        run = ScriptedRun(notify=notify, name=config.name, checkpoint_dir=config.checkpoint.dir,
                          start_paused=start_paused)
        self.made.append(run)
        return run

    def reach(self, run_dir: str, *, notify: Notify, pause: bool = False, ends_with_app: bool = False) -> RunHandle:
        run = ScriptedRun(notify=notify, name=Path(run_dir).name, run_dir=run_dir, ends_with_app=ends_with_app,
                          can_go_on_alone=True, start_paused=pause, checkpoint_dir=str(Path(run_dir).parent))
        self.made.append(run)
        return run

    def start_process(self, launch: Any) -> RunInfo:
        self.started.append(launch)
        if self.gate is not None:
            self.gate.wait(30)
        if self.start_error is not None:
            raise self.start_error
        name = Path(launch.request.preset).stem if launch.request.preset else Path(launch.request.resume or "run").stem
        run_id = f"{name}-20261201-120000"
        return RunInfo(run_id=run_id, run_dir=f"{self.checkpoint_dir}/{run_id}", pid=4242, state="running")

    def stop_process(self, info: RunInfo) -> None:
        self.stopped.append(info)
