"""Leaving on SIGTERM, SIGHUP and SIGINT: save a run of this process to last.pt (a detached run the app
is attached to is let go of and keeps training), restore the terminal, exit.

Textual installs no handler for these. The handlers go in with `signal.signal`, not the event loop's
`add_signal_handler`, so they run even when the loop is stuck: after SIGHUP the terminal is gone and
Textual's writes to it can block for good. A watchdog thread then ends the process once the run is
saved, whether or not the app managed to exit by itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Protocol

HANDLED = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
SETTLE_S = 5.0
"""After the run is saved: how long the app gets to restore the terminal and exit on its own."""
SETTLE_AFTER_HANGUP_S = 1.0
"""The same after SIGHUP, when there is no terminal left to restore."""


class Leaving(Protocol):
    """What the handlers need of the app."""

    exit_grace_s: float

    def request_leave(self, signum: int) -> None:
        """From another thread: stop and save every run of this process, let go of detached runs (they
        go on training), and ask the app to exit."""
        ...

    def wait_for_training(self, timeout_s: float) -> bool: ...


def _leave(app: Leaving, signum: int, exit_now: Callable[[int], object]) -> None:
    app.request_leave(signum)
    app.wait_for_training(app.exit_grace_s)
    threading.Event().wait(SETTLE_AFTER_HANGUP_S if signum == signal.SIGHUP else SETTLE_S)
    exit_now(128 + signum)


@contextlib.contextmanager
def leave_on_signals(app: Leaving, exit_now: Callable[[int], object] = os._exit) -> Iterator[None]:
    """Install the handlers for the duration of the block (main thread only), then restore the old ones."""
    started = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes, maybe in the middle of the event loop's own
        # code, so it only hands the work to a thread of its own. A second signal changes nothing.
        if not started.is_set():
            started.set()
            threading.Thread(target=_leave, args=(app, signum, exit_now), name="leave-on-signal",
                             daemon=True).start()

    previous = {}
    for signum in HANDLED:
        with contextlib.suppress(ValueError, OSError):  # not the main thread, or not on this platform
            previous[signum] = signal.signal(signum, handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signum, handler)
