"""`tui-trainer presets`, `checkpoints` and `runs`: tables on a terminal, JSON lines on request.

Names, descriptions, paths and errors come from files and folders: each is shown as written (through
tui_trainer.text: no Rich markup, control characters escaped); only our own fixed strings carry style.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tui_trainer import formatting as fmt
from tui_trainer.text import literal, printable


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _cell(first: Any, second: Any = None, style: str = "dim") -> Text:
    """A table cell of file text: one line, and an optional second in `style`."""
    cell = literal(first)
    if second is not None:
        cell.append("\n")
        cell.append_text(literal(second, style=style))
    return cell


def _finite(value: Any) -> Any:
    """value for JSON: NaN and infinities (which json.dumps would write as invalid JSON) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _json_line(record: dict[str, Any]) -> str:
    """One valid JSON object on one line; json.dumps escapes control characters and non-ASCII text."""
    return json.dumps(_finite(record), default=str, allow_nan=False)


def _say(text: str) -> None:
    print(printable(text))


def print_presets(presets_dir: str | None = None, as_json: bool = False) -> int:
    from tui_trainer import presets

    entries = presets.discover(presets_dir)
    if as_json:
        for entry in entries:
            print(_json_line({**dataclasses.asdict(entry), "path": str(entry.path)}))
        return 0
    table = Table(title="Presets", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("task", no_wrap=True)
    table.add_column("description", overflow="fold")
    shipped = presets.shipped_presets_dir()
    for entry in entries:
        if entry.error is None:
            description = literal(entry.description)
        else:
            description = Text.assemble(("invalid: ", "red"), literal(entry.error))
        if entry.path.parent != shipped:
            description.append_text(literal(f" ({entry.path})", style="dim"))
        table.add_row(literal(entry.name), literal(entry.task), description)
    Console().print(table)
    print("Run one: tui-trainer --preset NAME   (headless: tui-trainer --headless --preset NAME)")
    return 0


def print_checkpoints(folder: str, as_json: bool = False) -> int:
    from tui_trainer.engine.checkpoints import list_checkpoints

    path = Path(folder).expanduser()
    if not path.is_dir():
        print(f"tui-trainer: error: {printable(folder)}: no such folder", flush=True)
        return 2
    infos = list_checkpoints(path)
    if as_json:
        for info in infos:
            print(_json_line(dataclasses.asdict(info)))
        return 0
    if not infos:
        _say(f"No checkpoints under {folder}.")
        return 0
    table = Table(title=literal(f"Checkpoints in {folder} (newest first)"), title_justify="left")
    table.add_column("checkpoint", ratio=1, overflow="fold")
    for column in ("epoch", "step", "val loss", "acc / R²", "saved", "size"):
        table.add_column(column, no_wrap=True, justify="right" if column != "saved" else "left")
    for info in infos:
        saved = fmt.when(info.saved_at)
        name = _relative(info.path, path)
        if info.error:
            table.add_row(_cell(name, info.error, style="red"), "", "", "", "", saved, fmt.size(info.size_bytes))
            continue
        quality = info.val_accuracy if info.val_accuracy is not None else info.val_r2
        runs_code = f"runs code: {', '.join(info.imports)} (resume with --trust-code)" if info.imports else None
        table.add_row(_cell(name, runs_code, style="yellow"), literal(info.epoch), literal(info.step),
                      literal(fmt.metric("val_loss", info.val_loss)),
                      literal(fmt.metric("val_accuracy" if info.val_accuracy is not None else "val_r2", quality)),
                      saved, fmt.size(info.size_bytes))
    Console().print(table)
    print("Continue one: tui-trainer --headless --resume FILE   (or press l in the app)")
    return 0


def _relative(file: Any, folder: Path) -> str:
    try:
        return str(Path(file).relative_to(folder))
    except (TypeError, ValueError):
        return str(file)


RUN_COLUMNS = ("run", "state", "epoch", "step", "best", "monitor", "started", "pid", "detached", "preset", "note")
"""The fields of each line `tui-trainer runs` prints when its output is not a terminal, in order."""


def print_runs(folder: str, as_json: bool = False) -> int:
    """A table on a terminal; otherwise one line per run, its fields (RUN_COLUMNS) separated by tabs, for a script
    to cut (a tab or line break inside a field is escaped, so every run is one line and every id whole)."""
    import sys

    from tui_trainer.runs.registry import list_runs

    runs = list_runs(folder)
    if as_json:
        for info in runs:
            print(_json_line(dataclasses.asdict(info)))
        return 0
    if not _to_terminal():
        if not runs:
            print(printable(f"No runs under {folder}."), file=sys.stderr)
        for info in runs:
            print("\t".join(printable(field) if field != "" else "-" for field in _run_fields(info)))
        return 0
    if not runs:
        _say(f"No runs under {folder}.")
        return 0
    _print_run_blocks(folder, runs)
    print("Attach to a live run: tui-trainer attach RUN   stop one: tui-trainer stop RUN")
    return 0


def _to_terminal() -> bool:
    import sys

    return sys.stdout.isatty()


def _run_note(info: Any) -> str:
    """Why it failed or stopped, what was not saved, why its run.json is unreadable; how a lost run's process
    ended."""
    if info.state == "lost" and info.exit_status:
        return info.exit_status
    return info.reason


def _run_fields(info: Any) -> list[str]:
    from tui_trainer.engine.states import LIVE_STATES

    live = info.state in LIVE_STATES
    best = fmt.metric(info.monitor, info.best) if _is_number(info.best) else fmt.NOT_AVAILABLE
    return [info.run_id, info.state, f"{info.epoch}/{info.epochs}", f"{info.step}/{info.total_steps}", best,
            info.monitor, fmt.stamp(info.started_at),
            str(info.pid) if live and info.pid else "", "yes" if info.detached else "no", info.preset,
            _run_note(info)]


STATE_STYLES = {"running": "green", "paused": "yellow", "stopping": "yellow", "failed": "red", "lost": "red",
                "unreadable": "red"}


def _run_block(info: Any) -> Text:
    """One run on a terminal: its id whole on a line of its own (it is what attach and stop take; never cut or
    folded by a column), its state and start beside it; then what it trains and how far; then a note (the pid
    of a live run, why an ended one ended)."""
    from tui_trainer.engine.states import LIVE_STATES

    live = info.state in LIVE_STATES
    best = fmt.metric(info.monitor, info.best) if _is_number(info.best) else fmt.NOT_AVAILABLE
    text = Text.assemble(literal(info.run_id, "bold"), "  ", literal(info.state, STATE_STYLES.get(info.state, "")),
                         literal(f"  started {fmt.when(info.started_at)}", "dim"))
    text.append("\n")
    text.append_text(literal(f"  {info.preset or '?'}  epoch {info.epoch}/{info.epochs}  step {info.step}/"
                             f"{info.total_steps}  best {best}{' ' + info.monitor if info.monitor else ''}"))
    note = ", ".join(part for part in ("detached" if info.detached else "", f"pid {info.pid}") if part) if live \
        else _run_note(info)
    if note:
        text.append("\n")
        text.append_text(literal(f"  {note}", "dim"))
    return text


def _print_run_blocks(folder: str, runs: list[Any]) -> None:
    console = Console()
    console.print(literal(f"Runs in {folder} (newest first)", "bold"))
    for info in runs:
        console.print(_run_block(info), overflow="fold", highlight=False)
