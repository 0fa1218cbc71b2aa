"""The shell side of detached runs: `--headless --detach`, `stop RUN`, and finding the run `attach` opens."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from tui_trainer.engine.runinfo import LIVE_STATES, RunInfo, find_run
from tui_trainer.launch import LaunchOptions

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
STOP_TIMEOUT_S = 300.0


def _error(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"tui-trainer: error: {message}", file=sys.stderr)
    return code


def start_detached(options: LaunchOptions) -> int:
    from tui_trainer.catalog.datasets import DatasetError
    from tui_trainer.config import ConfigError
    from tui_trainer.detached.launcher import DetachError, launch_detached
    from tui_trainer.engine.checkpoints import CheckpointError

    try:
        info = launch_detached(options, pause_on_fault=False)
    except (ConfigError, CheckpointError, DatasetError) as error:
        return _error(str(error))
    except DetachError as error:
        return _error(str(error), EXIT_FAILED)
    folder = Path(info.run_dir).parent
    where = "" if folder == Path("checkpoints") or folder.resolve() == Path("checkpoints").resolve() \
        else f" --checkpoint-dir {folder}"
    print(f"started run {info.run_id} in the background (pid {info.pid})")
    print(f"  watch and steer: tui-trainer attach {info.run_id}{where}")
    print(f"  stop it:         tui-trainer stop {info.run_id}{where}")
    return EXIT_OK


def _find(folder: str, run: str | None) -> RunInfo | int:
    info = find_run(folder, run)
    if info is None:
        if run is None:
            return _error(f"no live run under {folder}; `tui-trainer runs --checkpoint-dir {folder}` lists them")
        return _error(f"no run {run!r} under {folder} (RUN is a run id or a run folder)")
    return info


def attach_target(folder: str, run: str | None) -> str | int:
    """The run folder `attach` opens, or an exit code after printing why not."""
    info = _find(folder, run)
    if isinstance(info, int):
        return info
    if not info.attachable:
        return _error(f"run {info.run_id} has no control socket (an app's run); it is {info.state} in process "
                      f"{info.pid}")
    if info.state not in LIVE_STATES:
        detail = f" ({info.exit_status})" if info.exit_status else ""
        checkpoint = f"; last checkpoint: {info.last_checkpoint}" if info.last_checkpoint else ""
        return _error(f"run {info.run_id} is {info.state}{detail}{checkpoint}", EXIT_FAILED)
    return info.run_dir


def stop_run(folder: str, run: str) -> int:
    """Ask a live run to save and stop; wait until it has."""
    from tui_trainer.detached.client import RunClient, RunUnavailable
    from tui_trainer.engine.controls import Stop
    from tui_trainer.engine.events import RunFinished

    info = _find(folder, run)
    if isinstance(info, int):
        return info
    if info.state not in LIVE_STATES:
        return _error(f"run {info.run_id} is not running ({info.state})", EXIT_FAILED)
    if not info.attachable:
        # An app's run in its own terminal: SIGTERM makes it save and stop.
        os.kill(info.pid, signal.SIGTERM)
        print(f"asked run {info.run_id} (pid {info.pid}) to save and stop")
        return EXIT_OK
    try:
        client = RunClient(info)
    except RunUnavailable as error:
        return _error(str(error), EXIT_FAILED)
    try:
        client.send(Stop(save=True, reason="tui-trainer stop"))
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for event in client.events():
            if isinstance(event, RunFinished):
                saved = f"; saved {event.checkpoint}" if event.checkpoint else ""
                print(f"run {info.run_id} {event.state} at step {event.step}{saved}")
                return EXIT_OK
            if time.monotonic() > deadline:
                break
    finally:
        client.close()
    return _error(f"run {info.run_id} did not confirm the stop; `tui-trainer runs` shows its state", EXIT_FAILED)
