"""The runs panel: the runs of a checkpoint folder (their run.json), newest first, as `tui-trainer runs`
lists them. Enter attaches to a live run; on a run that has ended it says why it cannot be attached and
names its last checkpoint, and Enter again opens the load panel on its folder."""

from __future__ import annotations

from dataclasses import dataclass

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, Static
from textual.worker import Worker, WorkerState

from tui_trainer.runs.registry import LIVE_STATES, RunInfo
from tui_trainer.text import literal
from tui_trainer.ui import format as fmt
from tui_trainer.ui.screens.checkpoints import dated

ATTACH, LOAD = "attach", "load"
COLUMNS = (("Run", None), ("State", None), ("Epoch", None), ("Step", None), ("Best", None), ("Preset", None),
           ("Started", None), ("PID", None))
"""The runs table's columns, each as wide as its widest cell: a run id shows whole, and the run, its state,
epoch and step fit 80 columns."""


@dataclass(frozen=True)
class RunChoice:
    action: str
    """ATTACH a live run, or LOAD one of an ended run's checkpoints."""
    info: RunInfo


def state_text(info: RunInfo) -> str:
    """running, paused ...; lost or failed with the exit status; (+ torchrun's process count)."""
    text = info.state
    if info.exit_status:
        text += f" ({info.exit_status})"
    if info.world_size > 1:
        text += f" x{info.world_size}"
    return text


def why_not(info: RunInfo) -> str:
    """Why a run cannot be attached; "" when it can."""
    if info.state in LIVE_STATES:
        if info.attachable:
            return ""
        return (f"Run {info.run_id} trains inside another app (process {info.pid}) without a control socket: "
                f"it cannot be attached.")
    detail = f" ({info.exit_status})" if info.exit_status else ""
    reason = f": {info.reason}" if info.reason and not info.exit_status else ""
    return f"Run {info.run_id} is {info.state}{detail}{reason}; there is nothing to attach to."


def _row(info: RunInfo) -> tuple[str, ...]:
    epochs = f"{info.epoch}/{info.epochs}" if info.epochs else str(info.epoch)
    best = f"{fmt.metric(info.monitor, info.best)} {info.monitor}" if info.best is not None else fmt.NOT_AVAILABLE
    return (info.run_id, state_text(info), epochs, f"{info.step:,}", best, info.preset, dated(info.started_at),
            str(info.pid or ""))


class RunsPanel(ModalScreen[RunChoice | None]):
    """Returns the run to attach to, or the ended run whose checkpoints to load, or None when cancelled."""

    BINDINGS = [Binding("escape", "dismiss", "Cancel", show=False)]

    def __init__(self, folder: str, attached: str | None = None) -> None:
        super().__init__(classes="panel-screen")
        self.folder = folder
        self.attached = attached
        """The run folder the app is attached to now, if any."""
        self.infos: dict[str, RunInfo] = {}
        self._offered: str | None = None
        """The ended run whose load was offered: Enter on it again opens the load panel."""

    def compose(self) -> ComposeResult:
        with Vertical(classes="panel runs-panel"):
            yield Label("Runs", classes="panel-title")
            with Horizontal(classes="panel-field"):
                yield Label("Folder", classes="field-label")
                yield Input(self.folder, id="runs-folder", compact=True)
            yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
            yield Static("", id="runs-status", classes="panel-status")
            yield Static("Enter attaches to a live run (this app lets go of its current run first; a run "
                         "training inside this app is saved and stopped). Enter in the folder field lists "
                         "another folder.", classes="panel-hint")

    def on_mount(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        for label, width in COLUMNS:
            table.add_column(label, width=width)
        table.focus()
        self.scan(self.folder)

    def _status(self, text: str, error: bool = False) -> None:
        status = self.query_one("#runs-status", Static)
        status.update(literal(text))
        status.set_class(error, "-error")

    def scan(self, folder: str) -> None:
        self.folder = folder
        self._offered = None
        self._status(f"Reading {folder} ...")
        self._list(folder)

    @work(thread=True, exclusive=True, group="runs-list", exit_on_error=False)
    def _list(self, folder: str) -> list[RunInfo]:
        from tui_trainer.runs.registry import list_runs

        return list_runs(folder)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "runs-list":
            return
        if event.state == WorkerState.SUCCESS:
            self._fill(event.worker.result or [])
        elif event.state == WorkerState.ERROR:
            self._status(f"Cannot list {self.folder}: {event.worker.error}", error=True)

    def _fill(self, infos: list[RunInfo]) -> None:
        table = self.query_one("#runs-table", DataTable)
        table.clear()
        self.infos = {info.run_dir: info for info in infos}
        for info in infos:
            table.add_row(*map(literal, _row(info)), key=info.run_dir)
        live = sum(info.state in LIVE_STATES for info in infos)
        if infos:
            self._status(f"{len(infos)} run{'s' if len(infos) != 1 else ''} in {self.folder} ({live} live), "
                         "newest first.")
        else:
            self._status(f"No runs in {self.folder} (a run folder holds a run.json).")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.scan(event.value.strip() or ".")
        self.query_one("#runs-table", DataTable).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        info = self.infos.get(str(event.row_key.value))
        if info is None:
            return
        if info.run_dir == self.attached:
            self._status(f"This app is attached to run {info.run_id} already.")
            return
        problem = why_not(info)
        if not problem:
            self.dismiss(RunChoice(ATTACH, info))
            return
        if info.state in LIVE_STATES:
            self._status(problem, error=True)
            return
        if self._offered == info.run_dir:
            self.dismiss(RunChoice(LOAD, info))
            return
        self._offered = info.run_dir
        checkpoint = (f" Last checkpoint: {info.last_checkpoint}." if info.last_checkpoint
                      else " It left no checkpoint named in its run.json.")
        self._status(f"{problem}{checkpoint} Enter again opens the load panel on its folder.", error=True)
