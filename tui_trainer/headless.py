"""Headless runs: the Trainer in the main thread, progress on stdout, signals that save before exiting.

On a terminal a Rich progress display; otherwise one plain line per epoch and every few seconds, fit
for CI logs; with --json one JSON object per event.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from tui_trainer.engine.controls import Controls
from tui_trainer.engine.events import (
    CheckpointFailed,
    CheckpointSaved,
    EpochEnded,
    Event,
    HyperparametersChanged,
    Progress,
    RunFailed,
    RunFinished,
    RunStarted,
    StateChanged,
    Warning,
)
from tui_trainer.engine.runinfo import RunInfoWriter, fan_out
from tui_trainer.launch import LaunchOptions
from tui_trainer.listing import human_bytes
from tui_trainer.logs import setup_file_logging
from tui_trainer.text import literal, printable

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
PLAIN_EVERY_S = 5.0
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 10:  # a short run does not read as no time at all
        return f"{seconds:.2f}s" if seconds < 1 else f"{seconds:.1f}s"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _metrics_text(metrics: dict[str, float]) -> str:
    return "  ".join(f"{name} {value:.4f}" for name, value in metrics.items())


class PlainReporter:
    """Lines for logs: the start, every epoch, progress every few seconds, checkpoints, the end."""

    def __init__(self, out: TextIO, every_s: float = PLAIN_EVERY_S) -> None:
        self.out = out
        self.every_s = every_s
        self._last_line = 0.0
        self.epochs = 0

    def _print(self, text: str) -> None:
        print(printable(text), file=self.out, flush=True)  # run ids, paths and messages as written

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.epochs = event.epochs
            resumed = f", resumed at step {event.start_step}" if event.start_step else ""
            self._print(f"run {event.run_id}: {event.preset} on {event.device} ({event.device_name}), "
                        f"{event.parameters:,} parameters, {event.train_samples} train / {event.val_samples} "
                        f"val samples, {event.total_steps} steps{resumed}")
            self._print(f"run folder: {event.run_dir}")
            self._last_line = time.monotonic()
        elif isinstance(event, Progress):
            now = time.monotonic()
            if now - self._last_line >= self.every_s:
                self._last_line = now
                self._print(progress_line(event, self.epochs))
        elif isinstance(event, EpochEnded):
            best = "  (best)" if event.is_best else ""
            self._print(f"epoch {event.epoch}/{self.epochs}  step {event.step}  {_metrics_text(event.train)}  "
                        f"{_metrics_text(event.val)}  lr {event.lr:.3g}{best}")
        else:
            line = event_line(event)
            if line:
                self._print(line)


def progress_line(event: Progress, epochs: int) -> str:
    accuracy = f"  acc {event.train_accuracy:.4f}" if event.train_accuracy is not None else ""
    return (f"epoch {event.epoch}/{epochs}  step {event.step}/{event.total_steps}  loss {event.train_loss:.4f}"
            f"{accuracy}  {event.samples_per_s:,.0f} samples/s  eta {format_duration(event.eta_s)}")


def event_line(event: Event) -> str | None:
    """The one line that events other than progress get in every output mode."""
    if isinstance(event, CheckpointSaved):
        return f"saved {event.path} ({human_bytes(event.size_bytes)}, {event.reason})"
    if isinstance(event, CheckpointFailed):
        return f"checkpoint not saved: {event.path}: {event.message}"
    if isinstance(event, HyperparametersChanged):
        changes = ", ".join(f"{key} {event.previous.get(key, '?')} -> {value}" for key, value in event.changes.items())
        return f"step {event.step}: {changes}"
    if isinstance(event, Warning):
        return f"warning: {event.message}"
    if isinstance(event, RunFailed):
        advice = f" ({event.advice})" if event.advice else ""
        return f"failed: {event.message}{advice}"
    if isinstance(event, StateChanged) and event.state == "stopping":
        return f"stopping: {event.reason or 'asked to stop'}; saving last.pt"
    return None


class RichReporter:
    """A live progress bar on a terminal; epoch lines scroll above it. No refresh thread: the display is
    redrawn when an event arrives, so it never competes with training for the interpreter."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = console
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"),
            TimeRemainingColumn(),
            console=console,
            auto_refresh=False,
            transient=True,
        )
        self.task = None
        self.epochs = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.epochs = event.epochs
            self._print(literal(event.run_id, "bold"), f": {event.preset} on {event.device} ({event.device_name}), "
                                                         f"{event.parameters:,} parameters, {event.total_steps} steps")
            self._print(f"run folder: {event.run_dir}")
            self.progress.start()
            self.task = self.progress.add_task("train", total=event.total_steps, completed=event.start_step,
                                               epoch=f"{event.start_epoch}/{event.epochs}", metrics="")
        elif isinstance(event, Progress) and self.task is not None:
            accuracy = f"  acc {event.train_accuracy:.4f}" if event.train_accuracy is not None else ""
            self.progress.update(self.task, completed=event.step, epoch=f"{event.epoch}/{self.epochs}",
                                 metrics=f"loss {event.train_loss:.4f}{accuracy}  {event.samples_per_s:,.0f} "
                                         f"samples/s")
            self.progress.refresh()
        elif isinstance(event, EpochEnded):
            self._print(f"epoch {event.epoch}/{self.epochs}  {_metrics_text(event.train)}  "
                        f"{_metrics_text(event.val)}  lr {event.lr:.3g}", literal(" (best)" if event.is_best else "",
                                                                                  "green"))
            self.progress.refresh()
        elif isinstance(event, RunFinished):
            self.progress.stop()
        else:
            line = event_line(event)
            if line:
                self._print(line)
                self.progress.refresh()

    def _print(self, *parts: Any) -> None:
        """Text from the run (ids, paths, messages) as written: never read as markup, control characters
        escaped."""
        from rich.text import Text

        self.console.print(Text.assemble(*(part if isinstance(part, Text) else literal(part) for part in parts)),
                           highlight=False)


class JsonReporter:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, event: Event) -> None:
        print(json.dumps(event.to_dict()), file=self.out, flush=True)


def print_summary(result: RunFinished, out: TextIO) -> None:
    but = ", but last.pt could not be written" if result.last_unsaved else ""
    lines = [f"{result.state}{but}: {result.last_epoch} epoch(s), "
             f"{result.step} steps in {format_duration(result.elapsed_s)}"]
    if result.message:
        lines.append(f"  {result.message}")
    if result.best:
        lines.append(f"  best (epoch {result.best_epoch}): {_metrics_text(result.best)}")
    if result.last:
        lines.append(f"  last: {_metrics_text(result.last)}")
    if result.unsaved:
        lines.append(f"  {result.unsaved_note()}")
    if result.checkpoint:
        lines.append(f"  checkpoint: {result.checkpoint}")
        lines.append(f"  continue:   tui-trainer --headless --resume {result.checkpoint}")
    print("\n".join(printable(line) for line in lines), file=out, flush=True)


class SignalStop:
    """SIGINT, SIGTERM and SIGHUP ask the trainer to save and stop at the next step boundary.
    A second SIGINT gives up waiting (the last checkpoint on disk stays intact)."""

    def __init__(self, controls: Controls, notify: Callable[[str], None]) -> None:
        self.controls = controls
        self.notify = notify
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalStop:
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


@contextlib.contextmanager
def control_socket(run_dir: Path, controls: Controls, enabled: bool) -> Iterator[Callable[[Event], None] | None]:
    """Every headless run (rank 0 under torchrun) can be watched and steered: `tui-trainer attach` and
    `tui-trainer stop` connect to this socket. Yields the listener that feeds attached clients."""
    if not enabled:
        yield None
        return
    from tui_trainer.config import ConfigError
    from tui_trainer.detached.server import ControlServer, EventHub

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        hub = EventHub()
        server = ControlServer(run_dir, hub, controls)
    except OSError as error:
        raise ConfigError("", "checkpoint.dir", f"cannot create {run_dir}: {error.strerror or error}") from None
    try:
        yield hub.publish
    finally:
        hub.close()
        server.close()
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # only when empty: a run that could not start leaves no folder


def make_reporter(options: LaunchOptions, out: TextIO) -> Callable[[Event], None]:
    if options.json:
        return JsonReporter(out)
    if out.isatty():
        from rich.console import Console

        return RichReporter(Console(file=out))
    return PlainReporter(out)


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def exit_code(result: RunFinished, signal_received: int | None) -> int:
    if result.state == "failed" or result.last_unsaved:  # a run whose end is not on disk did not succeed
        return EXIT_FAILED
    if signal_received is not None:
        return 128 + signal_received
    # Under torchrun a signal to one rank stops them all: each exits as if it had received it.
    signal_name = result.message.removeprefix("received ") if result.state == "stopped" else ""
    if signal_name in {sig.name for sig in STOP_SIGNALS}:
        return 128 + signal.Signals[signal_name]
    return EXIT_OK


def run_headless(options: LaunchOptions, out: TextIO | None = None) -> int:
    from tui_trainer.catalog.datasets import DatasetError
    from tui_trainer.catalog.models import ImportedModelError
    from tui_trainer.config import ConfigError
    from tui_trainer.engine.checkpoints import CheckpointError
    from tui_trainer.launch import resolve_config

    out = out or sys.stdout
    setup_file_logging()
    bad_input = (ConfigError, CheckpointError, DatasetError, ImportedModelError)
    controls = Controls()
    try:
        config, _ = resolve_config(options)
        from tui_trainer.engine.distributed import from_environment
        from tui_trainer.engine.run_folder import claim_run_folder, plan_run_dir
        from tui_trainer.engine.trainer import Trainer

        parallel = from_environment()
        # Rank 0 makes (or locks) the run folder and holds it to the end; the other ranks never write in it.
        folder = claim_run_folder(config, options.resume) if parallel.is_main else None
        run_dir = folder.path if folder is not None else plan_run_dir(config, options.resume)
        with (folder or contextlib.nullcontext(), control_socket(run_dir, controls, parallel.is_main) as publish,
              SignalStop(controls, _to_stderr) as signals):
            listeners = [RunInfoWriter(attachable=publish is not None), make_reporter(options, out)]
            trainer = Trainer(config, fan_out(*listeners, *([publish] if publish else [])), controls=controls,
                              resume_from=options.resume, run_dir=run_dir, parallel=parallel)
            result = trainer.run()
    except bad_input as error:
        print(f"tui-trainer: error: {printable(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("tui-trainer: interrupted; the last checkpoint on disk is intact", file=sys.stderr)
        return 128 + signal.SIGINT
    if not options.json and parallel.is_main:
        print_summary(result, out)
    return exit_code(result, signals.received)
