"""A run in another process under the app (the app's own engine process, or a detached run): its events come
from the run's control socket, its commands go back over it.

The worker thread only relays: it connects, queues the replay (RunStarted with the whole history, the
current state), then every live event, and ends when the socket closes. All socket reads happen in that
thread; the UI thread only sends commands (a short write on a local socket) and may close the socket to
let go of the run, which keeps training.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui_trainer.detached.client import RunClient, RunUnavailable
from tui_trainer.detached.commands import run_command
from tui_trainer.engine.controls import Command, Controls
from tui_trainer.engine.events import RunFinished
from tui_trainer.runs.registry import LIVE_STATES, RunInfo, effective_state, read_run_info
from tui_trainer.ui.handle import RunHandle
from tui_trainer.ui.run_view import LogLine, RunView

if TYPE_CHECKING:
    from tui_trainer.engine.devices import DeviceMonitor

ENDING_WAIT_S = 5.0
"""After the socket closed without a RunFinished: how long to wait for run.json to say how the run
ended (the supervisor marks it lost, with the exit status, once the engine process is gone)."""
POLL_S = 0.1


def attach_command(run_dir: str | Path) -> str:
    """The shell command that attaches to this run again."""
    return run_command("attach", run_dir)


class SocketControls(Controls):
    """Controls whose commands go to a detached run over its socket, so every action that drives a
    run in this process drives a detached one unchanged. Commands given before the connection is made
    wait, and go first thing once it is."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._client: RunClient | None = None
        self._closed = False

    def send(self, command: Command) -> None:
        with self._lock:
            if self._client is not None:
                self._client.send(command)
            elif not self._closed:
                super().send(command)

    def connect(self, client: RunClient) -> None:
        with self._lock:
            for command in self.drain():
                client.send(command)
            self._client = client

    def disconnect(self) -> None:
        with self._lock:
            self._client = None
            self._closed = True
            self.drain()


class SocketHandle(RunHandle):
    """A run in another process (the app's own engine process, a detached or a headless run), reached
    through the control socket in its run folder. It can always go on without the app."""

    can_go_on_alone = True
    verb = "attach"

    def __init__(self, run_dir: str | Path, *, notify: Any, pause: bool = False, ends_with_app: bool = False) -> None:
        self._run_dir = str(run_dir)
        self.ends_with_app = ends_with_app
        """The app started this engine process for itself: the run ends with the app (saved), unless released."""
        known = read_run_info(self.run_dir)
        view = RunView(run_dir=self.run_dir, preset=known.preset if known else "",
                       epochs=known.epochs if known else 0, epoch=known.epoch if known else 0,
                       step=known.step if known else 0, total_steps=known.total_steps if known else 0)
        super().__init__(view, SocketControls(), notify=notify, paused=pause)
        if pause:
            self.controls.pause()
        self.run_id = known.run_id if known else Path(self.run_dir).name
        self.engine_pid: int | None = None
        """The engine's process (rank 0 under torchrun), from the socket's hello."""
        self.ending: RunInfo | None = None
        """When the socket closed without a RunFinished: run.json as last read (state lost, exit status)."""
        self._let_go = threading.Event()
        self._release_owned = False
        self._lock = threading.Lock()
        self._client: RunClient | None = None

    @property
    def name(self) -> str:
        return self.run_id

    @property
    def run_dir(self) -> str:
        return self._run_dir

    @property
    def checkpoint_dir(self) -> str:
        return str(Path(self.run_dir).parent)

    @property
    def released(self) -> bool:
        return self._let_go.is_set()

    # ------------------------------------------------------------ worker thread

    def run(self) -> RunFinished | None:
        """Relay the run's events until its socket closes. A run that cannot be reached raises
        RunUnavailable (a one-line reason)."""
        thread = threading.current_thread()
        pool_name, thread.name = thread.name, f"trainer relay {self.run_id}"
        client: RunClient | None = None
        try:
            info = read_run_info(self.run_dir)
            if info is None:
                raise RunUnavailable(f"{self.run_dir}: no run.json here (not a run folder)")
            client = RunClient(info)
            with self._lock:
                if self.released:
                    if self._release_owned:
                        client.release()  # detached before the connection was made
                    return None
                self._client = client
            self.engine_pid = client.hello.get("pid") or info.pid
            self.controls.connect(client)
            for event in client.initial_events():
                self.on_event(event)
            for event in client.events():
                self.on_event(event)
                if isinstance(event, RunFinished):
                    self.result = event
                    break
            if self.result is None and not self.released:
                self.ending = self._how_it_ended()
            return self.result
        finally:
            self.controls.disconnect()
            if client is not None:
                client.close()
            thread.name = pool_name
            self._ended()

    def _how_it_ended(self) -> RunInfo | None:
        deadline = time.monotonic() + ENDING_WAIT_S
        info = read_run_info(self.run_dir)
        while info is not None and info.state in LIVE_STATES and time.monotonic() < deadline:
            if self._let_go.wait(POLL_S):
                return None
            info = read_run_info(self.run_dir)
        if info is not None:
            info.state = effective_state(info)
        return info

    # ------------------------------------------------------------ UI thread

    def release(self) -> None:
        """Let go of the run: close the socket (the relay ends at once); the run goes on training (a run
        the app owns is told so first, so it does not stop when the socket closes)."""
        with self._lock:
            self._release_owned, self.ends_with_app = self.ends_with_app, False
            self._let_go.set()
            client = self._client
        if client is not None:
            if self._release_owned:
                client.release()
            client.close()

    def shown(self) -> None:
        """The dashboard shows a run the app owns: it may start training (it waits before its first step)."""
        with self._lock:
            client = self._client
        if client is not None and self.ends_with_app:
            client.ready()

    @property
    def waits_to_be_shown(self) -> bool:
        return self.ends_with_app

    def exit_wait_s(self, timeout_s: float) -> float:
        return timeout_s  # the relay ends when the socket closes: once saved, or at once when released

    def failed_state(self) -> str:
        info = read_run_info(self.run_dir)
        state = effective_state(info) if info is not None else "failed"
        return state if state not in LIVE_STATES else "failed"

    def ended_lines(self) -> list[LogLine]:
        """The socket closed: say why (released, finished, lost)."""
        view = self.view
        if self.released:
            return view.released() if view.active else []
        if self.result is not None:
            return []
        ending = self.ending
        if ending is None:
            return view.connection_ended("lost", "its run.json is gone")
        return view.connection_ended(ending.state, ending.reason, ending.exit_status, ending.last_checkpoint)

    def lost_because(self) -> str | None:
        """Why the run is lost, when its socket closed on a run that is lost."""
        ending = self.ending
        if ending is None or ending.state != "lost" or self.released:
            return None
        return ending.exit_status or ending.reason or "its engine is gone"

    def closing_line(self) -> str | None:
        line = super().closing_line()
        if line is not None or not self.released or self.result is not None or self.ending is not None:
            return line
        if self.stop_requested:
            return (f"{self.view.run_id or self.name}: told to save last.pt and stop, which it does by itself "
                    "(`tui-trainer runs` shows when it has stopped)")
        return None

    @property
    def goes_on(self) -> bool:
        """Once the app has closed: the run trains on in the background (released, not told to stop)."""
        return self.released and self.result is None and self.ending is None and not self.stop_requested

    def device_monitor(self) -> DeviceMonitor:
        """The figures of the engine's process, not the app's; GPU names as the engine sent them."""
        from tui_trainer.engine.devices import DeviceMonitor

        view = self.view
        return DeviceMonitor(view.device, cuda=EngineCuda(view.device_name), process=EngineProcess(self.engine_pid))


class EngineProcess:
    """The device panel's process figures, read from the engine's process instead of the app's."""

    def __init__(self, pid: int | None) -> None:
        self._process: Any = None
        if pid:
            try:
                from tui_trainer.engine.devices import PsutilProcess

                self._process = PsutilProcess(pid)
            except Exception:  # gone already, or not ours to read: the panel shows n/a
                self._process = None

    def figures(self) -> dict[str, float | int | None]:
        return self._process.figures() if self._process is not None else {}


class EngineCuda:
    """GPU names as the engine reported them: the app does not import torch to sample a detached run."""

    def __init__(self, name: str) -> None:
        self._name = name

    def is_available(self) -> bool:
        return True

    def device_count(self) -> int:
        return 1

    def name(self, index: int) -> str:
        return self._name

    def memory(self, index: int) -> dict[str, int | None]:
        return {"allocated": None, "reserved": None, "peak": None, "total": None}
