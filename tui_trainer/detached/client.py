"""Talking to a detached run: attach, send commands, read its events and history.

What the server sends is checked before the app sees it: the hello must hold what it says, and an event must
have its fields' types (a malformed one is skipped). An `error` line (a command the run refused) comes out as
a Warning event.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from tui_trainer.detached.protocol import ERROR, encode, read_lines, short_path
from tui_trainer.engine.controls import Command
from tui_trainer.engine.events import EVENT_TYPES, Event, RunStarted, StateChanged, Warning
from tui_trainer.engine.metrics import read_metrics
from tui_trainer.errors import EXIT_FAILED, UserError
from tui_trainer.runs.registry import RunInfo, effective_state
from tui_trainer.text import printable

MAX_SHOWN_ERROR_CHARS = 500
_EVENTS: dict[str, TypeAdapter[Any]] = {kind: TypeAdapter(cls) for kind, cls in EVENT_TYPES.items()}


class RunUnavailable(UserError):
    """The run has no live control socket (finished, stopped, lost, or never detached)."""

    exit_code = EXIT_FAILED


class Hello(BaseModel):
    """The server's first message: where the run stands."""

    model_config = ConfigDict(extra="ignore", strict=True)
    type: str
    records: int = Field(ge=0)
    run_started: dict[str, Any] | None = None
    state: dict[str, Any] | None = None
    pid: int | None = Field(None, ge=1)


def _error_text(message: dict[str, Any]) -> str:
    text = message.get("message")
    return printable(text)[:MAX_SHOWN_ERROR_CHARS] if isinstance(text, str) else "(no message)"


def parse_event(message: dict[str, Any]) -> Event | None:
    """The event a server's message holds, with its fields' types checked; an error line becomes a Warning;
    None for anything else."""
    kind = message.get("type")
    if kind == ERROR:
        return Warning(_error_text(message))
    adapter = _EVENTS.get(kind) if isinstance(kind, str) else None
    if adapter is None:
        return None
    try:
        return adapter.validate_python({key: value for key, value in message.items() if key != "type"})
    except (ValidationError, RecursionError):
        return None


def clean_stale_socket(info: RunInfo) -> bool:
    """Remove the socket of a run whose engine is gone; returns whether one was removed. Only a socket of this
    user's is removed: a file of another kind at that name, or another user's socket, is left alone."""
    if effective_state(info) in ("starting", "running", "paused", "stopping"):
        return False
    path = info.socket_path
    try:
        found = path.lstat()
        if not stat.S_ISSOCK(found.st_mode) or found.st_uid != os.getuid():
            return False
        path.unlink()
        return True
    except FileNotFoundError:
        return False
    except OSError:
        return False


class RunClient:
    """One connection to a detached run. `hello` says where the run stands; `events()` yields what follows."""

    def __init__(self, info: RunInfo, timeout_s: float = 5.0) -> None:
        self.info = info
        path = info.socket_path
        state = effective_state(info)
        if state not in ("starting", "running", "paused", "stopping"):
            clean_stale_socket(info)
            raise RunUnavailable(f"run {printable(info.run_id)} is {state}; nothing to attach to")
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.settimeout(timeout_s)
        try:
            with short_path(path) as address:
                self._socket.connect(address)
        except (FileNotFoundError, ConnectionRefusedError, TimeoutError, OSError) as error:
            self._socket.close()
            if isinstance(error, (FileNotFoundError, ConnectionRefusedError)) and clean_stale_socket(info):
                raise RunUnavailable(f"run {printable(info.run_id)}: its engine is gone (removed a stale socket)") \
                    from None
            raise RunUnavailable(f"run {printable(info.run_id)}: cannot connect to {printable(path)}: {error}") \
                from None
        self._lines = read_lines(self._socket)
        self._send_lock = threading.Lock()
        first = next(self._lines, None)
        self._socket.settimeout(None)
        try:
            self.hello: dict[str, Any] = self._check_hello(first)
        except RunUnavailable:
            self.close()
            raise

    def _check_hello(self, message: dict[str, Any] | None) -> dict[str, Any]:
        run_id = printable(self.info.run_id)
        if message and message.get("type") == ERROR:
            raise RunUnavailable(f"run {run_id}: {_error_text(message)}")
        if not message or message.get("type") != "hello":
            raise RunUnavailable(f"run {run_id}: the engine did not answer")
        malformed = RunUnavailable(f"run {run_id}: the engine's greeting is malformed")
        try:
            hello = Hello.model_validate(message)
        except ValidationError:
            raise malformed from None
        for fields, cls in ((hello.run_started, RunStarted), (hello.state, StateChanged)):
            if fields is not None and not isinstance(parse_event({**fields, "type": cls.kind}), cls):
                raise malformed
        return hello.model_dump()

    def send(self, command: Command) -> bool:
        try:
            with self._send_lock:
                self._socket.sendall(encode(command.to_dict()))
            return True
        except OSError:
            return False

    def release(self) -> bool:
        """Let go of a run this app owns: it goes on training after the connection closes."""
        return self._send_message({"type": "release"})

    def ready(self) -> bool:
        """The app that owns the run shows it: the run may start training."""
        return self._send_message({"type": "ready"})

    def _send_message(self, message: dict[str, Any]) -> bool:
        try:
            with self._send_lock:
                self._socket.sendall(encode(message))
            return True
        except OSError:
            return False

    def history(self) -> list[dict[str, Any]]:
        """The metric records written before this client attached, from metrics.jsonl."""
        return read_metrics(Path(self.info.run_dir) / "metrics.jsonl")[: self.hello["records"]]

    def initial_events(self) -> list[Event]:
        """What to replay before live events: RunStarted (with the history) and the current state."""
        events: list[Event] = []
        started = self.hello.get("run_started")
        if started:
            # A history that does not fit the event's schema (a damaged metrics.jsonl) is left out.
            event = parse_event({**started, "history": self.history(), "type": RunStarted.kind})
            events.append(event or parse_event({**started, "type": RunStarted.kind}))
        if self.hello.get("state"):
            event = parse_event({**self.hello["state"], "type": StateChanged.kind})
            if event is not None:
                events.append(event)
        return events

    def events(self) -> Iterator[Event]:
        for message in self._lines:
            event = parse_event(message)
            if event is not None:
                yield event

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
