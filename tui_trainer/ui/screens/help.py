"""Every key of the screen underneath and of the app, in a modal (?)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label


class HelpModal(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close", show=False)]

    def __init__(self, title: str, rows: list[tuple[str, str]]) -> None:
        super().__init__(classes="panel-screen")
        self.title_text = title
        self.rows = rows

    def compose(self) -> ComposeResult:
        with Vertical(classes="panel help-panel"):
            yield Label(self.title_text, classes="panel-title")
            table: DataTable[str] = DataTable(id="help-keys", cursor_type="row", zebra_stripes=True)
            table.add_columns("Key", "Does")
            for key, description in self.rows:
                table.add_row(key, description)
            yield table
            yield Label("Escape closes. Ctrl+P finds any action by name.", classes="panel-hint")
