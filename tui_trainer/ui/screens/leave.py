"""Leaving a detached run: keep it training (the default) or save and stop it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label

from tui_trainer.text import literal

LEAVE_RUNNING = "leave"
SAVE_AND_STOP = "stop"


class LeaveModal(ModalScreen[str | None]):
    """Returns LEAVE_RUNNING, SAVE_AND_STOP, or None (cancelled). Enter takes the focused button, which
    starts on "Leave it running"."""

    BINDINGS = [
        Binding("l", "answer('leave')", "Leave running", show=False),
        Binding("s", "answer('stop')", "Save and stop", show=False),
        Binding("n,escape", "answer(None)", "Cancel", show=False),
    ]

    def __init__(self, question: str, leave: str = "Leave it running") -> None:
        super().__init__(classes="panel-screen")
        self.question, self.leave = question, leave

    def compose(self) -> ComposeResult:
        with Vertical(classes="panel confirm-panel leave-panel"):
            yield Label(literal(self.question, keep_newlines=True), classes="panel-text")
            with Horizontal(classes="panel-buttons"):
                yield Button(f"{self.leave} (l)", id=LEAVE_RUNNING, variant="primary")
                yield Button("Save and stop it (s)", id=SAVE_AND_STOP, variant="warning")
                yield Button("Cancel (n)", id="cancel")

    def on_mount(self) -> None:
        self.query_one(f"#{LEAVE_RUNNING}", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id if event.button.id in (LEAVE_RUNNING, SAVE_AND_STOP) else None)

    def action_answer(self, answer: str | None) -> None:
        self.dismiss(answer)
