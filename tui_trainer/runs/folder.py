"""Run folders: the one place a run writes, cleans and prunes.

A run writes inside a folder it created for itself: `os.mkdir`, which refuses any existing entry (a folder
someone made beforehand, a symbolic link, a dangling one), so a planted name only moves the run on to the
next free one. Resuming a run's own checkpoint may continue in that run's folder, when the folder proves to
be a run folder of this user's (see `is_run_folder`); any other checkpoint resumes into a new run folder.

Each run folder holds a record file, RECORD_FILE, created with the folder. It marks the folder as a run
folder, holds the run's exclusive lock (`fcntl.flock`) for as long as the run trains, so a second resume of
the same checkpoint branches off instead of training into the same folder, and lists the periodic
checkpoints the run wrote: pruning removes only files named there.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
import tempfile
import time
import weakref
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tui_trainer.config import ConfigError, RunConfig
from tui_trainer.engine.states import ENDED_STATES

RECORD_FILE = ".tui-trainer-run"
RECORD_FORMAT = "tui-trainer-run-folder"
RECORD_MAX_BYTES = 1 << 20
NAME_MAX = 255
RUN_ID_MAX = 160
"""Longest run id, a branch's `<id>-from-s<step>` included (its id is cut to fit): with a counter after it,
every run folder's name stays well within NAME_MAX."""
PRESET_PART_MAX = 100
"""Longest part of a run id taken from the preset's name (the time stamp and a counter follow it)."""
NAME_TRIES = 1000
BUSY_GRACE_S = 5.0
"""A resume waits this long for the folder of a run that has just ended (its processes are exiting) before
it branches off into a new folder."""
HELD_BY_PARENT_ENV = "TUI_TRAINER_RUN_FOLDER_HELD"
"""Set by the detached launcher for its supervisor and engine: the run folder whose lock the supervisor holds
for the run's life (the engine, its child, trains in it without taking the lock itself)."""
EPOCH_FILE = re.compile(r"epoch-\d{4,}\.pt")
INNER_FILES = ("metrics.jsonl", "config.yaml", "run.json", "last.pt", "best.pt", "engine.log", "control.sock")
"""Files a run opens by name in its folder: continuing in a folder where one is a symbolic link is refused."""


class RunFolderError(ConfigError):
    """A run folder that cannot be created or used; str() is one line naming the folder."""

    def __init__(self, message: str) -> None:
        super().__init__("", "checkpoint.dir", message)


class _Record(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    format: Literal["tui-trainer-run-folder"]
    run_id: str = Field(max_length=NAME_MAX)
    periodic: list[str] = Field(default_factory=list, max_length=100_000)


# ---------------------------------------------------------------- names


def safe_run_id(text: str, limit: int = RUN_ID_MAX) -> str:
    """text as a file name that stays one path component: [A-Za-z0-9._-] kept, anything else '-', no leading
    '.' or '-' (no hidden folder, no `..`, no option-like name), at most limit characters."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).lstrip(".-")[:limit].rstrip(".-")
    return name or "run"


def new_run_id(preset: str, folder: Path) -> str:
    """<preset>-<time stamp>, with a counter when that name is taken in folder (a guess: claim_run_folder
    is what makes a name the run's own)."""
    return _first_free(folder, _new_names(preset)).name


def _new_names(preset: str, run_id: str | None = None) -> Iterator[str]:
    if run_id:
        base = safe_run_id(run_id)
    else:
        base = f"{safe_run_id(preset, PRESET_PART_MAX)}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    return _numbered(base)


def _branch_names(previous: str, step: int) -> Iterator[str]:
    suffix = f"-from-s{step}"
    return _numbered(safe_run_id(previous, RUN_ID_MAX - len(suffix)) + suffix)


def _numbered(base: str) -> Iterator[str]:
    yield base
    for counter in range(2, NAME_TRIES + 1):
        yield f"{base}-{counter}"


# ---------------------------------------------------------------- reading a folder


def last_logged_step(run_dir: Path) -> int:
    """The step of the last record in run_dir's metrics.jsonl (0 without one)."""
    try:
        descriptor = os.open(run_dir / "metrics.jsonl", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        status = os.fstat(descriptor)
        tail = os.pread(descriptor, 65536, max(0, status.st_size - 65536)) if stat.S_ISREG(status.st_mode) else b""
    except OSError:
        tail = b""
    finally:
        os.close(descriptor)
    lines = tail.splitlines()
    for line in reversed(lines):
        try:
            step = json.loads(line).get("step", 0)
        except (ValueError, AttributeError):
            continue
        if isinstance(step, int):
            return step
    return 0


def _ours(status: os.stat_result) -> bool:
    return status.st_uid == os.getuid()


def _trusted_dir(status: os.stat_result) -> bool:
    """A real folder of this user's that nobody else may write in."""
    return stat.S_ISDIR(status.st_mode) and _ours(status) and not status.st_mode & 0o022


def _read_record(descriptor: int) -> _Record | None:
    status = os.fstat(descriptor)
    if status.st_size > RECORD_MAX_BYTES:
        return None
    data = os.pread(descriptor, RECORD_MAX_BYTES, 0)
    try:
        return _Record.model_validate_json(data)
    except ValidationError:
        return None  # a write cut short by a crash: the folder is still the run's, with nothing to prune


def _names_itself(run_dir: Path) -> bool:
    """A run folder written before record files: its own run.json (ours, a regular file) names it."""
    from tui_trainer.runs.registry import RunFileError, load_run_info

    try:
        info = load_run_info(run_dir)
    except RunFileError:
        return False
    return info.owner_uid == os.getuid() and info.run_id == run_dir.name


def is_run_folder(run_dir: Path) -> bool:
    """run_dir is a folder of this user's that a run created: a real folder (not a link), owned by us and
    writable by nobody else, holding our record file (or, from before record files, a run.json naming it)."""
    try:
        if not _trusted_dir(os.lstat(run_dir)):
            return False
        record = os.lstat(run_dir / RECORD_FILE)
    except FileNotFoundError:
        return _names_itself(run_dir)
    except OSError:
        return False
    return stat.S_ISREG(record.st_mode) and _ours(record)


def _inner_files_are_plain(run_dir: Path) -> bool:
    return not any((run_dir / name).is_symlink() for name in INNER_FILES)


def replace_file(path: Path, text: str) -> None:
    """Write path atomically through a fresh temporary file beside it (O_EXCL: never an existing name, never
    through a link); raises OSError."""
    descriptor, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


# ---------------------------------------------------------------- the folder a run holds


_HELD: weakref.WeakValueDictionary[str, RunFolder] = weakref.WeakValueDictionary()
"""Run folders this process holds, by path: a Trainer given one of them as its run_dir borrows it."""


class RunFolder:
    """A run folder this process may write in: its lock is held (here, or by the detached supervisor that
    started this engine) until `release()`. A context manager that releases on exit."""

    def __init__(self, path: Path, record: int, *, created: bool, continues_from: Path | None = None,
                 owner: RunFolder | None = None) -> None:
        self.path = path
        self.created = created
        """The folder was made for this run (not a run folder continued in place)."""
        self.continues_from = continues_from
        """The run folder of the checkpoint this run branched off from, if any."""
        self._record = record
        self._owner = owner
        """The folder this one borrows from (kept alive with it: it closes the record, and with it the lock)."""
        self._close = weakref.finalize(self, os.close, record) if owner is None else None

    @property
    def run_id(self) -> str:
        return self.path.name

    def borrow(self) -> RunFolder:
        """The same folder for another user of it in this process; releasing that one leaves the lock held."""
        return RunFolder(self.path, self._record, created=self.created, continues_from=self.continues_from,
                         owner=self)

    def release(self) -> None:
        """Let go of the folder (and its lock). A folder made for a run that never started (nothing but the
        record in it) is removed."""
        if self._close is None or not self._close.alive:
            return
        if _HELD.get(str(self.path)) is self:
            del _HELD[str(self.path)]
        if self.created:
            with contextlib.suppress(OSError):
                if os.listdir(self.path) == [RECORD_FILE]:
                    os.unlink(self.path / RECORD_FILE)
                    os.rmdir(self.path)
        self._close()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def child_fds(self) -> tuple[int, ...]:
        """subprocess.Popen's pass_fds for a child that takes the lock over (the detached supervisor): it
        holds the lock for the run's life once this process lets go."""
        return (self._record,)

    def child_env(self) -> dict[str, str]:
        """What that child's environment adds: tells its own engine that the folder is held for it."""
        return {HELD_BY_PARENT_ENV: str(self.path)}

    def write_file(self, name: str, text: str) -> None:
        replace_file(self.path / name, text)

    # ------------------------------------------------------------ the record

    def periodic(self) -> list[str]:
        record = _read_record(self._record)
        return [name for name in record.periodic if EPOCH_FILE.fullmatch(name)] if record else []

    def _write_record(self, periodic: list[str]) -> None:
        data = _Record(format=RECORD_FORMAT, run_id=self.run_id, periodic=periodic).model_dump_json().encode()
        os.ftruncate(self._record, 0)
        os.pwrite(self._record, data, 0)

    def prune_periodic(self, written: str | Path | None, keep: int) -> list[str]:
        """Note that the periodic checkpoint `written` landed, then remove the run's own periodic checkpoints
        (those the record lists) beyond the newest keep. Returns the names removed."""
        periodic = self.periodic()
        if written is not None and Path(written).parent == self.path and EPOCH_FILE.fullmatch(Path(written).name):
            name = Path(written).name
            periodic = [each for each in periodic if each != name] + [name]
        old, kept = periodic[:-keep], periodic[-keep:]
        for name in old:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path / name)  # unlink never follows a link: at worst a link goes
        with contextlib.suppress(OSError):  # a full disk: nothing is removed later that is not listed
            self._write_record(kept)
        return old


def _open_dir(path: Path, dir_fd: int | None = None) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def _open_record(folder_fd: int, create: bool) -> int:
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT | os.O_EXCL if create else 0)
    descriptor = os.open(RECORD_FILE, flags, 0o600, dir_fd=folder_fd)
    status = os.fstat(descriptor)
    if not (stat.S_ISREG(status.st_mode) and _ours(status) and status.st_nlink == 1):
        os.close(descriptor)
        raise OSError(errno.EPERM, "not this user's run record")
    return descriptor


def _try_lock(descriptor: int) -> bool:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _checkpoint_root(config: RunConfig) -> Path:
    """The checkpoint folder, created if need be: it must be a folder (the user's own choice of path, links in
    it included)."""
    root = Path(config.checkpoint.dir).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunFolderError(f"cannot create {root}: {error.strerror or error}") from None
    root = root.resolve()
    if not root.is_dir():
        raise RunFolderError(f"cannot create {root}: not a folder")
    return root


def _create_in(root: Path, names: Iterator[str], continues_from: Path | None = None) -> RunFolder:
    """A new run folder in root under the first free name: mkdir refuses any existing entry, links included."""
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        raise RunFolderError(f"cannot create a run folder in {root}: {error.strerror or error}") from None
    try:
        for name in names:
            assert "/" not in name and name not in ("", ".", "..") and len(name) <= NAME_MAX, name
            try:
                os.mkdir(name, 0o700, dir_fd=root_fd)
                folder_fd = _open_dir(Path(name), dir_fd=root_fd)
            except FileExistsError:
                continue
            except OSError as error:
                raise RunFolderError(f"cannot create {root / name}: {error.strerror or error}") from None
            try:
                if not _ours(os.fstat(folder_fd)):
                    continue  # swapped for another's folder between mkdir and open (a shared parent)
                os.fchmod(folder_fd, 0o700)
                record = _open_record(folder_fd, create=True)
            except OSError as error:
                raise RunFolderError(f"cannot create {root / name}: {error.strerror or error}") from None
            finally:
                os.close(folder_fd)
            folder = RunFolder(root / name, record, created=True, continues_from=continues_from)
            fcntl.flock(record, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else holds it
            folder._write_record([])
            _HELD[str(folder.path)] = folder
            return folder
    finally:
        os.close(root_fd)
    raise RunFolderError(f"no free run folder name in {root} ({NAME_TRIES} taken)")


def _lock_existing(run_dir: Path, wait_s: float = 0.0) -> RunFolder | None:
    """run_dir, locked for this process, if it is a run folder of ours whose lock is free (within wait_s)."""
    if not is_run_folder(run_dir):
        return None
    try:
        folder_fd = _open_dir(run_dir)
    except OSError:
        return None
    try:
        if not _trusted_dir(os.fstat(folder_fd)):
            return None
        try:
            record = _open_record(folder_fd, create=False)
        except FileNotFoundError:  # a run folder from before record files
            record = _open_record(folder_fd, create=True)
    except OSError:
        return None
    finally:
        os.close(folder_fd)
    deadline = time.monotonic() + wait_s
    while not _try_lock(record):
        if time.monotonic() >= deadline:
            os.close(record)
            return None
        time.sleep(0.05)
    folder = RunFolder(run_dir, record, created=False)
    _HELD[str(run_dir)] = folder
    return folder


def _just_ended(run_dir: Path) -> bool:
    from tui_trainer.runs.registry import RunFileError, load_run_info

    try:
        return load_run_info(run_dir).state in ENDED_STATES
    except RunFileError:
        return False


def _claim_for_resume(config: RunConfig, checkpoint: Path, run_id: str | None) -> RunFolder:
    from tui_trainer.engine import checkpoints

    step = checkpoints.read_info(checkpoint).step
    previous = checkpoint.resolve().parent
    if not is_run_folder(previous):
        # A checkpoint of the user's own (~/proj/model.pt): that folder is not the run's to write in.
        return _create_in(_checkpoint_root(config), _new_names(config.name, run_id))
    folder = _lock_existing(previous, wait_s=BUSY_GRACE_S if _just_ended(previous) else 0.0)
    if folder is not None:
        if last_logged_step(previous) <= step and _inner_files_are_plain(previous):
            return folder
        # Another future of this run goes on from the checkpoint: a branch of its own, so they never mix.
        checkpoints.clean_temporary_files(previous)
        folder.release()
    return _create_in(previous.parent, _branch_names(previous.name, step), continues_from=previous)


def claim_run_folder(config: RunConfig, resume_from: str | Path | None = None,
                     run_id: str | None = None) -> RunFolder:
    """The folder a run writes to, made or locked for this process. A new run: a new folder
    <checkpoint.dir>/<run-id>. A resumed run: the checkpoint's run folder, when it is one of ours that
    nobody trains in and the run went no further than the checkpoint; else a branch
    <run-id>-from-s<step> beside it; a checkpoint outside any run folder: a new folder under checkpoint.dir.
    Raises RunFolderError."""
    if resume_from is not None:
        return _claim_for_resume(config, Path(resume_from), run_id)
    return _create_in(_checkpoint_root(config), _new_names(config.name, run_id))


def adopt_run_folder(run_dir: str | Path) -> RunFolder:
    """The folder a caller chose for a Trainer (run_dir=): one this process holds (borrowed), the one the
    detached supervisor holds for this engine, or an existing run folder of ours that nobody trains in.
    A path that does not exist yet becomes a new run folder. Raises RunFolderError."""
    path = Path(run_dir).expanduser().absolute()
    held = _HELD.get(str(path))
    if held is not None:
        return held.borrow()
    if not os.path.lexists(path):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunFolderError(f"cannot create {path}: {error.strerror or error}") from None
        return _create_in(path.parent, iter([path.name]))
    if not is_run_folder(path) or not _inner_files_are_plain(path):
        raise RunFolderError(f"{path} is not a run folder of yours (a run writes only in folders it created)")
    if os.environ.get(HELD_BY_PARENT_ENV) == str(path):
        folder_fd = _open_dir(path)
        try:
            return RunFolder(path, _open_record(folder_fd, create=False), created=False)
        finally:
            os.close(folder_fd)
    folder = _lock_existing(path)
    if folder is None:
        raise RunFolderError(f"{path} is in use by another run (its lock is held)")
    return folder


def plan_run_dir(config: RunConfig, resume_from: str | Path | None, run_id: str | None = None) -> Path:
    """Where claim_run_folder would put the run, without creating or locking anything: for processes that
    never write in it (torchrun ranks other than 0)."""
    root = Path(config.checkpoint.dir).expanduser().resolve()
    if resume_from is None:
        return _first_free(root, _new_names(config.name, run_id))
    from tui_trainer.engine import checkpoints

    step = checkpoints.read_info(resume_from).step
    previous = Path(resume_from).resolve().parent
    if not is_run_folder(previous):
        return _first_free(root, _new_names(config.name, run_id))
    if last_logged_step(previous) <= step:
        return previous
    return _first_free(previous.parent, _branch_names(previous.name, step))


def _first_free(root: Path, names: Iterator[str]) -> Path:
    return root / next((name for name in names if not os.path.lexists(root / name)), "run")


def open_run_folder(config: RunConfig, is_main: bool, planned: Path | None, resume_from: Path | None,
                    run_id: str | None) -> tuple[RunFolder | None, Path]:
    """A Trainer's folder: only one made for this run, or the run folder of its own checkpoint; the main
    process alone holds and writes it (the others only learn its path). See engine.held_folder."""
    if not is_main:
        return None, planned or plan_run_dir(config, resume_from, run_id)
    folder = adopt_run_folder(planned) if planned is not None else claim_run_folder(config, resume_from, run_id)
    return folder, folder.path
