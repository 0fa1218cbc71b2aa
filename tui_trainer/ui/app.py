"""TrainerApp: the screens, the app-wide keys and actions, and the bridge from a run's events to widgets.

The app shows one run at a time through a run handle (ui.handle): a run in an engine process of its own (the
default: training never shares the interpreter lock with the UI) or a background run, reached through its
socket, or with --in-thread a Trainer in a thread of this process. The app never asks which: each handle says
whether it ends with the app, can go on alone, and where its figures come from. What is shown, what is being
started and what comes next is the Lifecycle (ui.lifecycle), which the app asks and then draws.

A handle's events wait in its queue; the first one after a drain posts one message here, and the app drains
the batch at most a few times a second, redraws the charts at most once a second and samples the devices every
two seconds. With nothing new (paused, finished) only the device sample runs, every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from tui_trainer.config import ConfigError, RunConfig, UntrustedCode
from tui_trainer.engine.events import CheckpointFailed, CheckpointSaved, RunStarted
from tui_trainer.errors import UserError, one_line
from tui_trainer.launch import LaunchOptions, resolve_config
from tui_trainer.logs import get_logger
from tui_trainer.runs.hosting import Hosting
from tui_trainer.runs.registry import RunInfo
from tui_trainer.runs.request import RunRequest
from tui_trainer.text import printable
from tui_trainer.ui.handle import Handles, RunHandle
from tui_trainer.ui.heap import freeze_long_lived, thaw_long_lived
from tui_trainer.ui.lifecycle import (
    AttachTo,
    BackToSetup,
    Exit,
    Lifecycle,
    OnLeave,
    OnQuit,
    OnStarted,
    Released,
    StartLoaded,
    Then,
)
from tui_trainer.ui.run_view import LogLine, RunView
from tui_trainer.ui.screens.checkpoints import LoadChoice, LoadPanel, SavePanel, trust_question
from tui_trainer.ui.screens.confirm import ConfirmModal
from tui_trainer.ui.screens.dashboard import DashboardScreen
from tui_trainer.ui.screens.help import HelpModal
from tui_trainer.ui.screens.leave import LEAVE_RUNNING, SAVE_AND_STOP, LeaveModal
from tui_trainer.ui.screens.runs import ATTACH, RunChoice, RunsPanel
from tui_trainer.ui.screens.setup import SetupScreen
from tui_trainer.ui.screens.tweaks import TweakPanel
from tui_trainer.ui.signals import leave_on_signals
from tui_trainer.ui.socket_handle import attach_command
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
READY_TICK_S = 0.05
READY_QUIET_CPU_S = 0.003
READY_WAIT_MAX_S = 0.5
"""The app's own engine starts training once the dashboard is up and the UI thread quiet: see _ready_when_quiet."""


log = get_logger("app")


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
        """The run's worker queued events since the last drain."""

    def __init__(self, options: LaunchOptions | None = None, *, handles: Handles | None = None,
                 drain_interval_s: float = 0.25, chart_interval_s: float = 1.0,
                 chart_cpu_share: float | None = CHART_CPU_SHARE, device_interval_s: float = 2.0,
                 idle_device_interval_s: float = IDLE_DEVICE_INTERVAL_S, exit_grace_s: float = EXIT_GRACE_S) -> None:
        super().__init__()
        self.options = options or LaunchOptions()
        self.handle_source = handles or Handles()
        self.runs = Lifecycle()
        self.exit_grace_s = exit_grace_s
        self.setup_screen = SetupScreen(self.options)
        self.dashboard: DashboardScreen | None = None
        self.exit_code = 0
        self._worker: Worker | None = None
        self._monitor: DeviceMonitor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_throttle = Throttle(self, drain_interval_s, self.drain)
        self._chart_throttle = Throttle(self, chart_interval_s, self._redraw_charts)
        self.chart_interval_s = chart_interval_s
        self.chart_cpu_share = chart_cpu_share
        self.device_interval_s = device_interval_s
        self.idle_device_interval_s = idle_device_interval_s
        self._device_throttle = Throttle(self, device_interval_s, self._sample_devices)

    @property
    def handle(self) -> RunHandle | None:
        """The run shown (live or ended); None on the setup screen."""
        return self.runs.handle

    @property
    def handles(self) -> list[RunHandle]:
        """Every run of this app, oldest first."""
        return self.runs.handles

    @property
    def leaving(self) -> bool:
        return self.runs.leaving

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
        self.call_after_refresh(self._warm_up)
        if self.options.resume:
            self.call_after_refresh(self._open_resume)
        elif self.options.start:
            self.call_after_refresh(self.setup_screen.start_when_ready)

    @property
    def top(self) -> Screen | None:
        """The screen on top; None while the app is being taken down."""
        return self.screen_stack[-1] if self.screen_stack else None

    def _warm_up(self) -> None:
        """While the user chooses, ready what the next run needs (an engine process waiting for it, or the
        imports of a run in this thread); not for torchrun's processes, which start as they always do."""
        if self.options.processes <= 1:
            self.handle_source.warm_up(in_thread=self.options.in_thread)

    def on_unmount(self) -> None:
        for throttle in (self._drain_throttle, self._chart_throttle, self._device_throttle):
            throttle.cancel()
        self.handle_source.close()
        thaw_long_lived()

    def _open_resume(self) -> None:
        """--resume: read the checkpoint's config off the UI thread (it imports torch), then start."""
        self.run_worker(self._read_resume_config, thread=True, exit_on_error=False, group="resume")

    def _read_resume_config(self) -> RunConfig:
        config, _ = resolve_config(self.options)
        return config

    def _resume_config_ready(self, worker: Worker, state: WorkerState) -> None:
        log.info("resume config: %s %s", state.name, one_line(worker.error) if worker.error else "")
        options = self.options
        if state == WorkerState.SUCCESS and worker.result is not None:
            paused = not options.start
            if options.detach or options.processes > 1:
                self.start_in_processes(options.request, in_background=True, processes=options.processes,
                                        paused=paused, what=Path(options.resume or "").name)
            else:
                self.start_run(worker.result, options.request, resume_from=options.resume, start_paused=paused)
        elif isinstance(worker.error, UntrustedCode) and state == WorkerState.ERROR:
            self._ask_to_trust(options.resume or "", worker.error)
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

    # ------------------------------------------------------------ starting and showing runs

    def start_run(self, config: RunConfig, request: RunRequest, *, resume_from: str | None = None,
                  start_paused: bool = False, from_setup: bool = False) -> None:
        """Start a run that ends with the app: in an engine process of its own (built there from `request`), or
        with --in-thread in a training thread of this process (from `config`)."""
        if not self.options.in_thread:
            self.start_in_processes(request, in_background=False, paused=start_paused, what=config.name,
                                    from_setup=from_setup)
            return
        handle = self.handle_source.train_here(config, notify=self._wake, resume_from=resume_from,
                                               start_paused=start_paused)
        self._show(handle, "loading data and model" if not resume_from else "restoring the checkpoint",
                   f"Loading {resume_from}" if resume_from else "", f"training {config.name}", from_setup=from_setup)

    def attach_run(self, run_dir: str, *, pause: bool = False, ends_with_app: bool = False) -> None:
        """Show a run in another process: its whole history, then live, through its socket."""
        handle = self.handle_source.reach(run_dir, notify=self._wake, pause=pause, ends_with_app=ends_with_app)
        self._show(handle, f"attaching to {handle.name}", f"Attaching to {handle.name}", f"relaying {handle.name}")

    def _show(self, handle: RunHandle, note: str, log_line: str, description: str, *, from_setup: bool = False) -> None:
        self.runs.opened(handle, from_setup=from_setup)
        self._monitor = None
        if self.dashboard is None:
            self.dashboard = DashboardScreen(self.runs)
            self.dashboard.view = handle.view
            self.push_screen(self.dashboard)
        else:
            if log_line:
                self.dashboard.log_lines([LogLine(log_line)])
            self.dashboard.attach(handle.view)
        self._set_note(note)
        self._worker = self.run_worker(handle.work, name="trainer", group="trainer", thread=True,
                                       exit_on_error=False, description=description)

    def start_in_processes(self, request: RunRequest, *, in_background: bool, processes: int = 1,
                           paused: bool = False, what: str = "", from_setup: bool = False) -> None:
        """Start a run in processes of its own, in a worker thread (it returns once the engine trains), then
        show it. in_background: it trains on without the app; else it is the app's own engine (ends with it)."""
        starting = self.runs.start_process(what, paused=paused, ends_with_app=not in_background,
                                           from_setup=from_setup)
        from tui_trainer.detached.launcher import Launch

        hosting = Hosting.detached(processes) if in_background else Hosting.engine_of_app(os.getpid())
        # Paused: the engine itself waits before its first step, so nothing trains unwatched meanwhile.
        launch = Launch(request, hosting, start_paused=paused, pause_on_fault=True)
        self.setup_screen.show_launching(True)
        if in_background:
            self._set_note(f"starting {starting.what} in the background")
            self.notify(f"Starting {starting.what} in the background ...", timeout=4)
        else:
            self._set_note("starting the engine process")
        log.info("starting %s (in background=%s, paused=%s)", starting.what, in_background, paused)
        self.run_worker(lambda: self.handle_source.start_process(launch), thread=True, exit_on_error=False,
                        group="start", name="start", description=f"starting {starting.what}")

    def _process_started(self, worker: Worker, state: WorkerState) -> None:
        log.info("start ended: %s %s", state.name, one_line(worker.error) if worker.error else "")
        starting = self.runs.starting
        self.setup_screen.show_launching(False)
        if state == WorkerState.SUCCESS and worker.result is not None and starting is not None:
            info: RunInfo = worker.result
            match self.runs.process_started(info):
                case OnStarted.STOP_IT_AND_EXIT:
                    self.handle_source.stop_process(info)
                    self.leave("quit")
                case OnStarted.STOP_IT:
                    self.handle_source.stop_process(info)
                case OnStarted.LEAVE_IT:
                    pass
                case OnStarted.SHOW:
                    self._show_started(info, starting.paused, starting.ends_with_app)
        elif state == WorkerState.ERROR and worker.error is not None:
            self.runs.process_failed()
            self._set_note("")
            error = worker.error
            message = one_line(error)
            self.notify(message, title="Could not start", severity="error", timeout=10)
            if self.dashboard is not None:
                self.dashboard.update([LogLine(f"Could not start: {message}", "error")])
            elif isinstance(error, UserError) and self.setup_screen.is_mounted:
                self.setup_screen.show_start_error(error)

    def _show_started(self, info: RunInfo, paused: bool, ends_with_app: bool) -> None:
        self.attach_run(info.run_dir, pause=paused, ends_with_app=ends_with_app)
        waits = "; it waits paused (space starts it)" if paused else ""
        if ends_with_app:
            if waits:
                self.notify(f"Loaded{waits}.", timeout=4)
            return
        self.notify(f"Run {info.run_id} trains in the background (pid {info.pid}){waits}. d detaches; "
                    "quitting asks whether to leave it running.", timeout=6)

    def on_setup_screen_run_configured(self, message: SetupScreen.RunConfigured) -> None:
        busy = self.runs.busy()
        if busy:
            self.notify(busy, severity="warning")
            return
        if message.in_background:
            self.start_in_processes(message.request, in_background=True, processes=message.processes,
                                    what=message.config.name, from_setup=True)
        else:
            self.start_run(message.config, message.request, from_setup=True)

    # ------------------------------------------------------------ events to widgets

    def _wake(self) -> None:
        # Called from the run's worker thread: returns at once (a thread-safe post).
        self.post_message(self.EventsQueued())

    def on_trainer_app_events_queued(self, message: EventsQueued) -> None:
        self._drain_throttle.request()

    def drain(self) -> None:
        """Take every queued event into the run's view and update the widgets in one batch."""
        handle = self.handle
        if handle is None:
            return
        events = handle.take()
        if not events:
            return
        view = handle.view
        lines: list[LogLine] = []
        for event in events:
            lines += view.apply(event)
            if isinstance(event, RunStarted):
                self._set_note("", refresh=False)
                self._device_throttle.request()
                self.call_after_refresh(freeze_long_lived)
                if handle.waits_to_be_shown:
                    self._ready_when_quiet(handle)
            elif isinstance(event, (CheckpointSaved, CheckpointFailed)) and isinstance(self.top, SavePanel):
                self.top.checkpoint_result(event)
        if isinstance(self.top, TweakPanel):
            self.top.show_step(view.step)
        if view.state in ("running", "paused"):
            handle.paused_intent = view.state == "paused"
        if self.dashboard is not None:
            self.dashboard.update(lines)
            if self.dashboard.charts_stale():
                self._chart_throttle.request()
        if view.state == "running" and self._device_throttle.interval_s != self.device_interval_s:
            self._device_throttle.cancel()  # resumed: no waiting out the idle interval
            self._next_device_sample(view)

    def _ready_when_quiet(self, handle: RunHandle, cpu_s: float | None = None, waited_s: float = 0.0) -> None:
        """Let a run waiting for the app start training once this thread has drawn the dashboard and gone quiet
        (a tick of READY_TICK_S with under READY_QUIET_CPU_S of its CPU; READY_WAIT_MAX_S at most): the first
        frames (layout, the footer rebuilt as focus settles: about 60 ms of CPU here) then do not share the CPU
        with the first steps."""
        now = time.thread_time()
        if cpu_s is not None and (now - cpu_s < READY_QUIET_CPU_S or waited_s >= READY_WAIT_MAX_S):
            handle.shown()
            return
        self.set_timer(READY_TICK_S, lambda: self._ready_when_quiet(handle, now, waited_s + READY_TICK_S))

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
        handle = self.handle
        if handle is None or self.dashboard is None or not handle.view.device:
            return
        if self._monitor is None or self._monitor.device != handle.view.device:
            self._monitor = handle.device_monitor()
        try:
            samples = self._monitor.sample(handle.view.engine_devices or None)
        except Exception as error:  # a driver hiccup must not end the app
            self.dashboard.log_lines([LogLine(f"Device figures unavailable: {one_line(error)}", "warning")])
        else:
            self.dashboard.show_devices(samples)
        self._next_device_sample(handle.view)

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

    # ------------------------------------------------------------ a run's worker ended

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == "resume":
            self._resume_config_ready(worker, event.state)
            return
        if worker.group == "start" and event.state in (WorkerState.SUCCESS, WorkerState.ERROR):
            self._process_started(worker, event.state)
            return
        if worker is not self._worker or event.state not in (WorkerState.SUCCESS, WorkerState.ERROR,
                                                             WorkerState.CANCELLED):
            return
        self.drain()
        self._worker = None
        handle = self.handle
        if handle is None:
            return
        if event.state == WorkerState.ERROR and worker.error is not None:
            self._could_not_open(handle, worker.error)
        else:
            self._worker_ended(handle)
        if isinstance(self.top, SavePanel):
            self.top.run_ended()
        self._set_note("")
        then = self.runs.worker_ended(handle)
        if then is not None:
            self.carry_out(then)

    def _could_not_open(self, handle: RunHandle, error: BaseException) -> None:
        message = one_line(error)
        handle.view.state = handle.failed_state()
        handle.view.reason = message
        if self.dashboard is not None:
            self.dashboard.update([LogLine(f"Could not {handle.verb}: {message}", "error")])
        self.notify(message, title=f"Could not {handle.verb}", severity="error", timeout=10)
        if self.runs.from_setup and isinstance(error, UserError) and not self.leaving:
            # The run never started: back to the form, the field the error names marked.
            self._back_to_setup()
            self.setup_screen.show_start_error(error)

    def _worker_ended(self, handle: RunHandle) -> None:
        """The run's worker ended: say how (finished, released, lost) on the dashboard."""
        lines = handle.ended_lines()
        lost = handle.lost_because()
        if lost:
            self.notify(f"Run {handle.name} is lost: {lost}", severity="error", timeout=10)
        if self.dashboard is not None and self.dashboard.view is handle.view:
            self.dashboard.update(lines)

    def carry_out(self, then: Then) -> None:
        """What comes after the shown run has ended."""
        match then:
            case BackToSetup():
                self._back_to_setup()
            case AttachTo(run_dir):
                self.attach_run(run_dir)
            case StartLoaded(choice, in_background, processes):
                self._start_loaded(choice, in_background, processes)
            case Exit():
                self.exit(self.exit_code)
            case Released(handle):
                self._released(handle)

    def end_shown_run(self, then: Then, *, note: str = "", reason: str = "", release: bool = False) -> None:
        """Stop the shown run (it saves last.pt), or let go of it (`release`: it trains on), and `then` once its
        worker has ended; at once when it has ended already."""
        handle = self.runs.live
        if handle is None:
            self.carry_out(then)
            return
        self.runs.end(then)
        if release:
            handle.release()
            return
        if note:
            self._set_note(note)
        handle.stop(reason or note)

    def _released(self, handle: RunHandle) -> None:
        if self.options.attach:
            self.exit(self.exit_code)
            return
        self._back_to_setup()
        self.notify(f"Detached: run {handle.name} goes on in the background. Attach again with "
                    f"`{attach_command(handle.run_dir)}`, or r.", timeout=8)

    def _back_to_setup(self) -> None:
        while len(self.screen_stack) > 1 and not isinstance(self.screen, SetupScreen):
            self.pop_screen()
        if not isinstance(self.screen, SetupScreen):
            self.push_screen(self.setup_screen)  # the app opened on a detached run, straight to the dashboard
        self.setup_screen.focus_presets()
        self.dashboard = None
        self.runs.back_to_setup()
        self._warm_up()

    # ------------------------------------------------------------ app-wide actions (keys and command palette)

    def action_load(self) -> None:
        if isinstance(self.screen, LoadPanel):
            return
        self.push_screen(LoadPanel(self._checkpoint_folder()), self._load_chosen)

    def _checkpoint_folder(self) -> str:
        if self.handle is not None:
            return self.handle.checkpoint_dir
        values = self.setup_screen.values() if self.setup_screen.is_mounted else {}
        return values.get("checkpoint_dir") or self.options.overrides.get("checkpoint.dir") or "checkpoints"

    def _load_chosen(self, choice: LoadChoice | None) -> None:
        if choice is None:
            return
        if self.runs.starting is not None:
            self.notify(self.runs.busy() or "", severity="warning")
            return
        handle = self.handle
        # A background run's checkpoint goes on in the background (as many processes); from setup, as the form.
        if handle is not None:
            in_background = not handle.ends_with_app
            processes = handle.view.world_size if in_background else 1
        else:
            in_background, processes = self.setup_screen.detach_wanted(), self.setup_screen.processes
        self.end_shown_run(StartLoaded(choice, in_background, processes),
                           note=f"saving last.pt, then loading {Path(choice.path).name}",
                           reason=f"loading {choice.path}")

    def _start_loaded(self, choice: LoadChoice, in_background: bool = False, processes: int = 1) -> None:
        trusted = tuple(target for _, target in choice.imports)  # the load panel asked before choosing it
        request = RunRequest(resume=choice.path, trusted_imports=trusted)
        if in_background:
            self.start_in_processes(request, in_background=True, processes=processes, paused=True,
                                    what=Path(choice.path).name)
            return
        self.start_run(choice.config, request, resume_from=choice.path, start_paused=True)
        if self.options.in_thread:
            self.notify("Loaded; the run waits paused: space starts it.", timeout=4)

    def action_runs(self) -> None:
        if isinstance(self.screen, RunsPanel):
            return
        shown = self.runs.live
        self.push_screen(RunsPanel(self._checkpoint_folder(), shown.run_dir if shown else None), self._run_chosen)

    def _run_chosen(self, choice: RunChoice | None) -> None:
        if choice is None:
            return
        info = choice.info
        if choice.action != ATTACH:
            self.push_screen(LoadPanel(info.run_dir), self._load_chosen)
            return
        handle = self.runs.live
        if handle is None:
            self.attach_run(info.run_dir)
        elif not handle.ends_with_app:
            self.end_shown_run(AttachTo(info.run_dir), release=True)  # it goes on; attach once let go of
        else:
            def answered(yes: bool | None) -> None:
                if yes:
                    self.end_shown_run(AttachTo(info.run_dir), note=f"saving last.pt, then attaching to "
                                       f"{info.run_id}")

            self.push_screen(ConfirmModal(f"Save this run to last.pt, stop it and attach to {info.run_id}?",
                                          confirm="Stop and attach"), answered)

    async def action_quit(self) -> None:
        screen = self.screen
        asking = isinstance(screen, (ConfirmModal, LeaveModal)) and screen.id == "quit-confirm"
        answer = self.runs.on_quit(asking=asking)
        if answer is OnQuit.AGAIN:
            self.exit(self.exit_code)  # asked twice: do not wait any longer
            return
        if asking:
            screen.dismiss(True if isinstance(screen, ConfirmModal) else LEAVE_RUNNING)
            return
        handle = self.runs.live
        match answer:
            case OnQuit.EXIT:
                self.exit(self.exit_code)
            case OnQuit.ALREADY_STOPPING:
                self.leave("quit", stop=True)  # already saving and stopping ("save and stop", n): nothing to ask
            case OnQuit.CONFIRM_WHILE_STARTING:
                self._ask_quit(ConfirmModal("The run is starting. Save it to last.pt, stop it and quit?",
                                            confirm="Save and quit"), self._quit_once_started)
            case OnQuit.LEAVE_OR_STOP if handle is not None:
                self._ask_quit(LeaveModal(f"Quit and leave run {handle.name} training in the background, or save "
                                          "it to last.pt and stop it?"),
                               lambda choice: self.leave("quit", stop=choice == SAVE_AND_STOP) if choice else None)
            case _:
                self._ask_quit(ConfirmModal("A run is training. Save it to last.pt, stop it and quit?",
                                            confirm="Save and quit"), lambda yes: self.leave("quit") if yes else None)

    def _ask_quit(self, modal: Screen, answered) -> None:
        modal.id = "quit-confirm"
        self.push_screen(modal, answered)

    def _quit_once_started(self, yes: bool | None) -> None:
        if not yes:
            return
        if self.runs.quit_once_started():
            self._set_note("the run is starting: it will be saved and stopped, then the app quits")
        else:
            self.leave("quit")

    def leave(self, reason: str, stop: bool = False) -> None:
        """Save a run that ends with the app to last.pt and exit once it is written (or after the grace
        period). A run that can go on alone is left training, unless `stop`."""
        if self.runs.leave(reason, stop=stop) is OnLeave.EXIT_NOW:
            self.exit(self.exit_code)
            return
        self._set_note("saving last.pt before leaving (ctrl+q again: leave now)")
        self.set_timer(self.exit_grace_s, lambda: self.exit(self.exit_code))

    def on_signal(self, signum: int) -> None:
        """SIGTERM, SIGHUP or SIGINT (in the app's thread): leave without asking (a run that ends with the app
        is saved first; a background run goes on)."""
        self.exit_code = 128 + signum
        self.leave(signal.Signals(signum).name)

    def request_leave(self, signum: int) -> None:
        """From another thread: every run that ends with the app saves and stops, the others are let go of
        (they go on training); then ask the app to leave."""
        self.exit_code = 128 + signum
        self.runs.let_go_of_all(signal.Signals(signum).name)
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
            yield from screen.system_commands()
        if isinstance(screen, SetupScreen):
            yield SystemCommand("Start training", "Start a run with the form's settings (ctrl+r)",
                                screen.action_start)
        yield SystemCommand("Load checkpoint", "Restore a saved run; it waits paused (l)", self.action_load)
        yield SystemCommand("Runs", "The runs of the checkpoint folder; attach to a live one (r)", self.action_runs)
        yield SystemCommand("Keys", "Every key of this screen (?)", self.action_help)
        yield from (command for command in super().get_system_commands(screen) if command.title != "Keys")

    # ------------------------------------------------------------ after the app has exited

    def wait_for_training(self, timeout_s: float) -> bool:
        """Stop any run still training that ends with the app (saving last.pt), let go of the others, and wait
        for their workers, at most timeout_s. True when none is left."""
        remaining = [handle for handle in self.handles if handle.active and handle.began.is_set()]
        for handle in remaining:
            handle.leave("exit")
        return all(handle.finished.wait(handle.exit_wait_s(timeout_s)) for handle in remaining)


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
            starting = app.runs.starting
            if starting is not None and starting.ends_with_app:
                _say(f"tui-trainer: {starting.what} was still starting; it saves last.pt and stops by itself")
            elif starting is not None:
                _say(f"tui-trainer: {starting.what} is still starting; it goes on in the background "
                     "(`tui-trainer runs` lists it)")
        finally:
            if any(handle.active and handle.ends_with_app for handle in app.handles):
                _say("tui-trainer: saving the run to last.pt ...")
            if not app.wait_for_training(EXIT_GRACE_S):
                _say("tui-trainer: the training thread did not end; leaving without it")
                sys.stdout.flush()
                os._exit(app.exit_code or 1)
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
    for line in app.runs.closing_lines():
        _say(line)
    return app.exit_code if app.return_code in (None, 0) else app.return_code


def _say(text: str) -> None:
    # After SIGHUP the terminal may be gone: a failed write must not turn a clean exit into a crash.
    with contextlib.suppress(OSError):
        print(text)
