"""A script's run, hosted as every run is (runs.host): its folder claimed and locked under the checkpoint folder,
run.json kept by RunInfoWriter, the owner-only control socket with its event hub, the shell's signals (SIGINT,
SIGTERM, SIGHUP: save and stop at the next step boundary), and the progress printer of headless mode. Opened
by `tt.init`, taken down by `run.finish()`."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO

from tui_trainer.engine.controls import Controls
from tui_trainer.engine.events import Event
from tui_trainer.runs.folder import RunFolder, claim_run_folder
from tui_trainer.runs.host import ShellSignals, control_socket
from tui_trainer.runs.hosting import Hosting
from tui_trainer.runs.registry import RunInfoWriter, fan_out


@dataclass(frozen=True)
class _Where:
    dir: str


@dataclass(frozen=True)
class FolderPlan:
    """What claim_run_folder reads of a run's config: its name and its checkpoint folder."""

    name: str
    checkpoint: _Where = field(default_factory=lambda: _Where("checkpoints"))


def reporter(quiet: bool, out: TextIO) -> Callable[[Event], None] | None:
    """Headless mode's printer: a Rich bar on a terminal, plain lines otherwise; none when quiet."""
    if quiet:
        return None
    from tui_trainer.headless import PlainReporter, RichReporter

    if out.isatty():
        from rich.console import Console

        return RichReporter(Console(file=out))
    return PlainReporter(out)


class ScriptSignals(ShellSignals):
    """The shell's signals for a script's run. Signals can be set back only from the main thread: a run finished
    in another thread leaves its handlers in place, passing each signal on as if they were not there."""

    released = False

    def __exit__(self, *exc_info: object) -> None:
        self.released = True
        if threading.current_thread() is threading.main_thread():
            super().__exit__(*exc_info)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.released:
            super()._handle(signum, frame)
            return
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class ScriptHost:
    """The hosting of one script's run. `open()` claims what the run needs (raising a UserError, with nothing
    left behind, when it cannot); `emit` fans an event out; `close()` lets it all go, once."""

    def __init__(self, name: str, root: Path, resume_from: Path | None, controls: Controls, *, quiet: bool,
                 out: TextIO | None = None) -> None:
        self.name, self.root, self.resume_from, self.controls = name, root, resume_from, controls
        self.quiet, self.out = quiet, out or sys.stdout
        self.hosting = Hosting.shell()
        self.record = RunInfoWriter(detached=False, attachable=True)
        self.folder: RunFolder | None = None
        self.signals: ScriptSignals | None = None
        self.emit: Callable[[Event], None] = lambda event: None
        self._stack = contextlib.ExitStack()

    @property
    def run_dir(self) -> Path:
        assert self.folder is not None
        return self.folder.path

    def open(self) -> None:
        with self._stack as stack:
            self.folder = stack.enter_context(claim_run_folder(
                FolderPlan(self.name, _Where(str(self.root))), self.resume_from))  # type: ignore[arg-type]
            _server, publish = stack.enter_context(control_socket(self.folder.path, self.controls, self.hosting,
                                                                  self.record))
            if threading.current_thread() is threading.main_thread():
                self.signals = stack.enter_context(ScriptSignals(self.controls, _stderr))
            printer = reporter(self.quiet, self.out)
            self.emit = fan_out(self.record, publish, *([printer] if printer else []))
            self._stack = stack.pop_all()

    def write_file(self, name: str, text: str) -> None:
        if self.folder is not None:
            self.folder.write_file(name, text)

    def close(self) -> None:
        """Signals back as they were, the socket closed (its clients get the last events first), the folder's
        lock let go. Safe to call twice."""
        self.emit = lambda event: None
        self._stack.close()

