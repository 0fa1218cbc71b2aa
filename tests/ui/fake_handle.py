"""Drive the app with scripted runs: no training, no engine process, no sleeps.

`ScriptedRun` is a RunHandle whose worker plays the events a test gives it and answers commands the way an
engine does (pause, resume, save, live changes, stop with last.pt): while paused it plays nothing more of its
script but still serves commands; `frozen()` holds even the commands (an engine busy writing, or stopped by a
signal); `lose()` ends it as a run whose process died; `release()` lets it go on without the app; with
`steps_by_itself` it steps on by itself whenever nothing is scripted (an app kept as busy as by a real run).
`ScriptedHandles` hands the app these instead of real runs, so a test opens the app with
`TrainerApp(options, handles=ScriptedHandles())` and presses keys exactly as with a real run; its `started_with`,
`run_error`, `start_error` and `gate` shape the runs it makes and how their start goes.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
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
    RunFailed,
    RunFinished,
    RunStarted,
    StateChanged,
)
from tui_trainer.runs.registry import RunInfo
from tui_trainer.ui.handle import Handles, Notify, RunHandle
from tui_trainer.ui.run_view import LogLine, RunView

STEPS_PER_EPOCH = 10
EPOCHS = 5
TICK_S = 0.02
"""How long the scripted worker waits for its next scripted event or command before looking again."""


def run_started(run_id: str = "iris-linear-20261201-120000", run_dir: str = "/runs/iris-linear-20261201-120000",
                **changes: Any) -> RunStarted:
    fields = dict(run_id=run_id, run_dir=run_dir, preset="iris-linear", task="classification", device="cpu",
                  device_name="CPU (2 cores)", model="linear", parameters=15, train_samples=120, val_samples=30,
                  epochs=EPOCHS, steps_per_epoch=STEPS_PER_EPOCH, total_steps=EPOCHS * STEPS_PER_EPOCH,
                  start_epoch=1, start_step=0, lr=0.1,
                  config={"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0}})
    return RunStarted(**{**fields, **changes})


def progress(step: int, loss: float | None = None, accuracy: float = 0.5, *, lr: float = 0.1,
             epochs: int = EPOCHS) -> Progress:
    epoch = (step - 1) // STEPS_PER_EPOCH + 1
    total = epochs * STEPS_PER_EPOCH
    return Progress(epoch=epoch, step=step, epoch_step=step - (epoch - 1) * STEPS_PER_EPOCH,
                    steps_per_epoch=STEPS_PER_EPOCH, total_steps=total,
                    train_loss=loss if loss is not None else 1.5 / (1 + step / 10), train_accuracy=accuracy, lr=lr,
                    samples_per_s=1200.0, elapsed_s=step * 0.1, eta_s=max(0, total - step) * 0.1)


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


def fault_pause(message: str, fault: str, advice: str) -> list[Event]:
    """What the engine sends when a fault pauses the run (pause on fault): the fault, then the pause."""
    return [RunFailed(message, fault, advice), StateChanged("paused", f"{message}: {advice}")]


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


@dataclass(frozen=True)
class _Finish:
    """In the script: the run ends by itself here (built when reached, at the step the run is at then)."""

    state: str
    checkpoint: str | None


@dataclass(frozen=True)
class Lost:
    """How a run whose process died ended, as its run.json would say."""

    exit_status: str
    last_checkpoint: str | None = None


class ScriptedRun(RunHandle):
    """A run that plays what the test queues (`play`) and answers commands as an engine would."""

    def __init__(self, *, notify: Notify, name: str = "iris-linear", run_dir: str = "",
                 ends_with_app: bool = True, can_go_on_alone: bool = False, start_paused: bool = False,
                 checkpoint_dir: str = "/runs", started: RunStarted | None = None, resume_from: str | None = None,
                 error: BaseException | None = None, steps_by_itself: bool = False,
                 started_with: dict[str, Any] | None = None, config: RunConfig | None = None) -> None:
        run_dir = run_dir or str(Path(checkpoint_dir) / f"{name}-20261201-120000")
        super().__init__(RunView(preset=name), Controls(), notify=notify, paused=start_paused)
        self.ends_with_app = ends_with_app
        self.can_go_on_alone = can_go_on_alone
        self.verb = "attach" if can_go_on_alone else "start"
        self.engine = Engine(run_dir=run_dir, run_id=Path(run_dir).name, paused=start_paused)
        self.config = config
        """The config the app asked to train here (None for a run reached through its socket)."""
        self.resume_from = resume_from
        self.error = error
        """Raised by the worker instead of starting (a setup error, say)."""
        self.steps_by_itself = steps_by_itself
        """With nothing scripted and not paused, the run makes a step every TICK_S, as a long run trains on."""
        self.lost: Lost | None = None
        """Set by lose(): the worker ends on it as on a socket that closed."""
        self.shown_calls = 0
        self._name = name
        self._checkpoint_dir = checkpoint_dir
        self._started = started or run_started(run_id=self.engine.run_id, run_dir=run_dir, preset=name,
                                               **(started_with or {}))
        self._script: queue.SimpleQueue[Event | BaseException | _Finish] = queue.SimpleQueue()
        self._released = threading.Event()
        self._thawed = threading.Event()
        self._thawed.set()

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
        """Deliver these events from the run's worker, in order (held while the run is paused)."""
        for event in events:
            self._script.put(event)

    def fail(self, error: BaseException) -> None:
        """The worker raises this once it reaches it in the script (as a run whose setup failed)."""
        self._script.put(error)

    def finish(self, state: str = "finished", checkpoint: str | None = None) -> None:
        """The run ends by itself once the script reaches this (its last epoch, or a failure)."""
        self._script.put(_Finish(state, checkpoint or f"{self.engine.run_dir}/last.pt"))

    def lose(self, exit_status: str = "killed by SIGKILL", last_checkpoint: str | None = None) -> None:
        """The run's process dies now: its worker ends without a RunFinished (a run reached through its socket)."""
        self.lost = Lost(exit_status, last_checkpoint)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Within this block the engine takes nothing in: commands wait, as for an engine stopped by SIGSTOP."""
        self._thawed.clear()
        try:
            yield
        finally:
            self._thawed.set()

    def release(self) -> None:
        self.ends_with_app = False
        self._released.set()

    # ------------------------------------------------------------ what the app asks once the worker ended

    def ended_lines(self) -> list[LogLine]:
        if self.released:
            return self.view.released() if self.view.active else []
        if self.lost is not None:
            return self.view.connection_ended("lost", "", self.lost.exit_status, self.lost.last_checkpoint)
        return []

    def lost_because(self) -> str | None:
        return self.lost.exit_status if self.lost is not None and not self.released else None

    # ------------------------------------------------------------ the worker

    def run(self) -> RunFinished | None:
        thread = threading.current_thread()
        pool_name, thread.name = thread.name, f"trainer scripted {self._name}"
        try:
            if self.error is not None:
                raise self.error
            self.on_event(self._started)
            self.on_event(StateChanged("paused" if self.engine.paused else "running"))
            return self._serve()
        finally:
            thread.name = pool_name
            self._ended()

    def _serve(self) -> RunFinished | None:
        while True:
            if self._released.is_set() or self.lost is not None:
                return None
            if not self._thawed.is_set():
                self._thawed.wait(TICK_S)
                continue
            for command in self.controls.drain():
                if self._obey(command):
                    return self.result
            if self.engine.paused:
                command = self.controls.wait(TICK_S)
                if command is not None and self._obey(command):
                    return self.result
                continue
            try:
                item = self._script.get(timeout=TICK_S)
            except queue.Empty:
                if self.steps_by_itself:
                    self._step_by_itself()
                continue
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, _Finish):
                item = self.engine.finished(item.state, item.checkpoint)
            self._advance(item)
            self.on_event(item)
            if isinstance(item, RunFinished):
                self.result = item
                return item

    def _step_by_itself(self) -> None:
        engine, epochs = self.engine, self._started.epochs
        step = engine.step + 1
        event = progress(step, lr=engine.hyperparameters["lr"], epochs=epochs)
        self._advance(event)
        self.on_event(event)
        if step % STEPS_PER_EPOCH == 0:
            self.on_event(epoch_ended(step // STEPS_PER_EPOCH))

    def _advance(self, event: Event) -> None:
        if isinstance(event, Progress):
            self.engine.step, self.engine.epoch = event.step, event.epoch
        elif isinstance(event, StateChanged) and event.state in ("paused", "running"):
            self.engine.paused = event.state == "paused"

    def _obey(self, command: Any) -> bool:
        """Answer one command as the engine would; True when the run ends."""
        engine = self.engine
        engine.commands.append(command)
        if isinstance(command, Pause) and not engine.paused:
            engine.paused = True
            self.on_event(StateChanged("paused"))
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
            self.on_event(StateChanged("stopping", command.reason))
            if checkpoint:
                self.on_event(CheckpointSaved(checkpoint, 4096, engine.epoch, engine.step, "last"))
            self.result = engine.finished("stopped", checkpoint)
            self.on_event(self.result)
            return True
        return False


class ScriptedHandles(Handles):
    """Handles that give the app scripted runs; each one made is kept in `made`, newest last."""

    def __init__(self, checkpoint_dir: str = "/runs", *, steps_by_itself: bool = False) -> None:
        self.checkpoint_dir = checkpoint_dir
        self.steps_by_itself = steps_by_itself
        """Every run made steps by itself while nothing is scripted (see ScriptedRun.steps_by_itself)."""
        self.started_with: dict[str, Any] = {}
        """RunStarted fields for every run made (threads, task, epochs ...), over run_started's."""
        self.made: list[ScriptedRun] = []
        self.started: list[Any] = []
        """The Launch of each run started in processes of its own."""
        self.stopped: list[RunInfo] = []
        self.start_error: BaseException | None = None
        """Raised by start_process (a preset the engine refuses, say)."""
        self.run_error: BaseException | None = None
        """Raised by the worker of each run made in the app's thread (a config the trainer refuses, say)."""
        self.gate: threading.Event | None = None
        """When set: start_process waits on it (a run still starting)."""

    @property
    def last(self) -> ScriptedRun:
        return self.made[-1]

    def train_here(self, config: RunConfig, *, notify: Notify, resume_from: str | None = None,
                   start_paused: bool = False) -> RunHandle:
        run = ScriptedRun(notify=notify, name=config.name, checkpoint_dir=config.checkpoint.dir,
                          start_paused=start_paused, resume_from=resume_from, error=self.run_error,
                          steps_by_itself=self.steps_by_itself, started_with=self.started_with, config=config)
        self.made.append(run)
        return run

    def reach(self, run_dir: str, *, notify: Notify, pause: bool = False, ends_with_app: bool = False) -> RunHandle:
        run = ScriptedRun(notify=notify, name=Path(run_dir).name, run_dir=run_dir, ends_with_app=ends_with_app,
                          can_go_on_alone=True, start_paused=pause, checkpoint_dir=str(Path(run_dir).parent),
                          steps_by_itself=self.steps_by_itself, started_with=self.started_with)
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
