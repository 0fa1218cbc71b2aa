"""A run's metrics on disk: `MetricsLog` appends one JSON object per line to metrics.jsonl; `read_metrics`
reads them back, bounded. (What the charts draw of them is ui.series.)"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, TextIO


class MetricsLog:
    """metrics.jsonl: one JSON object per progress event, epoch and hyperparameter change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: TextIO | None = None

    def write(self, record: dict[str, Any]) -> None:
        self.write_line(json.dumps(record, allow_nan=True))

    def write_line(self, line: str) -> None:
        """One record already encoded as JSON."""
        if self._file is None:  # never through a link planted at the name
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            self._file = os.fdopen(os.open(self.path, flags, 0o600), "a", encoding="utf-8")
        self._file.write(line + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


MAX_RECORD_CHARS = 1 << 20
"""A metrics record is a few hundred characters; a longer line is not a record of ours."""


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Every record of a metrics.jsonl, from a regular file only (never a FIFO or a device behind a planted
    link). A line cut short by a crash, or one that is no record of ours (not a JSON object, too long, nested
    or numbered past what Python reads), is skipped."""
    records = []
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError:
        return []
    with open(descriptor, encoding="utf-8", errors="replace") as file:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return []
        while line := file.readline(MAX_RECORD_CHARS):
            if not line.endswith("\n") and len(line) >= MAX_RECORD_CHARS:
                while (rest := file.readline(MAX_RECORD_CHARS)) and not rest.endswith("\n"):
                    pass  # the rest of an over-long line
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(record, dict):
                records.append(record)
    return records
