"""Metric series: bounded and decimated for charts, complete on disk.

`Series` keeps every point for the whole run in compact arrays (a float64 pair per point) and hands
charts a min/max-per-bucket view of a fixed size, so drawing costs the same at step 100 and at step 10
million. `MetricsLog` appends one JSON object per line to metrics.jsonl.
"""

from __future__ import annotations

import json
import math
import os
import stat
from array import array
from pathlib import Path
from typing import Any, TextIO


class Series:
    """An append-only (x, y) series with a cheap decimated view.

    Points are kept in buckets of `bucket` consecutive points, each bucket reduced to its min and max
    (in x order). When the buckets outnumber `max_buckets`, neighbouring buckets merge and `bucket`
    doubles: memory stays bounded, the view keeps every peak and trough.
    """

    def __init__(self, max_points: int = 4096) -> None:
        self.max_buckets = max(4, max_points // 2)
        self.bucket = 1
        self.count = 0
        self.last: tuple[float, float] | None = None
        # Reduced buckets: for each, (x_a, y_a, x_b, y_b) with y_a <= y_b or in x order.
        self._xs = array("d")
        self._ys = array("d")
        self._open: list[tuple[float, float]] = []
        self.version = 0
        """Changes whenever a point is added: a chart redraws only when this moved."""

    def append(self, x: float, y: float) -> None:
        if not math.isfinite(y):
            return
        self.count += 1
        self.version += 1
        self.last = (x, y)
        self._open.append((x, y))
        if len(self._open) >= self.bucket:
            self._close_bucket()

    def _close_bucket(self) -> None:
        low = min(self._open, key=lambda point: point[1])
        high = max(self._open, key=lambda point: point[1])
        first, second = sorted({low, high})if low != high else (low, low)
        self._xs.extend((first[0], second[0]))
        self._ys.extend((first[1], second[1]))
        self._open = []
        if len(self._xs) // 2 > self.max_buckets:
            self._merge()

    def _merge(self) -> None:
        xs, ys = self._xs, self._ys
        merged_x, merged_y = array("d"), array("d")
        for start in range(0, len(xs) - 3, 4):
            points = list(zip(xs[start:start + 4], ys[start:start + 4], strict=True))
            low = min(points, key=lambda point: point[1])
            high = max(points, key=lambda point: point[1])
            first, second = sorted({low, high}) if low != high else (low, low)
            merged_x.extend((first[0], second[0]))
            merged_y.extend((first[1], second[1]))
        if len(xs) % 4:
            merged_x.extend(xs[-(len(xs) % 4):])
            merged_y.extend(ys[-(len(ys) % 4):])
        self._xs, self._ys = merged_x, merged_y
        self.bucket *= 2

    def view(self, max_points: int) -> tuple[list[float], list[float]]:
        """At most about max_points points, min and max of each bucket kept, the newest point included."""
        xs, ys = list(self._xs), list(self._ys)
        for x, y in self._open:
            xs.append(x)
            ys.append(y)
        if len(xs) > max_points:
            group = math.ceil(len(xs) / max(2, max_points // 2))
            out_x, out_y = [], []
            for start in range(0, len(xs), group):
                chunk = list(zip(xs[start:start + group], ys[start:start + group], strict=True))
                low = min(chunk, key=lambda point: point[1])
                high = max(chunk, key=lambda point: point[1])
                for point in sorted({low, high}):
                    out_x.append(point[0])
                    out_y.append(point[1])
            xs, ys = out_x, out_y
        # A bucket keeps only its extremes; the chart's right edge is the latest value all the same.
        if self.last is not None and (not xs or xs[-1] != self.last[0]):
            xs.append(self.last[0])
            ys.append(self.last[1])
        return xs, ys

    def __len__(self) -> int:
        return self.count


def ema(values: list[float], weight: float = 0.6) -> list[float]:
    """Exponential moving average, the chart's smoothed line."""
    smoothed, current = [], None
    for value in values:
        current = value if current is None else weight * current + (1 - weight) * value
        smoothed.append(current)
    return smoothed


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
