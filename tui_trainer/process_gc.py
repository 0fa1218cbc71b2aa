"""Python's garbage collector in a process whose job is one run (the headless command, each torchrun rank).

Setting a run up makes millions of objects that live as long as the process (torch, torch._dynamo, the
catalog, the model): the collector's passes over them while they are made cost about 0.4 s of CPU on a 2-core
machine, and its last pass over all of them at the interpreter's exit about 1 s more, without freeing
anything. So the collector waits while the run sets up; when training starts, everything made so far is
frozen (left out of every later pass, see gc.freeze), with the little garbage setting up left in reference
cycles (9,000 objects of the 315,000 on iris-linear; collecting them would take a pass over all, 0.3 s); when
the run ends they are thawed again (a caller that goes on, a test or a benchmark, gets its collector back as
it was); and the pass at exit is skipped: the operating system takes the memory back. Nothing is left unwritten
by that: the run has closed its files by then, and the atexit handlers registered before (logging's,
multiprocessing's) still run after this one.
"""

from __future__ import annotations

import atexit
import gc

_EXIT_PASS_SKIPPED = False


class RunCollection:
    """A context around a run: the collector waits from its start until `training_started()` (or its end, if
    the run never got that far); what was frozen then is thawed at its end."""

    def __init__(self) -> None:
        self._resume: bool | None = None
        self._froze = False

    def __enter__(self) -> RunCollection:
        self._resume = gc.isenabled()
        gc.disable()
        return self

    def training_started(self) -> None:
        """Freeze what setting up made, and let the collector run again (on what training makes)."""
        if self._resume is None:
            return
        gc.freeze()
        self._froze = True
        self._restore()

    def __exit__(self, *exc_info: object) -> None:
        self._restore()
        if self._froze:
            gc.unfreeze()
            self._froze = False

    def _restore(self) -> None:
        if self._resume:
            gc.enable()
        self._resume = None


def skip_pass_at_exit() -> None:
    """The interpreter's last collection is skipped when this process exits (registered once)."""
    global _EXIT_PASS_SKIPPED
    if not _EXIT_PASS_SKIPPED:
        atexit.register(gc.freeze)
        _EXIT_PASS_SKIPPED = True
