"""Checkpoints: one self-describing dict per file, written atomically, loaded without running code.

Saving writes a temporary file beside the target, flushes and fsyncs it, then renames it over the
target: a reader sees the old file or the new one, never half of one. Loading uses
`torch.load(weights_only=True)`, which refuses any pickle that would import or call code, and only after
the file is known to be a regular file whose archive holds no compressed or oversized entry; what it
returns is checked against a schema (types, sizes, random states) before any of it is used.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import io
import json
import os
import pickle
import random
import re
import stat
import sys
import tempfile
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from tui_trainer.errors import UserError
from tui_trainer.text import printable

FORMAT = "tui-trainer-checkpoint"
FORMAT_VERSION = 1
TEMP_PREFIX = ".tmp-"
SUFFIX = ".pt"
WRITE_BEHIND_BYTES = 8 << 20
"""A save hands each this many bytes written to the disk at once (see WriteBehind)."""
STARTS_WRITEBACK = sys.platform.startswith("linux") and hasattr(os, "posix_fadvise")
"""Whether _start_writeback does what it says here (Linux); elsewhere a save writes plainly."""
MAX_PICKLE_BYTES = 64 << 20
"""The most a checkpoint's data.pkl (everything but the tensors' bytes) may unpack to: a run's own, with its
whole metric history, is a few MB. Tensors are stored beside it, uncompressed, and mapped when listing."""


SCRIPT_RUN_KIND = "script"
"""meta.trainer.kind of a checkpoint that a script's own training loop wrote (tui_trainer.loop); a preset's run
writes none. Such a checkpoint continues only in its script (tt.init(resume=...))."""


class CheckpointError(UserError):
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
    writer: WriteBehind | None = None
    try:
        with os.fdopen(descriptor, "wb") as file:
            writer = WriteBehind(file)
            if isinstance(payload, dict):
                torch.save(payload, writer)
            else:
                writer.write(payload)
            file.flush()
            os.fsync(file.fileno())
            size = os.fstat(file.fileno()).st_size
        os.replace(temp_name, path)
        _fsync_dir(path.parent)
    except Exception as error:  # torch's zip writer turns a failed write into a RuntimeError
        _remove_quietly(temp_name)
        reason = _why_not_saved(error, writer.error if writer is not None else None)
        raise CheckpointError(path, f"not saved: {reason}; the previous checkpoint is untouched") from None
    except BaseException:
        _remove_quietly(temp_name)
        raise
    return size


def _why_not_saved(error: BaseException, write_error: OSError | None) -> str:
    """The disk's own reason (the OSError under torch's RuntimeError, if any), in a few words."""
    cause: BaseException | None = write_error or error
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, OSError):
        if cause.errno == errno.ENOSPC:
            return "the disk is full"
        if cause.errno == getattr(errno, "EDQUOT", None):
            return "the disk quota is used up"
        return printable(cause.strerror or cause)
    return _first_line(error)


def _first_line(error: BaseException, limit: int = 200) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return printable(line if len(line) <= limit else line[:limit] + "...")


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
        self.error: OSError | None = None
        """The disk's error, kept: torch's zip writer reports it only as a RuntimeError of its own."""

    def write(self, data: Any) -> int:
        try:
            return self._write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def _write(self, data: Any) -> int:
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


def _open_regular(path: Path) -> tuple[BinaryIO, os.stat_result]:
    """path opened for reading once it is known to be a regular file (a link to one is followed): a FIFO or
    a device would block or never end, and opening one can do something of its own."""
    _require_regular(path, _stat(path, os.stat))
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise _unreadable(path, error) from None
    file = open(descriptor, "rb")  # noqa: SIM115 - the caller closes it
    opened = os.fstat(descriptor)
    try:
        _require_regular(path, opened)  # the name may have been pointed elsewhere in between
    except CheckpointError:
        file.close()
        raise
    return file, opened


def _stat(path: Path, how: Any) -> os.stat_result:
    try:
        return how(path)
    except OSError as error:
        raise _unreadable(path, error) from None


def _unreadable(path: Path, error: OSError) -> CheckpointError:
    if isinstance(error, FileNotFoundError):
        return CheckpointError(path, "no such file")
    return CheckpointError(path, f"cannot read: {printable(error.strerror or error)}")


def _require_regular(path: Path, status: os.stat_result) -> None:
    mode = status.st_mode
    if stat.S_ISDIR(mode):
        raise CheckpointError(path, "is a folder, not a checkpoint file")
    if not stat.S_ISREG(mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or
                stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "a special file")
        raise CheckpointError(path, f"refused: {kind}, not a regular file")
    if status.st_size == 0:
        raise CheckpointError(path, "the file is empty (a save that never finished?)")


def _check_archive(path: Path, file: BinaryIO, size: int) -> None:
    """Tell apart the ways a file can fail before torch sees it, each with its own message, and bound what
    loading it can cost: torch stores every entry uncompressed, so none may unpack to more than the file
    holds, and data.pkl (read whole, also when listing) holds at most MAX_PICKLE_BYTES."""
    head = file.read(4)
    if head[:1] == b"\x80":  # the PROTO opcode that starts every modern pickle
        raise CheckpointError(path, "refused: a bare pickle, which could run code when loaded; "
                                    "tui-trainer only loads its own checkpoint format")
    if head != b"PK\x03\x04":
        raise CheckpointError(path, "not a checkpoint: the file is not in PyTorch's format (another program's file?)")
    try:
        file.seek(0)
        with zipfile.ZipFile(file) as archive:
            entries = archive.infolist()
    except Exception:  # zipfile's errors for a damaged directory are not all BadZipFile
        raise CheckpointError(path, "truncated or damaged: the archive cannot be read") from None
    pickles = [entry for entry in entries if entry.filename.endswith("data.pkl")]
    if not pickles:
        raise CheckpointError(path, "not a checkpoint: a zip file, but not one PyTorch wrote")
    compressed = next((entry for entry in entries if entry.compress_type != zipfile.ZIP_STORED), None)
    if compressed is not None:
        raise CheckpointError(path, f"refused: its entry {printable(compressed.filename[:80])} is compressed "
                                    f"(to unpack to {_megabytes(compressed.file_size)}); PyTorch stores "
                                    "checkpoints uncompressed")
    if sum(max(entry.file_size, entry.compress_size) for entry in entries) > size:
        raise CheckpointError(path, "refused: its entries claim more bytes than the file holds (a crafted archive?)")
    largest = max(entry.file_size for entry in pickles)
    if largest > MAX_PICKLE_BYTES:
        raise CheckpointError(path, f"refused: its data.pkl holds {_megabytes(largest)}, more than the "
                                    f"{_megabytes(MAX_PICKLE_BYTES)} a checkpoint's metadata may take")


def _megabytes(size: int) -> str:
    return f"{size / 2**20:,.1f} MB"


def _unpickle(path: Path, file: BinaryIO, opened: os.stat_result, map_location: str, mmap: bool) -> Any:
    import torch

    if mmap:  # torch maps a file by its name: the name must still be the file checked
        now = _stat(path, os.stat)
        if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
            raise CheckpointError(path, "changed while it was being read; try again")
        source: Any = path
    else:
        file.seek(0)
        source = file
    try:
        return torch.load(source, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        text = str(error)
        if "Weights only load failed" in text or "Unsupported global" in text:
            raise CheckpointError(path, "refused: the file holds code that would run when loaded "
                                        "(crafted or not a tui-trainer checkpoint)") from None
        raise CheckpointError(path, f"damaged: {_first_line(error)}") from None
    except Exception as error:  # whatever a damaged or crafted file makes the unpickler raise
        raise CheckpointError(path, f"truncated or damaged: {_first_line(error)}") from None


def load_checkpoint(path: str | Path, map_location: str = "cpu", mmap: bool = False) -> dict[str, Any]:
    """Load and check a checkpoint; never runs code from the file. What a resume uses beyond the metadata,
    config and weights is checked by check_resumable.

    `mmap=True` maps the tensors instead of reading them, for listing metadata cheaply.
    """
    return _load(Path(path), map_location, mmap)[0]


def _load(path: Path, map_location: str, mmap: bool) -> tuple[dict[str, Any], _Checkpoint, int]:
    """The payload, its checked envelope and the file's size."""
    file, opened = _open_regular(path)
    with file:
        _check_archive(path, file, opened.st_size)
        payload = _unpickle(path, file, opened, map_location, mmap)
    return payload, _check_envelope(path, payload), opened.st_size


def _check_envelope(path: Path, payload: Any) -> _Checkpoint:
    if not isinstance(payload, dict) or not isinstance(payload.get("format"), str) or payload["format"] != FORMAT:
        raise CheckpointError(path, "not a tui-trainer checkpoint (a PyTorch file from another program?)")
    version = payload.get("format_version")
    if type(version) is not int:
        raise CheckpointError(path, f"damaged: format_version should be a number (found {type(version).__name__})")
    if version > FORMAT_VERSION:
        raise CheckpointError(path, f"written by a newer tui-trainer (format {version}; this one reads up to "
                                    f"{FORMAT_VERSION}): upgrade tui-trainer to load it")
    missing = [key for key in ("meta", "model", "trainer", "config") if key not in payload]
    if missing:
        raise CheckpointError(path, f"damaged: missing {', '.join(missing)}")
    try:
        return _Checkpoint.model_validate(payload)
    except ValidationError as error:
        raise CheckpointError(path, f"damaged: {_problem(error)}") from None


def refuse_script_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """A preset's run cannot continue what a script's own loop wrote: say where it continues instead."""
    trainer = payload.get("trainer")
    if isinstance(trainer, dict) and trainer.get("kind") == SCRIPT_RUN_KIND:
        raise CheckpointError(path, "written by a script's own training loop: continue it in that script with "
                                    "tt.init(resume=...) (attach shows it while it runs)")


def check_resumable(path: str | Path, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Check what a resume uses beyond load_checkpoint's checks: the trainer's counters, the optimizer's
    and the random generators' states, the metric history. Returns the history's records."""
    refuse_script_checkpoint(path, payload)
    try:
        _Resumable.model_validate(payload)
    except ValidationError as error:
        raise CheckpointError(path, f"damaged: {_problem(error)}") from None
    if payload.get("history_json") is None:
        records, name = payload.get("history") or [], "history"  # written before the history was one JSON string
    else:
        name = "history_json"
        try:
            records = json.loads(payload["history_json"])
        except (ValueError, RecursionError) as error:
            raise CheckpointError(path, f"damaged: history_json is not JSON ({_first_line(error)})") from None
    try:
        _HISTORY.validate_python(records)
    except ValidationError as error:
        raise CheckpointError(path, f"damaged: {_problem(error, name)}") from None
    return records


# ---------------------------------------------------------------- the payload's schema


def _tensor(value: Any) -> Any:
    import torch

    if not isinstance(value, torch.Tensor):
        raise ValueError("should be a tensor")
    return value


def _byte_state(value: Any) -> Any:
    import torch

    _tensor(value)
    if value.dtype != torch.uint8 or value.dim() != 1:
        raise ValueError(f"should be a 1-D uint8 tensor (a generator's state), not {value.dtype} of shape "
                         f"{tuple(value.shape)}")
    return value


def _generator_state(value: Any) -> Any:
    """A CPU generator's state, tried on a generator of its own (the run's are left alone)."""
    import torch

    _byte_state(value)
    try:
        torch.Generator().set_state(value)
    except (RuntimeError, ValueError, TypeError) as error:
        raise ValueError(f"is not a random-number generator's state ({_first_line(error)})") from None
    return value


def _python_random_state(value: Any) -> Any:
    """(version, 625 words as a tensor or a sequence, gauss), tried on a Random of its own."""
    import torch

    if not isinstance(value, (tuple, list)) or len(value) != 3:
        raise ValueError("should be Python's random state: (version, words, gauss)")
    version, words, gauss = value
    if isinstance(words, torch.Tensor):
        if words.dim() != 1 or words.numel() != 625 or words.dtype != torch.int64:
            raise ValueError("should hold 625 int64 words")
        words = words.tolist()
    if not isinstance(words, (tuple, list)) or len(words) != 625:
        raise ValueError("should hold 625 words")
    try:
        random.Random().setstate((version, tuple(words), gauss))
    except (TypeError, ValueError, OverflowError) as error:
        raise ValueError(f"is not Python's random state ({_first_line(error)})") from None
    return value


MAX_COUNT = 2**62
MAX_TIMESTAMP = 32_503_680_000.0
"""3000-01-01: a saved_at past it cannot be a real time (and breaks time.localtime on some systems)."""
Tensor = Annotated[Any, AfterValidator(_tensor)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Text = Annotated[str, Field(max_length=4096)]
Metrics = dict[Annotated[str, Field(max_length=256)], float]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Schema(BaseModel):
    """Strict: an int is not a string, a list is not a dict. Fields a newer writer adds are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class Meta(_Schema):
    """What a listing shows."""

    run_id: Text = ""
    preset: Text = ""
    task: Text = ""
    epoch: Count = 0
    epoch_complete: bool = True
    step: Count = 0
    val: Metrics = {}
    train: Metrics = {}
    saved_at: Annotated[float, Field(ge=0, le=MAX_TIMESTAMP, allow_inf_nan=False)] = 0.0
    reason: Text = ""
    versions: dict[Text, Text] = {}
    torch_threads: Annotated[int, Field(ge=1, le=1 << 16)] | None = None
    """torch's intra-op threads when it was saved (the run's count: it changes the order floats are summed in,
    so a resume takes it again); None in checkpoints written before it was recorded."""


class _Checkpoint(_Schema):
    """What every load checks: the metadata, the config, the weights, and that the trainer's state is a dict."""

    format: Literal["tui-trainer-checkpoint"]
    format_version: int
    meta: Meta
    config: dict[str, Any]
    model: dict[str, Tensor]
    trainer: dict[str, Any]


class _TrainerState(_Schema):
    epoch: Annotated[int, Field(ge=1, le=MAX_COUNT)]
    position: Count
    step: Count
    epoch_order_state: Annotated[Any, AfterValidator(_generator_state)]
    best: Metrics
    best_value: float | None
    best_epoch: Count | None
    stopping_best: float | None
    bad_epochs: Count
    last_val: Metrics
    last_train: Metrics
    elapsed_s: Seconds
    epoch_totals: Annotated[list[float], Field(min_length=3, max_length=3)]
    world_size: Annotated[int, Field(ge=1, le=1 << 20)] = 1


class _ParamGroup(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    params: list[Annotated[int, Field(ge=0)]]


class _OptimizerState(_Schema):
    state: dict[Annotated[int, Field(ge=0)], dict[str, Any]]
    param_groups: Annotated[list[_ParamGroup], Field(min_length=1)]


class _RandomState(_Schema):
    torch: Annotated[Any, AfterValidator(_generator_state)]
    python: Annotated[Any, AfterValidator(_python_random_state)] | None = None
    cuda: list[Annotated[Any, AfterValidator(_byte_state)]] | None = None


class _Resumable(_Schema):
    trainer: _TrainerState
    optimizer: _OptimizerState
    scheduler: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    rng: _RandomState
    history_json: str | None = None
    history: list[dict[str, Any]] | None = None


class _Record(_Schema):
    step: Count


class _ProgressRecord(_Record):
    type: Literal["progress"]
    train_loss: float
    train_accuracy: float | None = None
    elapsed_s: float = 0.0


class _EpochRecord(_Record):
    type: Literal["epoch_ended"]
    val: Metrics = {}
    train: Metrics = {}


class _TweakRecord(_Record):
    type: Literal["hyperparameters_changed"]
    changes: dict[str, float] = {}


_HISTORY = TypeAdapter(list[Annotated[_ProgressRecord | _EpochRecord | _TweakRecord, Field(discriminator="type")]])


def _problem(error: ValidationError, root: str = "") -> str:
    """The first thing wrong, in one line: where (meta.val.val_loss), what, and what was found."""
    problems = error.errors(include_url=False)
    first = problems[0]
    parts = [str(part)[:64] for part in (root, *first["loc"]) if part != ""]
    where = ".".join("key" if part == "[key]" else part for part in parts) or "the checkpoint"
    if first["type"] == "missing":
        text = f"{where} is missing"
    else:
        message = first["msg"].removeprefix("Value error, ")
        found = first.get("input")
        shown = repr(found)[:40] if found is None or isinstance(found, (bool, int, float)) else type(found).__name__
        text = f"{where}: {message[:1].lower()}{message[1:]} (found {shown})"
    if len(problems) > 1:
        text += f"; {len(problems) - 1} more problem(s)"
    return printable(text)


# ---------------------------------------------------------------- does it fit this run


def model_mismatch(expected: Mapping[str, Any], saved: Mapping[str, Any]) -> str | None:
    """What keeps saved (weights checked by load_checkpoint) from loading into a model whose state_dict is
    expected, in a few words; None if it fits."""
    missing = [key for key in expected if key not in saved]
    unexpected = [key for key in saved if key not in expected]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({_names(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} not in this model ({_names(unexpected)})")
    for key, tensor in expected.items():
        if key in saved and tuple(saved[key].shape) != tuple(tensor.shape):
            problems.append(f"{_names([key])} is {_shape(saved[key])} in the file, {_shape(tensor)} here")
            break
    return f"the model's weights: {'; '.join(problems)}" if problems else None


def optimizer_mismatch(optimizer: Any, saved: Mapping[str, Any]) -> str | None:
    """What keeps saved (an optimizer state check_resumable has checked) from fitting optimizer: its groups,
    their hyperparameters' kinds, and each state tensor's shape against its parameter's; None if it fits."""
    import torch

    groups, saved_groups = optimizer.param_groups, saved["param_groups"]
    if len(groups) != len(saved_groups):
        return f"the optimizer has {len(saved_groups)} parameter group(s) in the file, {len(groups)} here"
    parameters: dict[int, Any] = {}
    for index, (group, saved_group) in enumerate(zip(groups, saved_groups, strict=True)):
        if len(group["params"]) != len(saved_group["params"]):
            return (f"the optimizer's group {index} has {len(saved_group['params'])} parameters in the file, "
                    f"{len(group['params'])} here")
        parameters.update(zip(saved_group["params"], group["params"], strict=True))
        for key, value in group.items():
            if key != "params" and key in saved_group:
                problem = structure_mismatch(value, saved_group[key], f"optimizer.param_groups.{index}.{key}")
                if problem:
                    return problem
    for key, state in saved["state"].items():
        parameter = parameters.get(key)
        if parameter is None:
            return f"optimizer.state holds parameter {key}, which none of its groups names"
        for name, value in state.items():
            where = f"optimizer.state.{key}.{printable(str(name)[:64])}"
            if isinstance(value, torch.Tensor):
                if value.dim() > 0 and tuple(value.shape) != tuple(parameter.shape):
                    return f"{where} is {_shape(value)} in the file; its parameter is {_shape(parameter)} here"
            elif value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                return f"{where} is {_kind(value)}, not a tensor or a number"
    return None


def structure_mismatch(expected: Any, saved: Any, where: str) -> str | None:
    """Whether saved has expected's shape: the same kinds of values (numbers, flags, text, lists of the same
    length, tensors of the same shape) for every key both have. None in this run (nothing there yet) takes
    anything, and None in the file stands for any setting but a number (an optimizer's fused or foreach left
    to torch). For states torch's load_state_dict takes without a look (schedulers, grad scalers)."""
    import torch

    if expected is None or (saved is None and _kind(expected) not in ("a number", "a tensor")):
        return None
    kind, saved_kind = _kind(expected), _kind(saved)
    if kind != saved_kind:
        return f"{where} is {saved_kind} in the file, {kind} here"
    if isinstance(expected, Mapping):
        for key, value in expected.items():
            if key in saved:
                problem = structure_mismatch(value, saved[key], f"{where}.{printable(str(key)[:64])}")
                if problem:
                    return problem
    elif isinstance(expected, (list, tuple)):
        if len(expected) != len(saved):
            return f"{where} holds {len(saved)} values in the file, {len(expected)} here"
        for index, (value, saved_value) in enumerate(zip(expected, saved, strict=True)):
            problem = structure_mismatch(value, saved_value, f"{where}.{index}")
            if problem:
                return problem
    elif isinstance(expected, torch.Tensor) and tuple(expected.shape) != tuple(saved.shape):
        return f"{where} is {_shape(saved)} in the file, {_shape(expected)} here"
    return None


def _kind(value: Any) -> str:
    import torch

    if isinstance(value, bool):
        return "a flag"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if value is None:
        return "nothing (None)"
    if isinstance(value, Mapping):
        return "a dict"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, torch.Tensor):
        return "a tensor"
    return f"a {type(value).__name__}"


def _shape(tensor: Any) -> str:
    return "x".join(str(size) for size in tensor.shape) or "a scalar"


def _names(keys: list[Any], shown: int = 3) -> str:
    names = ", ".join(printable(str(key)[:64]) for key in keys[:shown])
    return names + (f" and {len(keys) - shown} more" if len(keys) > shown else "")


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
    imports: tuple[str, ...] = ()
    """Code its stored config names ("model.import=pkg.mod:factory"): resuming it needs the user's trust."""
    torch_threads: int | None = None
    """torch's intra-op threads of the run that saved it (None: not recorded)."""


def read_info(path: str | Path) -> CheckpointInfo:
    """A checkpoint's metadata without reading its tensors."""
    from tui_trainer.config import stored_imports

    path = Path(path)
    try:
        _, checked, size = _load(path, "cpu", mmap=True)
    except CheckpointError as error:
        return CheckpointInfo(str(path), _size(path), run_id=path.parent.name, error=error.message,
                              saved_at=_mtime(path))
    meta = checked.meta
    return CheckpointInfo(
        path=str(path), size_bytes=size, run_id=meta.run_id, preset=meta.preset, epoch=meta.epoch,
        step=meta.step, val_loss=meta.val.get("val_loss"), val_accuracy=meta.val.get("val_accuracy"),
        val_r2=meta.val.get("val_r2"), saved_at=meta.saved_at, reason=meta.reason,
        imports=tuple(f"{field}={target}" for field, target in stored_imports(checked.config)),
        torch_threads=meta.torch_threads,
    )


def recorded_threads(path: str | Path | None) -> int | None:
    """The torch thread count the checkpoint at path recorded; None without one (or a file that cannot be
    read: resuming it reports why)."""
    if path is None:
        return None
    info = read_info(path)
    return info.torch_threads if info.error is None else None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


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
    """Set the generators to a state check_resumable has checked. CUDA: each device this machine has."""
    import torch

    torch.set_rng_state(state["torch"])
    if state.get("python") is not None:
        version, internal, gauss = state["python"]  # internal: a tensor, or a tuple in older checkpoints
        words = internal.tolist() if isinstance(internal, torch.Tensor) else internal
        random.setstate((version, tuple(words), gauss))
    if state.get("cuda") and torch.cuda.is_available():
        for index, device_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, index)
