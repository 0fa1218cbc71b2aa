"""`tui-trainer presets`, `checkpoints` and `runs`: tables on a terminal, JSON lines on request.

Names, descriptions, paths and errors come from files and folders: each is shown as written (through
tui_trainer.text: no Rich markup, control characters escaped); only our own fixed strings carry style.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tui_trainer.text import literal, printable


def human_bytes(size: float | None) -> str:
    if not _is_number(size):
        return "n/a"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _metric(value: Any) -> str:
    return f"{value:.4f}" if _is_number(value) else "n/a"


def _when(timestamp: Any, pattern: str) -> str:
    """A file's time as local time; "?" for none, or for one no calendar holds (a malformed file)."""
    if not _is_number(timestamp) or not timestamp:
        return "?"
    try:
        return time.strftime(pattern, time.localtime(timestamp))
    except (OverflowError, OSError, ValueError):
        return "?"


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
        saved = _when(info.saved_at, "%m-%d %H:%M")
        name = _relative(info.path, path)
        if info.error:
            table.add_row(_cell(name, info.error, style="red"), "", "", "", "", saved, human_bytes(info.size_bytes))
            continue
        quality = info.val_accuracy if info.val_accuracy is not None else info.val_r2
        runs_code = f"runs code: {', '.join(info.imports)} (resume with --trust-code)" if info.imports else None
        table.add_row(_cell(name, runs_code, style="yellow"), literal(info.epoch), literal(info.step),
                      _metric(info.val_loss),
                      _metric(quality), saved, human_bytes(info.size_bytes))
    Console().print(table)
    print("Continue one: tui-trainer --headless --resume FILE   (or press l in the app)")
    return 0


def _relative(file: Any, folder: Path) -> str:
    try:
        return str(Path(file).relative_to(folder))
    except (TypeError, ValueError):
        return str(file)


def print_runs(folder: str, as_json: bool = False) -> int:
    from tui_trainer.engine.runinfo import list_runs

    runs = list_runs(folder)
    if as_json:
        for info in runs:
            print(_json_line(dataclasses.asdict(info)))
        return 0
    if not runs:
        _say(f"No runs under {folder}.")
        return 0
    table = Table(title=literal(f"Runs in {folder} (newest first)"), title_justify="left")
    table.add_column("run", min_width=16, overflow="fold")
    table.add_column("state", overflow="fold")
    for column in ("epoch", "step"):
        table.add_column(column, no_wrap=True, justify="right")
    table.add_column("best", overflow="fold")
    table.add_column("started", min_width=5, overflow="fold")
    for info in runs:
        detail = None
        if info.state in ("running", "paused", "starting", "stopping"):
            detail = f"{'detached, ' if info.detached else ''}pid {info.pid}"
        elif info.state == "lost" and info.exit_status:
            detail = info.exit_status
        elif info.reason:
            detail = info.reason  # why it failed or stopped, what was not saved, why its run.json is unreadable
        best = _cell(_metric(info.best), info.monitor) if _is_number(info.best) else literal("n/a")
        table.add_row(_cell(info.run_id, info.preset), _cell(info.state, detail),
                      literal(f"{info.epoch}/{info.epochs}"), literal(f"{info.step}/{info.total_steps}"), best,
                      _when(info.started_at, "%m-%d\n%H:%M"))
    Console().print(table)
    print("Attach to a detached run: tui-trainer attach RUN   stop one: tui-trainer stop RUN")
    return 0
