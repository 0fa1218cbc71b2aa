"""The app's long-lived objects, kept out of the garbage collector's full passes."""

from __future__ import annotations

import gc


def freeze_long_lived() -> None:
    """Move what the app holds so far (modules, torch, widgets) out of the collector's reach. Textual makes
    many short-lived objects, and each full collection walked the whole heap: 100-150 ms of the UI thread a
    few times a minute, which an engine training beside it felt. Later collections walk only newer objects."""
    gc.freeze()


def thaw_long_lived() -> None:
    """The app is done: what it froze may be collected again (it matters where apps come and go in one
    process, as in tests)."""
    gc.unfreeze()
