"""Numbers, sizes, durations, times and metrics as every face shows them: the headless runner, the command
line's listings, the app's panels and its dashboard all read a value the same way.

Sizes are binary (KiB, MiB, GiB: powers of 1024), durations h:mm:ss, accuracies percentages. A value a
machine or a file does not give (None, NaN in a time, a malformed number) reads as "n/a", never an error.
Nothing here imports rich or textual.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

NOT_AVAILABLE = "n/a"
SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def duration(seconds: float | None) -> str:
    """0:01:05; tenths under 10 s (0:00:00.4: a short run does not read as no time at all); or n/a."""
    if not _is_number(seconds) or not math.isfinite(seconds) or seconds < 0:
        return NOT_AVAILABLE
    if seconds < 10:
        return f"0:00:{seconds:04.1f}"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def size(num_bytes: float | None) -> str:
    """1.2 MiB (binary units), or n/a."""
    if not _is_number(num_bytes) or not math.isfinite(num_bytes):
        return NOT_AVAILABLE
    value = float(num_bytes)
    for unit in SIZE_UNITS:
        if abs(value) < 1024 or unit == SIZE_UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def number(value: float | None, digits: int = 4) -> str:
    """A value with a few significant digits (nan and inf as such), or n/a."""
    if not _is_number(value):
        return NOT_AVAILABLE
    if not math.isfinite(value):
        return str(float(value))
    return f"{value:.{digits}g}"


def percent(value: float | None) -> str:
    """A fraction in [0, 1] as 97.2%, or n/a."""
    if not _is_number(value) or not math.isfinite(value):
        return NOT_AVAILABLE
    return f"{100 * value:.1f}%"


def metric(name: str, value: float | None) -> str:
    """A metric as every view shows it: an accuracy as a percentage, R² with three digits, a loss or an
    error with four."""
    if name.endswith("accuracy"):
        return percent(value)
    if name.endswith("r2"):
        return number(value, 3)
    return number(value)


def metrics_text(metrics: Mapping[str, float]) -> str:
    """`val_loss 0.1234  val_accuracy 97.3%`."""
    return "  ".join(f"{name} {metric(name, value)}" for name, value in metrics.items())


def rate(value: float | None) -> str:
    """Samples per second, compact: 12,345 or 1.2M."""
    if not _is_number(value) or not math.isfinite(value):
        return NOT_AVAILABLE
    if value >= 1e6:
        return f"{value / 1e6:.1f}M"
    return f"{value:,.0f}"


def compact_int(value: float) -> str:
    """Axis labels: 950, 12k, 1.5M."""
    value = float(value)
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= threshold:
            scaled = value / threshold
            return f"{scaled:.0f}{suffix}" if scaled == int(scaled) else f"{scaled:.1f}{suffix}"
    return f"{value:.0f}"


def bar(fraction: float | None, width: int) -> str:
    """A text bar that reads without colour: ████░░░░."""
    width = max(1, width)
    if not _is_number(fraction) or not math.isfinite(fraction):
        return "·" * width
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled)


def _local(timestamp: Any) -> time.struct_time | None:
    """timestamp as local time; None for none, or one no calendar holds (a malformed file)."""
    if not _is_number(timestamp) or not timestamp or not math.isfinite(timestamp):
        return None
    try:
        return time.localtime(timestamp)
    except (OverflowError, OSError, ValueError):
        return None


def when(timestamp: float | None) -> str:
    """Time of day for today's moments, the date and time for older ones; n/a for none."""
    moment = _local(timestamp)
    if moment is None:
        return NOT_AVAILABLE
    today = time.localtime()
    same_day = (moment.tm_year, moment.tm_yday) == (today.tm_year, today.tm_yday)
    return time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M", moment)


def stamp(timestamp: float | None) -> str:
    """The full local date and time, for output a script reads (2026-12-01T14:03:05); n/a for none."""
    moment = _local(timestamp)
    return NOT_AVAILABLE if moment is None else time.strftime("%Y-%m-%dT%H:%M:%S", moment)
