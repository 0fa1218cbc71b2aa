"""The one host of a run: whatever starts it (the headless command, the app's engine process, a detached run, a
torchrun rank, a thread of the app), a run is put together here and nowhere else.

`RunHost.run()` builds, in this order: the checks this machine can make before anything is created
(tui_trainer.preflight), torch's thread counts (tui_trainer.runs.cpu_share), the signal handling its
ownership calls for, the run folder (made or locked for it), the run record (run.json, kept by RunInfoWriter),
the event fan-out (the record, the control socket's clients, the caller's listeners), the control socket, and
the Trainer; then it trains and takes it all down again. A run that never started leaves no folder. Every
setup failure it raises is a UserError (one line, an exit code: tui_trainer.errors); a training failure ends
in the RunFinished it returns, and `exit_code` maps that to the command's exit code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from tui_trainer.config import RunConfig
from tui_trainer.engine.controls import Controls
from tui_trainer.engine.events import Event, RunFinished, RunStarted
from tui_trainer.errors import EXIT_FAILED, EXIT_OK, signal_exit
from tui_trainer.runs import cpu_share
from tui_trainer.runs.hosting import EndedBy, Hosting, Where
from tui_trainer.runs.registry import RunInfoWriter, fan_out

if TYPE_CHECKING:
    from tui_trainer.detached.server import ControlServer
    from tui_trainer.engine.distributed import Distributed
    from tui_trainer.engine.trainer import Trainer

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class ShellSignals:
    """A run in the foreground of a terminal: SIGINT, SIGTERM and SIGHUP ask it to save and stop at the next step
    boundary. A second SIGINT gives up waiting (the last checkpoint on disk stays intact)."""

    def __init__(self, controls: Controls, notify: Callable[[str], None]) -> None:
        self.controls = controls
        self.notify = notify
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> ShellSignals:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.received = signum
        self.controls.stop(save=True, reason=f"received {name}")
        self.notify(f"{name}: saving and stopping after this step (Ctrl+C again to abandon)")


class EngineSignals:
    """An engine process (detached, or the app's own): SIGTERM and SIGINT save and stop; SIGHUP is ignored (the
    run outlives the terminal that started it; an app's run ends through its socket, not its terminal)."""

    def __init__(self, controls: Controls) -> None:
        self.controls = controls
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> EngineSignals:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handle)
        if hasattr(signal, "SIGHUP"):
            self._previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = self.received or signum
        self.controls.stop(save=True, reason=f"received {signal.Signals(signum).name}")


def with_threads(on_event: Callable[[Event], None], threads: cpu_share.ThreadChoice) -> Callable[[Event], None]:
    """on_event, with the run's thread counts added to its RunStarted (the host decides them, not the Trainer)."""
    counts = threads.to_dict()

    def listener(event: Event) -> None:
        on_event(dataclasses.replace(event, threads=counts) if isinstance(event, RunStarted) else event)

    return listener


@contextlib.contextmanager
def control_socket(run_dir: Path, controls: Controls, hosting: Hosting, record: RunInfoWriter | None = None
                   ) -> Iterator[tuple[ControlServer, Callable[[Event], None]]]:
    """A run's owner-only control socket in run_dir and the listener that sends its events to the attached
    clients; both closed on exit (the clients get what is queued for them first). Raises RunFolderError when
    the socket cannot be made."""
    from tui_trainer.detached.server import ControlServer, EventHub
    from tui_trainer.runs.folder import RunFolderError

    hub = EventHub()
    try:
        server = ControlServer(run_dir, hub, controls, owned=hosting.owned,
                               on_release=record.mark_detached if record else None, owner_pid=hosting.owner_pid)
    except OSError as error:
        raise RunFolderError(f"cannot open a control socket in {run_dir}: {error.strerror or error}") from None
    try:
        yield server, hub.publish
    finally:
        hub.close()
        server.close()


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


class RunHost:
    """Hosts one run. Build it with the run's config and hosting, call `run()` once (from the thread that trains:
    the main thread for a process of its own, a worker thread under the app).

    listeners get every event (from the training thread; each must return at once). controls: the run's command
    queue (a caller that steers the run in this process passes its own). run_dir: a run folder made for this run
    already (the detached launcher's, held by its supervisor); else the host makes or locks one.
    """

    def __init__(self, config: RunConfig, hosting: Hosting, *, resume_from: str | Path | None = None,
                 listeners: Sequence[Callable[[Event], None]] = (), controls: Controls | None = None,
                 run_dir: str | Path | None = None, start_paused: bool = False, pause_on_fault: bool = False,
                 notify: Callable[[str], None] = _stderr) -> None:
        self.config = config
        self.hosting = hosting
        self.resume_from = str(resume_from) if resume_from else None
        self.listeners = list(listeners)
        self.controls = controls or Controls()
        self.planned_run_dir = Path(run_dir) if run_dir else None
        self.start_paused = start_paused
        self.pause_on_fault = pause_on_fault
        self.notify = notify
        self.trainer: Trainer | None = None
        self.record: RunInfoWriter | None = None
        self.run_dir: Path | None = None
        self.signals: ShellSignals | EngineSignals | None = None
        self.threads: cpu_share.ThreadChoice | None = None
        """torch's thread counts for this run, decided when it starts."""

    # ------------------------------------------------------------ the run

    def run(self) -> RunFinished:
        """Check, build, train, take down. Raises a UserError (ConfigError, CheckpointError, DatasetError ...)
        for a run that could not be set up; a run that set up ends in the RunFinished returned."""
        from tui_trainer.engine.distributed import SINGLE, from_environment

        parallel = SINGLE if self.hosting.where == Where.THREAD else from_environment()
        busy = cpu_share.BusySample(cpu_share.affinity_cpus(), with_sibling_ranks=parallel.enabled)
        if not parallel.enabled:
            from tui_trainer.preflight import check_run

            check_run(self.config)  # under torchrun each rank's device is its own (distributed.device_for)
        self.threads = self._size_threads(busy, parallel)
        with self._signals(), self._folder(parallel) as run_dir:
            self.run_dir = run_dir
            self.record = RunInfoWriter(detached=self.hosting.detached_run, attachable=True)  # rank 0 alone writes
            with self._socket(run_dir, parallel) as (server, publish):
                from tui_trainer.engine.trainer import Trainer
                from tui_trainer.runs.folder import open_run_folder

                owned = server is not None and self.hosting.owned
                on_event = with_threads(fan_out(self.record, *publish, *self.listeners), self.threads)
                self.trainer = Trainer(
                    self.config, on_event, controls=self.controls,
                    resume_from=self.resume_from, run_dir=run_dir, pause_on_fault=self.pause_on_fault,
                    start_paused=self.start_paused, parallel=parallel,
                    before_training=server.wait_for_owner if owned else None, folders=open_run_folder,
                )
                return self.trainer.run()

    def _size_threads(self, busy: cpu_share.BusySample, parallel: Distributed) -> cpu_share.ThreadChoice:
        """torch's threads for the whole run, set before it trains (see runs.cpu_share): the user's setting,
        else the count a resumed checkpoint recorded (a resume stays bit for bit), else the CPUs this process
        may use less the busy ones, shared among torchrun's local ranks. A run in the app's thread leaves a
        CPU to the UI."""
        from tui_trainer.engine.checkpoints import recorded_threads

        return cpu_share.size_threads(busy, preset=self.config.threads, recorded=recorded_threads(self.resume_from),
                                      world_size=parallel.world_size, leave_one=self.hosting.where == Where.THREAD)

    def _signals(self) -> contextlib.AbstractContextManager[Any]:
        """Signals follow who ends the run: the shell's are the run's own; an engine process ignores its
        terminal's hang-up; a run in the app's thread leaves signals to the app. Only the main thread may set
        them (a thread of the user's own program runs without)."""
        if self.hosting.where == Where.THREAD or threading.current_thread() is not threading.main_thread():
            return contextlib.nullcontext()
        if self.hosting.ended_by == EndedBy.SHELL:
            self.signals = ShellSignals(self.controls, self.notify)
        else:
            self.signals = EngineSignals(self.controls)
        return self.signals

    @contextlib.contextmanager
    def _folder(self, parallel: Distributed) -> Iterator[Path]:
        """The run folder: the one made for this run already, or one made (or locked) now by the main process.
        The other torchrun ranks only learn its path: they never write in it. A folder made here for a run that
        never started (nothing but its record in it) is removed when it is let go."""
        from tui_trainer.runs.folder import claim_run_folder, plan_run_dir

        if self.planned_run_dir is not None:
            yield self.planned_run_dir
        elif not parallel.is_main:
            yield plan_run_dir(self.config, self.resume_from)
        else:
            with claim_run_folder(self.config, self.resume_from) as folder:
                yield folder.path

    @contextlib.contextmanager
    def _socket(self, run_dir: Path, parallel: Distributed
                ) -> Iterator[tuple[ControlServer | None, list[Callable[[Event], None]]]]:
        """The control socket and its event hub, in the main process only (the other ranks get their commands
        from rank 0). Yields the server and the listeners that feed its clients."""
        if not parallel.is_main:
            yield None, []
            return
        with control_socket(run_dir, self.controls, self.hosting, self.record) as (server, publish):
            yield server, [publish]

    # ------------------------------------------------------------ how it ended

    def exit_code(self, result: RunFinished) -> int:
        """0 done; 1 failed, or its last.pt is not on disk; 128+N stopped on signal N (after saving)."""
        return exit_code(result, self.signals.received if self.signals is not None else None)


def exit_code(result: RunFinished, signal_received: int | None = None) -> int:
    if result.state == "failed" or result.last_unsaved:  # a run whose end is not on disk did not succeed
        return EXIT_FAILED
    if signal_received is not None:
        return signal_exit(signal_received)
    # Under torchrun a signal to one rank stops them all: each exits as if it had received it.
    signal_name = result.message.removeprefix("received ") if result.state == "stopped" else ""
    if signal_name in {sig.name for sig in STOP_SIGNALS}:
        return signal_exit(signal.Signals[signal_name])
    return EXIT_OK
