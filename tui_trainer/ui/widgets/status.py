"""The dashboard's status lines: run, state, progress bars, speed and time; and the fault banner."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widget import Widget
from textual.widgets import Static

from tui_trainer.engine.events import RunFailed
from tui_trainer.text import literal, printable
from tui_trainer.ui import format as fmt
from tui_trainer.ui.run_view import RunView
from tui_trainer.ui.widgets.styling import component_style

STATE_LABELS = {
    "starting": "Starting",
    "running": "Running",
    "paused": "Paused",
    "stopping": "Stopping",
    "finished": "Finished",
    "stopped": "Stopped",
    "failed": "Failed",
    "lost": "Lost",
    "detached": "Detached",
}
STATE_CLASSES = tuple(f"-{state}" for state in STATE_LABELS)
SAVED_SHOWN_S = 5.0
"""How long the status line names a checkpoint just written (the log keeps what matters)."""


class StatusBar(Widget):
    """Four lines drawn from a RunView; redrawn only when the app says so."""

    COMPONENT_CLASSES = {"status--state", "status--label", "status--bar"}

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.view: RunView | None = None
        self.note = ""
        """A line of the app's own (\"loading data and model\", \"saving last.pt\")."""
        self.saves_seen = 0
        self.saved_until = float("-inf")
        """Until when (time.monotonic()) the line names the last checkpoint written."""

    def show(self, view: RunView, note: str = "") -> None:
        self.view, self.note = view, note
        if view.saves != self.saves_seen:
            self.saves_seen, self.saved_until = view.saves, time.monotonic() + SAVED_SHOWN_S
            self.set_timer(SAVED_SHOWN_S, self.refresh)  # fades even when nothing else redraws (paused)
        state_class = f"-{view.state}"
        if not self.has_class(state_class):
            self.remove_class(*STATE_CLASSES)
            self.add_class(state_class)
        self.refresh()

    def render(self) -> Text:
        view = self.view
        if view is None:
            return Text("")
        width = max(20, self.size.width)
        state_style = component_style(self, "status--state")
        label_style = component_style(self, "status--label")
        bar_style = component_style(self, "status--bar")

        head = Text.assemble((f" {STATE_LABELS.get(view.state, view.state)} ", state_style), " ")
        head.append(printable(view.run_id or view.preset))
        details = f"  {view.preset} · {view.model or view.config.get('model', {}).get('name', '')}"
        if view.device_name:
            details += f" · {view.device_name}"
        if view.world_size > 1:
            details += f" · {view.world_size} processes"
        head.append(printable(details), label_style)
        if self.note:
            head.append(printable(f"  {self.note}"), label_style)
        head.truncate(width, overflow="ellipsis")

        epochs = max(1, view.epochs)
        epoch_done = view.epoch_step / view.steps_per_epoch if view.steps_per_epoch else 0.0
        total_done = view.step / view.total_steps if view.total_steps else 0.0
        epoch_text = f"Epoch {min(view.epoch, epochs)}/{epochs} "
        step_text = f"  Step {view.step:,}/{view.total_steps:,} "
        bar_width = max(4, (width - len(epoch_text) - len(step_text)) // 2)
        progress = Text.assemble(epoch_text, (fmt.bar(epoch_done, bar_width), bar_style),
                                 step_text, (fmt.bar(total_done, bar_width), bar_style))
        speed = Text.assemble(
            f"{fmt.rate(view.samples_per_s)} samples/s", ("  elapsed ", label_style), fmt.duration(view.elapsed_s),
            ("  ETA ", label_style), fmt.duration(view.eta_s),
            ("  lr ", label_style), fmt.number(view.hyperparameters.get("lr")))
        lines = [head, progress, speed, self._metrics(view, label_style, width)]
        for line in lines:
            line.truncate(width, overflow="ellipsis")
        return Text("\n").join(lines)


    def _metrics(self, view: RunView, label_style: object, width: int) -> Text:
        line = Text.assemble(("train loss ", label_style), fmt.number(view.train_loss))
        if view.train_accuracy is not None:
            line.append_text(Text.assemble((" acc ", label_style), fmt.percent(view.train_accuracy)))
        if view.val:
            line.append_text(Text.assemble(("  val loss ", label_style), fmt.number(view.val.get("val_loss"))))
            metric = view.val.get(view.val_metric_key)
            if view.task == "classification":
                line.append_text(Text.assemble((" acc ", label_style), fmt.percent(metric)))
            else:
                line.append_text(Text.assemble((" R² ", label_style), fmt.number(metric, 3)))
        if view.last_checkpoint and time.monotonic() < self.saved_until:
            saved = Text.assemble(("  saved ", label_style), printable(view.last_checkpoint.rsplit("/", 1)[-1]))
            if line.cell_len + saved.cell_len <= width:
                line.append_text(saved)
        return line


class FaultBanner(Static):
    """What went wrong and what to do, shown while a faulted run waits paused."""

    shown_fault: RunFailed | None = None

    def show(self, fault: RunFailed | None) -> None:
        if fault is self.shown_fault:
            return  # nothing new: no restyle, no layout
        self.shown_fault = fault
        self.display = fault is not None
        if fault is not None:
            advice = f"\nTry: {fault.advice}." if fault.advice else ""
            message = f"Training paused: {fault.message}.{advice}  (space resumes anyway)"
            self.update(literal(message, keep_newlines=True))
