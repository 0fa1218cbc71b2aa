"""The event log: run started, epoch summaries, checkpoints, hyperparameter changes, warnings."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import RichLog

from tui_trainer.ui.run_view import LogLine
from tui_trainer.ui.widgets.styling import component_style

MAX_LINES = 1000


class EventLog(RichLog):
    """Lines wrap at word boundaries; their colour comes from app.tcss by level."""

    COMPONENT_CLASSES = {"event-log--time", "event-log--good", "event-log--warning", "event-log--error"}

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, wrap=True, markup=False, max_lines=MAX_LINES, min_width=20)
        self.border_title = "Events"
        self.texts: list[str] = []
        """Every line written, plain (bounded like the widget), for tests and copying."""

    def add(self, lines: list[LogLine]) -> None:
        if not lines:
            return
        stamp = time.strftime("%H:%M:%S ")
        time_style = component_style(self, "event-log--time")
        for line in lines:
            style = component_style(self, f"event-log--{line.level}") if line.level != "info" else ""
            self.write(Text.assemble((stamp, time_style), (line.text, style)))
            self.texts.append(line.text)
        del self.texts[:-MAX_LINES]
