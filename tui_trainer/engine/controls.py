"""Commands into a running Trainer, from any thread (or, as JSON, from another process).

The training loop looks at `has_pending()` once per step (one flag read) and applies the commands at
that step boundary, so a checkpoint is always consistent. While paused it blocks in `wait()`.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Command:
    kind: ClassVar[str] = "command"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class Pause(Command):
    kind: ClassVar[str] = "pause"


@dataclass(frozen=True)
class Resume(Command):
    kind: ClassVar[str] = "resume"


@dataclass(frozen=True)
class Stop(Command):
    kind: ClassVar[str] = "stop"
    save: bool = True
    """Write last.pt before stopping."""
    reason: str = ""


@dataclass(frozen=True)
class SetHyperparameters(Command):
    kind: ClassVar[str] = "set_hyperparameters"
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float | None = None

    def changes(self) -> dict[str, float]:
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}


@dataclass(frozen=True)
class Save(Command):
    kind: ClassVar[str] = "save"
    path: str | None = None
    """Where to write; None: <run dir>/manual-e<epoch>-s<step>.pt."""


COMMAND_TYPES: dict[str, type[Command]] = {cls.kind: cls for cls in (Pause, Resume, Stop, SetHyperparameters, Save)}


def command_from_dict(data: dict[str, Any]) -> Command:
    data = dict(data)
    return COMMAND_TYPES[data.pop("type")](**data)


class Controls:
    """A thread-safe mailbox of commands for one Trainer."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._pending = threading.Event()

    def send(self, command: Command) -> None:
        self._queue.put(command)
        self._pending.set()

    def pause(self) -> None:
        self.send(Pause())

    def resume(self) -> None:
        self.send(Resume())

    def stop(self, save: bool = True, reason: str = "") -> None:
        self.send(Stop(save=save, reason=reason))

    def save(self, path: str | None = None) -> None:
        self.send(Save(path=path))

    def set_hyperparameters(self, lr: float | None = None, weight_decay: float | None = None,
                            momentum: float | None = None) -> None:
        self.send(SetHyperparameters(lr=lr, weight_decay=weight_decay, momentum=momentum))

    def has_pending(self) -> bool:
        return self._pending.is_set()

    def drain(self) -> list[Command]:
        self._pending.clear()
        commands = []
        while True:
            try:
                commands.append(self._queue.get_nowait())
            except queue.Empty:
                return commands

    def wait(self, timeout: float) -> Command | None:
        """Block (no CPU) until a command arrives or timeout seconds pass."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
