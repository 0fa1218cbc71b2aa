"""run.json: what a run is doing, kept in its folder for `tui-trainer runs`, `attach` and `stop`.

RunInfoWriter is an event listener: it keeps run.json up to date from the engine's events (state
changes, epochs, checkpoints), so the trainer itself knows nothing of it. A run whose file says it is
live but whose process is gone is "lost".
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tui_trainer.engine.events import (
    FINAL_STATES,
    CheckpointSaved,
    EpochEnded,
    Event,
    RunFinished,
    RunStarted,
    StateChanged,
)

RUN_FILE = "run.json"
SOCKET_FILE = "control.sock"
LIVE_STATES = ("starting", "running", "paused", "stopping")


@dataclass
class RunInfo:
    run_id: str
    run_dir: str
    preset: str = ""
    state: str = "starting"
    reason: str = ""
    pid: int = 0
    process_started_at: float = 0.0
    started_at: float = 0.0
    updated_at: float = 0.0
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    total_steps: int = 0
    monitor: str = ""
    best: float | None = None
    last_checkpoint: str | None = None
    detached: bool = False
    """Trains in a background process of its own (tui-trainer --detach)."""
    attachable: bool = False
    """Has a control socket: `tui-trainer attach` and `stop` reach it."""
    world_size: int = 1
    exit_status: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def socket_path(self) -> Path:
        return Path(self.run_dir) / SOCKET_FILE


def write_run_info(info: RunInfo) -> None:
    info.updated_at = time.time()
    path = Path(info.run_dir) / RUN_FILE
    temp = path.with_name(f".{RUN_FILE}.{os.getpid()}.tmp")
    try:
        temp.write_text(json.dumps(asdict(info), indent=1), encoding="utf-8")
        os.replace(temp, path)
    except OSError:
        pass  # a full disk must not stop training; `runs` then shows the last state written


def read_run_info(run_dir: str | Path) -> RunInfo | None:
    try:
        data = json.loads((Path(run_dir) / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    known = {item.name for item in fields(RunInfo)}
    try:
        return RunInfo(**{key: value for key, value in data.items() if key in known})
    except TypeError:
        return None


def process_alive(pid: int, started_at: float = 0.0) -> bool:
    """Whether pid is the process that wrote run.json (not a later one that reused the number)."""
    if pid <= 0:
        return False
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return not started_at or abs(process.create_time() - started_at) < 2.0
    except psutil.Error:
        return False


def effective_state(info: RunInfo) -> str:
    if info.state in LIVE_STATES and not process_alive(info.pid, info.process_started_at):
        return "lost"
    return info.state


def list_runs(folder: str | Path) -> list[RunInfo]:
    """Runs under folder that have a run.json, newest first, with lost runs marked."""
    runs = []
    root = Path(folder).expanduser()
    if not root.is_dir():
        return runs
    for run_file in root.glob(f"*/{RUN_FILE}"):
        info = read_run_info(run_file.parent)
        if info is not None:
            info.state = effective_state(info)
            runs.append(info)
    return sorted(runs, key=lambda info: info.started_at, reverse=True)


def find_run(folder: str | Path, run: str | None) -> RunInfo | None:
    """RUN is a run id (a folder's name under folder) or a run folder's path; None: the newest live run."""
    if run is None:
        live = [info for info in list_runs(folder) if info.state in LIVE_STATES]
        return live[0] if live else None
    candidate = Path(run).expanduser()
    run_dir = candidate if (candidate / RUN_FILE).is_file() else Path(folder).expanduser() / run
    info = read_run_info(run_dir)
    if info is not None:
        info.state = effective_state(info)
    return info


class RunInfoWriter:
    """Keeps run.json current from the engine's events. Writes only on rare events, never per step:
    a start, a state change and the end at once; an epoch or a checkpoint at most every
    `min_interval_s` (runs with tiny epochs end dozens a second), the newest at the next write."""

    def __init__(self, detached: bool = False, attachable: bool = False, min_interval_s: float = 1.0) -> None:
        import psutil

        self.info: RunInfo | None = None
        self.detached = detached
        self.attachable = attachable or detached
        self.min_interval_s = min_interval_s
        self._process_started_at = psutil.Process().create_time()
        self._written_at = float("-inf")
        self._lock = threading.RLock()
        self._timer: threading.Timer | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.info = RunInfo(
                run_id=event.run_id, run_dir=event.run_dir, preset=event.preset, state="starting",
                pid=os.getpid(), process_started_at=self._process_started_at, started_at=time.time(),
                epoch=event.start_epoch, epochs=event.epochs, step=event.start_step, total_steps=event.total_steps,
                monitor=event.config.get("checkpoint", {}).get("monitor", "val_loss"), detached=self.detached,
                attachable=self.attachable, world_size=event.world_size,
            )
        elif self.info is None:
            return
        elif isinstance(event, StateChanged):
            self.info.state, self.info.reason = event.state, event.reason
        elif isinstance(event, (EpochEnded, CheckpointSaved)):
            if isinstance(event, EpochEnded):
                self.info.epoch, self.info.step = event.epoch, event.step
                if event.is_best:
                    self.info.best = event.val.get(self.info.monitor)
            else:
                self.info.last_checkpoint, self.info.step = event.path, event.step
            wait_s = self._written_at + self.min_interval_s - time.monotonic()
            if wait_s > 0:
                self._write_later(wait_s)
                return
        elif isinstance(event, RunFinished):
            self.info.state, self.info.step = event.state, event.step
            self.info.reason = event.message
            if event.checkpoint:
                self.info.last_checkpoint = event.checkpoint
        else:
            return
        self._write()

    def _write(self) -> None:
        with self._lock:
            self._written_at = time.monotonic()
            if self.info is not None:
                write_run_info(self.info)

    def _write_later(self, delay_s: float) -> None:
        """A skipped update still lands within min_interval_s, even when no event follows (a paused run)."""
        with self._lock:
            if self._timer is not None and self._timer.is_alive():
                return
            self._timer = threading.Timer(delay_s, self._write)
            self._timer.daemon = True
            self._timer.start()

    def mark_detached(self) -> None:
        """An owned run was let go of by its app: from now on it is a detached run (called from the socket's
        reader thread)."""
        with self._lock:
            self.detached = True
            if self.info is not None:
                self.info.detached = True
                self._write()

    def mark_exit(self, status: str) -> None:
        if self.info is not None and self.info.state not in FINAL_STATES:
            self.info.state = "lost"
            self.info.exit_status = status
            write_run_info(self.info)


def fan_out(*listeners):
    """One on_event that calls each listener in turn."""
    def on_event(event: Event) -> None:
        for listener in listeners:
            listener(event)

    return on_event
