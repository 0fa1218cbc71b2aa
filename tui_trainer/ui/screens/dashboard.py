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
from tui_trainer.ui.widgets.charts import MetricChart, loss_lines, metric_lines
from tui_trainer.ui.widgets.event_log import EventLog
from tui_trainer.ui.widgets.gauges import DevicePanel
from tui_trainer.ui.widgets.status import FaultBanner, StatusBar


class DashboardScreen(Screen[None]):
    BINDINGS = [
        Binding("space", "app.toggle_pause", "Pause"),
        Binding("s", "app.save", "Save"),
        Binding("l", "app.load", "Load"),
        Binding("e", "app.tweak", "Tweak"),
        Binding("n", "app.new_run", "New run"),
        Binding("q", "app.quit", "Quit", show=False),
        Binding("question_mark", "app.help", "Keys", key_display="?"),
    ]
    HELP_EXTRA = [
        ("up / down, page keys", "Scroll the event log (when focused: tab)"),
    ]

    def __init__(self) -> None:
        super().__init__(id="dashboard")
        self.view: RunView | None = None
        self.note = ""

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield FaultBanner(id="fault")
        with Horizontal(id="charts"):
            yield MetricChart("Loss", id="loss-chart")
            yield MetricChart("Accuracy", id="metric-chart")
        with Horizontal(id="lower"):
            yield DevicePanel(id="devices")
            yield EventLog(id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(FaultBanner).display = False
        if self.view is not None:
            self.attach(self.view)

    def attach(self, view: RunView) -> None:
        """Show a (new) run: reset the charts, keep the log."""
        self.view = view
        if not self.is_mounted:
            return
        metric = self.query_one("#metric-chart", MetricChart)
        metric.title = "Accuracy" if view.task == "classification" else "Validation R²"
        for chart in self.query(MetricChart):
            chart.drawn_version = -1
        self.update([], self.note)
        self.redraw_charts()

    def update(self, lines: list[LogLine], note: str | None = None) -> None:
        """After a drain: the log's new lines, the status and the fault banner."""
        if self.view is None or not self.is_mounted:
            return
        if note is not None:
            self.note = note
        self.query_one(EventLog).add(lines)
        self.query_one(StatusBar).show(self.view, self.note)
        self.query_one(FaultBanner).show(self.view.fault if self.view.state == "paused" else None)

    def log_lines(self, lines: list[LogLine]) -> None:
        if self.is_mounted:
            self.query_one(EventLog).add(lines)

    def charts_stale(self) -> bool:
        if self.view is None or not self.is_mounted:
            return False
        return any(chart.stale(self.view.chart_version) for chart in self.query(MetricChart))

    def redraw_charts(self) -> bool:
        """Redraw the charts whose data moved, if this screen is showing. True when any was drawn."""
        view = self.view
        if view is None or not self.is_mounted or self.app.screen is not self:
            return False
        loss = self.query_one("#loss-chart", MetricChart).draw(loss_lines(view), view.tweaks, view.chart_version)
        metric = self.query_one("#metric-chart", MetricChart).draw(metric_lines(view), [], view.chart_version)
        return loss or metric

    def show_devices(self, samples: list[DeviceSample]) -> None:
        if self.is_mounted:
            self.query_one(DevicePanel).show(samples)

    def on_screen_resume(self) -> None:
        self.redraw_charts()

    def on_resize(self) -> None:
        # A size change makes every chart stale; draw once the new layout is in place.
        self.call_after_refresh(self.redraw_charts)
