"""When and how a run's checkpoints are written: the payload, writes on a thread of their own, the best
checkpoint's throttle, and pruning of the periodic ones (the run folder keeps the list of the run's own).

Never written: weights that are not finite, nor finite ones whose last loss was not (diverged weights can
still be finite, just huge). A save that fails is one CheckpointFailed and training goes on; the run's end
lists it (unsaved) unless a later save of the same file landed. Under torchrun rank 0 alone writes, the plain
(unwrapped) model: it loads in any world size.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from tui_trainer import __version__
from tui_trainer.config import CheckpointConfig, RunConfig
from tui_trainer.engine import checkpoints, save_names
from tui_trainer.engine.background_writes import BackgroundWrites, Serialized
from tui_trainer.engine.events import CheckpointFailed, CheckpointSaved, Event
from tui_trainer.engine.held_folder import HeldFolder
from tui_trainer.logs import get_logger
from tui_trainer.text import printable

log = get_logger("trainer")

BEST_WRITE_INTERVAL_S = 5.0
"""best.pt is written at most this often; a newer best in between is kept in memory and written when the
interval is up, at a pause, a fault or the end (runs with tiny epochs improve many times a second)."""
STATE_COPY_MAX_BYTES = 64 * 2**20
"""Up to this size a model (with its optimizer state) is copied in memory rather than written at once: a
newer best waits in memory as a snapshot (see BEST_WRITE_INTERVAL_S), and periodic and best checkpoints are
serialized and their files written on a thread of their own while training goes on. Above it, holding a
second copy (a snapshot stays where the model is, maybe in GPU memory) costs more than the write: the
training thread writes them itself."""


class Checkpointable(Protocol):
    """What a checkpoint is made of: the run (its Trainer) at a step boundary."""

    run_id: str | None
    config: RunConfig
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume continues from: model, optimizer, scheduler, scaler, trainer, rng, history."""
        ...


def payload(run: Checkpointable, reason: str) -> dict[str, Any]:
    """One self-describing dict: format, metadata a listing reads without the rest, the effective config,
    and the run's state (see checkpoints for the schema every load checks)."""
    state = run.state_dict()
    trainer = state["trainer"]
    complete = trainer["position"] == 0
    return {
        "format": checkpoints.FORMAT,
        "format_version": checkpoints.FORMAT_VERSION,
        "meta": {
            "run_id": run.run_id, "preset": run.config.name, "task": run.config.task,
            "epoch": trainer["epoch"] - 1 if complete else trainer["epoch"], "epoch_complete": complete,
            "step": trainer["step"], "val": dict(trainer["last_val"]), "train": dict(trainer["last_train"]),
            "saved_at": time.time(), "reason": reason, "torch_threads": torch.get_num_threads(),
            "versions": {"tui_trainer": __version__, "torch": str(torch.__version__),
                         "python": platform.python_version()},
        },
        "config": run.config.to_dict(),
        **state,
    }


def weights_finite(model: torch.nn.Module) -> bool:
    checks = [torch.isfinite(p).all() for p in model.parameters()]
    return bool(torch.stack(checks).all()) if checks else True  # one device read


def state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    tensors = [*model.parameters(), *(value for state in optimizer.state.values()
                                      for value in state.values() if isinstance(value, torch.Tensor))]
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


def save_error(error: Exception) -> str:
    """A failed save's one line: save_checkpoint's own message, or the error torch raised (logged in full)."""
    if isinstance(error, checkpoints.CheckpointError):
        return error.message
    log.error("checkpoint not saved", exc_info=error)
    text = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    return f"not saved: {type(error).__name__}{': ' + printable(text) if text else ''}"


class CheckpointPolicy:
    """The run's checkpoints: periodic (epoch-NNNN.pt, pruned to keep_last), best.pt, manual saves, last.pt.

    writes: this process writes them (rank 0; every other rank's saves are no-ops). emit is told of each save
    as it lands (CheckpointSaved) or fails (CheckpointFailed). Holds nothing a resume needs: a resumed run
    starts with no best waiting and nothing unsaved.
    """

    def __init__(self, run: Checkpointable, run_dir: Path, folder: HeldFolder | None, settings: CheckpointConfig,
                 emit: Callable[[Event], None], writes: bool) -> None:
        self.run, self.run_dir, self.folder, self.settings = run, run_dir, folder, settings
        self.emit, self.writes = emit, writes
        self.last_checkpoint: str | None = None
        self.unsaved: dict[str, str] = {}
        """Checkpoints asked for but not written (path: why), unless a later save of the same path landed."""
        self.loss_finite = True
        """False when the last loss measured was NaN or infinite: the weights, finite or not, are not saved."""
        self._pending_best: dict[str, Any] | None = None
        """A best checkpoint not written yet (a checkpoints.snapshot of its payload), see BEST_WRITE_INTERVAL_S."""
        self._best_written_at = float("-inf")
        self._writes = BackgroundWrites()

    # ------------------------------------------------------------ what the loop asks for

    def epoch_ended(self, epoch: int, is_best: bool) -> None:
        """best.pt (throttled) and the periodic checkpoint of a finished epoch."""
        if is_best and self.settings.save_best:
            self._save_best()
        elif time.monotonic() - self._best_written_at >= BEST_WRITE_INTERVAL_S:
            self._write_pending_best(background=True)
        if self.settings.every_epochs and epoch % self.settings.every_epochs == 0:
            self.save(self.run_dir / f"epoch-{epoch:04d}.pt", "epoch", background=True)

    def save_manual(self, path: str | None, epoch: int, step: int, overwrite: bool = False) -> None:
        """A Save command: to path, or manual-e<epoch>-s<step>.pt in the run folder. A file already there is
        replaced only when the command says so (`overwrite`: the user confirmed it)."""
        problem = save_names.save_path_problem(path) if path else ""
        target = Path(path) if path else self.run_dir / f"manual-e{epoch}-s{step}.pt"
        if not problem and not overwrite and os.path.lexists(target):
            problem = f"{printable(str(target))} exists; save again with overwrite to replace it"
        if problem:  # a name the run would prune, hide or overwrite: refused before anything is written
            self.emit(CheckpointFailed(str(target), problem, "manual"))
        else:
            self.save(target, "manual")

    def collect(self) -> None:
        """Report the background write that has ended, if any (at a progress event)."""
        self._collect_writes()

    def settle(self) -> None:
        """Before a pause and at the end: every checkpoint asked for is on disk and reported."""
        self._collect_writes(wait=True)
        self._write_pending_best()

    def finish(self, save_last: bool) -> None:
        """The run's end: every write settled, the writer's thread ended, then last.pt (save_last)."""
        self.settle()
        self._writes.close()
        if save_last:
            self.save(self.run_dir / "last.pt", "last")

    # ------------------------------------------------------------ writing

    def save(self, path: Path, reason: str, background: bool = False) -> str | None:
        """Write a checkpoint of this step boundary; returns its path (None: not written). background: a small
        state (STATE_COPY_MAX_BYTES) is serialized now, its file written while training goes on and reported
        when it lands."""
        if not self.writes:
            return None
        refusal = self._refusal()
        if refusal:
            self._not_saved(path, refusal, reason)
            return None
        self._collect_writes(wait=True)  # files land in the order they were asked for
        try:
            data = payload(self.run, reason)
            if background and self._small():
                trainer = data["trainer"]
                self._writes.submit(path, Serialized(checkpoints.serialize(data), trainer["epoch"], trainer["step"]),
                                    reason)
                return str(path)
            size = checkpoints.save_checkpoint(path, data)
        except Exception as error:  # out of memory while serializing, a disk error torch wrapped ...
            self._not_saved(path, save_error(error), reason)
            return None
        trainer = data["trainer"]
        self._saved(str(path), size, trainer["epoch"], trainer["step"], reason)
        return str(path)

    def _refusal(self) -> str:
        if not weights_finite(self.run.model):
            return "weights are not finite; the last good checkpoint is kept"
        if not self.loss_finite:
            return "the loss is not finite; the last good checkpoint is kept"
        return ""

    def _small(self) -> bool:
        return state_bytes(self.run.model, self.run.optimizer) <= STATE_COPY_MAX_BYTES

    def _saved(self, path: str, size: int, epoch: int, step: int, reason: str) -> None:
        self.last_checkpoint = path
        self.unsaved.pop(path, None)
        self.emit(CheckpointSaved(path, size, epoch, step, reason))
        if reason == "epoch" and self.folder is not None:
            # Only once the newer one is on disk; only the run's own, listed ones go.
            self.folder.prune_periodic(self.last_checkpoint, self.settings.keep_last)

    def _not_saved(self, path: str | Path, message: str, reason: str) -> None:
        self.unsaved[str(path)] = message
        self.emit(CheckpointFailed(str(path), message, reason))

    def _collect_writes(self, wait: bool = False) -> None:
        """Report the background write that has ended (wait: wait for the one under way)."""
        written = self._writes.finished(wait)
        if written is None:
            return
        if written.error is None:
            self._saved(written.path, written.size, written.epoch, written.step, written.reason)
        else:
            self._not_saved(written.path, written.error, written.reason)

    # ------------------------------------------------------------ best.pt

    def _save_best(self) -> None:
        path = self.run_dir / "best.pt"
        if time.monotonic() - self._best_written_at >= BEST_WRITE_INTERVAL_S or not self._small() \
                or not self.writes:
            self._pending_best = None
            if self.save(path, "best", background=True):
                self._best_written_at = time.monotonic()
            return
        if self._refusal():
            self.save(path, "best")  # says why it is not written
            return
        try:
            self._pending_best = checkpoints.snapshot(payload(self.run, "best"))
        except Exception as error:  # no memory for the copy (on a GPU, say)
            self._pending_best = None
            self._not_saved(path, save_error(error), "best")

    def _write_pending_best(self, background: bool = False) -> None:
        """Write the best checkpoint kept in memory, if any (see BEST_WRITE_INTERVAL_S); background: on the
        writer's thread."""
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
            self._not_saved(path, save_error(error), "best")
            return
        self._best_written_at = time.monotonic()
        self._saved(str(path), size, epoch, step, "best")
