"""An engine process started before the user starts a run, so that starting it is only telling it what to train.

Importing torch and what a run needs takes seconds (torch, then torch._dynamo, which every optimizer step
imports); the app starts this pair of processes when its setup screen opens, and they import all that while
the user is still choosing. Ctrl+r then hands them the run (detached.launcher.start_engine).

The two processes are those of any engine the app starts (detached.launcher): a supervisor in a session of its
own, and its engine child, both run with `python -P`. Until they are handed a run they hold nothing: no run
folder, no file, no socket anyone could connect to, and nothing trains. They are told what to train through one
end of a socket pair the supervisor inherited from the app, the only way to reach them: one message (the whole
Launch, as for a cold start) with two descriptors, the run folder's record (its lock, which the supervisor then
holds for the run's life, as if inherited) and the engine log (their output from then on). The kernel stamps each
message with its sender's process id (SO_PASSCRED), and a message from any process but the app is ignored. The
supervisor passes the run on to its engine the same way (checked against its parent), and from then on each does
what a cold-started one does: the engine hosts the run (launcher.serve; runs.host sizes its threads), the
supervisor watches it (launcher.watch_engine).

When the app goes (quits, is killed) its end of the pair closes: the supervisor kills its idle engine and exits,
leaving nothing behind; if the supervisor is killed, the engine's end closes and it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui_trainer.detached.launcher import ENGINE_ENV, Launch, _python, ignore_hang_up, serve, watch_engine

if TYPE_CHECKING:
    from tui_trainer.runs.folder import RunFolder

MAX_MESSAGE_BYTES = 64 * 1024
"""The largest hand-over (a launch is a few kilobytes); a larger one starts cold."""
HAND_OVER_FDS = 2
"""The run folder's record and the engine log."""
CLOSE_WAIT_S = 5.0
"""How long closing an idle warm engine waits for its processes to end."""
POLL_S = 0.5
"""How often the idle supervisor checks that its engine is still alive."""
_UCRED = struct.Struct("3i")
"""struct ucred: pid, uid, gid."""
_ANCILLARY_BYTES = socket.CMSG_SPACE(_UCRED.size) + socket.CMSG_SPACE(HAND_OVER_FDS * 4) \
    if hasattr(socket, "CMSG_SPACE") else 0


def available() -> bool:
    """This platform can stamp a message with its sender (Linux); elsewhere every engine starts cold."""
    return all(hasattr(socket, name) for name in ("SO_PASSCRED", "SCM_CREDENTIALS", "SOCK_SEQPACKET",
                                                    "send_fds", "MSG_CMSG_CLOEXEC"))


def import_run_modules() -> None:
    """Import what any in-memory run needs before its first step, and nothing that fixes how it runs (no torch
    operation runs: its thread counts are still the run's host's to set)."""
    import torch
    import torch._dynamo  # noqa: F401  (every optimizer step imports it: as long as torch itself, here)

    import tui_trainer.catalog.datasets
    import tui_trainer.catalog.losses
    import tui_trainer.catalog.models
    import tui_trainer.catalog.optimizers
    import tui_trainer.catalog.sklearn_files
    import tui_trainer.detached.server
    import tui_trainer.engine.trainer
    import tui_trainer.runs.folder
    import tui_trainer.runs.host  # noqa: F401


def import_in_background() -> threading.Thread:
    """For a run in the app's own thread (--in-thread): the same imports, in a thread, while the user chooses."""

    def work() -> None:
        with contextlib.suppress(Exception):  # a broken install says so when the run starts
            import_run_modules()

    thread = threading.Thread(target=work, name="warm-up imports", daemon=True)
    thread.start()
    return thread


# ---------------------------------------------------------------- the channel


def _channel_pair() -> tuple[socket.socket, socket.socket]:
    """Ours and the child's end; the child's stamps what it receives with the sender (set before it is passed
    on, so no message can come before it)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    return ours, theirs


def _send(channel: socket.socket, message: dict[str, Any], fds: list[int]) -> None:
    data = json.dumps(message).encode()
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"a hand-over of {len(data)} bytes")
    socket.send_fds(channel, [data], fds)


class Received:
    """One message: its sender's process id, its JSON object (None if it is not one) and the descriptors it
    carried (this process owns them now)."""

    def __init__(self, sender: int | None, message: dict[str, Any] | None, fds: list[int]) -> None:
        self.sender, self.message, self.fds = sender, message, fds

    def close_fds(self) -> None:
        for descriptor in self.fds:
            with contextlib.suppress(OSError):
                os.close(descriptor)


def _receive(channel: socket.socket) -> Received | None:
    """The next message; None once the other end has closed."""
    data, ancillary, flags, _ = channel.recvmsg(MAX_MESSAGE_BYTES + 1, _ANCILLARY_BYTES, socket.MSG_CMSG_CLOEXEC)
    sender, fds = None, []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += list(struct.unpack(f"{len(payload) // 4}i", payload[:len(payload) // 4 * 4]))
        elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(payload) >= _UCRED.size:
            sender = _UCRED.unpack(payload[:_UCRED.size])[0]
    if not data and not ancillary:  # an empty message still carries its sender; the end carries nothing
        return None
    message = None
    if len(data) <= MAX_MESSAGE_BYTES and not flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        with contextlib.suppress(ValueError):
            decoded = json.loads(data)
            message = decoded if isinstance(decoded, dict) else None
    return Received(sender, message, fds)


def _receive_from(channel: socket.socket, sender: int, alive: Callable[[], bool] | None = None) -> Received | None:
    """The first well-formed hand-over from `sender`, ignoring anything else; None once the channel has closed
    (or `alive()` says to give up)."""
    while True:
        if alive is not None:
            ready, _, _ = select.select([channel], [], [], POLL_S)
            if not ready:
                if not alive():
                    return None
                continue
        received = _receive(channel)
        if received is None:
            return None
        if received.sender == sender and _well_formed(received):
            return received
        received.close_fds()
        _log_refusal(received, sender)


def _log_refusal(received: Received, sender: int) -> None:
    """Into the app's log (opened only now: an idle warm engine holds no file)."""
    from tui_trainer.logs import get_logger, setup_file_logging

    setup_file_logging()
    what = "a message from another process" if received.sender != sender else "a malformed message"
    get_logger("warm-engine").warning("ignored %s (process %s; only process %d may hand it a run)", what,
                                      received.sender, sender)


def _well_formed(received: Received) -> bool:
    message = received.message
    return (message is not None and isinstance(message.get("run_dir"), str) and isinstance(message.get("launch"), dict)
            and isinstance(message.get("env"), dict)
            and all(isinstance(key, str) and isinstance(value, str) for key, value in message["env"].items()))


# ---------------------------------------------------------------- the app's side


class WarmEngine:
    """The app's handle on a warm supervisor and engine: `hand_over` a run once, or `close`."""

    def __init__(self, supervisor: subprocess.Popen, channel: socket.socket) -> None:
        self.supervisor = supervisor
        self._channel: socket.socket | None = channel

    @classmethod
    def start(cls) -> WarmEngine:
        ours, theirs = _channel_pair()
        try:
            supervisor = subprocess.Popen(
                [*_python("tui_trainer.detached.warm_engine"), "supervise", "--channel-fd", str(theirs.fileno()),
                 "--owner-pid", str(os.getpid())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, close_fds=True, pass_fds=(theirs.fileno(),), env={**os.environ, **ENGINE_ENV},
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return cls(supervisor, ours)

    @property
    def idle(self) -> bool:
        """Not handed a run yet, and its supervisor is alive."""
        return self._channel is not None and self.supervisor.poll() is None

    def hand_over(self, run_dir: Path, launch: Launch, folder: RunFolder, log_fd: int) -> subprocess.Popen | None:
        """Give it the run (its folder made and its log opened by the caller); the supervisor's Popen, for the
        caller to watch as it would a cold-started one. None if it cannot take it (torchrun's processes, or the
        processes are gone): the caller starts the run cold."""
        channel, self._channel = self._channel, None
        if channel is None or launch.hosting.processes != 1 or self.supervisor.poll() is not None:
            if channel is not None:
                self._close(channel)
            return None
        try:
            _send(channel, {"run_dir": str(run_dir), "launch": launch.to_dict(), "env": folder.child_env()},
                  [*folder.child_fds(), log_fd])
        except (OSError, ValueError):
            self._close(channel)
            return None
        channel.close()
        return self.supervisor

    def close(self) -> None:
        """End it unused: its processes go (the supervisor kills its engine) and nothing is left behind."""
        channel, self._channel = self._channel, None
        if channel is not None:
            self._close(channel)

    def _close(self, channel: socket.socket) -> None:
        channel.close()  # the supervisor reads the end of its channel and ends its engine
        try:
            self.supervisor.wait(CLOSE_WAIT_S)
        except subprocess.TimeoutExpired:
            self.supervisor.kill()
            self.supervisor.wait()


# ---------------------------------------------------------------- the supervisor and the engine


def run_supervisor(channel: socket.socket, owner_pid: int) -> int:
    """The warm supervisor: start the engine, wait for the app's hand-over, pass it on, watch the engine."""
    ignore_hang_up()
    to_engine, engine_end = _channel_pair()
    engine = subprocess.Popen(
        [*_python("tui_trainer.detached.warm_engine"), "engine", "--channel-fd", str(engine_end.fileno())],
        stdin=subprocess.DEVNULL, close_fds=True, pass_fds=(engine_end.fileno(),),
    )
    engine_end.close()
    received = _receive_from(channel, owner_pid, alive=lambda: engine.poll() is None)
    channel.close()
    if received is None:  # the app went (or the engine died) before it had a run: nothing was made
        engine.kill()
        engine.wait()
        return 0
    if len(received.fds) != HAND_OVER_FDS:
        received.close_fds()
        engine.kill()
        return 1
    log_fd = received.fds[1]  # fds[0], the run folder's record, stays open: it holds the lock for the run's life
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    assert received.message is not None
    run_dir = Path(received.message["run_dir"])
    try:
        _send(to_engine, received.message, [log_fd])
    except OSError as error:
        print(f"tui-trainer: error: the warm engine process is gone ({error.strerror or error})", file=sys.stderr,
              flush=True)
        engine.kill()
        engine.wait()
        return 1
    finally:
        to_engine.close()
        os.close(log_fd)
    return watch_engine(run_dir, engine)


def run_engine(channel: socket.socket) -> int:
    """The warm engine: import what a run needs, wait for its supervisor's hand-over, host that run."""
    import_run_modules()
    received = _receive_from(channel, os.getppid())
    channel.close()
    if received is None:
        return 0
    if len(received.fds) != 1:
        received.close_fds()
        return 1
    assert received.message is not None
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(received.fds[0], 1)
    os.dup2(received.fds[0], 2)
    os.close(received.fds[0])
    os.environ.update(received.message["env"])  # the run folder is held for it by its supervisor
    return serve(Path(received.message["run_dir"]), Launch.from_dict(received.message["launch"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tui_trainer.detached.warm_engine")
    parser.add_argument("role", choices=["supervise", "engine"])
    parser.add_argument("--channel-fd", type=int, required=True)
    parser.add_argument("--owner-pid", type=int)
    args = parser.parse_args(argv)
    channel = socket.socket(fileno=args.channel_fd)
    if args.role == "supervise":
        return run_supervisor(channel, args.owner_pid)
    return run_engine(channel)


if __name__ == "__main__":
    sys.exit(main())
