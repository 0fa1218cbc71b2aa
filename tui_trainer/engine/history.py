"""A run's records (progress, epochs, hyperparameter changes): a line of metrics.jsonl each as it happens, and
kept, bounded, in every checkpoint so that a resumed run's charts show the whole run."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tui_trainer.engine.metrics import MetricsLog

HISTORY_LIMIT = 20_000


@dataclass
class RunHistory:
    """Progress, epoch and hyperparameter records for charts after a resume. Bounded: past the limit,
    every other progress record goes (epochs and hyperparameter changes always stay)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    """Each record as JSON, encoded once: metrics.jsonl gets the same text, and a checkpoint joins them."""

    def add(self, record: dict[str, Any]) -> str:
        """Keep record; returns it as one line of JSON."""
        line = json.dumps(record)
        self.records.append(record)
        self.lines.append(line)
        if len(self.records) > HISTORY_LIMIT:
            progress = [index for index, rec in enumerate(self.records) if rec["type"] == "progress"]
            drop = set(progress[::2])
            kept = [index for index in range(len(self.records)) if index not in drop]
            self.records = [self.records[index] for index in kept]
            self.lines = [self.lines[index] for index in kept]
        return line

    def replace(self, records: list[dict[str, Any]]) -> None:
        self.records = list(records)
        self.lines = [json.dumps(record) for record in self.records]

    def to_json(self) -> str:
        return "[" + ",".join(self.lines) + "]"


class RunRecords:
    """The history, and metrics.jsonl (None: this process writes no run folder). A disk error stops the
    file, never the run: warn is told once."""

    def __init__(self, log: MetricsLog | None, warn: Callable[[str], None]) -> None:
        self.history = RunHistory()
        self._log = log
        self._warn = warn

    def add(self, record: dict[str, Any]) -> None:
        self._write(self.history.add(record))

    def _write(self, line: str) -> None:
        if self._log is None:
            return
        try:
            self._log.write_line(line)
        except OSError as error:
            self._log = None
            self._warn(f"metrics.jsonl is no longer written: {error.strerror or error}")

    def state_dict(self) -> dict[str, Any]:
        # One string, not thousands of small dicts: the pickler visits each object it writes.
        return {"history_json": self.history.to_json()}

    def load_state_dict(self, records: list[dict[str, Any]]) -> None:
        """Continue the history a checkpoint holds (checkpoints.check_resumable read it)."""
        self.history.replace(records)
        if self._log is not None and not self._log.path.exists():
            # A branch (see runs.folder) starts its metrics.jsonl with the history it continues.
            for line in self.history.lines:
                self._write(line)

    def close(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):  # a full disk: its last lines are lost, the run's end is not
                self._log.close()
