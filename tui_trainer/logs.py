"""Logging to a file: Textual owns the terminal (and draws to stderr), so diagnostics go to disk."""

from __future__ import annotations

import logging
import os
from pathlib import Path

LOGGER_NAME = "tui_trainer"


def log_path() -> Path:
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "tui-trainer" / "tui-trainer.log"


def _private_file(path: Path) -> None:
    """Create the log's folder (0700) and file (0600), or make them private: the log records every save path
    and command, which are no other user's business. A link planted at the file's name is refused."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.parent.stat().st_uid == os.getuid():
        os.chmod(path.parent, 0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
    finally:
        os.close(descriptor)


def setup_file_logging() -> Path | None:
    """Send the package's log records to the log file; returns its path, or None if it cannot be written."""
    path = log_path()
    logger = logging.getLogger(LOGGER_NAME)
    if any(isinstance(handler, logging.FileHandler) for handler in logger.handlers):
        return path
    try:
        _private_file(path)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return path


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}")
