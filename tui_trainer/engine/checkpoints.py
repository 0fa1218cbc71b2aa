"""Checkpoints: one self-describing dict per file, written atomically, loaded without running code.

Saving writes a temporary file beside the target, flushes and fsyncs it, then renames it over the
target: a reader sees the old file or the new one, never half of one. Loading uses
`torch.load(weights_only=True)`, which refuses any pickle that would import or call code.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import pickle
import random
import re
import stat
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = "tui-trainer-checkpoint"
FORMAT_VERSION = 1
TEMP_PREFIX = ".tmp-"
SUFFIX = ".pt"
WRITE_BEHIND_BYTES = 8 << 20
"""A save hands each this many bytes written to the disk at once (see WriteBehind)."""
STARTS_WRITEBACK = sys.platform.startswith("linux") and hasattr(os, "posix_fadvise")
"""Whether _start_writeback does what it says here (Linux); elsewhere a save writes plainly."""


class CheckpointError(Exception):
    """A checkpoint that cannot be written or read. str() is one line naming the file."""

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = str(path)
        self.message = message
        super().__init__(f"{path}: {message}")


# ---------------------------------------------------------------- saving


def serialize(payload: dict[str, Any]) -> memoryview:
    """The file's bytes, in memory: what save_checkpoint writes for payload, ready to be written on another
    thread while training changes the tensors they came from."""
    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getbuffer()


def snapshot(payload: Any) -> Any:
    """payload with each tensor cloned (where it lives, in its layout): a copy later training steps cannot
    change, for a checkpoint that may never be written (a best overtaken by the next one). Much cheaper than
    serializing: 0.06 against 0.6 ms for a small CNN with its Adam state, 39 against 60 ms for 48 MB."""
    import torch

    if isinstance(payload, torch.Tensor):
        return payload.detach().clone()
    if isinstance(payload, dict):
        copied = copy.copy(payload)  # keeps the type and attributes (a state_dict's _metadata)
        for key, value in copied.items():
            copied[key] = snapshot(value)
        return copied
    if type(payload) in (list, tuple):
        return type(payload)(snapshot(value) for value in payload)
    return payload


def save_checkpoint(path: str | Path, payload: dict[str, Any] | bytes | memoryview) -> int:
    """Write payload (or its serialized bytes) to path atomically; returns the file's size in bytes."""
    import torch

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX + path.name + ".", dir=path.parent)
    except OSError as error:
        raise CheckpointError(path, f"cannot write here: {error.strerror or error}") from None
    try:
        with os.fdopen(descriptor, "wb") as file:
            writer = WriteBehind(file)
            if isinstance(payload, dict):
                torch.save(payload, writer)
            else:
                writer.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
        _fsync_dir(path.parent)
    except OSError as error:
        _remove_quietly(temp_name)
        reason = "the disk is full" if error.errno == 28 else (error.strerror or str(error))
        raise CheckpointError(path, f"not saved: {reason}; the previous checkpoint is untouched") from None
    except BaseException:
        _remove_quietly(temp_name)
        raise
    return path.stat().st_size


def _start_writeback(descriptor: int, offset: int, length: int) -> None:
    """Linux: fadvise(DONTNEED) starts writing a range's dirty pages to the disk and returns without waiting
    (and lets the page cache drop them once written: a checkpoint is rarely read back soon)."""
    with contextlib.suppress(OSError):
        os.posix_fadvise(descriptor, offset, length, os.POSIX_FADV_DONTNEED)


class WriteBehind:
    """A file's write() that sends what is written on to the disk every WRITE_BEHIND_BYTES while the rest is
    still being serialized, so the fsync that ends a save waits for the last few MB, not the whole file: an
    atomic save of 120 MB took 70 ms against 106 ms written plainly here (benchmarks/checkpoint.py)."""

    def __init__(self, file: Any) -> None:
        self._file = file
        self._descriptor = file.fileno()
        self._written = 0
        self._sent = 0

    def write(self, data: Any) -> int:
        size = data.nbytes if isinstance(data, memoryview) else len(data)
        if size <= WRITE_BEHIND_BYTES:  # torch.save writes headers and small tensors one call each
            self._file.write(data)
            self._wrote(size)
            return size
        view = memoryview(data).cast("B")
        for begin in range(0, size, WRITE_BEHIND_BYTES):
            chunk = view[begin:begin + WRITE_BEHIND_BYTES]
            self._file.write(chunk)
            self._wrote(len(chunk))
        return size

    def _wrote(self, size: int) -> None:
        self._written += size
        if STARTS_WRITEBACK and self._written - self._sent >= WRITE_BEHIND_BYTES:
            self._file.flush()
            _start_writeback(self._descriptor, self._sent, self._written - self._sent)
            self._sent = self._written

    def flush(self) -> None:
        self._file.flush()


def _fsync_dir(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _remove_quietly(name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name)


RUN_TEMP_FILE = re.compile(r"\.tmp-(?:last|best|epoch-\d{4,}|manual-e\d+-s\d+)\.pt\.[A-Za-z0-9_]{1,32}")
"""The temporary file of a save of one of a run's own checkpoints: `.tmp-<name>.<mkstemp's random part>`."""


def clean_temporary_files(folder: str | Path, older_than_s: float = 60.0) -> int:
    """Remove the temporary files that a killed save of the run's own checkpoints left in folder (a run
    folder), older than older_than_s; returns how many went. Only folder itself, only regular files whose
    name is exactly such a file's: nothing below it, nothing of anyone else's."""
    removed = 0
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if not RUN_TEMP_FILE.fullmatch(entry.name):
            continue
        try:
            status = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(status.st_mode) and now - status.st_mtime >= older_than_s:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            continue
    return removed


# ---------------------------------------------------------------- loading


def _sniff(path: Path) -> None:
    """Tell apart the ways a file can fail before torch sees it, each with its own message."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise CheckpointError(path, "no such file") from None
    except OSError as error:
        raise CheckpointError(path, f"cannot read: {error.strerror or error}") from None
    if path.is_dir():
        raise CheckpointError(path, "is a folder, not a checkpoint file")
    if size == 0:
        raise CheckpointError(path, "the file is empty (a save that never finished?)")
    with path.open("rb") as file:
        head = file.read(4)
    if head[:1] == b"\x80":  # the PROTO opcode that starts every modern pickle
        raise CheckpointError(path, "refused: a bare pickle, which could run code when loaded; "
                                    "tui-trainer only loads its own checkpoint format")
    if head != b"PK\x03\x04":
        raise CheckpointError(path, "not a checkpoint: the file is not in PyTorch's format (another program's file?)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        raise CheckpointError(path, "truncated or damaged: the archive cannot be read") from None
    if not any(name.endswith("data.pkl") for name in names):
        raise CheckpointError(path, "not a checkpoint: a zip file, but not one PyTorch wrote")


def load_checkpoint(path: str | Path, map_location: str = "cpu", mmap: bool = False) -> dict[str, Any]:
    """Load and check a checkpoint; never runs code from the file.

    `mmap=True` maps the tensors instead of reading them, for listing metadata cheaply.
    """
    import torch

    path = Path(path)
    _sniff(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        text = str(error)
        if "Weights only load failed" in text or "Unsupported global" in text:
            raise CheckpointError(path, "refused: the file holds code that would run when loaded "
                                        "(crafted or not a tui-trainer checkpoint)") from None
        raise CheckpointError(path, f"damaged: {text.splitlines()[0]}") from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(path, f"truncated or damaged: {first}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(path, "not a tui-trainer checkpoint (a PyTorch file from another program?)")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(path, f"written by a newer tui-trainer (format {version}; this one reads up to "
                                    f"{FORMAT_VERSION}): upgrade tui-trainer to load it")
    missing = [key for key in ("meta", "model", "trainer", "config") if key not in payload]
    if missing:
        raise CheckpointError(path, f"damaged: missing {', '.join(missing)}")
    return payload


# ---------------------------------------------------------------- listing


@dataclass(frozen=True)
class CheckpointInfo:
    path: str
    size_bytes: int
    run_id: str = ""
    preset: str = ""
    epoch: int = 0
    step: int = 0
    val_loss: float | None = None
    val_accuracy: float | None = None
    val_r2: float | None = None
    saved_at: float = 0.0
    reason: str = ""
    error: str | None = None
    """Why this file cannot be loaded; listed anyway so the user sees it."""


def read_info(path: str | Path) -> CheckpointInfo:
    """A checkpoint's metadata without reading its tensors."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    try:
        meta = load_checkpoint(path, mmap=True)["meta"]
    except CheckpointError as error:
        return CheckpointInfo(str(path), size, run_id=path.parent.name, error=error.message,
                              saved_at=_mtime(path))
    val = meta.get("val", {})
    return CheckpointInfo(
        path=str(path), size_bytes=size, run_id=meta.get("run_id", ""), preset=meta.get("preset", ""),
        epoch=meta.get("epoch", 0), step=meta.get("step", 0), val_loss=val.get("val_loss"),
        val_accuracy=val.get("val_accuracy"), val_r2=val.get("val_r2"), saved_at=meta.get("saved_at", 0.0),
        reason=meta.get("reason", ""),
    )


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def list_checkpoints(folder: str | Path) -> list[CheckpointInfo]:
    """Checkpoints under folder (its run folders, or the folder itself), newest first.
    Temporary files of unfinished saves are never listed."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        return []
    paths = {*folder.glob(f"*{SUFFIX}"), *folder.glob(f"*/*{SUFFIX}")}
    infos = [read_info(path) for path in paths if not path.name.startswith(TEMP_PREFIX)]
    return sorted(infos, key=lambda info: info.saved_at, reverse=True)


# ---------------------------------------------------------------- random state


def capture_rng() -> dict[str, Any]:
    import torch

    version, internal, gauss = random.getstate()
    # The 625 words of Python's generator as one tensor: the pickler would visit each int on every save.
    state: dict[str, Any] = {"torch": torch.get_rng_state(),
                             "python": (version, torch.tensor(internal, dtype=torch.int64), gauss)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if "python" in state:
        version, internal, gauss = state["python"]  # internal: a tensor, or a tuple in older checkpoints
        words = internal.tolist() if isinstance(internal, torch.Tensor) else internal
        random.setstate((version, tuple(words), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
