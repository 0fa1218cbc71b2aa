"""TrainerApp: the screens, the app-wide keys and actions, and the bridge from engine events to widgets.

A run is one session with one thread worker: the relay of an engine process's socket (`RemoteSession.run()`:
by default the app starts an engine process of its own for each run, so training never shares the
interpreter lock with the UI; or a detached run), or a Trainer in this process (`RunSession.run()`, with
--in-thread). Either way its events wait in the session's
queue; the first one after a drain posts one message here, and the app drains the batch at most a few
times a second, redraws the charts at most once a second and samples the devices every two seconds.
With nothing new (paused, finished) only the device sample runs, every few seconds. Commands go out
through the session's controls, the same calls for both kinds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from tui_trainer.catalog.datasets import DatasetError
from tui_trainer.config import ConfigError, RunConfig, UntrustedCode
from tui_trainer.engine.events import CheckpointFailed, CheckpointSaved, RunStarted
from tui_trainer.engine.runinfo import LIVE_STATES, RunInfo, effective_state, read_run_info
from tui_trainer.errors import UserError
from tui_trainer.launch import LaunchOptions, resolve_config
from tui_trainer.logs import get_logger
from tui_trainer.text import printable
from tui_trainer.ui.heap import freeze_long_lived, thaw_long_lived
from tui_trainer.ui.remote_session import EngineCuda, EngineProcess, RemoteSession, attach_command
from tui_trainer.ui.run_view import LogLine, RunView
from tui_trainer.ui.screens.checkpoints import LoadChoice, LoadPanel, SavePanel, default_name, trust_question
from tui_trainer.ui.screens.confirm import ConfirmModal
from tui_trainer.ui.screens.dashboard import DashboardScreen
from tui_trainer.ui.screens.help import HelpModal
from tui_trainer.ui.screens.leave import LEAVE_RUNNING, SAVE_AND_STOP, LeaveModal
from tui_trainer.ui.screens.runs import ATTACH, RunChoice, RunsPanel
from tui_trainer.ui.screens.setup import SetupScreen
from tui_trainer.ui.screens.tweaks import TweakPanel
from tui_trainer.ui.session import RunSession, Session
from tui_trainer.ui.signals import leave_on_signals
from tui_trainer.ui.throttle import Throttle

if TYPE_CHECKING:
    from textual.notifications import SeverityLevel

    from tui_trainer.engine.devices import DeviceMonitor

EXIT_GRACE_S = 30.0
"""How long leaving waits for the run to save last.pt before it gives up on the training thread."""
CHART_CPU_SHARE = 0.01
"""The share of a core the charts may take while a run trains: their redraw interval stretches to stay under."""
IDLE_DEVICE_INTERVAL_S = 5.0
"""How often the device panel samples while the run it shows is paused or has ended (memory and CPU still move)."""
SETUP_WAIT_S = 3.0
"""How long leaving waits for a run still loading its data or model (it has nothing to save yet)."""
READY_TICK_S = 0.05
READY_QUIET_CPU_S = 0.003
READY_WAIT_MAX_S = 0.5
"""The app's own engine starts training once the dashboard is up and the UI thread quiet: see _ready_when_quiet."""
SETUP_ERRORS = (ConfigError, DatasetError)
"""Setup errors that send the user back to the form (the others stay on the dashboard)."""
OWN_ERRORS = (UserError,)
"""Errors whose text is already a one-line message for the user."""


log = get_logger("app")


def one_line(error: BaseException) -> str:
    """An error as the screen shows it: its own one-line text, never a traceback."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, OWN_ERRORS):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class TrainerApp(App[int]):
    """tui-trainer's full-screen app."""

    CSS_PATH = "app.tcss"
    TITLE = "tui-trainer"
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("f1", "help", "Keys", show=False),
    ]
    HELP_GLOBAL = [
        ("ctrl+p", "Command palette: every action by name"),
        ("ctrl+q, ctrl+c", "Quit (a run training in the app is saved to last.pt first, after a confirmation; "
                           "a detached run: asks whether to leave it running or save and stop it)"),
        ("f1", "This list"),
        ("escape", "Close a panel"),
    ]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]

    class EventsQueued(Message):
        """The training thread queued events since the last drain."""

    def __init__(self, options: LaunchOptions | None = None, *, drain_interval_s: float = 0.25,
                 chart_interval_s: float = 1.0, chart_cpu_share: float | None = CHART_CPU_SHARE,
                 device_interval_s: float = 2.0, idle_device_interval_s: float = IDLE_DEVICE_INTERVAL_S,
                 exit_grace_s: float = EXIT_GRACE_S) -> None:
        super().__init__()
        self.options = options or LaunchOptions()
        self.exit_grace_s = exit_grace_s
        self.session: Session | None = None
        self.sessions: list[Session] = []
        """Every run of this app, oldest first (the exit waits on any still training)."""
        self.setup_screen = SetupScreen(self.options)
        self.dashboard: DashboardScreen | None = None
        self.exit_code = 0
        self.leaving = False
        self._worker: Worker | None = None
        self._after_run: Callable[[], object] | None = None
        self._from_setup = False
        self.launching: str | None = None
        """What a detached run being started is (a launch worker is under way), else None."""
        self._launch_paused = False
        self.launch_owned = False
        self._quit_after_launch = False
        self.unattached: list[RunInfo] = []
        """Detached runs this app started but left before attaching to them."""
        self._monitor: DeviceMonitor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_throttle = Throttle(self, drain_interval_s, self.drain)
        self._chart_throttle = Throttle(self, chart_interval_s, self._redraw_charts)
        self.chart_interval_s = chart_interval_s
        self.chart_cpu_share = chart_cpu_share
        self.device_interval_s = device_interval_s
        self.idle_device_interval_s = idle_device_interval_s
        self._device_throttle = Throttle(self, device_interval_s, self._sample_devices)

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """A toast shows its text as written (a path or a name is never read as markup)."""
        super().notify(printable(message, keep_newlines=True), title=printable(title), severity=severity,
                       timeout=timeout, markup=markup)

    # ------------------------------------------------------------ start-up

    def on_mount(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.options.attach:
            self.attach_run(self.options.attach)
            return
        self.push_screen(self.setup_screen)
        if self.options.resume:
            self.call_after_refresh(self._open_resume)
        elif self.options.start:
            self.call_after_refresh(self.setup_screen.start_when_ready)

    @property
    def top(self) -> Screen | None:
        """The screen on top; None while the app is being taken down."""
        return self.screen_stack[-1] if self.screen_stack else None

    def on_unmount(self) -> None:
        for throttle in (self._drain_throttle, self._chart_throttle, self._device_throttle):
            throttle.cancel()
        thaw_long_lived()

    def _open_resume(self) -> None:
        """--resume: read the checkpoint's config off the UI thread (it imports torch), then start."""
        self._from_setup = False
        self.run_worker(self._read_resume_config, thread=True, exit_on_error=False, group="resume")

    def _read_resume_config(self) -> RunConfig:
        config, _ = resolve_config(self.options)
        return config

    # ------------------------------------------------------------ runs

    def start_run(self, config: RunConfig, launch: LaunchOptions, *, resume_from: str | None = None,
                  start_paused: bool = False) -> None:
        """Start a run that ends with the app: in an engine process of its own (`launch` says how to build
        the same config there), or with --in-thread in a training thread of this process."""
        if not self.options.in_thread:
            self.launch(dataclasses.replace(launch, detach=False, owned=True, owner_pid=os.getpid(), processes=1),
                        paused=start_paused, what=config.name)
            return
        session = RunSession(config, notify=self._wake, resume_from=resume_from, start_paused=start_paused)
        self._open(session, "loading data and model" if not resume_from else "restoring the checkpoint",
                   f"Loading {resume_from}" if resume_from else "", f"training {config.name}")

    def attach_run(self, run_dir: str, *, pause: bool = False, owned: bool = False) -> None:
        """Open the dashboard on a run in another process: its whole history, then live, through its socket."""
        session = RemoteSession(run_dir, notify=self._wake, pause=pause, owned=owned)
        self._open(session, f"attaching to {session.run_id}", f"Attaching to {session.run_id}",
                   f"relaying {session.run_id}")

    def _open(self, session: Session, note: str, log: str, description: str) -> None:
        self.session = session
        self.sessions.append(session)
        self._monitor = None
        if self.dashboard is None:
            self.dashboard = DashboardScreen()
            self.dashboard.view = session.view
            self.push_screen(self.dashboard)
        else:
            if log:
                self.dashboard.log_lines([LogLine(log)])
            self.dashboard.attach(session.view)
        self._set_note(note)
        self._worker = self.run_worker(session.run, name="trainer", group="trainer", thread=True,
                                       exit_on_error=False, description=description)

    def launch(self, options: LaunchOptions, *, paused: bool = False, what: str = "") -> None:
        """Start an engine process in a worker thread (it returns once the engine trains), then attach.
        options.owned: the app's own engine for this run, else a detached run."""
        from tui_trainer.detached.launcher import launch_detached

        self.launching = what or ("the run" if options.owned else "a detached run")
        self._launch_paused = paused
        self.launch_owned = options.owned
        if paused:  # the engine itself waits before its first step: nothing trains unwatched meanwhile
            options = dataclasses.replace(options, start_paused=True)
        self.setup_screen.show_launching(True)
        if options.owned:
            self._set_note("starting the engine process")
        else:
            self._set_note(f"starting {self.launching} in the background")
            self.notify(f"Starting {self.launching} in the background ...", timeout=4)
        log.info("launching %s (owned=%s, paused=%s)", self.launching, options.owned, paused)
        self.run_worker(lambda: launch_detached(options, pause_on_fault=True), thread=True, exit_on_error=False,
                        group="launch", name="launch", description=f"launching {self.launching}")

    def _launched(self, worker: Worker, state: WorkerState) -> None:
        log.info("launch ended: %s %s", state.name, one_line(worker.error) if worker.error else "")
        self.launching = None
        self.setup_screen.show_launching(False)
        if state == WorkerState.SUCCESS and worker.result is not None:
            info: RunInfo = worker.result
            if self._quit_after_launch and self.launch_owned:
                self.attach_run(info.run_dir, owned=True)
                self.leave("quit")  # the relay tells it to save and stop, and the exit waits for that
                return
            if self.leaving:
                if self.launch_owned:
                    stop_engine(info)  # it would stop by itself once it saw no app; nothing to wait for
                else:
                    self.unattached.append(info)
                return
            self._from_setup = False
            self.attach_run(info.run_dir, pause=self._launch_paused, owned=self.launch_owned)
            paused = "; it waits paused (space starts it)" if self._launch_paused else ""
            if self.launch_owned:
                if paused:
                    self.notify(f"Loaded{paused}.", timeout=4)
                return
            self.notify(f"Run {info.run_id} trains in the background (pid {info.pid}){paused}. d detaches; "
                        "quitting asks whether to leave it running.", timeout=6)
        elif state == WorkerState.ERROR and worker.error is not None:
            self._set_note("")
            error = worker.error
            message = one_line(error)
            self.notify(message, title="Could not start", severity="error", timeout=10)
            if self.dashboard is not None:
                self.dashboard.update([LogLine(f"Could not start: {message}", "error")])
            elif isinstance(error, ConfigError) and self.setup_screen.is_mounted:
                self.setup_screen.show_start_error(error)

    def _wake(self) -> None:
        # Called from the training thread: returns at once (a thread-safe post).
        self.post_message(self.EventsQueued())

    def on_trainer_app_events_queued(self, message: EventsQueued) -> None:
        self._drain_throttle.request()

    def drain(self) -> None:
        """Take every queued event into the run's view and update the widgets in one batch."""
        session = self.session
        if session is None:
            return
        events = session.take()
        if not events:
            return
        view = session.view
        lines: list[LogLine] = []
        for event in events:
            lines += view.apply(event)
            if isinstance(event, RunStarted):
                self._set_note("", refresh=False)
                self._device_throttle.request()
                self.call_after_refresh(freeze_long_lived)
                if isinstance(session, RemoteSession) and session.owned:
                    self._ready_when_quiet(session)  # its engine waits for the dashboard to be up
            elif isinstance(event, (CheckpointSaved, CheckpointFailed)) and isinstance(self.top, SavePanel):
                self.top.checkpoint_result(event)
        if isinstance(self.top, TweakPanel):
            self.top.show_step(view.step)
        if view.state in ("running", "paused"):
            session.paused_intent = view.state == "paused"
        if self.dashboard is not None:
            self.dashboard.update(lines)
            if self.dashboard.charts_stale():
                self._chart_throttle.request()
        if view.state == "running" and self._device_throttle.interval_s != self.device_interval_s:
            self._device_throttle.cancel()  # resumed: no waiting out the idle interval
            self._next_device_sample(view)

    def _ready_when_quiet(self, session: RemoteSession, cpu_s: float | None = None, waited_s: float = 0.0) -> None:
        """Let an owned engine start training once this thread has drawn the dashboard and gone quiet (a
        tick of READY_TICK_S with under READY_QUIET_CPU_S of its CPU; READY_WAIT_MAX_S at most): the first
        frames (layout, the footer rebuilt as focus settles: about 60 ms of CPU here) then do not share
        the CPU with the first steps."""
        now = time.thread_time()
        if cpu_s is not None and (now - cpu_s < READY_QUIET_CPU_S or waited_s >= READY_WAIT_MAX_S):
            session.ready()
            return
        self.set_timer(READY_TICK_S, lambda: self._ready_when_quiet(session, now, waited_s + READY_TICK_S))

    def _redraw_charts(self) -> None:
        dashboard = self.dashboard
        if dashboard is None:
            return
        if self.chart_cpu_share:
            # Charts redraw at most once per chart_interval_s, and less often where a redraw costs more
            # than chart_cpu_share of a core at that rate (a slow CPU, a huge terminal).
            cost = dashboard.loss_chart.draw_cost_s + dashboard.metric_chart.draw_cost_s
            self._chart_throttle.interval_s = max(self.chart_interval_s, cost / self.chart_cpu_share)
        dashboard.redraw_charts()

    def _sample_devices(self) -> None:
        session = self.session
        if session is None or self.dashboard is None or not session.view.device:
            return
        if self._monitor is None or self._monitor.device != session.view.device:
            from tui_trainer.engine.devices import DeviceMonitor

            view = session.view
            if isinstance(session, RemoteSession):
                # The figures of the engine's process, not this one's; GPU names as the engine sent them.
                self._monitor = DeviceMonitor(view.device, cuda=EngineCuda(view.device_name),
                                              process=EngineProcess(session.engine_pid))
            else:
                self._monitor = DeviceMonitor(view.device)
        try:
            samples = self._monitor.sample(session.view.engine_devices or None)
        except Exception as error:  # a driver hiccup must not end the app
            self.dashboard.log_lines([LogLine(f"Device figures unavailable: {one_line(error)}", "warning")])
        else:
            self.dashboard.show_devices(samples)
        self._next_device_sample(session.view)

    def _next_device_sample(self, view: RunView) -> None:
        """Sample again for as long as a run is shown: every device_interval_s while it trains, every
        idle_device_interval_s paused or ended (the figures still move, and a frozen one would mislead)."""
        running = view.state == "running"
        self._device_throttle.interval_s = self.device_interval_s if running else self.idle_device_interval_s
        self._device_throttle.request()

    def _set_note(self, note: str, refresh: bool = True) -> None:
        if self.dashboard is not None:
            self.dashboard.note = note
            if refresh:
                self.dashboard.update([])

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == "resume":
            self._resume_config_ready(worker, event.state)
            return
        if worker.group == "launch" and event.state in (WorkerState.SUCCESS, WorkerState.ERROR):
            self._launched(worker, event.state)
            return
        if worker is not self._worker or event.state not in (WorkerState.SUCCESS, WorkerState.ERROR,
                                                             WorkerState.CANCELLED):
            return
        self.drain()
        self._worker = None
        if event.state == WorkerState.ERROR and worker.error is not None:
            self._run_could_not_start(worker.error)
        elif isinstance(self.session, RemoteSession):
            self._relay_ended(self.session)
        if isinstance(self.top, SavePanel):
            self.top.run_ended()
        self._set_note("")
        after, self._after_run = self._after_run, None
        if after is not None:
            after()

    def _run_could_not_start(self, error: BaseException) -> None:
        message = one_line(error)
        session = self.session
        verb = "attach" if isinstance(session, RemoteSession) else "start"
        if session is not None:
            session.view.state = "failed"
            if isinstance(session, RemoteSession):
                info = read_run_info(session.run_dir)
                state = effective_state(info) if info is not None else "failed"
                session.view.state = state if state not in LIVE_STATES else "failed"
            session.view.reason = message
        if self.dashboard is not None:
            self.dashboard.update([LogLine(f"Could not {verb}: {message}", "error")])
        self.notify(message, title=f"Could not {verb}", severity="error", timeout=10)
        if self._from_setup and isinstance(error, SETUP_ERRORS) and not self.leaving:
            self._back_to_setup()
            self.setup_screen.show_start_error(error)

    def _relay_ended(self, session: RemoteSession) -> None:
        """A detached run's socket closed: say why (detached, finished, lost) on the dashboard."""
        view = session.view
        if session.detached:
            lines = view.detached_from() if view.active else []
        elif session.result is not None:
            lines = []
        elif session.ending is not None:
            ending = session.ending
            lines = view.connection_ended(ending.state, ending.reason, ending.exit_status, ending.last_checkpoint)
            if ending.state == "lost":
                why = ending.exit_status or ending.reason or "its engine is gone"
                self.notify(f"Run {session.run_id} is lost: {why}", severity="error", timeout=10)
        else:
            lines = view.connection_ended("lost", "its run.json is gone")
        if self.dashboard is not None and self.dashboard.view is view:
            self.dashboard.update(lines)

    def _resume_config_ready(self, worker: Worker, state: WorkerState) -> None:
        log.info("resume config: %s %s", state.name, one_line(worker.error) if worker.error else "")
        if state == WorkerState.SUCCESS and worker.result is not None:
            if self.options.detach or self.options.processes > 1:
                options = LaunchOptions(resume=self.options.resume, overrides=self.options.overrides,
                                        override_sources=self.options.override_sources, detach=True,
                                        processes=self.options.processes, trust_code=self.options.trust_code,
                                        trusted_imports=self.options.trusted_imports)
                self.launch(options, paused=not self.options.start, what=Path(self.options.resume or "").name)
                return
            launch = LaunchOptions(resume=self.options.resume, overrides=self.options.overrides,
                                   override_sources=self.options.override_sources,
                                   trust_code=self.options.trust_code, trusted_imports=self.options.trusted_imports)
            self.start_run(worker.result, launch, resume_from=self.options.resume,
                           start_paused=not self.options.start)
        elif isinstance(worker.error, UntrustedCode) and state == WorkerState.ERROR:
            self._ask_to_trust(self.options.resume or "", worker.error)
        elif state == WorkerState.ERROR and worker.error is not None:
            self.notify(one_line(worker.error), title="Cannot resume", severity="error", timeout=10)

    def _ask_to_trust(self, path: str, refused: UntrustedCode) -> None:
        """--resume of a checkpoint whose config names code: ask, naming exactly that code, before it runs."""
        targets = tuple(refused.targets)

        def answered(trusted: bool | None) -> None:
            if not trusted:
                self.notify(f"Not resumed: {Path(path).name} runs code you did not trust.", severity="warning")
                return
            self.options = dataclasses.replace(
                self.options, trusted_imports=[*self.options.trusted_imports, *(target for _, target in targets)])
            self._open_resume()

        self.push_screen(ConfirmModal(trust_question(path, targets), confirm="Trust and resume"), answered)

    def on_setup_screen_run_configured(self, message: SetupScreen.RunConfigured) -> None:
        if self.session is not None and self.session.active:
            self.notify("A run is still stopping; try again in a moment.", severity="warning")
            return
        if self.launching:
            self.notify(f"Still starting {self.launching}; try again in a moment.", severity="warning")
            return
        self._from_setup = True
        if message.launch.detach:
            self.launch(message.launch, what=message.config.name)
        else:
            self.start_run(message.config, message.launch)

    def _back_to_setup(self) -> None:
        while len(self.screen_stack) > 1 and not isinstance(self.screen, SetupScreen):
            self.pop_screen()
        if not isinstance(self.screen, SetupScreen):
            self.push_screen(self.setup_screen)  # the app opened on a detached run, straight to the dashboard
        self.setup_screen.focus_presets()
        self.dashboard = None
        self.session = None

    def _active_session(self, doing: str) -> Session | None:
        session = self.session
        if session is not None and session.active and session.stop_requested:
            self.notify(f"The run is stopping: nothing to {doing}.", severity="warning", timeout=3)
            return None
        if session is None or not session.active:
            self.notify(f"No run is training: nothing to {doing}.", severity="warning", timeout=3)
            return None
        return session

    # ------------------------------------------------------------ actions (keys and command palette)

    def action_toggle_pause(self) -> None:
        session = self._active_session("pause")
        if session is None:
            return
        session.paused_intent = not session.paused_intent
        if session.paused_intent:
            session.controls.pause()
        else:
            session.controls.resume()

    def action_save(self) -> None:
        session = self._active_session("save")
        if session is None:
            return
        view = session.view
        if not view.run_id:
            self.notify("The run is still starting.", severity="warning", timeout=3)
            return
        folder = view.run_dir or str(Path(session.checkpoint_dir).expanduser())
        self.push_screen(SavePanel(default_name(view.run_id, view.epoch, view.step), folder,
                                   send=session.controls.save, paused=view.state == "paused"), self._saved)

    def _saved(self, path: str | None) -> None:
        if path:
            self.notify(f"Saved {Path(path).name}", timeout=3)

    def action_load(self) -> None:
        if isinstance(self.screen, LoadPanel):
            return
        self.push_screen(LoadPanel(self._checkpoint_folder()), self._load_chosen)

    def _checkpoint_folder(self) -> str:
        if self.session is not None:
            return self.session.checkpoint_dir
        values = self.setup_screen.values() if self.setup_screen.is_mounted else {}
        return values.get("checkpoint_dir") or self.options.overrides.get("checkpoint.dir") or "checkpoints"

    def _load_chosen(self, choice: LoadChoice | None) -> None:
        if choice is None:
            return
        if self.launching:
            self.notify(f"Still starting {self.launching}; try again in a moment.", severity="warning")
            return
        session = self.session
        # A detached run's checkpoint goes on detached (as many processes); from setup, as the form says.
        if session is not None:
            detached = isinstance(session, RemoteSession) and not session.owned
            processes = session.view.world_size if detached else 1
        else:
            detached, processes = self.setup_screen.detach_wanted(), self.setup_screen.processes
        if session is not None and session.active:
            self._set_note(f"saving last.pt, then loading {Path(choice.path).name}")
            session.stop(f"loading {choice.path}")
            self._after_run = lambda: self._start_loaded(choice, detached, processes)
        else:
            self._start_loaded(choice, detached, processes)

    def _start_loaded(self, choice: LoadChoice, detached: bool = False, processes: int = 1) -> None:
        self._from_setup = False
        trusted = [target for _, target in choice.imports]  # the load panel asked before choosing it
        if detached:
            # Detached runs have no start-paused option: a pause goes out first thing after attaching.
            self.launch(LaunchOptions(resume=choice.path, detach=True, processes=processes, trusted_imports=trusted),
                        paused=True, what=Path(choice.path).name)
            return
        self.start_run(choice.config, LaunchOptions(resume=choice.path, trusted_imports=trusted),
                       resume_from=choice.path, start_paused=True)
        if self.options.in_thread:
            self.notify("Loaded; the run waits paused: space starts it.", timeout=4)

    def action_runs(self) -> None:
        if isinstance(self.screen, RunsPanel):
            return
        attached = self.session.run_dir if isinstance(self.session, RemoteSession) and self.session.active else None
        self.push_screen(RunsPanel(self._checkpoint_folder(), attached), self._run_chosen)

    def _run_chosen(self, choice: RunChoice | None) -> None:
        if choice is None:
            return
        info = choice.info
        if choice.action != ATTACH:
            self.push_screen(LoadPanel(info.run_dir), self._load_chosen)
            return
        session = self.session
        if session is None or not session.active:
            self.attach_run(info.run_dir)
        elif isinstance(session, RemoteSession) and not session.owned:
            session.detach()  # the current detached run goes on; attach once its relay has ended
            self._after_run = lambda: self.attach_run(info.run_dir)
        else:
            def answered(yes: bool | None) -> None:
                if yes and session.active:
                    self._set_note(f"saving last.pt, then attaching to {info.run_id}")
                    session.stop(f"attaching to {info.run_id}")
                    self._after_run = lambda: self.attach_run(info.run_dir)
                elif yes:
                    self.attach_run(info.run_dir)

            self.push_screen(ConfirmModal(f"Save this run to last.pt, stop it and attach to {info.run_id}?",
                                          confirm="Stop and attach"), answered)

    def action_detach(self) -> None:
        session = self.session
        if session is None or not session.active:
            self.notify("Not attached to a run: nothing to detach from.", severity="warning", timeout=3)
            return
        if session.stop_requested:  # it would not go on in the background: it saves and stops
            self.notify("The run is saving last.pt and stopping: nothing to detach.", severity="warning", timeout=4)
            return
        if not isinstance(session, RemoteSession):
            self.notify("This run trains inside the app (--in-thread) and ends with it: it cannot be detached. To "
                        "train in the background, start without --in-thread, or turn on Detach on the setup screen.",
                        title="Not a detached run", severity="warning", timeout=8)
            return
        session.detach()  # a run the app owns is released: it goes on by itself
        self._after_run = lambda: self._detached(session)

    def _detached(self, session: RemoteSession) -> None:
        hint = attach_command(session.run_dir)
        if self.options.attach:
            self.exit(self.exit_code)
            return
        self._back_to_setup()
        self.notify(f"Detached: run {session.run_id} goes on in the background. Attach again with `{hint}`, "
                    "or r.", timeout=8)

    def action_tweak(self) -> None:
        session = self._active_session("tweak")
        if session is None:
            return
        view = session.view
        if not view.run_id:
            self.notify("The run is still starting.", severity="warning", timeout=3)
            return
        self.push_screen(TweakPanel(view.optimizer_name,
                                    dict(view.hyperparameters), view.step), self._tweaked)

    def _tweaked(self, changes: dict[str, float] | None) -> None:
        session = self.session
        if not changes or session is None or not session.active:
            return
        session.controls.set_hyperparameters(**changes)
        self.notify("Sent: applied at the next step boundary.", timeout=3)

    def action_new_run(self) -> None:
        session = self.session
        if session is None or not session.active:
            self._back_to_setup()
            return
        if session.stop_requested:  # no question to ask: it is saving and stopping already
            self.notify("The run is saving last.pt and stopping; n again once it has stopped sets up a new run.",
                        severity="warning", timeout=4)
            return
        if isinstance(session, RemoteSession) and not session.owned:
            def chose(choice: str | None) -> None:
                if choice is None or not session.active:
                    if choice is not None:
                        self._back_to_setup()
                    return
                if choice == SAVE_AND_STOP:
                    self._set_note("saving last.pt, then back to setup")
                    session.stop("new run")
                else:
                    session.detach()
                self._after_run = self._back_to_setup

            self.push_screen(LeaveModal(f"Run {session.run_id} trains in the background. Set up a new run and "
                                        "leave it running, or save and stop it first?"), chose)
            return

        def answered(yes: bool | None) -> None:
            if yes and session.active:
                self._set_note("saving last.pt, then back to setup")
                session.stop("new run")
                self._after_run = self._back_to_setup
            elif yes:
                self._back_to_setup()

        self.push_screen(ConfirmModal("Save this run to last.pt, stop it and set up a new run?",
                                      confirm="Stop and set up"), answered)

    async def action_quit(self) -> None:
        if self.leaving:
            self.exit(self.exit_code)  # asked twice: do not wait any longer
            return
        session = self.session
        if isinstance(self.screen, (ConfirmModal, LeaveModal)) and self.screen.id == "quit-confirm":
            self.screen.dismiss(True if isinstance(self.screen, ConfirmModal) else LEAVE_RUNNING)
            return
        if self.launching and self.launch_owned and not self._quit_after_launch:
            modal = ConfirmModal("The run is starting. Save it to last.pt, stop it and quit?", confirm="Save and quit")
            modal.id = "quit-confirm"
            self.push_screen(modal, self._quit_once_launched)
            return
        if session is None or not session.active:
            self.exit(self.exit_code)
            return
        if session.stop_requested:
            self.leave("quit", stop=True)  # already saving and stopping ("save and stop", n): no question to ask
            return
        if isinstance(session, RemoteSession) and not session.owned:
            leave = LeaveModal(f"Quit and leave run {session.run_id} training in the background, or save it to "
                               "last.pt and stop it?")
            leave.id = "quit-confirm"
            self.push_screen(leave, lambda choice: self.leave("quit", stop=choice == SAVE_AND_STOP)
                             if choice else None)
            return
        modal = ConfirmModal("A run is training. Save it to last.pt, stop it and quit?", confirm="Save and quit")
        modal.id = "quit-confirm"
        self.push_screen(modal, lambda yes: self.leave("quit") if yes else None)

    def _quit_once_launched(self, yes: bool | None) -> None:
        if not yes:
            return
        if self.launching:
            self._quit_after_launch = True
            self._set_note("the run is starting: it will be saved and stopped, then the app quits")
        else:
            self.leave("quit")

    def leave(self, reason: str, stop: bool = False) -> None:
        """Save a training run to last.pt and exit once it is written (or after the grace period). A
        detached run is left training, unless `stop`."""
        self.leaving = True
        session = self.session
        if session is None or not session.active:
            self.exit(self.exit_code)
            return
        if isinstance(session, RemoteSession) and not session.owned and not stop:
            session.detach()
            self.exit(self.exit_code)
            return
        if not session.stop_requested:
            session.stop(reason)
        if not session.training.is_set():
            # Still loading data or model: nothing to save yet, and a download may take minutes.
            self.exit(self.exit_code)
            return
        self._set_note("saving last.pt before leaving (ctrl+q again: leave now)")
        self._after_run = lambda: self.exit(self.exit_code)
        self.set_timer(self.exit_grace_s, lambda: self.exit(self.exit_code))

    def on_signal(self, signum: int) -> None:
        """SIGTERM, SIGHUP or SIGINT (in the app's thread): leave without asking (a run in this process
        is saved first; a detached run goes on)."""
        self.exit_code = 128 + signum
        self.leave(signal.Signals(signum).name)

    def request_leave(self, signum: int) -> None:
        """From another thread: stop every run of this process (each saves last.pt), let go of detached
        ones (they go on training), and ask the app to leave."""
        self.exit_code = 128 + signum
        for session in list(self.sessions):
            session.let_go(signal.Signals(signum).name)
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(self.on_signal, signum)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpModal):
            return
        screen = self.screen
        rows: list[tuple[str, str]] = []
        for binding in getattr(type(screen), "BINDINGS", []):
            if isinstance(binding, Binding) and binding.description:
                row = (binding.key_display or self.get_key_display(binding), binding.tooltip or binding.description)
                if row not in rows:  # space: Pause and Resume are one key
                    rows.append(row)
        rows += getattr(screen, "HELP_EXTRA", [])
        rows += self.HELP_GLOBAL
        title = "Keys: dashboard" if isinstance(screen, DashboardScreen) else "Keys: setup"
        self.push_screen(HelpModal(title, rows))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        if isinstance(screen, DashboardScreen):
            yield SystemCommand("Pause or resume", "Pause training (no CPU while paused) or resume it (space)",
                                self.action_toggle_pause)
            yield SystemCommand("Save checkpoint", "Save the run now, or at the next step boundary (s)",
                                self.action_save)
            yield SystemCommand("Live tweaks", "Change learning rate, weight decay, momentum (e)",
                                self.action_tweak)
            yield SystemCommand("New run", "Save and stop this run, back to setup (n)", self.action_new_run)
            yield SystemCommand("Detach", "Leave a detached run training in the background, close its view (d)",
                                self.action_detach)
        if isinstance(screen, SetupScreen):
            yield SystemCommand("Start training", "Start a run with the form's settings (ctrl+r)",
                                screen.action_start)
        yield SystemCommand("Load checkpoint", "Restore a saved run; it waits paused (l)", self.action_load)
        yield SystemCommand("Runs", "The runs of the checkpoint folder; attach to a live one (r)", self.action_runs)
        yield SystemCommand("Keys", "Every key of this screen (?)", self.action_help)
        yield from (command for command in super().get_system_commands(screen) if command.title != "Keys")

    # ------------------------------------------------------------ leaving

    def wait_for_training(self, timeout_s: float) -> bool:
        """After the app has exited: stop any run still training in this process (saving last.pt), let
        go of detached ones, and wait for their threads, at most timeout_s. True when none is left."""
        remaining = [session for session in self.sessions if session.active]
        for session in remaining:
            session.let_go("exit")
        return all(session.finished.wait(timeout_s if session.training.is_set() or session.remote
                                         else min(timeout_s, SETUP_WAIT_S))
                   for session in remaining)


def stop_engine(info: RunInfo) -> None:
    """Ask an engine process to save and stop (SIGTERM: its handler does both)."""
    from tui_trainer.engine.runinfo import process_alive

    if process_alive(info.pid, info.process_started_at):
        with contextlib.suppress(OSError):
            os.kill(info.pid, signal.SIGTERM)


def check_options(options: LaunchOptions) -> str:
    """The command line's preset and overrides, checked before the screen opens; "" when fine."""
    if options.resume:
        return "" if Path(options.resume).expanduser().is_file() else f"{options.resume}: no such file"
    try:
        resolve_config(options)
    except ConfigError as error:
        return str(error)
    return ""


def run_app(options: LaunchOptions) -> int:
    """Open the app; returns the exit code (0; 2 for a bad command line; 128 + N after signal N).

    Leaving never hangs: a run still training is told to save last.pt and given EXIT_GRACE_S to end;
    past that the process ends without waiting for the training thread.
    """
    problem = check_options(options)
    if problem:
        print(f"tui-trainer: error: {problem}", file=sys.stderr)
        return 2
    app = TrainerApp(options)
    # Our own loop: asyncio.run() would wait without end for a training thread that does not stop.
    loop = asyncio.new_event_loop()
    with leave_on_signals(app):
        try:
            app.run(loop=loop)
            if app.launching and app.launch_owned:
                _say(f"tui-trainer: {app.launching} was still starting; it saves last.pt and stops by itself")
            elif app.launching:
                _say(f"tui-trainer: {app.launching} is still starting; it goes on in the background "
                     "(`tui-trainer runs` lists it)")
        finally:
            if any(session.active and (not session.remote or getattr(session, "owned", False))
                   for session in app.sessions):
                _say("tui-trainer: saving the run to last.pt ...")
            if not app.wait_for_training(EXIT_GRACE_S):
                _say("tui-trainer: the training thread did not end; leaving without it")
                sys.stdout.flush()
                os._exit(app.exit_code or 1)
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
    for line in closing_lines(app):
        _say(line)
    return app.exit_code if app.return_code in (None, 0) else app.return_code


def closing_lines(app: TrainerApp) -> list[str]:
    """What the shell shows once the app has closed: where each run of it ended, or that it goes on."""
    lines: list[str] = []
    going_on: dict[str, str] = {}
    for session in app.sessions:
        view, result = session.view, session.result
        for event in session.take():  # the last events, which the app closed too soon to draw
            view.apply(event)
        name = view.run_id or session.name
        if result is not None and result.checkpoint:
            lines.append(f"{name}: {result.state} {result.where()}; last checkpoint "
                         f"{result.checkpoint}")
        elif isinstance(session, RemoteSession) and session.detached and result is None and session.ending is None:
            if session.stop_requested:
                lines.append(f"{name}: told to save last.pt and stop, which it does by itself (`tui-trainer runs` "
                             "shows when it has stopped)")
            else:
                going_on[session.run_dir] = session.run_id
    for info in app.unattached:
        going_on[info.run_dir] = info.run_id
    for run_dir, run_id in going_on.items():
        lines.append(f"{run_id}: goes on in the background; attach with `{attach_command(run_dir)}`")
    return lines


def _say(text: str) -> None:
    # After SIGHUP the terminal may be gone: a failed write must not turn a clean exit into a crash.
    with contextlib.suppress(OSError):
        print(text)
