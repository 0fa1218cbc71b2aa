"""The bridge between one run and the app.

Whatever produces the run's events (a Trainer in a thread of this process, or a detached run's socket
read in a thread), that thread only appends them to a deque; the first event after a drain also calls
`notify` once (the app posts itself a message), so the app wakes only when there is something new and
drains the whole batch on its own schedule. Nothing here touches a widget.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from tui_trainer.config import RunConfig
from tui_trainer.engine.controls import Controls
from tui_trainer.engine.events import Event, Progress, RunFinished, RunStarted
from tui_trainer.ui.run_view import RunView

if TYPE_CHECKING:
    from tui_trainer.engine.trainer import Trainer
    from tui_trainer.runs.host import RunHost


MAX_PENDING = 20_000
"""Events waiting for the app beyond which progress events are dropped (epochs and the rest are kept)."""


class Session:
    """One run under the app: its controls, its event queue and what the dashboard shows of it.

    Subclasses provide `run()` (the whole worker thread), `name` and `checkpoint_dir`.
    """

    remote: ClassVar[bool] = False
    """The run trains in another process (a detached run reached through its socket)."""

    def __init__(self, view: RunView, controls: Controls, *, notify: Callable[[], object],
                 paused: bool = False) -> None:
        self.view = view
        self.controls = controls
        self.result: RunFinished | None = None
        self.finished = threading.Event()
        """Set when run() returns or raises, in the worker thread."""
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

    def run(self) -> RunFinished | None:
        raise NotImplementedError

    # ------------------------------------------------------------ worker thread

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

    def let_go(self, reason: str) -> None:
        """What leaving the app does to the run: a run in this process saves and stops."""
        self.stop(reason)


class RunSession(Session):
    """A Trainer in a thread worker of the app."""

    def __init__(self, config: RunConfig, *, notify: Callable[[], object], resume_from: str | Path | None = None,
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
        (`tui-trainer runs`, `attach` and `stop` reach it), events to this session's queue. Setup errors (each a
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
