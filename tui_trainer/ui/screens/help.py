"""Every key of the screen underneath and of the app, in a modal (? or f1)."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static


class HelpModal(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close", show=False)]

    def __init__(self, title: str, rows: list[tuple[str, str]]) -> None:
        super().__init__(classes="panel-screen")
        self.title_text = title
        self.rows = rows

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column("key", no_wrap=True, style="bold")
        table.add_column("does")
        for key, description in self.rows:
            table.add_row(key, description)
        with Vertical(classes="panel help-panel"):
            yield Label(self.title_text, classes="panel-title")
            with VerticalScroll(id="help-keys"):
                yield Static(table)
            yield Label("Escape closes. Ctrl+P finds any action by name.", classes="panel-hint")
