"""The app's handle on one run: events out, commands in, release, leave; the same interface whatever the transport.

Whatever produces the run's events (a Trainer in a thread of this process, or a run in another process read
through its socket in a thread), that thread only appends them to a deque; the first event after a drain also
calls `notify` once (the app posts itself a message), so the app wakes only when there is something new and
drains the whole batch on its own schedule. Nothing here touches a widget. The app never asks which kind of
handle it holds: what differs between them (whether the run ends with the app, whether it can go on alone,
where its device figures come from, what to say when it ends) is a question each handle answers.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tui_trainer.config import RunConfig
from tui_trainer.engine.controls import Controls
from tui_trainer.engine.events import Event, Progress, RunFinished, RunStarted
from tui_trainer.runs.registry import RunInfo
from tui_trainer.ui.run_view import LogLine, RunView

if TYPE_CHECKING:
    from tui_trainer.detached.launcher import Launch
    from tui_trainer.detached.warm_engine import WarmEngine
    from tui_trainer.engine.devices import DeviceMonitor
    from tui_trainer.engine.trainer import Trainer
    from tui_trainer.runs.host import RunHost


MAX_PENDING = 20_000
"""Events waiting for the app beyond which progress events are dropped (epochs and the rest are kept)."""
SETUP_WAIT_S = 3.0
"""How long leaving waits for a run still loading its data or model (it has nothing to save yet)."""

Notify = Callable[[], object]


class RunHandle:
    """One run under the app: its controls, its event queue and what the dashboard shows of it.

    Subclasses provide `run()` (the whole worker thread), `name`, `checkpoint_dir` and their answers to the
    questions below.
    """

    ends_with_app: bool = True
    """Leaving the app (quit, a new run, a signal) saves and stops this run."""
    can_go_on_alone: bool = False
    """The app can let go of the run and it trains on in the background (`release`)."""
    verb: str = "start"
    """What opening the handle does, for "Could not start" / "Could not attach"."""

    def __init__(self, view: RunView, controls: Controls, *, notify: Notify, paused: bool = False) -> None:
        self.view = view
        self.controls = controls
        self.result: RunFinished | None = None
        self.finished = threading.Event()
        """Set when run() returns or raises, in the worker thread."""
        self.began = threading.Event()
        """Set when the worker thread starts (a worker the app cancelled before it began never ends)."""
        self.training = threading.Event()
        """Set once the run is set up (RunStarted): from then on a stop saves last.pt."""
        self.stop_requested = False
        self.paused_intent = paused
        """Paused as far as the user asked (the engine confirms with a StateChanged)."""
        self._events: deque[Event] = deque()
        self._armed = True
        self._notify = notify

    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def checkpoint_dir(self) -> str:
        """The folder that holds this run's folder (where saves and the load panel start)."""
        raise NotImplementedError

    @property
    def run_dir(self) -> str:
        """The run's folder, once known ("" before)."""
        return self.view.run_dir

    @property
    def released(self) -> bool:
        """The app let go of the run (it goes on training without the app)."""
        return False

    def run(self) -> RunFinished | None:
        raise NotImplementedError

    # ------------------------------------------------------------ worker thread

    def work(self) -> RunFinished | None:
        """The worker thread's body: run(), noting that it began."""
        self.began.set()
        return self.run()

    def on_event(self, event: Event) -> None:
        """Enqueue, and wake the app once per batch. Returns at once."""
        if len(self._events) >= MAX_PENDING and isinstance(event, Progress):
            return  # the app has not drained for a long while (a stalled terminal): keep memory bounded
        self._events.append(event)
        if isinstance(event, RunStarted):
            self.training.set()
        if self._armed:
            self._armed = False
            self._notify()

    def _ended(self) -> None:
        self.finished.set()
        self._notify()

    # ------------------------------------------------------------ UI thread

    def take(self) -> list[Event]:
        """Every event waiting, oldest first; re-arms the wake-up before reading so none is missed."""
        self._armed = True
        events = []
        while self._events:
            events.append(self._events.popleft())
        return events

    @property
    def active(self) -> bool:
        """The worker thread has not ended yet."""
        return not self.finished.is_set()

    def stop(self, reason: str) -> None:
        """Save last.pt and end the run at the next step boundary (at once when paused)."""
        if self.active:
            self.stop_requested = True
            self.controls.stop(save=True, reason=reason)

    def release(self) -> None:
        """Let go of the run: it goes on training without the app (only where can_go_on_alone)."""
        raise NotImplementedError(f"{type(self).__name__} cannot go on without the app")

    def leave(self, reason: str) -> None:
        """What leaving the app does to the run: one that ends with the app saves and stops; another is let go."""
        if self.ends_with_app:
            self.stop(reason)
        else:
            self.release()

    def shown(self) -> None:
        """The dashboard shows the run (its RunStarted is drawn): a run waiting for its app may start now."""

    def exit_wait_s(self, timeout_s: float) -> float:
        """How long the app's exit waits for this run's worker to end after `leave`."""
        return timeout_s if self.training.is_set() else min(timeout_s, SETUP_WAIT_S)

    def failed_state(self) -> str:
        """The state to show when opening the run failed."""
        return "failed"

    def ended_lines(self) -> list[LogLine]:
        """What the dashboard adds once the worker ended without an error (the RunFinished said the rest)."""
        return []

    def closing_line(self) -> str | None:
        """What the shell shows about this run once the app has closed, if anything."""
        result = self.result
        if result is not None and result.checkpoint:
            return f"{self.view.run_id or self.name}: {result.state} {result.where()}; last checkpoint " \
                   f"{result.checkpoint}"
        return None

    @property
    def waits_to_be_shown(self) -> bool:
        """The run waits before its first step until the app calls `shown` (the app's own engine process)."""
        return False

    @property
    def goes_on(self) -> bool:
        """Once the app has closed: the run trains on in the background."""
        return False

    def lost_because(self) -> str | None:
        """Why the run is lost, once its worker ended on a lost run (its process died)."""
        return None

    def device_monitor(self) -> DeviceMonitor:
        """The device panel's sampler for this run's device (in this process)."""
        from tui_trainer.engine.devices import DeviceMonitor

        return DeviceMonitor(self.view.device)


class ThreadHandle(RunHandle):
    """A Trainer in a thread worker of the app (--in-thread): it ends with the app."""

    def __init__(self, config: RunConfig, *, notify: Notify, resume_from: str | Path | None = None,
                 start_paused: bool = False) -> None:
        view = RunView(task=config.task, config=config.to_dict(), preset=config.name, epochs=config.epochs)
        super().__init__(view, Controls(), notify=notify, paused=start_paused)
        self.config = config
        self.resume_from = str(resume_from) if resume_from else None
        self.start_paused = start_paused
        self.host: RunHost | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def checkpoint_dir(self) -> str:
        return self.config.checkpoint.dir

    def run(self) -> RunFinished:
        """The whole run, in a worker thread, hosted like any other (runs.host): run.json, the control socket
        (`tui-trainer runs`, `attach` and `stop` reach it), events to this handle's queue. Setup errors (each a
        UserError) propagate to the worker."""
        from tui_trainer.runs.host import RunHost
        from tui_trainer.runs.hosting import Hosting

        thread = threading.current_thread()
        pool_name, thread.name = thread.name, f"trainer {self.config.name}"  # named for py-spy and tests
        try:
            self.host = RunHost(self.config, Hosting.in_thread(), resume_from=self.resume_from,
                                listeners=[self.on_event], controls=self.controls, start_paused=self.start_paused,
                                pause_on_fault=True)
            self.result = self.host.run()
            return self.result
        finally:
            thread.name = pool_name
            self._ended()

    @property
    def trainer(self) -> Trainer | None:
        """The run's Trainer, once its host has built it."""
        return self.host.trainer if self.host is not None else None


class Handles:
    """How the app gets its handles: a run in its thread, a run reached through its socket, and the start of a
    run in processes of its own. Tests pass a fake of this to drive the app with scripted runs.

    `warm_up` readies the next run while the user is still choosing (see detached.warm_engine): an engine
    process that has imported torch and waits to be told what to train, or, for a run in the app's thread, the
    same imports in a thread here. A fake that makes its runs its own way gets no warm-up."""

    _warm: WarmEngine | None = None
    _imports: threading.Thread | None = None

    def warm_up(self, *, in_thread: bool) -> None:
        from tui_trainer.detached import warm_engine

        if in_thread:
            if self._imports is None and type(self).train_here is Handles.train_here:
                self._imports = warm_engine.import_in_background()
        elif type(self).start_process is Handles.start_process and warm_engine.available():
            if self._warm is not None and self._warm.idle:
                return
            self.close()
            with contextlib.suppress(OSError):  # no warm engine: the run starts cold, as it would anyway
                self._warm = warm_engine.WarmEngine.start()

    @property
    def warm(self) -> WarmEngine | None:
        """The warm engine waiting for the next run, if any."""
        return self._warm

    def close(self) -> None:
        """End a warm engine that was never given a run: no process or file of it is left."""
        warm, self._warm = self._warm, None
        if warm is not None:
            warm.close()

    def train_here(self, config: RunConfig, *, notify: Notify, resume_from: str | None = None,
                   start_paused: bool = False) -> RunHandle:
        return ThreadHandle(config, notify=notify, resume_from=resume_from, start_paused=start_paused)

    def reach(self, run_dir: str, *, notify: Notify, pause: bool = False, ends_with_app: bool = False) -> RunHandle:
        from tui_trainer.ui.socket_handle import SocketHandle

        return SocketHandle(run_dir, notify=notify, pause=pause, ends_with_app=ends_with_app)

    def start_process(self, launch: Launch) -> RunInfo:
        """Start a run in processes of its own and return once it trains (in a worker thread: it blocks)."""
        from tui_trainer.detached.launcher import start_engine

        warm, self._warm = self._warm, None  # one run per warm engine (a cold start if it is gone)
        return start_engine(launch, warm=warm)

    def stop_process(self, info: RunInfo) -> None:
        """Ask an engine process that was started but never shown to save and stop."""
        from tui_trainer.detached.commands import ask_engine_to_stop

        ask_engine_to_stop(info)  # it would stop by itself once it saw no app; this only makes it sooner
