"""The dashboard: status, loss and metric charts, the device panel and the event log of one run.

The screen holds no run state of its own: the app drains the engine's events into a RunView and tells
the screen what to redraw. Charts redraw only while this screen is the one on top.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer

from tui_trainer.engine.devices import DeviceSample
from tui_trainer.ui.run_view import LogLine, RunView
from tui_trainer.ui.widgets.charts import MetricChart, loss_lines, metric_lines, metric_title
from tui_trainer.ui.widgets.event_log import EventLog
from tui_trainer.ui.widgets.gauges import DevicePanel
from tui_trainer.ui.widgets.status import FaultBanner, StatusBar


class DashboardScreen(Screen[None]):
    BINDINGS = [
        # One key, two names: the footer says what space does now (check_action shows one of them).
        Binding("space", "pause", "Pause", tooltip="Pause or resume training (no CPU while paused)"),
        Binding("space", "resume", "Resume", tooltip="Pause or resume training (no CPU while paused)"),
        Binding("s", "app.save", "Save", tooltip="Save a checkpoint (at the next step boundary)"),
        Binding("l", "app.load", "Load", tooltip="Load a checkpoint; this run is saved and stopped first"),
        Binding("e", "app.tweak", "Tweak", tooltip="Change learning rate, weight decay, momentum live"),
        Binding("n", "app.new_run", "New run", tooltip="Save and stop this run, back to the setup screen"),
        Binding("d", "app.detach", "Detach",
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

    def __init__(self) -> None:
        super().__init__(id="dashboard")
        self.view: RunView | None = None
        self.note = ""
        self._shown_paused = False
        """Whether the footer's space says Resume."""
        # Held here, not queried: the app may update the screen while it is being taken down.
        self.status = StatusBar(id="status")
        self.fault = FaultBanner(id="fault")
        self.loss_chart = MetricChart("Loss", id="loss-chart")
        self.metric_chart = MetricChart("Accuracy", id="metric-chart")
        self.devices = DevicePanel(id="devices")
        self.log_view = EventLog(id="log")

    def compose(self) -> ComposeResult:
        yield self.status
        yield self.fault
        with Horizontal(id="charts"):
            yield self.loss_chart
            yield self.metric_chart
        with Horizontal(id="lower"):
            yield self.devices
            yield self.log_view
        yield Footer()

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
        if self.paused != self._shown_paused:
            self._shown_paused = self.paused
            self.refresh_bindings()

    @property
    def paused(self) -> bool:
        return self.view is not None and self.view.state == "paused"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("pause", "resume"):
            return (action == "resume") == self.paused
        return True

    def action_pause(self) -> None:
        self.app.action_toggle_pause()

    def action_resume(self) -> None:
        self.app.action_toggle_pause()

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
        # A size change makes every chart stale; draw once the new layout is in place.
        self.call_after_refresh(self.redraw_charts)
