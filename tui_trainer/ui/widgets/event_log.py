"""The event log: run started, epoch summaries, checkpoints, hyperparameter changes, warnings.

A plain widget that draws the lines that fit, newest at the bottom, rather than a scrolling RichLog:
a RichLog grows its virtual size with every line, and each growth reflows the whole screen, which
costs the training thread the interpreter lock many times a second. Scrolling back is by keys while
the log has focus.
"""

from __future__ import annotations

import time
from collections import deque

from rich.text import Text
from textual.binding import Binding
from textual.widget import Widget

from tui_trainer.text import printable
from tui_trainer.ui.run_view import LogLine
from tui_trainer.ui.throttle import Throttle
from tui_trainer.ui.widgets.styling import component_style

MAX_LINES = 2000
REPAINT_INTERVAL_S = 1.0
"""New lines show at most this long after they came: runs with tiny epochs log several lines a second."""


class EventLog(Widget, can_focus=True):
    """Lines wrap at word boundaries; their colour comes from app.tcss by level."""

    COMPONENT_CLASSES = {"event-log--time", "event-log--good", "event-log--warning", "event-log--error"}
    BINDINGS = [
        Binding("up", "scroll_lines(1)", "Older", show=False),
        Binding("down", "scroll_lines(-1)", "Newer", show=False),
        Binding("pageup", "scroll_page(1)", "Older page", show=False),
        Binding("pagedown", "scroll_page(-1)", "Newer page", show=False),
        Binding("home", "scroll_lines(1000000)", "Oldest", show=False),
        Binding("end", "scroll_lines(-1000000)", "Newest", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Events"
        self.entries: deque[tuple[str, LogLine]] = deque(maxlen=MAX_LINES)
        self.back = 0
        """How many entries up from the newest the view is scrolled."""
        self._wrapped: dict[int, list[Text]] = {}
        """Each shown entry's wrapped rows by its number (entries[0] is number `_first`), at `_wrapped_at`."""
        self._wrapped_at: tuple[int, object] = (0, None)
        self._first = 0
        self._repaint = Throttle(self, REPAINT_INTERVAL_S, self.refresh)

    @property
    def texts(self) -> list[str]:
        """Every line kept, plain, oldest first."""
        return [line.text for _, line in self.entries]

    def add(self, lines: list[LogLine]) -> None:
        if not lines:
            return
        stamp = time.strftime("%H:%M:%S ")
        dropped = max(0, len(self.entries) + len(lines) - MAX_LINES)
        self.entries.extend((stamp, line) for line in lines)
        self._first += dropped
        if self.back:
            self.back = min(self.back + len(lines), len(self.entries) - 1)
        self._repaint.request()

    def action_scroll_lines(self, count: int) -> None:
        self.back = max(0, min(self.back + count, len(self.entries) - 1))
        self._show_position()

    def action_scroll_page(self, pages: int) -> None:
        self.action_scroll_lines(pages * max(1, self.size.height - 1))

    def _show_position(self) -> None:
        self.border_subtitle = f"{self.back} newer below (end: newest)" if self.back else ""
        self.refresh()

    def render(self) -> Text:
        width, height = self.size
        if width <= 0 or height <= 0 or not self.entries:
            return Text("")
        time_style = component_style(self, "event-log--time")
        styles = {level: component_style(self, f"event-log--{level}") for level in ("good", "warning", "error")}
        # Wrapping is most of a render: each entry is wrapped once per width and theme, not once per frame.
        key = (width, (time_style, tuple(styles.values())))
        if key != self._wrapped_at:
            self._wrapped, self._wrapped_at = {}, key
        rows: list[Text] = []
        wrapped_now: dict[int, list[Text]] = {}
        newest = len(self.entries) - 1 - self.back
        for index in range(newest, -1, -1):
            number = self._first + index
            wrapped = self._wrapped.get(number)
            if wrapped is None:
                stamp, line = self.entries[index]
                text = Text.assemble((stamp, time_style), (printable(line.text), styles.get(line.level, "")))
                wrapped = list(text.wrap(self.app.console, width, overflow="fold"))
            wrapped_now[number] = wrapped
            rows[:0] = wrapped
            if len(rows) >= height:
                break
        self._wrapped = wrapped_now  # only what is on screen: the cache stays as small as the view
        return Text("\n").join(rows[-height:])
