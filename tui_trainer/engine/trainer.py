"""The Trainer: the canonical PyTorch loop, steered by Controls, reporting through Events.

Reads top to bottom: setup builds each part of a run, then run trains epochs of steps and a validation pass,
saves last.pt and cleans up. The parts live beside this module, each one job with its own state_dict for an
exact resume:

- distributed.World: one process, or torchrun ranks (reduce, agree on commands, who speaks); the loop calls
  the same methods either way and never asks which;
- data_feed.DataFeed: the batches, in an order a resume draws again (epoch_order);
- optimization.Optimization: optimizer, schedule, grad scaler, clipping, live hyperparameter changes;
- trackers: the epoch's totals, the best metric, early stopping, training time;
- history.RunRecords: metrics.jsonl and the history a checkpoint carries;
- checkpoint_policy.CheckpointPolicy: what is saved when, written on a thread of its own, and pruned.

No host-device synchronisation happens per step: losses and correct counts add up on the device and are read
back once per progress event.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tui_trainer.catalog.datasets import build_data
from tui_trainer.catalog.losses import build_loss
from tui_trainer.catalog.models import ImportedModelError, build_model
from tui_trainer.config import ConfigError, RunConfig
from tui_trainer.engine import checkpoints, distributed, host_memory, resume_overrides
from tui_trainer.engine.checkpoint_policy import CheckpointPolicy, weights_finite
from tui_trainer.engine.controls import Command, Controls, Pause, Resume, Save, SetHyperparameters, Stop
from tui_trainer.engine.data_feed import DataFeed
from tui_trainer.engine.devices import DeviceError, cuda_memory_figures, device_name
from tui_trainer.engine.events import (
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
from tui_trainer.engine.held_folder import FolderOpener, HeldFolder
from tui_trainer.engine.history import RunHistory, RunRecords
from tui_trainer.engine.metrics import MetricsLog
from tui_trainer.engine.optimization import Optimization, first_line
from tui_trainer.engine.trackers import BestMetric, EarlyStopping, EpochMetrics, TrainingClock
from tui_trainer.logs import get_logger
from tui_trainer.text import printable
from tui_trainer.yaml_io import dump_yaml

__all__ = ["RunHistory", "Trainer", "TrainingFault", "is_out_of_memory"]

EventCallback = Callable[[Event], None]
log = get_logger("trainer")
PAUSE_POLL_S = 0.5


class TrainingFault(Exception):
    def __init__(self, fault: str, message: str, advice: str = "") -> None:
        super().__init__(message)
        self.fault, self.message, self.advice = fault, message, advice


class _Stopped(Exception):
    """A stop arrived while paused for a fault."""


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower())


# ---------------------------------------------------------------- setup: each part built by a function


def pick_device(config: RunConfig, world: distributed.World) -> torch.device:
    try:
        device = world.device(config.device)
    except DeviceError as error:
        raise ConfigError("", "device", str(error).partition(": ")[2]) from None
    if device.type == "cpu":
        host_memory.keep_freed_memory()
    if config.precision == "fp16" and device.type != "cuda":
        raise ConfigError("", "precision", f"fp16 needs a CUDA device; this run is on {device}; use bf16 or fp32")
    return device


def make_model(config: RunConfig, input_shape: tuple[int, ...], num_outputs: int,
               device: torch.device) -> torch.nn.Module:
    """The model on its device, in channels-last memory order where that helps: a digits-cnn step takes 12%
    less time on a CPU (oneDNN's pooling and convolutions skip their layout conversions), and tensor cores want
    it too. A model of your own opts in (channels_last: true): a .view() in it may not take the layout."""
    spec = config.model
    model = build_model(spec.name, spec.import_target, spec.options, input_shape, num_outputs).to(device)
    channels_last = config.channels_last if config.channels_last is not None else spec.name == "cnn"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if not any(parameter.requires_grad for parameter in model.parameters()):
        # An optimizer needs at least one parameter to train: a model without one is the user's model.
        what = f"model.import: {printable(spec.import_target)}" if spec.import_target else f"model.name: {spec.name}"
        raise ImportedModelError(f"{what} has no parameters to train (none, or none with requires_grad)")
    return model


def compiled(config: RunConfig, model: torch.nn.Module,
             warn: Callable[[str], None]) -> Callable[[torch.Tensor], torch.Tensor]:
    if not config.compile:
        return model
    try:
        return torch.compile(model)
    except Exception as error:  # backend missing, unsupported platform ...
        warn(f"torch.compile unavailable ({type(error).__name__}: {error}); running eagerly")
        return model


def autocast_for(config: RunConfig, device: torch.device) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision)
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype)


class _Window:
    """The steps since the last progress event: their sums stay on the device until one is due."""

    def __init__(self, device: torch.device, every_steps: int, every_s: float, classification: bool) -> None:
        self.loss = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device)
        self.every_steps, self.every_s, self.classification = every_steps, every_s, classification
        self.clear()

    def clear(self) -> None:
        self.loss.zero_()
        self.correct.zero_()
        self.samples = self.steps = 0
        self.started = time.perf_counter()

    def add(self, outputs: torch.Tensor, loss: torch.Tensor, targets: torch.Tensor) -> None:
        rows = targets.shape[0]  # len() of a tensor runs Python of torch's: 2.6 us, twice a step
        self.loss.add_(loss.detach(), alpha=rows)
        if self.classification:
            self.correct.add_((outputs.detach().argmax(1) == targets).sum())
        self.samples += rows
        self.steps += 1

    def due(self) -> bool:
        return self.steps >= self.every_steps or time.perf_counter() - self.started >= self.every_s


class Trainer:
    """Trains one run. `run()` blocks until the run ends; call it from a worker thread under a UI.

    on_event is called from the training thread and must return at once.
    pause_on_fault: a non-finite loss or out-of-memory pauses the run (the app) instead of failing it
    (headless).
    """

    def __init__(self, config: RunConfig, on_event: EventCallback | None = None, *,
                 controls: Controls | None = None, resume_from: str | Path | None = None,
                 run_id: str | None = None, run_dir: str | Path | None = None, pause_on_fault: bool = False,
                 start_paused: bool = False, parallel: distributed.Distributed | None = None,
                 before_training: Callable[[], object] | None = None, folders: FolderOpener | None = None) -> None:
        self.config = config
        """The run's config, with the hyperparameters changed since it started: a checkpoint stores these."""
        self.world = distributed.world_for(parallel or distributed.from_environment())
        self.on_event = on_event or (lambda event: None)
        self.controls = controls or Controls()
        self.resume_from = Path(resume_from) if resume_from else None
        self.run_id = run_id
        self.planned_run_dir = Path(run_dir) if run_dir else None
        self.pause_on_fault = pause_on_fault
        self.start_paused = start_paused
        self.before_training = before_training
        """Called once set up, before the first step (an engine process waiting for its app)."""
        self.state = "starting"
        self.epoch = 1
        self.position = 0
        self.step = 0
        self._stop: Stop | None = None
        self._paused = False
        self._resume_changes: dict[str, float] = {}
        """Hyperparameters a resume sets otherwise than its checkpoint (see resume_overrides)."""
        self.folders = folders
        """How this run gets its folder (the runs layer's rule; see _open_folder)."""
        self._run_folder: HeldFolder | None = None
        """The folder this run writes in, held (locked) from setup to the end of run()."""

    # ------------------------------------------------------------ setup

    def setup(self) -> None:
        """Build every part of the run, in the order their random numbers are drawn; then continue the
        checkpoint, if any."""
        config = self.config
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        self.device = pick_device(config, self.world)
        self.data = build_data(config.data, config.task, config.seed)
        self.feed = DataFeed(self.data, config, self.device, self.world)
        self.steps_per_epoch = self.feed.steps_per_epoch
        self.total_steps = config.epochs * self.steps_per_epoch
        if config.max_steps:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.model = make_model(config, self.data.input_shape, self.data.num_outputs, self.device)
        self.train_model = self.world.wrap(self.model, self.device)
        self.forward = compiled(config, self.train_model, self._warn)
        self.loss_fn = build_loss(config.loss.name, config.loss.options, self.data.num_outputs)
        self.optimization = Optimization(config, self.model, self.steps_per_epoch, self.total_steps, self.device)
        self.autocast = autocast_for(config, self.device)
        self.metrics = EpochMetrics(config.task == "classification")
        self.best = BestMetric(config.checkpoint.monitor)
        self.early_stopping = EarlyStopping(config.early_stopping)
        self.clock = TrainingClock()
        self._run_folder, self.run_dir = self._open_folder()
        self.run_id = self.run_dir.name
        self.records = RunRecords(MetricsLog(self.run_dir / "metrics.jsonl") if self._run_folder else None,
                                  self._warn)
        self.saves = CheckpointPolicy(self, self.run_dir, self._run_folder, config.checkpoint, self._emit,
                                      writes=self.world.is_main)
        if self.resume_from:
            self.load_state_dict(checkpoints.load_checkpoint(self.resume_from, map_location=str(self.device)))

    def _open_folder(self) -> tuple[HeldFolder | None, Path]:
        """The folder the runs layer gives this run (only the main process holds and writes it). A host passes
        its rule in; a Trainer used on its own (a script, a test) gets the same rule."""
        folders = self.folders
        if folders is None:
            from tui_trainer.runs.folder import open_run_folder as folders
        folder, run_dir = folders(self.config, self.world.is_main, self.planned_run_dir, self.resume_from, self.run_id)
        if folder is not None:
            checkpoints.clean_temporary_files(folder.path)
        return folder, run_dir

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.optimization.optimizer

    @property
    def scheduler(self) -> Any | None:
        return self.optimization.scheduler

    @property
    def scaler(self) -> torch.amp.GradScaler | None:
        return self.optimization.scaler

    def _write_config_file(self) -> None:
        if self._run_folder is None:
            return
        path = self.run_dir / "config.yaml"
        try:
            self._run_folder.write_file(path.name, dump_yaml(self.config.to_dict()))
        except OSError as error:
            self._warn(f"could not write {path}: {error.strerror or error}")

    # ------------------------------------------------------------ state (what a checkpoint holds)

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume continues from, each part's own (checkpoint_policy.payload adds the rest)."""
        return {
            "model": self.model.state_dict(),
            **self.optimization.state_dict(),
            "trainer": {
                "epoch": self.epoch, "position": self.position, "step": self.step,
                **self.feed.state_dict(), **self.best.state_dict(), **self.early_stopping.state_dict(),
                **self.metrics.state_dict(), **self.clock.state_dict(), "world_size": self.world.world_size,
            },
            "rng": checkpoints.capture_rng(),
            **self.records.state_dict(),
        }

    def load_state_dict(self, payload: dict[str, Any]) -> None:
        """Continue from a checkpoint load_checkpoint has read: everything is checked (types, shapes, random
        states, that it fits this model and optimizer, what the resume's overrides would change) before any
        of it changes this run."""
        path, saved = self.resume_from or Path("checkpoint"), payload["config"]
        records = checkpoints.check_resumable(path, payload)
        problem = checkpoints.model_mismatch(self.model.state_dict(), payload["model"]) \
            or self.optimization.mismatch(payload)
        if problem:
            raise checkpoints.CheckpointError(path, f"does not fit this run's model or optimizer: {problem}")
        resume_overrides.refuse_unchangeable(saved, self.config, payload.get("scheduler"), self.total_steps)
        self._resume_changes = resume_overrides.optimizer_changes(saved, self.config)
        try:
            self.model.load_state_dict(payload["model"])
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            raise checkpoints.CheckpointError(path, "does not fit this run's model or optimizer: "
                                                    f"{first_line(error)}") from None
        self.optimization.load_state_dict(payload, self.config, path)
        state = payload["trainer"]
        self.epoch, self.position, self.step = state["epoch"], state["position"], state["step"]
        saved_world = state.get("world_size", 1)
        if saved_world != self.world.world_size:
            # Another number of processes shards the epoch differently: go on from the same share of it.
            self.position = min(self.steps_per_epoch - 1, self.position * saved_world // self.world.world_size)
        self.feed.load_state_dict(state)
        self.metrics.load_state_dict(state)
        if not resume_overrides.monitor_changed(saved, self.config, "checkpoint"):
            self.best.load_state_dict(state)
        if not resume_overrides.monitor_changed(saved, self.config, "early_stopping"):
            self.early_stopping.load_state_dict(state)
        self.clock.load_state_dict(state)
        try:
            checkpoints.restore_rng(payload["rng"])
        except (RuntimeError, ValueError, TypeError) as error:  # a CUDA state this machine's devices do not take
            raise checkpoints.CheckpointError(path, f"its random state does not fit this machine: "
                                                    f"{first_line(error)}") from None
        self.records.load_state_dict(records)

    # ------------------------------------------------------------ run

    def run(self) -> RunFinished:
        """Set up, train to the end (or a stop), save, clean up. Setup errors (ConfigError, DatasetError,
        CheckpointError, ImportedModelError) propagate before any training; training faults end in a
        RunFinished, and so does a run whose checkpoints could not be written (RunFinished.unsaved)."""
        self._set_state("starting")
        self.setup()
        self._write_config_file()
        self.clock.start()
        self._emit(self._run_started())
        state, message = self._train_to_the_end()
        self.saves.finish(save_last=self._stop is None or self._stop.save)
        self._set_state(state, message)
        self.records.close()
        finished = RunFinished(
            state=state, epoch=self.epoch - 1 if self.position == 0 else self.epoch, epoch_complete=self.position == 0,
            step=self.step, elapsed_s=self.clock.elapsed_s(),
            best=dict(self.best.metrics), last=self.metrics.last, best_epoch=self.best.epoch,
            checkpoint=self.saves.last_checkpoint, message=message, unsaved=list(self.saves.unsaved),
        )
        self._emit(finished)
        self.cleanup()
        return finished

    def cleanup(self) -> None:
        if getattr(self, "feed", None) is not None:
            self.feed.close()  # the DataLoaders' worker processes live until here
        if self._run_folder is not None:
            self._run_folder.release()  # after the run's last record (run.json) is written
        self.world.close()

    def _run_started(self) -> RunStarted:
        config = self.config
        return RunStarted(
            run_id=self.run_id, run_dir=str(self.run_dir), preset=config.name, task=config.task,
            device=str(self.device), device_name=device_name(str(self.device)),
            model=config.model.name or config.model.import_target or "",
            parameters=sum(p.numel() for p in self.model.parameters()),
            train_samples=self.data.train_size, val_samples=self.data.val_size, epochs=config.epochs,
            steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps, start_epoch=self.epoch,
            start_step=self.step, lr=self.lr, config=config.to_dict(), history=list(self.records.history.records),
            world_size=self.world.world_size,
        )

    def _train_to_the_end(self) -> tuple[str, str]:
        """Train, and say how it ended: (state, message)."""
        self._session_start_step = self.step
        try:
            if self.before_training is not None:
                self.before_training()
                self.clock.start()
            if self._resume_changes:  # shown as a live change is, at the step the run resumes from
                self._set_hyperparameters(self._resume_changes)
            if self.start_paused:
                self.controls.send(Pause())
            self._set_state("running")
            message = self._train()
            return ("stopped" if self._stop is not None else "finished"), message
        except _Stopped:
            return "stopped", self._stop.reason if self._stop else ""
        except TrainingFault as fault:
            self._emit(RunFailed(fault.message, fault.fault, fault.advice))
            return "failed", fault.message
        except Exception as error:
            message = f"{type(error).__name__}: {error}"
            self._emit(RunFailed(message, "error"))
            return "failed", message

    def _train(self) -> str:
        """Train until the last epoch, max_steps, early stopping or a Stop; returns why it ended."""
        window = _Window(self.device, self.config.logging.every_steps,
                         self.world.progress_every_s(self.config.logging.every_ms),
                         self.config.task == "classification")
        while self.epoch <= self.config.epochs and self.step < self.total_steps:
            self._train_epoch(window)
            if self._stop is not None:
                return self._stop.reason
            reason = self._end_epoch()
            if reason:
                return reason
        return ""

    def _train_epoch(self, window: _Window) -> None:
        """This epoch's steps from self.position on: to the epoch's end, the run's last step or a Stop."""
        self.model.train()
        window.clear()
        for inputs, targets in self.feed.train(self.epoch, self.position):
            commands = self.world.commands_before_step(self.controls)
            if commands is not None:
                if window.steps:  # a pause, a save or a stop then shows and holds this very step
                    self._report(window)
                window.started += self._serve(commands)
                if self._stop is not None:
                    break
            outputs, loss = self._step(inputs, targets)
            window.add(outputs, loss, targets)
            self.step += 1
            self.position += 1
            if window.due():
                self._report(window)
                window.started += self._serve(self.world.commands_at_progress(self.controls))
                if self._stop is not None:
                    break
            if self.step >= self.total_steps:
                break
        if window.samples:
            self._report(window)
            if self._stop is None:
                self._serve(self.world.commands_at_progress(self.controls))

    def _step(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        while True:
            try:
                with self.autocast():
                    outputs = self._forward(inputs)
                    loss = self.loss_fn(outputs, targets)
                self.optimization.step(loss)
                return outputs, loss
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
                self._recover_from_out_of_memory()

    def _forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.forward is self.train_model:
            return self.train_model(inputs)
        try:
            return self.forward(inputs)
        except Exception as error:
            if is_out_of_memory(error):
                raise
            self.forward = self.train_model
            self._warn(f"torch.compile failed ({type(error).__name__}); running eagerly")
            return self.train_model(inputs)

    def _report(self, window: _Window) -> None:
        """A progress event for the window's steps; the window starts again (after a pause for a fault)."""
        self._progress(window.loss, window.correct, window.samples, time.perf_counter() - window.started)
        window.clear()

    def _progress(self, loss_sum: torch.Tensor, correct: torch.Tensor, samples: int, window_s: float) -> None:
        self.saves.collect()
        # One collective per progress event under torchrun (the whole world's sums), and one device read.
        (loss_total, correct_total), samples = self.world.reduce_sums(
            torch.stack([loss_sum.float(), correct.float()]), samples)
        devices = self.world.gather(cuda_memory_figures(str(self.device)))
        self.metrics.add(loss_total, correct_total, samples)
        train_loss = loss_total / samples
        accuracy = correct_total / samples if self.config.task == "classification" else None
        done = self.step - self._session_start_step
        rate = done / max(1e-9, self.clock.session_s()) if done else 0.0
        self._record(Progress(
            epoch=self.epoch, step=self.step, epoch_step=self.position, steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps, train_loss=train_loss, train_accuracy=accuracy, lr=self.lr,
            samples_per_s=samples / max(window_s, 1e-9), elapsed_s=self.clock.elapsed_s(),
            eta_s=(self.total_steps - self.step) / rate if rate > 0 else None, devices=devices,
        ))
        self.saves.loss_finite = math.isfinite(train_loss)
        if not self.saves.loss_finite:
            self._non_finite(f"training loss is {train_loss} at step {self.step}")

    # ------------------------------------------------------------ epoch end

    def _end_epoch(self) -> str:
        completed = self.epoch
        train = self.metrics.end_training()
        val = self.metrics.last_val = self._validate_until_done()
        is_best = self.best.offer(completed, train, val, lambda: weights_finite(self.model))
        self.optimization.end_epoch(val)
        self._record(EpochEnded(epoch=completed, step=self.step, train=train, val=val, lr=self.lr,
                                elapsed_s=self.clock.elapsed_s(), is_best=is_best))
        self.epoch += 1
        self.position = 0
        self.feed.next_epoch()
        self.metrics.next_epoch()
        if not math.isfinite(val["val_loss"]):
            self._non_finite(f"validation loss is {val['val_loss']} after epoch {completed}")
        self.saves.epoch_ended(completed, is_best)
        return self.early_stopping.reason if self.early_stopping.should_stop(val) else ""

    def _validate_until_done(self) -> dict[str, float]:
        """validate(); running out of memory there (its batches are larger than training's) pauses or fails
        the run as it does in a training step."""
        while True:
            try:
                return self.validate()
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
                self.model.train()
                self._recover_from_out_of_memory()

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """One pass over the validation data in eval mode (the whole world's); one device read at the end."""
        self.model.eval()
        regression = self.config.task == "regression"
        # loss sum, then correct (classification) or |error|, error^2, y, y^2 sums (regression)
        sums = torch.zeros(5, device=self.device)
        count = 0
        for inputs, targets in self.feed.val(self.epoch):
            with self.autocast():
                outputs = self.model(inputs)
                loss = self.loss_fn(outputs, targets)
            outputs = outputs.float()
            if regression:
                error = outputs - targets
                sums += torch.stack([loss.float() * len(targets), error.abs().sum(), (error * error).sum(),
                                     targets.sum(), (targets * targets).sum()])
            else:
                correct = (outputs.argmax(1) == targets).sum().float()
                sums[:2] += torch.stack([loss.float() * len(targets), correct])
            count += len(targets)
        (loss_sum, first, squared, total_y, total_y2), count = self.world.reduce_sums(sums, count)
        self.model.train()
        metrics = {"val_loss": loss_sum / count}
        if regression:
            variance = total_y2 - total_y * total_y / count
            metrics["val_mae"] = first / count
            metrics["val_r2"] = 1 - squared / variance if variance > 0 else float("nan")
        else:
            metrics["val_accuracy"] = first / count
        return metrics

    # ------------------------------------------------------------ faults

    def _recover_from_out_of_memory(self) -> None:
        self.optimization.forget_gradients()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        advice = f"try a smaller batch size (now {self.config.data.batch_size}) or a smaller model"
        message = f"out of memory on {self.device} at step {self.step}"
        if not self.pause_on_fault:
            raise TrainingFault("out_of_memory", message, advice)
        self._emit(RunFailed(message, "out_of_memory", advice))
        self._pause_for_fault(f"{message}: {advice}")

    def _non_finite(self, message: str) -> None:
        self.saves.loss_finite = False
        advice = "lower the learning rate, set grad_clip, or continue from the last good checkpoint"
        if not self.pause_on_fault:
            raise TrainingFault("non_finite", message, advice)
        self._emit(RunFailed(message, "non_finite", advice))
        self._pause_for_fault(f"{message}; {advice}")

    def _pause_for_fault(self, reason: str) -> None:
        self._paused = True
        self.saves.settle()
        self._set_state("paused", reason)
        self._wait_while_paused()
        if self._stop is not None:
            raise _Stopped

    # ------------------------------------------------------------ commands

    def _serve(self, commands: list[Command] | None) -> float:
        """Apply commands (None: none to serve) at this step boundary; blocks while paused. Returns the
        seconds spent paused."""
        if commands is None:
            return 0.0
        for command in commands:
            self._apply(command)
        return self._wait_while_paused()

    def _wait_while_paused(self) -> float:
        started = time.perf_counter()
        with self.clock.paused():
            while self._paused and self._stop is None:
                for command in self.world.wait_for_commands(self.controls, PAUSE_POLL_S):
                    self._apply(command)
        return time.perf_counter() - started

    def _apply(self, command: Command) -> None:
        log.info("rank %d applies %s at step %d", self.world.rank, command.to_dict(), self.step)
        if isinstance(command, Pause) and not self._paused:
            self._paused = True
            self.saves.settle()
            self._set_state("paused")
        elif isinstance(command, Resume) and self._paused:
            self._paused = False
            self._set_state("running")
        elif isinstance(command, Stop):
            self._stop = command
            self._paused = False
            self._set_state("stopping", command.reason)
        elif isinstance(command, SetHyperparameters):
            self._set_hyperparameters(command.changes())
        elif isinstance(command, Save):
            self.saves.save_manual(command.path, self.epoch, self.step, overwrite=command.overwrite)

    def _set_hyperparameters(self, requested: dict[str, float]) -> None:
        changes, previous, refused = self.optimization.change(requested, self.config.optimizer)
        for line in refused:
            self._warn(line)
        if changes:
            optimizer = self.config.optimizer.model_copy(update=changes)
            self.config = self.config.model_copy(update={"optimizer": optimizer})
            self._record(HyperparametersChanged(step=self.step, epoch=self.epoch, changes=changes, previous=previous))

    # ------------------------------------------------------------ events

    def _emit(self, event: Event) -> None:
        if self.world.is_main:  # other ranks train silently; rank 0 speaks for the run
            self.on_event(event)

    def _warn(self, message: str) -> None:
        self._emit(Warning(message))

    def _record(self, event: Event) -> None:
        self.records.add({**event.to_dict(), "time": time.time()})
        self._emit(event)

    def _set_state(self, state: str, reason: str = "") -> None:
        self.state = state
        self._emit(StateChanged(state, reason))

    @property
    def lr(self) -> float:
        return self.optimization.lr
