"""What every file data source shares: the path options, their checks, the extra that reads them, the split.

A file is data: it is read by a library (pandas, pyarrow, NumPy, Pillow, torch with weights_only), never
unpickled, and only when it is a regular file (a FIFO or a device would block or never end).
"""

from __future__ import annotations

import importlib
import stat
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from tui_trainer.catalog.options import Options
from tui_trainer.errors import UserError
from tui_trainer.text import printable

if TYPE_CHECKING:
    import torch

DATA_EXTRA = "pip install 'tui-trainer[data]'"
MAX_PATH = 4096


class DataFileError(UserError):
    """A data file or folder that cannot be used: missing, unreadable, or not what its options say."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}".replace("\n", " "))


class PathOptions(Options):
    """One path split by val_split, or a training path and a validation path."""

    path: str | None = Field(None, min_length=1, max_length=MAX_PATH,
                             description="The file (or folder) to read; val_split holds out part of it.")
    train: str | None = Field(None, min_length=1, max_length=MAX_PATH,
                              description="The training file (or folder), with val: used instead of path.")
    val: str | None = Field(None, min_length=1, max_length=MAX_PATH,
                            description="The validation file (or folder), with train.")

    @model_validator(mode="after")
    def _path_or_train_and_val(self) -> PathOptions:
        if self.path is None and (self.train is None or self.val is None):
            raise ValueError("give path, or both train and val")
        if self.path is not None and (self.train is not None or self.val is not None):
            raise ValueError("give either path or train and val, not both")
        return self

    def named(self) -> list[tuple[str, str]]:
        """The (option, path) pairs given, to read in that order."""
        return [(name, getattr(self, name)) for name in ("path", "train", "val") if getattr(self, name)]


def needs(module: str, what: str) -> ModuleType:
    """Import an optional library, or raise one line naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataFileError("data.source", f"{what} needs {module.partition('.')[0]}: {DATA_EXTRA}") from None


def regular_file(field: str, path: str, suffixes: tuple[str, ...] = ()) -> Path:
    """path, expanded, if it is a regular file (with one of suffixes, when given); else one line why not."""
    resolved = Path(path).expanduser()
    try:
        mode = resolved.stat().st_mode
    except FileNotFoundError:
        raise DataFileError(field, f"{printable(path)}: no such file") from None
    except OSError as error:
        raise DataFileError(field, f"{printable(path)}: {error.strerror or error}") from None
    if not stat.S_ISREG(mode):
        raise DataFileError(field, f"{printable(path)}: not a regular file")
    if suffixes and resolved.suffix.lower() not in suffixes:
        raise DataFileError(field, f"{printable(path)}: allowed: a {', '.join(suffixes)} file")
    return resolved


def folder(field: str, path: str) -> Path:
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise DataFileError(field, f"{printable(path)}: no such folder")
    if not resolved.is_dir():
        raise DataFileError(field, f"{printable(path)}: not a folder")
    return resolved


def split_order(size: int, val_split: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, val indices): a seeded shuffle of range(size), the first share held out."""
    import torch

    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    n_val = min(size - 1, max(1, round(size * val_split)))
    return order[n_val:], order[:n_val]


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return printable(text[0][:300]) if text else type(error).__name__


def describe(value: Any) -> str:
    text = repr(value)
    return printable(text if len(text) <= 60 else text[:57] + "...")
