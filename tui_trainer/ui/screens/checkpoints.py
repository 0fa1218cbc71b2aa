"""The save and load panels.

Save: a name and a folder; the engine writes at the next step boundary (at once when paused) and the
panel closes when the engine reports the file, or shows why it could not be written. Load: the
checkpoints of a folder, newest first; a file that cannot be loaded says why in the panel.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Static
from textual.worker import Worker, WorkerState

from tui_trainer.config import ConfigError, RunConfig, config_from_dict, import_targets
from tui_trainer.engine.checkpoints import SUFFIX, CheckpointError, CheckpointInfo
from tui_trainer.engine.events import CheckpointFailed, CheckpointSaved
from tui_trainer.engine.save_names import save_name_problem, save_path_problem
from tui_trainer.text import literal
from tui_trainer.ui import format as fmt
from tui_trainer.ui.screens.confirm import ConfirmModal

SAVED_CONTENTS = ("model weights, optimizer, scheduler and grad-scaler state, epoch, step and position in the "
                  "epoch, random-number states, the run's config and its metric history")


def default_name(run_id: str, epoch: int, step: int) -> str:
    return f"{run_id or 'run'}-e{epoch}-s{step}.pt"


def writable_problem(folder: Path) -> str:
    """Why a checkpoint cannot go into folder, or "" when it can (the folder is created if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return f"cannot create {folder}: {error.strerror or error}"
    if not folder.is_dir():
        return f"{folder} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write to {folder}: permission denied"
    return ""


class SavePanel(ModalScreen[str | None]):
    """Returns the saved file's path, or None when cancelled."""

    BINDINGS = [Binding("escape", "dismiss", "Cancel", show=False)]

    def __init__(self, name: str, folder: str, send: Callable[[str, bool], None], paused: bool) -> None:
        super().__init__(classes="panel-screen")
        self.default_name, self.default_folder = name, folder
        self.send = send
        self.paused = paused
        self.pending: str | None = None
        """The path asked for, until the engine reports it."""
        self._confirm_overwrite: str | None = None

    def compose(self) -> ComposeResult:
        when = "at once (the run is paused)" if self.paused else "at the next step boundary"
        with Vertical(classes="panel save-panel"):
            yield Label("Save a checkpoint", classes="panel-title")
            with Horizontal(classes="panel-field"):
                yield Label("Name", classes="field-label")
                yield Input(self.default_name, id="save-name", compact=True)
            with Horizontal(classes="panel-field"):
                yield Label("Folder", classes="field-label")
                yield Input(self.default_folder, id="save-folder", compact=True)
            yield Static(f"Saves {SAVED_CONTENTS}; written {when}.", classes="panel-hint")
            yield Static("", id="save-status", classes="panel-status")
            with Horizontal(classes="panel-buttons"):
                yield Button("Save (Enter)", id="save", variant="primary")
                yield Button("Cancel (Esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#save-name", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.save()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._confirm_overwrite = None

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "save":
            self.save()
        else:
            self.dismiss(None)

    def _status(self, text: str, error: bool = False) -> None:
        status = self.query_one("#save-status", Static)
        status.update(literal(text))
        status.set_class(error, "-error")

    def save(self) -> None:
        if self.pending:
            return
        name = self.query_one("#save-name", Input).value.strip()
        folder = Path(self.query_one("#save-folder", Input).value.strip() or ".").expanduser()
        if not name:
            self._status("Give a file name (no folders in it).", error=True)
            return
        if not name.endswith(SUFFIX):
            name += SUFFIX
        problem = save_name_problem(name, folder) or save_path_problem(str(folder / name))
        if problem:
            self._status(f"Not saved: {problem}.", error=True)
            return
        problem = writable_problem(folder)
        if problem:
            self._status(f"Not saved: {problem}. The run goes on.", error=True)
            return
        path = str(folder / name)
        exists = os.path.lexists(path)
        if exists and self._confirm_overwrite != path:
            self._confirm_overwrite = path
            self._status(f"{path} exists; press Enter again to replace it.", error=True)
            return
        self.pending = path
        self._status(f"Saving {path} ...")
        self.send(path, exists)

    def checkpoint_result(self, event: CheckpointSaved | CheckpointFailed) -> None:
        """The engine's answer for a save; other saves (periodic, best) are not this panel's."""
        if self.pending is None or event.path != self.pending:
            return
        if isinstance(event, CheckpointSaved):
            self.dismiss(event.path)
            return
        self.pending = None
        self._status(f"Not saved: {event.message}. The run goes on.", error=True)

    def run_ended(self) -> None:
        if self.pending is not None:
            self.pending = None
            self._status("The run ended before this save; its last.pt holds the final state.", error=True)


COLUMNS = (("Run, checkpoint", None), ("Epoch", 5), ("Step", 8), ("Val loss", 9), ("Val acc/R²", 10),
           ("Saved", 16), ("Size", 10), ("Preset", None))
"""The load table's columns and widths (None: as wide as the widest cell): a row naming each run whole, then
its checkpoints under it; the first few columns fit 80 columns."""
RUN_ROW = "\0run:"
"""Key prefix of a run's row (no path holds a NUL)."""


def dated(timestamp: float | None) -> str:
    """A save's or a start's local date and time, 2026-12-01 14:03 (a list spans days); n/a for none."""
    if not isinstance(timestamp, (int, float)) or not timestamp or not math.isfinite(timestamp):
        return fmt.NOT_AVAILABLE
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))
    except (OverflowError, OSError, ValueError):  # a malformed file's time: no calendar holds it
        return "?"


def by_run(infos: list[CheckpointInfo]) -> dict[str, list[CheckpointInfo]]:
    """Checkpoints grouped by the run that wrote them (a file without one: by its folder), the run with
    the newest checkpoint first; each run's newest first, as they come."""
    groups: dict[str, list[CheckpointInfo]] = {}
    for info in sorted(infos, key=lambda info: info.saved_at, reverse=True):
        groups.setdefault(info.run_id or Path(info.path).parent.name, []).append(info)
    return groups


@dataclass(frozen=True)
class LoadChoice:
    path: str
    config: RunConfig
    imports: tuple[tuple[str, str], ...] = ()
    """(field, "module:factory") of code its stored config imports; chosen only once the user trusts it."""
    fit_checked: bool = False
    """Its weights and optimizer state were found to fit the model its config builds (after trust, if any)."""


def check_loadable(path: str) -> LoadChoice:
    """Everything that can be checked before the current run is stopped for this checkpoint: the file, its
    config, and that this machine can train it. Raises CheckpointError or ConfigError with one line."""
    from tui_trainer.engine.checkpoints import check_resumable, load_checkpoint
    from tui_trainer.preflight import check_environment

    payload = load_checkpoint(path, mmap=True)
    check_resumable(path, payload)
    config = config_from_dict(payload["config"], source=path)
    check_environment(config, source=path)
    imports = tuple(import_targets(config))
    if not imports:  # a model of the user's code is built only once they trust it: see check_fit
        check_fit(path, config, payload)
    return LoadChoice(path, config, imports, fit_checked=not imports)


def check_fit(path: str, config: RunConfig, payload: dict | None = None) -> None:
    """Raise CheckpointError when the file's weights or optimizer state do not fit the model and optimizer its
    config builds (a resume would fail after the current run had been stopped for it)."""
    from tui_trainer.engine.checkpoints import CheckpointError, load_checkpoint
    from tui_trainer.engine.fit_check import fit_problem

    problem = fit_problem(config, payload if payload is not None else load_checkpoint(path, mmap=True))
    if problem:
        raise CheckpointError(path, f"does not fit the run its config builds: {problem}")


def trust_question(path: str, imports: tuple[tuple[str, str], ...]) -> str:
    """The confirmation that names exactly the code a file's config would run."""
    lines = [f"{Path(path).name} would import and run code named in its stored config:"]
    for field, target in imports:
        module, _, factory = target.partition(":")
        lines.append(f"  {field}: module {module}, factory {factory}")
    lines.append("A checkpoint is data: run its code only if you trust whoever wrote this file. Load it and run "
                 "this code?")
    return "\n".join(lines)


class LoadPanel(ModalScreen[LoadChoice | None]):
    """Returns the chosen checkpoint and its config, or None when cancelled."""

    BINDINGS = [Binding("escape", "dismiss", "Cancel", show=False)]

    def __init__(self, folder: str) -> None:
        super().__init__(classes="panel-screen")
        self.folder = folder
        self.infos: dict[str, CheckpointInfo] = {}

    def compose(self) -> ComposeResult:
        with Vertical(classes="panel load-panel"):
            yield Label("Load a checkpoint", classes="panel-title")
            with Horizontal(classes="panel-field"):
                yield Label("Folder", classes="field-label")
                yield Input(self.folder, id="load-folder", compact=True)
            table: DataTable[str] = DataTable(id="load-table", cursor_type="row", zebra_stripes=True)
            yield table
            yield Static("", id="load-status", classes="panel-status")
            yield Static("Enter loads the selected checkpoint: the current run is saved and stopped, the "
                         "checkpoint's run waits paused (space starts it). Enter in the folder field lists "
                         "another folder.", classes="panel-hint")

    def on_mount(self) -> None:
        table = self.query_one("#load-table", DataTable)
        for label, width in COLUMNS:
            table.add_column(label, width=width)
        table.focus()
        self.scan(self.folder)

    def _status(self, text: str, error: bool = False) -> None:
        status = self.query_one("#load-status", Static)
        status.update(literal(text))
        status.set_class(error, "-error")

    def scan(self, folder: str) -> None:
        self.folder = folder
        self._status(f"Reading {folder} ...")
        self._list(folder)

    @work(thread=True, exclusive=True, group="load-list", exit_on_error=False)
    def _list(self, folder: str) -> list[CheckpointInfo]:
        from tui_trainer.engine.checkpoints import list_checkpoints

        return list_checkpoints(folder)

    @work(thread=True, exclusive=True, group="load-check", exit_on_error=False)
    def _check(self, path: str) -> LoadChoice:
        return check_loadable(path)

    @work(thread=True, exclusive=True, group="load-check", exit_on_error=False)
    def _check_trusted(self, choice: LoadChoice) -> LoadChoice:
        check_fit(choice.path, choice.config)
        return dataclasses.replace(choice, fit_checked=True)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == "load-list":
            if event.state == WorkerState.SUCCESS:
                self._fill(worker.result or [])
            elif event.state == WorkerState.ERROR:
                self._status(f"Cannot list {self.folder}: {worker.error}", error=True)
        elif worker.group == "load-check":
            if event.state == WorkerState.SUCCESS and worker.result is not None:
                self._chosen(worker.result)
            elif event.state == WorkerState.ERROR:
                error = worker.error
                text = str(error) if isinstance(error, (CheckpointError, ConfigError)) else \
                    f"{type(error).__name__}: {error}"
                self._status(f"Cannot load: {text}", error=True)

    def _chosen(self, choice: LoadChoice) -> None:
        if not choice.imports or choice.fit_checked:
            self.dismiss(choice)
            return

        def answered(trusted: bool | None) -> None:
            if trusted:
                self._status(f"Checking {choice.path} ...")
                self._check_trusted(choice)
            else:
                self._status(f"Not loaded: {Path(choice.path).name} runs code you did not trust.", error=True)

        self.app.push_screen(ConfirmModal(trust_question(choice.path, choice.imports), confirm="Trust and load",
                                          decline="Cancel"), answered)

    def _fill(self, infos: list[CheckpointInfo]) -> None:
        table = self.query_one("#load-table", DataTable)
        table.clear()
        self.infos = {info.path: info for info in infos}
        groups = by_run(infos)
        for run, members in groups.items():
            preset = next((info.preset for info in members if info.preset), "")
            table.add_row(literal(run, style="bold"), *([""] * (len(COLUMNS) - 2)), literal(preset),
                          key=RUN_ROW + run)
            for info in members:
                table.add_row(*map(literal, _row(info)), key=info.path)
        if infos:
            table.move_cursor(row=1)  # the newest checkpoint, under its run's row
            runs = f"{len(groups)} run{'s' if len(groups) != 1 else ''}"
            self._status(f"{len(infos)} checkpoint{'s' if len(infos) != 1 else ''} of {runs} in {self.folder}, "
                         "newest first.")
        else:
            self._status(f"No checkpoints in {self.folder} (nor in its run folders).")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.scan(event.value.strip() or ".")
        self.query_one("#load-table", DataTable).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        path = str(event.row_key.value)
        if path.startswith(RUN_ROW):
            self._status(f"Run {path.removeprefix(RUN_ROW)}: choose one of its checkpoints, in the rows under it.")
            event.data_table.move_cursor(row=event.cursor_row + 1)
            return
        info = self.infos.get(path)
        if info is not None and info.error:
            self._status(f"Cannot load {path}: {info.error}", error=True)
            return
        self._status(f"Checking {path} ...")
        self._check(path)


def _row(info: CheckpointInfo) -> tuple[str, ...]:
    name = Path(info.path).name
    when, size = dated(info.saved_at), fmt.size(info.size_bytes)
    if info.error:
        return (name, "", "", "unreadable", "", when, size, "")
    metric = info.val_accuracy if info.val_accuracy is not None else info.val_r2
    metric_text = fmt.percent(metric) if info.val_accuracy is not None else fmt.number(metric, 3)
    return (name, str(info.epoch), f"{info.step:,}", fmt.number(info.val_loss), metric_text, when, size, "")
