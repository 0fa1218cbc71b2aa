"""Numbers, sizes and durations as the screens show them."""

from __future__ import annotations

import math

NOT_AVAILABLE = "n/a"


def duration(seconds: float | None) -> str:
    """0:01:05; tenths under 10 s (0:00:00.4: a short run does not read as no time at all); or n/a."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return NOT_AVAILABLE
    if seconds < 10:
        return f"0:00:{seconds:04.1f}"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def size(num_bytes: float | None) -> str:
    """1.2 MiB, or n/a."""
    if num_bytes is None:
        return NOT_AVAILABLE
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def number(value: float | None, digits: int = 4) -> str:
    """A metric value with a few significant digits, or n/a."""
    if value is None:
        return NOT_AVAILABLE
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}"


def percent(value: float | None) -> str:
    """A fraction in [0, 1] as 97.2%, or n/a."""
    if value is None or not math.isfinite(value):
        return NOT_AVAILABLE
    return f"{100 * value:.1f}%"


def rate(value: float | None) -> str:
    """Samples per second, compact: 12,345 or 1.2M."""
    if value is None or not math.isfinite(value):
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
    if fraction is None or not math.isfinite(fraction):
        return "·" * width
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled)


def when(timestamp: float) -> str:
    """Time of day for today's moments, the date and time for older ones; n/a for none."""
    import time

    if not timestamp:
        return NOT_AVAILABLE
    moment = time.localtime(timestamp)
    today = time.localtime()
    same_day = (moment.tm_year, moment.tm_yday) == (today.tm_year, today.tm_yday)
    return time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M", moment)
