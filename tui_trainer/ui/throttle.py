"""Run a callback at most once per interval, and only when asked: no timer runs while nothing is new."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

MIN_DELAY_S = 0.01
"""Textual timers need a delay above zero."""


class TimerHost(Protocol):
    def set_timer(self, delay: float, callback: Callable[[], Any]) -> Any: ...


class Throttle:
    """`request()` schedules one call of `callback`, no sooner than `interval_s` after the last one.
    Requests while a call is scheduled fold into it."""

    def __init__(self, host: TimerHost, interval_s: float, callback: Callable[[], Any]) -> None:
        self.host = host
        self.interval_s = interval_s
        self.callback = callback
        self._timer: Any = None
        self._last = float("-inf")

    def request(self) -> None:
        if self._timer is not None:
            return
        delay = max(MIN_DELAY_S, self._last + self.interval_s - time.monotonic())
        self._timer = self.host.set_timer(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._last = time.monotonic()
        self.callback()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
