"""run.json: what a run is doing, kept in its folder for `tui-trainer runs`, `attach` and `stop`.

RunInfoWriter is an event listener: it keeps run.json up to date from the engine's events (state
changes, epochs, checkpoints), so the trainer itself knows nothing of it. A run whose file says it is
live but whose process is gone is "lost".
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tui_trainer.engine.events import (
    CheckpointSaved,
    EpochEnded,
    Event,
    RunFinished,
    RunStarted,
    StateChanged,
)
from tui_trainer.engine.states import FINAL_STATES, LIVE_STATES, RECORD_STATES
from tui_trainer.run_files import RUN_FILE, SOCKET_FILE


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
    threads: dict[str, Any] | None = None
    """torch's thread counts for the run and why (runs.cpu_share.ThreadChoice.to_dict); None in older files."""
    owner_uid: int = -1
    """Who owns the run.json it was read from (from the file system, never from the file; -1: not read)."""

    @property
    def socket_path(self) -> Path:
        return Path(self.run_dir) / SOCKET_FILE


RUN_FILE_MAX_BYTES = 1 << 20
"""A run.json is a few hundred bytes; a bigger one is not read (a planted or damaged file)."""
STATES = RECORD_STATES
UNREADABLE = "unreadable"
"""The state `runs` shows for a run.json that cannot be read or does not fit the schema."""


class RunFileError(Exception):
    """A run.json that cannot be used; str() is one line naming the file and why."""


class _Threads(BaseModel):
    """run.json's record of torch's thread counts (runs.cpu_share.ThreadChoice)."""

    model_config = ConfigDict(strict=True, extra="ignore")
    intra_op: int = Field(ge=1, le=1 << 16)
    inter_op: int = Field(1, ge=1, le=1 << 16)
    loader_worker: int = Field(1, ge=0, le=1 << 16)
    cpus: int = Field(1, ge=1, le=1 << 20)
    busy: int = Field(0, ge=0, le=1 << 20)
    ranks: int = Field(1, ge=1, le=1 << 20)
    set_by: str = Field("auto", max_length=40)


class _RunFile(BaseModel):
    """What a run.json may hold (written by write_run_info); anything else is refused before use."""

    model_config = ConfigDict(strict=True, extra="ignore")
    run_id: str = Field(min_length=1, max_length=255)
    run_dir: str = Field("", max_length=4096)
    preset: str = Field("", max_length=1000)
    state: Literal[STATES]  # type: ignore[valid-type]
    reason: str = Field("", max_length=100_000)
    pid: int = Field(0, ge=0, le=2**31 - 1)
    process_started_at: float = Field(0.0, ge=0, allow_inf_nan=False)
    started_at: float = Field(0.0, ge=0, allow_inf_nan=False)
    updated_at: float = Field(0.0, ge=0, allow_inf_nan=False)
    epoch: int = Field(0, ge=0)
    epochs: int = Field(0, ge=0)
    step: int = Field(0, ge=0)
    total_steps: int = Field(0, ge=0)
    monitor: str = Field("", max_length=200)
    best: float | None = None
    last_checkpoint: str | None = Field(None, max_length=4096)
    detached: bool = False
    attachable: bool = False
    world_size: int = Field(1, ge=1)
    exit_status: str | None = Field(None, max_length=1000)
    extra: dict[str, Any] = Field(default_factory=dict)
    threads: _Threads | None = None


def _as_file(info: RunInfo) -> dict[str, Any]:
    return {key: value for key, value in asdict(info).items() if key != "owner_uid"}


def write_run_info(info: RunInfo) -> None:
    """Write run.json atomically (a fresh temporary file, never through a link). A run.json of another
    process that is still training there is left alone (an engine refused its folder must not overwrite it)."""
    info.updated_at = time.time()
    folder = Path(info.run_dir)
    if _another_live_run(folder, info.pid):
        return
    try:
        descriptor, temp = tempfile.mkstemp(prefix=f".{RUN_FILE}.", suffix=".tmp", dir=folder)
    except OSError:
        return  # a full disk must not stop training; `runs` then shows the last state written
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(json.dumps(_as_file(info), indent=1))
        os.replace(temp, folder / RUN_FILE)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temp)


def _another_live_run(folder: Path, pid: int) -> bool:
    try:
        current = load_run_info(folder)
    except RunFileError:
        return False
    return current.pid not in (0, pid) and current.state in LIVE_STATES and \
        process_alive(current.pid, current.process_started_at)


def _read_bounded(path: Path) -> tuple[bytes, int]:
    """path's bytes and owner: a regular file (not a link, a device or a pipe) of at most RUN_FILE_MAX_BYTES."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise RunFileError(f"{path}: no such file") from None
    except OSError as error:
        reason = "a symbolic link" if error.errno == errno.ELOOP else (error.strerror or str(error))
        raise RunFileError(f"{path}: cannot read: {reason}") from None
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise RunFileError(f"{path}: not a regular file")
        if status.st_size > RUN_FILE_MAX_BYTES:
            raise RunFileError(f"{path}: {status.st_size} bytes, more than a run.json holds")
        chunks, size = [], 0
        while chunk := os.read(descriptor, RUN_FILE_MAX_BYTES + 1 - size):
            chunks.append(chunk)
            size += len(chunk)
            if size > RUN_FILE_MAX_BYTES:
                break
    except OSError as error:
        raise RunFileError(f"{path}: cannot read: {error.strerror or error}") from None
    finally:
        os.close(descriptor)
    data = b"".join(chunks)
    if len(data) > RUN_FILE_MAX_BYTES:
        raise RunFileError(f"{path}: more than {RUN_FILE_MAX_BYTES} bytes")
    return data, status.st_uid


def load_run_info(run_dir: str | Path) -> RunInfo:
    """The run.json in run_dir, checked against its schema. run_dir is where the run is (its socket, its
    files): a run_dir written in the file is never used. Raises RunFileError."""
    path = Path(run_dir) / RUN_FILE
    data, owner_uid = _read_bounded(path)
    try:
        record = _RunFile.model_validate_json(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise RunFileError(f"{path}: {where}: {first['msg']}") from None
    values = record.model_dump()
    values["run_dir"] = str(run_dir)
    return RunInfo(**values, owner_uid=owner_uid)


def read_run_info(run_dir: str | Path) -> RunInfo | None:
    """The run.json in run_dir, or None when there is none or it cannot be used (see load_run_info)."""
    try:
        return load_run_info(run_dir)
    except RunFileError:
        return None


def owned_by_us(info: RunInfo) -> bool:
    """The run's folder and its run.json are this user's (a real folder, not a link to one)."""
    try:
        folder = os.lstat(info.run_dir)
    except OSError:
        return False
    uid = os.getuid()
    return stat.S_ISDIR(folder.st_mode) and folder.st_uid == uid and info.owner_uid == uid


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
    """Runs under folder that have a run.json, newest first, with lost runs marked. A run.json that cannot
    be used is listed as UNREADABLE with why as its reason; links to folders are not followed. Listed runs
    may be other users' (see owned_by_us): nothing here acts on them."""
    runs = []
    root = Path(folder).expanduser()
    try:
        entries = list(os.scandir(root))
    except OSError:
        return runs
    for entry in entries:
        try:
            if not entry.is_dir(follow_symlinks=False) or not os.path.lexists(Path(entry.path) / RUN_FILE):
                continue
        except OSError:
            continue
        try:
            info = load_run_info(entry.path)
        except RunFileError as error:
            runs.append(RunInfo(run_id=entry.name, run_dir=entry.path, state=UNREADABLE, reason=str(error)))
            continue
        info.state = effective_state(info)
        runs.append(info)
    return sorted(runs, key=lambda info: info.started_at, reverse=True)


def find_run(folder: str | Path, run: str | None) -> RunInfo | None:
    """RUN is a run id (a folder's name under folder) or a run folder's path; None: the newest live run of
    this user's own."""
    if run is None:
        live = [info for info in list_runs(folder) if info.state in LIVE_STATES and owned_by_us(info)]
        return live[0] if live else None
    candidate = Path(run).expanduser()
    run_dir = candidate if os.path.lexists(candidate / RUN_FILE) else Path(folder).expanduser() / run
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
                attachable=self.attachable, world_size=event.world_size, threads=event.threads,
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
            self.info.state, self.info.step, self.info.epoch = event.state, event.step, event.epoch
            self.info.reason = " ".join(part for part in (event.message, event.unsaved_note()) if part)
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
