"""Helpers for app tests against detached runs: start one, read its files, and kill every run a test left.

A detached run is a real background process (a supervisor and an engine). Every test that starts one,
or lets the app start one, kills what is still live in its checkpoint folder when it ends, pass or fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tui_trainer.launch import LaunchOptions
from tui_trainer.runs.registry import LIVE_STATES, RunInfo, effective_state, list_runs, read_run_info
from tui_trainer.ui.app import TrainerApp

LONG_RUN = {
    "epochs": 100_000,
    "checkpoint.every_epochs": 0,
    "checkpoint.save_best": False,
    "logging.every_ms": 200,
}
"""A tiny run that lasts until the test stops it, without a checkpoint per epoch, a few records a second."""


def launch(folder: Path, preset: str = "iris-linear", **overrides: Any) -> RunInfo:
    from tui_trainer.detached.launcher import launch_detached

    options = LaunchOptions(preset=preset, overrides={"checkpoint.dir": str(folder), **LONG_RUN, **overrides})
    return launch_detached(options, pause_on_fault=True, timeout_s=120)


def kill_live_runs(folder: Path) -> None:
    """SIGKILL the engine of every run under folder that is still live (its supervisor then ends)."""
    for info in list_runs(folder):
        if info.state in LIVE_STATES and info.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(info.pid, signal.SIGKILL)


@contextlib.contextmanager
def cleaned(folder: Path) -> Iterator[Path]:
    try:
        yield folder
    finally:
        kill_live_runs(folder)


def app_with(**options: Any) -> TrainerApp:
    """The app with fast timers, as a test drives it."""
    return TrainerApp(LaunchOptions(**options), drain_interval_s=0.05, chart_interval_s=0.2, device_interval_s=0.3,
                      exit_grace_s=20)


def attach_app(run_dir: str | Path) -> TrainerApp:
    """The app as `tui-trainer attach RUN` opens it."""
    return app_with(attach=str(run_dir))


def state(run_dir: str | Path) -> str:
    info = read_run_info(run_dir)
    return effective_state(info) if info is not None else "missing"


def records(run_dir: str | Path, kind: str) -> list[dict[str, Any]]:
    try:
        lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if record.get("type") == kind:
                out.append(record)
    return out


def wait_until(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """For conditions outside any app (no event loop to yield to)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
