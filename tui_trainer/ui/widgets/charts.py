"""Line charts of a run's metrics: each chart its own PlotextPlot and figure.

A chart draws decimated views of bounded series (about two points per column), so a redraw costs the
same at step 100 and at step 10 million; it draws only when its data moved or its size changed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from textual.geometry import Region
from textual.strip import Strip
from textual_plotext import PlotextPlot

from tui_trainer.ui import format as fmt
from tui_trainer.ui.run_view import RunView, Tweak
from tui_trainer.ui.series import Series

MAX_MARKS_DRAWN = 12
MARKER_GLYPHS = {"braille": "⠉⠒", "dot": "••"}
X_TICKS = 5


@dataclass(frozen=True)
class Line:
    label: str
    series: Series
    marker: str
    color: str
    floor: float | None = None
    """Values below are drawn at the floor (R² can start far below zero and flatten the rest)."""


def nice_ticks(low: float, high: float, count: int = X_TICKS) -> list[float]:
    """Round tick positions covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    raw = (high - low) / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + 1e-9 * step:
        ticks.append(value)
        value += step
    return ticks


class MetricChart(PlotextPlot):
    """A chart of a few series against the step, with optional vertical marks (live tweaks)."""

    def __init__(self, title: str, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        # No backgrounds of plotext's own: the widget's background shows through, and the output has
        # fewer escape codes to parse on every redraw.
        self.theme = "clear"
        self.title = title
        self.drawn_version = -1
        self.drawn_size: tuple[int, int] = (0, 0)
        self.marks: list[Tweak] = []
        """The marks drawn last (for tests and the help text)."""
        self.draw_cost_s = 0.0
        """What painting the last new figure took (plotext's build and turning it into lines)."""
        self._measure = False

    def stale(self, version: int) -> bool:
        return version != self.drawn_version or tuple(self.size) != self.drawn_size

    def draw(self, lines: list[Line], marks: list[Tweak], version: int) -> bool:
        """Set the figure's data from the series and refresh; False when nothing changed."""
        width, height = self.size
        if width < 10 or height < 4 or not self.stale(version):
            return False
        self.drawn_version, self.drawn_size = version, (width, height)
        points = max(16, 2 * width)
        plt = self.plt
        plt.clear_data()
        # The legend goes in the title: plotext draws its own legend over the top-left of the data.
        legend = "  ".join(f"{MARKER_GLYPHS.get(line.marker, line.marker)} {line.label}" for line in lines)
        plt.title(f"{self.title}   {legend}" if legend else self.title)
        xs_all: list[float] = []
        ys_all: list[float] = []
        for line in lines:
            xs, ys = line.series.view(points)
            if not xs:
                continue
            if line.floor is not None:
                ys = [max(line.floor, y) for y in ys]
            plt.plot(xs, ys, marker=line.marker, color=line.color)
            xs_all += (xs[0], xs[-1])
            ys_all += (min(ys), max(ys))
        if xs_all:
            low, high = min(xs_all), max(xs_all)
            ticks = nice_ticks(low, high)
            plt.xticks(ticks, [fmt.compact_int(tick) for tick in ticks])
            self._draw_marks(marks, low, high, max(ys_all))
        self._measure = True
        self.refresh()
        return True

    def render_lines(self, crop: Region) -> list[Strip]:
        if not self._measure:
            return super().render_lines(crop)  # unchanged: lines from Textual's cache
        start = time.perf_counter()
        lines = super().render_lines(crop)
        self.draw_cost_s, self._measure = time.perf_counter() - start, False
        return lines

    def _draw_marks(self, marks: list[Tweak], low: float, high: float, top: float) -> None:
        shown = [mark for mark in marks if low <= mark.step <= high][-MAX_MARKS_DRAWN:]
        self.marks = shown
        for mark in shown:
            self.plt.vertical_line(mark.step, color="red")
            self.plt.text(mark.label, mark.step, top, color="red")


def loss_lines(view: RunView) -> list[Line]:
    return [
        Line("train (smoothed)", view.loss, "braille", "cyan"),
        Line("val", view.val_loss, "dot", "orange"),
    ]


def metric_title(view: RunView) -> str:
    return "Accuracy" if view.task == "classification" else "Validation R²"


def metric_lines(view: RunView) -> list[Line]:
    if view.task == "classification":
        return [
            Line("train", view.train_metric, "braille", "cyan"),
            Line("val", view.val_metric, "dot", "orange"),
        ]
    return [Line("val (below -1 drawn at -1)", view.val_metric, "dot", "orange", floor=-1.0)]
