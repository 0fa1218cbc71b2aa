"""Checkpoint writes off the training thread: the trainer hands over a copy of the payload and goes on
with its next steps while the file is written, fsynced and renamed into place.

One write at a time: a new one waits for the last, so files land in the order they were asked for and at
most one copy of the state is held. The trainer collects what was written at its next step boundaries and
reports it then; it waits for the write under way before a pause, a synchronous save and the run's end.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui_trainer.engine import checkpoints


@dataclass(frozen=True)
class Written:
    """How one background write ended: size in bytes, or the one-line reason it failed."""

    path: str
    reason: str
    epoch: int
    step: int
    size: int | None = None
    error: str | None = None


class BackgroundWrites:
    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._result: Written | None = None

    def submit(self, path: Path, payload: dict[str, Any], reason: str) -> None:
        """Start writing payload (a copy no step will change) to path. Call finished(wait=True) first: this
        waits for the write under way, whose result would otherwise be lost."""
        if self._thread is not None:
            raise RuntimeError("collect the write under way before starting another")
        epoch, step = payload["trainer"]["epoch"], payload["meta"]["step"]

        def write() -> None:
            try:
                size = checkpoints.save_checkpoint(path, payload)
            except checkpoints.CheckpointError as error:
                self._result = Written(str(path), reason, epoch, step, error=error.message)
            except Exception as error:  # reported like a failed save; the previous file is untouched
                self._result = Written(str(path), reason, epoch, step, error=f"not saved: {error}")
            else:
                self._result = Written(str(path), reason, epoch, step, size=size)

        # Not a daemon: an interpreter that exits lets the write land first.
        self._thread = threading.Thread(target=write, name="checkpoint-writer")
        self._thread.start()

    def finished(self, wait: bool = False) -> Written | None:
        """How the write under way ended, once it has (waiting for it with wait=True); None if none has."""
        thread = self._thread
        if thread is None or (not wait and thread.is_alive()):
            return None
        thread.join()
        self._thread = None
        result, self._result = self._result, None
        return result
