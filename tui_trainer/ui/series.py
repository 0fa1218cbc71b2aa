"""Chart series: every point of the run kept compactly, handed to a chart as a bounded, decimated view.

`Series` keeps every point for the whole run in compact arrays (a float64 pair per point) and hands
charts a min/max-per-bucket view of a fixed size, so drawing costs the same at step 100 and at step 10
million.
"""

from __future__ import annotations

import math
from array import array


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
