"""The Trainer: the canonical PyTorch loop, steered by Controls, reporting through Events.

Reads top to bottom: setup (data, model, optimizer, run folder, resume), run (epochs of training
steps and a validation pass), save (checkpoints), cleanup. No host-device synchronisation happens per
step: losses and correct counts add up on the device and are read back once per progress event.
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tui_trainer import __version__
from tui_trainer.catalog.datasets import DataBundle, build_dataset
from tui_trainer.catalog.losses import build_loss
from tui_trainer.catalog.models import ImportedModelError, build_model
from tui_trainer.catalog.optimizers import OPTIMIZERS, build_optimizer
from tui_trainer.config import ConfigError, RunConfig, metric_mode
from tui_trainer.engine import checkpoints, distributed, host_memory, run_folder, save_names, schedules
from tui_trainer.engine.background_writes import BackgroundWrites, Serialized
from tui_trainer.engine.controls import (
    Command,
    Controls,
    Pause,
    Resume,
    Save,
    SetHyperparameters,
    Stop,
    hyperparameter_problem,
)
from tui_trainer.engine.devices import DeviceError, cuda_memory_figures, device_name, resolve_device
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
from tui_trainer.engine.metrics import MetricsLog
from tui_trainer.logs import get_logger
from tui_trainer.text import printable
from tui_trainer.yaml_io import dump_yaml

EventCallback = Callable[[Event], None]
log = get_logger("trainer")
PAUSE_POLL_S = 0.5
BEST_WRITE_INTERVAL_S = 5.0
"""best.pt is written at most this often; a newer best in between is kept in memory and written when the
interval is up, at a pause, a fault or the end (runs with tiny epochs improve many times a second)."""
STATE_COPY_MAX_BYTES = 64 * 2**20
"""Up to this size a model (with its optimizer state) is copied in memory rather than written at once: a
newer best waits in memory as a snapshot (see BEST_WRITE_INTERVAL_S), and periodic and best checkpoints are
serialized and their files written on a thread of their own while training goes on. Above it, holding a
second copy (a snapshot stays where the model is, maybe in GPU memory) costs more than the write: the
training thread writes them itself."""
HISTORY_LIMIT = 20_000


class TrainingFault(Exception):
    def __init__(self, fault: str, message: str, advice: str = "") -> None:
        super().__init__(message)
        self.fault, self.message, self.advice = fault, message, advice


def _save_error(error: Exception) -> str:
    """A failed save's one line: save_checkpoint's own message, or the error torch raised (logged in full)."""
    if isinstance(error, checkpoints.CheckpointError):
        return error.message
    log.error("checkpoint not saved", exc_info=error)
    text = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    return f"not saved: {type(error).__name__}{': ' + printable(text) if text else ''}"


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower())


@dataclass
class RunHistory:
    """Progress, epoch and hyperparameter records for charts after a resume. Bounded: past the limit,
    every other progress record goes (epochs and hyperparameter changes always stay)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    """Each record as JSON, encoded once: metrics.jsonl gets the same text, and a checkpoint joins them."""

    def add(self, record: dict[str, Any]) -> str:
        """Keep record; returns it as one line of JSON."""
        line = json.dumps(record)
        self.records.append(record)
        self.lines.append(line)
        if len(self.records) > HISTORY_LIMIT:
            progress = [index for index, rec in enumerate(self.records) if rec["type"] == "progress"]
            drop = set(progress[::2])
            kept = [index for index in range(len(self.records)) if index not in drop]
            self.records = [self.records[index] for index in kept]
            self.lines = [self.lines[index] for index in kept]
        return line

    def replace(self, records: list[dict[str, Any]]) -> None:
        self.records = list(records)
        self.lines = [json.dumps(record) for record in self.records]

    def to_json(self) -> str:
        return "[" + ",".join(self.lines) + "]"


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
                 before_training: Callable[[], object] | None = None) -> None:
        self.config = config
        self.parallel = parallel or distributed.from_environment()
        """This process's place under torchrun (world size 1 without it)."""
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
        self.last_checkpoint: str | None = None
        self.history = RunHistory()
        self._stop: Stop | None = None
        self._paused = False
        self._metrics_log: MetricsLog | None = None
        self._loss_not_finite = False
        """The last loss measured was NaN or infinite: the weights, finite or not, are not saved."""
        self._pending_best: dict[str, Any] | None = None
        """A best checkpoint not written yet (a checkpoints.snapshot of its payload), see BEST_WRITE_INTERVAL_S."""
        self._best_written_at = float("-inf")
        self._writes = BackgroundWrites()
        self._unsaved: dict[str, str] = {}
        """Checkpoints asked for but not written (path: why), unless a later save of the same path landed."""

    # ------------------------------------------------------------ setup

    def setup(self) -> None:
        config = self.config
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        self._owns_process_group = False
        try:
            if self.parallel.enabled:
                self.device = torch.device(distributed.device_for(self.parallel))
                self._owns_process_group = distributed.init_process_group(self.parallel, self.device)
            else:
                self.device = torch.device(resolve_device(config.device))
        except DeviceError as error:
            raise ConfigError("", "device", str(error).partition(": ")[2]) from None
        if self.device.type == "cpu":
            host_memory.keep_freed_memory()
        if config.precision == "fp16" and self.device.type != "cuda":
            raise ConfigError("", "precision", f"fp16 needs a CUDA device; this run is on {self.device}; "
                                               "use bf16 or fp32")

        self.data = build_dataset(config.data.source, config.data.options, config.data.val_split, config.seed)
        if config.data.batch_size > self._shard_size(self.data.train_size):
            share = "" if not self.parallel.enabled else f" share of one of {self.parallel.world_size} processes"
            raise ConfigError("", "data.batch_size", f"{config.data.batch_size} is larger than the training set"
                                                     f"{share} ({self._shard_size(self.data.train_size)} samples)")
        self._place_data(self.data)
        self.steps_per_epoch = self._steps_per_epoch()
        self.total_steps = config.epochs * self.steps_per_epoch
        if config.max_steps:
            self.total_steps = min(self.total_steps, config.max_steps)

        self.model = build_model(config.model.name, config.model.import_target, config.model.options,
                                 self.data.input_shape, self.data.num_outputs).to(self.device)
        if self._channels_last():
            self.model = self.model.to(memory_format=torch.channels_last)
        self.train_model = self.model
        if self.parallel.enabled:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=device_ids)
        self.forward = self._maybe_compile(self.train_model)
        self.loss_fn = build_loss(config.loss.name, config.loss.options, self.data.num_outputs)
        hyperparameters = config.optimizer.model_dump(exclude={"name"})
        self._require_trainable_parameters()
        self.optimizer = build_optimizer(config.optimizer.name, self.model.parameters(), hyperparameters)
        self._trained_parameters = [parameter for group in self.optimizer.param_groups for parameter in group["params"]]
        self.scheduler = schedules.build_scheduler(config, self.optimizer, self.steps_per_epoch, self.total_steps)
        self.scheduler_per_step = schedules.steps_per_step(self.scheduler)
        self.scaler = torch.amp.GradScaler(self.device.type) if config.precision == "fp16" else None
        autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision)
        self.autocast = (
            (lambda: torch.autocast(self.device.type, dtype=autocast_dtype)) if autocast_dtype
            else contextlib.nullcontext
        )
        self.shuffle_generator = torch.Generator().manual_seed(config.seed + 1)
        self.epoch_order_state = self.shuffle_generator.get_state()

        self.best: dict[str, float] = {}
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.stopping_best: float | None = None
        self.bad_epochs = 0
        self.last_val: dict[str, float] = {}
        self.last_train: dict[str, float] = {}
        self.elapsed_before = 0.0
        self.epoch_totals = [0.0, 0.0, 0]  # loss sum (per-sample), correct, samples

        self._open_run_folder()
        if self.resume_from:
            self._restore(checkpoints.load_checkpoint(self.resume_from, map_location=str(self.device)))

    def _place_data(self, data: DataBundle) -> None:
        if data.in_memory:
            self.train_x, self.train_y = (tensor.to(self.device) for tensor in data.train)
            self.val_x, self.val_y = (tensor.to(self.device) for tensor in data.val)

    def _shard_size(self, size: int) -> int:
        """Samples per process and epoch (all of them without torchrun)."""
        return -(-size // self.parallel.world_size)

    def _steps_per_epoch(self) -> int:
        size, batch = self._shard_size(self.data.train_size), self.config.data.batch_size
        steps, remainder = divmod(size, batch)
        # A last batch of one sample breaks BatchNorm in training; it is dropped.
        return steps + (1 if remainder > 1 else 0)

    def _channels_last(self) -> bool:
        """Channels-last convolution weights: a digits-cnn step takes 12% less time on a CPU (oneDNN's
        pooling and convolutions skip their layout conversions), and tensor cores want them too. A model of
        your own opts in (channels_last: true): a .view() in it may not take the layout."""
        if self.config.channels_last is not None:
            return self.config.channels_last
        return self.config.model.name == "cnn"

    def _maybe_compile(self, model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        if not self.config.compile:
            return model
        try:
            return torch.compile(model)
        except Exception as error:  # backend missing, unsupported platform ...
            self._emit(Warning(f"torch.compile unavailable ({type(error).__name__}: {error}); running eagerly"))
            return model

    _run_folder: run_folder.RunFolder | None = None
    """The folder this run writes in, held (locked) from setup to the end of run()."""

    def _open_run_folder(self) -> None:
        """Only in a folder made for this run, or the run folder of its own checkpoint (see run_folder)."""
        if not self.parallel.is_main:  # rank 0 alone writes the run folder
            self.run_dir = self.planned_run_dir or run_folder.plan_run_dir(self.config, self.resume_from, self.run_id)
            self.run_id = self.run_dir.name
            return
        if self.planned_run_dir is not None:
            self._run_folder = run_folder.adopt_run_folder(self.planned_run_dir)
        else:
            self._run_folder = run_folder.claim_run_folder(self.config, self.resume_from, self.run_id)
        self.run_dir = self._run_folder.path
        self.run_id = self.run_dir.name
        checkpoints.clean_temporary_files(self.run_dir)
        self._metrics_log = MetricsLog(self.run_dir / "metrics.jsonl")

    def _write_config_file(self) -> None:
        if not self.parallel.is_main:
            return
        path = self.run_dir / "config.yaml"
        try:
            run_folder.replace_file(path, dump_yaml(self.config.to_dict()))
        except OSError as error:
            self._emit(Warning(f"could not write {path}: {error.strerror or error}"))

    def _require_trainable_parameters(self) -> None:
        """An optimizer needs at least one parameter to train: a model without one is the user's model."""
        if any(parameter.requires_grad for parameter in self.model.parameters()):
            return
        model = self.config.model
        what = f"model.import: {printable(model.import_target)}" if model.import_target else f"model.name: {model.name}"
        raise ImportedModelError(f"{what} has no parameters to train (none, or none with requires_grad)")

    def _restore(self, payload: dict[str, Any]) -> None:
        """Continue from a checkpoint load_checkpoint has read: everything is checked (types, shapes, random
        states, that it fits this model and optimizer) before any of it changes this run."""
        path = self.resume_from
        records = checkpoints.check_resumable(path, payload)
        problem = (checkpoints.model_mismatch(self.model.state_dict(), payload["model"])
                   or checkpoints.optimizer_mismatch(self.optimizer, payload["optimizer"])
                   or self._schedule_mismatch(payload))
        if problem:
            raise checkpoints.CheckpointError(path, f"does not fit this run's model or optimizer: {problem}")
        state = payload["trainer"]
        # How this machine runs the optimizer (fused kernels or not) is its own, not the file's.
        implementations = [{key: group[key] for key in ("fused", "foreach") if key in group}
                           for group in self.optimizer.param_groups]
        try:
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            for group, implementation in zip(self.optimizer.param_groups, implementations, strict=True):
                group.update(implementation)
            if self.scheduler is not None and payload.get("scheduler"):
                self.scheduler.load_state_dict(payload["scheduler"])
            if self.scaler is not None and payload.get("scaler"):
                self.scaler.load_state_dict(payload["scaler"])
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            raise checkpoints.CheckpointError(path, "does not fit this run's model or optimizer: "
                                              f"{printable(str(error).strip().splitlines()[0][:200])}") from None
        self.epoch, self.position, self.step = state["epoch"], state["position"], state["step"]
        saved_world = state.get("world_size", 1)
        if saved_world != self.parallel.world_size:
            # Another number of processes shards the epoch differently: go on from the same share of it.
            self.position = min(self.steps_per_epoch - 1, self.position * saved_world // self.parallel.world_size)
        self.epoch_order_state = state["epoch_order_state"]
        self.shuffle_generator.set_state(self.epoch_order_state)
        self.best, self.best_value, self.best_epoch = state["best"], state["best_value"], state["best_epoch"]
        self.stopping_best, self.bad_epochs = state["stopping_best"], state["bad_epochs"]
        self.last_val, self.last_train = state["last_val"], state["last_train"]
        self.elapsed_before = state["elapsed_s"]
        self.epoch_totals = list(state["epoch_totals"])
        self.history.replace(records)
        try:
            checkpoints.restore_rng(payload["rng"])
        except (RuntimeError, ValueError, TypeError) as error:  # a CUDA state this machine's devices do not take
            raise checkpoints.CheckpointError(path, f"its random state does not fit this machine: "
                                                    f"{printable(str(error).strip().splitlines()[0][:200])}") from None
        if not (self.run_dir / "metrics.jsonl").exists() and self._metrics_log is not None:
            # A branch (see run_folder) starts its metrics.jsonl with the history it continues.
            for line in self.history.lines:
                self._metrics_log.write_line(line)

    def _schedule_mismatch(self, payload: dict[str, Any]) -> str | None:
        """torch loads a scheduler's or a grad scaler's state without a look: its shape is checked here."""
        for name, own in (("scheduler", self.scheduler), ("scaler", self.scaler)):
            if own is not None and payload.get(name):
                problem = checkpoints.structure_mismatch(own.state_dict(), payload[name], name)
                if problem:
                    return problem
        return None

    # ------------------------------------------------------------ events

    def _emit(self, event: Event) -> None:
        if self.parallel.is_main:  # other ranks train silently; rank 0 speaks for the run
            self.on_event(event)

    def _record(self, event: Event) -> None:
        line = self.history.add({**event.to_dict(), "time": time.time()})
        if self._metrics_log is not None:
            try:
                self._metrics_log.write_line(line)
            except OSError as error:
                self._metrics_log = None
                self._emit(Warning(f"metrics.jsonl is no longer written: {error.strerror or error}"))
        self._emit(event)

    def _set_state(self, state: str, reason: str = "") -> None:
        self.state = state
        self._emit(StateChanged(state, reason))

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def _elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self._clock_start) - self._paused_s

    # ------------------------------------------------------------ run

    def run(self) -> RunFinished:
        """Set up, train to the end (or a stop), save, clean up. Setup errors (ConfigError, DatasetError,
        CheckpointError, ImportedModelError) propagate before any training; training faults end in a
        RunFinished, and so does a run whose checkpoints could not be written (RunFinished.unsaved)."""
        self._set_state("starting")
        self.setup()
        self._write_config_file()
        self._clock_start = time.perf_counter()
        self._paused_s = 0.0
        self._emit(RunStarted(
            run_id=self.run_id, run_dir=str(self.run_dir), preset=self.config.name, task=self.config.task,
            device=str(self.device), device_name=device_name(str(self.device)),
            model=self.config.model.name or self.config.model.import_target or "",
            parameters=sum(p.numel() for p in self.model.parameters()),
            train_samples=self.data.train_size, val_samples=self.data.val_size, epochs=self.config.epochs,
            steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps, start_epoch=self.epoch,
            start_step=self.step, lr=self.lr, config=self.config.to_dict(), history=list(self.history.records),
            world_size=self.parallel.world_size,
        ))
        state, message = "finished", ""
        self._session_start_step = self.step
        try:
            if self.before_training is not None:
                self.before_training()
                self._clock_start = time.perf_counter()
            if self.start_paused:
                self.controls.send(Pause())
            self._set_state("running")
            message = self._train()
            if self._stop is not None:
                state = "stopped"
        except _Stopped:
            state, message = "stopped", self._stop.reason if self._stop else ""
        except TrainingFault as fault:
            state, message = "failed", fault.message
            self._emit(RunFailed(fault.message, fault.fault, fault.advice))
        except Exception as error:
            state, message = "failed", f"{type(error).__name__}: {error}"
            self._emit(RunFailed(message, "error"))
        self._settle_checkpoints()
        self._writes.close()
        if self._stop is None or self._stop.save:
            self.save(self.run_dir / "last.pt", "last")
        self._set_state(state, message)
        if self._metrics_log is not None:
            with contextlib.suppress(OSError):  # a full disk: its last lines are lost, the run's end is not
                self._metrics_log.close()
        finished = RunFinished(
            state=state, epoch=self.epoch, step=self.step, elapsed_s=self._elapsed(), best=dict(self.best),
            last={**self.last_train, **self.last_val}, best_epoch=self.best_epoch, checkpoint=self.last_checkpoint,
            message=message, unsaved=list(self._unsaved),
        )
        self._emit(finished)
        if self._run_folder is not None:
            self._run_folder.release()  # after the run's last record (run.json) is written
        if self._owns_process_group:
            distributed.destroy()
        return finished

    def _train(self) -> str:
        """Train until the last epoch, max_steps, early stopping or a Stop; returns why it ended."""
        every_steps = self.config.logging.every_steps
        # Ranks must meet at the same steps, so under torchrun only the step count triggers progress.
        every_s = self.config.logging.every_ms / 1000 if not self.parallel.enabled else math.inf
        task_is_classification = self.config.task == "classification"
        zero = torch.zeros((), device=self.device)
        while self.epoch <= self.config.epochs and self.step < self.total_steps:
            self.model.train()
            window_loss, window_correct, window_samples, window_steps = zero.clone(), zero.clone(), 0, 0
            window_start = time.perf_counter()
            for inputs, targets in self._batches():
                if not self.parallel.enabled and self.controls.has_pending():
                    if window_steps:  # a pause, a save or a stop then shows and holds this very step
                        window_start = self._report_window(window_loss, window_correct, window_samples, window_start)
                        window_samples = window_steps = 0
                    window_start += self._serve(self.controls.drain())
                    if self._stop is not None:
                        break
                outputs, loss = self._step(inputs, targets)
                window_loss.add_(loss.detach(), alpha=len(targets))
                if task_is_classification:
                    window_correct.add_((outputs.detach().argmax(1) == targets).sum())
                window_samples += len(targets)
                window_steps += 1
                self.step += 1
                self.position += 1
                if window_steps >= every_steps or time.perf_counter() - window_start >= every_s:
                    window_start = self._report_window(window_loss, window_correct, window_samples, window_start)
                    window_samples = window_steps = 0
                    if self.parallel.enabled:
                        window_start += self._sync_commands()
                        if self._stop is not None:
                            break
                if self.step >= self.total_steps:
                    break
            if window_samples:
                self._report_window(window_loss, window_correct, window_samples, window_start)
                if self.parallel.enabled and self._stop is None:
                    self._sync_commands()
            if self._stop is not None:
                return self._stop.reason
            reason = self._end_epoch()
            if reason:
                return reason
        return ""

    def _report_window(self, loss_sum: torch.Tensor, correct: torch.Tensor, samples: int, started: float) -> float:
        """A progress event for the steps since started; empties the window's sums and returns its new start."""
        self._progress(loss_sum, correct, samples, time.perf_counter() - started)
        loss_sum.zero_()
        correct.zero_()
        return time.perf_counter()

    def _sync_commands(self) -> float:
        """Under torchrun: apply the commands every rank agreed on (at a progress event); seconds paused."""
        return self._serve(distributed.sync_commands(self.controls.drain(), self.parallel))

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This epoch's batches from self.position on; the order is fixed by the generator state saved at
        the epoch's start, so a resumed run sees the same batches."""
        size, batch = self.data.train_size, self.config.data.batch_size
        if self.parallel.enabled:
            order = self._distributed_order(size)
        else:
            if self.position == 0:
                self.epoch_order_state = self.shuffle_generator.get_state()
            else:
                self.shuffle_generator.set_state(self.epoch_order_state)
            if self.config.data.shuffle:
                order = torch.randperm(size, generator=self.shuffle_generator)
            else:
                order = torch.arange(size)
        starts = range(self.position * batch, self.steps_per_epoch * batch, batch)
        if self.data.in_memory:
            order = order.to(self.device)
            for start in starts:
                index = order[start:start + batch]
                yield self.train_x[index], self.train_y[index]
            return
        from torch.utils.data import DataLoader

        batches = [order[start:start + batch].tolist() for start in starts]
        loader = DataLoader(self.data.train, batch_sampler=batches, num_workers=self.config.data.num_workers,
                            pin_memory=self.device.type == "cuda", generator=self._loader_generator(0))
        for inputs, targets in loader:
            yield (inputs.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True))

    def _distributed_order(self, size: int) -> torch.Tensor:
        """This rank's share of the epoch, from a DistributedSampler (set_epoch each epoch), for data on the
        device and DataLoader data alike; a function of the epoch, so resuming needs no generator state."""
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(range(size), num_replicas=self.parallel.world_size, rank=self.parallel.rank,
                                     shuffle=self.config.data.shuffle, seed=self.config.seed)
        sampler.set_epoch(self.epoch)
        return torch.tensor(list(sampler), dtype=torch.int64)

    def _loader_generator(self, phase: int) -> torch.Generator:
        """A DataLoader draws its workers' base seed from this, not from the global generator, which
        dropout and the checkpointed RNG state own: a resumed run then draws the same numbers."""
        return torch.Generator().manual_seed((self.config.seed * 1_000_003 + self.epoch) * 2 + phase)

    def _step(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        while True:
            try:
                return self._optimizer_step(inputs, targets)
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
                self._recover_from_out_of_memory()

    def _optimizer_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self.autocast():
            outputs = self._forward(inputs)
            loss = self.loss_fn(outputs, targets)
        # What optimizer.zero_grad(set_to_none=True) does, without its profiler and compiler wrappers: 12 us
        # a step, 7% of a run of iris-linear.
        for parameter in self._trained_parameters:
            parameter.grad = None
        clip = self.config.grad_clip
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if clip:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            self.optimizer.step()
        if self.scheduler_per_step:
            self.scheduler.step()
        return outputs, loss

    def _forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.forward is self.train_model:
            return self.train_model(inputs)
        try:
            return self.forward(inputs)
        except Exception as error:
            if is_out_of_memory(error):
                raise
            self.forward = self.train_model
            self._emit(Warning(f"torch.compile failed ({type(error).__name__}); running eagerly"))
            return self.train_model(inputs)

    def _recover_from_out_of_memory(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        advice = f"try a smaller batch size (now {self.config.data.batch_size}) or a smaller model"
        message = f"out of memory on {self.device} at step {self.step}"
        if not self.pause_on_fault:
            raise TrainingFault("out_of_memory", message, advice)
        self._emit(RunFailed(message, "out_of_memory", advice))
        self._pause_for_fault(f"{message}: {advice}")

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

    def _pause_for_fault(self, reason: str) -> None:
        self._paused = True
        self._settle_checkpoints()
        self._set_state("paused", reason)
        self._wait_while_paused()
        if self._stop is not None:
            raise _Stopped

    def _progress(self, loss_sum: torch.Tensor, correct: torch.Tensor, samples: int, window_s: float) -> None:
        self._collect_writes()
        totals = torch.stack([loss_sum.float(), correct.float(), torch.tensor(float(samples), device=self.device)])
        devices = cuda_memory_figures(str(self.device))
        if self.parallel.enabled:  # one collective per progress event: the whole world's sums
            distributed.all_reduce_sum(totals)
            if devices:
                devices = [figure for rank in distributed.all_gather(devices, self.parallel) for figure in rank]
        loss_total, correct_total, samples = totals.tolist()  # the one device read
        self.epoch_totals[0] += loss_total
        self.epoch_totals[1] += correct_total
        self.epoch_totals[2] += samples
        train_loss = loss_total / samples
        accuracy = correct_total / samples if self.config.task == "classification" else None
        elapsed = self._elapsed()
        done = self.step - self._session_start_step
        rate = done / max(1e-9, elapsed - self.elapsed_before) if done else 0.0
        eta = (self.total_steps - self.step) / rate if rate > 0 else None
        self._record(Progress(
            epoch=self.epoch, step=self.step, epoch_step=self.position, steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps, train_loss=train_loss, train_accuracy=accuracy, lr=self.lr,
            samples_per_s=samples / max(window_s, 1e-9), elapsed_s=elapsed, eta_s=eta, devices=devices,
        ))
        self._loss_not_finite = not math.isfinite(train_loss)
        if self._loss_not_finite:
            self._non_finite(f"training loss is {train_loss} at step {self.step}")

    def _non_finite(self, message: str) -> None:
        self._loss_not_finite = True
        advice = "lower the learning rate, set grad_clip, or continue from the last good checkpoint"
        if not self.pause_on_fault:
            raise TrainingFault("non_finite", message, advice)
        self._emit(RunFailed(message, "non_finite", advice))
        self._pause_for_fault(f"{message}; {advice}")

    # ------------------------------------------------------------ epoch end

    def _end_epoch(self) -> str:
        totals = self.epoch_totals
        self.last_train = {"train_loss": totals[0] / max(1, totals[2])}
        if self.config.task == "classification":
            self.last_train["train_accuracy"] = totals[1] / max(1, totals[2])
        self.last_val = self._validate_until_done()
        completed = self.epoch
        is_best = self._update_best(completed)
        if self.scheduler is not None and not self.scheduler_per_step:
            monitored = self.last_val.get(self.config.checkpoint.monitor)
            if monitored is not None and math.isfinite(monitored):
                self.scheduler.step(monitored)
        self._record(EpochEnded(epoch=completed, step=self.step, train=self.last_train, val=self.last_val,
                                lr=self.lr, elapsed_s=self._elapsed(), is_best=is_best))
        self.epoch += 1
        self.position = 0
        self.epoch_order_state = self.shuffle_generator.get_state()
        self.epoch_totals = [0.0, 0.0, 0]
        if not math.isfinite(self.last_val["val_loss"]):
            self._non_finite(f"validation loss is {self.last_val['val_loss']} after epoch {completed}")
        checkpoint = self.config.checkpoint
        if is_best and checkpoint.save_best:
            self._save_best()
        elif time.monotonic() - self._best_written_at >= BEST_WRITE_INTERVAL_S:
            self.write_pending_best(background=True)
        if checkpoint.every_epochs and completed % checkpoint.every_epochs == 0:
            self.save(self.run_dir / f"epoch-{completed:04d}.pt", "epoch", background=True)
        if self._early_stop(completed):
            return f"early stopping: {self.config.early_stopping.monitor} did not improve for " \
                   f"{self.config.early_stopping.patience} epochs"
        return ""

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """One pass over the validation data in eval mode; one device read at the end."""
        self.model.eval()
        regression = self.config.task == "regression"
        # loss sum, then correct (classification) or |error|, error^2, y, y^2 sums (regression)
        sums = torch.zeros(5, device=self.device)
        count = 0
        for inputs, targets in self._val_batches():
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
        if self.parallel.enabled:  # each rank saw its share of the validation data
            sums = distributed.all_reduce_sum(torch.cat([sums, torch.tensor([float(count)], device=self.device)]))
            count = sums[5].item()
            sums = sums[:5]
        loss_sum, first, squared, total_y, total_y2 = sums.tolist()  # the one device read
        self.model.train()
        metrics = {"val_loss": loss_sum / count}
        if regression:
            variance = total_y2 - total_y * total_y / count
            metrics["val_mae"] = first / count
            metrics["val_r2"] = 1 - squared / variance if variance > 0 else float("nan")
        else:
            metrics["val_accuracy"] = first / count
        return metrics

    def _val_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batch = max(self.config.data.batch_size, 256)
        rank, world = self.parallel.rank, self.parallel.world_size
        if self.data.in_memory:
            val_x, val_y = self.val_x[rank::world], self.val_y[rank::world]
            for start in range(0, len(val_x), batch):
                yield val_x[start:start + batch], val_y[start:start + batch]
            return
        from torch.utils.data import DataLoader, Subset

        val = self.data.val if world == 1 else Subset(self.data.val, range(rank, len(self.data.val), world))
        loader = DataLoader(val, batch_size=batch, num_workers=self.config.data.num_workers,
                            pin_memory=self.device.type == "cuda", generator=self._loader_generator(1))
        for inputs, targets in loader:
            yield inputs.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)

    def _update_best(self, epoch: int) -> bool:
        metric = self.config.checkpoint.monitor
        value = self.last_val.get(metric)
        if value is None or not math.isfinite(value) or not math.isfinite(self.last_val.get("val_loss", 0.0)):
            return False  # a model whose validation loss is NaN or infinite is never the best, whatever its accuracy
        better = self.best_value is None or (
            value < self.best_value if metric_mode(metric) == "min" else value > self.best_value)
        if better and self._weights_finite():
            self.best_value, self.best_epoch = value, epoch
            self.best = {**self.last_train, **self.last_val}
            return True
        return False

    def _early_stop(self, epoch: int) -> bool:
        rule = self.config.early_stopping
        if rule is None:
            return False
        value = self.last_val.get(rule.monitor)
        mode = rule.mode or metric_mode(rule.monitor)
        if value is None or not math.isfinite(value):
            improved = False
        elif self.stopping_best is None:
            improved = True
        elif mode == "min":
            improved = value < self.stopping_best - rule.min_delta
        else:
            improved = value > self.stopping_best + rule.min_delta
        if improved:
            self.stopping_best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= rule.patience

    def _weights_finite(self) -> bool:
        checks = [torch.isfinite(p).all() for p in self.model.parameters()]
        return bool(torch.stack(checks).all()) if checks else True  # one device read

    # ------------------------------------------------------------ commands

    def _serve(self, commands: list[Command]) -> float:
        """Apply commands at this step boundary; blocks while paused. Returns the seconds spent paused."""
        for command in commands:
            self._apply(command)
        return self._wait_while_paused()

    def _wait_while_paused(self) -> float:
        started = time.perf_counter()
        while self._paused and self._stop is None:
            if self.parallel.enabled:
                # Rank 0 waits on its controls; the others wait in the collective, and all apply the same.
                waited_for = self.controls.wait(PAUSE_POLL_S) if self.parallel.is_main else None
                local = ([waited_for] if waited_for else []) + self.controls.drain()
                for command in distributed.sync_commands(local, self.parallel):
                    self._apply(command)
                continue
            command = self.controls.wait(PAUSE_POLL_S)
            if command is not None:
                self._apply(command)
        waited = time.perf_counter() - started
        self._paused_s += waited
        return waited

    def _apply(self, command: Command) -> None:
        log.info("rank %d applies %s at step %d", self.parallel.rank, command.to_dict(), self.step)
        if isinstance(command, Pause) and not self._paused:
            self._paused = True
            self._settle_checkpoints()
            self._set_state("paused")
        elif isinstance(command, Resume) and self._paused:
            self._paused = False
            self._set_state("running")
        elif isinstance(command, Stop):
            self._stop = command
            self._paused = False
            self._set_state("stopping", command.reason)
        elif isinstance(command, SetHyperparameters):
            self._set_hyperparameters(command)
        elif isinstance(command, Save):
            problem = save_names.save_path_problem(str(command.path)) if command.path else ""
            path = Path(command.path) if command.path else self.run_dir / f"manual-e{self.epoch}-s{self.step}.pt"
            if problem:  # a name the run would prune, hide or overwrite: refused before anything is written
                self._emit(CheckpointFailed(str(path), problem, "manual"))
            else:
                self.save(path, "manual")

    def _set_hyperparameters(self, command: SetHyperparameters) -> None:
        changes, previous = {}, {}
        group = self.optimizer.param_groups[0]
        for key, value in command.changes().items():
            problem = hyperparameter_problem(key, value)  # the preset's bounds, as for the socket and the panel
            if problem:
                self._emit(Warning(f"{problem}; unchanged"))
                continue
            if key == "lr":
                previous[key] = schedules.base_learning_rate(self.optimizer, self.scheduler)
                schedules.set_base_learning_rate(self.optimizer, self.scheduler, value)
            elif key not in group or (key == "momentum" and "momentum" not in
                                      OPTIMIZERS[self.config.optimizer.name].hyperparameters):
                self._emit(Warning(f"{self.config.optimizer.name} has no {key}; unchanged"))
                continue
            else:
                previous[key] = group[key]
                for each in self.optimizer.param_groups:
                    each[key] = value
            changes[key] = value
        if changes:
            self._record(HyperparametersChanged(step=self.step, epoch=self.epoch, changes=changes, previous=previous))

    # ------------------------------------------------------------ save

    def checkpoint_payload(self, reason: str) -> dict[str, Any]:
        return {
            "format": checkpoints.FORMAT,
            "format_version": checkpoints.FORMAT_VERSION,
            "meta": {
                "run_id": self.run_id, "preset": self.config.name, "task": self.config.task,
                "epoch": self.epoch - 1 if self.position == 0 else self.epoch, "epoch_complete": self.position == 0,
                "step": self.step, "val": dict(self.last_val), "train": dict(self.last_train),
                "saved_at": time.time(), "reason": reason,
                "versions": {"tui_trainer": __version__, "torch": str(torch.__version__),
                             "python": platform.python_version()},
            },
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "trainer": {
                "epoch": self.epoch, "position": self.position, "step": self.step,
                # The generator state this epoch's order is drawn from (the next epoch's, after an epoch ends),
                # also when a stop or save comes after the order was drawn but before the epoch's first step.
                "epoch_order_state": self.epoch_order_state,
                "best": dict(self.best),
                "best_value": self.best_value, "best_epoch": self.best_epoch,
                "stopping_best": self.stopping_best, "bad_epochs": self.bad_epochs,
                "last_val": dict(self.last_val), "last_train": dict(self.last_train),
                "elapsed_s": self._elapsed(), "epoch_totals": list(self.epoch_totals),
                "world_size": self.parallel.world_size,
            },
            "rng": checkpoints.capture_rng(),
            # One string, not thousands of small dicts: the pickler visits each object it writes.
            "history_json": self.history.to_json(),
        }

    def save(self, path: Path, reason: str, background: bool = False) -> str | None:
        """Write a checkpoint of this step boundary. Never writes non-finite weights, nor finite ones whose
        last loss was not finite (diverged weights can still be finite, just huge). background: a small state
        (STATE_COPY_MAX_BYTES) is serialized now, its file written while training goes on and reported when it
        lands. A save that fails is one CheckpointFailed and training goes on; the run's end lists it.
        Under torchrun rank 0 alone writes, the plain (unwrapped) model: it loads in any world size."""
        if not self.parallel.is_main:
            return None
        if not self._weights_finite():
            self._not_saved(path, "weights are not finite; the last good checkpoint is kept", reason)
            return None
        if self._loss_not_finite:
            self._not_saved(path, "the loss is not finite; the last good checkpoint is kept", reason)
            return None
        self._collect_writes(wait=True)  # files land in the order they were asked for
        try:
            payload = self.checkpoint_payload(reason)
            if background and self._state_bytes() <= STATE_COPY_MAX_BYTES:
                self._writes.submit(path, Serialized(checkpoints.serialize(payload), self.epoch, self.step), reason)
                return str(path)
            size = checkpoints.save_checkpoint(path, payload)
        except Exception as error:  # out of memory while serializing, a disk error torch wrapped ...
            self._not_saved(path, _save_error(error), reason)
            return None
        self._saved(str(path), size, self.epoch, self.step, reason)
        return str(path)

    def _saved(self, path: str, size: int, epoch: int, step: int, reason: str) -> None:
        self.last_checkpoint = path
        self._unsaved.pop(path, None)
        self._emit(CheckpointSaved(path, size, epoch, step, reason))
        if reason == "epoch":
            self._prune_periodic()  # only once the newer one is on disk

    def _not_saved(self, path: str | Path, message: str, reason: str) -> None:
        """One line for a checkpoint that was not written; the run's end lists it unless a later save of
        the same file lands."""
        self._unsaved[str(path)] = message
        self._emit(CheckpointFailed(str(path), message, reason))

    def _collect_writes(self, wait: bool = False) -> None:
        """Report the background write that has ended (wait: wait for the one under way)."""
        written = self._writes.finished(wait)
        if written is None:
            return
        if written.error is None:
            self._saved(written.path, written.size, written.epoch, written.step, written.reason)
        else:
            self._not_saved(written.path, written.error, written.reason)

    def _settle_checkpoints(self) -> None:
        """Before a pause and at the end: every checkpoint asked for is on disk and reported."""
        self._collect_writes(wait=True)
        self.write_pending_best()

    def _save_best(self) -> None:
        path = self.run_dir / "best.pt"
        if time.monotonic() - self._best_written_at >= BEST_WRITE_INTERVAL_S or self._state_bytes() > \
                STATE_COPY_MAX_BYTES or not self.parallel.is_main:
            self._pending_best = None
            if self.save(path, "best", background=True):
                self._best_written_at = time.monotonic()
            return
        if not self._weights_finite() or self._loss_not_finite:
            self.save(path, "best")  # says why it is not written
            return
        try:
            self._pending_best = checkpoints.snapshot(self.checkpoint_payload("best"))
        except Exception as error:  # no memory for the copy (on a GPU, say)
            self._pending_best = None
            self._not_saved(path, _save_error(error), "best")

    def write_pending_best(self, background: bool = False) -> None:
        """Write the best checkpoint kept in memory, if any (see BEST_WRITE_INTERVAL_S); background: on
        the writer's thread."""
        pending, self._pending_best = self._pending_best, None
        if pending is None:
            return
        path = self.run_dir / "best.pt"
        epoch, step = pending["trainer"]["epoch"], pending["trainer"]["step"]
        self._collect_writes(wait=True)
        try:
            if background:
                self._writes.submit(path, Serialized(checkpoints.serialize(pending), epoch, step), "best")
                self._best_written_at = time.monotonic()
                return
            size = checkpoints.save_checkpoint(path, pending)
        except Exception as error:
            self._not_saved(path, _save_error(error), "best")
            return
        self._best_written_at = time.monotonic()
        self._saved(str(path), size, epoch, step, "best")

    def _state_bytes(self) -> int:
        tensors = [*self.model.parameters(), *(value for state in self.optimizer.state.values()
                                               for value in state.values() if isinstance(value, torch.Tensor))]
        return sum(tensor.numel() * tensor.element_size() for tensor in tensors)

    def _prune_periodic(self) -> None:
        """Called as a periodic checkpoint lands (last_checkpoint): only the run's own, listed ones go."""
        if self.parallel.is_main and self._run_folder is not None:
            self._run_folder.prune_periodic(self.last_checkpoint, self.config.checkpoint.keep_last)


class _Stopped(Exception):
    """A stop arrived while paused for a fault."""
