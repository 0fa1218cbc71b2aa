"""The dashboard: status, loss and metric charts, the device panel and the event log of one run, and the
actions on that run (pause, save, tweak, detach, new run).

The screen holds no run state of its own: the app drains the run's events into a RunView and tells the screen
what to redraw; what the run allows now comes from the app's Lifecycle, and `check_action` shows it in the
footer (a key that does nothing now is dimmed; Pause and Resume share space). Charts redraw only while this
screen is the one on top.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer

from tui_trainer.engine.devices import DeviceSample
from tui_trainer.ui.lifecycle import BackToSetup, Lifecycle, Released
from tui_trainer.ui.run_view import LogLine, RunView
from tui_trainer.ui.screens.checkpoints import SavePanel, default_name
from tui_trainer.ui.screens.confirm import ConfirmModal
from tui_trainer.ui.screens.leave import SAVE_AND_STOP, LeaveModal
from tui_trainer.ui.screens.tweaks import TweakPanel
from tui_trainer.ui.widgets.charts import MetricChart, loss_lines, metric_lines, metric_title
from tui_trainer.ui.widgets.event_log import EventLog
from tui_trainer.ui.widgets.gauges import DevicePanel
from tui_trainer.ui.widgets.status import FaultBanner, StatusBar

if TYPE_CHECKING:
    from tui_trainer.ui.app import TrainerApp
    from tui_trainer.ui.handle import RunHandle

PALETTE_IN_FOOTER_FROM = 90
"""Terminal columns from which the footer also shows ^p palette."""
RUN_ACTIONS = ("pause", "resume", "save", "tweak", "detach")
"""Actions on the shown run: available only while it takes commands."""


class DashboardScreen(Screen[None]):
    BINDINGS = [
        # One key, two names: the footer says what space does now (check_action shows one of them).
        Binding("space", "pause", "Pause", tooltip="Pause or resume training (no CPU while paused)"),
        Binding("space", "resume", "Resume", tooltip="Pause or resume training (no CPU while paused)"),
        Binding("s", "save", "Save", tooltip="Save a checkpoint (at the next step boundary)"),
        Binding("l", "app.load", "Load", tooltip="Load a checkpoint; this run is saved and stopped first"),
        Binding("e", "tweak", "Tweak", tooltip="Change learning rate, weight decay, momentum live"),
        Binding("n", "new_run", "New run", tooltip="Save and stop this run, back to the setup screen"),
        Binding("d", "detach", "Detach",
                tooltip="Detached runs: leave the run training in the background and close its view"),
        Binding("r", "app.runs", "Runs", show=False,
                tooltip="The runs of the checkpoint folder; attach to a live one"),
        Binding("q", "app.quit", "Quit", show=False, tooltip="Quit (the run is saved to last.pt first)"),
        Binding("question_mark", "app.help", "Keys", key_display="?", tooltip="Every key"),
    ]
    HELP_EXTRA = [
        ("tab", "Focus the event log"),
        ("up down pgup pgdn", "Scroll the focused event log (home, end: oldest, newest)"),
    ]

    def __init__(self, runs: Lifecycle | None = None) -> None:
        super().__init__(id="dashboard")
        self.runs = runs or Lifecycle()
        """The app's run lifecycle: which run is shown and whether it takes commands now."""
        self.view: RunView | None = None
        self.note = ""
        self._shown_actions: tuple[bool, ...] = ()
        """What the footer was last drawn for (see _actions_now)."""
        # Held here, not queried: the app may update the screen while it is being taken down.
        self.status = StatusBar(id="status")
        self.fault = FaultBanner(id="fault")
        self.loss_chart = MetricChart("Loss", id="loss-chart")
        self.metric_chart = MetricChart("Accuracy", id="metric-chart")
        self.devices = DevicePanel(id="devices")
        self.log_view = EventLog(id="log")
        self.footer = Footer()

    def compose(self) -> ComposeResult:
        yield self.status
        yield self.fault
        with Horizontal(id="charts"):
            yield self.loss_chart
            yield self.metric_chart
        with Horizontal(id="lower"):
            yield self.devices
            yield self.log_view
        yield self.footer

    def on_mount(self) -> None:
        self.fault.display = False
        if self.view is not None:
            self.attach(self.view)

    def attach(self, view: RunView) -> None:
        """Show a (new) run: reset the charts, keep the log."""
        self.view = view
        for chart in (self.loss_chart, self.metric_chart):
            chart.drawn_version = -1
        self.update([], self.note)
        self.redraw_charts()

    def update(self, lines: list[LogLine], note: str | None = None) -> None:
        """After a drain: the log's new lines, the status and the fault banner."""
        if self.view is None or not self.is_attached or not self.status.is_attached:
            return
        if note is not None:
            self.note = note
        self.log_view.add(lines)
        self.status.show(self.view, self.note)
        self.fault.show(self.view.fault if self.view.state == "paused" else None)
        actions = self._actions_now()
        if actions != self._shown_actions:
            self._shown_actions = actions
            self.refresh_bindings()

    @property
    def paused(self) -> bool:
        return self.view is not None and self.view.state == "paused"

    # ------------------------------------------------------------ what the run allows now

    @property
    def trainer_app(self) -> TrainerApp:
        return self.app  # type: ignore[return-value]

    def _steerable(self) -> RunHandle | None:
        """The run shown here while it takes commands and has started (it has a run id)."""
        handle = self.runs.steerable
        if handle is None or handle.view is not self.view or not handle.view.run_id:
            return None
        return handle

    def _actions_now(self) -> tuple[bool, ...]:
        handle = self._steerable()
        return (self.paused, handle is not None, handle is not None and handle.can_go_on_alone)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action not in RUN_ACTIONS:
            return True
        if action in ("pause", "resume") and (action == "resume") != self.paused:
            return False  # one key, two names: the footer shows the one space does now
        shown = self.runs.handle
        if action == "detach" and shown is not None and not shown.can_go_on_alone:
            return False  # a run in the app's own thread can never go on without it
        return True if self._steerable() is not None else None

    def _unavailable(self, doing: str) -> RunHandle | None:
        """The run for an action from the command palette, or None after saying why not."""
        runs = self.runs
        why = runs.unavailable(doing)
        if why is None and not (runs.steerable and runs.steerable.view.run_id):
            why = "The run is still starting."
        if why is not None:
            self.notify(why, severity="warning", timeout=3)
            return None
        return runs.steerable

    # ------------------------------------------------------------ actions

    def action_pause(self) -> None:
        self._toggle_pause()

    def action_resume(self) -> None:
        self._toggle_pause()

    def _toggle_pause(self) -> None:
        handle = self._unavailable("pause")
        if handle is None:
            return
        handle.paused_intent = not handle.paused_intent
        if handle.paused_intent:
            handle.controls.pause()
        else:
            handle.controls.resume()

    def action_save(self) -> None:
        handle = self._unavailable("save")
        if handle is None:
            return
        view = handle.view
        folder = view.run_dir or str(Path(handle.checkpoint_dir).expanduser())
        self.app.push_screen(SavePanel(default_name(view.run_id, view.epoch, view.step), folder,
                                       send=handle.controls.save, paused=view.state == "paused"), self._saved)

    def _saved(self, path: str | None) -> None:
        if path:
            self.notify(f"Saved {Path(path).name}", timeout=3)

    def action_tweak(self) -> None:
        handle = self._unavailable("tweak")
        if handle is None:
            return
        view = handle.view
        self.app.push_screen(TweakPanel(view.optimizer_name, dict(view.hyperparameters), view.step), self._tweaked)

    def _tweaked(self, changes: dict[str, float] | None) -> None:
        handle = self.runs.steerable
        if not changes or handle is None:
            return
        handle.controls.set_hyperparameters(**changes)
        self.notify("Sent: applied at the next step boundary.", timeout=3)

    def action_detach(self) -> None:
        app = self.trainer_app
        handle = self.runs.live
        if handle is None:
            self.notify("Not attached to a run: nothing to detach from.", severity="warning", timeout=3)
        elif handle.stop_requested:  # it would not go on in the background: it saves and stops
            self.notify("The run is saving last.pt and stopping: nothing to detach.", severity="warning", timeout=4)
        elif not handle.can_go_on_alone:
            self.notify("This run trains inside the app (--in-thread) and ends with it: it cannot be detached. To "
                        "train in the background, start without --in-thread, or turn on Detach on the setup screen.",
                        title="Not a detached run", severity="warning", timeout=8)
        else:
            app.end_shown_run(Released(handle), release=True)  # a run the app owns is released: it goes on

    def action_new_run(self) -> None:
        app = self.trainer_app
        handle = self.runs.live
        if handle is None:
            app.carry_out(BackToSetup())
        elif handle.stop_requested:  # no question to ask: it is saving and stopping already
            self.notify("The run is saving last.pt and stopping; n again once it has stopped sets up a new run.",
                        severity="warning", timeout=4)
        elif not handle.ends_with_app:
            def chose(choice: str | None) -> None:
                if choice == SAVE_AND_STOP:
                    app.end_shown_run(BackToSetup(), note="saving last.pt, then back to setup", reason="new run")
                elif choice is not None:
                    app.end_shown_run(BackToSetup(), release=True)

            app.push_screen(LeaveModal(f"Run {handle.name} trains in the background. Set up a new run and "
                                       "leave it running, or save and stop it first?"), chose)
        else:
            def answered(yes: bool | None) -> None:
                if yes:
                    app.end_shown_run(BackToSetup(), note="saving last.pt, then back to setup", reason="new run")

            app.push_screen(ConfirmModal("Save this run to last.pt, stop it and set up a new run?",
                                         confirm="Stop and set up"), answered)

    def system_commands(self) -> list[SystemCommand]:
        """The command palette's entries for this screen's actions."""
        return [
            SystemCommand("Pause or resume", "Pause training (no CPU while paused) or resume it (space)",
                          self._toggle_pause),
            SystemCommand("Save checkpoint", "Save the run now, or at the next step boundary (s)", self.action_save),
            SystemCommand("Live tweaks", "Change learning rate, weight decay, momentum (e)", self.action_tweak),
            SystemCommand("New run", "Save and stop this run, back to setup (n)", self.action_new_run),
            SystemCommand("Detach", "Leave a detached run training in the background, close its view (d)",
                          self.action_detach),
        ]

    def log_lines(self, lines: list[LogLine]) -> None:
        if self.is_attached:
            self.log_view.add(lines)

    def charts_stale(self) -> bool:
        if self.view is None or not self.is_mounted:
            return False
        return any(chart.stale(self.view.chart_version) for chart in (self.loss_chart, self.metric_chart))

    def redraw_charts(self) -> bool:
        """Redraw the charts whose data moved, if this screen is showing. True when any was drawn."""
        view = self.view
        stack = self.app.screen_stack
        if view is None or not self.is_mounted or not stack or stack[-1] is not self:
            return False
        title = metric_title(view)  # the task is known only once the run has started (an engine process)
        if self.metric_chart.title != title:
            self.metric_chart.title, self.metric_chart.drawn_version = title, -1
        loss = self.loss_chart.draw(loss_lines(view), view.tweaks, view.chart_version)
        metric = self.metric_chart.draw(metric_lines(view), [], view.chart_version)
        return loss or metric

    def show_devices(self, samples: list[DeviceSample]) -> None:
        if self.is_mounted:
            self.devices.show(samples)

    def on_screen_resume(self) -> None:
        self.redraw_charts()

    def on_resize(self) -> None:
        # In 80 columns every key of the dashboard fits only without the palette's own entry (ctrl+p still
        # opens it, and ? lists it).
        self.footer.show_command_palette = self.size.width >= PALETTE_IN_FOOTER_FROM
        # A size change makes every chart stale; draw once the new layout is in place.
        self.call_after_refresh(self.redraw_charts)
