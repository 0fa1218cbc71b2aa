"""The engine process of a run: a Trainer plus a control socket any number of apps attach to.

Events fan out to every attached client (each with its own queue and writer thread, so a slow client never
slows training); commands from any client go into the one Controls queue, so they apply in order.

Everything a client sends is data to check: a command goes on only when it fits its schema (engine.controls)
and a save's file name is one the user may have (engine.save_names); anything else is answered with an error
line to that client and ignored. What a client can cost is bounded: MAX_CLIENTS connections (two threads each),
lines of MAX_COMMAND_BYTES, and OUTBOX_LIMIT_BYTES of events waiting for a client that does not read (it is
dropped).

A run the app starts in its own engine process (the app's default) is *owned*: the first client to connect
is the app that started it, and when that connection ends without a `release` message (the app quit, was
killed, lost its terminal) the run saves last.pt and stops, as a run inside the app would. `release` (the
app's detach key) turns it into a detached run that goes on by itself.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import threading
import time
from pathlib import Path
from typing import Any

from tui_trainer.detached.protocol import (
    MAX_COMMAND_BYTES,
    RECORD_KINDS,
    BadLine,
    encode,
    error_line,
    read_messages,
    short_path,
)
from tui_trainer.engine.controls import CommandError, Controls, Save, command_from_dict
from tui_trainer.engine.events import Event, RunStarted, StateChanged
from tui_trainer.engine.save_names import save_path_problem
from tui_trainer.logs import get_logger
from tui_trainer.runs.registry import SOCKET_FILE

log = get_logger("detached")
RELEASE = "release"
"""Client to server: the owner lets go of an owned run; it goes on training by itself."""
READY = "ready"
"""Client to server: the owner shows the run; an owned run trains from then on (see wait_for_owner)."""
OWNER_WAIT_S = 60.0
"""An owned run whose app never connects (it died while the engine started) stops after this long."""
OWNER_POLL_S = 0.5
FLUSH_TIMEOUT_S = 2.0
"""At the end of a run: how long the clients' writers get to send the last events (RunFinished) before the
process exits and takes its daemon threads with it."""
MAX_CLIENTS = 16
"""Connections served at once; one more is told so and closed."""
OUTBOX_LIMIT_BYTES = 4 * 2**20
"""Events waiting for one client; a client further behind is dropped (it never reads, or reads too slowly)."""
LOGGED_REFUSALS = 10
"""Refused messages logged per client; past it, one line says the rest are not."""
REFUSE_TIMEOUT_S = 1.0


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as file:
            return sum(1 for _ in file)
    except OSError:
        return 0


class Client:
    """One connection: events go out through a queue and a writer thread of its own, so a client that reads
    slowly never blocks the training thread; past OUTBOX_LIMIT_BYTES queued, it is dropped."""

    def __init__(self, connection: socket.socket) -> None:
        self.connection = connection
        self.outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.queued_bytes = 0
        """Bytes queued and not yet sent; at most OUTBOX_LIMIT_BYTES (or one message, if larger)."""
        self.closed = threading.Event()
        self.refusals = 0
        self._lock = threading.Lock()
        self._finishing = False
        self._socket_closed = False
        self.writer = threading.Thread(target=self._write, name="client-writer", daemon=True)
        self.writer.start()

    def send(self, data: bytes) -> None:
        with self._lock:
            if self.closed.is_set() or self._finishing:
                return
            behind = self.queued_bytes
            if not behind or behind + len(data) <= OUTBOX_LIMIT_BYTES:
                self.queued_bytes += len(data)
                self.outbox.put(data)
                return
        log.warning("dropped a client that fell %d bytes behind the run's events (it does not read them)", behind)
        self.close()

    def _write(self) -> None:
        while True:
            data = self.outbox.get()
            if data is None:
                break
            try:
                self.connection.sendall(data)
            except OSError:
                break
            finally:
                with self._lock:
                    self.queued_bytes -= len(data)
        self.close()

    def finish(self) -> None:
        """Close after everything queued so far has been sent."""
        with self._lock:
            self._finishing = True
        self.outbox.put(None)

    def close(self) -> None:
        with self._lock:
            if self._socket_closed:
                return
            self._socket_closed = True
        self.closed.set()
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)  # wakes this client's reader and writer
        self.connection.close()


class EventHub:
    """Broadcasts engine events to attached clients, and greets each new one with where the run stands."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: list[Client] = []
        self.records = 0
        self.run_started: dict[str, Any] | None = None
        self.state: dict[str, Any] | None = None

    def publish(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, RunStarted):
                # Metric records already in metrics.jsonl (a resumed run's history).
                self.records = _count_lines(Path(event.run_dir) / "metrics.jsonl")
                self.run_started = {**event.to_dict(), "history": []}
            elif event.kind in RECORD_KINDS:
                self.records += 1
            elif isinstance(event, StateChanged):
                self.state = event.to_dict()
            self._clients = [client for client in self._clients if not client.closed.is_set()]
            if self._clients:
                data = encode(event.to_dict())
                for client in self._clients:
                    client.send(data)

    def has_room(self) -> bool:
        with self._lock:
            self._clients = [client for client in self._clients if not client.closed.is_set()]
            return len(self._clients) < MAX_CLIENTS

    def attach(self, client: Client) -> None:
        with self._lock:
            client.send(encode({"type": "hello", "records": self.records, "run_started": self.run_started,
                                "state": self.state, "pid": os.getpid()}))
            self._clients.append(client)

    def close(self, flush_timeout_s: float = FLUSH_TIMEOUT_S) -> None:
        """Send each client what is queued for it, then close it (waiting at most flush_timeout_s)."""
        with self._lock:
            clients, self._clients = self._clients, []
            for client in clients:
                client.finish()
        deadline = time.monotonic() + flush_timeout_s
        for client in clients:
            client.writer.join(max(0.0, deadline - time.monotonic()))


class ControlServer:
    """Listens on <run dir>/control.sock (mode 0600 in a 0700 folder: only the owner gets in)."""

    def __init__(self, run_dir: Path, hub: EventHub, controls: Controls, *, owned: bool = False,
                 on_release: Any = None, owner_wait_s: float = OWNER_WAIT_S, owner_pid: int | None = None) -> None:
        self.path = run_dir / SOCKET_FILE
        self.hub = hub
        self.controls = controls
        self.owned = owned
        """The run ends with its owner, the first client (see the module's docstring)."""
        self._owner: Client | None = None
        self._on_release = on_release
        self._owner_ready = threading.Event()
        self._owner_gone = threading.Event()
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket of a run that died in this folder
        previous_umask = os.umask(0o177)
        try:
            with short_path(self.path) as address:
                self._socket.bind(address)
        finally:
            os.umask(previous_umask)
        os.chmod(self.path, 0o600)
        self._inode = self.path.stat().st_ino
        self._socket.listen(8)
        self._stopping = False
        self._turned_away = 0
        threading.Thread(target=self._accept, name="control-accept", daemon=True).start()
        if owned:
            timer = threading.Timer(owner_wait_s, self._owner_never_came)
            timer.daemon = True
            timer.start()
        if owned and owner_pid:
            threading.Thread(target=self._watch_owner, args=(owner_pid,), name="owner-watch", daemon=True).start()

    def _accept(self) -> None:
        while not self._stopping:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            if not self.hub.has_room():
                self._turn_away(connection)
                continue
            client = Client(connection)
            if self.owned and self._owner is None:
                self._owner = client
            self.hub.attach(client)
            threading.Thread(target=self._read_commands, args=(client,), name="control-reader", daemon=True).start()

    def _turn_away(self, connection: socket.socket) -> None:
        self._turned_away += 1
        if self._turned_away % 100 == 1:  # one line, not one per attempt of a client that keeps trying
            log.warning("refused a connection (%d so far): %d clients are attached already", self._turned_away,
                        MAX_CLIENTS)
        connection.settimeout(REFUSE_TIMEOUT_S)
        with contextlib.suppress(OSError):
            connection.sendall(error_line(f"this run serves {MAX_CLIENTS} connections at once and has them all; "
                                          "close one (another app or `tui-trainer attach`) and try again"))
        connection.close()

    def _read_commands(self, client: Client) -> None:
        for message in read_messages(client.connection, MAX_COMMAND_BYTES):
            problem = self._serve(client, message)
            if problem:
                self._refuse(client, problem)
        client.finish()
        if self.owned and client is self._owner and not self._stopping:
            self._owner_left()

    def _serve(self, client: Client, message: dict[str, Any] | BadLine) -> str:
        """Act on one message from client; returns why it was refused, or ""."""
        if isinstance(message, BadLine):
            return message.problem
        kind = message.get("type")
        if kind in (RELEASE, READY):
            if len(message) > 1:
                return f"{kind} takes no fields; given {sorted(message)!r}"[:300]
            if client is not self._owner:
                return f"{kind}: only the app that started this run may send it"
            if kind == RELEASE:
                self._release()
            else:
                self._owner_ready.set()
            return ""
        try:
            command = command_from_dict(message)
        except CommandError as error:
            return str(error)
        if isinstance(command, Save) and command.path is not None:
            problem = save_path_problem(command.path)
            if problem:
                return problem
        try:
            self.controls.send(command)
        except CommandError as error:
            return str(error)
        return ""

    def _refuse(self, client: Client, problem: str) -> None:
        client.refusals += 1
        if client.refusals <= LOGGED_REFUSALS:
            log.warning("refused a message from a client: %s", problem)
            if client.refusals == LOGGED_REFUSALS:
                log.warning("further refusals for this client are not logged")
        client.send(error_line(f"refused: {problem}; the run goes on"))

    def _release(self) -> None:
        if self.owned:
            self.owned = False
            if self._on_release is not None:
                self._on_release()

    def _watch_owner(self, pid: int) -> None:
        """The app may die before it connects (killed, or a signal while the engine was starting)."""
        import psutil

        while self.owned and not self._stopping:
            if not psutil.pid_exists(pid):
                self._owner_left()
                return
            time.sleep(OWNER_POLL_S)

    def _owner_left(self) -> None:
        self._owner_gone.set()
        self.controls.stop(save=True, reason="the app that started it went away")

    def _owner_never_came(self) -> None:
        if self.owned and self._owner is None and not self._stopping:
            self._owner_gone.set()
            self.controls.stop(save=True, reason="the app that started it never connected")

    def wait_for_owner(self) -> None:
        """Before an owned run's first step: wait until its app shows it (so the first steps do not compete
        with the app's start-up, and none trains unseen), or has gone (the stop is queued already)."""
        while self.owned and not self._owner_ready.wait(0.1) and not self._owner_gone.is_set():
            if self.controls.has_pending():
                return  # a command came first (a stop while the app starts up): the trainer serves it

    def close(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._socket.close()
        # Only our own: a run resumed from its own last.pt continues in this folder, and its engine may
        # have bound the path anew while this one was still ending.
        with contextlib.suppress(OSError):
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()



