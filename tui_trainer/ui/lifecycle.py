"""The app's run lifecycle as one explicit state, without Textual: which run is shown, what is being started,
what happens once the shown run has ended, and whether the app is leaving.

The app asks it what to do (and does the screens and toasts); unit tests drive it with fake handles. One run is
shown at a time; every run the app opened stays in `handles` (the exit waits on any still training).

    SETUP ──start_process──► STARTING ──process_started──► (shown)
      │                         └──process_failed──► back where it was
      └──opened──► SHOWING ──end(then)──► ENDING ──worker_ended──► ENDED ──(then: setup, attach, load, exit)
                      └──────────────worker_ended──────────────────┘
    any ──leave──► LEAVING (the app exits once the run has saved, or at once when there is nothing to save)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from tui_trainer.runs.registry import RunInfo
from tui_trainer.ui.handle import RunHandle


class Phase(enum.Enum):
    SETUP = "setup"
    """No run is shown."""
    STARTING = "starting"
    """A run is being started in processes of its own (nothing to show yet)."""
    SHOWING = "showing"
    """The dashboard shows a run whose worker is live."""
    ENDING = "ending"
    """The shown run was told to stop or was let go of; `then` runs once its worker has ended."""
    ENDED = "ended"
    """The shown run's worker has ended: the dashboard shows how."""
    LEAVING = "leaving"
    """The app exits once the run has saved (or at once)."""


# ---------------------------------------------------------------- what happens once the shown run has ended


@dataclass(frozen=True)
class BackToSetup:
    pass


@dataclass(frozen=True)
class AttachTo:
    run_dir: str


@dataclass(frozen=True)
class StartLoaded:
    choice: Any
    """The load panel's LoadChoice (its path, config and trusted imports)."""
    in_background: bool
    processes: int


@dataclass(frozen=True)
class Exit:
    pass


@dataclass(frozen=True)
class Released:
    """The app let go of the run (it trains on): say so, then back to setup (or exit, for `attach`)."""

    handle: RunHandle


Then = BackToSetup | AttachTo | StartLoaded | Exit | Released


# ---------------------------------------------------------------- answers the app acts on


@dataclass(frozen=True)
class Starting:
    what: str
    paused: bool
    ends_with_app: bool


class OnStarted(enum.Enum):
    """What to do once a started process trains."""

    SHOW = "show"
    STOP_IT_AND_EXIT = "stop it and exit"
    """The user quit while it started: ask it to save and stop (it does so by itself), and exit."""
    STOP_IT = "stop it"
    """The app is leaving and the run would end with it: ask it to stop."""
    LEAVE_IT = "leave it"
    """The app is leaving and the run goes on by itself: remember it for the closing lines."""


class OnQuit(enum.Enum):
    """What quitting asks, or does."""

    EXIT = "exit"
    """Nothing to save: exit now."""
    AGAIN = "again"
    """Asked twice: exit without waiting."""
    CONFIRM_WHILE_STARTING = "confirm while starting"
    CONFIRM_STOP = "confirm stop"
    """A run that ends with the app: save it, stop it and quit?"""
    LEAVE_OR_STOP = "leave or stop"
    """A run that can go on alone: leave it running, or save and stop it?"""
    ALREADY_STOPPING = "already stopping"
    """It is saving and stopping already: quit once it has, without asking."""


class OnLeave(enum.Enum):
    EXIT_NOW = "exit now"
    WAIT_FOR_SAVE = "wait for save"


class Lifecycle:
    """The run the app shows and what comes next. Textual-free: every method is plain state and answers."""

    def __init__(self) -> None:
        self.phase = Phase.SETUP
        self.handle: RunHandle | None = None
        """The run shown (live or ended); None on the setup screen."""
        self.handles: list[RunHandle] = []
        """Every run of this app, oldest first."""
        self.starting: Starting | None = None
        self.then: Then | None = None
        self.from_setup = False
        """The shown run was started from the setup form (a setup error sends the user back to it)."""
        self.quit_when_started = False
        self.unattached: list[RunInfo] = []
        """Runs this app started in the background but left before showing them."""
        self.stopped_unshown: list[RunInfo] = []
        """Runs of the app's own that it asked to save and stop before showing them (it was leaving)."""
        self._phase_before_start = Phase.SETUP

    # ------------------------------------------------------------ questions

    @property
    def leaving(self) -> bool:
        return self.phase is Phase.LEAVING

    @property
    def live(self) -> RunHandle | None:
        """The shown run, while its worker is live (commands reach it)."""
        handle = self.handle
        return handle if handle is not None and handle.active else None

    @property
    def steerable(self) -> RunHandle | None:
        """The shown run, while it takes commands: live and not stopping."""
        handle = self.live
        return handle if handle is not None and not handle.stop_requested else None

    def busy(self) -> str | None:
        """Why a new run cannot start now, or None."""
        if self.starting is not None:
            return f"Still starting {self.starting.what}; try again in a moment."
        if self.live is not None:
            return "A run is still stopping; try again in a moment."
        return None

    def unavailable(self, doing: str) -> str | None:
        """Why the shown run cannot take a command now ("nothing to pause"), or None."""
        handle = self.live
        if handle is None:
            return f"No run is training: nothing to {doing}."
        if handle.stop_requested:
            return f"The run is stopping: nothing to {doing}."
        return None

    # ------------------------------------------------------------ starting in processes of its own

    def start_process(self, what: str, *, paused: bool, ends_with_app: bool, from_setup: bool) -> Starting:
        self.starting = Starting(what or ("the run" if ends_with_app else "a background run"), paused, ends_with_app)
        self.from_setup = from_setup
        self._phase_before_start = self.phase
        self.phase = Phase.STARTING if not self.leaving else self.phase
        return self.starting

    def process_started(self, info: RunInfo) -> OnStarted:
        starting = self.starting
        self.starting = None
        ends_with_app = starting is not None and starting.ends_with_app
        if self.quit_when_started and ends_with_app:
            self.stopped_unshown.append(info)
            return OnStarted.STOP_IT_AND_EXIT
        if self.leaving:
            if ends_with_app:
                self.stopped_unshown.append(info)
                return OnStarted.STOP_IT
            self.unattached.append(info)
            return OnStarted.LEAVE_IT
        return OnStarted.SHOW

    def process_failed(self) -> None:
        self.starting = None
        if not self.leaving:
            self.phase = self._phase_before_start

    # ------------------------------------------------------------ the shown run

    def opened(self, handle: RunHandle, *, from_setup: bool = False) -> None:
        self.handle = handle
        self.from_setup = from_setup
        self.handles.append(handle)
        self.then = None
        if not self.leaving:
            self.phase = Phase.SHOWING

    def end(self, then: Then) -> None:
        """The shown run was told to stop, or let go of: `then` once its worker has ended."""
        self.then = then
        if not self.leaving:
            self.phase = Phase.ENDING

    def worker_ended(self, handle: RunHandle) -> Then | None:
        """The shown run's worker ended: what comes next (None: stay on its dashboard)."""
        if handle is not self.handle:
            return None
        then, self.then = self.then, None
        if not self.leaving:
            self.phase = Phase.ENDED
        return then

    def back_to_setup(self) -> None:
        self.handle = None
        self.then = None
        if not self.leaving:
            self.phase = Phase.SETUP

    # ------------------------------------------------------------ leaving

    def on_quit(self, *, asking: bool = False) -> OnQuit:
        """What quitting does now. asking: a quit question is on screen (quitting again answers it)."""
        if self.leaving:
            return OnQuit.AGAIN
        if self.starting is not None and self.starting.ends_with_app and not self.quit_when_started and not asking:
            return OnQuit.CONFIRM_WHILE_STARTING
        handle = self.live
        if handle is None:
            return OnQuit.EXIT
        if handle.stop_requested:
            return OnQuit.ALREADY_STOPPING
        return OnQuit.CONFIRM_STOP if handle.ends_with_app else OnQuit.LEAVE_OR_STOP

    def quit_once_started(self) -> bool:
        """The user confirmed quitting while a run starts: True when it is still starting (quit once it is up)."""
        if self.starting is not None:
            self.quit_when_started = True
            return True
        return False

    def leave(self, reason: str, *, stop: bool = False) -> OnLeave:
        """Leave the app: the shown run saves and stops if it ends with the app (or `stop`), else it is let go of."""
        self.phase = Phase.LEAVING
        handle = self.live
        if handle is None:
            return OnLeave.EXIT_NOW
        if not handle.ends_with_app and not stop:
            handle.release()
            return OnLeave.EXIT_NOW
        if not handle.stop_requested:
            handle.stop(reason)
        if not handle.training.is_set():
            return OnLeave.EXIT_NOW  # still loading data or model: nothing to save yet, and a download may take minutes
        self.then = Exit()
        return OnLeave.WAIT_FOR_SAVE

    def let_go_of_all(self, reason: str) -> None:
        """Every run of this app: those that end with it save and stop, the others go on."""
        for handle in list(self.handles):
            if handle.active:
                handle.leave(reason)

    def closing_lines(self) -> list[str]:
        """What the shell shows once the app has closed: where each run ended, or that it goes on."""
        from tui_trainer.ui.socket_handle import attach_command

        lines: list[str] = []
        going_on: dict[str, str] = {}
        for handle in self.handles:
            for event in handle.take():  # the last events, which the app closed too soon to draw
                handle.view.apply(event)
            line = handle.closing_line()
            if line is not None:
                lines.append(line)
            elif handle.goes_on:
                going_on[handle.run_dir] = handle.view.run_id or handle.name
        lines += [f"{info.run_id}: told to save last.pt and stop, which it does by itself (`tui-trainer runs` shows "
                  "when it has stopped)" for info in self.stopped_unshown]
        for info in self.unattached:
            going_on[info.run_dir] = info.run_id
        lines += [f"{run_id}: goes on in the background; attach with `{attach_command(run_dir)}`"
                  for run_dir, run_id in going_on.items()]
        return lines
