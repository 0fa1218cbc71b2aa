"""Commands into a running Trainer, from any thread (or, as JSON, from another process).

The training loop looks at `has_pending()` once per step (one flag read) and applies the commands at
that step boundary, so a checkpoint is always consistent. While paused it blocks in `wait()`.

A command that comes as JSON (the control socket) is validated by `command_from_dict` against the
commands' own field types; a hyperparameter takes the bounds the preset has for it (config.OptimizerConfig).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import ConfigDict, Field, Strict, TypeAdapter, ValidationError

from tui_trainer.config import OptimizerConfig

MAX_REASON_CHARS = 1000
"""A stop's reason is shown in a status line; Controls.stop shortens a longer one (it may name a path)."""
MAX_PATH_CHARS = 4096


class CommandError(ValueError):
    """A command that cannot be applied. str() is one line naming the command, the field and what is allowed."""


def _tunable(name: str) -> Any:
    """A live-tunable hyperparameter's type: a finite number within the preset's bounds for it."""
    return Annotated[(float, Strict(), *OptimizerConfig.model_fields[name].metadata)]


Lr = _tunable("lr")
WeightDecay = _tunable("weight_decay")
Momentum = _tunable("momentum")
Reason = Annotated[str, Strict(), Field(max_length=MAX_REASON_CHARS)]
SavePath = Annotated[str, Strict(), Field(min_length=1, max_length=MAX_PATH_CHARS)]
Flag = Annotated[bool, Strict()]


@dataclass(frozen=True)
class Command:
    kind: ClassVar[str] = "command"
    __pydantic_config__ = ConfigDict(extra="forbid", allow_inf_nan=False)

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
    save: Flag = True
    """Write last.pt before stopping."""
    reason: Reason = ""


@dataclass(frozen=True)
class SetHyperparameters(Command):
    kind: ClassVar[str] = "set_hyperparameters"
    lr: Lr | None = None
    weight_decay: WeightDecay | None = None
    momentum: Momentum | None = None

    def changes(self) -> dict[str, float]:
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}


@dataclass(frozen=True)
class Save(Command):
    kind: ClassVar[str] = "save"
    path: SavePath | None = None
    """Where to write; None: <run dir>/manual-e<epoch>-s<step>.pt. Its name follows engine.save_names."""
    overwrite: Flag = False
    """Replace a file already at path (the save panel asks first); without it an existing file is kept."""


COMMAND_TYPES: dict[str, type[Command]] = {cls.kind: cls for cls in (Pause, Resume, Stop, SetHyperparameters, Save)}


LIVE_TUNABLE_BOUNDS = {"lr": Lr, "weight_decay": WeightDecay, "momentum": Momentum}
"""The hyperparameters a command may change, each with its preset's bounds."""
_ADAPTERS: dict[str, TypeAdapter[Any]] = {kind: TypeAdapter(cls) for kind, cls in COMMAND_TYPES.items()}
_SHOWN_CHARS = 60


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int of more digits than Python writes out
        return "a number too long to show"
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _fields(cls: type[Command]) -> str:
    return ", ".join(field.name for field in dataclasses.fields(cls)) or "none"


def _problem(kind: str, error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    cls = COMMAND_TYPES[kind]
    if first["type"] == "unexpected_keyword_argument":
        return f"{kind}: unknown field {where!r}; allowed: {_fields(cls)}"
    name = first["loc"][0] if first["loc"] else ""
    allowed = f"; allowed: {allowed_values(str(name))}" if name in LIVE_TUNABLE_BOUNDS else ""
    return f"{kind}.{where}: {first['msg'][:1].lower()}{first['msg'][1:]}; given {_short(first.get('input'))}{allowed}"


def command_from_dict(data: Any) -> Command:
    """The command a JSON object describes, checked field by field; raises CommandError (one line)."""
    if not isinstance(data, dict):
        raise CommandError(f"a command is a JSON object; given {type(data).__name__}")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in COMMAND_TYPES:
        raise CommandError(f"unknown command type {_short(kind)}; allowed: {', '.join(COMMAND_TYPES)}")
    fields = {key: value for key, value in data.items() if key != "type"}
    try:
        command = _ADAPTERS[kind].validate_python(fields)
    except ValidationError as error:
        raise CommandError(_problem(kind, error)) from None
    except RecursionError:
        raise CommandError(f"{kind}: nested too deeply") from None
    if isinstance(command, SetHyperparameters) and not command.changes():
        raise CommandError(f"set_hyperparameters: nothing to change; give one or more of {_fields(SetHyperparameters)}")
    return command


_SYMBOLS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))


def allowed_values(name: str) -> str:
    """What a live-tunable hyperparameter may be set to, in words: "a number > 0 and <= 100"."""
    limits = [f"{symbol} {getattr(bound, attribute):g}" for bound in OptimizerConfig.model_fields[name].metadata
              for attribute, symbol in _SYMBOLS if hasattr(bound, attribute)]
    return "a number " + " and ".join(limits) if limits else "a finite number"


def hyperparameter_problem(name: str, value: Any) -> str:
    """Why value cannot be the new value of a live-tunable hyperparameter ("" when it can): the preset's bounds."""
    if name not in LIVE_TUNABLE_BOUNDS:
        return f"{name} cannot change while a run trains; allowed: {', '.join(LIVE_TUNABLE_BOUNDS)}"
    try:
        command_from_dict({"type": SetHyperparameters.kind, name: value})
    except CommandError:
        return f"{name}: given {_short(value)}; allowed: {allowed_values(name)}"
    return ""


MAX_WAITING_COMMANDS = 1000
"""Commands queued for the next step boundary beyond which more are refused (a client flooding the socket)."""


def checked(command: Command) -> Command:
    """command, validated as if it had come as JSON: a dataclass built in this process is not checked when it is
    made, and every way into a run takes the same bounds. Raises CommandError."""
    return command_from_dict(command.to_dict())


class Controls:
    """A thread-safe mailbox of commands for one Trainer."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._pending = threading.Event()

    def send(self, command: Command) -> None:
        """Queue a command for the next step boundary; raises CommandError for a bad one, or when
        MAX_WAITING_COMMANDS are already waiting."""
        checked(command)
        if self._queue.qsize() >= MAX_WAITING_COMMANDS:
            raise CommandError(f"{command.kind}: {MAX_WAITING_COMMANDS} commands are already waiting for the next "
                               "step; try again in a moment")
        self._queue.put(command)
        self._pending.set()

    def pause(self) -> None:
        self.send(Pause())

    def resume(self) -> None:
        self.send(Resume())

    def stop(self, save: bool = True, reason: str = "") -> None:
        self.send(Stop(save=save, reason=reason[:MAX_REASON_CHARS]))

    def save(self, path: str | None = None, overwrite: bool = False) -> None:
        self.send(Save(path=path, overwrite=overwrite))

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
