"""The problems a user can fix, and the exit codes every command ends with, defined once.

Every error meant for the user (a bad preset or flag, an unreadable checkpoint, data that cannot be had, a run
that would not start) is a UserError: str() is one line that names the file, field or run and what is allowed,
and `exit_code` says how a command that meets it ends. Anything else is a fault of ours (a traceback in the log).
This module imports nothing of the project, so the engine, the runs layer and the faces may all use it.
"""

from __future__ import annotations

import sys
from typing import TextIO

EXIT_OK = 0
EXIT_FAILED = 1
"""Training failed, its last.pt could not be written, or a run could not be started or reached."""
EXIT_BAD_INPUT = 2
"""A preset, flag, checkpoint or data set that cannot be used (nothing was trained)."""
SIGNAL_EXIT_BASE = 128


class UserError(Exception):
    """A problem the user can fix; str() is one line for them (no traceback)."""

    exit_code: int = EXIT_BAD_INPUT
    field: str = ""
    """The config field it is about ("optimizer.lr"), when it names one: the setup form marks that field."""


class RunNotStarted(UserError):
    """A run in another process did not start (it ended at once, or never became ready); the message is its
    own one-line reason, the exit code the one its own process gave (EXIT_FAILED when it gave none)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def signal_exit(signum: int) -> int:
    """The exit code of a command that stopped (after saving) on signal signum: 128 + N, as shells report it."""
    return SIGNAL_EXIT_BASE + int(signum)


def one_line(error: BaseException) -> str:
    """An error as a user reads it: a UserError's own first line; anything else named by its type."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, UserError):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def report(error: BaseException | str, code: int | None = None, out: TextIO | None = None) -> int:
    """Print `tui-trainer: error: ...` (control characters escaped) and return the exit code: `code` when
    given, else the error's own (EXIT_BAD_INPUT for a plain message, EXIT_FAILED for a fault of ours)."""
    from tui_trainer.text import printable

    message = error if isinstance(error, str) else one_line(error)
    print(f"tui-trainer: error: {printable(message)}", file=out or sys.stderr, flush=True)
    if code is not None:
        return code
    if isinstance(error, str):
        return EXIT_BAD_INPUT
    return error.exit_code if isinstance(error, UserError) else EXIT_FAILED
