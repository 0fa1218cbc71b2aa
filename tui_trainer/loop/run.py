"""Your own training loop as a run: `tt.init` hosts it, `run.steps` (or `run.step`) marks its step boundaries,
`run.log` and `run.log_validation` report it, `run.finish` ends it.

Commands (pause, resume, a new learning rate, save, stop: from `tui-trainer attach`, `tui-trainer stop`, a
signal) apply at a step boundary only, before the next batch is pulled: a pause blocks the script there (no
CPU) and never inside a DataLoader's iterator. Logged tensors add up on their device and are read back when a
progress event is due (every `every_steps` steps or `every_ms` milliseconds), never once a step.
"""

from __future__ import annotations

import atexit
import math
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TextIO, TypeVar

import torch

from tui_trainer.engine import checkpoints, save_names
from tui_trainer.engine.checkpoints import CheckpointError
from tui_trainer.engine.controls import Command, Controls, Pause, Resume, Save, SetHyperparameters, Stop
from tui_trainer.engine.devices import cuda_memory_figures, device_name
from tui_trainer.engine.events import (
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
from tui_trainer.engine.history import RunRecords
from tui_trainer.engine.metrics import MetricsLog
from tui_trainer.engine.trackers import TrainingClock
from tui_trainer.errors import UserError
from tui_trainer.loop import state
from tui_trainer.loop.hosting import ScriptHost
from tui_trainer.loop.window import MetricWindow, check_name, checked_value, means
from tui_trainer.run_files import CONFIG_FILE, METRICS_FILE
from tui_trainer.text import printable
from tui_trainer.yaml_io import dump_yaml

Batch = TypeVar("Batch")
PAUSE_POLL_S = 0.5
ERROR_LOG = "script-error.log"
"""The traceback of a script that raised mid-run, in its run folder."""
LOSS = "loss"
ACCURACY = "accuracy"
MONITOR = "val_loss"
_END = object()
NON_FINITE_ADVICE = "lower the learning rate, clip the gradients, or continue from the last good checkpoint"


class NonFiniteLoss(UserError):
    """The logged loss is NaN or infinite (on_nan="raise"); the run is marked failed, its last good checkpoint
    kept."""


class _Step:
    """What `run.step()` returns: true while the run goes on; as a context manager, the step ends on exit."""

    def __init__(self, run: Run, going_on: bool) -> None:
        self._run, self._going_on = run, going_on

    def __bool__(self) -> bool:
        return self._going_on

    def __enter__(self) -> _Step:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None:
            self._run._end_open_step()


def _batch_size(batch: Any) -> int | None:
    """The samples in a batch, from shapes alone (a tensor, or the first one in a tuple, list or dict)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, (list, tuple)) and batch:
        return _batch_size(batch[0])
    if isinstance(batch, dict) and batch:
        return _batch_size(next(iter(batch.values())))
    return None


def _length(iterable: Any) -> int:
    try:
        return len(iterable)
    except TypeError:
        return 0


class Run:
    """One run of a script's own loop; made by `tt.init`. Attributes: `global_step` (steps done), `epoch` (the
    epoch under way, from 1), `run_dir`, `extra` (the dict saved with each checkpoint, restored on resume)."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, scheduler: Any | None,
                 scaler: Any | None, config: dict[str, Any], name: str, root: Path, extra: dict[str, Any] | None,
                 on_nan: Literal["raise", "pause"], every_steps: int, every_ms: float) -> None:
        if on_nan not in ("raise", "pause"):
            raise ValueError(f"tt.init: on_nan={on_nan!r}; allowed: 'raise', 'pause'")
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.config, self.name, self.root, self.extra, self.on_nan = config, name, root, extra, on_nan
        self.controls = Controls()
        self.global_step = 0
        self.epoch = 1
        self.position = 0
        """Steps done in the epoch under way."""
        self.state = "starting"
        self._window = MetricWindow(max(1, every_steps), every_ms / 1000)
        self._epoch_sums: dict[str, tuple[float, int]] = {}
        self._names: set[str] = set()
        """Metric names checked already (run.log checks a name once)."""
        self._last_train: dict[str, float] = {}
        self._last_val: dict[str, float] = {}
        self._best: float | None = None
        self._pending_epoch: tuple[int, int, dict[str, float]] | None = None
        """An epoch that ended, waiting for its validation metrics: (epoch, step, train means)."""
        self._in_epoch = False
        self._step_open = False
        self._paused = False
        self._stop: Stop | None = None
        self._loss_finite = True
        self._started = False
        self._finished: RunFinished | None = None
        self._saved_at_step: int | None = None
        self._last_checkpoint: str | None = None
        self._unsaved: dict[str, str] = {}
        self._steps_per_epoch = 0
        self._total_steps = 0
        self._epochs = 0
        self._session_start_step = 0
        self._clock = TrainingClock()
        self._history: list[dict[str, Any]] = []
        self._host: ScriptHost | None = None
        self._records: RunRecords | None = None
        self._previous_excepthook: Callable[..., Any] | None = None
        self.run_dir = Path()
        self.run_id = ""

    # ------------------------------------------------------------ opening (tt.init)

    def _open(self, resume_from: Path | None, quiet: bool, out: TextIO | None) -> None:
        loaded = None
        if resume_from is not None:
            loaded = state.read_script_checkpoint(resume_from, self._device_name())
            state.restore(resume_from, loaded, self.model, self.optimizer, self.scheduler, self.scaler, self.extra)
        self._host = ScriptHost(self.name, self.root, resume_from, self.controls, quiet=quiet, out=out)
        self._host.open()
        self.run_dir = self._host.run_dir
        self.run_id = self.run_dir.name
        self._records = RunRecords(MetricsLog(self.run_dir / METRICS_FILE), self._warn)
        if loaded is not None and resume_from is not None:
            self._continue(resume_from, loaded)
        try:
            self._host.write_file(CONFIG_FILE, dump_yaml(self.config))
        except OSError as error:
            self._warn(f"could not write {CONFIG_FILE}: {error.strerror or error}")
        self._previous_excepthook = sys.excepthook
        sys.excepthook = self._excepthook
        atexit.register(self._at_exit)

    def _continue(self, path: Path, loaded: dict[str, Any]) -> None:
        trainer = loaded["trainer"]
        self.epoch, self.position, self.global_step = trainer["epoch"], trainer["position"], trainer["step"]
        self._clock.before = float(trainer.get("elapsed_s", 0.0))
        self._last_val = dict(trainer.get("last_val", {}))
        self._last_train = dict(trainer.get("last_train", {}))
        self._best = trainer.get("best_value")
        sums = trainer.get("epoch_sums", {})
        self._epoch_sums = {str(name): (float(total), int(count)) for name, (total, count) in sums.items()}
        self._history = state.history(path, loaded)
        assert self._records is not None
        self._records.load_state_dict(self._history)
        self._saved_at_step = self.global_step

    def _device_name(self) -> str:
        parameter = next(self.model.parameters(), None)
        return str(parameter.device) if parameter is not None else "cpu"

    # ------------------------------------------------------------ the loop's boundaries

    def steps(self, batches: Iterable[Batch], epochs: int | None = None,
              validate: Callable[[], dict[str, Any]] | None = None) -> Iterator[Batch]:
        """The batches of `batches`, one step each, for the epoch under way (epochs=None) or until the run's
        epoch `epochs` is done (a resumed run goes on from where it was: a mid-epoch resume skips the
        batches that epoch trained). Commands apply between steps, before the next batch is pulled; the
        iteration ends early when the run is stopped. validate, if given, runs at each epoch's end and returns
        the validation metrics (as run.log_validation takes them)."""
        last = self.epoch if epochs is None else epochs
        per_epoch = _length(batches)
        self._start(per_epoch, last, _length(getattr(batches, "dataset", None)))
        while self.epoch <= last and self._stop is None:
            iterator = iter(batches)
            for _ in range(self.position):  # resumed mid-epoch: the batches that epoch trained already
                if next(iterator, _END) is _END:
                    break
            self._in_epoch = True
            try:
                while True:
                    if not self._boundary():
                        return
                    try:
                        batch = next(iterator)
                    except StopIteration:
                        break
                    yield batch
                    self._stepped(_batch_size(batch))
            finally:
                self._in_epoch = False
            self._end_epoch()
            if validate is not None and self._stop is None:
                self.log_validation(**validate())

    def step(self) -> _Step:
        """A step boundary, for a loop without epochs: `while run.step(): ...` (false once the run is stopped),
        or `with run.step(): ...`. The step begun by the previous call ends here (or when its with ends).
        Without batches to look at, progress counts steps as its samples."""
        self._start(0, 0)
        self._end_open_step()
        if not self._boundary():
            return _Step(self, False)
        self._step_open = True
        return _Step(self, True)

    def _end_open_step(self) -> None:
        if self._step_open:
            self._step_open = False
            self._stepped(None)

    def _boundary(self) -> bool:
        """Before a step: the epoch before it ends without validation, and waiting commands apply (a pause
        blocks here). False when the run is stopped."""
        if self._finished is not None or self._stop is not None:
            return False
        if self._pending_epoch is not None:
            self._emit_epoch({})
        if self.controls.has_pending():
            if self._window.steps:  # a pause, a save or a stop shows and holds this very step
                self._report()
            self._window.started += self._serve(self.controls.drain())
        return self._stop is None

    def _stepped(self, samples: int | None) -> None:
        self.global_step += 1
        self.position += 1
        self._window.steps += 1
        self._window.samples += samples if samples is not None else 1
        if self._window.due():
            self._report()
            if self.controls.has_pending():
                self._window.started += self._serve(self.controls.drain())

    # ------------------------------------------------------------ metrics

    def log(self, **metrics: float | torch.Tensor) -> None:
        """Metrics of this step (loss=..., accuracy=..., any names): numbers or one-element tensors, which add
        up on their device and are read back only when a progress event is due. `loss` is the run's training
        loss (its NaN guard; the chart), `accuracy` its training accuracy."""
        for name, value in metrics.items():
            if name not in self._names:
                check_name(name, "run.log")
                self._names.add(name)
            self._window.add(name, checked_value(name, value, "run.log"))

    def log_validation(self, **metrics: float | torch.Tensor) -> None:
        """Validation metrics (val_loss=..., val_mae=..., a name without val_ gets it): they end the epoch that
        ended last; called outside run.steps, they end an epoch of their own. val_loss decides the best."""
        values: dict[str, float] = {}
        for name, value in metrics.items():
            check_name(name, "run.log_validation")
            checked = checked_value(name, value, "run.log_validation")
            key = name if name.startswith("val_") else f"val_{name}"
            values[key] = float(checked.float().item()) if isinstance(checked, torch.Tensor) else checked
        self._start(0, 0)
        if self._window.steps:
            self._report()
        if self._pending_epoch is None:
            self._pending_epoch = (self.epoch, self.global_step, self._epoch_means())
            if not self._in_epoch:
                self._next_epoch()
        self._emit_epoch(values)
        loss = values.get(MONITOR)
        if loss is not None and not math.isfinite(loss):
            self._non_finite(f"validation loss is {loss} at step {self.global_step}")

    def _epoch_means(self) -> dict[str, float]:
        return {(name if name.startswith("train_") else f"train_{name}"): value
                for name, value in means(self._epoch_sums).items()}

    def _report(self) -> None:
        """A Progress event for the steps since the last one: the one device read they cost."""
        window = self._window
        sums = window.read()
        window_s = time.perf_counter() - window.started
        for name, (total, count) in sums.items():
            before_total, before_count = self._epoch_sums.get(name, (0.0, 0))
            self._epoch_sums[name] = (before_total + total, before_count + count)
        values = means(sums)
        loss = values.get(LOSS, math.nan)
        done = self.global_step - self._session_start_step
        rate = done / max(1e-9, self._clock.session_s()) if done else 0.0
        left = self._total_steps - self.global_step
        eta = left / rate if rate > 0 and left > 0 else None
        event = Progress(
            epoch=self.epoch, step=self.global_step, epoch_step=self.position, steps_per_epoch=self._steps_per_epoch,
            total_steps=self._total_steps, train_loss=loss, train_accuracy=values.get(ACCURACY), lr=self._lr(),
            samples_per_s=window.samples / max(window_s, 1e-9), elapsed_s=self._clock.elapsed_s(), eta_s=eta,
            devices=cuda_memory_figures(self._device_name()),
        )
        extra = {name: value for name, value in values.items() if name not in (LOSS, ACCURACY)}
        window.clear()
        self._record(event, {"metrics": extra} if extra else {})
        if LOSS in values:
            self._loss_finite = math.isfinite(loss)
            if not self._loss_finite:
                self._non_finite(f"training loss is {loss} at step {self.global_step}")

    def _end_epoch(self) -> None:
        if self._window.steps:
            self._report()
        self._pending_epoch = (self.epoch, self.global_step, self._epoch_means())
        self._next_epoch()

    def _next_epoch(self) -> None:
        self.epoch += 1
        self.position = 0
        self._epoch_sums = {}

    def _emit_epoch(self, val: dict[str, float]) -> None:
        assert self._pending_epoch is not None
        epoch, step, train = self._pending_epoch
        self._pending_epoch = None
        loss = val.get(MONITOR)
        is_best = loss is not None and math.isfinite(loss) and (self._best is None or loss < self._best)
        if is_best:
            self._best = loss
        self._last_train, self._last_val = train, val or self._last_val
        self._record(EpochEnded(epoch=epoch, step=step, train=train, val=val, lr=self._lr(),
                                elapsed_s=self._clock.elapsed_s(), is_best=is_best))
        if not self._window.steps:  # the time validation took is not the next steps'
            self._window.started = time.perf_counter()

    def _lr(self) -> float:
        if self.optimizer is None:
            return 0.0
        lr = self.optimizer.param_groups[0]["lr"]
        return float(lr) if isinstance(lr, (int, float)) else math.nan

    # ------------------------------------------------------------ commands

    def _serve(self, commands: list[Command]) -> float:
        """Apply commands at this boundary; blocks while paused (no CPU). Returns the seconds paused."""
        for command in commands:
            self._apply(command)
        return self._wait_while_paused()

    def _wait_while_paused(self) -> float:
        started = time.perf_counter()
        with self._clock.paused():
            while self._paused and self._stop is None:
                command = self.controls.wait(PAUSE_POLL_S)
                for each in ([command] if command is not None else []) + self.controls.drain():
                    self._apply(each)
        return time.perf_counter() - started

    def _apply(self, command: Command) -> None:
        if isinstance(command, Pause) and not self._paused:
            self._paused = True
            self._set_state("paused")
        elif isinstance(command, Resume) and self._paused:
            self._paused = False
            self._set_state("running")
        elif isinstance(command, Stop):
            self._stop = command
            self._paused = False
            self._set_state("stopping", command.reason)
            if command.save:
                self._save(self.run_dir / "last.pt", "last")
        elif isinstance(command, SetHyperparameters):
            self._set_hyperparameters(command.changes())
        elif isinstance(command, Save):
            self._save_manual(command.path, command.overwrite)

    def _set_hyperparameters(self, requested: dict[str, float]) -> None:
        if self.optimizer is None:
            self._warn("this run registered no optimizer; nothing to change")
            return
        changes, previous, refused = state.change_hyperparameters(self.optimizer, self.scheduler, requested)
        for line in refused:
            self._warn(line)
        if changes:
            self._record(HyperparametersChanged(step=self.global_step, epoch=self.epoch, changes=changes,
                                                previous=previous))

    def _save_manual(self, path: str | None, overwrite: bool) -> None:
        problem = save_names.save_path_problem(path) if path else ""
        target = Path(path) if path else self.run_dir / f"manual-e{self.epoch}-s{self.global_step}.pt"
        if not problem and not overwrite and target.exists():
            problem = f"{printable(str(target))} exists; save again with overwrite to replace it"
        if problem:
            self._emit(CheckpointFailed(str(target), problem, "manual"))
        else:
            self._save(target, "manual")

    def save(self, path: str | Path | None = None) -> str | None:
        """Write a checkpoint now (between steps): to path, or manual-e<epoch>-s<step>.pt in the run folder.
        Returns its path, or None when it was not written (the event log says why)."""
        self._start(0, 0)
        if self._window.steps:
            self._report()
        target = Path(path) if path else self.run_dir / f"manual-e{self.epoch}-s{self.global_step}.pt"
        return self._save(target, "manual")

    def _save(self, path: Path, reason: str) -> str | None:
        refusal = "" if state.weights_finite(self.model) else "weights are not finite; the last good checkpoint is kept"
        if not refusal and not self._loss_finite:
            refusal = "the loss is not finite; the last good checkpoint is kept"
        if refusal:
            self._unsaved[str(path)] = refusal
            self._emit(CheckpointFailed(str(path), refusal, reason))
            return None
        assert self._records is not None
        try:
            size = checkpoints.save_checkpoint(path, state.payload(
                run_id=self.run_id, name=self.name, config=self.config, reason=reason, model=self.model,
                optimizer=self.optimizer, scheduler=self.scheduler, scaler=self.scaler, extra=self.extra,
                trainer=self._trainer_state(), history_json=self._records.history.to_json()))
        except CheckpointError as error:
            self._unsaved[str(path)] = error.message
            self._emit(CheckpointFailed(str(path), error.message, reason))
            return None
        self._unsaved.pop(str(path), None)
        self._last_checkpoint = str(path)
        if reason == "last":
            self._saved_at_step = self.global_step
        self._emit(CheckpointSaved(str(path), size, self.epoch, self.global_step, reason))
        return str(path)

    def _trainer_state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "step": self.global_step,
                "elapsed_s": self._clock.elapsed_s(), "last_val": dict(self._last_val),
                "last_train": dict(self._last_train), "best_value": self._best,
                "epoch_sums": {name: [total, count] for name, (total, count) in self._epoch_sums.items()}}

    # ------------------------------------------------------------ faults

    def _non_finite(self, message: str) -> None:
        self._loss_finite = False
        self._emit(RunFailed(message, "non_finite", NON_FINITE_ADVICE))
        if self.on_nan == "raise":
            self._end("failed", message)
            raise NonFiniteLoss(f"{message}; {NON_FINITE_ADVICE}")
        self._paused = True
        self._set_state("paused", f"{message}; {NON_FINITE_ADVICE}")
        self._window.started += self._wait_while_paused()

    def _excepthook(self, kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        self._failed(kind, error, trace)
        hook = self._previous_excepthook or sys.__excepthook__
        hook(kind, error, trace)

    def _failed(self, kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        """The script raised: the run ends failed, its traceback in the run folder; last.pt only if the weights
        (and the last loss) are finite. A second Ctrl+C ends it stopped, as it ends a headless run."""
        if self._finished is not None:
            return
        if issubclass(kind, KeyboardInterrupt):
            self._end("stopped", "interrupted")
            return
        message = f"{kind.__name__}: {error}".strip().splitlines()[0][:500]
        try:
            if self._host is not None:
                self._host.write_file(ERROR_LOG, "".join(traceback.format_exception(kind, error, trace)))
        except OSError:
            pass
        self._emit(RunFailed(f"the script raised {message} (traceback in {ERROR_LOG})", "error"))
        if self._started:
            self._save(self.run_dir / "last.pt", "last")
        self._end("failed", message)

    def _at_exit(self) -> None:
        if self._finished is None:
            self.finish()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is None:
            self.finish()
        elif error is not None:
            self._failed(kind, error, trace)

    # ------------------------------------------------------------ start and end

    def _start(self, steps_per_epoch: int, epochs: int, samples: int = 0) -> None:
        """RunStarted, once, at the first boundary: then the run knows its epochs and their length."""
        if steps_per_epoch and epochs:
            self._steps_per_epoch, self._epochs = steps_per_epoch, max(self._epochs, epochs)
            self._total_steps = max(self._total_steps, epochs * steps_per_epoch)
        if self._started:
            return
        self._started = True
        self._session_start_step = self.global_step
        device = self._device_name()
        model_config = {"name": self.name, "optimizer": state.optimizer_settings(self.optimizer, self.scheduler),
                        "checkpoint": {"monitor": MONITOR, "dir": str(self.root)}, "script": self.config}
        self._emit(RunStarted(
            run_id=self.run_id, run_dir=str(self.run_dir), preset=self.name, task=state.SCRIPT_KIND, device=device,
            device_name=device_name(device), model=type(self.model).__name__,
            parameters=sum(p.numel() for p in self.model.parameters()), train_samples=samples, val_samples=0,
            epochs=self._epochs, steps_per_epoch=self._steps_per_epoch, total_steps=self._total_steps,
            start_epoch=self.epoch, start_step=self.global_step, lr=self._lr(), config=model_config,
            history=list(self._history),
        ))
        self._clock.start()
        self._set_state("running")

    def finish(self) -> RunFinished:
        """End the run: the last progress and epoch are reported, last.pt written (unless a stop already saved
        this step, or asked not to), run.json says how it ended, the socket closes and signals are restored.
        Called at exit if the script does not."""
        if self._finished is not None:
            return self._finished
        self._start(0, 0)
        self._end_open_step()
        if self._window.steps:
            self._report()
        if self._pending_epoch is not None:
            self._emit_epoch({})
        save = self._stop.save if self._stop is not None else True
        if save and self._saved_at_step != self.global_step:
            self._save(self.run_dir / "last.pt", "last")
        stopped = self._stop is not None
        return self._end("stopped" if stopped else "finished", self._stop.reason if self._stop else "")

    def _end(self, final: str, message: str) -> RunFinished:
        if self._finished is not None:
            return self._finished
        self._set_state(final, message)
        complete = self.position == 0 and self.global_step > 0
        self._finished = RunFinished(
            state=final, epoch=self.epoch - 1 if complete else self.epoch, epoch_complete=complete,
            step=self.global_step, elapsed_s=self._clock.elapsed_s(),
            best={MONITOR: self._best} if self._best is not None else {},
            last=dict(self._last_val), best_epoch=None, checkpoint=self._last_checkpoint, message=message,
            unsaved=list(self._unsaved),
        )
        self._emit(self._finished)
        if self._records is not None:
            self._records.close()
        if self._host is not None:
            self._host.close()
        if sys.excepthook == self._excepthook:
            sys.excepthook = self._previous_excepthook or sys.__excepthook__
        atexit.unregister(self._at_exit)
        return self._finished

    # ------------------------------------------------------------ events

    def _emit(self, event: Event) -> None:
        if self._host is not None:
            self._host.emit(event)

    def _record(self, event: Event, extra: dict[str, Any] | None = None) -> None:
        if self._records is not None:
            self._records.add({**event.to_dict(), **(extra or {}), "time": time.time()})
        self._emit(event)

    def _warn(self, message: str) -> None:
        self._emit(Warning(message))

    def _set_state(self, new: str, reason: str = "") -> None:
        self.state = new
        self._emit(StateChanged(new, reason))
