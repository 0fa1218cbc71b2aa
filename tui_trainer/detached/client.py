"""Talking to a detached run: attach, send commands, read its events and history."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tui_trainer.detached.protocol import encode, read_lines, short_path
from tui_trainer.engine.controls import Command
from tui_trainer.engine.events import Event, event_from_dict
from tui_trainer.engine.metrics import read_metrics
from tui_trainer.engine.runinfo import RunInfo, effective_state


class RunUnavailable(Exception):
    """The run has no live control socket (finished, stopped, lost, or never detached)."""


def clean_stale_socket(info: RunInfo) -> bool:
    """Remove the socket of a run whose engine is gone; returns whether one was removed."""
    if effective_state(info) in ("starting", "running", "paused", "stopping"):
        return False
    try:
        info.socket_path.unlink()
        return True
    except FileNotFoundError:
        return False


class RunClient:
    """One connection to a detached run. `hello` says where the run stands; `events()` yields what follows."""

    def __init__(self, info: RunInfo, timeout_s: float = 5.0) -> None:
        self.info = info
        path = info.socket_path
        state = effective_state(info)
        if state not in ("starting", "running", "paused", "stopping"):
            clean_stale_socket(info)
            raise RunUnavailable(f"run {info.run_id} is {state}; nothing to attach to")
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.settimeout(timeout_s)
        try:
            with short_path(path) as address:
                self._socket.connect(address)
        except (FileNotFoundError, ConnectionRefusedError, TimeoutError, OSError) as error:
            self._socket.close()
            if isinstance(error, (FileNotFoundError, ConnectionRefusedError)) and clean_stale_socket(info):
                raise RunUnavailable(f"run {info.run_id}: its engine is gone (removed a stale socket)") from None
            raise RunUnavailable(f"run {info.run_id}: cannot connect to {path}: {error}") from None
        self._lines = read_lines(self._socket)
        self._send_lock = threading.Lock()
        hello = next(self._lines, None)
        self._socket.settimeout(None)
        if not hello or hello.get("type") != "hello":
            self.close()
            raise RunUnavailable(f"run {info.run_id}: the engine did not answer")
        self.hello: dict[str, Any] = hello

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
            events.append(event_from_dict({**started, "history": self.history()}))
        if self.hello.get("state"):
            events.append(event_from_dict(self.hello["state"]))
        return events

    def events(self) -> Iterator[Event]:
        for message in self._lines:
            try:
                yield event_from_dict(message)
            except (KeyError, TypeError):
                continue

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
