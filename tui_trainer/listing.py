"""`tui-trainer presets` and `tui-trainer checkpoints`: tables on a terminal, JSON lines on request."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def human_bytes(size: float | None) -> str:
    if size is None:
        return "n/a"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def _metric(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def print_presets(presets_dir: str | None = None, as_json: bool = False) -> int:
    from tui_trainer import presets

    entries = presets.discover(presets_dir)
    if as_json:
        for entry in entries:
            print(json.dumps({**dataclasses.asdict(entry), "path": str(entry.path)}))
        return 0
    table = Table(title="Presets", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("task", no_wrap=True)
    table.add_column("description", overflow="fold")
    shipped = presets.shipped_presets_dir()
    for entry in entries:
        description = entry.description if entry.error is None else f"[red]invalid:[/] {entry.error}"
        origin = "" if entry.path.parent == shipped else f" [dim]({entry.path})[/]"
        table.add_row(entry.name, entry.task, description + origin)
    Console().print(table)
    print("Run one: tui-trainer --preset NAME   (headless: tui-trainer --headless --preset NAME)")
    return 0


def print_checkpoints(folder: str, as_json: bool = False) -> int:
    from tui_trainer.engine.checkpoints import list_checkpoints

    path = Path(folder).expanduser()
    if not path.is_dir():
        print(f"tui-trainer: error: {folder}: no such folder", flush=True)
        return 2
    infos = list_checkpoints(path)
    if as_json:
        for info in infos:
            print(json.dumps(dataclasses.asdict(info)))
        return 0
    if not infos:
        print(f"No checkpoints under {folder}.")
        return 0
    table = Table(title=f"Checkpoints in {folder} (newest first)", title_justify="left")
    table.add_column("checkpoint", ratio=1, overflow="fold")
    for column in ("epoch", "step", "val loss", "acc / R²", "saved", "size"):
        table.add_column(column, no_wrap=True, justify="right" if column != "saved" else "left")
    for info in infos:
        saved = time.strftime("%m-%d %H:%M", time.localtime(info.saved_at)) if info.saved_at else "?"
        name = str(Path(info.path).relative_to(path)) if Path(info.path).is_relative_to(path) else info.path
        if info.error:
            table.add_row(f"{name}\n[red]{info.error}[/]", "", "", "", "", saved, human_bytes(info.size_bytes))
            continue
        quality = info.val_accuracy if info.val_accuracy is not None else info.val_r2
        table.add_row(name, str(info.epoch), str(info.step), _metric(info.val_loss), _metric(quality), saved,
                      human_bytes(info.size_bytes))
    Console().print(table)
    print("Continue one: tui-trainer --headless --resume FILE   (or press l in the app)")
    return 0


def print_runs(folder: str, as_json: bool = False) -> int:
    from tui_trainer.engine.runinfo import list_runs

    runs = list_runs(folder)
    if as_json:
        for info in runs:
            print(json.dumps(dataclasses.asdict(info)))
        return 0
    if not runs:
        print(f"No runs under {folder}.")
        return 0
    table = Table(title=f"Runs in {folder} (newest first)", title_justify="left")
    table.add_column("run", min_width=16, overflow="fold")
    table.add_column("state", overflow="fold")
    for column in ("epoch", "step"):
        table.add_column(column, no_wrap=True, justify="right")
    table.add_column("best", overflow="fold")
    table.add_column("started", min_width=5, overflow="fold")
    for info in runs:
        state = info.state
        if info.state in ("running", "paused", "starting", "stopping"):
            state += f"\n[dim]{'detached, ' if info.detached else ''}pid {info.pid}[/]"
        elif info.state == "lost" and info.exit_status:
            state += f"\n[dim]{info.exit_status}[/]"
        best = f"{info.best:.4f}\n[dim]{info.monitor}[/]" if info.best is not None else "n/a"
        started = time.strftime("%m-%d\n%H:%M", time.localtime(info.started_at)) if info.started_at else "?"
        table.add_row(f"{info.run_id}\n[dim]{info.preset}[/]", state, f"{info.epoch}/{info.epochs}",
                      f"{info.step}/{info.total_steps}", best, started)
    Console().print(table)
    print("Attach to a detached run: tui-trainer attach RUN   stop one: tui-trainer stop RUN")
    return 0
