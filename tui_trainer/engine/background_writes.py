"""Checkpoint writes off the training thread: the trainer hands over the checkpoint's bytes (serialized
on its own thread, see checkpoints.serialize) and goes on with its next steps while the file is written,
fsynced and renamed into place. The writer runs almost no Python, so it hardly competes with training for
the interpreter lock: it waits on the disk.

One write at a time: a new one waits for the last, so files land in the order they were asked for and at
most one copy of the state is held. The trainer collects what was written at its next step boundaries and
reports it then; it waits for the write under way before a pause, a synchronous save and the run's end.
One writer thread serves a whole run: starting a thread per write cost a tiny model's run more than the
write itself.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path

from tui_trainer.engine import checkpoints
from tui_trainer.text import printable


@dataclass(frozen=True)
class Written:
    """How one background write ended: size in bytes, or the one-line reason it failed."""

    path: str
    reason: str
    epoch: int
    step: int
    size: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Serialized:
    """A checkpoint in memory: its file's bytes (see checkpoints.serialize) and the step boundary they hold."""

    data: bytes | memoryview
    epoch: int
    step: int


@dataclass(frozen=True)
class _Write:
    path: Path
    checkpoint: Serialized
    reason: str


class BackgroundWrites:
    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._writes: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[Written] = queue.SimpleQueue()
        self._under_way = False

    def submit(self, path: Path, checkpoint: Serialized, reason: str) -> None:
        """Start writing a checkpoint to path. Call finished(wait=True) first: this waits for the
        write under way, whose result would otherwise be lost."""
        if self._under_way:
            raise RuntimeError("collect the write under way before starting another")
        if self._thread is None:
            # A daemon: the trainer closes it at the run's end (a stop, a signal and a quit all end the run
            # that way). An interpreter dying mid-write leaves the previous file whole: writes are atomic.
            self._thread = threading.Thread(target=self._write_each, name="checkpoint-writer", daemon=True)
            self._thread.start()
        self._under_way = True
        self._writes.put(_Write(path, checkpoint, reason))

    def finished(self, wait: bool = False) -> Written | None:
        """How the write under way ended, once it has (waiting for it with wait=True); None if none has."""
        if not self._under_way:
            return None
        try:
            result = self._results.get(block=wait)
        except queue.Empty:
            return None
        self._under_way = False
        return result

    def close(self) -> None:
        """Let the writer thread end, once the write under way (if any) is on disk."""
        if self._thread is not None:
            self._writes.put(None)
            self._thread.join()
            self._thread = None

    def _write_each(self) -> None:
        while True:
            write = self._writes.get()
            if write is None:
                return
            result = self._write(write)
            del write  # its bytes (a whole model and optimizer state) are not kept until the next write
            self._results.put(result)

    @staticmethod
    def _write(write: _Write) -> Written:
        checkpoint = write.checkpoint
        done = {"path": str(write.path), "reason": write.reason, "epoch": checkpoint.epoch, "step": checkpoint.step}
        try:
            return Written(**done, size=checkpoints.save_checkpoint(write.path, checkpoint.data))
        except checkpoints.CheckpointError as error:
            return Written(**done, error=error.message)
        except Exception as error:  # reported like a failed save; the previous file is untouched
            text = str(error).strip()
            first = printable(text.splitlines()[0][:200]) if text else ""
            return Written(**done, error=f"not saved: {type(error).__name__}{': ' + first if first else ''}")
