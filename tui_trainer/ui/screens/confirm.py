"""A yes/no question in a modal: Enter or y confirms, Escape or n declines."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label

from tui_trainer.text import literal


class ConfirmModal(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", show=False),
        Binding("n,escape", "answer(False)", "No", show=False),
    ]

    def __init__(self, question: str, confirm: str = "Yes", decline: str = "Cancel") -> None:
        super().__init__(classes="panel-screen")
        self.question, self.confirm, self.decline = question, confirm, decline

    def compose(self) -> ComposeResult:
        with Vertical(classes="panel confirm-panel"):
            yield Label(literal(self.question, keep_newlines=True), classes="panel-text")
            with Horizontal(classes="panel-buttons"):
                yield Button(f"{self.confirm} (y)", id="confirm", variant="primary")
                yield Button(f"{self.decline} (n)", id="decline")

    def on_mount(self) -> None:
        self.query_one("#confirm", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "confirm")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
